"""``python -m glmcourse.finetune``: the seed's flags, the learner defaults, checkpoints and resume, the
guard, two processes under torchrun, an 8-bit base, and a GLM-4 model (docs/failure-catalog.md: F03, F13-F16, F25).

Every run uses a tiny random model saved with the course tokenizer, so each takes seconds.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import shutil
from pathlib import Path

import pytest
import torch

import glmcourse
from glmcourse import adapters, finetune, lesson_runs, lora, training
from glmcourse.modeling import ChatGLMForConditionalGeneration, course_config

# peft 0.21 reads a property transformers 5 deprecated; glmcourse.lora filters it, pytest re-enables it
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

ENV = {**os.environ, "GLMCOURSE_FAST": "1", "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0",
       "PYTHONPATH": str(glmcourse.REPO_ROOT)}
SMALL = ["--per_device_train_batch_size", "4", "--logging_steps", "1"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)


def save_tokenizer(tokenizer, folder):
    """The course tokenizer plus the course model's remote-code shims (its tokenizer_config names them)."""
    import shutil

    tokenizer.save_pretrained(folder)
    for shim in Path(glmcourse.COURSE_MODEL).glob("*.py"):
        shutil.copy(shim, folder)


def save_tiny_chatglm(folder, tokenizer, nan_embedding: bool = False):
    torch.manual_seed(0)
    config = course_config(vocab_size=len(tokenizer), hidden_size=32, num_layers=2, num_attention_heads=4,
                           inner_hidden_size=64, pad_token_id=tokenizer.pad_token_id,
                           mask_token_id=tokenizer.mask_token_id, gmask_token_id=tokenizer.gmask_token_id,
                           smask_token_id=tokenizer.smask_token_id, bos_token_id=tokenizer.sop_token_id,
                           eos_token_id=tokenizer.eop_token_id)
    model = ChatGLMForConditionalGeneration(config)
    if nan_embedding:  # a corrupt weight: every forward pass gives a NaN loss
        with torch.no_grad():
            model.transformer.word_embeddings.weight[tokenizer.sop_token_id] = float("nan")
    model.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer):
    """(model folder, tokenized dataset folder): 24 rows of data/lora_train.json."""
    root = tmp_path_factory.mktemp("finetune")
    model_dir = save_tiny_chatglm(root / "model", tokenizer)
    data_dir = lesson_runs.tokenize_lora_train(root / "rows", model_path=model_dir, limit=24)
    return model_dir, data_dir


def run_main(argv, capsys):
    code = finetune.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_learner_defaults_need_only_the_two_paths(tmp_path):
    (tmp_path / "d").mkdir()
    args = finetune.build_parser().parse_args(["--dataset_path", str(tmp_path / "d"), "--output_dir", str(tmp_path / "o")])
    for key, value in finetune.LEARNER_DEFAULTS.items():
        assert getattr(args, key) == value
    assert args.model_name_or_path == glmcourse.COURSE_MODEL
    assert args.fp16 is False and args.remove_unused_columns is False and args.resume_from_checkpoint is None


def test_every_flag_is_one_setting_and_unset_settings_take_the_defaults(tmp_path):
    """A flag is added in build_parser() and FinetuneSettings only: the two name the same things."""
    from dataclasses import fields

    flags = {a.dest for a in finetune.build_parser()._actions if a.dest != "help"}
    assert flags == {f.name for f in fields(finetune.FinetuneSettings)} - {"overwrite", "quiet"}
    s = finetune.FinetuneSettings(tmp_path / "d", tmp_path / "o", max_steps=7, overwrite=True)
    assert s.max_steps == 7 and s.lora_rank == finetune.LEARNER_DEFAULTS["lora_rank"] and s.overwrite_output_dir
    assert s.model_name_or_path == str(glmcourse.COURSE_MODEL)
    with pytest.raises(TypeError, match=r"finetune\(\) got unknown settings \['lora_rnak'\]"):
        finetune.finetune(tmp_path / "d", tmp_path / "o", lora_rnak=4)

