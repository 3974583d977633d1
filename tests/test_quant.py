"""Tests for lesson 02 (glmcourse.quant): expected values follow from the quantization rules."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from glmcourse import course_data, evaluation, loading, memory, quant
from glmcourse.exercises import quant as checks


# --------------------------------------------------------------------------- a tiny ChatGLM-named tree
class _Attention(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.query_key_value = nn.Linear(h, 3 * h)
        self.dense = nn.Linear(h, h)


class _MLP(nn.Module):
    def __init__(self, h, ffn):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(h, ffn)
        self.dense_4h_to_h = nn.Linear(ffn, h)


class _Block(nn.Module):
    def __init__(self, h, ffn):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(h)
        self.attention = _Attention(h)
        self.post_attention_layernorm = nn.LayerNorm(h)
        self.mlp = _MLP(h, ffn)

    def forward(self, x):
        a = self.attention.dense(self.attention.query_key_value(self.input_layernorm(x))[..., : x.shape[-1]])
        x = x + a
        return x + self.mlp.dense_4h_to_h(torch.tanh(self.mlp.dense_h_to_4h(self.post_attention_layernorm(x))))


class _Transformer(nn.Module):
    def __init__(self, vocab, h, ffn, layers):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, h)
        self.layers = nn.ModuleList(_Block(h, ffn) for _ in range(layers))
        self.final_layernorm = nn.LayerNorm(h)


class TinyChatGLM(nn.Module):
    """Module names as ChatGLM-6B's, so quantize_model can be tested without the real model."""

    def __init__(self, vocab=50, h=32, ffn=64, layers=2):
        super().__init__()
        self.transformer = _Transformer(vocab, h, ffn, layers)
        self.lm_head = nn.Linear(h, vocab, bias=False)
        self.lm_head.weight = self.transformer.word_embeddings.weight

    def forward(self, ids):
        x = self.transformer.word_embeddings(ids)
        for block in self.transformer.layers:
            x = block(x)
        return self.lm_head(self.transformer.final_layernorm(x))


def _tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyChatGLM(**kw).eval()


# --------------------------------------------------------------------------- absmax
def test_absmax_matches_the_chatglm_rule_on_a_hand_example():
    w = torch.tensor([[1.0, -0.5, 0.25, 0.0], [-2.0, 1.0, 0.5, 3.0]])
    q, scale = quant.quantize_absmax(w, bits=8)
    assert q.dtype == torch.int8 and scale.shape == (2, 1)
    assert torch.equal(scale.squeeze(1), torch.tensor([1.0 / 127, 3.0 / 127]).half().float())  # kept in fp16
    # row 0: 127 * [1, -0.5, 0.25, 0] = [127, -63.5, 31.75, 0] -> -63.5 rounds half to even: -64
    assert q[0].tolist() == [127, -64, 32, 0]
    # row 1: 127/3 * [-2, 1, 0.5, 3] = [-84.67, 42.33, 21.17, 127]
    assert q[1].tolist() == [-85, 42, 21, 127]


def test_int4_codes_lie_in_minus7_to_7_and_extremes_hit_the_ends():
    torch.manual_seed(1)
    w = torch.randn(16, 40)
    q, scale = quant.quantize_absmax(w, bits=4)
    assert q.min() >= -7 and q.max() <= 7
    assert torch.equal(scale.squeeze(1), (w.abs().amax(1) / 7).half().float())
    assert (q.abs().amax(1) == 7).all()  # each row's largest |w| maps to +-7


def test_round_half_to_even_on_exact_ties():
    # scale 1 (max 127): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0
    w = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5]])
    q, _ = quant.quantize_absmax(w, bits=8)
    assert q[0].tolist() == [127, 0, 2, 2, 0, -2]


def test_per_column_dim_and_zero_rows():
    w = torch.tensor([[0.0, 2.0], [0.0, -4.0]])
    q, scale = quant.quantize_absmax(w, bits=8, dim=0)
    assert scale.shape == (1, 2) and scale[0, 0] == 1.0  # all-zero column: scale 1, no NaN
    assert q[:, 0].tolist() == [0, 0] and q[:, 1].tolist() == [64, -127]
    q, scale = quant.quantize_absmax(torch.zeros(3, 4), bits=4)
    assert (q == 0).all() and torch.isfinite(scale).all()
    assert (quant.dequantize(q, scale) == 0).all()


