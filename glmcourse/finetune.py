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
from dataclasses import dataclass
from pathlib import Path

from glmcourse import training
from glmcourse.i18n import _
from glmcourse.training import LOSS_LOG, LiveLossPlot, TrainingStopped  # noqa: F401 - LiveLossPlot: the notebooks'

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


# ----------------------------------------------------------------------------------------------
# Command line and settings
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    import glmcourse
    from glmcourse.cli import INPUT_DIR, INPUT_FILE, MODEL_DIR, OUTPUT_DIR, CourseParser, float_arg, int_arg, seed_arg
    from glmcourse.data import str2bool

    d = LEARNER_DEFAULTS
    p = CourseParser(prog="python -m glmcourse.finetune",
                     description=_("Lesson 05: LoRA fine-tuning on the HF Trainer, with ChatGLM-Tuning's "
                                   "command line."),
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset_path", required=True, kind=INPUT_DIR,
                   help=_("tokenized rows from python -m glmcourse.tokenize_dataset_rows"))
    p.add_argument("--output_dir", required=True, kind=OUTPUT_DIR, replace_check=False,  # deletes only its own files
                   overwrite_flag="--overwrite_output_dir", help=_("adapter, loss log and checkpoints go here"))
    p.add_argument("--lora_rank", type=int_arg("--lora_rank", 1, 10**9), default=d["lora_rank"],
                   help=_("LoRA rank r (alpha stays 32, dropout 0.1)"))
    p.add_argument("--per_device_train_batch_size", type=int_arg("--per_device_train_batch_size", 1, 10**9), default=d["per_device_train_batch_size"])
    p.add_argument("--gradient_accumulation_steps", type=int_arg("--gradient_accumulation_steps", 1, 10**9), default=d["gradient_accumulation_steps"])
    p.add_argument("--max_steps", type=int_arg("--max_steps", 1, 10**9), default=d["max_steps"],
                   help=_("optimizer steps"))
    p.add_argument("--save_steps", type=int_arg("--save_steps", 1, 10**9), default=d["save_steps"],
                   help=_("checkpoint + adapter every N steps"))
    p.add_argument("--save_total_limit", type=int_arg("--save_total_limit", 1, 10**9), default=d["save_total_limit"],
                   help=_("checkpoints kept"))
    p.add_argument("--learning_rate", type=float_arg("--learning_rate", 0, 1, lo_open=True), default=d["learning_rate"])
    p.add_argument("--fp16", type=str2bool, nargs="?", const=True, default=False,
                   help=_("fp16 mixed precision (CUDA only; on a CPU it falls back to fp32 and says so)"))
    p.add_argument("--remove_unused_columns", type=str2bool, nargs="?", const=True, default=False,
                   help=_("must stay false: the collator needs the seq_len column"))
    p.add_argument("--logging_steps", type=int_arg("--logging_steps", 1, 10**9), default=d["logging_steps"])
    p.add_argument("--model_name_or_path", default=glmcourse.COURSE_MODEL, kind=MODEL_DIR,
                   help=_("the base model (default: the course model)"))
    p.add_argument("--load_in_8bit", action="store_true",
                   help=_("load the base with bitsandbytes LLM.int8(), as the seed"))
    p.add_argument("--load_in_4bit", action="store_true", help=_("load the base in bitsandbytes NF4 (QLoRA-style)"))
    p.add_argument("--resume_from_checkpoint", nargs="?", const="last", default=None,
                   help=_("continue from a checkpoint folder; no value: the last complete one in --output_dir"))
    p.add_argument("--overwrite_output_dir", action="store_true",
                   help=_("start over in an --output_dir that holds an earlier run (its adapter, loss log and "
                          "checkpoints are deleted)"))
    p.add_argument("--target_modules", nargs="+", default=None,
                   help=_("LoRA targets (default: peft's mapping for the model type; chatglm: query_key_value)"))
    p.add_argument("--gradient_checkpointing", action="store_true", help=_("trade compute for activation memory"))
    p.add_argument("--deepspeed", default=None, metavar="CONFIG.json", kind=INPUT_FILE, fmt="json",
                   help=_("DeepSpeed config for multi-GPU runs of the real model (needs the deepspeed package)"))
    p.add_argument("--seed", type=seed_arg(), default=42,
                   help=_("seeds the adapter's initial weights, dropout and data order (42, as the HF Trainer)"))
    return p