def test_seed_flags_verbatim(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    out = tmp_path / "output"
    code, stdout, stderr = run_main([
        "--dataset_path", data_dir, "--lora_rank", 4, "--per_device_train_batch_size", 6,
        "--gradient_accumulation_steps", 1, "--max_steps", 6, "--save_steps", 2, "--save_total_limit", 2,
        "--learning_rate", 1e-3, "--fp16", "--remove_unused_columns", "false", "--logging_steps", 2,
        "--output_dir", out, "--model_name_or_path", model_dir], capsys)
    assert code == 0, stderr
    if not torch.cuda.is_available():
        assert "--fp16 needs a CUDA GPU" in stdout and "fp32" in stdout  # docs/failure-catalog.md#f03-fp16-on-cpu
    assert "LoRA target modules: ['query_key_value']" in stdout
    assert "trainable params: 1,024" in stdout  # 2 layers * r=4 * (32 + 96)
    summary = adapters.check_adapter(out)  # the end-of-training adapter, re-read (docs/failure-catalog.md#f16-empty-adapter)
    assert summary.r == 4 and summary.weights_file == "adapter_model.safetensors" and summary.max_abs_B > 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]  # save_total_limit 2
    log = json.loads((out / "loss_log.json").read_text())
    assert [row["step"] for row in log] == [1, 2, 4, 6]  # logging_first_step, then every 2 steps
    assert all(math.isfinite(row["loss"]) for row in log)


def test_adapter_saved_at_every_save_step(tiny, tmp_path, monkeypatch):
    model_dir, data_dir = tiny
    saved = []
    real = adapters.save_adapter

    def spy(model, output_dir, **kw):
        summary = real(model, output_dir, **kw)
        saved.append(summary.max_abs_B)
        return summary

    monkeypatch.setattr(adapters, "save_adapter", spy)
    result = finetune.finetune(data_dir, tmp_path / "o", model_name_or_path=model_dir, max_steps=4, save_steps=2,
                               per_device_train_batch_size=4, logging_steps=1, quiet=True)
    assert len(saved) == 3  # steps 2 and 4 (callback), and the end of training
    assert result["global_step"] == 4 and result["first_step_max_lora_grad"] > 0
    assert result["adapter"]["tensors"] == 4 and len(result["log"]) == 4


def first_loss(output_dir) -> float:
    return json.loads((Path(output_dir) / "loss_log.json").read_text())[0]["loss"]


def test_gradient_accumulation_averages_like_a_bigger_batch(tiny, tmp_path):
    """ChatGLM returns a mean loss and ignores num_items_in_batch: 4 x 2 accumulation must log (and step
    with) the same loss as one batch of 8, not twice it."""
    model_dir, data_dir = tiny
    common = dict(model_name_or_path=model_dir, max_steps=1, save_steps=1, logging_steps=1, quiet=True)
    finetune.finetune(data_dir, tmp_path / "big", per_device_train_batch_size=8, **common)
    finetune.finetune(data_dir, tmp_path / "acc", per_device_train_batch_size=4, gradient_accumulation_steps=2,
                      **common)
    assert first_loss(tmp_path / "acc") == pytest.approx(first_loss(tmp_path / "big"), abs=0.05)