@pytest.mark.parametrize("bits", [3, 2, 16, 0, 7, True, "8"])
def test_unsupported_bits_are_a_value_error_naming_4_and_8(bits):
    with pytest.raises(ValueError, match="4 or 8"):
        quant.quantize_absmax(torch.randn(2, 4), bits=bits)
    with pytest.raises(ValueError, match="4 or 8"):
        quant.quantize_model(_tiny(), bits)


@pytest.mark.parametrize("bits", [8, 4])
def test_absmax_round_trip_error_is_at_most_half_a_step(bits):
    torch.manual_seed(2)
    w = torch.randn(32, 64)
    q, scale = quant.quantize_absmax(w, bits)
    err = (quant.dequantize(q, scale) - w).abs()
    assert (err <= scale / 2 + 1e-6).all()


def test_fp16_weights_keep_fp16_scales():
    w = torch.randn(4, 8).half()
    q, scale = quant.quantize_absmax(w, bits=8)
    assert scale.dtype == torch.float16 and q.dtype == torch.int8


def test_symmetric_explorer_takes_2_to_8_bits_and_sqnr_grows_about_6db_per_bit():
    torch.manual_seed(3)
    w = torch.randn(64, 256)
    sqnr = {}
    for bits in range(2, 9):
        q, scale = quant.quantize_symmetric(w, bits)
        assert q.abs().max() <= 2 ** (bits - 1) - 1
        sqnr[bits] = quant.sqnr_db(w, quant.dequantize(q, scale))
    for bits in range(4, 9):  # the 6.02 dB/bit rule holds once the step is small
        assert 4.5 < sqnr[bits] - sqnr[bits - 1] < 7.5
    with pytest.raises(ValueError, match="2 to 8"):
        quant.quantize_symmetric(w, 9)


def test_per_tensor_scale_is_ruined_by_one_outlier_but_per_row_is_not():
    torch.manual_seed(4)
    w = torch.randn(8, 64)
    w[0, 0] = 100.0
    qt, st = quant.quantize_symmetric(w, 8, dim=None)
    qr, sr = quant.quantize_symmetric(w, 8, dim=-1)
    assert st.numel() == 1
    rest = slice(1, None)  # rows without the outlier
    err_tensor = quant.mse(w[rest], quant.dequantize(qt, st)[rest])
    err_row = quant.mse(w[rest], quant.dequantize(qr, sr)[rest])
    assert err_tensor > 100 * err_row


# --------------------------------------------------------------------------- group-wise and zero point
def test_groupwise_scales_per_group_and_round_trips():
    torch.manual_seed(5)
    w = torch.randn(6, 64)
    q, scale = quant.quantize_groupwise(w, bits=4, group_size=16)
    assert q.shape == w.shape and scale.shape == (6, 4)
    assert torch.allclose(scale, w.reshape(6, 4, 16).abs().amax(-1) / 7)
    w_hat = quant.dequantize(q, scale)
    assert ((w_hat - w).abs() <= scale.repeat_interleave(16, 1) / 2 + 1e-6).all()
    q_row, s_row = quant.quantize_absmax(w, 4)
    assert quant.mse(w, w_hat) < quant.mse(w, quant.dequantize(q_row, s_row))
    with pytest.raises(ValueError, match="divide"):
        quant.quantize_groupwise(w, 4, group_size=24)


def test_zeropoint_uses_the_full_asymmetric_range():
    w = torch.tensor([[0.0, 1.0, 2.0, 2.55]])  # all >= 0: range [0, 2.55] over 256 codes
    q, scale, zp = quant.quantize_zeropoint(w, bits=8)
    assert torch.allclose(scale, torch.tensor([[0.01]]))
    assert zp.item() == -128 and q[0].tolist() == [-128, -28, 72, 127]
    assert torch.allclose(quant.dequantize_zeropoint(q, scale, zp), w, atol=0.005)
    torch.manual_seed(6)
    w = torch.rand(16, 64) * 3 - 0.5  # skewed: a symmetric scale wastes codes below -0.5
    q, scale, zp = quant.quantize_zeropoint(w, bits=4)
    assert q.min() >= -8 and q.max() <= 7
    err = quant.mse(w, quant.dequantize_zeropoint(q, scale, zp))
    qs, ss = quant.quantize_symmetric(w, 4)
    assert err < quant.mse(w, quant.dequantize(qs, ss))
    q, scale, zp = quant.quantize_zeropoint(torch.zeros(2, 3), bits=8)
    assert (quant.dequantize_zeropoint(q, scale, zp) == 0).all()


