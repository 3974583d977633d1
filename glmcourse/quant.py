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

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from glmcourse.i18n import _

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


# --------------------------------------------------------------------------- range checks
def check_bits(bits) -> int:
    """ChatGLM-6B supports only 4 and 8 bits: anything else is a ValueError naming both."""
    if isinstance(bits, bool) or bits not in ALLOWED_BITS:
        raise ValueError(_(
            "bits={bits!r} is not supported: ChatGLM-6B's quantize(bits) accepts only "
            "{low} or {high} (int8 or packed int4). "
            "For other widths use quantize_symmetric(w, bits) in the lesson's exploration.",
            bits=bits, low=ALLOWED_BITS[0], high=ALLOWED_BITS[1]
        ))
    return int(bits)


def _check_explore_bits(bits) -> int:
    if isinstance(bits, bool) or bits not in EXPLORE_BITS:
        raise ValueError(_("bits={bits!r} is out of range: the exploration helpers take 2 to 8 bits.", bits=bits))
    return int(bits)


def _check_float(w: torch.Tensor, what: str = "w") -> None:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        kind = w.dtype if isinstance(w, torch.Tensor) else type(w).__name__
        raise TypeError(_("{what} must be a floating-point tensor, got {kind}.", what=what, kind=kind))


def qrange(bits: int, symmetric: bool = True) -> tuple[int, int]:
    """Integer range of a signed ``bits``-wide code: symmetric drops the lowest value (-8 for int4)."""
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if symmetric else -qmax - 1), qmax


