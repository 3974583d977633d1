"""``python -m glmcourse.ptuning`` (P-Tuning v2): train.sh's flags, main.py's data rules, the prefix checkpoint,
resume, --seed, the pre-flight checks and --quantization_bit (docs/failure-catalog.md: F08, F10, F14-F16, F25).

Every run uses a tiny random ChatGLM saved with the course tokenizer (as tests/test_finetune.py), so each takes seconds.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import glmcourse
from glmcourse import ptuning, ptuning_train, training
from glmcourse.modeling import ChatGLMForConditionalGeneration, chatglm_6b_config, course_config
from glmcourse.ptuning import PTuningError

ENV = {**os.environ, "GLMCOURSE_FAST": "1", "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0",
       "PYTHONPATH": str(glmcourse.REPO_ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)


def save_tiny(folder, tokenizer, seed=0, hidden=32):
    import shutil

    torch.manual_seed(seed)
    config = course_config(vocab_size=len(tokenizer), hidden_size=hidden, num_layers=2, num_attention_heads=4,
                           inner_hidden_size=2 * hidden, pad_token_id=tokenizer.pad_token_id,
                           mask_token_id=tokenizer.mask_token_id, gmask_token_id=tokenizer.gmask_token_id,
                           smask_token_id=tokenizer.smask_token_id, bos_token_id=tokenizer.sop_token_id,
                           eos_token_id=tokenizer.eop_token_id)
    ChatGLMForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for shim in Path(glmcourse.COURSE_MODEL).glob("*.py"):
        shutil.copy(shim, folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer):
    """(model folder, train JSON lines, validation JSON lines): 24 + 8 records of the LoRA lesson's data."""
    root = tmp_path_factory.mktemp("ptuning")
    model_dir = save_tiny(root / "model", tokenizer)
    records = json.loads((glmcourse.DATA_DIR / "lora_train.json").read_text(encoding="utf-8"))
    (root / "train_alpaca.json").write_text(json.dumps(records[:24], ensure_ascii=False), encoding="utf-8")
    (root / "eval_alpaca.json").write_text(json.dumps(records[24:32], ensure_ascii=False), encoding="utf-8")
    ptuning_train.convert(root / "train_alpaca.json", root / "train.json")
    ptuning_train.convert(root / "eval_alpaca.json", root / "dev.json")
    return model_dir, root / "train.json", root / "dev.json"


def run_main(argv, capsys):
    code = ptuning_train.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def common(model_dir, train_file, out, steps=2, **extra):
    argv = ["--do_train", "--train_file", train_file, "--model_name_or_path", model_dir, "--output_dir", out,
            "--per_device_train_batch_size", 4, "--max_steps", steps, "--save_steps", steps, "--logging_steps", 1,
            "--pre_seq_len", 4]
    for key, value in extra.items():
        argv += [f"--{key}"] + ([] if value is True else [value])
    return argv