@dataclass
class FinetuneSettings:
    """One run's settings: every flag of build_parser() (same names), plus finetune()'s ``overwrite`` (the
    notebooks' short name for --overwrite_output_dir) and ``quiet`` (no progress bar; None: settings.QUIET).
    A flag is added here and in build_parser(), nowhere else. None takes LEARNER_DEFAULTS."""

    dataset_path: str | Path
    output_dir: str | Path
    model_name_or_path: str | None = None
    lora_rank: int | None = None
    per_device_train_batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    max_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = None
    learning_rate: float | None = None
    fp16: bool = False
    remove_unused_columns: bool = False
    logging_steps: int | None = None
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    resume_from_checkpoint: str | None = None
    overwrite_output_dir: bool = False
    target_modules: list[str] | None = None
    gradient_checkpointing: bool = False
    deepspeed: str | None = None
    seed: int = 42
    overwrite: bool | None = None
    quiet: bool | None = None

    def __post_init__(self):
        import glmcourse
        from glmcourse import settings

        training.fill_defaults(self, LEARNER_DEFAULTS)
        self.output_dir = Path(self.output_dir)
        self.model_name_or_path = str(self.model_name_or_path or glmcourse.COURSE_MODEL)
        self.overwrite_output_dir = bool(self.overwrite_output_dir or self.overwrite)
        self.quiet = settings.QUIET if self.quiet is None else self.quiet


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def run_files() -> set[str]:
    """What a run writes into --output_dir besides its checkpoint-N folders (peft's README.md, the Trainer's runs/):
    an earlier run is these; anything else in the folder is the user's and never counts or goes."""
    from glmcourse.adapters import ADAPTER_BIN, ADAPTER_CONFIG, ADAPTER_SAFETENSORS
    from glmcourse.files import OUTPUT_MARKER

    return {ADAPTER_CONFIG, ADAPTER_SAFETENSORS, ADAPTER_BIN, LOSS_LOG, OUTPUT_MARKER, "README.md", "runs"}