# --------------------------------------------------------------------------- symmetric (absmax)
def quantize_symmetric(w: torch.Tensor, bits: int = 8, dim: int | None = -1, scale_dtype: torch.dtype | None = None):
    """Absmax quantization for any width from 2 to 8 bits (the lesson's exploration helper).

    ``dim=-1`` gives one scale per row (ChatGLM), ``dim=None`` one scale for the whole tensor.
    Returns ``(q, scale)``: q is int8, scale keeps w's dtype and has w's shape with ``dim`` reduced to
    size 1, so ``q * scale`` broadcasts back. An all-zero row gets scale 1 (its codes are all 0).
    ``scale_dtype`` rounds the scale to that dtype first (its values; the tensor keeps w's dtype).
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
    if scale_dtype is not None:
        scale = scale.to(scale_dtype).to(w.dtype)
    q = torch.round(w / scale).clamp_(-qmax, qmax).to(torch.int8)  # torch.round: half to even
    return q, scale


def quantize_absmax(w: torch.Tensor, bits: int = 8, dim: int = -1):
    """ChatGLM-6B's weight quantization: per row along ``dim``, ``scale = max|w| / (2^(bits-1) - 1)``.

    Only 4 and 8 bits (else ValueError). Returns ``(q int8, scale)`` as ``quantize_symmetric``.

    ChatGLM-6B's ``quantize`` always stores the scale in fp16 (``(...).half()``) and then divides the
    weight by that rounded scale, in the weight's dtype. We do the same, so that fp32 weights get the
    codes ChatGLM-6B's code would give them: the scale's values are fp16 numbers, its tensor keeps w's
    dtype. (With an exact fp32 scale, a weight near a rounding tie can land one code away.)
    """
    check_bits(bits)
    if dim is None:
        raise ValueError(_("quantize_absmax is per row: pass dim=-1 (or use quantize_symmetric(w, bits, dim=None))."))
    return quantize_symmetric(w, bits, dim, scale_dtype=torch.float16)


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
            raise ValueError(_(
                "scale has {n_groups} groups per row but q has {columns} columns, "
                "which is not a multiple: pass the scale returned with this q.", n_groups=n_groups,
                columns=q.shape[-1]
            ))
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
        raise ValueError(_("group_size must be a positive int, got {group_size!r}.", group_size=group_size))
    n_in = w.shape[-1]
    if n_in % group_size:
        raise ValueError(_(
            "group_size={group_size} does not divide the input dimension {n_in}: "
            "choose a divisor of {n_in} (e.g. 32 or 64).", group_size=group_size, n_in=n_in
        ))
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
        raise TypeError(_("pack_int4 expects int8 codes, got {dtype}: quantize with bits=4 first.", dtype=q.dtype))
    if q.shape[-1] % 2:
        raise ValueError(_(
            "pack_int4 needs an even input dimension to pair columns, got {columns} "
            "(shape {shape}): pad the weight with a zero column first.", columns=q.shape[-1], shape=tuple(q.shape)
        ))
    if q.numel() and (q.min() < -8 or q.max() > 7):
        raise ValueError(_(
            "pack_int4: codes must lie in [-8, 7], got [{low}, {high}]. "
            "Quantize with bits=4 before packing.", low=int(q.min()), high=int(q.max())
        ))
    high, low = q[..., 0::2], q[..., 1::2]
    return (high << 4) | (low & 0x0F)


def unpack_int4(packed: torch.Tensor, dtype: torch.dtype = torch.int8) -> torch.Tensor:
    """Inverse of ``pack_int4``: int8 [..., n] -> [..., 2n] codes, each nibble sign-extended.

    ``dtype`` chooses the output type (a float type skips an extra copy when dequantizing).
    """
    if packed.dtype != torch.int8:
        raise TypeError(_("unpack_int4 expects the int8 bytes from pack_int4, got {dtype}.", dtype=packed.dtype))
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
        raise ValueError(_("block_size={block_size} must divide the number of weights ({n}).", block_size=block_size,
                           n=w.numel()))
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
    if scale.dim() == 1:  # THUDM's checkpoints store one scale per row as a vector [out]
        scale = scale.unsqueeze(-1)
    return dequantize(codes, scale, dtype)


class QuantizedLinear(nn.Linear):
    """Weight-only quantized Linear: int8 codes (or int4 packed two per byte) and float scales.

    Buffers: ``weight`` (int8 [out, in] for 8 bits, [out, in / 2] for packed 4 bits) and
    ``weight_scale`` ([out, 1] per row, or [out, in / group_size] per group; a vector [out] in THUDM's
    checkpoints, see ``empty_quantized_layers``), as ChatGLM names them, so ``state_dict()`` and ``.to()``
    work; ``.to(dtype)`` casts the scales and bias, never the codes. ``forward`` dequantizes to the
    input's dtype, then runs ``F.linear``.

    It subclasses ``nn.Linear`` only so that peft's LoRA wraps it like the Linear it replaces (LoRA and
    PeftModel.from_pretrained on an INT4/INT8 base); nn.Linear's float ``weight`` Parameter is never
    created (``nn.Module.__init__`` is called directly) and ``reset_parameters`` does nothing.
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 8, group_size: int | None = None,
                 bias: bool = True, dtype: torch.dtype = torch.float32, device=None):
        nn.Module.__init__(self)
        self.bits = check_bits(bits)
        if bits == 4 and in_features % 2:
            raise ValueError(_("int4 packing needs an even in_features, got {in_features}.", in_features=in_features))
        if group_size is not None and (group_size < 1 or in_features % group_size):
            raise ValueError(_(
                "group_size={group_size} must divide in_features={in_features}: choose e.g. 32 or 64.",
                group_size=group_size, in_features=in_features
            ))
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

    def reset_parameters(self) -> None:
        """Nothing to initialize: the codes come from ``from_linear`` or from a checkpoint."""

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


def float_target_linears(model: nn.Module, error: type, why_not_twice: str, who: str | None = None):
    """The float Linears that ``quantize`` replaces, as (name, module); ``error`` if some are already quantized
    (the message ends with ``why_not_twice``) or if the model has none of ChatGLM's names."""
    targets = [(name, module) for name, module in model.named_modules() if _is_target(name)]
    done = [(name, module) for name, module in targets if isinstance(module, QuantizedLinear)]
    if done:
        raise error(_("the model is already quantized ({name} holds {bits}-bit codes): {why_not_twice}",
                      name=done[0][0], bits=done[0][1].bits, why_not_twice=why_not_twice))
    linears = [(name, module) for name, module in targets if isinstance(module, nn.Linear)]
    if not linears:
        names = ", ".join(QUANTIZED_LINEARS)
        raise error(_("{who} found no Linear named like ChatGLM's ({names}); is this a ChatGLM model?", who=who,
                      names=names) if who else
                    _("found no Linear named like ChatGLM's ({names}); is this a ChatGLM model?", names=names))
    return linears