# --------------------------------------------------------------------------- int4 packing
def test_pack_int4_puts_the_even_column_in_the_high_nibble():
    q = torch.tensor([[1, 2, -1, 7, -8, 0]], dtype=torch.int8)
    packed = quant.pack_int4(q)
    assert packed.shape == (1, 3) and packed.dtype == torch.int8
    as_bytes = (packed.to(torch.int16) & 0xFF).tolist()[0]
    assert as_bytes == [0x12, 0xF7, 0x80]  # (1,2) (-1=F,7) (-8=8,0)
    assert torch.equal(quant.unpack_int4(packed), q)


def test_int4_pack_round_trip_on_every_code_pair():
    codes = torch.arange(-8, 8, dtype=torch.int8)
    pairs = torch.cartesian_prod(codes, codes).to(torch.int8).reshape(16, 32)
    assert torch.equal(quant.unpack_int4(quant.pack_int4(pairs)), pairs)


def test_pack_int4_rejects_odd_widths_and_out_of_range_codes():
    with pytest.raises(ValueError, match="even"):
        quant.pack_int4(torch.zeros(2, 5, dtype=torch.int8))
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        quant.pack_int4(torch.tensor([[9, 0]], dtype=torch.int8))
    with pytest.raises(TypeError):
        quant.pack_int4(torch.zeros(2, 4))


# --------------------------------------------------------------------------- metrics
def test_error_metrics_on_known_values():
    a = torch.tensor([3.0, 4.0])
    b = torch.tensor([3.0, 3.0])
    assert quant.mse(a, b) == pytest.approx(0.5)
    assert quant.max_abs_error(a, b) == pytest.approx(1.0)
    assert quant.sqnr_db(a, b) == pytest.approx(10 * math.log10(25 / 1))
    assert quant.sqnr_db(a, a) == math.inf


# --------------------------------------------------------------------------- bitsandbytes agreement
def test_int8_row_codes_agree_with_bitsandbytes_within_one_code():
    bnb_functional = loading.import_bitsandbytes().functional
    torch.manual_seed(7)
    w = torch.randn(64, 128) * torch.logspace(-2, 1, 64).unsqueeze(1)
    ours, scale = quant.quantize_absmax(w, bits=8)
    theirs, row_absmax, _ = bnb_functional.int8_vectorwise_quant(w.half())
    diff = (ours.int() - theirs.int()).abs()
    assert diff.max() <= 1
    assert (diff == 0).float().mean() > 0.9  # off by one only where fp16 rounding tips a tie
    assert torch.allclose(row_absmax.float() / 127, scale.squeeze(1), rtol=1e-3)


# --------------------------------------------------------------------------- QuantizedLinear
@pytest.mark.parametrize("bits,group_size", [(8, None), (4, None), (4, 16), (8, 8)])
def test_quantized_linear_matches_its_dequantized_weight(bits, group_size):
    torch.manual_seed(8)
    linear = nn.Linear(32, 12)
    qlin = quant.QuantizedLinear.from_linear(linear, bits, group_size)
    assert qlin.weight.dtype == torch.int8
    assert qlin.weight.shape == (12, 32 if bits == 8 else 16)
    x = torch.randn(3, 5, 32)
    expected = x @ qlin.dequantized_weight().T + linear.bias
    assert torch.allclose(qlin(x), expected, atol=1e-5)
    assert torch.equal(qlin.bias, linear.bias)  # the bias is copied, not quantized
    step = qlin.weight_scale.max()
    assert (qlin.dequantized_weight() - linear.weight).abs().max() <= step / 2 + 1e-6


