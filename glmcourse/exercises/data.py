"""Exercise checkers of lesson 04 (``glmcourse.data``): each raises AssertionError with a hint, or returns."""
from __future__ import annotations

import argparse

from glmcourse.exercises import call_learner, say


def _expect(got, want, what: str):
    assert got == want, say("{what}: expected {want!r}, got {got!r}", what=what, want=want, got=got)


def check_format_example(fn) -> None:
    """fn(record) -> {"context", "target"} as ChatGLM-Tuning builds it."""
    cases = [
        ({"instruction": "Add 2 and 3.", "input": "", "output": "5"},
         {"context": "Instruction: Add 2 and 3.\nAnswer: ", "target": "5"}, say("empty input")),
        ({"instruction": "Translate.", "input": "猫", "output": "cat"},
         {"context": "Instruction: Translate.\nInput: 猫\nAnswer: ", "target": "cat"}, say("with input")),
        ({"instruction": "Echo", "input": " ", "output": " x "},
         {"context": "Instruction: Echo\nInput:  \nAnswer: ", "target": " x "},
         say("whitespace-only input is truthy, and nothing is stripped")),
        ({"instruction": "Hi", "input": None, "output": "Hello"},
         {"context": "Instruction: Hi\nAnswer: ", "target": "Hello"}, say("input None counts as empty")),
    ]
    for record, want, what in cases:
        got = call_learner(fn, dict(record))
        assert isinstance(got, dict), say("return a dict with 'context' and 'target', got {type}", type=type(got).__name__)
        _expect(got.get("context"), want["context"], say("context ({case})", case=what))
        _expect(got.get("target"), want["target"], say("target ({case})", case=what))


def check_build_labels(fn) -> None:
    """fn(input_ids, seq_len) -> labels: -100 over the prompt before <sop>, then the ids."""
    # ids: 11 12 13 = prompt text, 1 = [gMASK], 2 = <sop>, 21 22 = target, 3 = <eop>
    ids, seq_len = [11, 12, 13, 1, 2, 21, 22, 3], 5
    got = list(call_learner(fn, list(ids), seq_len))
    assert len(got) == len(ids), say("labels must be as long as input_ids ({want}), got {got}",
                                     want=len(ids), got=len(got))
    assert got[seq_len - 1] == 2, say("the label at the <sop> position must be <sop>'s id (it is supervised), "
                                      "got {got}; mask only the first seq_len - 1 positions", got=got[seq_len - 1])
    _expect(got, [-100, -100, -100, -100, 2, 21, 22, 3], say("labels for a 5-token prompt"))
    _expect(list(call_learner(fn, [1, 2, 3], 2)), [-100, 2, 3], say("labels for an empty prompt text"))


def check_truncate_target(fn) -> None:
    """fn(context_ids, target_ids, eop_id, max_seq_length) -> input_ids that keep [gMASK] <sop> and <eop>."""
    context, target, eop = [11, 12, 1, 2], [21, 22, 23, 24, 25], 3
    _expect(list(call_learner(fn, context, target, eop, 20)), context + target + [eop], say("a row that fits is unchanged"))
    got = list(call_learner(fn, context, target, eop, 8))
    assert len(got) <= 8, say("the row must be at most 8 tokens, got {got}", got=len(got))
    assert got[-1] == eop, say("the row must still end with <eop> (upstream cut it off)")
    assert got[:4] == context, say("the context, [gMASK] <sop> included, must stay whole")
    _expect(got, [11, 12, 1, 2, 21, 22, 23, 3], say("max_seq_length 8: keep as many target tokens as fit"))


def check_str2bool(fn) -> None:
    """fn(text) -> bool, strict: true/false/1/0/yes/no in any case, anything else an error."""
    for text, want in [("False", False), ("false", False), ("TRUE", True), ("1", True), ("0", False),
                       ("yes", True), ("No", False)]:
        _expect(call_learner(fn, text), want, f"str2bool({text!r})")
    for text in ["maybe", "", "2"]:
        try:
            result = call_learner(fn, text, allowed=(argparse.ArgumentTypeError, ValueError))
        except (argparse.ArgumentTypeError, ValueError):
            continue
        raise AssertionError(say("str2bool({text!r}) returned {result!r}: it should raise argparse.ArgumentTypeError",
                                 text=text, result=result))


