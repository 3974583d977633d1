"""ChatGLM-6B's built-in P-Tuning v2 (``config.pre_seq_len``) in the course model."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import AutoModel, AutoTokenizer

import glmcourse
from glmcourse.chat import build_prompt
from glmcourse.modeling import (
    ChatGLMConfig,
    ChatGLMForConditionalGeneration,
    course_config,
    positions_and_mask,
)
from glmcourse.modeling.modeling_chatglm import (
    PrefixEncoder,
    apply_2d_rotary,
    rotary_tables,
)

PROMPTS = ["你好", "Tell me the capital of Japan, please.", build_prompt("我叫什么？", [("我叫小红。", "你好！")])]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)


@pytest.fixture(scope="module")
def base():
    return AutoModel.from_pretrained(glmcourse.COURSE_MODEL).eval()


def _lively(tok, **overrides):
    """A random model with large weights, so greedy outputs vary from token to token."""
    torch.manual_seed(0)
    m = ChatGLMForConditionalGeneration(course_config(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, mask_token_id=tok.mask_token_id,
        gmask_token_id=tok.gmask_token_id, bos_token_id=tok.sop_token_id, eos_token_id=tok.eop_token_id,
        **overrides))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() > 1 and "prefix_encoder" not in name:
                p.normal_(0, 0.25)
    return m.eval()


@pytest.fixture(scope="module")
def lively_prefix(tok):
    return _lively(tok, pre_seq_len=6)


def _prefix_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "prefix_encoder" in k}


def reference_logits(model, input_ids, prefix_rows=None):
    """ChatGLM-6B's forward written out from the state dict (one unpadded prompt, no cache).

    ``prefix_rows`` is the prefix encoder's output [P, num_layers * 2 * hidden]. As in ChatGLM-6B's
    get_prompt, it is viewed [P, num_layers * 2, heads, head_dim]: layer i's key is slot 2i and its
    value slot 2i + 1. The prefix keys are not rotated and every token may attend to them.
    """
    cfg, sd = model.config, model.state_dict()
    heads, hidden = cfg.num_attention_heads, cfg.hidden_size
    d, length = hidden // heads, input_ids.shape[1]
    position_ids, attend = positions_and_mask(input_ids, cfg)
    rotary = rotary_tables(position_ids, d // 2, torch.float32)
    if prefix_rows is not None:
        kv = prefix_rows.view(prefix_rows.shape[0], cfg.num_layers * 2, heads, d)
        attend = torch.cat((torch.ones(1, length, prefix_rows.shape[0], dtype=torch.bool), attend), dim=-1)
    x = F.embedding(input_ids, sd["transformer.word_embeddings.weight"])
    alpha = math.sqrt(2 * 28)
    for i in range(cfg.num_layers):
        def w(name, i=i):
            return sd[f"transformer.layers.{i}.{name}"]

        ln = F.layer_norm(x, (hidden,), w("input_layernorm.weight"), w("input_layernorm.bias"), cfg.layernorm_epsilon)
        qkv = F.linear(ln, w("attention.query_key_value.weight"), w("attention.query_key_value.bias"))
        q, k, v = (t.transpose(1, 2) for t in qkv.view(1, length, heads, 3 * d).split(d, dim=-1))
        q, k = apply_2d_rotary(q, rotary), apply_2d_rotary(k, rotary)
        if prefix_rows is not None:
            k = torch.cat((kv[:, 2 * i].transpose(0, 1)[None], k), dim=2)
            v = torch.cat((kv[:, 2 * i + 1].transpose(0, 1)[None], v), dim=2)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend[:, None])
        attn = F.linear(context.transpose(1, 2).reshape(1, length, hidden), w("attention.dense.weight"),
                        w("attention.dense.bias"))
        h = ln * alpha + attn
        h_ln = F.layer_norm(h, (hidden,), w("post_attention_layernorm.weight"), w("post_attention_layernorm.bias"),
                            cfg.layernorm_epsilon)
        mlp = F.linear(F.gelu(F.linear(h_ln, w("mlp.dense_h_to_4h.weight"), w("mlp.dense_h_to_4h.bias")),
                              approximate="tanh"), w("mlp.dense_4h_to_h.weight"), w("mlp.dense_4h_to_h.bias"))
        x = h_ln * alpha + mlp
    x = F.layer_norm(x, (hidden,), sd["transformer.final_layernorm.weight"], sd["transformer.final_layernorm.bias"],
                     cfg.layernorm_epsilon)
    return F.linear(x, sd["lm_head.weight"])


# ----------------------------------------------------------------------------- config and structure
def test_config_fields_default_off_and_are_validated():
    cfg = ChatGLMConfig()
    assert cfg.pre_seq_len is None and cfg.prefix_projection is False
    again = ChatGLMConfig.from_dict(ChatGLMConfig(pre_seq_len=128, prefix_projection=True).to_dict())
    assert again.pre_seq_len == 128 and again.prefix_projection is True
    for bad in (0, -3, True, 2.5, "16"):
        with pytest.raises(ValueError, match="pre_seq_len"):
            ChatGLMConfig(pre_seq_len=bad)


def test_full_size_prefix_has_chatglm_6b_parameter_count():
    with torch.device("meta"):
        m = ChatGLMForConditionalGeneration(ChatGLMConfig(pre_seq_len=128))
        proj = ChatGLMForConditionalGeneration(ChatGLMConfig(pre_seq_len=128, prefix_projection=True))
    prefix = sum(p.numel() for p in m.transformer.prefix_encoder.parameters())
    assert prefix == 29_360_128 == 128 * 28 * 2 * 4096
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 29_360_128
    assert sum(p.numel() for p in m.parameters()) - prefix == 6_173_286_400
    width = 28 * 2 * 4096
    assert sum(p.numel() for p in proj.transformer.prefix_encoder.parameters()) == (
        128 * 4096 + 4096 * 4096 + 4096 + 4096 * width + width)
    assert {k for k in m.state_dict() if "prefix" in k} == {"transformer.prefix_encoder.embedding.weight"}
    assert {k for k in proj.state_dict() if "prefix" in k} == {
        "transformer.prefix_encoder.embedding.weight",
        "transformer.prefix_encoder.trans.0.weight", "transformer.prefix_encoder.trans.0.bias",
        "transformer.prefix_encoder.trans.2.weight", "transformer.prefix_encoder.trans.2.bias"}
    assert isinstance(proj.transformer.prefix_encoder.trans[1], nn.Tanh)
    assert m.transformer.prefix_encoder.embedding.weight.shape == (128, width)


def test_only_the_prefix_encoder_is_trainable(tok, lively_prefix):
    trainable = {n for n, p in lively_prefix.named_parameters() if p.requires_grad}
    assert trainable == {"transformer.prefix_encoder.embedding.weight"}
    assert lively_prefix.transformer.prefix_tokens.tolist() == list(range(6))
    assert isinstance(lively_prefix.transformer.dropout, nn.Dropout) and lively_prefix.transformer.dropout.p == 0.1
    proj = _lively(tok, pre_seq_len=3, prefix_projection=True)
    assert {n for n, p in proj.named_parameters() if p.requires_grad} == {
        n for n, _ in proj.named_parameters() if n.startswith("transformer.prefix_encoder.")} and len(
        [n for n, p in proj.named_parameters() if p.requires_grad]) == 5


def test_get_prompt_shapes_and_dropout(lively_prefix):
    cfg = lively_prefix.config
    prompt = lively_prefix.transformer.get_prompt(3, torch.device("cpu"), torch.float32)
    assert len(prompt) == cfg.num_layers
    d = cfg.hidden_size // cfg.num_attention_heads
    for key, value in prompt:
        assert key.shape == value.shape == (3, cfg.num_attention_heads, 6, d)
    rows = lively_prefix.transformer.prefix_encoder.embedding.weight.view(6, cfg.num_layers * 2, cfg.num_attention_heads, d)
    assert torch.equal(prompt[1][0][0], rows[:, 2].transpose(0, 1))  # layer 1's key is slot 2
    assert torch.equal(prompt[1][1][2], rows[:, 3].transpose(0, 1))  # and its value slot 3
    try:
        lively_prefix.train()
        a = lively_prefix.transformer.get_prompt(1, torch.device("cpu"), torch.float32)[0][0]
        assert (a == 0).float().mean() > 0.05  # Dropout(0.1) is active in train mode
    finally:
        lively_prefix.eval()


# ----------------------------------------------------------------------------- pre_seq_len=None changes nothing
def test_no_prefix_leaves_the_shipped_model_bit_identical(tok, base):
    assert not any("prefix" in k for k in base.state_dict())
    assert not hasattr(base.transformer, "prefix_encoder")
    assert all(p.requires_grad for p in base.parameters())
    explicit = ChatGLMForConditionalGeneration.from_pretrained(glmcourse.COURSE_MODEL, pre_seq_len=None).eval()
    assert list(explicit.state_dict()) == list(base.state_dict())
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            logits = base(ids).logits
            assert torch.equal(logits, reference_logits(base, ids)), prompt
            assert torch.equal(logits, explicit(ids).logits), prompt
        batch = tok(PROMPTS, return_tensors="pt", padding=True)
        assert torch.equal(base(**batch).logits, explicit(**batch).logits)


def test_loading_with_a_prefix_keeps_the_base_frozen_and_quiet(tok, base, caplog, monkeypatch):
    from glmcourse.modeling.modeling_chatglm import ChatGLMPreTrainedModel

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    try:
        caplog.clear()
        with caplog.at_level("WARNING"):
            m = ChatGLMForConditionalGeneration.from_pretrained(glmcourse.COURSE_MODEL, pre_seq_len=16)
        assert "MISSING" not in caplog.text and "newly initialized" not in caplog.text
        # the control: without the ignore rule transformers does report the prefix as missing
        monkeypatch.setattr(ChatGLMPreTrainedModel, "_keys_to_ignore_on_load_missing", None)
        monkeypatch.setattr(ChatGLMForConditionalGeneration, "_keys_to_ignore_on_load_missing", None)
        with caplog.at_level("WARNING"):
            ChatGLMForConditionalGeneration.from_pretrained(glmcourse.COURSE_MODEL, pre_seq_len=16)
        assert "prefix_encoder" in caplog.text and "newly initialized" in caplog.text
    finally:
        transformers.logging.set_verbosity(verbosity)
    assert m.config.pre_seq_len == 16
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {"transformer.prefix_encoder.embedding.weight"}
    shipped = base.state_dict()
    for name, tensor in m.state_dict().items():
        if "prefix_encoder" in name:
            assert tensor.shape == (16, 2 * m.config.num_layers * m.config.hidden_size)
            assert 0.8 < tensor.std().item() < 1.2  # fresh, PyTorch's N(0, 1) as in ChatGLM-6B
        else:
            assert torch.equal(tensor, shipped[name]), name
    assert m.lm_head.weight is m.transformer.word_embeddings.weight


# ----------------------------------------------------------------------------- what the prefix computes
def test_prefix_logits_follow_chatglm_6b(tok, lively_prefix):
    encoder = lively_prefix.transformer.prefix_encoder
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            want = reference_logits(lively_prefix, ids, encoder(torch.arange(6)))
            torch.testing.assert_close(lively_prefix(ids).logits, want, rtol=1e-5, atol=1e-5)


def test_a_prefix_changes_the_logits(tok, base):
    m = ChatGLMForConditionalGeneration.from_pretrained(glmcourse.COURSE_MODEL, pre_seq_len=4).eval()
    ids = tok(PROMPTS[1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        with_prefix, without = m(ids).logits, base(ids).logits
    assert (with_prefix - without).abs().max() > 1e-2


def test_full_forward_equals_step_by_step_with_the_cache(tok, lively_prefix):
    with torch.no_grad():
        ids = lively_prefix.generate(**tok(PROMPTS[2], return_tensors="pt"), max_new_tokens=8, do_sample=False,
                                     eos_token_id=None)
        full = lively_prefix(ids, use_cache=False).logits
        start = ids.shape[1] - 8
        out = lively_prefix(ids[:, :start], use_cache=True)
        cache, steps = out.cache, [out.logits[:, -1]]
        assert cache.get_seq_length() == start  # the cache holds the tokens only, never the prefix
        for end in range(start + 1, ids.shape[1]):
            inputs = lively_prefix.prepare_inputs_for_generation(ids[:, :end], cache=cache)
            assert inputs["input_ids"].shape[1] == 1
            out = lively_prefix(**inputs)
            cache = out.cache
            steps.append(out.logits[:, -1])
        assert cache.get_seq_length() == ids.shape[1] - 1
    # logits up to ~20 from large random weights: fp32 summation order alone differs by ~2e-4 (without a prefix too)
    torch.testing.assert_close(torch.stack(steps, 1), full[:, start - 1:-1], rtol=1e-4, atol=1e-3)
    assert torch.equal(torch.stack(steps, 1).argmax(-1), ids[:, start:])  # the greedy tokens generate() chose


def test_generate_with_and_without_cache_agree(tok, lively_prefix):
    ids = tok(PROMPTS[1], return_tensors="pt")
    cached = lively_prefix.generate(**ids, max_new_tokens=16, do_sample=False, use_cache=True, eos_token_id=None)
    full = lively_prefix.generate(**ids, max_new_tokens=16, do_sample=False, use_cache=False, eos_token_id=None)
    assert len(set(cached[0, -16:].tolist())) > 3  # the test model really varies its output
    assert torch.equal(cached, full)
    plain = copy.deepcopy(lively_prefix)
    del plain.transformer.prefix_encoder
    plain.transformer.pre_seq_len = None
    assert not torch.equal(plain.generate(**ids, max_new_tokens=16, do_sample=False, eos_token_id=None), cached)


def test_left_padded_batch_with_a_prefix_generates_like_each_prompt_alone(tok, lively_prefix):
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()
    together = lively_prefix.generate(**batch, max_new_tokens=8, do_sample=False, eos_token_id=None)
    for row, prompt in enumerate(PROMPTS):
        alone = lively_prefix.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=8, do_sample=False,
                                       eos_token_id=None)
        assert together[row, -8:].tolist() == alone[0, -8:].tolist()


def test_beam_search_with_a_prefix_runs(tok, lively_prefix):
    ids = tok(PROMPTS[0], return_tensors="pt")
    out = lively_prefix.generate(**ids, max_new_tokens=6, num_beams=3, do_sample=False, eos_token_id=None)
    assert out.shape == (1, ids["input_ids"].shape[1] + 6)


# ----------------------------------------------------------------------------- chat and quantization
def test_chat_and_stream_chat_with_a_prefix(tok):
    m = ChatGLMForConditionalGeneration.from_pretrained(glmcourse.COURSE_MODEL, pre_seq_len=8).eval()
    response, history = m.chat(tok, "你好", history=[], do_sample=False, max_new_tokens=12)
    assert isinstance(response, str) and history == [("你好", response)]
    streamed = list(m.stream_chat(tok, "你好", history=[], do_sample=False, max_new_tokens=12))
    assert streamed and streamed[-1][0] == response


@pytest.mark.parametrize("bits", [4, 8])
def test_quantized_model_chats_and_keeps_the_prefix_float(tok, bits):
    from glmcourse.quant import QuantizedLinear

    m = ChatGLMForConditionalGeneration.from_pretrained(glmcourse.COURSE_MODEL, pre_seq_len=4,
                                                        prefix_projection=True).eval()
    before = _prefix_state(m)
    m.quantize(bits)
    assert isinstance(m.transformer.layers[0].attention.query_key_value, QuantizedLinear)
    encoder = m.transformer.prefix_encoder
    assert not any(isinstance(mod, QuantizedLinear) for mod in encoder.modules())
    assert isinstance(encoder.trans[0], nn.Linear) and isinstance(encoder.trans[2], nn.Linear)
    after = _prefix_state(m)
    assert after.keys() == before.keys() and len(after) == 5
    for name, tensor in after.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, before[name]), name
    assert all(p.requires_grad for p in encoder.parameters())
    response, history = m.chat(tok, "你好", history=[], do_sample=False, max_new_tokens=8)
    assert isinstance(response, str) and len(history) == 1


# ----------------------------------------------------------------------------- training and saving
@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_reach_only_the_prefix(tok, checkpointing):
    m = _lively(tok, pre_seq_len=4, prefix_projection=True)
    if checkpointing:
        m.activation_checkpointing_enable()
    m.train()
    ids = tok(PROMPTS[1], return_tensors="pt")["input_ids"]
    out = m(input_ids=ids, labels=ids, use_cache=False)
    out.loss.backward()
    for name, p in m.named_parameters():
        if name.startswith("transformer.prefix_encoder."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_save_and_load_keep_the_prefix(tmp_path, tok):
    m = _lively(tok, pre_seq_len=5, prefix_projection=True)
    m.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert again.config.pre_seq_len == 5 and again.config.prefix_projection is True
    assert isinstance(again.transformer.prefix_encoder, PrefixEncoder)
    want = _prefix_state(m)
    got = _prefix_state(again)
    assert got.keys() == want.keys() and len(got) == 5
    for name in want:
        assert torch.equal(got[name], want[name]), name
    assert {n for n, p in again.named_parameters() if p.requires_grad} == set(want)
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(m(ids).logits, again(ids).logits)
