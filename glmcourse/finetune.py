"""Lesson 05: LoRA fine-tuning on the HF Trainer, with ChatGLM-Tuning's command line.

The lesson's settings are the defaults: only the two paths are needed::

    python -m glmcourse.finetune --dataset_path runs/lora_train_tok --output_dir runs/lora

The seed's finetune.sh works as written (on a CPU, --fp16 falls back to fp32 and says so)::

    python -m glmcourse.finetune --dataset_path data/alpaca --lora_rank 8 --per_device_train_batch_size 6 \\
        --gradient_accumulation_steps 1 --max_steps 52000 --save_steps 1000 --save_total_limit 2 \\
        --learning_rate 1e-4 --fp16 --remove_unused_columns false --logging_steps 50 --output_dir output

Also: --model_name_or_path (default: the course model), --load_in_8bit / --load_in_4bit
(bitsandbytes; its CPU backend on a CPU), --resume_from_checkpoint [PATH] (no PATH: the last complete
checkpoint in --output_dir). Several processes: ``torchrun --nproc_per_node 2 -m glmcourse.finetune ...``
or ``accelerate launch --multi_gpu --num_processes 2 -m glmcourse.finetune ...`` (gloo on a CPU, NCCL on
GPUs; accelerate's flag is named for GPUs but also starts CPU processes); --deepspeed CONFIG.json on GPUs.

What it adds to the seed: pre-flight checks (trainable parameters > 0, a non-zero LoRA gradient after
the first step), a guard that stops on a NaN/inf loss or a loss stuck at 0 with a diagnosis, the
adapter (adapter_config.json + adapter_model.safetensors) saved atomically and re-checked into
--output_dir at every save step and at the end, and the loss log in OUTPUT_DIR/loss_log.json.

Resume (the same for P-Tuning): never past --max_steps (a checkpoint already there is refused, nothing
trained or deleted); a checkpoint whose weights or trainer_state.json are damaged is skipped for the one
before it (no PATH) or refused (a PATH); a missing or damaged optimizer.pt, scheduler.pt or rng_state.pth
does not stop it: that state starts afresh (the learning-rate schedule continues at the checkpoint's step)
and one ``note:`` line says so.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

# The lesson's settings, tuned on the course model and data/lora_train.json (`make bench` prints what
# they reach). The seed's own values (batch 6, lr 1e-4, 52,000 steps) are for 52k records on the 6B
# model on a GPU; the tiny course model needs a larger step and a few hundred steps (~1-2 min on 2 cores).
LEARNER_DEFAULTS = dict(
    lora_rank=8,
    per_device_train_batch_size=16,
    gradient_accumulation_steps=1,
    max_steps=300,
    save_steps=100,
    save_total_limit=2,
    learning_rate=2e-3,
    logging_steps=10,
)
LOSS_LOG = "loss_log.json"
ZERO_LOSS_PATIENCE = 5  # consecutive steps at exactly 0 before the guard stops training
LORA_NAN_CAUSES = "fp16 overflow (drop --fp16), or a corrupt row"
LORA_ZERO_CAUSES = ("the labels supervise nothing or only padding (check seq_len and --max_seq_length when "
                    "tokenizing), or fp16 underflow on a quantized base (drop --fp16)")


class TrainingStopped(RuntimeError):
    """The guard stopped training; the message is the diagnosis."""


def _say(*args):
    print(*args, flush=True)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def foreign_output_entries(folder) -> list[str]:
    """Names in --output_dir that no finetune run writes (the user's own files): the guard refuses those."""
    from glmcourse.adapters import ADAPTER_BIN, ADAPTER_CONFIG, ADAPTER_SAFETENSORS
    from glmcourse.files import OUTPUT_MARKER

    ours = {ADAPTER_CONFIG, ADAPTER_SAFETENSORS, ADAPTER_BIN, LOSS_LOG, OUTPUT_MARKER, "README.md", "runs"}
    return [p.name for p in Path(folder).iterdir() if p.name not in ours and not CHECKPOINT.match(p.name)]


def build_parser() -> argparse.ArgumentParser:
    import glmcourse
    from glmcourse.cli import INPUT_DIR, INPUT_FILE, MODEL_DIR, OUTPUT_DIR, CourseParser, float_arg, int_arg, seed_arg
    from glmcourse.data import str2bool

    d = LEARNER_DEFAULTS
    p = CourseParser(prog="python -m glmcourse.finetune", description=__doc__.splitlines()[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset_path", required=True, kind=INPUT_DIR,
                   help="tokenized rows from python -m glmcourse.tokenize_dataset_rows")
    p.add_argument("--output_dir", required=True, kind=OUTPUT_DIR, replace_check=False,  # deletes only its own files
                   overwrite_flag="--overwrite_output_dir", help="adapter, loss log and checkpoints go here")
    p.add_argument("--lora_rank", type=int_arg("--lora_rank", 1, 10**9), default=d["lora_rank"], help="LoRA rank r (alpha stays 32, dropout 0.1)")
    p.add_argument("--per_device_train_batch_size", type=int_arg("--per_device_train_batch_size", 1, 10**9), default=d["per_device_train_batch_size"])
    p.add_argument("--gradient_accumulation_steps", type=int_arg("--gradient_accumulation_steps", 1, 10**9), default=d["gradient_accumulation_steps"])
    p.add_argument("--max_steps", type=int_arg("--max_steps", 1, 10**9), default=d["max_steps"], help="optimizer steps")
    p.add_argument("--save_steps", type=int_arg("--save_steps", 1, 10**9), default=d["save_steps"], help="checkpoint + adapter every N steps")
    p.add_argument("--save_total_limit", type=int_arg("--save_total_limit", 1, 10**9), default=d["save_total_limit"], help="checkpoints kept")
    p.add_argument("--learning_rate", type=float_arg("--learning_rate", 0, 1, lo_open=True), default=d["learning_rate"])
    p.add_argument("--fp16", type=str2bool, nargs="?", const=True, default=False,
                   help="fp16 mixed precision (CUDA only; on a CPU it falls back to fp32 and says so)")
    p.add_argument("--remove_unused_columns", type=str2bool, nargs="?", const=True, default=False,
                   help="must stay false: the collator needs the seq_len column")
    p.add_argument("--logging_steps", type=int_arg("--logging_steps", 1, 10**9), default=d["logging_steps"])
    p.add_argument("--model_name_or_path", default=glmcourse.COURSE_MODEL, kind=MODEL_DIR,
                   help="the base model (default: the course model)")
    p.add_argument("--load_in_8bit", action="store_true",
                   help="load the base with bitsandbytes LLM.int8(), as the seed")
    p.add_argument("--load_in_4bit", action="store_true", help="load the base in bitsandbytes NF4 (QLoRA-style)")
    p.add_argument("--resume_from_checkpoint", nargs="?", const="last", default=None,
                   help="continue from a checkpoint folder; no value: the last complete one in --output_dir")
    p.add_argument("--overwrite_output_dir", action="store_true",
                   help="start over in an --output_dir that holds an earlier run (its adapter, loss log and checkpoints are deleted)")
    p.add_argument("--target_modules", nargs="+", default=None,
                   help="LoRA targets (default: peft's mapping for the model type; chatglm: query_key_value)")
    p.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for activation memory")
    p.add_argument("--deepspeed", default=None, metavar="CONFIG.json", kind=INPUT_FILE, fmt="json",
                   help="DeepSpeed config for multi-GPU runs of the real model (needs the deepspeed package)")
    p.add_argument("--seed", type=seed_arg(), default=42,
                   help="seeds the adapter's initial weights, dropout and data order (42, as the HF Trainer)")
    return p


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(output_dir) -> list[Path]:
    """checkpoint-N folders, oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))


def checkpoint_problem(path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (None when it can): a file missing (the Trainer
    writes trainer_state.json last, so an interrupted save lacks it), or a file that does not parse."""
    from glmcourse.adapters import ADAPTER_CONFIG, ADAPTER_SAFETENSORS
    from glmcourse.loading import ModelFileError, check_safetensors

    path = Path(path)
    for name in ("trainer_state.json", ADAPTER_CONFIG, ADAPTER_SAFETENSORS):
        if not (path / name).exists():
            return f"{name} is missing (interrupted while saving)"
    for name in ("trainer_state.json", ADAPTER_CONFIG):
        try:
            state = json.loads((path / name).read_text(encoding="utf-8"))
            if name == "trainer_state.json":
                int(state["global_step"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return f"{name} is damaged (not the JSON the Trainer writes)"
    try:
        check_safetensors(path / ADAPTER_SAFETENSORS)
    except ModelFileError:
        return f"{ADAPTER_SAFETENSORS} is damaged (truncated or not safetensors)"
    return None  # optimizer/scheduler/RNG state: see resume_state_problem (a fresh one, with a note)


# What a resume does when the optimizer, scheduler or RNG state of the checkpoint is missing or damaged (one
# behaviour, finetune and P-Tuning alike): it goes on from the checkpoint's weights and step with a fresh
# state for that part, and prints one note saying so. The weights and trainer_state.json are checked above:
# a checkpoint whose weights or state are damaged is skipped for the previous one ('last') or refused.
RESUME_STATES = {"optimizer.pt": "a fresh AdamW optimizer (its moments start again from zero)",
                 "scheduler.pt": "the learning-rate schedule recomputed for this step",
                 "rng_state.pth": "fresh random-number state (data order and dropout differ from an uninterrupted run)"}


def resume_state_problem(path, name: str) -> str | None:
    """Why ``name`` (optimizer.pt, scheduler.pt, rng_state.pth) in a checkpoint cannot be restored, or None."""
    file = Path(path) / name
    if not file.is_file():
        return f"{name} is missing"
    import torch

    try:  # small for an adapter or a prefix: the optimizer holds only the trainable parameters' moments
        torch.load(file, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure to read it means the Trainer would fail too
        return f"{name} is damaged (truncated or unreadable)"
    return None


def resume_hooks(trainer_class):
    """``trainer_class`` with the documented fall-backs for a missing or damaged optimizer/scheduler/RNG state."""

    class Resuming(trainer_class):
        def _load_optimizer_and_scheduler(self, checkpoint):
            if checkpoint is None or getattr(self, "is_deepspeed_enabled", False):
                return super()._load_optimizer_and_scheduler(checkpoint)
            problems = [p for p in (resume_state_problem(checkpoint, n) for n in ("optimizer.pt", "scheduler.pt")) if p]
            if not problems:
                return super()._load_optimizer_and_scheduler(checkpoint)
            step = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
            _say(f"note: {Path(checkpoint).name}: {' and '.join(problems)}; resuming at step {step} with "
                 f"{RESUME_STATES['optimizer.pt']} and {RESUME_STATES['scheduler.pt']}.")
            self.lr_scheduler.last_epoch = step  # the schedule is a function of the step: continue it there
            self.lr_scheduler._last_lr = [lr(step) * base for lr, base in
                                          zip(self.lr_scheduler.lr_lambdas, self.lr_scheduler.base_lrs)] \
                if hasattr(self.lr_scheduler, "lr_lambdas") else self.lr_scheduler.get_last_lr()
            for group, lr in zip(self.optimizer.param_groups, self.lr_scheduler._last_lr):
                group["lr"] = lr
            return None

        def _load_rng_state(self, checkpoint):
            if checkpoint is None or self.args.world_size > 1:
                return super()._load_rng_state(checkpoint)
            problem = resume_state_problem(checkpoint, "rng_state.pth")
            if problem:
                _say(f"note: {Path(checkpoint).name}: {problem}; resuming with {RESUME_STATES['rng_state.pth']}.")
                return None
            return super()._load_rng_state(checkpoint)

    Resuming.__name__ = Resuming.__qualname__ = trainer_class.__name__
    return Resuming


def check_resume_step(resume, max_steps: int, error_class) -> int:
    """The checkpoint's step; an ``error_class`` when it is already at or past --max_steps (nothing to train)."""
    try:
        step = int(json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise error_class(f"--resume_from_checkpoint {resume}: trainer_state.json is damaged (not the JSON the "
                          f"Trainer writes); pass an earlier checkpoint-N.") from None
    if step >= int(max_steps):
        raise error_class(f"--resume_from_checkpoint: {Path(resume).name} is already at step {step}, and "
                          f"--max_steps is {max_steps}: pass a --max_steps above {step} to train on. "
                          f"Nothing was trained or deleted.")
    return step


def is_complete_checkpoint(path) -> bool:
    return checkpoint_problem(path) is None


def resolve_resume(resume, output_dir, lora_rank: int) -> str | None:
    """'last'/'true' -> the newest complete checkpoint in output_dir; a path is checked. None stays None."""
    from glmcourse.lora import LoraError

    if resume is None or str(resume).lower() in {"false", "no", "0"}:
        return None
    if str(resume).lower() in {"last", "true", "yes", "1"}:
        found = checkpoints(output_dir)
        problems = {c: checkpoint_problem(c) for c in found}
        complete = [c for c in found if problems[c] is None]
        for broken in found:
            if problems[broken] and (not complete or int(CHECKPOINT.match(broken.name).group(1)) >
                                     int(CHECKPOINT.match(complete[-1].name).group(1))):
                _say(f"note: {broken.name} cannot be resumed from: {problems[broken]}; skipped.")
        if not complete:
            raise LoraError(f"--resume_from_checkpoint: no complete checkpoint-N folder in {output_dir}; "
                            f"start without it (the first save happens after --save_steps steps).")
        path = complete[-1]
    else:
        path = Path(resume)
        if not path.is_dir() or not (path / "trainer_state.json").exists():
            raise LoraError(f"--resume_from_checkpoint {resume}: not a checkpoint folder (needs trainer_state.json); "
                            f"pass a checkpoint-N folder, or no value for the last one in --output_dir.")
        problem = checkpoint_problem(path)
        if problem:
            raise LoraError(f"--resume_from_checkpoint {resume}: {problem}; pass an earlier checkpoint-N, or no value "
                            f"for the newest one in --output_dir that loads.")
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")) if \
        (path / "adapter_config.json").exists() else {}
    if config and int(config.get("r", lora_rank)) != lora_rank:
        raise LoraError(f"{path} was trained with --lora_rank {config['r']}, not {lora_rank}: resume with the same "
                        f"--lora_rank (and the same other settings).")
    return str(path)


# ----------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------
def _callbacks():
    from transformers import TrainerCallback

    class PreflightCheck(TrainerCallback):
        """Trainable parameters > 0 before step 1; a non-zero gradient at step 1 (docs/failure-catalog.md#f14-nothing-trains).

        The checks default to LoRA's (glmcourse.lora); P-Tuning passes its prefix checks.
        """

        def __init__(self, check_trainable=None, check_grads=None):
            from glmcourse.lora import check_lora_grads, check_trainable as check_lora_trainable

            self.check_trainable = check_trainable or check_lora_trainable
            self.check_grads = check_grads or check_lora_grads
            self.first_step = None
            self.largest_grad = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.check_trainable(model)
            self.first_step = state.global_step

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if state.global_step == self.first_step and self.largest_grad is None:
                self.largest_grad = self.check_grads(model)

    class LossGuard(TrainerCallback):
        """Stops on a NaN/inf loss, or a loss of exactly 0 for several steps, and says why
        (docs/failure-catalog.md#f15-nan-or-zero-loss).

        The usual causes and what stays saved differ by method; the defaults are LoRA's (P-Tuning passes its own).
        """

        def __init__(self, patience: int = ZERO_LOSS_PATIENCE, nan_causes: str = LORA_NAN_CAUSES,
                     zero_causes: str = LORA_ZERO_CAUSES, saved: str = "adapter"):
            self.patience, self.nan_causes, self.zero_causes, self.saved = patience, nan_causes, zero_causes, saved
            self.zero_streak = 0
            self.bad = None
            self.diagnosis = None

        def observe(self, loss: float):
            if not math.isfinite(loss):
                self.bad = self.bad or loss
            self.zero_streak = self.zero_streak + 1 if loss == 0.0 else 0

        def on_step_end(self, args, state, control, **kwargs):
            if self.bad is not None:
                self.diagnosis = (
                    f"training stopped at step {state.global_step}: the loss is {self.bad}. Usual causes: a learning "
                    f"rate too high for this model (now {args.learning_rate:g}; try 10x lower), {self.nan_causes}. "
                    f"The {self.saved} in --output_dir is the last good save."
                )
            elif self.zero_streak >= self.patience:
                self.diagnosis = (
                    f"training stopped at step {state.global_step}: the loss has been exactly 0 for "
                    f"{self.zero_streak} steps, so nothing is learned. Usual causes: {self.zero_causes}."
                )
            if self.diagnosis:
                control.should_training_stop = True
                control.should_save = False  # a broken state is never saved over the last good one
                control.should_save = False  # never checkpoint a broken state

    class AdapterSaver(TrainerCallback):
        """At every save step: the adapter into --output_dir, atomically, re-read and checked
        (docs/failure-catalog.md#f16-empty-adapter)."""

        def __init__(self, output_dir, guard):
            self.output_dir, self.guard, self.last = output_dir, guard, None

        def on_save(self, args, state, control, model=None, **kwargs):
            from glmcourse.adapters import save_adapter

            if state.is_world_process_zero and self.guard.diagnosis is None:
                self.last = save_adapter(model, self.output_dir)

    class LossLog(TrainerCallback):
        """Every logged loss into OUTPUT_DIR/loss_log.json (written atomically), for plotting."""

        def __init__(self, output_dir):
            self.path = Path(output_dir) / LOSS_LOG
            self.rows, self.start = [], time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step and self.path.exists():  # resuming: keep the log up to the checkpoint
                try:
                    rows = json.loads(self.path.read_text(encoding="utf-8"))
                    self.rows = [r for r in rows if r["step"] <= state.global_step]
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    _say(f"note: {self.path.name} was damaged; the loss log starts again at step {state.global_step}.")
                    self.rows = []
            self.offset = self.rows[-1]["elapsed_s"] if self.rows else 0.0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            loss = float(logs["loss"])
            self.rows.append({"step": state.global_step, "loss": loss if math.isfinite(loss) else None,  # NaN: null
                              "learning_rate": float(logs.get("learning_rate", float("nan"))),
                              "epoch": round(float(state.epoch or 0), 4),
                              "elapsed_s": round(self.offset + time.perf_counter() - self.start, 2)})
            self.write()

        def write(self):
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(self.rows, indent=1, allow_nan=False), encoding="utf-8")
            os.replace(tmp, self.path)

    return PreflightCheck, LossGuard, AdapterSaver, LossLog


def _progress_class():
    from transformers import ProgressCallback
    from transformers.utils import is_in_notebook

    class TqdmProgress(ProgressCallback):
        """tqdm's bar; the logged values are printed in a terminal only (a notebook plots them instead)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            # the Trainer's closing {'train_runtime': ...} dict is not printed: the command's own "done:" line
            # says the same in words (it was the stray last line of every training run)
            if not is_in_notebook() and not (logs and "train_runtime" in logs):
                super().on_log(args, state, control, logs=logs, **kwargs)

    return TqdmProgress


class LiveLossPlot:
    """A TrainerCallback for notebooks: redraws the loss curve at every log (pass it in ``callbacks``)."""

    def __new__(cls, title: str | None = None):
        from transformers import TrainerCallback

        class _Live(TrainerCallback):
            def __init__(self):
                self.points, self.handle, self.title = [], None, title

            def on_log(self, args, state, control, logs=None, **kwargs):
                if not state.is_world_process_zero or not logs or "loss" not in logs:
                    return
                import matplotlib.pyplot as plt
                from IPython.display import display

                from glmcourse.plots import plot_loss

                self.points.append({"step": state.global_step, "loss": float(logs["loss"])})
                fig, ax = plt.subplots(figsize=(6, 3.2))
                plot_loss(self.points, ax=ax, title=self.title)
                ax.set_xlim(0, state.max_steps)
                if self.handle is None:
                    self.handle = display(fig, display_id=True)
                else:
                    self.handle.update(fig)
                plt.close(fig)

        return _Live()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def _precision(fp16: bool) -> bool:
    """fp16 only on CUDA; on a CPU it falls back to fp32 with a notice (docs/failure-catalog.md#f03-fp16-on-cpu)."""
    import torch

    if fp16 and not torch.cuda.is_available():
        if is_main_process():
            _say("note: --fp16 needs a CUDA GPU (fp16 matmuls on a CPU fail with \"addmm_impl_cpu_ not implemented "
                 "for 'Half'\" or crawl); training in fp32 on this CPU instead.")
        return False
    return bool(fp16)


def finetune(dataset_path, output_dir, *, model_name_or_path=None, lora_rank=None, per_device_train_batch_size=None,
             gradient_accumulation_steps=None, max_steps=None, save_steps=None, save_total_limit=None,
             learning_rate=None, fp16=False, remove_unused_columns=False, logging_steps=None, load_in_8bit=False,
             load_in_4bit=False, resume_from_checkpoint=None, overwrite_output_dir=False, target_modules=None,
             gradient_checkpointing=False, deepspeed=None, seed=42, callbacks=(), overwrite=None,
             quiet=None) -> dict:
    """Train a LoRA adapter; returns {"output_dir", "global_step", "train_seconds", "final_loss", "log",
    "adapter", "trainable"}. Unset settings take LEARNER_DEFAULTS. ``callbacks`` are extra TrainerCallbacks.
    """
    import torch
    from transformers import (
        AutoTokenizer,
        PrinterCallback,
        ProgressCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils.notebook import NotebookProgressCallback

    import glmcourse
    from glmcourse import settings
    from glmcourse.data import DataCollator, DataError, load_tokenized
    from glmcourse.loading import load_base_model
    from glmcourse.lora import LoraError, add_lora, check_lora_grads, count_parameters

    s = dict(LEARNER_DEFAULTS)
    given = dict(lora_rank=lora_rank, per_device_train_batch_size=per_device_train_batch_size,
                 gradient_accumulation_steps=gradient_accumulation_steps, max_steps=max_steps, save_steps=save_steps,
                 save_total_limit=save_total_limit, learning_rate=learning_rate, logging_steps=logging_steps)
    s.update({k: v for k, v in given.items() if v is not None})
    for key in ("lora_rank", "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps",
                "save_steps", "logging_steps"):
        if int(s[key]) < 1:
            raise LoraError(f"--{key} {s[key]}: must be at least 1.")
    if not s["learning_rate"] > 0:
        raise LoraError(f"--learning_rate {s['learning_rate']}: must be positive.")
    if s["save_total_limit"] is not None and int(s["save_total_limit"]) < 1:
        raise LoraError(f"--save_total_limit {s['save_total_limit']}: must be at least 1 (it counts the checkpoints "
                        f"kept); leave it out to keep them all.")
    quiet = settings.QUIET if quiet is None else quiet
    output_dir = Path(output_dir)
    model_path = str(model_name_or_path or glmcourse.COURSE_MODEL)
    main = is_main_process()

    if remove_unused_columns:
        if main:
            _say("note: --remove_unused_columns true would drop the seq_len column the collator needs to mask the "
                 "prompt; using false, as the seed's finetune.sh does.")
    if deepspeed:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise LoraError(f"--deepspeed {deepspeed}: the deepspeed package is not installed. It is for multi-GPU "
                            f"runs of the real model: pip install deepspeed on the GPU machine. On a CPU, leave "
                            f"--deepspeed out (torchrun --nproc_per_node N also runs several processes).")
        if not Path(deepspeed).is_file():
            raise LoraError(f"--deepspeed {deepspeed}: no such config file.")
    from glmcourse.cli import check_output_dir

    # never the dataset or the base model's folder, never a file or a path under a file
    local_model = model_path if Path(model_path).exists() else None  # a hub id is no folder of ours
    check_output_dir(output_dir, "--output_dir", inputs=[("--dataset_path", dataset_path),
                                                         ("--model_name_or_path", local_model)], overwrite=True)
    resume = resolve_resume(resume_from_checkpoint, output_dir, int(s["lora_rank"]))
    if resume:
        resumed_at = check_resume_step(resume, s["max_steps"], LoraError)
    old = checkpoints(output_dir)
    foreign = set(foreign_output_entries(output_dir)) if output_dir.is_dir() else set()
    # only an earlier run's own files count (a user's files in the folder are left alone, never called a run)
    earlier = sorted(p.name for p in output_dir.iterdir() if p.name not in foreign) if output_dir.is_dir() else []
    if earlier and resume is None:
        if not (overwrite_output_dir or overwrite):
            shown = ", ".join(earlier[:5]) + (", ..." if len(earlier) > 5 else "")
            raise LoraError(
                f"--output_dir {output_dir} already holds an earlier run ({shown}). Continue it with "
                f"--resume_from_checkpoint" + (f" (last checkpoint: {old[-1].name})" if old else "") + ", choose "
                "another --output_dir, or start over with --overwrite_output_dir (deletes its adapter, loss log "
                "and checkpoints)."
            )
        if main:
            for folder in old:
                shutil.rmtree(folder, ignore_errors=True)
            (output_dir / LOSS_LOG).unlink(missing_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    dataset, params = load_tokenized(dataset_path, tokenizer=tokenizer)
    if len(dataset) == 0:
        raise DataError(f"{dataset_path}: 0 training samples ({params.get('counts', {})}); tokenize some rows first.")
    use_fp16 = _precision(fp16)

    model = load_base_model(model_path, load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit)
    context = getattr(model.config, "max_sequence_length", None)
    longest = max(len(ids) for ids in dataset["input_ids"])
    if context and longest > context:
        raise DataError(f"{dataset_path}: its longest row has {longest} tokens, more than the model's context of "
                        f"{context} (max_sequence_length). Tokenize again with --max_seq_length {context} or less.")
    model.config.use_cache = False  # no KV cache while training (as the seed)
    if gradient_checkpointing:
        # transformers also makes the embeddings' output require grad here: without that, no gradient
        # would reach LoRA through the checkpointed blocks of a frozen base (docs/failure-catalog.md#f14-nothing-trains)
        model.activation_checkpointing_enable()
    set_seed(seed)  # before the adapter exists: its A matrices are drawn at random, so two runs match
    model = add_lora(model, r=int(s["lora_rank"]), lora_alpha=32, lora_dropout=0.1, target_modules=target_modules,
                     verbose=main)
    trainable, total = count_parameters(model)
    if main:
        _say(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}")

    PreflightCheck, LossGuard, AdapterSaver, LossLog = _callbacks()
    TqdmProgress = _progress_class()
    guard, preflight = LossGuard(), PreflightCheck()
    saver, loss_log = AdapterSaver(output_dir, guard), LossLog(output_dir)
    cpu = not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=int(s["per_device_train_batch_size"]),
        gradient_accumulation_steps=int(s["gradient_accumulation_steps"]), max_steps=int(s["max_steps"]),
        save_strategy="steps", save_steps=int(s["save_steps"]), save_total_limit=s["save_total_limit"],
        learning_rate=float(s["learning_rate"]), fp16=use_fp16, remove_unused_columns=False,
        logging_steps=int(s["logging_steps"]), logging_first_step=True, report_to="none", seed=seed, data_seed=seed,
        disable_tqdm=quiet, use_cpu=cpu, dataloader_pin_memory=not cpu, label_names=["labels"],
        ddp_find_unused_parameters=False, weight_decay=0.0, warmup_steps=0, deepspeed=deepspeed,
        logging_nan_inf_filter=False,  # log a NaN loss as what it is (the guard then stops the run)
    )

    @resume_hooks
    class LoraTrainer(Trainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            base = self.model.get_base_model()
            if not type(base).__module__.startswith("transformers."):
                # The Trainer sees **kwargs in forward() and assumes the model divides its loss by the
                # num_items_in_batch it passes. ChatGLM's forward returns a plain mean and ignores it, so
                # the Trainer must average over accumulation steps and processes itself; otherwise the
                # loss (and the gradient) grows with --gradient_accumulation_steps and the process count.
                self.model_accepts_loss_kwargs = False

        def training_step(self, model, *a, **kw):
            try:
                loss = super().training_step(model, *a, **kw)
            except RuntimeError as err:  # torch: "element 0 of tensors does not require grad ..."
                if "does not require grad" in str(err):
                    check_lora_grads(self.model)  # raises the explained LoraError (docs/failure-catalog.md#f14-nothing-trains)
                raise
            guard.observe(float(loss.detach()))
            return loss

    trainer = LoraTrainer(model=model, args=args, train_dataset=dataset,
                          data_collator=DataCollator.from_tokenizer(tokenizer),
                          callbacks=[preflight, guard, saver, loss_log, *callbacks])
    # No Trainer HTML table in notebooks (it changes every run) and no printed log dicts: tqdm, or nothing.
    for noisy in (PrinterCallback, NotebookProgressCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    if not quiet:
        trainer.add_callback(TqdmProgress)
    if main:
        world = trainer.args.world_size
        kind = "8-bit" if load_in_8bit else "4-bit" if load_in_4bit else "fp32"
        _say(f"base {Path(model_path).name} in {kind}; {world} process{'es' if world > 1 else ''} on "
             f"{trainer.args.device.type}; {len(dataset)} rows, batch {s['per_device_train_batch_size']} x "
             f"{s['gradient_accumulation_steps']} accumulation x {world}, {s['max_steps']} steps, "
             f"lr {s['learning_rate']:g}")
    if main and resume:
        step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
        _say(f"resuming from {Path(resume).name} (step {step})")

    first_step = resumed_at if resume else 0
    start, cpu_start = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if guard.diagnosis:
        raise TrainingStopped(guard.diagnosis)
    summary = None
    if trainer.is_world_process_zero():
        summary = save_final(model, output_dir, loss_log)
    trainer.accelerator.wait_for_everyone()
    log = loss_log.rows
    out = {
        "output_dir": str(output_dir), "global_step": trainer.state.global_step, "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "train_runtime_s": result.metrics.get("train_runtime"), "final_loss": log[-1]["loss"] if log else None,
        "log": log, "adapter": None if summary is None else summary.__dict__, "trainable": trainable,
        "first_step_max_lora_grad": preflight.largest_grad,
    }
    if main:
        ran = out["global_step"] - first_step
        steps = f"{ran} steps (step {first_step} -> {out['global_step']})" if first_step else f"{ran} steps"
        _say(f"done: {steps} in {seconds:.0f} s ({cpu_seconds:.0f} s of CPU time), last logged loss "
             f"{out['final_loss'] if out['final_loss'] is None else round(out['final_loss'], 4)}; adapter: "
             f"{summary.line() if summary else '-'}")
    return out


def save_final(model, output_dir, loss_log):
    from glmcourse.adapters import save_adapter

    loss_log.write()
    return save_adapter(model, output_dir)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)  # the guard: before the heavy imports, so --help is instant
    except SystemExit as stop:  # --help, or a bad flag (one line, status 2)
        return stop.code
    from glmcourse.cli import UsageError
    from glmcourse.data import DataError
    from glmcourse.files import OutputError
    from glmcourse.lora import LoraError

    try:
        finetune(**vars(args))
    except (LoraError, DataError, UsageError, OutputError, TrainingStopped, FileNotFoundError, NotADirectoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the last saved adapter and checkpoint are intact; continue with "
              "--resume_from_checkpoint.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