def test_existing_checkpoints_need_resume_or_overwrite(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    base = ["--dataset_path", data_dir, "--output_dir", tmp_path, "--model_name_or_path", model_dir, *SMALL,
            "--max_steps", 2, "--save_steps", 2]
    assert run_main(base, capsys)[0] == 0
    code, _, err = run_main(base, capsys)
    assert code == 1 and "--resume_from_checkpoint" in err and "--overwrite_output_dir" in err
    assert run_main(base + ["--overwrite_output_dir"], capsys)[0] == 0


def test_bad_inputs_are_explained(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    common = ["--output_dir", tmp_path / "o", "--model_name_or_path", model_dir, "--max_steps", 1]
    code, _, err = run_main(["--dataset_path", tmp_path / "missing", *common], capsys)
    assert code == 2 and "--dataset_path" in err and "no such folder" in err
    # docs/failure-catalog.md#f13-missing-target-modules
    code, _, err = run_main(["--dataset_path", data_dir, *common, "--target_modules", "q_proj"], capsys)
    assert code == 1 and "q_proj" in err and "attention.query_key_value" in err
    code, _, err = run_main(["--dataset_path", data_dir, *common, "--resume_from_checkpoint"], capsys)
    assert code == 1 and "no complete checkpoint" in err
    code, _, err = run_main(["--dataset_path", data_dir, *common, "--learning_rate", "0"], capsys)
    assert code == 2 and "--learning_rate" in err  # refused by the guard, before anything loads
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        (tmp_path / "ds.json").write_text("{}")
        code, _, err = run_main(["--dataset_path", data_dir, *common, "--deepspeed", tmp_path / "ds.json"], capsys)
        assert code == 1 and "pip install deepspeed" in err


def test_nan_loss_stops_training_with_a_diagnosis(tiny, tokenizer, tmp_path, capsys):
    _, data_dir = tiny
    broken = save_tiny_chatglm(tmp_path / "nan_model", tokenizer, nan_embedding=True)
    out = tmp_path / "o"
    code, _, err = run_main(["--dataset_path", data_dir, "--output_dir", out, "--model_name_or_path", broken,
                             *SMALL, "--max_steps", 5, "--save_steps", 1], capsys)
    assert code == 1 and "training stopped at step 1: the loss is nan" in err and "learning rate" in err
    assert not list(out.glob("checkpoint-*")) and not (out / "adapter_model.safetensors").exists()


def test_loss_guard_on_zero_and_infinite_losses():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir="unused", learning_rate=1e-3, report_to="none")
    guard, control, state = finetune.lora_loss_guard(patience=3), TrainerControl(), TrainerState(global_step=7)
    for loss in (0.5, 0.0, 0.0):
        guard.observe(loss)
        guard.on_step_end(args, state, control)
    assert not control.should_training_stop  # two zeros in a row: not yet
    guard.observe(0.0)
    guard.on_step_end(args, state, control)
    assert control.should_training_stop and not control.should_save
    assert "exactly 0 for 3 steps" in guard.diagnosis and "labels" in guard.diagnosis
    guard, control = finetune.lora_loss_guard(), TrainerControl()
    guard.observe(float("inf"))
    guard.on_step_end(args, state, control)
    assert control.should_training_stop and "the loss is inf" in guard.diagnosis


def test_incomplete_checkpoint_is_skipped_on_resume(tmp_path, capsys):
    from safetensors.torch import save_file

    for step in (2, 4):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
        save_file({"w": torch.zeros(2)}, str(folder / "adapter_model.safetensors"))
    (tmp_path / "checkpoint-6").mkdir()  # killed while saving: no trainer_state.json
    (tmp_path / "checkpoint-6" / "adapter_model.safetensors").write_text("")
    assert finetune.resolve_resume("last", tmp_path, 8) == str(tmp_path / "checkpoint-4")
    out = capsys.readouterr().out
    assert "checkpoint-6 cannot be resumed from" in out and "interrupted while saving" in out
    with pytest.raises(lora.LoraError, match="not a checkpoint folder"):
        finetune.resolve_resume(str(tmp_path / "checkpoint-6"), tmp_path, 8)


def test_resume_after_kill_continues_the_step_count(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "glmcourse.finetune", "--dataset_path", str(data_dir), "--output_dir", str(out),
           "--model_name_or_path", str(model_dir), *SMALL, "--max_steps", "400", "--save_steps", "3",
           "--save_total_limit", "5"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not any(finetune.is_complete_checkpoint(c) for c in training.checkpoints(out)):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean-up at all: the worst case
        proc.wait()
    killed_at = max(int(c.name.split("-")[1]) for c in training.checkpoints(out) if finetune.is_complete_checkpoint(c))
    assert 3 <= killed_at < 400
    target = killed_at + 3
    code, stdout, stderr = run_main(cmd[3:-6] + ["--max_steps", target, "--save_steps", 3, "--resume_from_checkpoint"],
                                    capsys)  # resumed in this process
    assert code == 0, stderr[-2000:]
    assert f"resuming from checkpoint-{killed_at} (step {killed_at})" in stdout
    state = json.loads((out / f"checkpoint-{target}" / "trainer_state.json").read_text())
    assert state["global_step"] == target
    steps = [row["step"] for row in json.loads((out / "loss_log.json").read_text())]
    assert steps == sorted(set(steps)) and steps[-1] == target  # no step logged twice, none after the end
    assert set(range(1, target + 1)) <= set(steps)  # logging_steps 1: every step is there, before and after the kill
    adapters.check_adapter(out)


def test_torchrun_two_processes(tiny, tmp_path):
    model_dir, data_dir = tiny
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000), "-m",
         "glmcourse.finetune", "--dataset_path", str(data_dir), "--output_dir", str(out), "--model_name_or_path",
         str(model_dir), *SMALL, "--max_steps", "2", "--save_steps", "2"],
        env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stdout  # printed by rank 0 only, once
    assert done.stdout.count("trainable params") == 1
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert adapters.check_adapter(out).max_abs_B > 0
    # 2 processes x batch 4 log the loss of one batch of 8, not the sum over processes
    single = finetune.finetune(data_dir, tmp_path / "single", model_name_or_path=model_dir, max_steps=1,
                               save_steps=1, logging_steps=1, per_device_train_batch_size=8, quiet=True)
    assert first_loss(out) == pytest.approx(single["log"][0]["loss"], abs=0.05)


