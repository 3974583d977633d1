"""``python -m glmcourse.ptuning``: P-Tuning v2 training on the HF Trainer, with ChatGLM-6B's ptuning/train.sh flags.

The lesson's settings are the defaults (``glmcourse.ptuning.LEARNER_DEFAULTS``): two paths are enough::

    python -m glmcourse.ptuning convert --data_path data/lora_train.json --save_path runs/ptuning_data/train.json
    python -m glmcourse.ptuning --do_train --train_file runs/ptuning_data/train.json --output_dir runs/07_ptuning

train.sh works as written (its AdvertiseGen columns are content/summary)::

    python -m glmcourse.ptuning --do_train --train_file AdvertiseGen/train.json --validation_file AdvertiseGen/dev.json \\
        --prompt_column content --response_column summary --overwrite_cache --model_name_or_path PATH \\
        --output_dir output/adgen-pt-128-2e-2 --overwrite_output_dir --max_source_length 64 --max_target_length 64 \\
        --per_device_train_batch_size 1 --per_device_eval_batch_size 1 --gradient_accumulation_steps 16 \\
        --predict_with_generate --max_steps 3000 --logging_steps 10 --save_steps 1000 --learning_rate 2e-2 \\
        --pre_seq_len 128 --quantization_bit 4

Also: --history_column, --prefix_projection, --seed (42), --resume_from_checkpoint [PATH] (no PATH: the last
complete checkpoint in --output_dir), --save_total_limit. What it adds to main.py: every flag and data row
checked before the model loads; pre-flight checks (trainable parameters > 0 and all in the prefix encoder, a
non-zero prefix gradient at step 1); a guard that stops on a NaN/inf loss or a loss stuck at 0; only the prefix
saved (safetensors + ptuning_config.json), atomically, at every save step and at the end; checkpoints that hold
the prefix, not the 6B base; greedy held-out exact match with --predict_with_generate; and an --output_dir
that is never emptied unless --overwrite_output_dir says so. Resume behaves as finetune's (its docstring):
never past --max_steps; a missing or damaged optimizer/scheduler/RNG state starts afresh with a note.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from glmcourse import ptuning, training
from glmcourse.i18n import _
from glmcourse.ptuning import LEARNER_DEFAULTS, PREFIX_WEIGHTS, PTUNING_CONFIG, PTuningError
from glmcourse.training import FAST_SETTINGS, FAST_TRAIN_ROWS, LOSS_LOG, TrainingStopped  # noqa: F401 - the notebook's

PREDICTIONS = "generated_predictions.jsonl"
OURS = (PREFIX_WEIGHTS, PTUNING_CONFIG, LOSS_LOG, PREDICTIONS, "eval_results.json")  # what a run writes


# ----------------------------------------------------------------------------------------------
# Command line and settings
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    import glmcourse
    from glmcourse.cli import (INPUT_FILE, MODEL_DIR, OUTPUT_DIR, TEXT, CourseParser, float_arg, int_arg,
                               seed_arg)
    from glmcourse.data import str2bool

    d = LEARNER_DEFAULTS
    p = CourseParser(prog="python -m glmcourse.ptuning",
                     description=_("``python -m glmcourse.ptuning``: P-Tuning v2 training on the HF Trainer, with "
                                   "ChatGLM-6B's ptuning/train.sh flags."),
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--do_train", action="store_true", help=_("accepted for train.sh; this command always trains"))
    p.add_argument("--train_file", required=True, kind=INPUT_FILE, fmt="jsonl",
                   help=_("JSON lines, one object per line (prompt/response columns)"))
    p.add_argument("--validation_file", default=None, kind=INPUT_FILE, fmt="jsonl",
                   help=_("held-out JSON lines, scored with --predict_with_generate"))
    p.add_argument("--prompt_column", default="prompt")
    p.add_argument("--response_column", default="response")
    p.add_argument("--history_column", default=None, help=_("a column of [[query, response], ...] past turns"))
    p.add_argument("--overwrite_cache", action="store_true", help=_("accepted for train.sh; rows are tokenized afresh "
                   "every run, so there is no cache to go stale"))
    p.add_argument("--model_name_or_path", default=glmcourse.COURSE_MODEL, kind=MODEL_DIR,
                   help=_("the base (default: the course model)"))
    p.add_argument("--output_dir", required=True, kind=OUTPUT_DIR, replace_check=False,  # deletes only its own files
                   overwrite_flag="--overwrite_output_dir",
                   help=_("prefix, loss log, checkpoints and predictions go here"))
    p.add_argument("--overwrite_output_dir", action="store_true",
                   help=_("start over in an --output_dir that holds an earlier run (deletes that run's files only)"))
    p.add_argument("--max_source_length", type=int_arg("--max_source_length", 2, 2**20), within_context=True,
                   default=d["max_source_length"], help=_("prompt tokens + 1"))
    p.add_argument("--max_target_length", type=int_arg("--max_target_length", 3, 2**20), within_context=True,
                   default=d["max_target_length"], help=_("answer tokens + 2"))
    p.add_argument("--per_device_train_batch_size", type=int_arg("--per_device_train_batch_size", 1, 2**16),
                   default=d["per_device_train_batch_size"])
    p.add_argument("--per_device_eval_batch_size", type=int_arg("--per_device_eval_batch_size", 1, 2**16), default=32,
                   help=_("prompts per generate() call"))
    p.add_argument("--gradient_accumulation_steps", type=int_arg("--gradient_accumulation_steps", 1, 2**16),
                   default=d["gradient_accumulation_steps"])
    p.add_argument("--predict_with_generate", action="store_true",
                   help=_("after training, greedy answers for --validation_file and their exact match"))
    p.add_argument("--max_steps", type=int_arg("--max_steps", 1, 10**9), default=d["max_steps"],
                   help=_("optimizer steps"))
    p.add_argument("--logging_steps", type=int_arg("--logging_steps", 1, 10**9), default=d["logging_steps"])
    p.add_argument("--save_steps", type=int_arg("--save_steps", 1, 10**9), default=d["save_steps"],
                   help=_("checkpoint + prefix every N steps"))
    p.add_argument("--save_total_limit", type=int_arg("--save_total_limit", 1, 10**6), default=d["save_total_limit"],
                   help=_("checkpoints kept"))
    p.add_argument("--learning_rate", type=float_arg("--learning_rate", 0, 1, lo_open=True), default=d["learning_rate"])
    p.add_argument("--pre_seq_len", type=int_arg("--pre_seq_len", 1, 2**20, example=128), within_context=True,
                   default=d["pre_seq_len"], help=_("prefix positions per layer (at most the model's context)"))
    p.add_argument("--prefix_projection", type=str2bool, nargs="?", const=True, default=d["prefix_projection"],
                   kind=TEXT, help=_("produce the prefix through a 2-layer MLP (--prefix_projection, or true/false)"))
    p.add_argument("--quantization_bit", type=int_arg("--quantization_bit", 4, 8, example=4), choices=[4, 8], default=None,
                   help=_("4 or 8: model.quantize(bits) on the base; the prefix stays floating point"))
    p.add_argument("--resume_from_checkpoint", nargs="?", const="last", default=None,
                   help=_("continue from a checkpoint folder; no value: the last complete one in --output_dir"))
    p.add_argument("--seed", type=seed_arg(), default=42,
                   help=_("seeds the prefix's initial values, dropout and data order"))
    return p


def is_ptuning_rows(path) -> bool:
    """True for a JSON-lines file whose every line is an object with prompt and response: convert's own output."""
    try:
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        return bool(lines) and all({"prompt", "response"} <= set(json.loads(line)) for line in lines)
    except (OSError, ValueError, TypeError, RecursionError):
        return False


