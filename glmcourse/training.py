"""The training core that LoRA (``finetune.py``) and P-Tuning v2 (``ptuning_train.py``) share.

Both commands run the HF Trainer with the same guard rails: a pre-flight check, a loss guard, a loss log, a
progress bar that stays quiet under test, checkpoints that are listed, checked and resumed the same way, an
--output_dir that loses only an earlier run's own files, and the notebooks' fast-mode settings. What differs
(the weights saved, their checks, the error class) is passed in by the command.

transformers and torch are imported inside the functions, and the callbacks below become TrainerCallbacks on
their first instance, so importing this module costs nothing and ``--help`` stays instant.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import fields
from pathlib import Path

from glmcourse.i18n import _

# ----------------------------------------------------------------------------------------------
# Fast mode and settings
# ----------------------------------------------------------------------------------------------
# What the notebooks train: the learner defaults, or a shorter run on fewer rows in fast mode (same code).
# 40 steps on batches of 8 rows (one pass over the 320 rows): LoRA reaches 65.6% held-out exact match (32 records;
# 78.1% after 80 steps of 16 rows) in a quarter of the time, which `make test` pays twice per edition (lessons 05
# and 07, English and Chinese).
FAST_SETTINGS = dict(max_steps=40, save_steps=20, logging_steps=5, per_device_train_batch_size=8)
FAST_TRAIN_ROWS = 320
FAST_EVAL_RECORDS = 32

LOSS_LOG = "loss_log.json"
ZERO_LOSS_PATIENCE = 5  # consecutive steps at exactly 0 before the guard stops training


def settings_from(settings_class, function: str, **given):
    """``settings_class(**given)`` (a dataclass of one command's flags); an unknown name is a TypeError."""
    unknown = set(given) - {f.name for f in fields(settings_class)}
    if unknown:
        raise TypeError(_("{function}() got unknown settings {unknown}", function=function, unknown=sorted(unknown)))
    return settings_class(**given)


def fill_defaults(settings, defaults: dict) -> None:
    """Settings left at None take the lesson's ``defaults`` (LEARNER_DEFAULTS)."""
    for name, value in defaults.items():
        if getattr(settings, name) is None:
            setattr(settings, name, value)


class TrainingStopped(RuntimeError):
    """The guard stopped training; the message is the diagnosis."""


def say(*args):
    print(*args, flush=True)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------------------------
# Checkpoints and resuming
# ----------------------------------------------------------------------------------------------
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(output_dir) -> list[Path]:
    """checkpoint-N folders, oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))


def checkpoint_step(path) -> int:
    return int(CHECKPOINT.match(Path(path).name).group(1))


def last_complete_checkpoint(output_dir, checkpoint_problem, error_class) -> Path:
    """The newest checkpoint that ``checkpoint_problem`` passes; a note for each newer one, skipped."""
    found = checkpoints(output_dir)
    problems = {c: checkpoint_problem(c) for c in found}
    complete = [c for c in found if problems[c] is None]
    for broken in found:
        if problems[broken] and (not complete or checkpoint_step(broken) > checkpoint_step(complete[-1])):
            say(_("note: {checkpoint} cannot be resumed from: {problem}; skipped.", checkpoint=broken.name,
                  problem=problems[broken]))
    if not complete:
        raise error_class(_("--resume_from_checkpoint: no complete checkpoint-N folder in {output_dir}; "
                            "start without it (the first save happens after --save_steps steps).",
                            output_dir=output_dir))
    return complete[-1]


def resume_wanted(resume) -> str | None:
    """--resume_from_checkpoint's value: None (no resume), 'last' (the newest complete one), or a path."""
    if resume is None or str(resume).lower() in {"false", "no", "0"}:
        return None
    return "last" if str(resume).lower() in {"last", "true", "yes", "1"} else str(resume)


def check_resume_step(resume, max_steps: int, error_class) -> int:
    """The checkpoint's step; an ``error_class`` when it is already at or past --max_steps (nothing to train)."""
    try:
        step = int(json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise error_class(_("--resume_from_checkpoint {resume}: trainer_state.json is damaged (not the JSON the "
                            "Trainer writes); pass an earlier checkpoint-N.", resume=resume)) from None
    if step >= int(max_steps):
        raise error_class(_("--resume_from_checkpoint: {checkpoint} is already at step {step}, and "
                            "--max_steps is {max_steps}: pass a --max_steps above {step} to train on. "
                            "Nothing was trained or deleted.", checkpoint=Path(resume).name, step=step,
                            max_steps=max_steps))
    return step


# What a resume does when the optimizer, scheduler or RNG state of the checkpoint is missing or damaged (one
# behaviour, finetune and P-Tuning alike): it goes on from the checkpoint's weights and step with a fresh
# state for that part, and prints one note saying so. The weights and trainer_state.json are checked by each
# command's checkpoint_problem: a checkpoint whose weights or state are damaged is skipped ('last') or refused.
# The notes (in resume_hooks) name the fresh state: a fresh AdamW optimizer, the learning-rate schedule recomputed
# for the checkpoint's step, or fresh random-number state.


def resume_state_problem(path, name: str) -> str | None:
    """Why ``name`` (optimizer.pt, scheduler.pt, rng_state.pth) in a checkpoint cannot be restored, or None."""
    file = Path(path) / name
    if not file.is_file():
        return _("{name} is missing", name=name)
    import torch

    try:  # small for an adapter or a prefix: the optimizer holds only the trainable parameters' moments
        torch.load(file, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure to read it means the Trainer would fail too
        return _("{name} is damaged (truncated or unreadable)", name=name)
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
            if len(problems) > 1:
                problems = [_("{first} and {second}", first=problems[0], second=problems[1])]
            say(_("note: {checkpoint}: {problem}; resuming at step {step} with a fresh AdamW optimizer (its moments "
                  "start again from zero) and the learning-rate schedule recomputed for this step.",
                  checkpoint=Path(checkpoint).name, problem=problems[0], step=step))
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
                say(_("note: {checkpoint}: {problem}; resuming with fresh random-number state (data order and dropout "
                      "differ from an uninterrupted run).", checkpoint=Path(checkpoint).name, problem=problem))
                return None
            return super()._load_rng_state(checkpoint)

    Resuming.__name__ = Resuming.__qualname__ = trainer_class.__name__
    return Resuming


# ----------------------------------------------------------------------------------------------
# The output folder
# ----------------------------------------------------------------------------------------------
def earlier_run(output_dir, own_names) -> list[Path]:
    """What an earlier run left in ``output_dir``: its checkpoint-N folders and the files named in ``own_names``
    (a user's own files in the folder never count, and are never deleted)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    return checkpoints(folder) + sorted(p for p in folder.iterdir() if p.name in own_names)


def delete_earlier_run(paths) -> None:
    """Delete an earlier run's files (``earlier_run``); only the main process deletes."""
    if not is_main_process():
        return
    for path in paths:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Callbacks
# ----------------------------------------------------------------------------------------------
class Callback:
    """A TrainerCallback written here without importing transformers: on its first instance the class is
    joined with transformers' ``BASE`` (TrainerCallback, or ProgressCallback for the bar), which supplies the
    no-op events a subclass does not define. ``isinstance(cb, LossGuard)`` and ``isinstance(cb,
    TrainerCallback)`` both hold."""

    BASE = "TrainerCallback"
    _joined: dict = {}

    def __new__(cls, *args, **kwargs):
        import transformers

        base = getattr(transformers, cls.BASE)
        if not issubclass(cls, base):
            cls = Callback._joined.setdefault(cls, type(cls.__name__, (cls, base), {"__qualname__": cls.__qualname__,
                                                                                   "__module__": cls.__module__}))
        return object.__new__(cls)


class PreflightCheck(Callback):
    """Trainable parameters > 0 before step 1; a non-zero gradient at step 1 (docs/failure-catalog.md#f14-nothing-trains).

    ``check_trainable(model)`` raises when nothing (or the wrong thing) would train; ``check_grads(model)``
    raises when no gradient reached the trained parameters and returns the largest |grad|. LoRA passes
    glmcourse.lora's checks, P-Tuning its prefix checks.
    """

    def __init__(self, check_trainable, check_grads):
        self.check_trainable, self.check_grads = check_trainable, check_grads
        self.first_step = None
        self.largest_grad = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.check_trainable(model)
        self.first_step = state.global_step

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.first_step and self.largest_grad is None:
            self.largest_grad = self.check_grads(model)


class LossGuard(Callback):
    """Stops on a NaN/inf loss, or a loss of exactly 0 for several steps, and says why
    (docs/failure-catalog.md#f15-nan-or-zero-loss).

    The usual causes and what stays saved differ by method: each command passes its own, translated
    (``saved``: the whole sentence that names the last good save).
    """

    def __init__(self, nan_causes: str, zero_causes: str, saved: str, patience: int = ZERO_LOSS_PATIENCE):
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
            self.diagnosis = _(
                "training stopped at step {step}: the loss is {loss}. Usual causes: a learning "
                "rate too high for this model (now {lr:g}; try 10x lower), {causes}. {saved}",
                step=state.global_step, loss=self.bad, lr=args.learning_rate, causes=self.nan_causes, saved=self.saved
            )
        elif self.zero_streak >= self.patience:
            self.diagnosis = _(
                "training stopped at step {step}: the loss has been exactly 0 for "
                "{n} steps, so nothing is learned. Usual causes: {causes}.", step=state.global_step,
                n=self.zero_streak, causes=self.zero_causes
            )
        if self.diagnosis:
            control.should_training_stop = True
            control.should_save = False  # a broken state is never saved over the last good one


class SaveWeights(Callback):
    """At every save step: the trained weights (adapter or prefix) into --output_dir as well, with ``save(model,
    output_dir)``, which writes atomically and re-reads them (docs/failure-catalog.md#f16-empty-adapter).
    Nothing is saved once the guard has stopped the run."""

    def __init__(self, save, output_dir, guard):
        self.save, self.output_dir, self.guard, self.last = save, output_dir, guard, None

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and self.guard.diagnosis is None:
            self.last = self.save(model, self.output_dir)


class LossLog(Callback):
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
                say(_("note: {file} was damaged; the loss log starts again at step {step}.", file=self.path.name,
                      step=state.global_step))
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

    def final_loss(self):
        return self.rows[-1]["loss"] if self.rows else None


class TqdmProgress(Callback):
    """tqdm's bar; the logged values are printed in a terminal only (a notebook plots them instead)."""

    BASE = "ProgressCallback"

    def on_log(self, args, state, control, logs=None, **kwargs):
        from transformers.utils import is_in_notebook

        # the Trainer's closing {'train_runtime': ...} dict is not printed: the command's own "done:" line
        # says the same in words (it was the stray last line of every training run)
        if not is_in_notebook() and not (logs and "train_runtime" in logs):
            super().on_log(args, state, control, logs=logs, **kwargs)


class LiveLossPlot(Callback):
    """For notebooks: redraws the loss curve at every log (pass it in ``callbacks``)."""

    def __init__(self, title: str | None = None):
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


# ----------------------------------------------------------------------------------------------
# The Trainer and the run
# ----------------------------------------------------------------------------------------------
def training_arguments(output_dir, s, *, seed: int, quiet: bool, **extra):
    """The TrainingArguments both commands share, from a settings object ``s``; ``extra`` adds the method's own."""
    import torch
    from transformers import TrainingArguments

    cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=int(s.per_device_train_batch_size),
        gradient_accumulation_steps=int(s.gradient_accumulation_steps), max_steps=int(s.max_steps),
        save_strategy="steps", save_steps=int(s.save_steps),
        save_total_limit=None if s.save_total_limit is None else int(s.save_total_limit),
        learning_rate=float(s.learning_rate), remove_unused_columns=False, logging_steps=int(s.logging_steps),
        logging_first_step=True, report_to="none", seed=seed, data_seed=seed, disable_tqdm=quiet, use_cpu=cpu,
        dataloader_pin_memory=not cpu, label_names=["labels"], weight_decay=0.0, warmup_steps=0, **extra)


def guarded_trainer_class():
    """transformers' Trainer with the resume fall-backs, whose every training step's loss goes to ``guard``."""
    from transformers import Trainer

    @resume_hooks
    class GuardedTrainer(Trainer):
        guard = None  # a LossGuard, set by the command

        def training_step(self, model, *a, **kw):
            loss = super().training_step(model, *a, **kw)
            if self.guard is not None:
                self.guard.observe(float(loss.detach()))
            return loss

    return GuardedTrainer


def show_progress(trainer, quiet: bool) -> None:
    """No Trainer HTML table in notebooks (it changes every run) and no printed log dicts: tqdm, or nothing."""
    from transformers import PrinterCallback, ProgressCallback
    from transformers.utils.notebook import NotebookProgressCallback

    for noisy in (PrinterCallback, NotebookProgressCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    if not quiet:
        trainer.add_callback(TqdmProgress)


def say_trainable(trainable: int, total: int) -> None:
    if is_main_process():
        say(_("trainable params: {trainable:,} || all params: {total:,} || trainable%: {percent:.4f}",
              trainable=trainable, total=total, percent=100 * trainable / total))


def run(trainer, resume, guard):
    """trainer.train(), resumed from ``resume`` if given; returns (its result, wall seconds, CPU seconds).
    A TrainingStopped with the guard's diagnosis when the guard stopped the run."""
    if resume and is_main_process():
        step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
        say(_("resuming from {checkpoint} (step {step})", checkpoint=Path(resume).name, step=step))
    start, cpu_start = time.perf_counter(), time.process_time()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if guard.diagnosis:
        raise TrainingStopped(guard.diagnosis)
    return result, seconds, cpu_seconds


def shown_loss(loss) -> str:
    return f"{loss if loss is None else round(loss, 4)}"