def quantize_model(model: nn.Module, bits: int, group_size: int | None = None) -> nn.Module:
    """ChatGLM-6B's ``quantize(bits)``: replace the four Linear kinds of every block, in place.

    ``attention.query_key_value``, ``attention.dense``, ``mlp.dense_h_to_4h`` and
    ``mlp.dense_4h_to_h`` become ``QuantizedLinear`` (per-row scales, or per group with
    ``group_size``); embeddings, LayerNorms and the lm_head stay float. Returns the model.
    """
    check_bits(bits)
    linears = float_target_linears(
        model, ValueError, _("quantizing twice loses precision; reload the float model and call quantize once."),
        who="quantize_model")
    for name, linear in linears:
        parent_name, _dot, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantizedLinear.from_linear(linear, bits, group_size))
    return model


def quantized_weight_bytes(model: nn.Module, include_scales: bool = True) -> dict:
    """Bytes held by the quantized layers, against what the same weights take in fp32.

    Returns ``{"layers", "quantized_bytes", "fp32_bytes", "ratio"}`` (biases are excluded from both).
    """
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    if not layers:
        raise ValueError(_("the model has no QuantizedLinear: call quantize_model(model, bits) first."))
    stored = sum(m.weight_bytes(include_scales) for m in layers)
    fp32 = sum(m.in_features * m.out_features * 4 for m in layers)
    return {"layers": len(layers), "quantized_bytes": stored, "fp32_bytes": fp32, "ratio": stored / fp32}


# --------------------------------------------------------------------------- THUDM's INT4/INT8 checkpoints
# THUDM publishes ChatGLM-6B pre-quantized (chatglm-6b-int4, chatglm-6b-int8): config.json holds
# ``quantization_bit`` and every quantized Linear stores a packed int8 ``weight`` (two int4 codes per byte,
# the even column in the high nibble) and an fp16 ``weight_scale`` vector [out]; the bias and every other
# tensor stay fp16. Its code quantizes the fp16 weights in fp16 (scale = max|w| / (2^(bits-1) - 1) rounded
# to fp16, codes = round(w / scale)), which is what ``quantize_absmax`` does on an fp16 weight.
THUDM_DTYPE = torch.float16


class QuantizedCheckpointError(ValueError):
    """A quantized model used as if it were a float one (or the reverse): the message names the path that works."""


def _float_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return float_target_linears(
        model, QuantizedCheckpointError, _("THUDM's layout is written from the float model, whose fp16 weights give "
                                           "the codes. Load the fp16 folder (without quantize) and pass that model."))


@torch.no_grad()
def thudm_quantized_state_dict(model: nn.Module, bits: int) -> dict[str, torch.Tensor]:
    """The state dict of THUDM's chatglm-6b-int4 (``bits=4``) or chatglm-6b-int8 (``bits=8``) layout.

    For each of the four Linear kinds of every block: ``<name>.weight`` int8 [out, in] (8 bits) or packed
    [out, in / 2] (4 bits), ``<name>.weight_scale`` fp16 [out], ``<name>.bias`` fp16. Every other tensor of
    ``model.state_dict()`` in fp16 (the P-Tuning prefix, if any, is left out: it is not part of the base).
    The codes are computed from the fp16 weights, so they equal those of ``quantize(bits)`` on the model
    loaded in fp16. Tensors are returned contiguous on the CPU. The caller writes ``quantization_bit`` into
    the config (``save_quantized`` does both).
    """
    bits = check_bits(bits)
    linears = dict(_float_linears(model))
    state = {}
    for key, tensor in model.state_dict().items():
        if "prefix_encoder." in key:
            continue
        module_name, _, leaf = key.rpartition(".")
        if module_name in linears and leaf == "weight":
            q, scale = quantize_absmax(tensor.detach().to(THUDM_DTYPE), bits)
            state[key] = (pack_int4(q) if bits == 4 else q).contiguous().cpu()
            state[f"{module_name}.weight_scale"] = scale.reshape(-1).to(THUDM_DTYPE).contiguous().cpu()
        elif tensor.is_floating_point():
            state[key] = tensor.detach().to(THUDM_DTYPE).contiguous().cpu()
        else:
            state[key] = tensor.detach().contiguous().cpu()
    return state


