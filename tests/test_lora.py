"""Lesson 05-06 helpers: the from-scratch LoRA layer, counting, target modules, adapters on disk,
merging, the 8-bit base, and the exercise checkers (docs/failure-catalog.md: F02, F13, F14, F16-F19)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import glmcourse
from glmcourse import adapters, loading, lora, memory
from glmcourse.exercises import lora as checks
from glmcourse.modeling import (
    ChatGLMForConditionalGeneration,
    chatglm_6b_config,
    course_config,
)

# peft 0.21 reads a property transformers 5 deprecated; glmcourse.lora filters it, pytest re-enables it
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

# ---------------------------------------------------------------------------------- fixtures
def save_tokenizer(tokenizer, folder):
    """The course tokenizer plus the course model's remote-code shims (its tokenizer_config names them)."""
    import shutil
    from pathlib import Path

    tokenizer.save_pretrained(folder)
    for shim in Path(glmcourse.COURSE_MODEL).glob("*.py"):
        shutil.copy(shim, folder)

@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)


def tiny_config(tokenizer, **overrides):
    sizes = dict(vocab_size=len(tokenizer), hidden_size=32, num_layers=2, num_attention_heads=4,
                 inner_hidden_size=64, pad_token_id=tokenizer.pad_token_id, mask_token_id=tokenizer.mask_token_id,
                 gmask_token_id=tokenizer.gmask_token_id, smask_token_id=tokenizer.smask_token_id,
                 bos_token_id=tokenizer.sop_token_id, eos_token_id=tokenizer.eop_token_id)
    sizes.update(overrides)
    return course_config(**sizes)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    """A tiny random ChatGLM with the course tokenizer, saved like a real checkpoint folder."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_chatglm")
    ChatGLMForConditionalGeneration(tiny_config(tokenizer)).save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


@pytest.fixture()
def base(tiny_dir):
    return loading.load_base_model(tiny_dir).eval()


def sample_ids(tokenizer, text="Instruction: Turn this sentence into JSON:\nInput: Anna, 31, lives in Oslo.\nAnswer: "):
    return torch.tensor([tokenizer.encode(text)])


def randomize_b(peft_model, seed=0):
    """Stand-in for training: a non-zero B everywhere, so the adapter changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    return peft_model