def test_quantized_linear_state_dict_round_trip_and_dtype_move():
    torch.manual_seed(9)
    qlin = quant.QuantizedLinear.from_linear(nn.Linear(16, 8), bits=4)
    state = qlin.state_dict()
    assert set(state) == {"weight", "weight_scale", "bias"} and state["weight"].dtype == torch.int8
    fresh = quant.QuantizedLinear(16, 8, bits=4)
    fresh.load_state_dict(state)
    x = torch.randn(2, 16)
    assert torch.equal(fresh(x), qlin(x))
    half = fresh.to(torch.bfloat16)
    assert half.weight.dtype == torch.int8 and half.weight_scale.dtype == torch.bfloat16
    assert half(x.bfloat16()).dtype == torch.bfloat16


def test_quantized_linear_backward_reaches_the_input_without_weight_grads():
    torch.manual_seed(10)
    linear = nn.Linear(8, 4)
    qlin = quant.QuantizedLinear.from_linear(linear, bits=8)
    x = torch.randn(3, 8, requires_grad=True)
    qlin(x).sum().backward()
    expected = torch.ones(3, 4) @ qlin.dequantized_weight()
    assert torch.allclose(x.grad, expected, atol=1e-6)
    assert not any(p.requires_grad for p in qlin.parameters())


# --------------------------------------------------------------------------- quantize_model
def test_quantize_model_replaces_exactly_the_four_linear_kinds():
    model = _tiny(layers=3)
    out = quant.quantize_model(model, 8)
    assert out is model
    replaced = {n for n, m in model.named_modules() if isinstance(m, quant.QuantizedLinear)}
    assert len(replaced) == 3 * 4
    for i in range(3):
        for kind in quant.QUANTIZED_LINEARS:
            assert f"transformer.layers.{i}.{kind}" in replaced
    assert isinstance(model.lm_head, nn.Linear)
    assert isinstance(model.transformer.word_embeddings, nn.Embedding)
    assert model.transformer.word_embeddings.weight.dtype == torch.float32
    assert model.lm_head.weight is model.transformer.word_embeddings.weight  # still tied
    with pytest.raises(ValueError, match="already quantized"):
        quant.quantize_model(model, 4)


def test_quantize_model_refuses_a_model_without_chatglm_names():
    with pytest.raises(ValueError, match="query_key_value"):
        quant.quantize_model(nn.Sequential(nn.Linear(4, 4)), 8)


@pytest.mark.parametrize("bits,group_size,tol", [(8, None, 0.02), (4, None, 0.25), (4, 16, 0.15)])
def test_quantized_model_outputs_stay_close_to_fp32(bits, group_size, tol):
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = _tiny()(ids)
        got = quant.quantize_model(_tiny(), bits, group_size)(ids)
    rel = (got - ref).norm() / ref.norm()
    assert rel < tol
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= (0.9 if bits == 8 else 0.6)


@pytest.mark.parametrize("bits,group_size,limit", [(8, None, 0.3), (4, None, 0.18), (4, 32, 0.18)])
def test_quantized_bytes_against_fp32(bits, group_size, limit):
    model = quant.quantize_model(_tiny(h=64, ffn=128), bits, group_size)
    report = quant.quantized_weight_bytes(model)
    n_weights = 2 * (64 * 192 + 64 * 64 + 64 * 128 * 2)
    assert report["fp32_bytes"] == 4 * n_weights and report["layers"] == 8
    codes = n_weights * bits // 8
    assert report["quantized_bytes"] > codes  # the scales are counted too
    assert report["ratio"] <= limit
    assert quant.quantized_weight_bytes(model, include_scales=False)["quantized_bytes"] == codes


# --------------------------------------------------------------------------- memory estimate
def _chatglm_6b_like():
    return SimpleNamespace(hidden_size=4096, num_layers=28, num_attention_heads=32, inner_hidden_size=16384,
                           vocab_size=130528, max_sequence_length=2048)


def test_parameter_count_of_chatglm_6b():
    counts = memory.parameter_counts(_chatglm_6b_like())
    assert counts["total"] == 6_173_286_400
    assert counts["quantizable"] == 28 * (4096 * 4096 * 4 + 2 * 4096 * 16384)


