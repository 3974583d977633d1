"""Tests for glmcourse.masks (lesson 01).

Expected values come from the rules of ChatGLM-6B's own code (its inputs, masks and 2D positions) and of
GLM's pre-training (blank infilling), worked out by hand below, not from the code's output.
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from glmcourse import masks, plots
from glmcourse.exercises import masks as checks

# Small made-up ids for the chat-time functions (the real ones come from the tokenizer).
GMASK, MASK, SOP, EOP = 91, 90, 93, 94


# ---------------------------------------------------------------- basic masks


def test_causal_and_bidirectional_masks():
    causal = masks.causal_mask(4)
    assert causal.dtype == torch.bool and causal.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert bool(causal[i, j]) == (j <= i)
    assert masks.bidirectional_mask(3).all()


def test_prefix_mask_rule_and_extremes():
    n, p = 6, 2
    m = masks.prefix_mask(n, p)
    for i in range(n):
        for j in range(n):
            expected = j < p or j <= i  # everyone sees the prefix; the rest is causal
            assert bool(m[i, j]) == expected, (i, j)
    assert not m[0, 2] and not m[1, 5]  # the prefix never sees what follows it
    assert torch.equal(masks.prefix_mask(5, 0), masks.causal_mask(5))
    assert torch.equal(masks.prefix_mask(5, 5), masks.bidirectional_mask(5))
    # a prefix of 1 token is also plain causal (token 0 only sees itself either way)
    assert torch.equal(masks.prefix_mask(5, 1), masks.causal_mask(5))


@pytest.mark.parametrize("n, p", [(4, 5), (4, -1), (-1, 0), (3, 1.5)])
def test_prefix_mask_bad_input(n, p):
    with pytest.raises(ValueError):
        masks.prefix_mask(n, p)


# ---------------------------------------------------------------- ChatGLM chat-time positions and mask


def test_chatglm_position_ids_rule():
    # prompt a b c, then [gMASK] at index 3, <sop> at index 4, then two generated tokens
    ids = [11, 12, 13, GMASK, SOP, 21, 22]
    pos = masks.chatglm_position_ids(ids, GMASK, SOP)
    assert pos.dtype == torch.long and pos.shape == (2, 7)
    assert pos[0].tolist() == [0, 1, 2, 3, 3, 3, 3]  # from <sop> on: the index of [gMASK]
    assert pos[1].tolist() == [0, 0, 0, 0, 1, 2, 3]  # 0 before <sop>, then 1, 2, 3


def test_chatglm_position_ids_mask_fallback_and_tensor_input():
    ids = torch.tensor([11, MASK, 12, SOP, 21])
    pos = masks.chatglm_position_ids(ids, GMASK, SOP, mask_id=MASK)
    assert pos[0].tolist() == [0, 1, 2, 1, 1]
    assert pos[1].tolist() == [0, 0, 0, 1, 2]
    # [gMASK] wins over [MASK] when both are present
    both = [MASK, 11, GMASK, SOP]
    assert masks.chatglm_position_ids(both, GMASK, SOP, mask_id=MASK)[0].tolist() == [0, 1, 2, 2]


def test_chatglm_position_ids_batch_and_first_sop():
    batch = torch.tensor([
        [11, 12, GMASK, SOP, 21, 22],
        [11, GMASK, SOP, 21, SOP, 22],  # a second <sop>: the first one counts
    ])
    pos = masks.chatglm_position_ids(batch, GMASK, SOP)
    assert pos.shape == (2, 2, 6)
    assert pos[0, 0].tolist() == [0, 1, 2, 2, 2, 2]
    assert pos[0, 1].tolist() == [0, 0, 0, 1, 2, 3]
    assert pos[1, 0].tolist() == [0, 1, 1, 1, 1, 1]
    assert pos[1, 1].tolist() == [0, 0, 1, 2, 3, 4]
    # batched result equals the row-by-row result
    for row in range(2):
        assert torch.equal(pos[row], masks.chatglm_position_ids(batch[row], GMASK, SOP))


def test_chatglm_position_ids_missing_special_tokens_explained():
    with pytest.raises(ValueError, match=r"no <sop>.*tokenizer\.encode"):
        masks.chatglm_position_ids([11, 12, GMASK], GMASK, SOP)
    with pytest.raises(ValueError, match=r"no \[gMASK\]"):
        masks.chatglm_position_ids([11, 12, SOP], GMASK, SOP)
    with pytest.raises(ValueError, match=r"row 1 of input_ids has no <sop>"):
        masks.chatglm_position_ids([[11, GMASK, SOP], [11, 12, GMASK]], GMASK, SOP)
    with pytest.raises(ValueError, match="empty"):
        masks.chatglm_position_ids([], GMASK, SOP)
    with pytest.raises(ValueError, match="equal-length"):
        masks.chatglm_position_ids([[1, 2], [1]], GMASK, SOP)


def test_chatglm_attention_mask_rule():
    ids = [11, 12, GMASK, SOP, 21, 22]  # prefix = indices 0..2, <sop> at 3
    m = masks.chatglm_attention_mask(ids, SOP)
    assert m.dtype == torch.bool and m.shape == (6, 6)
    for i in range(6):
        for j in range(6):
            expected = j < 3 or (i >= 3 and j <= i)
            assert bool(m[i, j]) == expected, (i, j)
    assert torch.equal(m, masks.prefix_mask(6, 3))


def test_chatglm_attention_mask_batch_and_errors():
    batch = [[11, GMASK, SOP, 21], [GMASK, SOP, 21, 22]]
    m = masks.chatglm_attention_mask(batch, SOP)
    assert m.shape == (2, 4, 4)
    assert torch.equal(m[0], masks.prefix_mask(4, 2))
    assert torch.equal(m[1], masks.prefix_mask(4, 1))
    with pytest.raises(ValueError, match="no <sop>"):
        masks.chatglm_attention_mask([11, GMASK], SOP)


def test_chatglm_functions_handle_long_batches():
    batch = torch.randint(0, 50, (4, 2048))
    batch[:, 1000] = GMASK
    batch[:, 1001] = SOP
    pos = masks.chatglm_position_ids(batch, GMASK, SOP)
    m = masks.chatglm_attention_mask(batch, SOP)
    assert pos.shape == (4, 2, 2048) and m.shape == (4, 2048, 2048)
    assert pos[0, 0, -1] == 1000 and pos[0, 1, -1] == 2048 - 1001
    assert m[0, 5, 999] and not m[0, 5, 1001] and m[0, 2047, 1500]


# ---------------------------------------------------------------- blank infilling


def test_glm_paper_worked_example():
    """The GLM paper's figure: x1..x6, spans [x3] and [x5, x6], Part B order [x5 x6] then [x3].

    By the rules: Part A = x1 x2 [M] x4 [M]; the [M] for x3 sits at index 2, the one for x5 x6 at
    index 4. Part B = [S] x5 x6 [S] x3; position 1 of each span is its [M]'s index, position 2 counts
    1.. within the span. (The paper prints 1-based positions 1 2 3 4 5 5 5 5 3 3; these are 0-based.)
    """
    tokens = ["x1", "x2", "x3", "x4", "x5", "x6"]
    ex = masks.blank_infilling(tokens, [(4, 6), (2, 3)], mask_token="[M]", sop_token="[S]", eop_token="[E]")
    assert ex.input_tokens == ["x1", "x2", "[M]", "x4", "[M]", "[S]", "x5", "x6", "[S]", "x3"]
    assert ex.target_tokens[5:] == ["x5", "x6", "[E]", "x3", "[E]"]
    assert ex.position_ids.tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 2, 2]
    assert ex.block_position_ids.tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 1, 2]
    assert ex.loss_mask.tolist() == [0] * 5 + [1] * 5
    assert ex.part_a_len == 5
    assert ex.positions_2d.shape == (2, 10)
    m = ex.attention_mask
    assert m[:5, :5].all()  # Part A: fully bidirectional
    assert not m[:5, 5:].any()  # Part A does not see Part B
    assert m[5:, :5].all()  # Part B sees all of Part A
    # Part B is causal across the spans: x3 (index 9) sees x5 x6, [S] (index 5) sees only itself
    assert m[9, 5:].all() and m[5, 5] and not m[5, 6:].any()


def test_blank_infilling_text_order_vs_given_order():
    tokens = list("abcdefgh")
    first = masks.blank_infilling(tokens, [(1, 2), (4, 6)])
    second = masks.blank_infilling(tokens, [(4, 6), (1, 2)])
    part_a = ["a", "[MASK]", "c", "d", "[MASK]", "g", "h"]
    assert first.input_tokens[:7] == part_a == second.input_tokens[:7]  # Part A: text order always
    assert first.input_tokens[7:] == ["<sop>", "b", "<sop>", "e", "f"]
    assert second.input_tokens[7:] == ["<sop>", "e", "f", "<sop>", "b"]
    assert second.position_ids[7:].tolist() == [4, 4, 4, 1, 1]


def test_blank_infilling_with_ids():
    ex = masks.blank_infilling(torch.tensor([5, 6, 7, 8]), [(1, 3)], mask_token=MASK, sop_token=SOP, eop_token=EOP)
    assert ex.input_tokens == [5, MASK, 8, SOP, 6, 7]
    assert ex.target_tokens == [5, MASK, 8, 6, 7, EOP]
    with pytest.raises(TypeError, match="all strings or all ids"):
        masks.blank_infilling([5, 6, 7], [(0, 1)])  # ids with the default string specials


@pytest.mark.parametrize("spans, message", [
    ([(3, 9)], "out of range"),
    ([(-1, 2)], "out of range"),
    ([(2, 2)], "empty"),
    ([(3, 1)], "empty"),
    ([], "spans is empty"),
    ([(0, 3), (2, 4)], "overlap"),
    ([(0, 2), (2, 4)], "touch"),
    ([(1,)], "pair"),
])
def test_blank_infilling_bad_spans(spans, message):
    with pytest.raises(ValueError, match=message):
        masks.blank_infilling(list("abcdef"), spans)


def test_blank_infilling_empty_tokens():
    with pytest.raises(ValueError, match="tokens is empty"):
        masks.blank_infilling([], [(0, 1)])


# ---------------------------------------------------------------- samplers


def _assert_well_formed(spans, length):
    ordered = sorted(spans)
    for start, end in ordered:
        assert 0 <= start < end <= length
    for (_, e1), (s2, _) in zip(ordered, ordered[1:]):
        assert s2 >= e1 + 1, f"spans overlap or touch: {ordered}"


def test_truncated_poisson_pmf():
    pmf = masks.truncated_poisson_pmf(3)
    assert len(pmf) == 39 and math.isclose(sum(pmf), 1.0)
    # P(1) / P(2) = (3 e^-3) / (9/2 e^-3) = 2/3, whatever the normalisation
    assert math.isclose(pmf[0] / pmf[1], 2 / 3)


def test_sample_spans_statistics():
    rng = random.Random(0)
    pmf = masks.truncated_poisson_pmf(3)
    lengths, ratios = Counter(), []
    for _ in range(3000):
        spans = masks.sample_spans(200, ratio=0.15, rng=rng)
        _assert_well_formed(spans, 200)
        covered = sum(e - s for s, e in spans)
        assert covered >= 30  # >= 15% of 200, every time
        ratios.append(covered / 200)
        lengths.update(e - s for s, e in spans)
    mean_ratio = sum(ratios) / len(ratios)
    # drawing until >= 30 overshoots by a few tokens on average (mean span length ~3.16)
    assert 0.15 <= mean_ratio <= 0.175
    total = sum(lengths.values())
    for k in range(1, 7):  # the common lengths match the truncated Poisson pmf
        assert abs(lengths[k] / total - pmf[k - 1]) < 0.015, k
    assert max(lengths) <= 39


def test_sample_spans_order_is_shuffled_and_seeded():
    first_is_leftmost = sum(
        min(spans) == spans[0] for spans in (masks.sample_spans(300, rng=seed) for seed in range(200))
    )
    # ~14 spans per sample: leftmost-first by chance ~1/14 of the time (200 if not shuffled)
    assert 3 <= first_is_leftmost <= 40
    assert masks.sample_spans(100, rng=7) == masks.sample_spans(100, rng=7)


def test_sample_spans_short_text_and_full_ratio():
    for seed in range(200):
        for length in (1, 2, 3, 5, 8):
            for ratio in (0.15, 0.5, 0.9, 1.0):
                spans = masks.sample_spans(length, ratio=ratio, rng=seed)
                _assert_well_formed(spans, length)
                assert sum(e - s for s, e in spans) >= math.ceil(ratio * length - 1e-9)
    assert masks.sample_spans(10, ratio=1.0, rng=0) == [(0, 10)]


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, "0.2", True])
def test_samplers_reject_bad_ratio(ratio):
    with pytest.raises(ValueError, match=r"ratio must be a number in \(0, 1\]"):
        masks.sample_spans(20, ratio=ratio)
    with pytest.raises(ValueError, match=r"ratio must be a number in \(0, 1\]"):
        masks.sample_sentence_spans(["a", "."], ratio=ratio)


def test_samplers_reject_bad_length_and_rng():
    with pytest.raises(ValueError, match="positive int"):
        masks.sample_spans(0)
    with pytest.raises(ValueError, match="positive int"):
        masks.sample_document_span(0)
    with pytest.raises(TypeError, match="rng"):
        masks.sample_spans(10, rng="seed")


def test_sentence_bounds():
    tokens = "the cat sat . it was warm ! and then".split()
    assert masks.sentence_bounds(tokens) == [(0, 4), (4, 8), (8, 10)]
    assert masks.sentence_bounds([1, 2, 0, 3, 0], sentence_end={0}) == [(0, 3), (3, 5)]
    assert masks.sentence_bounds([1, 2, 0, 3], sentence_end=lambda t: t == 2) == [(0, 2), (2, 4)]


def test_sample_sentence_spans_whole_sentences_and_coverage():
    rng = random.Random(1)
    words = []
    for i in range(12):
        words += [f"w{i}"] * (2 + i % 4) + ["."]  # sentences of 3..6 tokens
    bounds = masks.sentence_bounds(words)
    starts, ends = {s for s, _ in bounds}, {e for _, e in bounds}
    ratios = []
    for _ in range(2000):
        spans = masks.sample_sentence_spans(words, ratio=0.15, rng=rng)
        _assert_well_formed(spans, len(words))
        for s, e in spans:
            assert s in starts and e in ends  # whole sentences only
        covered = sum(e - s for s, e in spans)
        assert covered >= 0.15 * len(words)
        ratios.append(covered / len(words))
    mean = sum(ratios) / len(ratios)
    assert 0.15 <= mean < 0.30  # a sentence here is 5-11% of the text: a little overshoot


def test_sample_document_span():
    rng = random.Random(3)
    lengths = []
    for _ in range(5000):
        (span,) = masks.sample_document_span(40, rng=rng)
        start, end = span
        assert end == 40 and 20 <= end - start <= 40
        lengths.append(end - start)
    assert abs(sum(lengths) / len(lengths) - 30) < 0.5  # uniform over 20..40
    assert min(lengths) == 20 and max(lengths) == 40
    assert masks.sample_document_span(1, rng=0) == [(0, 1)]


# ---------------------------------------------------------------- renderers


def test_render_mask_grid():
    text = masks.render_mask(masks.causal_mask(3), ["a", "b", "c"], [0, 1, 2], [0, 0, 0])
    lines = text.splitlines()
    assert lines[0].split() == ["|", "a", "b", "c"]
    assert lines[1].split() == ["position", "|", "0", "1", "2"]
    assert lines[2].split() == ["block", "pos", "|", "0", "0", "0"]
    assert lines[4].split() == ["a", "|", "■", "·", "·"]  # row 0 of a causal mask sees only itself
    assert lines[6].split() == ["c", "|", "■", "■", "■"]
    assert len({line.index("|") for line in lines if "|" in line}) == 1  # columns line up
    with pytest.raises(ValueError, match="tokens has 2 entries"):
        masks.render_mask(masks.causal_mask(3), ["a", "b"])


def test_render_mask_aligns_wide_characters():
    text = masks.render_mask(masks.prefix_mask(3, 2), ["你好", "a", "<sop>"])
    widths = {masks._width(line[: line.index("|")]) for line in text.splitlines() if "|" in line}
    assert len(widths) == 1


def test_plot_mask_has_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = plots.plot_mask(masks.prefix_mask(4, 2), list("abcd"), title="Prefix", part_a_len=2)
    assert ax.get_title().startswith("Prefix")
    assert ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    plt.close("all")


# ---------------------------------------------------------------- exercise checkers


def _solutions():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "01_masks_solutions.py"
    spec = importlib.util.spec_from_file_location("masks_solutions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_prefix_mask_accepts_and_rejects(capsys):
    checks.check_prefix_mask(_solutions().prefix_mask)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="may not attend"):
        checks.check_prefix_mask(lambda n, p: torch.ones(n, n, dtype=torch.bool))  # sees the future
    with pytest.raises(AssertionError, match="bool"):
        checks.check_prefix_mask(lambda n, p: masks.prefix_mask(n, p).int())
    with pytest.raises(AssertionError, match="raised IndexError"):
        checks.check_prefix_mask(lambda n, p: [][0])
    with pytest.raises(NotImplementedError):  # so attempt() can report [TODO]
        checks.check_prefix_mask(_not_done)


def _not_done(*args):
    raise NotImplementedError


def test_check_blank_positions_accepts_and_rejects(capsys):
    checks.check_blank_positions(_solutions().blank_positions)
    assert "Correct" in capsys.readouterr().out

    def one_based(tokens, spans):  # the paper's 1-based numbering: off by one
        ex = masks.blank_infilling(tokens, spans)
        return (ex.position_ids + 1).tolist(), ex.block_position_ids.tolist()

    with pytest.raises(AssertionError, match="position_ids"):
        checks.check_blank_positions(one_based)

    def sorted_part_b(tokens, spans):  # ignores the given Part B order
        ex = masks.blank_infilling(tokens, sorted(spans))
        return ex.position_ids.tolist(), ex.block_position_ids.tolist()

    with pytest.raises(AssertionError):
        checks.check_blank_positions(sorted_part_b)


def test_check_chatglm_positions_accepts_and_rejects(capsys):
    checks.check_chatglm_positions(_solutions().chatglm_positions)
    assert "Correct" in capsys.readouterr().out

    def sop_as_anchor(ids, gmask_id, sop_id):  # uses <sop>'s index instead of [gMASK]'s
        pos = masks.chatglm_position_ids(ids, gmask_id, sop_id).clone()
        pos[0, ids.index(sop_id):] = ids.index(sop_id)
        return pos

    with pytest.raises(AssertionError, match=r"index of \[gMASK\]"):
        checks.check_chatglm_positions(sop_as_anchor)
    with pytest.raises(AssertionError, match="shape"):
        checks.check_chatglm_positions(lambda ids, g, s: torch.arange(len(ids)))


def test_exercise_attempt_integration(capsys):
    from glmcourse.exercises import attempt

    assert attempt(checks.check_prefix_mask, _solutions().prefix_mask)
    assert not attempt(checks.check_prefix_mask, _not_done)
    assert "[TODO]" in capsys.readouterr().out


# ---------------------------------------------------------------- the notebook's inline code == the package

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_glm_attention_masks.ipynb"
LESSON_MARK = "# lesson code: tests/test_masks.py"


def _notebook_lesson_code() -> dict:
    """Run the notebook cells that carry LESSON_MARK (they only define functions) in a fresh namespace."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    namespace = {"torch": torch}
    sources = []
    for cell in notebook["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and LESSON_MARK in source:
            sources.append(source)
    assert len(sources) >= 5, "the notebook's step-by-step cells lost their '# lesson code:' marker"
    for index, source in enumerate(sources):
        exec(compile(source, f"<notebook lesson cell {index}>", "exec"), namespace)
    return namespace


def test_notebook_inline_code_matches_package():
    lesson = _notebook_lesson_code()
    rng = random.Random(5)
    for _ in range(300):
        n = rng.randint(1, 30)
        tokens = [f"w{rng.randint(0, 9)}" for _ in range(n)]
        spans = masks.sample_spans(n, ratio=rng.choice([0.15, 0.3, 0.6, 1.0]), rng=rng)
        by_hand = lesson["blank_infilling_by_hand"](tokens, spans)
        package = masks.blank_infilling(tokens, spans)
        assert by_hand["input_tokens"] == package.input_tokens
        assert by_hand["target_tokens"] == package.target_tokens
        assert by_hand["position_ids"] == package.position_ids.tolist()
        assert by_hand["block_position_ids"] == package.block_position_ids.tolist()
        assert by_hand["loss_mask"] == package.loss_mask.tolist()
        assert torch.equal(by_hand["attention_mask"], package.attention_mask)
    for total in range(1, 8):
        for part_a in range(total + 1):
            assert torch.equal(lesson["make_mask"](part_a, total), masks.prefix_mask(total, part_a))
