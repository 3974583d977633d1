"""The course model: ChatGLM-6B's architecture, inputs, generation, save/load and the seed's calls."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

import glmcourse
from glmcourse import course_data
from glmcourse.chat import build_prompt
from glmcourse.modeling import (ChatGLMForConditionalGeneration, chatglm_6b_config, course_config,
                                positions_and_mask)


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)


@pytest.fixture(scope="module")
def model():
    return AutoModel.from_pretrained(glmcourse.COURSE_MODEL).eval()


@pytest.fixture(scope="module")
def lively_model(tok):
    """A random model with large weights, so greedy outputs vary from token to token."""
    torch.manual_seed(0)
    m = ChatGLMForConditionalGeneration(course_config(
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, mask_token_id=tok.mask_token_id,
        gmask_token_id=tok.gmask_token_id, bos_token_id=tok.sop_token_id, eos_token_id=tok.eop_token_id))
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.25)
    return m.eval()


def test_full_size_config_has_chatglm_6b_parameter_count():
    with torch.device("meta"):
        m = ChatGLMForConditionalGeneration(chatglm_6b_config())
    assert sum(p.numel() for p in m.parameters()) == 6_173_286_400


def test_module_names_match_chatglm_6b(model):
    names = {n for n, _ in model.named_modules()}
    for suffix in ["input_layernorm", "attention.query_key_value", "attention.dense", "post_attention_layernorm",
                   "mlp.dense_h_to_4h", "mlp.dense_4h_to_h"]:
        assert f"transformer.layers.0.{suffix}" in names
    assert {"transformer.word_embeddings", "transformer.final_layernorm", "lm_head"} <= names
    assert model.config.model_type == "chatglm"
    assert model.lm_head.weight is model.transformer.word_embeddings.weight


def test_shipped_weights_are_small_safetensors():
    path = os.path.join(glmcourse.COURSE_MODEL, "model.safetensors")
    assert os.path.getsize(path) <= 25 * 2**20
    assert not any(f.endswith(".bin") for f in os.listdir(glmcourse.COURSE_MODEL))


def _expected_positions(ids, gmask, sop):
    """The reference rule, written out per token."""
    g, s = ids.index(gmask), ids.index(sop)
    pos = [i if i < s else g for i in range(len(ids))]
    block = [0 if i < s else i - s + 1 for i in range(len(ids))]
    attend = [[(j < s) or (i >= s and j <= i) for j in range(len(ids))] for i in range(len(ids))]
    return pos, block, attend


@pytest.mark.parametrize("history", [[], [("你好", "你好！")], [("我叫小明。", "你好，小明！"), ("1+1?", "2")]])
def test_positions_and_mask_follow_the_reference(tok, model, history):
    ids = tok.encode(build_prompt("我叫什么名字？", history)) + [101, 102, 103]  # + three generated tokens
    pos, att = positions_and_mask(torch.tensor([ids]), model.config)
    want_pos, want_block, want_att = _expected_positions(ids, tok.gmask_token_id, tok.sop_token_id)
    assert pos[0, 0].tolist() == want_pos
    assert pos[0, 1].tolist() == want_block
    assert att[0].tolist() == want_att


def test_prompt_without_sop_is_a_clear_error(tok, model):
    ids = torch.tensor([tok.encode("no special tokens", add_special_tokens=False)])
    with pytest.raises(ValueError, match="<sop>|sop"):
        model(input_ids=ids)


def test_kv_cache_generation_equals_full_recompute(tok, lively_model):
    ids = tok("What is the capital of France?", return_tensors="pt")
    cached = lively_model.generate(**ids, max_new_tokens=24, do_sample=False, use_cache=True, eos_token_id=None)
    full = lively_model.generate(**ids, max_new_tokens=24, do_sample=False, use_cache=False, eos_token_id=None)
    assert cached.shape[1] == ids["input_ids"].shape[1] + 24
    assert len(set(cached[0, -24:].tolist())) > 3  # the test model really varies its output
    assert torch.equal(cached, full)


def test_left_padded_batch_generates_like_each_prompt_alone(tok, lively_model):
    prompts = ["你好", "Tell me the capital of Japan, please.", build_prompt("我叫什么？", [("我叫小红。", "你好！")])]
    batch = tok(prompts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()  # the batch really is padded
    together = lively_model.generate(**batch, max_new_tokens=12, do_sample=False, eos_token_id=None)
    for row, prompt in enumerate(prompts):
        alone = lively_model.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=12, do_sample=False,
                                      eos_token_id=None)
        assert together[row, -12:].tolist() == alone[0, -12:].tolist()


def test_save_load_round_trip_is_exact(tmp_path, tok, lively_model):
    lively_model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    for (name, a), (_, b) in zip(lively_model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    ids = tok("round trip", return_tensors="pt")["input_ids"]
    assert torch.equal(lively_model(ids).logits, again(ids).logits)


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "tokenizer.json"])
def test_missing_file_is_named(tmp_path, missing):
    folder = tmp_path / "model"
    shutil.copytree(glmcourse.COURSE_MODEL, folder)
    (folder / missing).unlink()
    loader = AutoTokenizer if missing.startswith("tokenizer") else AutoModel
    with pytest.raises((FileNotFoundError, OSError, ValueError), match=missing.replace(".", r"\.")):
        loader.from_pretrained(folder)


def test_quantize_rejects_unsupported_bits(lively_model):
    with pytest.raises(ValueError, match="4 or .*8"):
        lively_model.quantize(3)


def test_chat_rejects_history_of_the_wrong_shape(tok, model):
    with pytest.raises(TypeError, match=r"\(query, response\)"):
        model.chat(tok, "你好", history=["not a pair"])


def test_chat_answers_a_greeting_and_uses_the_history(tok, model):
    response, history = model.chat(tok, "你好", history=[], do_sample=False)
    assert "你好" in response and history == [("你好", response)]
    _, history = model.chat(tok, "我叫周杰。", history=[], do_sample=False)
    answer, _ = model.chat(tok, "我叫什么名字？", history=history, do_sample=False)
    assert "周杰" in answer


def test_half_precision_on_cpu_still_chats(tok):
    m = AutoModel.from_pretrained(glmcourse.COURSE_MODEL).half().eval()
    with pytest.warns(UserWarning):
        response, _ = m.chat(tok, "hello", history=[], do_sample=False)
    assert response


def test_tokenizer_round_trips_whitespace_and_chinese(tok):
    text = "def f(x):\n\treturn  x   # 注释\n\n你好，世界！  Hello\t\tworld"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    full = tok.encode(text)
    assert full[-2:] == [tok.gmask_token_id, tok.sop_token_id]
    assert tok.build_inputs_with_special_tokens([7, 8], [9]) == [7, 8, tok.gmask_token_id, tok.sop_token_id, 9,
                                                                 tok.eop_token_id]
    assert tok.padding_side == "left"
    for t in ["[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<pad>", "<unk>"]:
        assert tok.convert_ids_to_tokens(tok.convert_tokens_to_ids(t)) == t


def test_tokenizer_spells_a_value_the_same_wherever_it_appears(tok):
    """Words carry no leading space and Chinese characters stand alone, so a value copies token for token."""
    from glmcourse import lora

    ids = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    for value in ["Sydney", "吴倩", "37"]:
        alone = ids(value)
        for context in [f"lives in {value}.", f'"city": "{value}"', f"住在{value}。"]:
            whole = ids(context)
            assert any(whole[i:i + len(alone)] == alone for i in range(len(whole))), (value, context)
    assert all(" " not in piece or not piece.strip() for piece in lora.pre_token_pieces("Living in Sydney, Lucy"))
    shares = lora.copyable_fields(tok, course_data.lora_records("eval"))
    assert shares == {"name": 1.0, "age": 1.0, "city": 1.0}


def test_peft_default_lora_mapping_targets_query_key_value(model):
    from peft import LoraConfig, TaskType, get_peft_model

    import copy

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=32,
                                                                 lora_dropout=0.1))
    lora = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert lora and all("query_key_value" in n for n in lora)
    assert len(lora) == model.config.num_layers


def test_seed_snippet_runs_in_a_fresh_process_without_importing_glmcourse(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from transformers import AutoTokenizer, AutoModel
        tokenizer = AutoTokenizer.from_pretrained({glmcourse.COURSE_MODEL!r}, trust_remote_code=True)
        model = AutoModel.from_pretrained({glmcourse.COURSE_MODEL!r}, trust_remote_code=True)
        model = model.eval()
        response, history = model.chat(tokenizer, "你好", history=[])
        print(json.dumps({{"response": response, "turns": len(history)}}, ensure_ascii=False))
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["turns"] == 1 and result["response"]


# ----------------------------------------------------------------------------- ChatGLM-6B's code, not its paper
def test_residual_weight_is_sqrt_56_whatever_the_depth():
    """ChatGLM-6B's GLMBlock never receives num_layers, so every depth uses its default of 28."""
    import math

    from glmcourse.modeling.modeling_chatglm import paper_residual_weight

    small = ChatGLMForConditionalGeneration(course_config(vocab_size=64, hidden_size=32, num_layers=4,
                                                          num_attention_heads=4, inner_hidden_size=64))
    alphas = {layer.alpha for layer in small.transformer.layers}
    assert alphas == {math.sqrt(56)}
    assert paper_residual_weight(4) == math.sqrt(8) != math.sqrt(56)
    assert paper_residual_weight(28) == math.sqrt(56)