def test_kv_cache_formula():
    # 2 (k, v) * 28 layers * 2048 tokens * 4096 * 2 bytes = 0.875 GiB
    assert memory.kv_cache_bytes(_chatglm_6b_like(), 2048) == 2 * 28 * 2048 * 4096 * 2


@pytest.mark.parametrize("mode", ["inference", "ptuning"])
def test_memory_estimate_lands_within_10_percent_of_the_readme(mode):
    for bits, claim in memory.README_CLAIMS_GB[mode].items():
        est = memory.estimate_memory(_chatglm_6b_like(), bits, mode=mode)
        assert abs(est["total_gib"] / claim - 1) <= 0.10, (mode, bits, est["total_gib"])


def test_memory_estimate_moves_with_its_assumptions():
    cfg = _chatglm_6b_like()
    base = memory.estimate_memory(cfg, 8)
    longer = memory.estimate_memory(cfg, 8, seq_len=4096)
    assert longer["kv_cache"] == 2 * base["kv_cache"]
    assert memory.estimate_memory(cfg, 4)["weights"] < base["weights"] < memory.estimate_memory(cfg, 16)["weights"]
    assert memory.estimate_memory(cfg, 8, batch_size=2)["total_bytes"] > base["total_bytes"]
    lora = memory.estimate_memory(cfg, 4, mode="lora")
    assert lora["trainable"] == 28 * 8 * (4096 + 3 * 4096) * 16  # 3,670,016 LoRA params x 16 bytes
    with pytest.raises(ValueError, match="mode"):
        memory.estimate_memory(cfg, 8, mode="train")


def test_parameter_counts_agree_with_the_real_model_tree():
    from glmcourse import sizes
    from glmcourse.modeling import chatglm_6b_config, course_config

    for config in (chatglm_6b_config(), course_config()):
        model = sizes.meta_model(config)
        counts = memory.parameter_counts(config)
        assert counts["total"] == sizes.count_parameters(model)
        linear_weights = sum(p.numel() for n, p in model.named_parameters()
                             if n.endswith(".weight") and quant._is_target(n[: -len(".weight")]))
        assert counts["quantizable"] == linear_weights


def test_estimate_memory_accepts_the_real_config():
    from glmcourse.modeling import chatglm_6b_config

    est = memory.estimate_memory(chatglm_6b_config(), 16)
    assert est["weights"] == 6_173_286_400 * 2
    with pytest.raises(TypeError, match="hidden_size"):
        memory.estimate_memory(SimpleNamespace(hidden_size=8), 16)


# --------------------------------------------------------------------------- NF4 and LLM.int8()
def test_nf4_levels_match_the_bitsandbytes_table():
    bnb = loading.import_bitsandbytes()
    levels = quant.nf4_levels()
    assert levels.shape == (16,) and levels[0] == -1 and levels[-1] == 1 and (levels == 0).sum() == 1
    assert torch.allclose(levels, bnb.functional.get_4bit_type("nf4", device="cpu"), atol=1e-6)