# ---------------------------------------------------------------------------------- the layer
def test_lora_layer_starts_equal_to_base_and_matches_peft(base, tokenizer):
    peft_model = lora.add_lora(base, verbose=False).eval()
    layer = peft_model.base_model.model.transformer.layers[0].attention.query_key_value
    x = torch.randn(2, 5, 32)
    # B = 0 at the start: the adapted layer is exactly the base layer
    assert torch.equal(layer(x), layer.get_base_layer()(x))
    randomize_b(peft_model)
    mine = lora.LoRALinear(torch.nn.Linear(32, 96), r=8, alpha=32)  # built independently, then given A and B
    with torch.no_grad():
        mine.base.load_state_dict(layer.get_base_layer().state_dict())
        mine.lora_A.copy_(layer.lora_A["default"].weight)
        mine.lora_B.copy_(layer.lora_B["default"].weight)
    mine.eval()
    assert mine.scaling == 32 / 8
    assert not torch.allclose(layer(x), layer.get_base_layer()(x))
    torch.testing.assert_close(mine(x), layer(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(lora.LoRALinear.from_peft(layer).eval()(x), layer(x), atol=1e-6, rtol=0)


def test_lora_layer_init_training_and_merge():
    torch.manual_seed(0)
    layer = lora.LoRALinear(torch.nn.Linear(16, 24), r=4, alpha=8, dropout=0.5)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0
    trainable = [n for n, p in layer.named_parameters() if p.requires_grad]
    assert trainable == ["lora_A", "lora_B"]
    with torch.no_grad():
        layer.lora_B.normal_()
    layer.eval()  # dropout off: merged weights give the same outputs
    x = torch.randn(7, 16)
    torch.testing.assert_close(layer.merged()(x), layer(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.delta_weight(), layer.lora_B @ layer.lora_A * 2.0)
    with pytest.raises(lora.LoraError, match="positive"):
        lora.LoRALinear(torch.nn.Linear(4, 4), r=0)


# ---------------------------------------------------------------------------------- counting
def test_parameter_count_chatglm_6b_and_course_model(base):
    cfg = chatglm_6b_config()
    per_layer = 8 * (cfg.hidden_size + 3 * cfg.hidden_size)  # query_key_value: h -> 3h, A r x h, B 3h x r
    assert lora.lora_parameter_count(cfg, r=8) == cfg.num_layers * per_layer == 3_670_016
    course = course_config()
    assert lora.lora_parameter_count(course, r=8) == course.num_layers * 8 * 4 * course.hidden_size
    peft_model = lora.add_lora(base, verbose=False)
    trainable, total = lora.count_parameters(peft_model)
    assert trainable == lora.lora_parameter_count(base.config, r=8) == 2 * 8 * (32 + 96)
    assert total == sum(p.numel() for p in peft_model.parameters())


# ---------------------------------------------------------------------------------- targets (docs/failure-catalog.md#f13-missing-target-modules)
def test_missing_target_modules_list_the_linear_layers(base):
    with pytest.raises(lora.LoraError) as err:
        lora.add_lora(base, target_modules=["q_proj", "v_proj"], verbose=False)
    text = str(err.value)
    for name in ("q_proj", "transformer.layers.*.attention.query_key_value", "transformer.layers.*.mlp.dense_h_to_4h",
                 "['query_key_value']"):
        assert name in text


def test_default_targets_chatglm_and_a_model_type_without_default(base, capsys):
    assert lora.resolve_target_modules(base)[0] == ["query_key_value"]
    assert "peft's default" in capsys.readouterr().out
    from transformers import GlmConfig, GlmForCausalLM

    glm = GlmForCausalLM(GlmConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, pad_token_id=0))
    assert lora.peft_default_targets("glm") is None
    targets, how = lora.resolve_target_modules(glm)
    assert targets == ["k_proj", "o_proj", "q_proj", "v_proj"] and "attention" in how
    assert lora.lora_parameter_count(glm, r=2) == sum(2 * (m.in_features + m.out_features)
                                                      for n, m in glm.named_modules() if ".self_attn." in n)


# ---------------------------------------------------------------------------------- pre-flight (docs/failure-catalog.md#f14-nothing-trains)
def test_no_trainable_parameters_is_an_error(base):
    from peft import get_peft_model

    frozen = get_peft_model(base, lora.lora_config(inference_mode=True))
    with pytest.raises(lora.LoraError, match="0 trainable parameters"):
        lora.check_trainable(frozen)


def test_no_gradient_through_checkpointed_frozen_base_is_caught(base, tokenizer):
    from peft import get_peft_model

    model = get_peft_model(base, lora.lora_config()).train()
    # reentrant checkpointing whose inputs do not require grad: what older transformers did, and what
    # hand-written training loops still do. The frozen embeddings' output has requires_grad=False.
    base.activation_checkpointing_enable({"use_reentrant": True})
    base.disable_input_require_grads()
    ids = sample_ids(tokenizer)
    with pytest.warns(UserWarning, match="None of the inputs have requires_grad"):
        loss = model(input_ids=ids, labels=ids).loss
    with pytest.raises(RuntimeError, match="does not require grad"):  # torch's words; finetune explains them
        loss.backward()
    with pytest.raises(lora.LoraError, match="enable_input_require_grads"):
        lora.check_lora_grads(model)
    # the fix the message names makes gradients flow
    model.zero_grad(set_to_none=True)
    model.enable_input_require_grads()
    model(input_ids=ids, labels=ids).loss.backward()
    assert lora.check_lora_grads(model) > 0


# ---------------------------------------------------------------------------------- adapters (docs/failure-catalog.md: F16-F18)
def test_adapter_round_trip(base, tiny_dir, tokenizer, tmp_path):
    model = randomize_b(lora.add_lora(base, verbose=False)).eval()
    ids = sample_ids(tokenizer)
    want = model(input_ids=ids).logits
    summary = adapters.save_adapter(model, tmp_path / "out")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert summary.tensors == 2 * 2 and summary.r == 8 and summary.target_modules == ["query_key_value"]
    a_key = "base_model.model.transformer.layers.0.attention.query_key_value.lora_A.weight"
    assert summary.shapes[a_key] == (8, 32)
    assert summary.shapes[a_key.replace("lora_A", "lora_B")] == (96, 8)
    assert summary.max_abs_B > 0
    assert not list((tmp_path / "out").glob(".adapter-*"))  # no temp folder left behind
    fresh = loading.load_base_model(tiny_dir).eval()
    before = fresh(input_ids=ids).logits
    loaded = adapters.load_adapter(fresh, tmp_path / "out").eval()
    got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert not torch.allclose(before, want)


def test_untrained_or_empty_adapter_is_rejected(base, tmp_path):
    model = lora.add_lora(base, verbose=False)
    with pytest.raises(lora.LoraError, match="every lora_B is zero"):
        adapters.save_adapter(model, tmp_path / "untrained")
    assert not (tmp_path / "untrained" / "adapter_model.safetensors").exists()  # nothing moved into place
    summary = adapters.save_adapter(model, tmp_path / "start", expect_trained=False)
    assert summary.max_abs_B == 0
    # a weights file with no LoRA tensors in it
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "adapter_config.json").write_text((tmp_path / "start" / "adapter_config.json").read_text())
    save_file({"something.weight": torch.ones(2)}, str(tmp_path / "empty" / "adapter_model.safetensors"))
    with pytest.raises(lora.LoraError, match="saved empty"):
        adapters.check_adapter(tmp_path / "empty")
    (tmp_path / "empty" / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(lora.LoraError, match="0 bytes"):
        adapters.check_adapter(tmp_path / "empty")


def test_wrong_shapes_are_reported(base, tmp_path):
    adapters.save_adapter(randomize_b(lora.add_lora(base, verbose=False)), tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["r"] = 4
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(lora.LoraError, match=r"expected A \[r=4, in\]"):
        adapters.check_adapter(tmp_path)


def test_bin_and_safetensors_both_load(base, tiny_dir, tokenizer, tmp_path):
    model = randomize_b(lora.add_lora(base, verbose=False)).eval()
    ids = sample_ids(tokenizer)
    want = model(input_ids=ids).logits
    model.save_pretrained(str(tmp_path / "bin"), safe_serialization=False)
    assert (tmp_path / "bin" / "adapter_model.bin").exists()
    assert not (tmp_path / "bin" / "adapter_model.safetensors").exists()
    assert adapters.check_adapter(tmp_path / "bin").weights_file == "adapter_model.bin"
    loaded = adapters.load_adapter(loading.load_base_model(tiny_dir).eval(), tmp_path / "bin", verbose=False).eval()
    torch.testing.assert_close(loaded(input_ids=ids).logits, want, atol=1e-6, rtol=0)


def test_unusable_adapter_paths_are_explained(base, tmp_path):
    adapters.save_adapter(randomize_b(lora.add_lora(base, verbose=False)), tmp_path / "ok")
    with pytest.raises(lora.LoraError, match="is a file: pass the folder"):
        adapters.adapter_folder(tmp_path / "ok" / "adapter_model.safetensors")
    with pytest.raises(lora.LoraError, match="no such adapter folder"):
        adapters.adapter_folder(tmp_path / "nowhere")
    (tmp_path / "ok" / "adapter_config.json").unlink()
    with pytest.raises(lora.LoraError, match="no adapter_config.json: it has adapter_model.safetensors"):
        adapters.adapter_folder(tmp_path / "ok")
    (tmp_path / "run" / "checkpoint-20").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-20" / "adapter_config.json").write_text("{}")
    with pytest.raises(lora.LoraError, match="checkpoint-20"):
        adapters.adapter_folder(tmp_path / "run")


def test_key_mismatch_is_an_error_not_a_silent_no_op(base, tiny_dir, tmp_path):
    adapters.save_adapter(randomize_b(lora.add_lora(base, verbose=False)), tmp_path)
    file = tmp_path / "adapter_model.safetensors"
    weights = load_file(str(file))
    renamed = {k.replace("base_model.model.", "base_model.model.model."): v for k, v in weights.items()}
    save_file(renamed, str(file))
    with pytest.raises(lora.LoraError, match=f"only 0 of {len(weights)} adapter tensors were applied"), \
            pytest.warns(UserWarning, match="missing adapter keys"):  # all peft itself does is warn
        adapters.load_adapter(loading.load_base_model(tiny_dir), tmp_path)


def test_model_key():
    assert adapters.model_key("a.b.lora_A.weight") == "a.b.lora_A.default.weight"
    assert adapters.model_key("x.lora_B.weight", "json") == "x.lora_B.json.weight"


# ---------------------------------------------------------------------------------- merge (docs/failure-catalog.md#f19-merge-on-quantized-base)
def test_merge_on_fp32_base_equals_adapter(base, tokenizer):
    model = randomize_b(lora.add_lora(base, verbose=False)).eval()
    ids = sample_ids(tokenizer)
    want = model(input_ids=ids).logits
    merged = adapters.merge_lora(model)
    assert not lora.lora_parameters(merged)
    assert (merged(input_ids=ids).logits - want).abs().max().item() <= 1e-5


def test_merge_on_8bit_base_takes_the_fp32_path(tiny_dir, tokenizer, capsys):
    fp32 = randomize_b(lora.add_lora(loading.load_base_model(tiny_dir), verbose=False)).eval()
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    q = loading.load_base_model(tiny_dir, load_in_8bit=True)
    assert adapters.is_quantized(q) == "8-bit"
    q_peft = lora.add_lora(q, verbose=False).eval()
    set_peft_model_state_dict(q_peft, get_peft_model_state_dict(fp32))
    with pytest.raises(lora.LoraError, match="refusing to merge.*fp32"):
        adapters.merge_lora(q_peft, reload_fp32=False)
    merged = adapters.merge_lora(q_peft, base_path=tiny_dir)
    assert "fp32 copy" in capsys.readouterr().out
    assert adapters.is_quantized(merged) is None and not lora.lora_parameters(merged)
    ids = sample_ids(tokenizer)
    assert (merged(input_ids=ids).logits - fp32(input_ids=ids).logits).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------------------- bitsandbytes (docs/failure-catalog.md#f02-no-bitsandbytes-backend)
def test_missing_bitsandbytes_backend_gives_the_options(tiny_dir, monkeypatch):
    import glmcourse.loading

    def broken():
        raise RuntimeError("bitsandbytes is not usable here (ImportError: no backend). Options: ...")

    monkeypatch.setattr(glmcourse.loading, "import_bitsandbytes", broken)
    with pytest.raises(lora.LoraError) as err:
        loading.load_base_model(tiny_dir, load_in_8bit=True)
    text = str(err.value)
    assert "no backend" in text and "leave out --load_in_8bit" in text and "GPU" in text
    with pytest.raises(lora.LoraError, match="not both"):
        loading.load_base_model(tiny_dir, load_in_8bit=True, load_in_4bit=True)


def test_8bit_base_trains_lora(tiny_dir, tokenizer):
    model = lora.add_lora(loading.load_base_model(tiny_dir, load_in_8bit=True), verbose=False).train()
    ids = sample_ids(tokenizer)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert math.isfinite(loss.item()) and lora.check_lora_grads(model) > 0


# ---------------------------------------------------------------------------------- memory
def test_optimizer_state_is_two_moments_per_trainable_parameter(tiny_dir):
    small = dict(steps=1, batch_size=2, seq_len=8, model_path=tiny_dir)
    lo, full = memory.measure_training_memory("lora", **small), memory.measure_training_memory("full", **small)
    assert lo["optimizer_state_bytes"] == 2 * 4 * lo["trainable"]
    assert full["optimizer_state_bytes"] == 2 * 4 * full["total"] and full["trainable"] == full["total"]
    assert lo["trainable"] < full["trainable"] / 10
    with pytest.raises(lora.LoraError, match="'lora', 'ptuning' or 'full'"):
        memory.measure_training_memory("half", **small)


def test_peak_rss_is_the_measuring_process_own_not_its_parents(tmp_path):
    """Linux's ru_maxrss counts the RSS a process inherited at fork; a child of a big kernel must not read it."""
    import inspect
    import subprocess
    import sys

    ballast = bytearray(800 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch every page: 800 MiB resident here
    code = ("import resource, runpy; ns = runpy.run_path(%r); "
            "print(ns['peak_rss_bytes']() // 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    source = tmp_path / "peak.py"  # the function alone, so the child stays small (no torch)
    source.write_text(inspect.getsource(memory.peak_rss_bytes), encoding="utf-8")
    own, inherited = map(int, subprocess.run([sys.executable, "-c", code % str(source)], capture_output=True,
                                             text=True, check=True).stdout.split())
    del ballast
    assert own < 200, (f"the child read {own} MiB (ru_maxrss there: {inherited} MiB): its parent's memory, "
                       "not its own")


# ---------------------------------------------------------------------------------- checkers
RIGHT_AND_WRONG = {
    "check_lora_param_count": (lambda i, o, r: r * (i + o), lambda i, o, r: r * i * o),
    "check_lora_forward": (lambda x, W, b, A, B, al, r: x @ W.T + b + (x @ A.T @ B.T) * al / r,
                           lambda x, W, b, A, B, al, r: x @ W.T + b + x @ A.T @ B.T),
    "check_merge_weight": (lambda W, A, B, al, r: W + B @ A * al / r, lambda W, A, B, al, r: W + B @ A),
    "check_optimizer_state_bytes": (lambda n, w=4: 2 * n * w, lambda n, w=4: n * w),
    "check_model_key": (adapters.model_key, lambda k, name: k.replace("lora_", f"{name}.lora_")),
    "check_adapter_bytes": (lambda L, h, r: 4 * L * r * (h + 3 * h), lambda L, h, r: 4 * L * r * 2 * h),
}


def _parse_person(reply):
    try:
        value = json.loads(reply)
    except ValueError:
        return None
    ok = isinstance(value, dict) and isinstance(value.get("name"), str) and isinstance(value.get("city"), str) \
        and isinstance(value.get("age"), int)
    return value if ok else None


RIGHT_AND_WRONG["check_parse_person"] = (_parse_person, lambda reply: json.loads(reply) if "{" in reply else None)


@pytest.mark.parametrize("name", sorted(RIGHT_AND_WRONG))
def test_checkers_accept_right_and_reject_wrong(name):
    right, wrong = RIGHT_AND_WRONG[name]
    checker = getattr(checks, name)
    checker(right)
    with pytest.raises(AssertionError):
        checker(wrong)


def test_solutions_pass_their_checkers():
    import importlib
    import sys

    sys.path.insert(0, str(glmcourse.REPO_ROOT / "notebooks"))
    try:
        s05 = importlib.import_module("solutions.05_lora_solutions")
        s06 = importlib.import_module("solutions.06_inference_solutions")
    finally:
        sys.path.pop(0)
    checks.check_lora_param_count(s05.lora_param_count)
    checks.check_lora_forward(s05.lora_forward)
    checks.check_merge_weight(s05.merge_weight)
    checks.check_optimizer_state_bytes(s05.optimizer_state_bytes)
    checks.check_model_key(s06.model_key)
    checks.check_adapter_bytes(s06.adapter_bytes)
    checks.check_parse_person(s06.parse_person)


# ---------------------------------------------------------------------------------- wrong base, no training
def test_add_lora_on_a_quantize4_model_trains_beside_frozen_codes(base, tokenizer):
    """peft wraps the course's QuantizedLinear (an nn.Linear): LoRA learns, the int4 codes stay as they were."""
    base.quantize(4)
    codes = base.transformer.layers[0].attention.query_key_value.weight.clone()
    model = lora.add_lora(base, r=4, verbose=False)
    batch = tokenizer(["Instruction: say hi\nAnswer: hi"], return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    layer = model.base_model.model.transformer.layers[0].attention.query_key_value
    assert torch.equal(layer.base_layer.weight, codes)


def test_adapter_from_another_base_is_a_clear_error(tmp_path, base, tokenizer):
    from glmcourse.modeling import ChatGLMForConditionalGeneration, course_config

    torch.manual_seed(1)
    other = ChatGLMForConditionalGeneration(course_config(  # same names, other sizes
        vocab_size=len(tokenizer), hidden_size=64, num_layers=2, num_attention_heads=4, inner_hidden_size=128))
    trained = lora.add_lora(other, r=4, verbose=False)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    trained.save_pretrained(tmp_path / "other")
    with pytest.raises(lora.LoraError, match="trained on another base"):
        adapters.load_adapter(base, tmp_path / "other", verbose=False)


def test_an_untrained_adapter_loads_with_a_warning(tmp_path, tiny_dir):
    lora.add_lora(loading.load_base_model(tiny_dir), r=4, verbose=False).save_pretrained(tmp_path / "fresh")
    with pytest.warns(UserWarning, match="every LoRA B matrix is zero"):
        adapters.load_adapter(loading.load_base_model(tiny_dir), tmp_path / "fresh", verbose=False)


def test_a_damaged_adapter_config_is_named(tmp_path, tiny_dir):
    lora.add_lora(loading.load_base_model(tiny_dir), r=4, verbose=False).save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "adapter_config.json").write_text('{"r": 4, ')
    with pytest.raises(lora.LoraError, match=r"adapter_config.json: damaged"):
        adapters.load_adapter(loading.load_base_model(tiny_dir), tmp_path / "a", verbose=False)