def test_8bit_base(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    code, stdout, stderr = run_main(["--dataset_path", data_dir, "--output_dir", tmp_path, "--model_name_or_path",
                                     model_dir, *SMALL, "--max_steps", 2, "--save_steps", 2, "--load_in_8bit"], capsys)
    assert code == 0, stderr
    assert "8-bit" in stdout
    assert adapters.check_adapter(tmp_path).max_abs_B > 0


def test_glm4_model_trains_too(tiny, tokenizer, tmp_path, capsys):
    """transformers' own GlmForCausalLM (GLM-4's architecture): not tied to the course model."""
    from transformers import GlmConfig, GlmForCausalLM

    _, data_dir = tiny
    torch.manual_seed(0)
    glm = GlmForCausalLM(GlmConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eop_token_id,
                                   bos_token_id=tokenizer.sop_token_id))
    glm.save_pretrained(tmp_path / "glm4")
    save_tokenizer(tokenizer, tmp_path / "glm4")
    code, stdout, stderr = run_main(["--dataset_path", data_dir, "--output_dir", tmp_path / "o",
                                     "--model_name_or_path", tmp_path / "glm4", *SMALL, "--max_steps", 2,
                                     "--save_steps", 2], capsys)
    assert code == 0, stderr
    chosen = "LoRA target modules: ['k_proj', 'o_proj', 'q_proj', 'v_proj'] (no peft default for model_type 'glm'"
    assert chosen in stdout
    summary = adapters.check_adapter(tmp_path / "o")
    assert summary.tensors == 2 * 4 * 2 and summary.target_modules == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert any(".self_attn.q_proj.lora_A." in key for key in summary.shapes)


def test_seed_makes_two_runs_give_identical_adapters(tiny, tmp_path, capsys):
    """--seed seeds the adapter's random A matrices too, so the same command gives the same adapter."""
    from safetensors.torch import load_file

    model_dir, data_dir = tiny
    weights = []
    for run, seed in (("a", 42), ("b", 42), ("c", 7)):
        out = tmp_path / run
        code, _, stderr = run_main(["--dataset_path", data_dir, "--output_dir", out, "--model_name_or_path", model_dir,
                                    "--max_steps", 1, "--save_steps", 1, "--lora_rank", 4, "--seed", seed], capsys)
        assert code == 0, stderr
        weights.append(load_file(out / "adapter_model.safetensors"))
    same, other = weights[0], weights[2]
    assert same.keys() == weights[1].keys()
    for key in same:
        assert torch.equal(same[key], weights[1][key]), f"{key} differs between two runs with --seed 42"
    assert any(not torch.equal(same[k], other[k]) for k in same if "lora_A" in k), "--seed 7 should draw other A"


# ---------------------------------------------------------------- nothing lost without --overwrite_output_dir
def _train(data_dir, model_dir, out, capsys, *extra):
    return run_main(["--dataset_path", data_dir, "--output_dir", out, "--model_name_or_path", model_dir,
                     "--max_steps", 2, "--save_steps", 2, "--lora_rank", 4, *extra], capsys)


def test_output_dir_equal_to_the_dataset_is_refused(tiny, capsys):
    model_dir, data_dir = tiny
    before = sorted(p.name for p in Path(data_dir).iterdir())
    code, _, err = _train(data_dir, model_dir, data_dir, capsys)
    assert code == 2 and "--output_dir" in err and "--dataset_path" in err  # refused by the guard
    assert sorted(p.name for p in Path(data_dir).iterdir()) == before


