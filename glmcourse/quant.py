"""Lesson 02: weight quantization, from the INT8 arithmetic to ChatGLM-6B's ``quantize(bits)``.

The three steps of INT8 quantization, as the course teaches them:

1. choose the range  -> a scale per row (absmax) or a scale and a zero point (min-max);
2. map to integers   -> ``q = round(w / scale)`` (round half to even), clamped to the bit range;
3. dequantize        -> ``w_hat = q * scale`` (+ the zero-point shift), used in the matmul.

ChatGLM-6B's ``quantize(bits)`` is weight-only: the four Linear kinds of every block hold int8 (or two
int4 values per byte) plus one scale per output row; activations, embeddings, LayerNorms, biases and
the lm_head stay in floating point. ``quantize_model`` reproduces that on the course model.
"""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from glmcourse.exercises import call_learner as _call
from glmcourse.make_data import evenly_thinned, read_documents

ALLOWED_BITS = (4, 8)  # what ChatGLM-6B's quantize(bits) accepts
EXPLORE_BITS = range(2, 9)  # what the lesson's exploration helpers accept
# The four Linear kinds ChatGLM-6B quantizes, by the last two parts of their module names.
QUANTIZED_LINEARS = (
    "attention.query_key_value",
    "attention.dense",
    "mlp.dense_h_to_4h",
    "mlp.dense_4h_to_h",
)
GiB = 2**30
TRAIN_SEQ_LEN = 256  # estimate_memory's training sequence length when seq_len is None


# --------------------------------------------------------------------------- range checks
def check_bits(bits) -> int:
    """ChatGLM-6B supports only 4 and 8 bits: anything else is a ValueError naming both."""
    if isinstance(bits, bool) or bits not in ALLOWED_BITS:
        raise ValueError(
            f"bits={bits!r} is not supported: ChatGLM-6B's quantize(bits) accepts only "
            f"{' or '.join(map(str, ALLOWED_BITS))} (int8 or packed int4). "
            "For other widths use quantize_symmetric(w, bits) in the lesson's exploration."
        )
    return int(bits)


def _check_explore_bits(bits) -> int:
    if isinstance(bits, bool) or bits not in EXPLORE_BITS:
        raise ValueError(f"bits={bits!r} is out of range: the exploration helpers take 2 to 8 bits.")
    return int(bits)


def _check_float(w: torch.Tensor, what: str = "w") -> None:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        kind = w.dtype if isinstance(w, torch.Tensor) else type(w).__name__
        raise TypeError(f"{what} must be a floating-point tensor, got {kind}.")


def qrange(bits: int, symmetric: bool = True) -> tuple[int, int]:
    """Integer range of a signed ``bits``-wide code: symmetric drops the lowest value (-8 for int4)."""
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if symmetric else -qmax - 1), qmax


# --------------------------------------------------------------------------- symmetric (absmax)
def quantize_symmetric(w: torch.Tensor, bits: int = 8, dim: int | None = -1):
    """Absmax quantization for any width from 2 to 8 bits (the lesson's exploration helper).

    ``dim=-1`` gives one scale per row (ChatGLM), ``dim=None`` one scale for the whole tensor.
    Returns ``(q, scale)``: q is int8, scale keeps w's dtype and has w's shape with ``dim`` reduced to
    size 1, so ``q * scale`` broadcasts back. An all-zero row gets scale 1 (its codes are all 0).
    """
    _check_float(w)
    bits = _check_explore_bits(bits)
    qmax = 2 ** (bits - 1) - 1
    if dim is None:
        amax = w.abs().amax().reshape([1] * w.dim())
    else:
        amax = w.abs().amax(dim=dim, keepdim=True)
    scale = amax / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # guard all-zero rows
    q = torch.round(w / scale).clamp_(-qmax, qmax).to(torch.int8)  # torch.round: half to even
    return q, scale


