"""Lesson 01: GLM's attention masks, autoregressive blank infilling and 2D positions.

Conventions used throughout this module:

* Every mask is a bool tensor where ``True`` means *may attend* (row = the query token, column = the
  key token). ChatGLM-6B's own code uses the opposite convention (True = blocked); the model in
  ``glmcourse.modeling`` converts at the boundary.
* Positions are 0-based, as in the GLM code.
* Spans are half-open ``(start, end)`` pairs over the original tokens.
* Samplers take ``rng``: a :class:`random.Random`, an ``int`` seed, or ``None`` (a fresh, unseeded
  generator). Pass the same seed to get the same spans.
"""
from __future__ import annotations

import itertools
import math
import random
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

import torch

from glmcourse.i18n import _

# --------------------------------------------------------------------------------------------
# The three basic masks
# --------------------------------------------------------------------------------------------


def _check_size(n, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(_("{name} must be a non-negative int (a sequence length), got {n!r}", name=name, n=n))
    return n


def bidirectional_mask(n: int) -> torch.Tensor:
    """BERT-style: every token may attend to every token. Bool [n, n]."""
    return torch.ones(_check_size(n), n, dtype=torch.bool)


def causal_mask(n: int) -> torch.Tensor:
    """GPT-style: token i may attend to tokens 0..i. Bool [n, n], lower triangle True."""
    return torch.ones(_check_size(n), n, dtype=torch.bool).tril()


def prefix_mask(n: int, prefix_len: int) -> torch.Tensor:
    """GLM-style: the first ``prefix_len`` tokens see each other fully; the rest are causal and also
    see the whole prefix. The prefix never sees the tokens after it. Bool [n, n].

    ``prefix_len == 0`` gives :func:`causal_mask`, ``prefix_len == n`` gives :func:`bidirectional_mask`.
    """
    _check_size(n)
    if isinstance(prefix_len, bool) or not isinstance(prefix_len, int) or not 0 <= prefix_len <= n:
        raise ValueError(_("prefix_len must be an int in 0..{n} (the sequence length), got {prefix_len!r}", n=n,
                           prefix_len=prefix_len))
    cols = torch.arange(n)
    return causal_mask(n) | (cols < prefix_len).unsqueeze(0)


# --------------------------------------------------------------------------------------------
# ChatGLM-6B at chat time: [gMASK] <sop> positions and mask, from token ids
# --------------------------------------------------------------------------------------------

def _encode_hint() -> str:
    return _("Encode the prompt with the tokenizer's special tokens: tokenizer.encode(text) appends "
             "[gMASK] <sop> (encode(..., add_special_tokens=False) does not), and read the ids from the "
             "tokenizer (tokenizer.gmask_token_id, tokenizer.sop_token_id) instead of hard-coding them.")


def _as_id_batch(input_ids, fn: str) -> tuple[torch.Tensor, bool]:
    """Return (ids [B, L] long tensor, was_batched)."""
    if not isinstance(input_ids, torch.Tensor):
        try:
            input_ids = torch.as_tensor(input_ids, dtype=torch.long)
        except (ValueError, TypeError) as err:
            raise ValueError(_(
                "{fn}: input_ids must be a list of ints, a list of equal-length lists (a batch; pad "
                "the rows first) or a tensor; could not convert it ({err})", fn=fn, err=err
            )) from None
    if input_ids.dim() not in (1, 2):
        raise ValueError(_("{fn}: input_ids must have shape [L] or [B, L], got {shape}", fn=fn,
                           shape=tuple(input_ids.shape)))
    if input_ids.shape[-1] == 0:
        raise ValueError(_("{fn}: input_ids is empty; there is no token to place", fn=fn))
    batched = input_ids.dim() == 2
    return (input_ids if batched else input_ids.unsqueeze(0)), batched


def _first_index(hits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For bool [B, L]: (index of the first True per row, whether the row has one)."""
    found = hits.any(dim=-1)
    return hits.to(torch.uint8).argmax(dim=-1), found  # argmax returns the first maximum


def _missing_rows(found: torch.Tensor) -> str:
    rows = (~found).nonzero().flatten().tolist()
    shown = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
    return _("rows {shown}", shown=shown) if len(rows) > 1 else _("row {shown}", shown=shown)


def _sop_index(ids: torch.Tensor, sop_id: int, fn: str, batched: bool) -> torch.Tensor:
    sop_at, has_sop = _first_index(ids == sop_id)
    if not bool(has_sop.all()):
        where = _("{rows} of input_ids", rows=_missing_rows(has_sop)) if batched else "input_ids"
        raise ValueError(_("{fn}: {where} has no <sop> token (id {sop_id}), so the prefix/answer split is unknown. "
                           "{hint}", fn=fn, where=where, sop_id=sop_id, hint=_encode_hint()))
    return sop_at


def chatglm_position_ids(input_ids, gmask_id: int, sop_id: int, mask_id: int | None = None) -> torch.Tensor:
    """ChatGLM-6B's 2D positions for a prompt (or a prompt plus a partial answer).

    Row 0 (``position_ids``): ``arange(L)``, except that every index from the first ``<sop>`` on gets
    the index of the mask token (the first ``[gMASK]``; the first ``[MASK]`` when there is no
    ``[gMASK]`` and ``mask_id`` is given). Row 1 (``block_position_ids``): 0 before ``<sop>``, then
    1, 2, 3, ... from ``<sop>`` on.

    ``input_ids``: [L] or [B, L] (list or tensor). Returns a LongTensor [2, L] or [B, 2, L] on the
    input's device. Raises ValueError when a row has no ``<sop>`` or no mask token.
    """
    fn = "chatglm_position_ids"
    ids, batched = _as_id_batch(input_ids, fn)
    sop_at = _sop_index(ids, sop_id, fn, batched)
    mask_at, has_mask = _first_index(ids == gmask_id)
    if mask_id is not None:
        plain_at, has_plain = _first_index(ids == mask_id)
        mask_at = torch.where(has_mask, mask_at, plain_at)
        has_mask = has_mask | has_plain
    if not bool(has_mask.all()):
        where = _("{rows} of input_ids", rows=_missing_rows(has_mask)) if batched else "input_ids"
        wanted = f"[gMASK] (id {gmask_id})" + (f" / [MASK] (id {mask_id})" if mask_id is not None else "")
        raise ValueError(_("{fn}: {where} has no {wanted}, so the answer has no position to point at. {hint}",
                           fn=fn, where=where, wanted=wanted, hint=_encode_hint()))
    length = ids.shape[-1]
    steps = torch.arange(length, device=ids.device).expand_as(ids)  # [B, L]
    after_sop = steps >= sop_at.unsqueeze(-1)
    position_ids = torch.where(after_sop, mask_at.unsqueeze(-1).expand_as(ids), steps)
    block_position_ids = torch.where(after_sop, steps - sop_at.unsqueeze(-1) + 1, torch.zeros_like(steps))
    out = torch.stack([position_ids, block_position_ids], dim=1).long()  # [B, 2, L]
    return out if batched else out[0]


def chatglm_attention_mask(input_ids, sop_id: int) -> torch.Tensor:
    """ChatGLM-6B's attention mask, True = may attend. Bool [L, L] (or [B, L, L] for a batch).

    Every token sees every token before the first ``<sop>`` (the bidirectional prefix, ``[gMASK]``
    included); from ``<sop>`` on attention is causal. The prefix does not see ``<sop>`` or later.
    This is :func:`prefix_mask` with ``prefix_len`` = the index of ``<sop>``.
    """
    fn = "chatglm_attention_mask"
    ids, batched = _as_id_batch(input_ids, fn)
    sop_at = _sop_index(ids, sop_id, fn, batched)
    length = ids.shape[-1]
    steps = torch.arange(length, device=ids.device)
    causal = steps.view(1, length, 1) >= steps.view(1, 1, length)  # [1, L, L]
    in_prefix = steps.view(1, 1, length) < sop_at.view(-1, 1, 1)  # [B, 1, L]
    mask = causal | in_prefix
    return mask if batched else mask[0]


# --------------------------------------------------------------------------------------------
# Span samplers for the three GLM objectives
# --------------------------------------------------------------------------------------------

MAX_SPAN_LEN = 39  # GLM truncates the Poisson span lengths to 1..39
SENTENCE_END_CHARS = frozenset(".?!;:。？！；…\n")


def _make_rng(rng) -> random.Random:
    if rng is None:
        return random.Random()
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    raise TypeError(_("rng must be a random.Random, an int seed or None, got {kind}", kind=type(rng).__name__))


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ValueError(_("ratio must be a number in (0, 1] (the share of tokens to mask), got {ratio!r}",
                           ratio=ratio))
    return float(ratio)


def _check_length(length) -> int:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(_("length must be a positive int (the number of tokens), got {length!r}", length=length))
    return length


def truncated_poisson_pmf(poisson_lambda: float = 3.0, low: int = 1, high: int = MAX_SPAN_LEN) -> list[float]:
    """P(span length = k) for k = low..high: Poisson(lambda) restricted to that range, renormalised."""
    if not poisson_lambda > 0:
        raise ValueError(_("poisson_lambda must be > 0, got {poisson_lambda!r}", poisson_lambda=poisson_lambda))
    weights = [math.exp(-poisson_lambda + k * math.log(poisson_lambda) - math.lgamma(k + 1))
               for k in range(low, high + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def masked_target(length: int, ratio: float) -> int:
    """How many tokens the samplers must cover: ceil(ratio * length), at least 1."""
    return max(1, math.ceil(ratio * length - 1e-9))


def _place_spans(lengths: list[int], length: int, rng: random.Random) -> list[tuple[int, int]]:
    """Put spans of the given lengths (in this order) into ``length`` tokens, uniformly among the
    layouts that keep at least one token between neighbouring spans."""
    count = len(lengths)
    free = length - sum(lengths) - (count - 1)  # tokens left after the spans and the mandatory gaps
    cuts = sorted(rng.sample(range(free + count), count))  # stars and bars
    spans, cursor = [], 0
    for i, (cut, span_len) in enumerate(zip(cuts, lengths)):
        start = cursor + (cut - (cuts[i - 1] + 1 if i else 0)) + (1 if i else 0)
        spans.append((start, start + span_len))
        cursor = start + span_len
    return spans


def sample_spans(length: int, ratio: float = 0.15, poisson_lambda: float = 3.0, rng=None) -> list[tuple[int, int]]:
    """Token-level GLM objective: spans with Poisson(``poisson_lambda``) lengths truncated to 1..39,
    drawn until at least ``ratio * length`` tokens are covered.

    Spans never overlap and keep at least one token between them. When the drawn lengths do not
    fit (very short texts or a high ratio), the last spans are merged and then trimmed so that
    they do, still covering at least the target. Returns half-open ``(start, end)`` pairs in
    shuffled order: the order Part B uses.
    """
    length, ratio = _check_length(length), _check_ratio(ratio)
    rng = _make_rng(rng)
    cumulative = list(itertools.accumulate(truncated_poisson_pmf(poisson_lambda)))
    choices = range(1, MAX_SPAN_LEN + 1)
    target = masked_target(length, ratio)
    lengths: list[int] = []
    while sum(lengths) < target:
        lengths.append(rng.choices(choices, cum_weights=cumulative)[0])
    while len(lengths) > 1 and sum(lengths) + len(lengths) - 1 > length:
        last = lengths.pop()
        lengths[-1] += last  # one span fewer saves one gap token
    lengths[-1] -= max(0, sum(lengths) + len(lengths) - 1 - length)
    rng.shuffle(lengths)
    spans = _place_spans(lengths, length, rng)
    rng.shuffle(spans)
    return spans


def _is_sentence_end_default(token) -> bool:
    return isinstance(token, str) and len(token) > 0 and token.rstrip(" ")[-1:] in SENTENCE_END_CHARS


def sentence_bounds(tokens: Sequence, sentence_end=None) -> list[tuple[int, int]]:
    """Split ``tokens`` into sentences: half-open ``(start, end)`` pairs covering every token.

    A sentence ends with (and includes) a token for which ``sentence_end`` holds. ``sentence_end`` is
    ``None`` (string tokens ending in one of . ? ! ; : 。 ？ ！ ； … or a newline), a collection of
    tokens or ids (e.g. ``{tok.convert_tokens_to_ids("."), ...}``), or a callable ``token -> bool``.
    Trailing tokens without an end mark form the last sentence.
    """
    if sentence_end is None:
        is_end = _is_sentence_end_default
    elif callable(sentence_end):
        is_end = sentence_end
    else:
        ends = set(sentence_end)
        is_end = ends.__contains__
    bounds, start = [], 0
    for i, token in enumerate(tokens):
        if is_end(token):
            bounds.append((start, i + 1))
            start = i + 1
    if start < len(tokens):
        bounds.append((start, len(tokens)))
    return bounds


def sample_sentence_spans(tokens: Sequence, ratio: float = 0.15, rng=None, sentence_end=None) -> list[tuple[int, int]]:
    """Sentence-level GLM objective: mask whole sentences until at least ``ratio`` of the tokens
    are covered.

    ``tokens``: the document's tokens (strings or ids); ``sentence_end`` says which tokens end a
    sentence (see :func:`sentence_bounds`). Sentences are picked in random order; picked sentences
    that sit next to each other are merged into one span, so spans never touch. Returns half-open
    ``(start, end)`` pairs in shuffled order (the Part B order).
    """
    tokens = list(tokens)
    _check_length(len(tokens))
    ratio = _check_ratio(ratio)
    rng = _make_rng(rng)
    sentences = sentence_bounds(tokens, sentence_end)
    order = list(range(len(sentences)))
    rng.shuffle(order)
    target, covered, picked = masked_target(len(tokens), ratio), 0, set()
    for index in order:
        if covered >= target:
            break
        picked.add(index)
        covered += sentences[index][1] - sentences[index][0]
    spans: list[tuple[int, int]] = []
    for index in sorted(picked):
        start, end = sentences[index]
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    rng.shuffle(spans)
    return spans


def sample_document_span(length: int, rng=None) -> list[tuple[int, int]]:
    """Document-level GLM objective ([gMASK]): one span covering 50%-100% of the document.

    The length is uniform over ceil(length / 2)..length and the span ends the document, as in the
    GLM code: the kept beginning is the context and the model writes the rest. That is the same
    layout ChatGLM uses at chat time (prompt, [gMASK], then the answer after <sop>).
    Returns a one-element list so it plugs into :func:`blank_infilling` like the other samplers.
    """
    length = _check_length(length)
    rng = _make_rng(rng)
    span_len = rng.randint(math.ceil(length / 2), length)
    return [(length - span_len, length)]


# --------------------------------------------------------------------------------------------
# Autoregressive blank infilling
# --------------------------------------------------------------------------------------------


@dataclass
class BlankInfilling:
    """One GLM pre-training example. All sequences have the same length L = len(input_tokens).

    ``target_tokens[i]`` is what the model should predict at input position i (the next token of
    the span, ending with ``<eop>``). Over Part A the target repeats the input and ``loss_mask`` is 0.
    """

    input_tokens: list
    position_ids: torch.Tensor  # long [L]: Part A index; Part B -> index of its span's [MASK]
    block_position_ids: torch.Tensor  # long [L]: 0 over Part A; 1..len(span)+1 inside each span
    attention_mask: torch.Tensor  # bool [L, L], True = may attend
    target_tokens: list
    loss_mask: torch.Tensor  # long [L]: 1 on Part B, 0 on Part A
    part_a_len: int
    spans: list = field(default_factory=list)  # the spans, in Part B order

    @property
    def positions_2d(self) -> torch.Tensor:
        """``position_ids`` and ``block_position_ids`` stacked: long [2, L], ChatGLM's layout."""
        return torch.stack([self.position_ids, self.block_position_ids])


def _check_spans(spans, n_tokens: int) -> list[tuple[int, int]]:
    checked = []
    for i, span in enumerate(spans):
        try:
            start, end = span
        except (TypeError, ValueError):
            raise ValueError(_("span {i} is {span!r}; each span must be a (start, end) pair", i=i, span=span)) from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise ValueError(_("span {i} {span!r}: start and end must be ints", i=i, span=span))
        if start >= end:
            raise ValueError(_("span {i} {span!r} is empty: spans are half-open (start, end) with start < end",
                               i=i, span=span))
        if start < 0 or end > n_tokens:
            raise ValueError(_("span {i} {span!r} is out of range for {n_tokens} tokens "
                               "(need 0 <= start < end <= {n_tokens})", i=i, span=span, n_tokens=n_tokens))
        checked.append((start, end))
    if not checked:
        raise ValueError(_("spans is empty: give at least one (start, end) span to mask"))
    ordered = sorted(checked)
    for (s1, e1), (s2, e2) in zip(ordered, ordered[1:]):
        if s2 < e1:
            raise ValueError(_("spans {first} and {second} overlap; spans must be disjoint", first=(s1, e1),
                               second=(s2, e2)))
        if s2 == e1:
            raise ValueError(_("spans {first} and {second} touch; GLM keeps at least one token between "
                               "spans, so merge them into {merged} or leave a gap", first=(s1, e1), second=(s2, e2),
                               merged=(s1, e2)))
    return checked


def blank_infilling(tokens, spans, mask_token="[MASK]", sop_token="<sop>", eop_token="<eop>") -> BlankInfilling:
    """Build a GLM blank-infilling example from ``tokens`` and the ``spans`` to mask.

    Part A: ``tokens`` with each span replaced by one ``mask_token``, in text order. Part B: for each
    span in the order given, ``sop_token + span`` as input and ``span + eop_token`` as target. Tokens
    may be strings or ints (then pass the special tokens as ints too, e.g. tokenizer ids).
    """
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist()
    tokens = list(tokens)
    if not tokens:
        raise ValueError(_("tokens is empty: there is nothing to mask"))
    if len({isinstance(t, str) for t in [*tokens, mask_token, sop_token, eop_token]}) > 1:
        raise TypeError(_("tokens and mask_token/sop_token/eop_token must be all strings or all ids; for ids "
                          "pass e.g. mask_token=tok.mask_token_id, sop_token=tok.sop_token_id, "
                          "eop_token=tok.eop_token_id"))
    spans = _check_spans(spans, len(tokens))

    part_a, mask_index = [], {}
    cursor = 0
    for start, end in sorted(spans):
        part_a.extend(tokens[cursor:start])
        mask_index[(start, end)] = len(part_a)
        part_a.append(mask_token)
        cursor = end
    part_a.extend(tokens[cursor:])
    n_a = len(part_a)

    inputs, targets = list(part_a), list(part_a)
    positions, blocks = list(range(n_a)), [0] * n_a
    for start, end in spans:
        piece = tokens[start:end]
        inputs += [sop_token] + piece
        targets += piece + [eop_token]
        positions += [mask_index[(start, end)]] * (len(piece) + 1)
        blocks += list(range(1, len(piece) + 2))
    total = len(inputs)
    return BlankInfilling(
        input_tokens=inputs,
        position_ids=torch.tensor(positions, dtype=torch.long),
        block_position_ids=torch.tensor(blocks, dtype=torch.long),
        attention_mask=prefix_mask(total, n_a),
        target_tokens=targets,
        loss_mask=torch.tensor([0] * n_a + [1] * (total - n_a), dtype=torch.long),
        part_a_len=n_a,
        spans=spans,
    )


# --------------------------------------------------------------------------------------------
# Pictures: a text grid (stable, for checked notebook cells) and a labelled heatmap
# --------------------------------------------------------------------------------------------


def _as_list(values):
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)


def _width(text: str) -> int:
    """Columns a string takes in a monospace font (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, left: bool = True) -> str:
    fill = " " * max(0, width - _width(text))
    return fill + text if left else text + fill


def render_mask(mask, tokens=None, position_ids=None, block_position_ids=None,
                allowed: str = "■", blocked: str = "·") -> str:
    """A mask as a text grid: one row per query token (who attends), one column per key token (who
    is attended to); ``allowed`` marks *may attend*. Optional rows above the grid show the tokens'
    ``position_ids`` and ``block_position_ids``. Deterministic, so notebook cells can check it.
    """
    mask = torch.as_tensor(mask).bool()
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(_("render_mask needs a square [L, L] mask, got shape {shape}", shape=tuple(mask.shape)))
    size = mask.shape[0]
    labels = [str(t) for t in _as_list(tokens)] if tokens is not None else [str(i) for i in range(size)]
    extra_rows = [(name, _as_list(vals)) for name, vals in
                  (("position", position_ids), ("block pos", block_position_ids)) if vals is not None]
    for name, values in [("tokens", labels)] + extra_rows:
        if len(values) != size:
            raise ValueError(_("render_mask: {name} has {n} entries but the mask is {size} x {size}", name=name,
                               n=len(values), size=size))
    width = max([_width(s) for s in labels] + [len(str(v)) for _name, vals in extra_rows for v in vals] + [1])
    label_width = max([_width(s) for s in labels] + [len(name) for name, _values in extra_rows] + [0])

    def line(label, cells):
        return (_pad(label, label_width, left=False) + " | " + " ".join(_pad(c, width) for c in cells)).rstrip()

    out = [line("", labels)]
    out += [line(name, [str(v) for v in vals]) for name, vals in extra_rows]
    out.append("-" * (label_width + 1) + "+" + "-" * ((width + 1) * size))
    for row in range(size):
        out.append(line(labels[row], [allowed if bool(v) else blocked for v in mask[row]]))
    return "\n".join(out)
