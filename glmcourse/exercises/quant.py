"""Exercise checkers of lesson 02 (``glmcourse.quant``): each raises AssertionError with a hint, or returns."""
from __future__ import annotations

import torch

from glmcourse.exercises import call_learner, say
from glmcourse.memory import kv_cache_bytes
from glmcourse.quant import pack_int4, qrange, quantize_symmetric


def _exercise_weights() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [
        torch.tensor([[1.0, -0.5, 0.25, 0.0], [-2.0, 1.0, 0.5, 3.0]]),  # -0.5 * 127 = -63.5: a tie
        torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.1, 0.2]]),  # an all-zero row
        torch.randn(5, 16, generator=gen),
    ]


def check_absmax_quantize(fn) -> None:
    """Exercise: ``fn(w)`` returns ``(q, scale)``: int8 per-row absmax, scale ``max|row| / 127``."""
    for w in _exercise_weights():
        result = call_learner(fn, w.clone())
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError(say("return a pair (q, scale)"))
        q, scale = result
        want_q, want_scale = quantize_symmetric(w, 8, dim=-1)  # the exact fp32 scale the exercise asks for
        if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
            raise AssertionError(say("q should be an int8 tensor, got {dtype}: finish with .to(torch.int8)",
                                     dtype=getattr(q, "dtype", type(q).__name__)))
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        if scale.numel() != w.shape[0]:
            raise AssertionError(say("one scale per row: expected {want} scales, got {got} (take the max over dim=-1)",
                                     want=w.shape[0], got=scale.numel()))
        if not torch.isfinite(scale).all() or (scale <= 0).any():
            raise AssertionError(say("an all-zero row gave a zero or NaN scale: replace a zero scale by 1"))
        nonzero = w.abs().amax(-1) > 0
        if not torch.allclose(scale[nonzero], want_scale.reshape(-1)[nonzero]):
            raise AssertionError(say("scale should be max|row| / 127: want {want}, got {got}",
                                     want=want_scale.reshape(-1).tolist(), got=scale.tolist()))
        if not torch.equal(q, want_q):
            i, j = (q != want_q).nonzero()[0].tolist()
            exact = float(w[i, j] / want_scale.reshape(-1)[i])
            raise AssertionError(say("w[{i}, {j}] / scale = {exact:.2f} should give {want}, got {got}: use torch.round "
                                     "(it rounds .5 to the even neighbour), not int() or floor",
                                     i=i, j=j, exact=exact, want=int(want_q[i, j]), got=int(q[i, j])))
    print(say("Correct: per-row absmax INT8 exactly as ChatGLM-6B computes it."))


def check_zeropoint_quantize(fn) -> None:
    """Exercise: ``fn(w, bits)`` returns ``(q, scale, zero_point)`` for the whole tensor (min-max).

    Checked: codes in ``[-2^(bits-1), 2^(bits-1) - 1]``, ``(q - zero_point) * scale`` within one step of
    w, and the codes spread over (almost) all ``2^bits`` values even when w is lopsided.
    """
    gen = torch.Generator().manual_seed(1)
    cases = [(torch.rand(6, 32, generator=gen) * 3 - 0.5, 8), (torch.rand(4, 16, generator=gen) * 2 - 0.2, 4),
             (torch.randn(8, 8, generator=gen), 8)]
    for w, bits in cases:
        result = call_learner(fn, w.clone(), bits)
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise AssertionError(say("return a triple (q, scale, zero_point)"))
        q, scale, zero_point = (torch.as_tensor(t) for t in result)
        qmin, qmax = qrange(bits, symmetric=False)
        if q.is_floating_point():
            raise AssertionError(say("q should hold integers (int8), got {dtype}", dtype=q.dtype))
        if q.min() < qmin or q.max() > qmax:
            raise AssertionError(say("{bits}-bit codes must lie in [{qmin}, {qmax}], got [{lo}, {hi}]: clamp after rounding",
                                     bits=bits, qmin=qmin, qmax=qmax, lo=int(q.min()), hi=int(q.max())))
        w_hat = (q.double() - zero_point.double()) * scale.double()
        step = float(scale.double().max())
        worst = float((w_hat - w.double()).abs().max())
        if worst > step * 1.01:
            raise AssertionError(say("(q - zero_point) * scale is off by up to {worst:.4f}, more than one step "
                                     "({step:.4f}): check scale = (max - min) / (2^bits - 1) and the zero point's sign",
                                     worst=worst, step=step))
        if int(q.max()) - int(q.min()) < qmax - qmin - 2:
            raise AssertionError(say("the codes only span [{lo}, {hi}] of [{qmin}, {qmax}]: an asymmetric scheme maps "
                                     "min(w) near the lowest code and max(w) near the highest",
                                     lo=int(q.min()), hi=int(q.max()), qmin=qmin, qmax=qmax))
    print(say("Correct: min-max quantization with a zero point uses the whole integer range."))