def convert_parser() -> argparse.ArgumentParser:
    from glmcourse.cli import INPUT_FILE, OUTPUT_FILE, CourseParser

    p = CourseParser(prog="python -m glmcourse.ptuning convert",
                     description=_("Alpaca JSON (instruction/input/output) -> P-Tuning JSON lines "
                                 "(prompt/response, and history when a record has one)."))
    p.add_argument("--data_path", required=True, kind=INPUT_FILE, fmt="json",
                   help=_("an Alpaca JSON array, e.g. data/lora_train.json"))
    p.add_argument("--save_path", required=True, kind=OUTPUT_FILE, owned=is_ptuning_rows,
                   overwrite_flag="--overwrite_output_dir",
                   help=_("the JSON-lines file to write (e.g. runs/ptuning_data/train.json); an existing file is "
                        "replaced only when it is an earlier output of convert"))
    p.add_argument("--overwrite_output_dir", action="store_true",
                   help=_("replace --save_path even if it is not an earlier output of convert"))
    p.add_argument("--style", choices=["instruction", "chat"], default="instruction",
                   help=_("instruction: the LoRA lesson's 'Instruction: ... Answer: ' prompt; chat: the bare chat "
                          "query"))
    return p


def convert(data_path, save_path, style: str = "instruction") -> int:
    """Alpaca JSON -> P-Tuning JSON lines (ensure_ascii=False, one object per line), written atomically."""
    from glmcourse.data import load_alpaca
    from glmcourse.files import atomic_write, is_same_or_inside

    if is_same_or_inside(save_path, data_path):
        raise PTuningError(_("--save_path {save_path}: is --data_path {data_path}; writing it would destroy the "
                             "input. Choose another --save_path, e.g. runs/ptuning_data/train.json.",
                             save_path=save_path, data_path=data_path))
    records = load_alpaca(data_path)
    with atomic_write(save_path) as out:
        for record in records:
            out.write(json.dumps(ptuning.alpaca_to_ptuning(record, style), ensure_ascii=False) + "\n")
    return len(records)