class Capture:
    """A TrainerCallback that keeps the trained model (the Trainer passes it to every event)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Capture(TrainerCallback):
            model = None

            def on_train_end(self, args, state, control, model=None, **kwargs):
                self.model = model

        return _Capture()


# ---------------------------------------------------------------------------------------------- command line
def test_learner_defaults_need_only_the_paths(tmp_path):
    (tmp_path / "t.json").write_text('{"prompt": "a", "response": "b"}\n')
    args = ptuning_train.build_parser().parse_args(["--train_file", str(tmp_path / "t.json"),
                                                    "--output_dir", str(tmp_path / "o")])
    for key, value in ptuning.LEARNER_DEFAULTS.items():
        assert getattr(args, key) == value, key
    assert args.model_name_or_path == glmcourse.COURSE_MODEL and args.seed == 42 and args.quantization_bit is None


def test_every_flag_is_one_setting_and_unset_settings_take_the_defaults(tmp_path):
    """A flag is added in build_parser() and PTuningSettings only: the two name the same things."""
    from dataclasses import fields

    flags = {a.dest for a in ptuning_train.build_parser()._actions if a.dest != "help"}
    assert flags == {f.name for f in fields(ptuning_train.PTuningSettings)} - {"quiet"}
    s = ptuning_train.PTuningSettings(tmp_path / "t.json", tmp_path / "o", pre_seq_len=4)
    assert s.pre_seq_len == 4 and s.learning_rate == ptuning.LEARNER_DEFAULTS["learning_rate"]
    with pytest.raises(TypeError, match=r"train\(\) got unknown settings \['pre_seq_length'\]"):
        ptuning_train.train(tmp_path / "t.json", tmp_path / "o", pre_seq_length=4)

def test_train_sh_flags_verbatim(tiny, tmp_path, capsys):
    model_dir, train_file, dev_file = tiny
    out = tmp_path / "adgen-pt"
    code, stdout, stderr = run_main([
        "--do_train", "--train_file", train_file, "--validation_file", dev_file, "--prompt_column", "prompt",
        "--response_column", "response", "--overwrite_cache", "--model_name_or_path", model_dir,
        "--output_dir", out, "--overwrite_output_dir", "--max_source_length", 64, "--max_target_length", 64,
        "--per_device_train_batch_size", 1, "--per_device_eval_batch_size", 1, "--gradient_accumulation_steps", 2,
        "--predict_with_generate", "--max_steps", 4, "--logging_steps", 2, "--save_steps", 2,
        "--learning_rate", 2e-2, "--pre_seq_len", 8, "--quantization_bit", 8], capsys)
    assert code == 0, stderr
    assert "trainable params: 1,024 ||" in stdout  # 8 prefix positions x 2 layers x 2 (key, value) x 32
    assert "held-out exact match:" in stdout and "of 8 rows" in stdout
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    for folder in (out, out / "checkpoint-4"):
        assert sorted(load_file(folder / ptuning.PREFIX_WEIGHTS)) == ["transformer.prefix_encoder.embedding.weight"]
    assert not list(out.rglob("model.safetensors")), "checkpoints must hold the prefix, not a copy of the base"
    assert [row["step"] for row in json.loads((out / "loss_log.json").read_text())] == [1, 2, 4]
    predictions = (out / ptuning_train.PREDICTIONS).read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 8 and set(json.loads(predictions[0])) == {"prompt", "labels", "predict"}


# ---------------------------------------------------------------------------------------------- data rules
def reference_row(tokenizer, query, answer, history, use_history, max_source_length, max_target_length):
    """ChatGLM-6B ptuning/main.py's preprocess_function_train, its rules written out again here."""
    if not use_history:
        prompt = query
    else:
        prompt = ""
        for turn_idx, (old_query, response) in enumerate(history):
            prompt += "[Round {}]\n问：{}\n答：{}\n".format(turn_idx, old_query, response)
        prompt += "[Round {}]\n问：{}\n答：".format(len(history), query)
    a_ids = tokenizer.encode(prompt, add_special_tokens=False)
    b_ids = tokenizer.encode(answer, add_special_tokens=False)
    if len(a_ids) > max_source_length - 1:
        a_ids = a_ids[: max_source_length - 1]
    if len(b_ids) > max_target_length - 2:
        b_ids = b_ids[: max_target_length - 2]
    input_ids = a_ids + [tokenizer.gmask_token_id, tokenizer.sop_token_id] + b_ids + [tokenizer.eop_token_id]
    context_length = input_ids.index(tokenizer.bos_token_id)
    labels = [-100] * context_length + input_ids[context_length:]
    pad_len = max_source_length + max_target_length - len(input_ids)
    input_ids = input_ids + [tokenizer.pad_token_id] * pad_len
    labels = labels + [tokenizer.pad_token_id] * pad_len
    labels = [(x if x != tokenizer.pad_token_id else -100) for x in labels]
    return prompt, input_ids, labels