def quantize_absmax(w: torch.Tensor, bits: int = 8, dim: int = -1):
    """ChatGLM-6B's weight quantization: per row along ``dim``, ``scale = max|w| / (2^(bits-1) - 1)``.

    Only 4 and 8 bits (else ValueError). Returns ``(q int8, scale)`` as ``quantize_symmetric``.
    The arithmetic runs in w's dtype: fp16 weights give fp16 scales, exactly as ChatGLM keeps them.
    """
    check_bits(bits)
    if dim is None:
        raise ValueError("quantize_absmax is per row: pass dim=-1 (or use quantize_symmetric(w, bits, dim=None)).")
    return quantize_symmetric(w, bits, dim)


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``q * scale`` in ``dtype`` (default: the scale's dtype).

    ``scale`` is per tensor, per row ([out, 1]) or per group ([out, in / group_size]); the group
    size is read from the shapes.
    """
    dtype = dtype or scale.dtype
    scale = scale.to(dtype)
    if scale.dim() == q.dim() and scale.shape[-1] not in (1, q.shape[-1]):
        n_groups = scale.shape[-1]
        if q.shape[-1] % n_groups:
            raise ValueError(
                f"scale has {n_groups} groups per row but q has {q.shape[-1]} columns, "
                "which is not a multiple: pass the scale returned with this q."
            )
        grouped = q.to(dtype).reshape(*q.shape[:-1], n_groups, q.shape[-1] // n_groups)
        return (grouped * scale.unsqueeze(-1)).reshape(q.shape)
    return q.to(dtype) * scale


# --------------------------------------------------------------------------- group-wise
def quantize_groupwise(w: torch.Tensor, bits: int = 4, group_size: int = 64):
    """Absmax per group of ``group_size`` consecutive columns of each row.

    Returns ``(q [out, in] int8, scale [out, in / group_size])``; ``dequantize(q, scale)`` undoes it.
    Smaller groups follow the local range more closely at the cost of one scale per group.
    """
    _check_float(w)
    bits = _check_explore_bits(bits)
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}.")
    n_in = w.shape[-1]
    if n_in % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide the input dimension {n_in}: "
            f"choose a divisor of {n_in} (e.g. 32 or 64)."
        )
    grouped = w.reshape(*w.shape[:-1], n_in // group_size, group_size)
    q, scale = quantize_symmetric(grouped, bits, dim=-1)
    return q.reshape(w.shape), scale.squeeze(-1)


# --------------------------------------------------------------------------- asymmetric (min-max)
def quantize_zeropoint(w: torch.Tensor, bits: int = 8, dim: int | None = -1):
    """Asymmetric min-max quantization with a zero point, 2 to 8 bits.

    The range [min, max] (widened to include 0, so zero stays exact) is stretched over all
    ``2^bits`` codes ``[-2^(bits-1), 2^(bits-1) - 1]``: ``q = clamp(round(w / scale) + zero_point)``.
    Returns ``(q int8, scale, zero_point)``; undo with ``dequantize_zeropoint``.
    ``dim=-1`` works per row, ``dim=None`` on the whole tensor.
    """
    _check_float(w)
    bits = _check_explore_bits(bits)
    qmin, qmax = qrange(bits, symmetric=False)
    if dim is None:
        lo, hi = w.min().reshape([1] * w.dim()), w.max().reshape([1] * w.dim())
    else:
        lo, hi = w.amin(dim=dim, keepdim=True), w.amax(dim=dim, keepdim=True)
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = (hi - lo) / (qmax - qmin)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # guard all-zero rows
    zero_point = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int8)
    q = (torch.round(w / scale) + zero_point).clamp_(qmin, qmax).to(torch.int8)
    return q, scale, zero_point


def dequantize_zeropoint(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """``(q - zero_point) * scale``."""
    return (q.to(scale.dtype) - zero_point.to(scale.dtype)) * scale


# --------------------------------------------------------------------------- int4 packing
def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack int4 codes two per byte: ``byte = (q[2j] << 4) | (q[2j+1] & 0xF)``.

    ``q``: int8 [..., in] with values in [-8, 7]; returns int8 [..., in / 2], the even column in the
    high nibble (ChatGLM's layout).
    """
    if q.dtype != torch.int8:
        raise TypeError(f"pack_int4 expects int8 codes, got {q.dtype}: quantize with bits=4 first.")
    if q.shape[-1] % 2:
        raise ValueError(
            f"pack_int4 needs an even input dimension to pair columns, got {q.shape[-1]} "
            f"(shape {tuple(q.shape)}): pad the weight with a zero column first."
        )
    if q.numel() and (q.min() < -8 or q.max() > 7):
        raise ValueError(
            f"pack_int4: codes must lie in [-8, 7], got [{int(q.min())}, {int(q.max())}]. "
            "Quantize with bits=4 before packing."
        )
    high, low = q[..., 0::2], q[..., 1::2]
    return (high << 4) | (low & 0x0F)


def unpack_int4(packed: torch.Tensor, dtype: torch.dtype = torch.int8) -> torch.Tensor:
    """Inverse of ``pack_int4``: int8 [..., n] -> [..., 2n] codes, each nibble sign-extended.

    ``dtype`` chooses the output type (a float type skips an extra copy when dequantizing).
    """
    if packed.dtype != torch.int8:
        raise TypeError(f"unpack_int4 expects the int8 bytes from pack_int4, got {packed.dtype}.")
    out = torch.empty(*packed.shape, 2, dtype=dtype, device=packed.device)
    out[..., 0] = packed >> 4  # arithmetic shift on int8 keeps the sign
    out[..., 1] = (packed << 4) >> 4  # move the low nibble up, then shift back with sign extension
    return out.reshape(*packed.shape[:-1], packed.shape[-1] * 2)


# --------------------------------------------------------------------------- error metrics
def mse(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Mean squared error, computed in fp64."""
    return float((reference.double() - approx.double()).pow(2).mean())


def max_abs_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Largest absolute difference."""
    return float((reference.double() - approx.double()).abs().max())


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum w^2 / sum (w - w_hat)^2)``.

    Each extra bit adds about 6 dB. Returns inf for an exact copy.
    """
    noise = (reference.double() - approx.double()).pow(2).sum()
    signal = reference.double().pow(2).sum()
    if noise == 0:
        return math.inf
    return float(10 * torch.log10(signal / noise))


def error_report(reference: torch.Tensor, approx: torch.Tensor) -> dict:
    """The three metrics in one dict."""
    return {"mse": mse(reference, approx), "max_abs": max_abs_error(reference, approx),
            "sqnr_db": sqnr_db(reference, approx)}


# --------------------------------------------------------------------------- NF4 (QLoRA)
def nf4_levels(offset: float = 0.9677083) -> torch.Tensor:
    """The 16 NormalFloat-4 levels of QLoRA: quantiles of N(0, 1) scaled to [-1, 1], with an exact 0.

    8 positive levels from quantiles ``offset .. 0.5``, 7 negative ones from ``offset .. 0.5`` (one
    fewer), and 0. Each level covers about the same probability mass of a normal distribution.
    """
    ppf = lambda p: torch.special.ndtri(p)  # noqa: E731 - the normal quantile function
    positive = ppf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -ppf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
    return (levels / levels.abs().max()).float()


def quantize_to_levels(w: torch.Tensor, levels: torch.Tensor, block_size: int = 64):
    """Blockwise absmax, then the nearest of ``levels`` (in [-1, 1]): how NF4 stores a weight.

    Returns ``(codes uint8 [..., n], absmax [..., n / block_size])``; ``dequantize_levels`` undoes it.
    """
    _check_float(w)
    if w.numel() % block_size:
        raise ValueError(f"block_size={block_size} must divide the number of weights ({w.numel()}).")
    blocks = w.reshape(-1, block_size)
    absmax = blocks.abs().amax(-1, keepdim=True)
    absmax = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    codes = ((blocks / absmax).unsqueeze(-1) - levels.to(w.dtype)).abs().argmin(-1).to(torch.uint8)
    return codes.reshape(w.shape), absmax.squeeze(-1)


def dequantize_levels(codes: torch.Tensor, absmax: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Inverse of ``quantize_to_levels``."""
    values = levels.to(absmax.dtype)[codes.long()].reshape(absmax.numel(), -1)
    return (values * absmax.reshape(-1, 1)).reshape(codes.shape)


def uniform_int4_levels() -> torch.Tensor:
    """ChatGLM's int4 grid seen the same way: the 15 levels -7/7 .. 7/7 (evenly spaced)."""
    return torch.arange(-7, 8, dtype=torch.float32) / 7


# --------------------------------------------------------------------------- activations: LLM.int8()
def int8_matmul_vectorwise(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` with x quantized per row (token) and w per row (output), int32 accumulation.

    The vector-wise INT8 matmul of LLM.int8(): ``(qx @ qw.T) * sx * sw.T``.
    """
    qx, sx = quantize_symmetric(x, 8, dim=-1)
    qw, sw = quantize_symmetric(w, 8, dim=-1)
    acc = qx.to(torch.int32) @ qw.to(torch.int32).T  # exact integer sums
    return acc.to(x.dtype) * sx * sw.T


def outlier_columns(x: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    """Feature columns of ``x`` [tokens, features] with any |value| >= threshold (LLM.int8's rule)."""
    return (x.abs() >= threshold).any(dim=0).nonzero().flatten()


def llm_int8_matmul(x: torch.Tensor, w: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    """LLM.int8()'s mixed-precision decomposition of ``x @ w.T``.

    The few outlier feature columns (``outlier_columns``) are multiplied in floating point, the rest
    through ``int8_matmul_vectorwise``; the two partial products are added.
    """
    cols = outlier_columns(x, threshold)
    keep = torch.ones(x.shape[-1], dtype=torch.bool, device=x.device)
    keep[cols] = False
    regular = int8_matmul_vectorwise(x[:, keep], w[:, keep]) if keep.any() else 0
    return regular + x[:, cols] @ w[:, cols].T


def outlier_activations(tokens: int = 64, features: int = 256, outlier_features=(7, 100, 201),
                        magnitude: float = 20.0, seed: int = 0) -> torch.Tensor:
    """Synthetic hidden states with a few systematic outlier features, as LLM.int8() found in LLMs.

    Normal values everywhere, and in ``outlier_features`` every token carries ``magnitude`` times more.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, features, generator=gen)
    x[:, list(outlier_features)] *= magnitude
    return x


# --------------------------------------------------------------------------- QuantizedLinear
class _DequantLinearFn(torch.autograd.Function):
    """``x @ dequant(W).T + b`` that saves the int codes, not the dequantized weight, for backward.

    A plain ``F.linear(x, dequantize(...))`` would keep a float copy of every weight alive for the
    backward pass, undoing the memory saving when LoRA or P-Tuning trains through a quantized base.
    """

    @staticmethod
    def forward(ctx, x, qweight, scale, bias, bits):
        weight = _dequantize_storage(qweight, scale, bits, x.dtype)
        ctx.save_for_backward(qweight, scale)
        ctx.bits = bits
        ctx.has_bias = bias is not None
        return F.linear(x, weight, None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        qweight, scale = ctx.saved_tensors
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out @ _dequantize_storage(qweight, scale, ctx.bits, grad_out.dtype)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad_out.reshape(-1, grad_out.shape[-1]).sum(0)
        return grad_x, None, None, grad_bias, None


def _dequantize_storage(qweight, scale, bits, dtype):
    codes = unpack_int4(qweight, dtype) if bits == 4 else qweight
    return dequantize(codes, scale, dtype)


class QuantizedLinear(nn.Module):
    """Weight-only quantized Linear: int8 codes (or int4 packed two per byte) and float scales.

    Buffers: ``weight`` (int8 [out, in] for 8 bits, [out, in / 2] for packed 4 bits) and
    ``weight_scale`` ([out, 1] per row, or [out, in / group_size] per group), as ChatGLM names them,
    so ``state_dict()`` and ``.to()`` work; ``.to(dtype)`` casts the scales and bias, never the codes.
    ``forward`` dequantizes to the input's dtype, then runs ``F.linear``.
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 8, group_size: int | None = None,
                 bias: bool = True, dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        self.bits = check_bits(bits)
        if bits == 4 and in_features % 2:
            raise ValueError(f"int4 packing needs an even in_features, got {in_features}.")
        if group_size is not None and (group_size < 1 or in_features % group_size):
            raise ValueError(
                f"group_size={group_size} must divide in_features={in_features}: choose e.g. 32 or 64."
            )
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        stored_in = in_features // 2 if bits == 4 else in_features
        n_scales = 1 if group_size is None else in_features // group_size
        self.register_buffer("weight", torch.zeros(out_features, stored_in, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, n_scales, dtype=dtype, device=device))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False)
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, group_size: int | None = None) -> "QuantizedLinear":
        """Quantize an ``nn.Linear``'s weight (per row, or per group) and copy its bias."""
        w = linear.weight.detach()
        module = cls(linear.in_features, linear.out_features, bits, group_size,
                     bias=linear.bias is not None, dtype=w.dtype, device=w.device)
        if group_size is None:
            q, scale = quantize_absmax(w, bits)
        else:
            q, scale = quantize_groupwise(w, bits, group_size)
        module.weight.copy_(pack_int4(q) if bits == 4 else q)
        module.weight_scale.copy_(scale)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        return module

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The float weight [out, in] the matmul sees."""
        return _dequantize_storage(self.weight, self.weight_scale, self.bits, dtype or self.weight_scale.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _DequantLinearFn.apply(x, self.weight, self.weight_scale, self.bias, self.bits)

    def weight_bytes(self, include_scales: bool = True) -> int:
        """Bytes of the stored weight (codes, plus the scales by default); the bias is not counted."""
        n = self.weight.numel() * self.weight.element_size()
        if include_scales:
            n += self.weight_scale.numel() * self.weight_scale.element_size()
        return n

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.group_size else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"
                f"{group}, bias={self.bias is not None}")


# --------------------------------------------------------------------------- whole model
def _is_target(name: str) -> bool:
    return any(name == kind or name.endswith("." + kind) for kind in QUANTIZED_LINEARS)


def quantize_model(model: nn.Module, bits: int, group_size: int | None = None) -> nn.Module:
    """ChatGLM-6B's ``quantize(bits)``: replace the four Linear kinds of every block, in place.

    ``attention.query_key_value``, ``attention.dense``, ``mlp.dense_h_to_4h`` and
    ``mlp.dense_4h_to_h`` become ``QuantizedLinear`` (per-row scales, or per group with
    ``group_size``); embeddings, LayerNorms and the lm_head stay float. Returns the model.
    """
    check_bits(bits)
    targets = [(name, module) for name, module in model.named_modules() if _is_target(name)]
    already = [name for name, module in targets if isinstance(module, QuantizedLinear)]
    if already:
        raise ValueError(
            f"the model is already quantized ({already[0]} holds {targets[0][1].bits}-bit codes): "
            "quantizing twice loses precision; reload the float model and call quantize once."
        )
    linears = [(name, module) for name, module in targets if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(
            "quantize_model found no Linear named like ChatGLM's "
            f"({', '.join(QUANTIZED_LINEARS)}); is this a ChatGLM model?"
        )
    for name, linear in linears:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantizedLinear.from_linear(linear, bits, group_size))
    return model


def quantized_weight_bytes(model: nn.Module, include_scales: bool = True) -> dict:
    """Bytes held by the quantized layers, against what the same weights take in fp32.

    Returns ``{"layers", "quantized_bytes", "fp32_bytes", "ratio"}`` (biases are excluded from both).
    """
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    if not layers:
        raise ValueError("the model has no QuantizedLinear: call quantize_model(model, bits) first.")
    stored = sum(m.weight_bytes(include_scales) for m in layers)
    fp32 = sum(m.in_features * m.out_features * 4 for m in layers)
    return {"layers": len(layers), "quantized_bytes": stored, "fp32_bytes": fp32, "ratio": stored / fp32}


# --------------------------------------------------------------------------- memory estimate
def _dims(config) -> dict:
    """The numbers the estimate needs, from any object with ChatGLM's config attribute names."""
    try:
        h, layers, heads = config.hidden_size, config.num_layers, config.num_attention_heads
        vocab = config.vocab_size
    except AttributeError as err:
        raise TypeError(
            f"estimate_memory needs a ChatGLM config (hidden_size, num_layers, num_attention_heads, "
            f"vocab_size, inner_hidden_size): {err}"
        ) from None
    ffn = getattr(config, "inner_hidden_size", None) or 4 * h
    return {"hidden": h, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab,
            "max_len": getattr(config, "max_sequence_length", 2048)}


def parameter_counts(config) -> dict:
    """ChatGLM parameter counts from the config (lm_head tied to the embedding).

    ``quantizable``: the weights of the four Linear kinds; ``float``: everything else (embedding,
    biases, LayerNorms); ``rows``: output rows of the quantized weights (one scale each).
    """
    d = _dims(config)
    h, ffn, n = d["hidden"], d["ffn"], d["layers"]
    weights = h * 3 * h + h * h + h * ffn + ffn * h
    biases = 3 * h + h + ffn + h
    layernorms = 2 * 2 * h
    embedding = d["vocab"] * h
    quantizable = n * weights
    other = n * (biases + layernorms) + embedding + 2 * h  # + the final LayerNorm
    return {"quantizable": quantizable, "float": other, "total": quantizable + other, "rows": n * biases}


def kv_cache_bytes(config, seq_len: int, batch_size: int = 1, bytes_per_value: float = 2) -> int:
    """Keys and values for every layer: ``2 * layers * batch * seq_len * hidden * bytes``."""
    d = _dims(config)
    return int(2 * d["layers"] * batch_size * seq_len * d["hidden"] * bytes_per_value)


def weight_bytes(config, weight_bits: int = 16, float_bytes: float = 2, scale_bytes: float = 2,
                 group_size: int | None = None) -> int:
    """Weights on the device: the four Linear kinds at ``weight_bits`` (+ their scales), the rest float."""
    counts = parameter_counts(config)
    if weight_bits >= 16:
        return int(counts["total"] * weight_bits / 8)
    if group_size:
        n_scales = counts["quantizable"] // group_size
    else:
        n_scales = counts["rows"]
    return int(counts["quantizable"] * weight_bits / 8 + n_scales * scale_bytes + counts["float"] * float_bytes)


def estimate_memory(config, weight_bits: int = 16, *, mode: str = "inference", batch_size: int = 1,
                    seq_len: int | None = None, prompt_len: int = 512, kv_bytes: float = 2,
                    act_bytes: float = 2, group_size: int | None = None,
                    cuda_context_gib: float = 0.75, pre_seq_len: int = 128, lora_rank: int = 8,
                    optimizer_bytes_per_param: float = 16, saved_act_factor: float = 34,
                    logits_bytes_per_value: float | None = None) -> dict:
    """GPU memory for ChatGLM inference or parameter-efficient training; every assumption is an argument.

    ``mode``: ``"inference"`` (chat with a KV cache), ``"ptuning"`` (P-Tuning v2 prefix of
    ``pre_seq_len``, the README's fine-tuning column) or ``"lora"`` (rank ``lora_rank`` on
    query_key_value, as ChatGLM-Tuning). Components, in bytes:

    * ``weights``: ``weight_bytes`` (fp16 non-quantized parts, fp16 scales).
    * ``kv_cache`` (inference): keys and values for ``seq_len`` tokens (default the config's
      ``max_sequence_length``, what a long chat fills), ``kv_bytes`` each.
    * ``activations``: inference keeps one layer's transients while prefilling ``prompt_len`` tokens:
      fp32 attention scores and probabilities, the block's widest tensors, the logits in fp16 and
      fp32; training keeps ``saved_act_factor * hidden`` bytes per token and layer for backward
      (34 for fp16 without recomputation, Korthikanti et al. 2022), ``5 * heads * key_len`` bytes of
      attention per token and layer, and the logits, their fp32 log-softmax and gradient.
    * ``dequant_workspace``: one fp16 weight matrix dequantized on the fly (quantized models).
    * ``trainable``: trainable parameters x ``optimizer_bytes_per_param`` (fp32 weight, gradient,
      Adam m and v = 16 bytes).
    * ``cuda_context``: CUDA context, cuBLAS workspace and allocator slack, in GiB.

    Returns the components in bytes, ``total_bytes`` and ``total_gib``.
    """
    if mode not in ("inference", "ptuning", "lora"):
        raise ValueError(f"mode={mode!r}: choose 'inference', 'ptuning' or 'lora'.")
    if weight_bits not in (4, 8, 16, 32):
        raise ValueError(f"weight_bits={weight_bits!r}: choose 4 or 8 (quantized), 16 or 32 (float).")
    d = _dims(config)
    h, n, heads, ffn, vocab = d["hidden"], d["layers"], d["heads"], d["ffn"], d["vocab"]
    parts = {"weights": weight_bytes(config, weight_bits, group_size=group_size)}
    if mode == "inference":
        seq_len = d["max_len"] if seq_len is None else seq_len
        p = min(prompt_len, seq_len)
        parts["kv_cache"] = kv_cache_bytes(config, seq_len, batch_size, kv_bytes)
        attention = batch_size * heads * p * p * 4 * 2  # fp32 scores + probabilities
        block = batch_size * p * (3 * h + ffn) * act_bytes  # qkv output, MLP intermediate
        per_value = 2 + 4 if logits_bytes_per_value is None else logits_bytes_per_value  # fp16 + fp32 copy
        logits = batch_size * p * vocab * per_value
        parts["activations"] = int(attention + block + logits)
        parts["trainable"] = 0
    else:
        seq_len = TRAIN_SEQ_LEN if seq_len is None else seq_len
        parts["kv_cache"] = 0  # training runs full sequences; nothing is cached between steps
        key_len = seq_len + (pre_seq_len if mode == "ptuning" else 0)
        saved = n * batch_size * seq_len * (saved_act_factor * h + 5 * heads * key_len)
        per_value = 16 if logits_bytes_per_value is None else logits_bytes_per_value  # fp16 + fp32 + grads
        parts["activations"] = int(saved + batch_size * seq_len * vocab * per_value)
        if mode == "ptuning":
            trainable = pre_seq_len * n * 2 * h  # a key and a value vector per layer and prefix slot
        else:
            trainable = n * lora_rank * (h + 3 * h)  # A [r, h] and B [3h, r] on query_key_value
        parts["trainable"] = int(trainable * optimizer_bytes_per_param)
    parts["dequant_workspace"] = 0 if weight_bits >= 16 else int(max(h * 3 * h, h * ffn) * 2)
    parts["cuda_context"] = int(cuda_context_gib * GiB)
    total = sum(parts.values())
    return {**parts, "total_bytes": total, "total_gib": total / GiB}


# README memory claims (minimum GPU memory, GB) for ChatGLM-6B.
README_CLAIMS_GB = {
    "inference": {16: 13, 8: 8, 4: 6},
    "ptuning": {16: 14, 8: 9, 4: 7},
}
# The seed notes' figures: (mode, weight bits, GB, what the figure says).
SEED_FIGURES_GB = [
    ("inference", 16, 13, "FP16 inference takes about 13 GB"),
    ("inference", 8, 11, "INT8 inference runs on one 11 GB RTX 2080 Ti"),
    ("inference", 4, 6, "INT4 inference needs 6 GB"),
    ("ptuning", 4, 7, "P-Tuning v2 (INT4) needs 7 GB"),
]


# --------------------------------------------------------------------------- bitsandbytes
_BNB_OPTIONS = (
    "Options: (1) stay on the course's own path, model.quantize(8) or model.quantize(4), which runs "
    "anywhere; (2) use the fp32 model; (3) on a machine with a CUDA GPU, `pip install -U bitsandbytes`."
)


def import_bitsandbytes():
    """Import bitsandbytes quietly, or raise a RuntimeError that lists the options (never a bare traceback).

    On CPUs without the optional ``kernels`` package, bitsandbytes logs a warning at import about a
    missing fused 4-bit kernel; it then uses its own CPU kernels, so the course silences that one logger.
    """
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # its torch.compile import trips a torch-internal deprecation
            warnings.filterwarnings("ignore", message=".*torch.jit.script_method", category=DeprecationWarning)
            import bitsandbytes
            import bitsandbytes.functional  # noqa: F401
    except Exception as err:  # ImportError, or a backend that fails to load its library
        raise RuntimeError(f"bitsandbytes is not usable here ({type(err).__name__}: {err}). {_BNB_OPTIONS}") from None
    return bitsandbytes


def _bnb_config(kind: str):
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if kind == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch.float32)
    raise ValueError(f"kind={kind!r}: choose 'int8' (LLM.int8()) or 'nf4' (QLoRA's 4-bit NormalFloat).")


def load_bnb_model(path: str | None = None, kind: str = "int8"):
    """``AutoModel.from_pretrained(path, quantization_config=...)`` with bitsandbytes, on any device.

    ``kind`` is ``"int8"`` (``BitsAndBytesConfig(load_in_8bit=True)``) or ``"nf4"`` (4-bit NormalFloat,
    fp32 compute). Without a usable bitsandbytes backend this raises a RuntimeError listing the
    options (known-failures #2) instead of bitsandbytes' own traceback.
    """
    import glmcourse
    from transformers import AutoModel

    config = _bnb_config(kind)
    import_bitsandbytes()
    # LLM.int8() multiplies in fp16 by design; on the CPU it says so at every call. Known, not a problem.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    path = path or glmcourse.COURSE_MODEL
    try:
        model = AutoModel.from_pretrained(path, quantization_config=config)
    except (RuntimeError, ImportError) as err:
        raise RuntimeError(
            f"bitsandbytes could not load {kind} weights here: {type(err).__name__}: {err}. {_BNB_OPTIONS}"
        ) from None
    return model.eval()


# --------------------------------------------------------------------------- the course model
def model_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers (a tied weight counted once), as loaded in memory."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def heldout_records(path=None, limit: int | None = None) -> list[dict]:
    """Single-turn Alpaca records of the held-out chat set (data/chat_eval.json), evenly thinned to ``limit``."""
    import json

    import glmcourse

    path = path or glmcourse.DATA_DIR / "chat_eval.json"
    with open(path, encoding="utf-8") as handle:
        records = [r for r in json.load(handle) if not r.get("history")]
    return evenly_thinned(records, limit)


def heldout_documents(path=None, limit: int | None = None) -> list[str]:
    """Held-out documents (data/corpus_eval.txt), evenly thinned to ``limit``: the lesson's loss set."""
    import glmcourse

    return evenly_thinned(read_documents(path or glmcourse.DATA_DIR / "corpus_eval.txt"), limit)


def heldout_batches(tokenizer, records, batch_size: int = 32):
    """Rows supervised on their second part only (-100 on the context), collated in batches.

    A record (dict) becomes a ChatGLM-Tuning row: its prompt ``[gMASK] <sop>``, then its output and ``<eop>``.
    A document (str) becomes GLM's document-level task: its first half, ``[gMASK] <sop>``, then the
    model writes the second half. The model rarely misses a chat answer (its loss is near 0), so the
    quantization lesson measures the documents, where the loss has room to move.
    """
    from glmcourse.data import DataCollator, encode_example, format_example

    collate = DataCollator.from_tokenizer(tokenizer)
    eop = tokenizer.eop_token_id
    rows = []
    for record in records:
        if isinstance(record, str):
            ids = tokenizer.encode(record, add_special_tokens=False)
            half = len(ids) // 2
            context, target = ids[:half] + [tokenizer.gmask_token_id, tokenizer.sop_token_id], ids[half:]
        else:
            context, target = encode_example(tokenizer, format_example(record))
        rows.append({"input_ids": context + target + [eop], "seq_len": len(context)})
    return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def heldout_loss(model, batches) -> float:
    """Mean cross-entropy per supervised token (the target and <eop>) over all batches."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        logits = model(input_ids=batch["input_ids"]).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                 ignore_index=-100, reduction="sum").item()
        count += int((labels != -100).sum())
    return total / count


def greedy_answers(model, tokenizer, records, max_new_tokens: int = 32) -> list[str]:
    """Greedy chat replies (ChatGLM prompt format) to each record's query."""
    from glmcourse.chat import build_prompt, process_response
    from glmcourse.evaluation import greedy_replies, record_query

    prompts = [build_prompt(record_query(r)) for r in records]
    return [process_response(t) for t in greedy_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens)]


def agreement(answers, reference) -> float:
    """Share of answers identical to the reference answers."""
    return sum(a == b for a, b in zip(answers, reference)) / max(len(reference), 1)


QUANT_VARIANTS = {  # name -> (bits, group_size) for quantize_model
    "int8 per-row": (8, None),
    "int4 per-row": (4, None),
    "int4 group 64": (4, 64),
    "int4 group 32": (4, 32),
}


def compare_quantized(model, tokenizer, records, variants=None, answer_records=None,
                      max_new_tokens: int = 32) -> dict:
    """Held-out loss (on ``records``: documents or chat records, see ``heldout_batches``), weight bytes and
    answer agreement (on ``answer_records``, chat records) of each ``quantize_model`` variant vs fp32.

    ``model`` stays untouched (each variant quantizes a deep copy). Returns ``{name: row}`` with the
    fp32 row first; a row holds ``loss``, ``loss_increase`` (relative), ``bytes_ratio`` (quantized
    layers vs fp32, scales included), and, if ``answer_records`` is given, ``answers`` (greedy
    replies) and ``agreement`` (share of replies equal to fp32's).
    """
    import copy

    variants = QUANT_VARIANTS if variants is None else variants
    batches = heldout_batches(tokenizer, records)
    base_loss = heldout_loss(model, batches)
    base_answers = greedy_answers(model, tokenizer, answer_records, max_new_tokens) if answer_records else None
    rows = {"fp32": {"loss": base_loss, "loss_increase": 0.0, "bytes_ratio": 1.0,
                     "agreement": 1.0 if answer_records else None, "answers": base_answers}}
    for name, (bits, group_size) in variants.items():
        quantized = quantize_model(copy.deepcopy(model), bits, group_size)
        loss = heldout_loss(quantized, batches)
        row = {"loss": loss, "loss_increase": loss / base_loss - 1,
               "bytes_ratio": quantized_weight_bytes(quantized)["ratio"], "agreement": None, "answers": None}
        if answer_records:
            row["answers"] = greedy_answers(quantized, tokenizer, answer_records, max_new_tokens)
            row["agreement"] = agreement(row["answers"], base_answers)
        rows[name] = row
        del quantized
    return rows


def load_course_model(path: str | None = None):
    """The shipped course model (fp32, eval mode) and its tokenizer, with a clear error if it is missing."""
    import glmcourse
    from transformers import AutoModel, AutoTokenizer

    path = path or glmcourse.COURSE_MODEL
    if not (Path(path) / "model.safetensors").exists():
        raise FileNotFoundError(
            f"{path} has no model.safetensors: build the course model with "
            "`python -m glmcourse.build_course_model` (or restore it with git)."
        )
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def bench_quant(path: str | None = None, limit: int | None = None, answers: int = 64,
                with_bitsandbytes: bool = True) -> dict:
    """The issue's figures on the course model, as a flat dict (for ``make bench`` and the notebook).

    Keys: ``fp32_loss``; per variant ``<name> loss increase %``, ``<name> bytes ratio`` and
    ``<name> answer agreement %``; with bitsandbytes, ``bnb <kind> ...`` footprint ratio and logits
    error (or ``bnb error`` with the reason).
    """
    from glmcourse.settings import seed_everything

    seed_everything(0)
    model, tokenizer = load_course_model(path)
    records, documents = heldout_records(), heldout_documents(limit=limit)
    answer_records = records[:: max(1, len(records) // answers)][:answers] if answers else None
    table = compare_quantized(model, tokenizer, documents, answer_records=answer_records)
    out = {"heldout documents": len(documents), "fp32 loss": table["fp32"]["loss"]}
    for name, row in table.items():
        if name == "fp32":
            continue
        out[f"{name} loss increase %"] = 100 * row["loss_increase"]
        out[f"{name} bytes ratio"] = row["bytes_ratio"]
        if row["agreement"] is not None:
            out[f"{name} answer agreement %"] = 100 * row["agreement"]
    if with_bitsandbytes:
        try:
            out.update(bench_bitsandbytes(model, tokenizer, documents, path))
        except RuntimeError as err:
            out["bnb error"] = str(err)
    return out


@torch.no_grad()
def bench_bitsandbytes(model, tokenizer, records, path: str | None = None) -> dict:
    """bitsandbytes int8 and NF4 loads of the same model: memory vs fp32, logits error, held-out loss."""
    batches = heldout_batches(tokenizer, records)
    reference = torch.cat([model(input_ids=b["input_ids"]).logits.flatten() for b in batches])
    base_loss = heldout_loss(model, batches)
    out = {}
    for kind in ("int8", "nf4"):
        qmodel = load_bnb_model(path, kind)
        logits = torch.cat([qmodel(input_ids=b["input_ids"]).logits.float().flatten() for b in batches])
        out[f"bnb {kind} memory ratio"] = model_bytes(qmodel) / model_bytes(model)
        out[f"bnb {kind} logits sqnr dB"] = sqnr_db(reference, logits)
        out[f"bnb {kind} loss increase %"] = 100 * (heldout_loss(qmodel, batches) / base_loss - 1)
        del qmodel
    return out


# --------------------------------------------------------------------------- plots
def plot_error_histogram(w: torch.Tensor, w_hat: torch.Tensor, title: str = "quantization error", ax=None,
                         bins: int = 80):
    """Histogram of ``w_hat - w``, with the MSE and SQNR in the legend."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    err = (w_hat.double() - w.double()).flatten().numpy()
    ax.hist(err, bins=bins, color="tab:blue", alpha=0.8,
            label=f"MSE {mse(w, w_hat):.2e}, SQNR {sqnr_db(w, w_hat):.1f} dB")
    ax.set(title=title, xlabel="dequantized - original weight (weight units)", ylabel="number of weights")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_sqnr_vs_bits(curves: dict, ax=None):
    """``curves``: ``{label: {bits: sqnr_db}}`` -> SQNR against bit width, with the 6.02 dB/bit rule."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for label, points in curves.items():
        bits = sorted(points)
        ax.plot(bits, [points[b] for b in bits], marker="o", label=label)
    ax.set(title="Quantization error against bit width", xlabel="bits per weight",
           ylabel="SQNR (dB, higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_levels(w: torch.Tensor, levels: dict, ax=None):
    """Histogram of normalized weights with each 4-bit grid's levels drawn as ticks above it."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    ax.hist((w / w.abs().max()).flatten().numpy(), bins=120, color="lightgray", density=True,
            label="weights / max|w|")
    top = ax.get_ylim()[1]
    for i, (name, values) in enumerate(levels.items()):
        y = top * (1.05 + 0.1 * i)
        ax.plot(values.numpy(), [y] * len(values), "|", markersize=14, mew=2, label=f"{name} levels")
    ax.set(title="4-bit grids over normally distributed weights", xlabel="value / max|w| (unitless)",
           ylabel="density")
    ax.legend(fontsize=8, loc="upper left")
    return ax


# --------------------------------------------------------------------------- exercise checkers

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
        result = _call(fn, w.clone())
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError("return a pair (q, scale)")
        q, scale = result
        want_q, want_scale = quantize_absmax(w, 8)
        if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
            raise AssertionError(f"q should be an int8 tensor, got {getattr(q, 'dtype', type(q).__name__)}: "
                                 "finish with .to(torch.int8)")
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        if scale.numel() != w.shape[0]:
            raise AssertionError(f"one scale per row: expected {w.shape[0]} scales, got {scale.numel()} "
                                 "(take the max over dim=-1)")
        if not torch.isfinite(scale).all() or (scale <= 0).any():
            raise AssertionError("an all-zero row gave a zero or NaN scale: replace a zero scale by 1")
        nonzero = w.abs().amax(-1) > 0
        if not torch.allclose(scale[nonzero], want_scale.reshape(-1)[nonzero]):
            raise AssertionError(f"scale should be max|row| / 127: want {want_scale.reshape(-1).tolist()}, "
                                 f"got {scale.tolist()}")
        if not torch.equal(q, want_q):
            i, j = (q != want_q).nonzero()[0].tolist()
            exact = float(w[i, j] / want_scale.reshape(-1)[i])
            raise AssertionError(f"w[{i}, {j}] / scale = {exact:.2f} should give {int(want_q[i, j])}, got {int(q[i, j])}: "
                                 "use torch.round (it rounds .5 to the even neighbour), not int() or floor")
    print("Correct: per-row absmax INT8 exactly as ChatGLM-6B computes it.")


def check_zeropoint_quantize(fn) -> None:
    """Exercise: ``fn(w, bits)`` returns ``(q, scale, zero_point)`` for the whole tensor (min-max).

    Checked: codes in ``[-2^(bits-1), 2^(bits-1) - 1]``, ``(q - zero_point) * scale`` within one step of
    w, and the codes spread over (almost) all ``2^bits`` values even when w is lopsided.
    """
    gen = torch.Generator().manual_seed(1)
    cases = [(torch.rand(6, 32, generator=gen) * 3 - 0.5, 8), (torch.rand(4, 16, generator=gen) * 2 - 0.2, 4),
             (torch.randn(8, 8, generator=gen), 8)]
    for w, bits in cases:
        result = _call(fn, w.clone(), bits)
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise AssertionError("return a triple (q, scale, zero_point)")
        q, scale, zero_point = (torch.as_tensor(t) for t in result)
        qmin, qmax = qrange(bits, symmetric=False)
        if q.is_floating_point():
            raise AssertionError(f"q should hold integers (int8), got {q.dtype}")
        if q.min() < qmin or q.max() > qmax:
            raise AssertionError(f"{bits}-bit codes must lie in [{qmin}, {qmax}], got [{int(q.min())}, {int(q.max())}]: "
                                 "clamp after rounding")
        w_hat = (q.double() - zero_point.double()) * scale.double()
        step = float(scale.double().max())
        worst = float((w_hat - w.double()).abs().max())
        if worst > step * 1.01:
            raise AssertionError(f"(q - zero_point) * scale is off by up to {worst:.4f}, more than one step "
                                 f"({step:.4f}): check scale = (max - min) / (2^bits - 1) and the zero point's sign")
        if int(q.max()) - int(q.min()) < qmax - qmin - 2:
            raise AssertionError(f"the codes only span [{int(q.min())}, {int(q.max())}] of [{qmin}, {qmax}]: an "
                                 "asymmetric scheme maps min(w) near the lowest code and max(w) near the highest")
    print("Correct: min-max quantization with a zero point uses the whole integer range.")


def check_pack_int4(fn) -> None:
    """Exercise: ``fn(q)`` packs int4 codes [out, in] into int8 [out, in / 2], even column in the high nibble."""
    gen = torch.Generator().manual_seed(2)
    cases = [torch.tensor([[1, 2, -1, 7, -8, 0]], dtype=torch.int8),
             torch.randint(-7, 8, (4, 10), generator=gen).to(torch.int8)]
    for q in cases:
        got = _call(fn, q.clone())
        want = pack_int4(q)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            raise AssertionError(f"for q of shape {tuple(q.shape)} return a tensor of shape {tuple(want.shape)}")
        if got.dtype != torch.int8:
            raise AssertionError(f"return int8 bytes, got {got.dtype}")
        if torch.equal(got, pack_int4(q[..., [i ^ 1 for i in range(q.shape[-1])]])):
            raise AssertionError("the nibbles are swapped: the EVEN column goes in the HIGH nibble (q[:, 0::2] << 4)")
        if not torch.equal(got, want):
            i, j = (got != want).nonzero()[0].tolist()
            pair = q[i, 2 * j:2 * j + 2].tolist()
            raise AssertionError(f"the byte for the pair {pair} is wrong: mask the odd value with & 0xF so a "
                                 "negative code does not spill its sign bits into the high nibble")
    print("Correct: two int4 codes per byte, in ChatGLM's order.")


def check_kv_cache_bytes(fn) -> None:
    """Exercise: ``fn(config, seq_len, batch_size)`` returns the fp16 KV-cache size in bytes."""
    from types import SimpleNamespace

    configs = [SimpleNamespace(hidden_size=4096, num_layers=28, num_attention_heads=32, vocab_size=130528),
               SimpleNamespace(hidden_size=256, num_layers=4, num_attention_heads=8, vocab_size=4096)]
    for config in configs:
        for seq_len, batch in [(2048, 1), (100, 3)]:
            got = _call(fn, config, seq_len, batch)
            want = kv_cache_bytes(config, seq_len, batch, 2)
            if got == want:
                continue
            hints = {want // 2: "keys AND values: multiply by 2", want * 2: "fp16 is 2 bytes per value, not 4",
                     want // 4: "two tensors (k and v) of 2 bytes each",
                     want // config.num_layers: "every layer keeps its own cache"}
            hint = hints.get(got, "bytes = 2 (k, v) x layers x batch x seq_len x hidden x 2 bytes")
            raise AssertionError(f"hidden {config.hidden_size}, {config.num_layers} layers, seq_len {seq_len}, "
                                 f"batch {batch}: want {want:,} bytes, got {got}: {hint}")
    print("Correct: 0.875 GiB of keys and values for one 2048-token ChatGLM-6B conversation.")
