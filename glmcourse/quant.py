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

import torch
import torch.nn.functional as F
from torch import nn

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
        scale = scale.repeat_interleave(q.shape[-1] // n_groups, dim=-1)
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


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_int4``: int8 [..., n] -> int8 [..., 2n], each nibble sign-extended."""
    if packed.dtype != torch.int8:
        raise TypeError(f"unpack_int4 expects the int8 bytes from pack_int4, got {packed.dtype}.")
    high = packed >> 4  # arithmetic shift on int8 keeps the sign
    low = (packed << 4) >> 4  # move the low nibble up, then shift back with sign extension
    return torch.stack((high, low), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


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
    codes = unpack_int4(qweight) if bits == 4 else qweight
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
        seq_len = 256 if seq_len is None else seq_len
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