CASES = [
    ("把下面的句子整理成 JSON：\n吴倩今年37岁，住在武汉。", '{"name": "吴倩", "age": 37, "city": "武汉"}', [], False),
    ("我叫什么？", "你叫小红。", [["我叫小红。", "你好，小红！"], ["今天天气怎么样？", "很好。"]], True),
    ("你好", "你好！", [], True),  # a history column with an empty history: still [Round 0]
    ("Turn this sentence into JSON: " + "very long " * 40, "x " * 80, [], False),  # both sides cut
]


@pytest.mark.parametrize("query,answer,history,use_history", CASES)
def test_rows_match_main_py_byte_for_byte(tokenizer, query, answer, history, use_history):
    prompt, want_ids, want_labels = reference_row(tokenizer, query, answer, history, use_history, 32, 24)
    assert ptuning.build_prompt(query, history, use_history) == prompt
    row = ptuning.build_example(tokenizer, query, answer, 32, 24, history, use_history)
    padded = ptuning.pad_example(row, 32, 24, tokenizer.pad_token_id)
    assert padded["input_ids"] == want_ids and padded["labels"] == want_labels
    sop = row["input_ids"].index(tokenizer.sop_token_id)
    assert row["input_ids"][sop - 1] == tokenizer.gmask_token_id and row["input_ids"][-1] == tokenizer.eop_token_id
    assert set(row["labels"][:sop]) == {-100} and row["labels"][sop] == tokenizer.sop_token_id


def test_history_prompt_format_is_exact():
    got = ptuning.build_prompt("q2", [("q0", "r0"), ("q1", "r1")], history_column=True)
    assert got == "[Round 0]\n问：q0\n答：r0\n[Round 1]\n问：q1\n答：r1\n[Round 2]\n问：q2\n答："
    assert "\uff1a" in got and ":" not in got.replace("[Round", "")  # full-width colons
    assert ptuning.build_prompt("q", [("a", "b")], history_column=False) == "q"


def test_batch_padding_gives_main_py_loss(tokenizer, tiny):
    """The collator pads to the longest row; main.py pads every row to source + target: the same loss."""
    model = ChatGLMForConditionalGeneration.from_pretrained(tiny[0], pre_seq_len=4).eval()
    rows = [ptuning.build_example(tokenizer, q, a, 32, 24, h, u) for q, a, h, u in CASES[:3]]
    batch = ptuning.PrefixCollator(tokenizer.pad_token_id)(rows)
    fixed = [ptuning.pad_example(r, 32, 24, tokenizer.pad_token_id) for r in rows]
    full = {k: torch.tensor([f[k] for f in fixed]) for k in ("input_ids", "labels")}
    assert batch["input_ids"].shape[1] < full["input_ids"].shape[1]
    with torch.no_grad():
        assert model(**batch).loss.item() == pytest.approx(model(**full).loss.item(), abs=1e-5)


# ---------------------------------------------------------------------------------------------- what trains
def test_only_the_prefix_trains_and_the_base_is_unchanged(tiny, tmp_path):
    model_dir, train_file, _ = tiny
    capture = Capture()
    result = ptuning_train.train(train_file, tmp_path / "o", model_name_or_path=model_dir, max_steps=3, save_steps=3,
                                 per_device_train_batch_size=4, logging_steps=1, pre_seq_len=4, callbacks=[capture],
                                 quiet=True)
    model = capture.model
    assert result["first_step_max_prefix_grad"] > 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"transformer.prefix_encoder.embedding.weight"}
    original = load_file(Path(model_dir) / "model.safetensors")
    after = model.state_dict()
    for key, value in original.items():
        assert torch.equal(after[key], value), f"{key} changed during P-Tuning"
    saved = load_file(tmp_path / "o" / ptuning.PREFIX_WEIGHTS)["transformer.prefix_encoder.embedding.weight"]
    assert torch.equal(saved, model.transformer.prefix_encoder.embedding.weight.detach())