def test_an_earlier_adapter_is_not_replaced_without_overwrite(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    out = tmp_path / "run"
    assert _train(data_dir, model_dir, out, capsys)[0] == 0
    for folder in out.glob("checkpoint-*"):  # an earlier run whose checkpoints were cleaned up
        shutil.rmtree(folder)
    adapter = (out / "adapter_model.safetensors").read_bytes()
    code, _, err = _train(data_dir, model_dir, out, capsys, "--seed", 7)
    assert code == 1 and "already holds an earlier run" in err and "--overwrite_output_dir" in err
    assert (out / "adapter_model.safetensors").read_bytes() == adapter
    assert _train(data_dir, model_dir, out, capsys, "--seed", 7, "--overwrite_output_dir")[0] == 0


def test_resume_past_max_steps_is_refused_and_keeps_the_checkpoint(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    out = tmp_path / "run"
    assert run_main(["--dataset_path", data_dir, "--output_dir", out, "--model_name_or_path", model_dir,
                     "--max_steps", 4, "--save_steps", 4, "--lora_rank", 4], capsys)[0] == 0
    code, _, err = run_main(["--dataset_path", data_dir, "--output_dir", out, "--model_name_or_path", model_dir,
                             "--max_steps", 2, "--save_steps", 2, "--lora_rank", 4, "--resume_from_checkpoint"], capsys)
    assert code == 1 and "already at step 4" in err and "--max_steps" in err
    assert (out / "checkpoint-4" / "trainer_state.json").exists()
    code, stdout, _ = run_main(["--dataset_path", data_dir, "--output_dir", out, "--model_name_or_path", model_dir,
                                "--max_steps", 6, "--save_steps", 2, "--lora_rank", 4, "--resume_from_checkpoint"], capsys)
    assert code == 0 and "done: 2 steps (step 4 -> 6)" in stdout


@pytest.mark.parametrize("flag,value", [("--save_total_limit", 0), ("--seed", -1), ("--max_steps", 0),
                                        ("--learning_rate", "nan")])
def test_out_of_range_flags_are_refused_at_parse_time(flag, value, capsys):
    with pytest.raises(SystemExit) as stop:
        finetune.build_parser().parse_args(["--dataset_path", "d", "--output_dir", "o", flag, str(value)])
    assert stop.value.code == 2 and flag in capsys.readouterr().err


def test_output_dir_that_is_a_file_is_a_clear_error(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "under"):
        code, _, err = _train(data_dir, model_dir, out, capsys)
        assert code == 2 and "is a file" in err and "Traceback" not in err  # refused by the guard


@pytest.mark.parametrize("damage", ["adapter_model.safetensors", "trainer_state.json", "adapter_config.json"])
def test_resume_skips_a_damaged_checkpoint_and_says_why(tmp_path, capsys, damage):
    from safetensors.torch import save_file

    for step in (2, 4):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
        save_file({"w": torch.zeros(2)}, str(folder / "adapter_model.safetensors"))
        torch.save({"state": {0: {"exp_avg": torch.zeros(64)}}}, folder / "optimizer.pt")
    broken = tmp_path / "checkpoint-4" / damage
    cut = 3 if damage != "optimizer.pt" else broken.stat().st_size // 2
    broken.write_bytes(broken.read_bytes()[:cut])  # truncated, as by an interrupted copy
    assert finetune.resolve_resume("last", tmp_path, 8) == str(tmp_path / "checkpoint-2")
    out = capsys.readouterr().out
    assert "checkpoint-4 cannot be resumed from" in out and damage in out
    with pytest.raises(lora.LoraError, match=damage):
        finetune.resolve_resume(str(tmp_path / "checkpoint-4"), tmp_path, 8)


def test_a_damaged_or_missing_optimizer_or_rng_state_resumes_fresh_with_a_note(tmp_path):
    """One behaviour, finetune and P-Tuning alike: the checkpoint is used, that state starts afresh, one note."""
    for step in (2, 4):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        torch.save({"state": {}}, folder / "optimizer.pt")
    (tmp_path / "checkpoint-4" / "optimizer.pt").write_bytes(b"\x80\x02trunc")
    assert training.resume_state_problem(tmp_path / "checkpoint-4", "optimizer.pt") == \
        "optimizer.pt is damaged (truncated or unreadable)"
    assert training.resume_state_problem(tmp_path / "checkpoint-4", "rng_state.pth") == "rng_state.pth is missing"
    assert training.resume_state_problem(tmp_path / "checkpoint-2", "optimizer.pt") is None
    with pytest.raises(lora.LoraError, match="already at step 4, and --max_steps is 4"):
        training.check_resume_step(tmp_path / "checkpoint-4", 4, lora.LoraError)
    assert training.check_resume_step(tmp_path / "checkpoint-4", 5, lora.LoraError) == 4


def test_a_damaged_loss_log_does_not_stop_a_resume(tiny, tmp_path, capsys):
    model_dir, data_dir = tiny
    out = tmp_path / "run"
    args = ["--dataset_path", data_dir, "--output_dir", out, "--model_name_or_path", model_dir, "--save_steps", 2,
            "--lora_rank", 4, "--logging_steps", 1]
    assert run_main(args + ["--max_steps", 2], capsys)[0] == 0
    (out / "loss_log.json").write_text('[{"step": 1, "lo')
    code, stdout, err = run_main(args + ["--max_steps", 4, "--resume_from_checkpoint"], capsys)
    assert code == 0, err
    assert "loss_log.json was damaged" in stdout
    assert [row["step"] for row in json.loads((out / "loss_log.json").read_text())][-1] == 4
