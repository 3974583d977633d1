"""Exercise checkers of lesson 07 (``glmcourse.ptuning``): each raises AssertionError with a hint, or returns."""
from __future__ import annotations

import torch

from glmcourse.exercises import call_learner, say
from glmcourse.modeling import course_config
from glmcourse.ptuning import IGNORE_INDEX, build_prompt, meta_trainable, prefix_mask


def check_prefix_params(fn) -> None:
    """fn(num_layers, hidden_size, pre_seq_len) -> trainable parameters of P-Tuning v2 without projection."""
    for layers, hidden, p in [(28, 4096, 128), (4, 256, 16), (2, 32, 4), (28, 4096, 1)]:
        heads = 8 if hidden >= 64 else 4
        want = meta_trainable(course_config(num_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                                            inner_hidden_size=4 * hidden), p)[0]
        got = call_learner(fn, layers, hidden, p)
        if got == want // 2:
            raise AssertionError(say("fn({layers}, {hidden}, {p}) = {got:,}: every prefix position has a key AND a "
                                     "value vector in every layer", layers=layers, hidden=hidden, p=p, got=got))
        assert got == want, say("fn({layers}, {hidden}, {p}) = {got}, expected {want:,}: pre_seq_len x num_layers x 2 "
                                "(key, value) x hidden_size; the frozen base does not count",
                                layers=layers, hidden=hidden, p=p, got=got, want=want)


def check_ptuning_prompt(fn) -> None:
    """fn(query, history) -> main.py's prompt for data with a history column."""
    cases = [("我叫什么？", [("我叫小红。", "你好，小红！")]), ("q2", [("q0", "r0"), ("q1", "r1")]), ("你好", [])]
    for query, history in cases:
        want = build_prompt(query, history, history_column=True)
        got = call_learner(fn, query, [tuple(t) for t in history])
        assert isinstance(got, str), say("return a string, got {type}", type=type(got).__name__)
        if got.replace("：", ":") == want.replace("：", ":") and got != want:
            raise AssertionError(say("the colons after 问 and 答 are full-width (：, U+FF1A), not ASCII ':'"))
        if not history and got == query:
            raise AssertionError(say("with a history column, an empty history still gives "
                                     "'[Round 0]\\n问：{{query}}\\n答：' (main.py's rule; model.chat would send the "
                                     "bare query)"))
        assert got == want, say("fn({query!r}, {history!r}) = {got!r}, expected {want!r}",
                                query=query, history=history, got=got, want=want)


def check_ptuning_labels(fn) -> None:
    """fn(input_ids, sop_id, pad_id, length) -> labels: -100 before <sop>, the ids from <sop> on, -100 over padding."""
    gmask, sop, eop, pad = 130001, 130004, 130005, 3
    for ids in ([11, 12, 13, gmask, sop, 21, 22, eop], [11, gmask, sop, 21, eop], [11, 12, gmask, sop, 21, pad, eop]):
        length = len(ids) + 3
        context = ids.index(sop)
        labels = [IGNORE_INDEX] * context + ids[context:] + [pad] * (length - len(ids))
        want = [IGNORE_INDEX if t == pad else t for t in labels]
        got = call_learner(fn, list(ids), sop, pad, length)
        assert isinstance(got, list) and len(got) == length, say("return a list of {length} labels (padded to length)",
                                                                 length=length)
        if got[context] == IGNORE_INDEX:
            raise AssertionError(say("<sop> itself is supervised: the labels start at input_ids.index(sop), "
                                     "not after it"))
        if pad in got:
            raise AssertionError(say("with ignore_pad_token_for_loss every pad id in the labels becomes -100"))
        assert got == want, say("fn({ids}, ...) = {got}, expected {want}", ids=ids, got=got, want=want)


def check_with_prefix_columns(fn) -> None:
    """fn(attend, pre_seq_len) -> the may-attend mask with pre_seq_len True columns in front."""
    gen = torch.Generator().manual_seed(0)
    for shape, p in [((5, 5), 3), ((2, 4, 4), 2), ((1, 1, 6, 6), 4)]:
        attend = torch.rand(*shape, generator=gen) > 0.5
        got = call_learner(fn, attend.clone(), p)
        want = prefix_mask(attend, p)
        assert torch.is_tensor(got), say("return a tensor, got {type}", type=type(got).__name__)
        assert tuple(got.shape) == tuple(want.shape), say(
            "expected shape {want} (one column per prefix position in front of the keys), got {got}",
            want=tuple(want.shape), got=tuple(got.shape))
        if torch.equal(got.bool()[..., -p:], torch.ones_like(want[..., -p:])) and not torch.equal(got.bool(), want):
            raise AssertionError(say("the prefix goes in FRONT of the token keys "
                                     "(torch.cat((prefix, attend), dim=-1))"))
        assert torch.equal(got.bool(), want), say("every query may attend to every prefix position; "
                                                  "the rest is unchanged")