def test_projection_trains_its_mlp(tiny, tmp_path):
    model_dir, train_file, _ = tiny
    capture = Capture()
    result = ptuning_train.train(train_file, tmp_path / "o", model_name_or_path=model_dir, max_steps=1, save_steps=1,
                                 per_device_train_batch_size=4, pre_seq_len=4, prefix_projection=True,
                                 callbacks=[capture], quiet=True)
    names = {n for n, p in capture.model.named_parameters() if p.requires_grad}
    assert names == {f"transformer.prefix_encoder.{n}" for n in
                     ("embedding.weight", "trans.0.weight", "trans.0.bias", "trans.2.weight", "trans.2.bias")}
    assert result["trainable"] == ptuning.prefix_parameter_count(capture.model.config, 4, True)
    assert ptuning.read_prefix(tmp_path / "o")["config"]["prefix_projection"] is True


def test_parameter_counts_formula_and_meta_device():
    cfg = chatglm_6b_config()
    assert ptuning.prefix_parameter_count(cfg, 128) == 28 * 2 * 128 * 4096 == 29_360_128
    assert ptuning.meta_trainable(cfg, 128)[0] == 29_360_128
    assert ptuning.meta_trainable(cfg, 128, True)[0] == ptuning.prefix_parameter_count(cfg, 128, True)
    small = course_config()
    assert ptuning.meta_trainable(small, 16)[0] == 16 * small.num_layers * 2 * small.hidden_size


# ---------------------------------------------------------------------------------------------- checkpoint
@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    model_dir, train_file, _ = tiny
    out = tmp_path_factory.mktemp("trained") / "prefix"
    capture = Capture()
    ptuning_train.train(train_file, out, model_name_or_path=model_dir, max_steps=3, save_steps=3,
                        per_device_train_batch_size=4, pre_seq_len=4, learning_rate=5e-2, callbacks=[capture],
                        quiet=True)
    return out, capture.model.eval()


def test_prefix_checkpoint_is_safetensors_and_round_trips(trained, tiny, tokenizer):
    out, model = trained
    with safe_open(str(out / ptuning.PREFIX_WEIGHTS), framework="pt") as handle:
        assert handle.metadata()["pre_seq_len"] == "4"
        assert list(handle.keys()) == ["transformer.prefix_encoder.embedding.weight"]
    config = json.loads((out / ptuning.PTUNING_CONFIG).read_text())
    assert config["pre_seq_len"] == 4 and config["prefix_projection"] is False
    assert {"hidden_size": 32, "num_layers": 2, "vocab_size": len(tokenizer)}.items() <= config["base"].items()
    assert len(config["base"]["fingerprint"]) == 16
    loaded = ptuning.load_ptuned_model(out, base_path=tiny[0], verbose=False)
    ids = torch.tensor([tokenizer.encode("Instruction: Turn this sentence into JSON:\nInput: Anna, 31.\nAnswer: ")])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
        base = ChatGLMForConditionalGeneration.from_pretrained(tiny[0]).eval()
        assert not torch.allclose(base(input_ids=ids).logits, loaded(input_ids=ids).logits, atol=1e-4)
    reply, history = loaded.chat(tokenizer, "你好", history=[], do_sample=False, max_length=40)
    assert isinstance(reply, str) and history == [("你好", reply)]