def checkpoint_problem(path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (None when it can): a file missing (the Trainer
    writes trainer_state.json last, so an interrupted save lacks it), or a file that does not parse."""
    from glmcourse.adapters import ADAPTER_CONFIG, ADAPTER_SAFETENSORS
    from glmcourse.loading import ModelFileError, check_safetensors

    path = Path(path)
    for name in ("trainer_state.json", ADAPTER_CONFIG, ADAPTER_SAFETENSORS):
        if not (path / name).exists():
            return _("{name} is missing (interrupted while saving)", name=name)
    for name in ("trainer_state.json", ADAPTER_CONFIG):
        try:
            state = json.loads((path / name).read_text(encoding="utf-8"))
            if name == "trainer_state.json":
                int(state["global_step"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return _("{name} is damaged (not the JSON the Trainer writes)", name=name)
    try:
        check_safetensors(path / ADAPTER_SAFETENSORS)
    except ModelFileError:
        return _("{name} is damaged (truncated or not safetensors)", name=ADAPTER_SAFETENSORS)
    return None  # optimizer/scheduler/RNG state: see training.resume_state_problem (a fresh one, with a note)


def is_complete_checkpoint(path) -> bool:
    return checkpoint_problem(path) is None


def resolve_resume(resume, output_dir, lora_rank: int) -> str | None:
    """'last'/'true' -> the newest complete checkpoint in output_dir; a path is checked. None stays None."""
    from glmcourse.lora import LoraError

    wanted = training.resume_wanted(resume)
    if wanted is None:
        return None
    if wanted == "last":
        path = training.last_complete_checkpoint(output_dir, checkpoint_problem, LoraError)
    else:
        path = Path(resume)
        if not path.is_dir() or not (path / "trainer_state.json").exists():
            raise LoraError(_("--resume_from_checkpoint {resume}: not a checkpoint folder (needs trainer_state.json); "
                              "pass a checkpoint-N folder, or no value for the last one in --output_dir.",
                              resume=resume))
        problem = checkpoint_problem(path)
        if problem:
            raise LoraError(_("--resume_from_checkpoint {resume}: {problem}; pass an earlier checkpoint-N, or no value "
                              "for the newest one in --output_dir that loads.", resume=resume, problem=problem))
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")) if \
        (path / "adapter_config.json").exists() else {}
    if config and int(config.get("r", lora_rank)) != lora_rank:
        raise LoraError(_("{path} was trained with --lora_rank {saved}, not {lora_rank}: resume with the same "
                          "--lora_rank (and the same other settings).", path=path, saved=config["r"],
                          lora_rank=lora_rank))
    return str(path)


# ----------------------------------------------------------------------------------------------
# Training: validate -> prepare the output folder -> build the trainer -> run -> summarize
# ----------------------------------------------------------------------------------------------
def finetune(dataset_path, output_dir, *, callbacks=(), **flags) -> dict:
    """Train a LoRA adapter; returns {"output_dir", "global_step", "train_seconds", "final_loss", "log",
    "adapter", "trainable"}. ``flags`` are FinetuneSettings' (the command's flags, ``overwrite``, ``quiet``);
    unset ones take LEARNER_DEFAULTS. ``callbacks`` are extra TrainerCallbacks.
    """
    s = training.settings_from(FinetuneSettings, "finetune", dataset_path=dataset_path, output_dir=output_dir,
                               **flags)
    validate(s)
    resume, first_step = prepare_output(s)
    trainer = build_trainer(s, callbacks)
    result, seconds, cpu_seconds = training.run(trainer, resume, trainer.guard)
    return summarize(s, trainer, result, seconds, cpu_seconds, first_step)


def validate(s: FinetuneSettings) -> None:
    """Every setting, before anything slow."""
    from glmcourse.lora import LoraError

    for key in ("lora_rank", "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps",
                "save_steps", "logging_steps"):
        if int(getattr(s, key)) < 1:
            raise LoraError(_("--{key} {value}: must be at least 1.", key=key, value=getattr(s, key)))
    if not s.learning_rate > 0:
        raise LoraError(_("--learning_rate {value}: must be positive.", value=s.learning_rate))
    if s.save_total_limit is not None and int(s.save_total_limit) < 1:
        raise LoraError(_("--save_total_limit {value}: must be at least 1 (it counts the checkpoints "
                          "kept); leave it out to keep them all.", value=s.save_total_limit))
    if s.remove_unused_columns and training.is_main_process():
        training.say(_("note: --remove_unused_columns true would drop the seq_len column the collator needs to mask "
                       "the prompt; using false, as the seed's finetune.sh does."))
    if s.deepspeed:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise LoraError(_("--deepspeed {config}: the deepspeed package is not installed. It is for multi-GPU "
                              "runs of the real model: pip install deepspeed on the GPU machine. On a CPU, leave "
                              "--deepspeed out (torchrun --nproc_per_node N also runs several processes).",
                              config=s.deepspeed))
        if not Path(s.deepspeed).is_file():
            raise LoraError(_("--deepspeed {config}: no such config file.", config=s.deepspeed))


def prepare_output(s: FinetuneSettings) -> tuple[str | None, int]:
    """Check --output_dir and the checkpoint to resume from; without one, an earlier run in --output_dir is
    refused unless --overwrite_output_dir, which deletes its checkpoints and loss log.
    Returns (the checkpoint to resume from or None, the step training starts at)."""
    from glmcourse.cli import check_output_dir
    from glmcourse.lora import LoraError

    # never the dataset or the base model's folder, never a file or a path under a file
    local_model = s.model_name_or_path if Path(s.model_name_or_path).exists() else None  # a hub id is no folder
    check_output_dir(s.output_dir, "--output_dir", inputs=[("--dataset_path", s.dataset_path),
                                                           ("--model_name_or_path", local_model)], overwrite=True)
    resume = resolve_resume(s.resume_from_checkpoint, s.output_dir, int(s.lora_rank))
    if resume:
        return resume, training.check_resume_step(resume, s.max_steps, LoraError)
    old = training.checkpoints(s.output_dir)
    earlier = sorted(p.name for p in training.earlier_run(s.output_dir, run_files()))
    if earlier and not s.overwrite_output_dir:
        shown = ", ".join(earlier[:5]) + (", ..." if len(earlier) > 5 else "")
        raise LoraError(_(
            "--output_dir {output_dir} already holds an earlier run ({shown}). Continue it with "
            "--resume_from_checkpoint (last checkpoint: {last}), choose "
            "another --output_dir, or start over with --overwrite_output_dir (deletes its adapter, loss log "
            "and checkpoints).", output_dir=s.output_dir, shown=shown, last=old[-1].name
        ) if old else _(
            "--output_dir {output_dir} already holds an earlier run ({shown}). Continue it with "
            "--resume_from_checkpoint, choose "
            "another --output_dir, or start over with --overwrite_output_dir (deletes its adapter, loss log "
            "and checkpoints).", output_dir=s.output_dir, shown=shown
        ))
    if earlier:
        training.delete_earlier_run(old + [s.output_dir / LOSS_LOG])
    return None, 0


def _precision(fp16: bool) -> bool:
    """fp16 only on CUDA; on a CPU it falls back to fp32 with a notice (docs/failure-catalog.md#f03-fp16-on-cpu)."""
    import torch

    if fp16 and not torch.cuda.is_available():
        if training.is_main_process():
            training.say(_("note: --fp16 needs a CUDA GPU (fp16 matmuls on a CPU fail with \"addmm_impl_cpu_ not "
                           "implemented for 'Half'\" or crawl); training in fp32 on this CPU instead."))
        return False
    return bool(fp16)


def load_data(s: FinetuneSettings):
    """The tokenizer and the tokenized rows (at least one)."""
    from transformers import AutoTokenizer

    from glmcourse.data import DataError, load_tokenized

    tokenizer = AutoTokenizer.from_pretrained(s.model_name_or_path)
    dataset, params = load_tokenized(s.dataset_path, tokenizer=tokenizer)
    if len(dataset) == 0:
        raise DataError(_("{path}: 0 training samples ({counts}); tokenize some rows first.", path=s.dataset_path,
                          counts=params.get("counts", {})))
    return tokenizer, dataset


def load_lora_model(s: FinetuneSettings, dataset):
    """The base model (8-bit/4-bit if asked) with a fresh LoRA adapter; its rows must fit the model's context."""
    from transformers import set_seed

    from glmcourse.data import DataError
    from glmcourse.loading import load_base_model
    from glmcourse.lora import add_lora, count_parameters

    model = load_base_model(s.model_name_or_path, load_in_8bit=s.load_in_8bit, load_in_4bit=s.load_in_4bit)
    context = getattr(model.config, "max_sequence_length", None)
    longest = max(len(ids) for ids in dataset["input_ids"])
    if context and longest > context:
        raise DataError(_("{path}: its longest row has {longest} tokens, more than the model's context of "
                          "{context} (max_sequence_length). Tokenize again with --max_seq_length {context} or less.",
                          path=s.dataset_path, longest=longest, context=context))
    model.config.use_cache = False  # no KV cache while training (as the seed)
    if s.gradient_checkpointing:
        # transformers also makes the embeddings' output require grad here: without that, no gradient
        # would reach LoRA through the checkpointed blocks of a frozen base (docs/failure-catalog.md#f14-nothing-trains)
        model.activation_checkpointing_enable()
    set_seed(s.seed)  # before the adapter exists: its A matrices are drawn at random, so two runs match
    model = add_lora(model, r=int(s.lora_rank), lora_alpha=32, lora_dropout=0.1, target_modules=s.target_modules,
                     verbose=training.is_main_process())
    training.say_trainable(*count_parameters(model))
    return model


def lora_trainer_class():
    """The Trainer for LoRA: the guarded Trainer, averaging ChatGLM's loss itself, with no-gradient errors explained."""
    from glmcourse.lora import check_lora_grads

    class LoraTrainer(training.guarded_trainer_class()):
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
                return super().training_step(model, *a, **kw)
            except RuntimeError as err:  # torch: "element 0 of tensors does not require grad ..."
                if "does not require grad" in str(err):
                    check_lora_grads(self.model)  # raises the explained LoraError (docs/failure-catalog.md#f14-nothing-trains)
                raise

    return LoraTrainer


def lora_loss_guard(**kwargs) -> training.LossGuard:
    """The loss guard with LoRA's usual causes of a NaN or zero loss."""
    return training.LossGuard(
        nan_causes=_("fp16 overflow (drop --fp16), or a corrupt row"),
        zero_causes=_("the labels supervise nothing or only padding (check seq_len and --max_seq_length when "
                      "tokenizing), or fp16 underflow on a quantized base (drop --fp16)"),
        saved=_("The adapter in --output_dir is the last good save."), **kwargs)


def build_trainer(s: FinetuneSettings, callbacks=()):
    """Data, model with adapter, callbacks and TrainingArguments -> the Trainer; its ``guard``, ``preflight`` and
    ``loss_log`` are the callbacks the summary reads."""
    from glmcourse.adapters import save_adapter
    from glmcourse.data import DataCollator
    from glmcourse.lora import check_lora_grads, check_trainable

    tokenizer, dataset = load_data(s)
    use_fp16 = _precision(s.fp16)
    model = load_lora_model(s, dataset)
    guard, preflight = lora_loss_guard(), training.PreflightCheck(check_trainable, check_lora_grads)
    saver, loss_log = training.SaveWeights(save_adapter, s.output_dir, guard), training.LossLog(s.output_dir)
    args = training.training_arguments(s.output_dir, s, seed=s.seed, quiet=s.quiet, fp16=use_fp16,
                                       ddp_find_unused_parameters=False, deepspeed=s.deepspeed,
                                       logging_nan_inf_filter=False)  # log a NaN loss as what it is (the guard stops)
    trainer = lora_trainer_class()(model=model, args=args, train_dataset=dataset,
                                   data_collator=DataCollator.from_tokenizer(tokenizer),
                                   callbacks=[preflight, guard, saver, loss_log, *callbacks])
    trainer.guard, trainer.preflight, trainer.loss_log = guard, preflight, loss_log
    training.show_progress(trainer, s.quiet)
    if training.is_main_process():
        world = trainer.args.world_size
        kind = "8-bit" if s.load_in_8bit else "4-bit" if s.load_in_4bit else "fp32"
        processes = _("{n} processes", n=world) if world > 1 else _("{n} process", n=world)
        training.say(_("base {model} in {kind}; {processes} on {device}; {rows} rows, batch {batch} x {accumulation} "
                       "accumulation x {world}, {steps} steps, lr {lr:g}", model=Path(s.model_name_or_path).name,
                       kind=kind, processes=processes, device=trainer.args.device.type, rows=len(dataset),
                       batch=s.per_device_train_batch_size, accumulation=s.gradient_accumulation_steps, world=world,
                       steps=s.max_steps, lr=s.learning_rate))
    return trainer


def summarize(s: FinetuneSettings, trainer, result, seconds: float, cpu_seconds: float, first_step: int) -> dict:
    """Save the final adapter and loss log (main process), print the "done:" line, return the run's figures."""
    from glmcourse.lora import count_parameters

    summary = save_final(trainer.model, s.output_dir, trainer.loss_log) if trainer.is_world_process_zero() else None
    trainer.accelerator.wait_for_everyone()
    log = trainer.loss_log.rows
    out = {
        "output_dir": str(s.output_dir), "global_step": trainer.state.global_step, "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "train_runtime_s": result.metrics.get("train_runtime"), "final_loss": trainer.loss_log.final_loss(),
        "log": log, "adapter": None if summary is None else summary.__dict__,
        "trainable": count_parameters(trainer.model)[0], "first_step_max_lora_grad": trainer.preflight.largest_grad,
    }
    if training.is_main_process():
        ran = out["global_step"] - first_step
        steps = _("{n} steps (step {first} -> {last})", n=ran, first=first_step, last=out["global_step"]) \
            if first_step else _("{n} steps", n=ran)
        training.say(_("done: {steps} in {seconds:.0f} s ({cpu_seconds:.0f} s of CPU time), last logged loss {loss}; "
                       "adapter: {adapter}", steps=steps, seconds=seconds, cpu_seconds=cpu_seconds,
                       loss=training.shown_loss(out["final_loss"]), adapter=summary.line() if summary else "-"))
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
    from glmcourse.cli import run_cli
    from glmcourse.lora import LoraError

    return run_cli(lambda: finetune(**vars(args)), errors=(LoraError, TrainingStopped),
                   interrupted=_("interrupted: the last saved adapter and checkpoint are intact; continue with "
                                 "--resume_from_checkpoint."))


if __name__ == "__main__":
    raise SystemExit(main())