def test_rotary_frequencies_are_rounded_to_fp16_once():
    from glmcourse.modeling.modeling_chatglm import rotary_inv_freq, rotary_tables

    dim = 16  # the course model's rotary dimension: head_dim 32 / 2
    freq = rotary_inv_freq(dim)
    exact = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    assert freq.dtype == torch.float32
    assert torch.equal(freq, freq.half().float()), "every frequency must be an fp16 number"
    assert torch.equal(freq, exact.half().float())
    assert not torch.equal(freq, exact), "the exact fp32 frequencies are not what ChatGLM-6B uses"
    # the tables follow the rounded frequencies: position p has angle p * freq, in fp32
    positions = torch.arange(300).view(1, 1, -1).expand(1, 2, -1)
    (cos, sin), _ = rotary_tables(positions, dim, torch.float32)
    angles = torch.arange(300, dtype=torch.float32)[:, None] * freq
    assert torch.equal(cos[0, 0, :, : dim // 2], angles.cos())
    assert (cos[0, 0, :, : dim // 2] - (torch.arange(300.0)[:, None] * exact).cos()).abs().max() > 1e-3


def test_shipped_weights_survive_chatglm_6b_fp16_layers(model):
    """ChatGLM-6B's code builds its layers in fp16 before loading: our fp32 weights must be fp16 numbers."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            assert torch.equal(tensor, tensor.half().float()), f"{name} is not fp16-representable"


@pytest.mark.parametrize("bits", [8, 4])
def test_saving_a_quantized_model_is_refused_with_the_way_to_do_it(tmp_path, lively_model, bits):
    import copy

    quantized = copy.deepcopy(lively_model).quantize(bits)
    with pytest.raises(ValueError, match=rf"quantize after loading: .*quantize\({bits}\)"):
        quantized.save_pretrained(tmp_path / "q")
    assert not (tmp_path / "q").exists(), "nothing may be written"
    lively_model.save_pretrained(tmp_path / "float")  # the float model still saves
    assert (tmp_path / "float" / "model.safetensors").exists()


def test_offline_true_is_offline_in_the_model_folder_check(monkeypatch):
    from glmcourse.modeling.modeling_chatglm import check_model_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=true, so nothing will be downloaded"):
        check_model_folder("THUDM/chatglm-6b", ("model.safetensors",), "weights")


SPECIAL_TEXT = "Say [gMASK] then <sop>, <eop>, [MASK] and [sMASK] <pad> <unk> literally."


def test_user_text_never_becomes_special_tokens(tok):
    specials = set(tok.all_special_ids) | {tok.gmask_token_id, tok.smask_token_id, tok.mask_token_id}
    ids = tok.encode(SPECIAL_TEXT)
    assert ids[-2:] == [tok.gmask_token_id, tok.sop_token_id]  # the tokenizer's own suffix
    assert not specials & set(ids[:-2]), "a literal special-token string became a control token"
    assert tok.decode(ids[:-2]) == SPECIAL_TEXT
    # the documented opt-in of the mask lesson
    opted = tok(SPECIAL_TEXT, split_special_tokens=False)["input_ids"]
    assert tok.gmask_token_id in opted[:-2] and tok.mask_token_id in opted[:-2]


@pytest.mark.parametrize("text", ["你好", "如何提高弹跳", "Henry, aged 26, lives in Madrid.",
                                  '{"name": "李娜", "age": 37, "city": "成都"}', "Instruction: add\nAnswer: 3 + 5 = 8",
                                  "def f(x):\n\treturn x  # tab", "[Round 0]\n问：你好\n答：你好！"])
def test_ordinary_text_keeps_its_ids(tok, text):
    """Splitting special tokens changes nothing for text that holds none (the shipped model's ids stay)."""
    assert tok.encode(text) == tok(text, split_special_tokens=False)["input_ids"]


def test_alpaca_record_with_literal_tokens_gives_one_sop_and_one_eop(tok):
    from glmcourse.data import format_example, tokenize_row

    record = {"instruction": "Explain <sop> and [gMASK].", "input": "", "output": "They are <eop> markers."}
    row = tokenize_row(tok, format_example(record), max_seq_length=200)
    ids = row[0]["input_ids"] if isinstance(row, tuple) else row["input_ids"]
    assert ids.count(tok.sop_token_id) == 1 and ids.count(tok.eop_token_id) == 1 and ids[-1] == tok.eop_token_id


def test_a_merged_lora_model_saved_again_loads_everywhere(tmp_path, tok, model):
    """merge_lora + save_pretrained: the folder loads in the course's loaders and through the seed's call."""
    from glmcourse import adapters, loading, lora

    peft_model = lora.add_lora(AutoModel.from_pretrained(glmcourse.COURSE_MODEL), r=4, verbose=False)
    merged = adapters.merge_lora(peft_model, base_path=glmcourse.COURSE_MODEL, verbose=False)
    folder = tmp_path / "merged"
    merged.save_pretrained(folder)
    tok.save_pretrained(folder)
    for shim in ("configuration_chatglm.py", "modeling_chatglm.py", "tokenization_chatglm.py"):
        assert (folder / shim).is_file(), f"{shim} is named by auto_map but was not written"
    chat_tok, chat_model = loading.load_chat_model(str(folder))
    assert isinstance(chat_model.chat(chat_tok, "你好", history=[], do_sample=False)[0], str)
    script = textwrap.dedent(f"""
        from transformers import AutoTokenizer, AutoModel
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        print("REPLY", model.chat(tokenizer, "你好", history=[], do_sample=False)[0])
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REPLY" in out.stdout