def test_wrong_pre_seq_len_or_base_is_refused(trained, tiny, tokenizer, tmp_path):
    out, _ = trained
    model_dir = tiny[0]
    with pytest.raises(PTuningError, match=r"trained with pre_seq_len 4.*built with pre_seq_len 6.*pre_seq_len=4"):
        ptuning.load_prefix(ChatGLMForConditionalGeneration.from_pretrained(model_dir, pre_seq_len=6), out)
    with pytest.raises(PTuningError, match="prefix_projection True"):
        ptuning.load_prefix(ChatGLMForConditionalGeneration.from_pretrained(model_dir, pre_seq_len=4,
                                                                            prefix_projection=True), out)
    with pytest.raises(PTuningError, match="built without one"):
        ptuning.load_prefix(ChatGLMForConditionalGeneration.from_pretrained(model_dir), out)
    other = save_tiny(tmp_path / "other", tokenizer, seed=1)  # same sizes, other weights
    with pytest.raises(PTuningError, match="another base of the same size"):
        ptuning.load_prefix(ChatGLMForConditionalGeneration.from_pretrained(other, pre_seq_len=4), out)
    wider = save_tiny(tmp_path / "wider", tokenizer, hidden=64)
    with pytest.raises(PTuningError, match="another base model .*hidden_size 32 vs 64"):
        ptuning.load_prefix(ChatGLMForConditionalGeneration.from_pretrained(wider, pre_seq_len=4), out)
    with pytest.raises(PTuningError, match="is a file"):
        ptuning.read_prefix(out / ptuning.PREFIX_WEIGHTS)


def test_fingerprint_survives_quantization(tiny):
    model = ChatGLMForConditionalGeneration.from_pretrained(tiny[0], pre_seq_len=4)
    before = ptuning.base_fingerprint(model)
    assert ptuning.base_fingerprint(model.quantize(4)) == before


# ---------------------------------------------------------------------------------------------- resume, seed
def test_resume_after_kill_continues_at_the_right_step(tiny, tmp_path, capsys):
    model_dir, train_file, _ = tiny
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "glmcourse.ptuning", *map(str, common(model_dir, train_file, out, steps=400)),
           "--save_steps", "3", "--save_total_limit", "5"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not any(ptuning_train.is_complete_checkpoint(c)
                                                 for c in training.checkpoints(out)):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = max(int(c.name.split("-")[1]) for c in training.checkpoints(out)
                    if ptuning_train.is_complete_checkpoint(c))
    assert 3 <= killed_at < 400
    target = killed_at + 3
    again = [a if a != "400" else str(target) for a in cmd[3:]] + ["--resume_from_checkpoint"]  # resumed in this process
    code, stdout, stderr = run_main(again, capsys)
    assert code == 0, stderr[-2000:]
    assert f"resuming from checkpoint-{killed_at} (step {killed_at})" in stdout
    assert json.loads((out / f"checkpoint-{target}" / "trainer_state.json").read_text())["global_step"] == target
    steps = [row["step"] for row in json.loads((out / "loss_log.json").read_text())]
    assert steps == sorted(set(steps)) and steps[-1] == target and set(range(1, target + 1)) <= set(steps)
    ptuning.read_prefix(out)


def test_resume_with_other_pre_seq_len_is_refused(trained, tiny, capsys):
    out, _ = trained
    code, _, err = run_main(common(tiny[0], tiny[1], out, steps=6) + ["--pre_seq_len", 8, "--resume_from_checkpoint"],
                            capsys)
    assert code == 1 and "--pre_seq_len 4" in err and "Traceback" not in err


def test_seed_makes_two_runs_identical(tiny, tmp_path, capsys):
    model_dir, train_file, _ = tiny
    weights = []
    for run, seed in (("a", 42), ("b", 42), ("c", 7)):
        code, _, err = run_main(common(model_dir, train_file, tmp_path / run, steps=2) + ["--seed", seed], capsys)
        assert code == 0, err
        weights.append(load_file(tmp_path / run / ptuning.PREFIX_WEIGHTS))
    key = "transformer.prefix_encoder.embedding.weight"
    assert torch.equal(weights[0][key], weights[1][key]), "two runs with --seed 42 differ"
    assert not torch.equal(weights[0][key], weights[2][key]), "--seed 7 should draw another prefix"


