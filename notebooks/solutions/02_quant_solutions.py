"""Reference solutions for the exercises in notebooks/02_quantization.ipynb.

Try the exercises first; the notebook checks these with the same checkers as your answers.
"""
import torch


def absmax_quantize(w):
    """Exercise 1: per-row absmax INT8, as ChatGLM-6B. Returns (q int8, scale [rows, 1])."""
    scale = w.abs().amax(dim=-1, keepdim=True) / 127  # step 1: the range is [-max|row|, max|row|]
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row: any scale works
    q = torch.round(w / scale).to(torch.int8)  # step 2: round half to even, |q| <= 127 by construction
    return q, scale


def zeropoint_quantize(w, bits):
    """Exercise 2: asymmetric min-max over the whole tensor. Returns (q, scale, zero_point)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = w.min(), w.max()
    scale = (hi - lo) / (qmax - qmin)  # 2^bits codes between min and max
    zero_point = torch.round(qmin - lo / scale)  # the code that min(w) lands on is qmin
    q = torch.clamp(torch.round(w / scale) + zero_point, qmin, qmax).to(torch.int8)
    return q, scale, zero_point


def pack_int4(q):
    """Exercise 3: two int4 codes per byte, even column high, odd column low (masked to 4 bits)."""
    return (q[..., 0::2] << 4) | (q[..., 1::2] & 0x0F)


def kv_cache_bytes(config, seq_len, batch_size):
    """Exercise 4: keys and values of every layer, fp16 (2 bytes per value)."""
    per_token = 2 * config.num_layers * config.hidden_size * 2  # (k, v) x layers x hidden x bytes
    return per_token * seq_len * batch_size