def test_nf4_beats_uniform_int4_on_normal_weights():
    torch.manual_seed(11)
    w = torch.randn(128, 256) * 0.02
    errors = {}
    for name, levels in [("nf4", quant.nf4_levels()), ("int4", quant.uniform_int4_levels())]:
        codes, absmax = quant.quantize_to_levels(w, levels, block_size=64)
        assert codes.dtype == torch.uint8 and absmax.shape == (128 * 256 // 64,)
        errors[name] = quant.mse(w, quant.dequantize_levels(codes, absmax, levels))
    assert errors["nf4"] < errors["int4"]


def test_llm_int8_decomposition_finds_the_outlier_columns_and_cuts_the_error():
    bnb = loading.import_bitsandbytes()
    x = quant.outlier_activations(tokens=32, features=64, outlier_features=(3, 40), magnitude=20.0)
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(1)) * 0.1
    assert quant.outlier_columns(x).tolist() == [3, 40]
    _, _, bnb_cols = bnb.functional.int8_vectorwise_quant(x.half().clone(), threshold=6.0)
    assert bnb_cols.tolist() == [3, 40]
    exact = x @ w.T
    plain = quant.sqnr_db(exact, quant.int8_matmul_vectorwise(x, w))
    mixed = quant.sqnr_db(exact, quant.llm_int8_matmul(x, w))
    assert mixed > plain + 6  # more than one bit's worth better
    # with no outliers the decomposition is the plain int8 matmul
    calm = torch.randn(8, 64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(quant.llm_int8_matmul(calm, w), quant.int8_matmul_vectorwise(calm, w))


# --------------------------------------------------------------------------- bitsandbytes loading
def test_bnb_load_without_a_backend_explains_the_options(monkeypatch, tmp_path):
    bnb = loading.import_bitsandbytes()
    from glmcourse.modeling import ChatGLMForConditionalGeneration, course_config

    torch.manual_seed(0)
    ChatGLMForConditionalGeneration(course_config(num_layers=1, hidden_size=32, num_attention_heads=2,
                                                  inner_hidden_size=64, vocab_size=64)).save_pretrained(tmp_path)
    monkeypatch.setattr(bnb, "supported_torch_devices", set(), raising=False)
    with pytest.raises(RuntimeError) as info:
        loading.load_bnb_model(str(tmp_path), "int8")
    message = str(info.value)
    assert "int8" in message and "quantize(8)" in message and "fp32" in message and "GPU" in message
    with pytest.raises(ValueError, match="nf4"):
        loading.load_bnb_model(str(tmp_path), "fp4")


# --------------------------------------------------------------------------- the real architecture
def test_quantize_on_the_chatglm_model_keeps_logits_close():
    from glmcourse.modeling import ChatGLMForConditionalGeneration, course_config

    torch.manual_seed(0)
    config = course_config(num_layers=2, hidden_size=64, num_attention_heads=4, inner_hidden_size=256,
                           vocab_size=128)
    model = ChatGLMForConditionalGeneration(config).eval()
    ids = torch.randint(10, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    ids[:, -2], ids[:, -1] = config.gmask_token_id, config.bos_token_id
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        model.quantize(8)
        got = model(input_ids=ids).logits
    assert sum(isinstance(m, quant.QuantizedLinear) for m in model.modules()) == 2 * 4
    assert quant.sqnr_db(ref, got) > 30
    with pytest.raises(ValueError, match="4") as info:
        ChatGLMForConditionalGeneration(config).quantize(3)
    assert "8" in str(info.value)


# --------------------------------------------------------------------------- exercise checkers
def _swap_nibbles(q):
    return (q[..., 1::2] << 4) | (q[..., 0::2] & 0xF)


def _no_mask(q):
    return (q[..., 0::2] << 4) | q[..., 1::2]


def _truncating_absmax(w):
    scale = w.abs().amax(-1, keepdim=True) / 127
    return (w / scale).to(torch.int8), scale  # int() truncation, and NaN on a zero row


def _symmetric_as_zeropoint(w, bits):
    q, scale = quant.quantize_symmetric(w, bits, dim=None)
    return q, scale, torch.zeros(())


def _kv_without_values(config, seq_len, batch_size):
    return config.num_layers * seq_len * batch_size * config.hidden_size * 2


@pytest.mark.parametrize("checker,right,wrong", [
    (checks.check_absmax_quantize, lambda w: quant.quantize_symmetric(w, 8, dim=-1), _truncating_absmax),
    (checks.check_zeropoint_quantize, lambda w, b: quant.quantize_zeropoint(w, b, dim=None), _symmetric_as_zeropoint),
    (checks.check_pack_int4, quant.pack_int4, _swap_nibbles),
    (checks.check_pack_int4, quant.pack_int4, _no_mask),
    (checks.check_kv_cache_bytes, lambda c, s, b: memory.kv_cache_bytes(c, s, b, 2), _kv_without_values),
])
def test_checkers_accept_right_and_reject_wrong_answers(checker, right, wrong, capsys):
    checker(right)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        checker(wrong)


def test_solutions_pass_their_checkers():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "02_quant_solutions.py"
    spec = importlib.util.spec_from_file_location("quant_solutions", path)
    solutions = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solutions)
    checks.check_absmax_quantize(solutions.absmax_quantize)
    checks.check_zeropoint_quantize(solutions.zeropoint_quantize)
    checks.check_pack_int4(solutions.pack_int4)
    checks.check_kv_cache_bytes(solutions.kv_cache_bytes)


# --------------------------------------------------------------------------- the shipped course model
def _course_model_or_skip():
    import glmcourse

    if not (Path(glmcourse.COURSE_MODEL) / "model.safetensors").exists():
        pytest.skip("the course model is not built yet (python -m glmcourse.tools.build_course_model)")
    return loading.load_course_model()


def test_course_model_meets_the_issue_targets():
    model, tokenizer = _course_model_or_skip()
    table = evaluation.compare_quantized(model, tokenizer, course_data.heldout_documents(limit=48))
    assert table["int8 per-row"]["loss_increase"] <= 0.01
    assert table["int4 per-row"]["loss_increase"] <= 0.10
    assert min(table["int4 group 64"]["loss_increase"], table["int4 group 32"]["loss_increase"]) <= 0.05
    assert table["int8 per-row"]["bytes_ratio"] <= 0.30
    assert table["int4 per-row"]["bytes_ratio"] <= 0.18
    assert all(row["loss"] > 0 for row in table.values())


def test_heldout_documents_supervise_their_second_half():
    model, tokenizer = _course_model_or_skip()
    doc = course_data.heldout_documents(limit=1)[0]
    ids = tokenizer.encode(doc, add_special_tokens=False)
    batch = evaluation.heldout_batches(tokenizer, [doc])[0]
    row, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    half = len(ids) // 2
    assert row == ids[:half] + [tokenizer.gmask_token_id, tokenizer.sop_token_id] + ids[half:] + [tokenizer.eop_token_id]
    assert labels[:half + 1] == [-100] * (half + 1) and labels[half + 1:] == row[half + 1:]


def test_heldout_rows_supervise_only_the_answer():
    model, tokenizer = _course_model_or_skip()
    record = {"instruction": "Say hi.", "input": "", "output": "hi"}
    batch = evaluation.heldout_batches(tokenizer, [record])[0]
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    context = tokenizer.encode("Instruction: Say hi.\nAnswer: ")
    target = tokenizer.encode("hi", add_special_tokens=False)
    assert ids == context + target + [tokenizer.eop_token_id]
    sop = len(context) - 1
    assert labels[:sop] == [-100] * sop and labels[sop:] == ids[sop:]


def test_scales_are_fp16_numbers_on_fp32_weights_as_chatglm_6b_keeps_them():
    torch.manual_seed(0)
    w = torch.randn(64, 48) * 0.05
    for bits in (4, 8):
        q, scale = quant.quantize_absmax(w, bits)
        assert scale.dtype == torch.float32
        assert torch.equal(scale, scale.half().float()), "ChatGLM-6B stores its scales in fp16"
        qmax = 2 ** (bits - 1) - 1
        assert torch.equal(q, torch.round(w / scale).clamp(-qmax, qmax).to(torch.int8)), "codes use the fp16 scale"
        exact = w.abs().amax(-1, keepdim=True) / qmax
        assert not torch.equal(scale, exact)


def test_fp16_scale_breaks_a_tie_the_other_way():
    """0.05 is exactly half a step of the fp32 scale 0.1 (round half to even: 0) but not of fp16's 0.09998 (1)."""
    w = torch.tensor([[0.7, 0.05, -0.35, 0.25]])
    q, scale = quant.quantize_absmax(w, 4)
    exact_q = torch.round(w / (w.abs().amax(-1, keepdim=True) / 7))
    assert exact_q.tolist() == [[7.0, 0.0, -4.0, 2.0]]
    assert q.tolist() == [[7, 1, -4, 3]]


def test_model_quantize_matches_on_fp32_and_fp16_copies_of_fp16_numbers():
    """With fp16-representable weights (as shipped), quantize(8) in fp32 and in fp16 agree on every scale."""
    torch.manual_seed(1)
    w = (torch.randn(32, 64) * 0.05).half().float()
    _, s32 = quant.quantize_absmax(w, 8)
    _, s16 = quant.quantize_absmax(w.half(), 8)
    assert torch.equal(s32, s16.float())