def check_pack_int4(fn) -> None:
    """Exercise: ``fn(q)`` packs int4 codes [out, in] into int8 [out, in / 2], even column in the high nibble."""
    gen = torch.Generator().manual_seed(2)
    cases = [torch.tensor([[1, 2, -1, 7, -8, 0]], dtype=torch.int8),
             torch.randint(-7, 8, (4, 10), generator=gen).to(torch.int8)]
    for q in cases:
        got = call_learner(fn, q.clone())
        want = pack_int4(q)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise AssertionError(say("for q of shape {shape} return a tensor of shape {want}",
                                     shape=tuple(q.shape), want=tuple(want.shape)))
        if got.dtype != torch.int8:
            raise AssertionError(say("return int8 bytes, got {dtype}", dtype=got.dtype))
        if torch.equal(got, pack_int4(q[..., [i ^ 1 for i in range(q.shape[-1])]])):
            raise AssertionError(say("the nibbles are swapped: the EVEN column goes in the HIGH nibble (q[:, 0::2] << 4)"))
        if not torch.equal(got, want):
            i, j = (got != want).nonzero()[0].tolist()
            pair = q[i, 2 * j:2 * j + 2].tolist()
            raise AssertionError(say("the byte for the pair {pair} is wrong: mask the odd value with & 0xF so a "
                                     "negative code does not spill its sign bits into the high nibble", pair=pair))
    print(say("Correct: two int4 codes per byte, in ChatGLM's order."))


def check_kv_cache_bytes(fn) -> None:
    """Exercise: ``fn(config, seq_len, batch_size)`` returns the fp16 KV-cache size in bytes."""
    from types import SimpleNamespace

    configs = [SimpleNamespace(hidden_size=4096, num_layers=28, num_attention_heads=32, vocab_size=130528),
               SimpleNamespace(hidden_size=256, num_layers=4, num_attention_heads=8, vocab_size=4096)]
    for config in configs:
        for seq_len, batch in [(2048, 1), (100, 3)]:
            got = call_learner(fn, config, seq_len, batch)
            want = kv_cache_bytes(config, seq_len, batch, 2)
            if got == want:
                continue
            hints = {want // 2: say("keys AND values: multiply by 2"), want * 2: say("fp16 is 2 bytes per value, not 4"),
                     want // 4: say("two tensors (k and v) of 2 bytes each"),
                     want // config.num_layers: say("every layer keeps its own cache")}
            hint = hints.get(got, say("bytes = 2 (k, v) x layers x batch x seq_len x hidden x 2 bytes"))
            raise AssertionError(say("hidden {hidden}, {layers} layers, seq_len {seq_len}, batch {batch}: want {want:,} "
                                     "bytes, got {got}: {hint}", hidden=config.hidden_size, layers=config.num_layers,
                                     seq_len=seq_len, batch=batch, want=want, got=got, hint=hint))
    print(say("Correct: 0.875 GiB of keys and values for one 2048-token ChatGLM-6B conversation."))