def empty_quantized_layers(model: nn.Module, bits: int) -> nn.Module:
    """Replace the four Linear kinds by ``QuantizedLinear`` of THUDM's layout, holding nothing yet.

    What ``from_pretrained`` needs for a folder whose config has ``quantization_bit``: the modules have
    the checkpoint's shapes (codes [out, in * bits / 8], scales [out]) on the Linear's device and dtype
    (the meta device while transformers builds the model), and loading fills them. Nothing is quantized.
    """
    bits = check_bits(bits)
    for name, linear in _float_linears(model):
        if bits == 4 and linear.in_features % 2:
            raise QuantizedCheckpointError(_("{name}: int4 packing needs an even in_features, got {in_features}.",
                                             name=name, in_features=linear.in_features))
        weight = linear.weight
        layer = QuantizedLinear(linear.in_features, linear.out_features, bits, bias=linear.bias is not None,
                                dtype=weight.dtype, device=weight.device)
        layer.weight_scale = torch.ones(linear.out_features, dtype=weight.dtype, device=weight.device)  # THUDM: [out]
        parent_name, _dot, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
    return model


def save_quantized(model: nn.Module, output_dir, bits: int, overwrite: bool = False) -> Path:
    """Write ``model`` (the float model) as a pre-quantized folder: config.json with ``quantization_bit`` and
    model.safetensors in THUDM's layout (``thudm_quantized_state_dict``). ``AutoModel.from_pretrained``
    loads it back quantized (after ``import glmcourse``). Refuses a folder that already holds a model unless
    ``overwrite``; the weights are written to a temp file and renamed into place."""
    import copy
    import os
    import tempfile

    from safetensors.torch import save_file

    state = thudm_quantized_state_dict(model, bits)
    output_dir = Path(output_dir)
    if (output_dir / "config.json").exists() and not overwrite:
        raise FileExistsError(_("{folder} already holds a model (config.json): choose an empty folder, or pass "
                                "overwrite=True to replace it.", folder=output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    config.quantization_bit = bits
    config.dtype = THUDM_DTYPE
    for unwanted in ("auto_map",):  # the course model needs no folder code; nothing here runs any
        if hasattr(config, unwanted):
            delattr(config, unwanted)
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".tmp", dir=output_dir)
    os.close(fd)
    try:
        save_file(_untie(state), tmp, metadata={"format": "pt"})
        os.chmod(tmp, 0o644)
        os.replace(tmp, output_dir / "model.safetensors")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    config.save_pretrained(output_dir)  # written last: a folder with a config always has its weights
    return output_dir


def _untie(state: dict) -> dict:
    """safetensors refuses tensors sharing memory (the tied lm_head): keep one copy of each."""
    seen, out = {}, {}
    for key, tensor in state.items():
        ptr = (tensor.data_ptr(), tensor.shape, tensor.dtype)
        if ptr in seen and tensor.numel():
            continue
        seen[ptr] = key
        out[key] = tensor
    return out


# --------------------------------------------------------------------------- a model's bytes, and the variants the lesson compares
def model_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers (a tied weight counted once), as loaded in memory."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


QUANT_VARIANTS = {  # name -> (bits, group_size) for quantize_model
    "int8 per-row": (8, None),
    "int4 per-row": (4, None),
    "int4 group 64": (4, 64),
    "int4 group 32": (4, 32),
}