@dataclass
class PTuningSettings:
    """One run's settings: every flag of build_parser() (same names), plus train()'s ``quiet`` (no progress bar;
    None: settings.QUIET). A flag is added here and in build_parser(), nowhere else. None takes LEARNER_DEFAULTS."""

    train_file: str | Path
    output_dir: str | Path
    do_train: bool = True
    validation_file: str | Path | None = None
    prompt_column: str = "prompt"
    response_column: str = "response"
    history_column: str | None = None
    overwrite_cache: bool = False
    model_name_or_path: str | None = None
    overwrite_output_dir: bool = False
    max_source_length: int | None = None
    max_target_length: int | None = None
    per_device_train_batch_size: int | None = None
    per_device_eval_batch_size: int = 32
    gradient_accumulation_steps: int | None = None
    predict_with_generate: bool = False
    max_steps: int | None = None
    logging_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = None
    learning_rate: float | None = None
    pre_seq_len: int | None = None
    prefix_projection: bool | None = None
    quantization_bit: int | None = None
    resume_from_checkpoint: str | None = None
    seed: int = 42
    quiet: bool | None = None

    def __post_init__(self):
        import glmcourse
        from glmcourse import settings

        training.fill_defaults(self, LEARNER_DEFAULTS)
        self.output_dir = Path(self.output_dir)
        self.model_name_or_path = str(self.model_name_or_path or glmcourse.COURSE_MODEL)
        self.quiet = settings.QUIET if self.quiet is None else self.quiet


def check_paths(s: PTuningSettings) -> None:
    """What the command line's guard checks, for callers of train() too: the files, the folders and the context."""
    from glmcourse import cli

    model_path = s.model_name_or_path
    try:
        cli.check_input_content(s.train_file, "--train_file", "jsonl")
        if s.validation_file:
            cli.check_input_content(s.validation_file, "--validation_file", "jsonl")
        cli.check_model_dir(model_path, "--model_name_or_path")
        cli.check_not_course_model(s.output_dir, "--output_dir")
        inputs = [("--train_file", s.train_file), ("--validation_file", s.validation_file),
                  ("--model_name_or_path", model_path if Path(model_path).exists() else None)]
        cli.check_output_dir(s.output_dir, "--output_dir", inputs=inputs, overwrite=True)  # its own files only
    except cli.UsageError as err:
        raise PTuningError(str(err)) from None
    context = cli.model_context(model_path)
    if context and int(s.pre_seq_len) > context:
        raise PTuningError(_("--pre_seq_len {pre_seq_len}: more prefix positions than the model's context of "
                             "{context} tokens ({model_path}/config.json); pass {context} or less (the lesson uses "
                             "{lesson}, train.sh 128 for the 6B model).", pre_seq_len=s.pre_seq_len, context=context,
                             model_path=model_path, lesson=LEARNER_DEFAULTS["pre_seq_len"]))
    if s.predict_with_generate and not s.validation_file:
        raise PTuningError(_("--predict_with_generate needs --validation_file (the held-out rows to answer)."))