# ---------------------------------------------------------------------------------------------- refusals
def test_bad_flags_and_data_are_refused_before_any_model_loads(tiny, tmp_path, capsys, monkeypatch):
    model_dir, train_file, dev_file = tiny

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(ptuning_train, "load_base", no_model)
    bad_line = tmp_path / "bad.json"
    bad_line.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": \n', encoding="utf-8")
    empty = tmp_path / "empty.json"
    empty.write_text('{"prompt": "", "response": "b"}\n', encoding="utf-8")
    history = tmp_path / "history.json"
    history.write_text('{"prompt": "a", "response": "b", "history": "not a list"}\n', encoding="utf-8")
    out = tmp_path / "o"
    cases = [
        (["--quantization_bit", 3], "--quantization_bit: 3: out of range; pass an integer in [4, 8]"),
        (["--learning_rate", 0], "--learning_rate: 0: out of range"),
        (["--pre_seq_len", 0], "--pre_seq_len: 0: out of range"),
        (["--max_source_length", 1], "--max_source_length: 1: out of range"),
        (["--max_target_length", 2], "--max_target_length: 2: out of range"),
        (["--prompt_column", "content"], "line 1: no 'content' column (its keys: prompt, response)"),
        (["--predict_with_generate"], "--predict_with_generate needs --validation_file"),
        (["--resume_from_checkpoint"], "no complete checkpoint"),
    ]
    for extra, message in cases:
        code, _, err = run_main(common(model_dir, train_file, out) + extra, capsys)
        assert code in (1, 2) and message in err, (extra, err)  # 2: refused by the command line's guard
        assert "Traceback" not in err and err.startswith("error: ")
    for data, message in [(tmp_path / "missing.json", "no such file"), (bad_line, "line 2: not valid JSON"),
                          (empty, "0 training samples after filtering (1 of 1 rows have an empty prompt"),
                          (glmcourse.DATA_DIR / "lora_eval.json", "python -m glmcourse.ptuning convert")]:
        code, _, err = run_main(common(model_dir, data, out), capsys)
        assert code in (1, 2) and message in err, (data, err)  # 2: the guard (missing, not JSON Lines)
    code, _, err = run_main(common(model_dir, history, out) + ["--history_column", "history"], capsys)
    assert code == 1 and "list of [query, response] string pairs" in err
    assert not out.exists(), "a refused run must not create its output folder"
    with pytest.raises(SystemExit):  # argparse: a non-integer is refused with its usage line
        ptuning_train.build_parser().parse_args(["--train_file", "t", "--output_dir", "o", "--pre_seq_len", "x"])


def test_an_earlier_run_is_never_replaced_without_overwrite(tiny, tmp_path, capsys):
    model_dir, train_file, _ = tiny
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run_main(common(model_dir, train_file, out), capsys)[0] == 0  # a folder with other files is fine
    before = (out / ptuning.PREFIX_WEIGHTS).read_bytes()
    code, _, err = run_main(common(model_dir, train_file, out), capsys)
    assert code == 1 and "--overwrite_output_dir" in err and "--resume_from_checkpoint" in err
    assert (out / ptuning.PREFIX_WEIGHTS).read_bytes() == before
    assert run_main(common(model_dir, train_file, out) + ["--overwrite_output_dir"], capsys)[0] == 0
    assert (out / "notes.txt").read_text() == "mine", "--overwrite_output_dir deletes only the earlier run's files"


def test_nan_loss_stops_with_a_diagnosis(tiny, tokenizer, tmp_path, capsys):
    broken = save_tiny(tmp_path / "nan", tokenizer)
    state = load_file(broken / "model.safetensors")
    state["transformer.word_embeddings.weight"][tokenizer.sop_token_id] = float("nan")
    from safetensors.torch import save_file

    save_file(state, str(broken / "model.safetensors"), metadata={"format": "pt"})
    code, _, err = run_main(common(broken, tiny[1], tmp_path / "o", steps=4) + ["--save_steps", 1], capsys)
    assert code == 1 and "training stopped at step 1: the loss is nan" in err
    assert not (tmp_path / "o" / ptuning.PREFIX_WEIGHTS).exists()


