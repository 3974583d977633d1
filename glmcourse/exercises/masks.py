"""Exercise checkers of lesson 01 (``glmcourse.masks``): each raises AssertionError with a hint, or returns."""
from __future__ import annotations

import torch

from glmcourse.exercises import call_learner, say
from glmcourse.masks import _as_list, blank_infilling, chatglm_position_ids, prefix_mask


def _as_bool_matrix(result, what: str) -> torch.Tensor:
    try:
        out = torch.as_tensor(result)
    except Exception:  # noqa: BLE001
        raise AssertionError(say("{what} should return a tensor (or nested list) of bools, got {type}",
                                 what=what, type=type(result).__name__))
    if out.dtype != torch.bool:
        raise AssertionError(say("{what} should return a bool tensor (True = may attend), got dtype {dtype}; "
                                 "compare with `>=`/`<` or call .bool()", what=what, dtype=out.dtype))
    return out


def check_prefix_mask(fn) -> None:
    """Exercise: ``fn(n, prefix_len)`` returns GLM's prefix mask, bool [n, n], True = may attend."""
    for n, prefix_len in [(5, 2), (6, 0), (4, 4), (7, 3), (1, 1)]:
        got = _as_bool_matrix(call_learner(fn, n, prefix_len),
                              say("your function ({n}, {prefix_len})", n=n, prefix_len=prefix_len))
        want = prefix_mask(n, prefix_len)
        if got.shape != want.shape:
            raise AssertionError(say("for n={n}, prefix_len={prefix_len} the mask should have shape {want}, got {got}",
                                     n=n, prefix_len=prefix_len, want=tuple(want.shape), got=tuple(got.shape)))
        wrong = (got != want).nonzero().tolist()
        if wrong:
            i, j = wrong[0]
            who = say("a prefix token") if i < prefix_len else say("a token after the prefix")
            rule = (say("n={n}, prefix_len={prefix_len}: query {i} ({who}) may attend to key {j}.",
                        n=n, prefix_len=prefix_len, i=i, who=who, j=j) if want[i, j] else
                    say("n={n}, prefix_len={prefix_len}: query {i} ({who}) may not attend to key {j}.",
                        n=n, prefix_len=prefix_len, i=i, who=who, j=j))
            raise AssertionError(say("{rule} Rule: everyone sees the prefix; after the prefix attention is causal; "
                                     "the prefix never sees what follows.", rule=rule))
    print(say("Correct: the prefix is bidirectional, the rest is causal and sees the whole prefix."))


def check_blank_positions(fn) -> None:
    """Exercise: ``fn(tokens, spans)`` returns ``(position_ids, block_position_ids)`` (lists of ints)
    of the blank-infilling example (Part A in text order, Part B in the given span order)."""
    cases = [
        (["x1", "x2", "x3", "x4", "x5", "x6"], [(4, 6), (2, 3)]),
        (list("abcdefghij"), [(1, 2), (5, 9)]),
        (list("abcdefghij"), [(5, 9), (1, 2)]),
        (list("abcd"), [(0, 4)]),
    ]
    for tokens, spans in cases:
        result = call_learner(fn, tokens, spans)
        try:
            pos, block = (_as_list(r) for r in result)
        except Exception:  # noqa: BLE001
            raise AssertionError(say("return a pair (position_ids, block_position_ids)")) from None
        want = blank_infilling(tokens, spans)
        want_pos, want_block = want.position_ids.tolist(), want.block_position_ids.tolist()
        if len(pos) != len(want_pos) or len(block) != len(want_block):
            raise AssertionError(say(
                "tokens={tokens}, spans={spans}: the input has {n} tokens (Part A {part_a_len}, then <sop> + span "
                "for each span), but you returned {n_pos} and {n_block} positions",
                tokens=tokens, spans=spans, n=len(want_pos), part_a_len=want.part_a_len, n_pos=len(pos),
                n_block=len(block)))
        if [int(v) for v in pos] != want_pos:
            raise AssertionError(say(
                "tokens={tokens}, spans={spans}: position_ids {got} should be {want}. Part A counts 0, 1, 2, ...; "
                "every Part B token takes the index of its span's [MASK] in Part A.",
                tokens=tokens, spans=spans, got=list(pos), want=want_pos))
        if [int(v) for v in block] != want_block:
            raise AssertionError(say(
                "tokens={tokens}, spans={spans}: block_position_ids {got} should be {want}. 0 over Part A; "
                "inside each span (from its <sop>) 1, 2, 3, ...",
                tokens=tokens, spans=spans, got=list(block), want=want_block))
    print(say("Correct: both position rows match GLM's rules."))


def check_chatglm_positions(fn) -> None:
    """Exercise: ``fn(input_ids, gmask_id, sop_id)`` returns ChatGLM's [2, L] positions for one prompt."""
    cases = [
        ([11, 12, 13, 91, 93], 91, 93),
        ([11, 12, 13, 91, 93, 21, 22, 23], 91, 93),
        ([91, 93, 21], 91, 93),
        ([7, 8, 9, 10, 3, 5, 6], 3, 5),
    ]
    for ids, gmask_id, sop_id in cases:
        result = call_learner(fn, ids, gmask_id, sop_id)
        try:
            got = torch.as_tensor(result).long()
        except Exception:  # noqa: BLE001
            raise AssertionError(say("return a [2, L] tensor or a pair of lists")) from None
        want = chatglm_position_ids(ids, gmask_id, sop_id)
        if got.shape != want.shape:
            raise AssertionError(say("for input_ids={ids} return shape {want} (two rows of L), got {got}",
                                     ids=ids, want=tuple(want.shape), got=tuple(got.shape)))
        if not torch.equal(got[0], want[0]):
            raise AssertionError(say("input_ids={ids} (gMASK {gmask_id}, sop {sop_id}): position_ids {got} should be "
                                     "{want}: arange(L), then from <sop> on the index of [gMASK].",
                                     ids=ids, gmask_id=gmask_id, sop_id=sop_id, got=got[0].tolist(),
                                     want=want[0].tolist()))
        if not torch.equal(got[1], want[1]):
            raise AssertionError(say("input_ids={ids}: block_position_ids {got} should be {want}: 0 before <sop>, "
                                     "then 1, 2, 3, ... from <sop> on.",
                                     ids=ids, got=got[1].tolist(), want=want[1].tolist()))
    print(say("Correct: that is what ChatGLM-6B feeds its 2D rotary embedding."))