def check_settings(s: PTuningSettings) -> None:
    """Every numeric flag, before anything slow (docs/failure-catalog.md#f08-max-seq-length-too-small)."""
    if s.seed is not None:
        from glmcourse.cli import SEED_RANGE, UsageError, check_int

        try:
            check_int(s.seed, "--seed", *SEED_RANGE, example=42)
        except UsageError as err:
            raise PTuningError(str(err)) from None
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                "max_steps", "save_steps", "logging_steps", "pre_seq_len"):
        if getattr(s, key) is not None and int(getattr(s, key)) < 1:
            raise PTuningError(_("--{key} {value}: must be at least 1.", key=key, value=getattr(s, key)))
    if s.save_total_limit is not None and int(s.save_total_limit) < 1:
        raise PTuningError(_("--save_total_limit {value}: must be at least 1 (checkpoints kept).",
                             value=s.save_total_limit))
    if not (s.learning_rate > 0 and math.isfinite(s.learning_rate)):
        raise PTuningError(_("--learning_rate {value}: must be a positive number (train.sh uses 2e-2).",
                             value=s.learning_rate))
    if s.quantization_bit is not None and s.quantization_bit not in (4, 8):
        raise PTuningError(_("--quantization_bit {value}: ChatGLM-6B's quantize(bits) supports 4 or 8 "
                             "only; leave the flag out for a floating-point base.", value=s.quantization_bit))
    ptuning.check_lengths(int(s.max_source_length), int(s.max_target_length))


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def read_rows(path, prompt_column: str, response_column: str, history_column: str | None) -> list[dict]:
    """JSON lines -> [{"query", "response", "history"}]; every bad line is reported by number, before training."""
    from glmcourse.data import DataError, json_lines

    try:
        values, bad_json = json_lines(path, _("For Alpaca records (instruction/input/output), convert it: {command}",
                                              command=f"python -m glmcourse.ptuning convert --data_path {path} "
                                                      "--save_path OUT.json"))
    except DataError as err:
        raise PTuningError(str(err)) from None
    rows, problems = [], list(bad_json)  # (line number, what is wrong)
    for lineno, row in values:
        if not isinstance(row, dict):
            problems.append((lineno, _("must be a JSON object, got {kind}", kind=type(row).__name__)))
            continue
        missing = [c for c in (prompt_column, response_column) if c not in row]
        if missing:
            hint = _(" (an Alpaca record: convert the file with python -m glmcourse.ptuning convert)") \
                if "instruction" in row else ""
            columns = " / ".join(repr(m) for m in missing)
            problems.append((lineno, _("no {columns} column (its keys: {keys}){hint}", columns=columns,
                                       keys=", ".join(sorted(row)), hint=hint) if row else
                             _("no {columns} column (its keys: none){hint}", columns=columns, hint=hint)))
            continue
        query, response = row[prompt_column], row[response_column]
        if not isinstance(query, (str, type(None))) or not isinstance(response, (str, type(None))):
            problems.append((lineno, _("{prompt_column!r} and {response_column!r} must be strings",
                                       prompt_column=prompt_column, response_column=response_column)))
            continue
        history = row.get(history_column) if history_column else None
        if history_column and history is not None:
            ok = isinstance(history, list) and all(isinstance(t, (list, tuple)) and len(t) == 2
                                                   and all(isinstance(x, str) for x in t) for t in history)
            if not ok:
                problems.append((lineno, _("{history_column!r} must be a list of [query, response] string pairs",
                                           history_column=history_column)))
                continue
        rows.append({"query": query or "", "response": response or "", "history": history or []})
    problems.sort(key=lambda problem: problem[0])  # in line order
    if problems:
        listed = "\n".join(_("  line {lineno}: {problem}", lineno=lineno, problem=what)
                           for lineno, what in problems[:20])
        more = _("\n  ... and {n} more", n=len(problems) - 20) if len(problems) > 20 else ""
        flags = f"--prompt_column {prompt_column} --response_column {response_column}" + (
            f" --history_column {history_column}" if history_column else "")
        raise PTuningError(_("{path}: {n} bad lines (numbered from 1); columns asked for: {flags}\n{listed}{more}",
                             path=path, n=len(problems), flags=flags, listed=listed, more=more))
    return rows


def tokenize_rows(tokenizer, rows, max_source_length: int, max_target_length: int, history_column: bool,
                  source="the data") -> tuple[list[dict], dict]:
    """main.py's rule: rows with an empty prompt or response are skipped; the others become build_example rows."""
    ids = ptuning.special_ids(tokenizer)
    out, counts = [], {"rows": len(rows), "empty": 0, "cut_source": 0, "cut_target": 0}
    for row in rows:
        if not row["query"] or not row["response"]:
            counts["empty"] += 1
            continue
        ex = ptuning.build_example(tokenizer, row["query"], row["response"], max_source_length, max_target_length,
                                   row["history"], history_column, ids)
        counts["cut_source"] += ex["cut_source"]
        counts["cut_target"] += ex["cut_target"]
        out.append({"input_ids": ex["input_ids"], "labels": ex["labels"]})
    counts["kept"] = len(out)
    if not out:
        raise PTuningError(_("{source}: 0 training samples after filtering ({empty} of {rows} rows "
                             "have an empty prompt or response); check --prompt_column/--response_column.",
                             source=source, empty=counts["empty"], rows=counts["rows"]))
    return out, counts