# ---------------------------------------------------------------------------------------------- quantization
def test_quantization_bit_4_trains_a_float_prefix(tiny, tmp_path):
    from glmcourse.quant import QuantizedLinear

    model_dir, train_file, _ = tiny
    capture = Capture()
    result = ptuning_train.train(train_file, tmp_path / "q4", model_name_or_path=model_dir, max_steps=2, save_steps=2,
                                 per_device_train_batch_size=4, pre_seq_len=4, quantization_bit=4,
                                 callbacks=[capture], quiet=True)
    model = capture.model
    qkv = model.transformer.layers[0].attention.query_key_value
    assert isinstance(qkv, QuantizedLinear) and qkv.bits == 4
    prefix = model.transformer.prefix_encoder.embedding.weight
    assert prefix.dtype == torch.float32 and prefix.requires_grad and result["first_step_max_prefix_grad"] > 0
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"transformer.prefix_encoder.embedding.weight"}
    assert load_file(tmp_path / "q4" / ptuning.PREFIX_WEIGHTS)["transformer.prefix_encoder.embedding.weight"].dtype \
        == torch.float32
    on_int4 = ptuning.load_ptuned_model(tmp_path / "q4", base_path=model_dir, quantization_bit=4, verbose=False)
    assert on_int4.transformer.prefix_encoder.embedding.weight.dtype == torch.float32


# ---------------------------------------------------------------------------------------------- converter
def test_converter_one_command(tmp_path):
    from glmcourse.data import format_example

    save = tmp_path / "train.json"
    done = subprocess.run([sys.executable, "-m", "glmcourse.ptuning", "convert", "--data_path",
                           str(glmcourse.DATA_DIR / "lora_train.json"), "--save_path", str(save)],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = json.loads((glmcourse.DATA_DIR / "lora_train.json").read_text(encoding="utf-8"))
    lines = save.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records) and f"{len(records)} records" in done.stdout
    first = json.loads(lines[0])
    assert first == {"prompt": format_example(records[0])["context"], "response": records[0]["output"]}
    assert "\\u" not in lines[0] or records[0]["input"].isascii()  # Chinese stays readable
    chat = ptuning.alpaca_to_ptuning({"instruction": "Say hi:", "input": "Anna", "output": "Hi Anna",
                                      "history": [["q", "r"]]}, style="chat")
    assert chat == {"prompt": "Say hi:\nAnna", "response": "Hi Anna", "history": [["q", "r"]]}
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": 1}]', encoding="utf-8")
    failed = subprocess.run([sys.executable, "-m", "glmcourse.ptuning", "convert", "--data_path", str(bad),
                             "--save_path", str(tmp_path / "x.json")], env=ENV, capture_output=True, text=True)
    assert failed.returncode == 1 and failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr


def test_lesson_module_stays_at_the_bottom():
    """glmcourse/ptuning.py imports only the basics. Its ``__main__`` block, the entry of ``python -m
    glmcourse.ptuning``, is not an import of the lesson module and is left out (tests/test_layout.py)."""
    allowed = {"glmcourse", "glmcourse.settings", "glmcourse.files", "glmcourse.sizes", "glmcourse.bilingual",
               "glmcourse.i18n", "glmcourse.modeling"}
    tree = ast.parse((glmcourse.PACKAGE_DIR / "ptuning.py").read_text(encoding="utf-8"))
    body = [n for n in tree.body if not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]
    found = set()
    for node in (n for top in body for n in ast.walk(top)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("glmcourse"):
            found |= {f"{node.module}.{a.name}" if node.module == "glmcourse" and a.name.islower() else node.module
                      for a in node.names}
    assert found and found <= allowed, found - allowed