# ----------------------------------------------------------------------------------------------
# Output folder and checkpoints
# ----------------------------------------------------------------------------------------------
def checkpoint_problem(path) -> str | None:
    """Why a P-Tuning checkpoint cannot be resumed from (None when it can): a file missing (the Trainer writes
    trainer_state.json last, so an interrupted save lacks it) or damaged. Optimizer/RNG state: see
    training.resume_hooks (a fresh one, with a note)."""
    from glmcourse.loading import ModelFileError, check_safetensors

    path = Path(path)
    for name in ("trainer_state.json", PREFIX_WEIGHTS, PTUNING_CONFIG):
        if not (path / name).is_file():
            return _("{name} is missing (interrupted while saving)", name=name)
    try:
        int(json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
        config = json.loads((path / PTUNING_CONFIG).read_text(encoding="utf-8"))
        int(config["pre_seq_len"]), bool(config["prefix_projection"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return _("trainer_state.json or ptuning_config.json is damaged (not the JSON this command writes)")
    try:
        check_safetensors(path / PREFIX_WEIGHTS)
    except ModelFileError:
        return _("{name} is damaged (truncated or not safetensors)", name=PREFIX_WEIGHTS)
    return None


def is_complete_checkpoint(path) -> bool:
    return checkpoint_problem(path) is None


def resolve_resume(resume, output_dir, pre_seq_len: int, prefix_projection: bool) -> str | None:
    """'last'/'true' -> the newest complete checkpoint in output_dir; a path is checked. None stays None."""
    wanted = training.resume_wanted(resume)
    if wanted is None:
        return None
    if wanted == "last":
        path = training.last_complete_checkpoint(output_dir, checkpoint_problem, PTuningError)
    else:
        path = Path(resume)
        problem = checkpoint_problem(path) if path.is_dir() else _("not a folder")
        if problem:
            raise PTuningError(_("--resume_from_checkpoint {resume}: not a complete P-Tuning checkpoint ({problem}; "
                                 "it needs trainer_state.json, {weights}, {config}); pass a checkpoint-N "
                                 "folder, or no value for the last one in --output_dir.", resume=resume,
                                 problem=problem, weights=PREFIX_WEIGHTS, config=PTUNING_CONFIG))
    config = json.loads((path / PTUNING_CONFIG).read_text(encoding="utf-8"))
    if (config["pre_seq_len"], config["prefix_projection"]) != (pre_seq_len, bool(prefix_projection)):
        flags = f"--pre_seq_len {config['pre_seq_len']}" + (" --prefix_projection" if config["prefix_projection"]
                                                             else "")
        raise PTuningError(_("{path} was trained with {flags}: resume with the same values (and the same other "
                             "settings).", path=path, flags=flags))
    return str(path)


def prepare_output_dir(output_dir: Path, overwrite: bool, resume: str | None) -> None:
    """Refuse to replace an earlier run's files unless --overwrite_output_dir; then delete only those files."""
    if output_dir.exists() and not output_dir.is_dir():
        raise PTuningError(_("--output_dir {output_dir} is a file; give a folder.", output_dir=output_dir))
    if resume:
        return
    earlier = training.earlier_run(output_dir, OURS)
    if earlier and not overwrite:
        raise PTuningError(_("{output_dir} holds an earlier run ({files}). "
                             "Continue it with --resume_from_checkpoint, or start over with --overwrite_output_dir "
                             "(deletes those files; nothing else in the folder is touched).", output_dir=output_dir,
                             files=", ".join(sorted(p.name for p in earlier)[:4])))
    training.delete_earlier_run(earlier)


# ----------------------------------------------------------------------------------------------
# Callbacks and the Trainer
# ----------------------------------------------------------------------------------------------
def prefix_parameters(model) -> dict:
    return {n: p for n, p in model.named_parameters() if ".prefix_encoder." in f".{n}"}


def check_only_prefix_trains(model) -> int:
    """Pre-flight (docs/failure-catalog.md#f14-nothing-trains): some parameters train, and all of them are the prefix encoder's."""
    trainable, total = ptuning.trainable_parameters(model)
    if trainable == 0:
        raise PTuningError(_("the model has 0 trainable parameters (of {total:,}): nothing would learn. Build it "
                             "with from_pretrained(path, pre_seq_len=N): the prefix encoder is created trainable.",
                             total=total))
    other = [n for n, p in model.named_parameters() if p.requires_grad and n not in prefix_parameters(model)]
    if other:
        raise PTuningError(_("{n} base parameters would train too ({first}...): P-Tuning v2 freezes the "
                             "base; call model.freeze_for_prefix_tuning().", n=len(other), first=other[:3]))
    return trainable


def check_prefix_grads(model) -> float:
    """After the first backward: some prefix gradient is non-zero (docs/failure-catalog.md#f14-nothing-trains).
    Returns the largest |grad|."""
    grads = [p.grad.detach().abs().max().item() for p in prefix_parameters(model).values() if p.grad is not None]
    if any(not math.isfinite(g) for g in grads):
        return float("nan")  # gradients flow but the loss is broken: the guard reports that
    if max(grads, default=0.0) == 0.0:
        raise PTuningError(_("after one training step no gradient reached the prefix encoder: the labels may be all "
                             "-100 (check --max_target_length), or the prefix is not used as past keys/values."))
    return max(grads)


def prefix_trainer_class():
    """The guarded Trainer whose checkpoints hold the prefix only (as ChatGLM-6B's ptuning trainer), not a copy
    of the frozen base."""

    class PrefixTrainer(training.guarded_trainer_class()):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.model_accepts_loss_kwargs = False  # ChatGLM returns a mean loss: let the Trainer average

        def _save(self, output_dir=None, state_dict=None):
            if self.args.should_save:
                ptuning.save_prefix(self.model, output_dir or self.args.output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            ptuning.load_prefix(model or self.model, resume_from_checkpoint, verbose=False)

    return PrefixTrainer


def load_base(model_path: str, pre_seq_len: int, prefix_projection: bool, quantization_bit: int | None):
    """The base with a fresh, trainable prefix encoder; quantized with model.quantize(bits) if asked (prefix fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, pre_seq_len=pre_seq_len,
                                                 prefix_projection=prefix_projection, dtype=torch.float32)
    if not hasattr(getattr(model, "transformer", None), "prefix_encoder"):
        raise PTuningError(_("{model_path} ({kind}, model_type {model_type!r}) has no "
                             "P-Tuning v2 prefix encoder: pre_seq_len is ChatGLM-6B's built-in; for other models use "
                             "LoRA (python -m glmcourse.finetune).", model_path=model_path, kind=type(model).__name__,
                             model_type=model.config.model_type))
    ptuning.quantize_once(model, model_path, quantization_bit)
    if model.quantized_bits:
        model.freeze_for_prefix_tuning()
        model.transformer.prefix_encoder.float()
    return model


# ----------------------------------------------------------------------------------------------
# Training: validate -> read the data -> prepare the output folder -> build the trainer -> run -> summarize
# ----------------------------------------------------------------------------------------------
def train(train_file, output_dir, *, callbacks=(), **flags) -> dict:
    """Train a P-Tuning v2 prefix; returns {"output_dir", "global_step", "train_seconds", "final_loss", "log",
    "trainable", "prefix", "exact_match", ...}. ``flags`` are PTuningSettings' (the command's flags and
    ``quiet``); unset settings take LEARNER_DEFAULTS. ``callbacks`` are extra TrainerCallbacks."""
    s = training.settings_from(PTuningSettings, "train", train_file=train_file, output_dir=output_dir, **flags)
    check_settings(s)
    check_paths(s)
    # every data row is read and checked before the model loads
    train_rows = read_rows(s.train_file, s.prompt_column, s.response_column, s.history_column)
    eval_rows = read_rows(s.validation_file, s.prompt_column, s.response_column, s.history_column) \
        if s.validation_file else None
    resume = resolve_resume(s.resume_from_checkpoint, s.output_dir, int(s.pre_seq_len), bool(s.prefix_projection))
    if resume:  # never past --max_steps (as finetune)
        training.check_resume_step(resume, s.max_steps, PTuningError)
    trainer, tokenizer, counts = build_trainer(s, train_rows, resume, callbacks)
    _result, seconds, cpu_seconds = training.run(trainer, resume, trainer.guard)
    out = summarize(s, trainer, counts, seconds, cpu_seconds)
    if s.predict_with_generate:
        out["exact_match"] = predict_and_write(s, trainer.model, tokenizer, eval_rows)
    return out


def build_trainer(s: PTuningSettings, train_rows, resume, callbacks=()):
    """Tokenized rows, the base with its prefix encoder, callbacks and TrainingArguments -> (the Trainer, the
    tokenizer, the row counts). The Trainer's ``guard``, ``preflight`` and ``loss_log`` are the callbacks the summary reads."""
    from transformers import AutoTokenizer, set_seed

    tokenizer = AutoTokenizer.from_pretrained(s.model_name_or_path)
    dataset, counts = tokenize_rows(tokenizer, train_rows, s.max_source_length, s.max_target_length,
                                    bool(s.history_column), source=str(s.train_file))
    prepare_output_dir(s.output_dir, s.overwrite_output_dir, resume)
    set_seed(s.seed)  # before the prefix encoder exists: its initial values are random
    model = load_base(s.model_name_or_path, int(s.pre_seq_len), bool(s.prefix_projection), s.quantization_bit)
    model.config.use_cache = False
    training.say_trainable(*ptuning.trainable_parameters(model))
    guard = training.LossGuard(nan_causes=_("or a corrupt base"),
                               saved=_("The prefix in --output_dir is the last good save."),
                               zero_causes=_("the labels supervise nothing (check the response column and "
                                             "--max_target_length)"))
    preflight, loss_log = training.PreflightCheck(check_only_prefix_trains, check_prefix_grads), \
        training.LossLog(s.output_dir)
    saver = training.SaveWeights(ptuning.save_prefix, s.output_dir, guard)
    args = training.training_arguments(s.output_dir, s, seed=s.seed, quiet=s.quiet)
    trainer = prefix_trainer_class()(model=model, args=args, train_dataset=dataset,
                                     data_collator=ptuning.PrefixCollator(ptuning.special_ids(tokenizer)["pad"]),
                                     callbacks=[preflight, guard, saver, loss_log, *callbacks])
    trainer.guard, trainer.preflight, trainer.loss_log = guard, preflight, loss_log
    training.show_progress(trainer, s.quiet)
    kind = f"int{s.quantization_bit} (model.quantize)" if s.quantization_bit else "fp32"
    training.say(_("base {model} in {kind}, prefix fp32; {rows} rows ({empty} empty skipped, {cut_source} prompts / "
                   "{cut_target} answers cut), batch {batch} x {accumulation} accumulation, {steps} steps, lr {lr:g}, "
                   "pre_seq_len {pre_seq_len}, projection {projection}", model=Path(s.model_name_or_path).name,
                   kind=kind, rows=counts["kept"], empty=counts["empty"], cut_source=counts["cut_source"],
                   cut_target=counts["cut_target"], batch=s.per_device_train_batch_size,
                   accumulation=s.gradient_accumulation_steps, steps=s.max_steps, lr=s.learning_rate,
                   pre_seq_len=s.pre_seq_len, projection=bool(s.prefix_projection)))
    return trainer, tokenizer, counts


def summarize(s: PTuningSettings, trainer, counts: dict, seconds: float, cpu_seconds: float) -> dict:
    """Save the final prefix and loss log, print the "done:" line, return the run's figures."""
    trainer.loss_log.write()
    saved = ptuning.save_prefix(trainer.model, s.output_dir)
    log = trainer.loss_log.rows
    out = {"output_dir": str(s.output_dir), "global_step": trainer.state.global_step,
           "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
           "final_loss": trainer.loss_log.final_loss(), "log": log,
           "trainable": ptuning.trainable_parameters(trainer.model)[0], "counts": counts,
           "first_step_max_prefix_grad": trainer.preflight.largest_grad, "prefix_bytes": saved["file_bytes"],
           "exact_match": None}
    training.say(_("done: {steps} steps in {seconds:.0f} s ({cpu_seconds:.0f} s of CPU time), last logged loss "
                   "{loss}; prefix: {file} {kib:.1f} KiB, {parameters:,} parameters", steps=out["global_step"],
                   seconds=seconds, cpu_seconds=cpu_seconds, loss=training.shown_loss(out["final_loss"]),
                   file=PREFIX_WEIGHTS, kib=saved["file_bytes"] / 1024, parameters=saved["config"]["parameters"]))
    return out


# ----------------------------------------------------------------------------------------------
# Held-out answers
# ----------------------------------------------------------------------------------------------
def predict(model, tokenizer, rows, max_source_length: int, max_target_length: int, history_column: bool,
            batch_size: int = 32) -> tuple[float, list[str]]:
    """Greedy answers (at most max_target_length new tokens) and the exact-match share (stripped text)."""
    from glmcourse.evaluation import greedy_replies

    rows = [r for r in rows if r["query"] and r["response"]]
    prompts = [ptuning.build_prompt(r["query"], r["history"], history_column) for r in rows]
    prompts = [tokenizer.decode(tokenizer.encode(p, add_special_tokens=False)[: max_source_length - 1]) for p in prompts]
    replies = greedy_replies(model.eval(), tokenizer, prompts, max_new_tokens=max_target_length, batch_size=batch_size)
    hits = [reply.strip() == r["response"].strip() for reply, r in zip(replies, rows)]
    return sum(hits) / max(len(hits), 1), replies


def write_predictions(output_dir, rows, replies, em) -> None:
    from glmcourse.files import atomic_write

    with atomic_write(Path(output_dir) / PREDICTIONS) as out:
        for row, reply in zip([r for r in rows if r["query"] and r["response"]], replies):
            out.write(json.dumps({"prompt": row["query"], "labels": row["response"], "predict": reply},
                                 ensure_ascii=False) + "\n")
    with atomic_write(Path(output_dir) / "eval_results.json") as out:
        out.write(json.dumps({"exact_match": em, "rows": len(replies)}, indent=1) + "\n")


def predict_and_write(s: PTuningSettings, model, tokenizer, eval_rows) -> float:
    """--predict_with_generate: greedy answers to --validation_file, written with their exact match; returns it."""
    em, replies = predict(model, tokenizer, eval_rows, s.max_source_length, s.max_target_length,
                          bool(s.history_column), s.per_device_eval_batch_size)
    write_predictions(s.output_dir, eval_rows, replies, em)
    training.say(_("held-out exact match: {percent:.1f}% of {rows} rows ({file}, greedy); answers in {answers}",
                   percent=100 * em, rows=len(eval_rows), file=Path(s.validation_file).name, answers=PREDICTIONS))
    return em


# ----------------------------------------------------------------------------------------------
# The notebook's run (lesson 07): the LoRA lesson's data as JSON lines, fast vs learner settings
# ----------------------------------------------------------------------------------------------
# FAST_SETTINGS and FAST_TRAIN_ROWS (imported above from glmcourse.training): fast mode's fewer steps and rows
def lesson_data(folder=None, limit: int | None = None) -> dict:
    """data/lora_{train,eval}.json -> prompt/response JSON lines in ``folder`` (``limit`` training rows,
    evenly thinned); returns {"train": path, "eval": path}. Rewritten each time (it takes milliseconds)."""
    import glmcourse
    from glmcourse.course_data import lora_records
    from glmcourse.files import atomic_write

    folder = Path(folder or glmcourse.RUNS_DIR / "ptuning_data")
    paths = {"train": folder / "train.json", "eval": folder / "dev.json"}
    for name, path in paths.items():
        with atomic_write(path) as out:
            for record in lora_records(name, limit if name == "train" else None):
                out.write(json.dumps(ptuning.alpaca_to_ptuning(record), ensure_ascii=False) + "\n")
    return paths


def main(argv=None) -> int:
    from glmcourse.cli import run_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = convert_parser() if argv[:1] == ["convert"] else build_parser()
        parser.parse_args(argv[1:] if argv[:1] == ["convert"] else argv)  # the guard, before anything slow
    except SystemExit as stop:  # --help, or a bad flag (one line, status 2)
        return stop.code

    def body():
        if argv[:1] == ["convert"]:
            args = convert_parser().parse_args(argv[1:])  # the guard: exit 2 on a bad path
            n = convert(args.data_path, args.save_path, args.style)
            print(_("{n} records -> {path} (prompt/response JSON lines, style {style})", n=n, path=args.save_path,
                    style=args.style))
        else:
            train(**vars(build_parser().parse_args(argv)))

    return run_cli(body, errors=(PTuningError, TrainingStopped),
                   interrupted=_("interrupted: the last saved prefix and checkpoint are intact; continue with "
                                 "--resume_from_checkpoint."))


if __name__ == "__main__":
    raise SystemExit(main())
