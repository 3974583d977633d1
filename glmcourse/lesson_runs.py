"""What the lesson notebooks call beyond their own lesson module.

* The notebooks' training runs: fast-mode and learner-mode settings, their output folders under ``runs/``,
  and reusing an adapter a lesson already trained (lessons 05 and 06).
* Everything else a notebook uses from the package (scores, loaders, memory estimates, figures, the seed
  commands), named at the end of this file under the defining module's names. So each notebook imports
  its lesson module, this one and settings/bilingual/exercises only (tests/test_notebook_imports.py).
"""
from __future__ import annotations

from pathlib import Path

from glmcourse.adapters import check_adapter
from glmcourse.course_data import lora_records
from glmcourse.i18n import _
from glmcourse.lora import LoraError
# What the notebooks train: the learner defaults, or (fast mode) a shorter run on fewer rows, same code.
from glmcourse.training import FAST_EVAL_RECORDS, FAST_SETTINGS, FAST_TRAIN_ROWS  # noqa: F401 - notebooks read them here


def tokenize_lora_train(save_path, model_path=None, limit: int | None = None, max_seq_length: int = 128):
    """data/lora_train.json -> tokenized rows in ``save_path`` (lesson 04's pipeline); returns the path."""
    import glmcourse
    from glmcourse.data import (
        build_params,
        format_example,
        save_tokenized,
        tokenize_examples,
    )
    from glmcourse.tokenize_dataset_rows import load_tokenizer

    tokenizer = load_tokenizer(model_path or glmcourse.COURSE_MODEL)
    examples = [format_example(r) for r in lora_records("train", limit)]
    rows, counts = tokenize_examples(tokenizer, examples, max_seq_length, False)
    params = build_params(tokenizer, glmcourse.DATA_DIR / "lora_train.json", max_seq_length, False)
    params["counts"] = counts | {"limit": limit}
    save_tokenized(rows, save_path, params)
    return Path(save_path)


def lesson_settings() -> dict:
    """finetune() keyword arguments for the notebooks: {} (the learner defaults) or the fast-mode run."""
    from glmcourse.settings import fast_or

    return fast_or(dict(FAST_SETTINGS), {})


def lesson_output_dir() -> Path:
    """Where notebook 05 saves its adapter and notebook 06 looks for it (fast and learner runs kept apart)."""
    import glmcourse
    from glmcourse.settings import fast_or

    return glmcourse.RUNS_DIR / fast_or("05_lora_fast", "05_lora")


def lesson_dataset() -> Path:
    """data/lora_train.json tokenized into runs/ (all 1200 rows; FAST_TRAIN_ROWS in fast mode); reused when fresh."""
    import glmcourse
    from glmcourse.data import DataError, load_tokenized
    from glmcourse.settings import fast_or
    from glmcourse.tokenize_dataset_rows import load_tokenizer

    limit = fast_or(FAST_TRAIN_ROWS, None)
    path = glmcourse.RUNS_DIR / fast_or("lora_train_tok_fast", "lora_train_tok")
    try:
        _, params = load_tokenized(path, tokenizer=load_tokenizer(glmcourse.COURSE_MODEL),
                                   source_path=glmcourse.DATA_DIR / "lora_train.json")
        if params.get("counts", {}).get("limit") == limit:
            return path
    except DataError:
        pass
    return tokenize_lora_train(path, limit=limit)


def ensure_adapter(output_dir=None, callbacks=()) -> Path:
    """The lesson's adapter: reused when ``output_dir`` holds a valid trained one, else trained now."""
    from glmcourse import finetune

    output_dir = Path(output_dir or lesson_output_dir())
    try:
        check_adapter(output_dir)
        print(_("using the adapter in runs/{folder} (trained by notebook 05)", folder=output_dir.name))
        return output_dir
    except LoraError as err:
        reason = str(err).split(":", 1)[-1].strip()[:80]
        print(_("no usable adapter in runs/{folder} ({reason}...); training one", folder=output_dir.name, reason=reason))
    finetune.finetune(lesson_dataset(), output_dir, overwrite=True, callbacks=callbacks, **lesson_settings())
    return output_dir


def adapter_run(output_dir) -> dict:
    """What lesson 07's table needs from a finished LoRA run in ``output_dir`` (``ensure_adapter``'s folder): its
    loss log (steps, loss, seconds), its step count and the adapter's parameter count."""
    import json

    from glmcourse.training import LOSS_LOG

    log = json.loads((Path(output_dir) / LOSS_LOG).read_text(encoding="utf-8"))
    return {"log": log, "global_step": log[-1]["step"], "trainable": check_adapter(output_dir).parameters}


# ----------------------------------------------------------------------------------------------
# What the notebooks use from the rest of the package
# ----------------------------------------------------------------------------------------------
# A lesson notebook imports its own module, this one, and settings/bilingual/exercises
# (tests/test_notebook_imports.py). Everything else it calls is named here, under the same name as
# in the module that defines it, so ``lesson_runs.score??`` in a notebook shows evaluation.py's code.
from glmcourse.adapters import ADAPTER_SAFETENSORS, check_adapter, load_adapter  # noqa: E402,F811
from glmcourse.course_data import (  # noqa: E402,F811
    alpaca_style_records,
    base_training_texts,
    heldout_documents,
    heldout_records,
    lora_records,
)
from glmcourse.data import build_labels, encode_example, format_example, row_table  # noqa: E402
from glmcourse.evaluation import (  # noqa: E402
    beyond_training_checks,
    chat_exact_match,
    compare_quantized,
    field_accuracy,
    greedy_replies,
    heldout_batches,
    heldout_loss,
    heldout_target_loss,
    print_scores,
    record_query,
    score,
    side_by_side,
)
from glmcourse.finetune import LiveLossPlot, finetune  # noqa: E402
from glmcourse.finetune import LEARNER_DEFAULTS as LORA_DEFAULTS  # noqa: E402  (ptuning has its own)
from glmcourse.loading import import_bitsandbytes, load_base_model, load_bnb_model, load_course_model  # noqa: E402
from glmcourse.lora import LoraError, lora_parameter_count, lora_parameters  # noqa: E402,F811
from glmcourse.memory import (  # noqa: E402
    README_CLAIMS_GB,
    TRAIN_SEQ_LEN,
    estimate_memory,
    kv_cache_bytes,
    memory_in_subprocess,
    parameter_counts,
    seed_figures_gb,
)
from glmcourse.plots import plot_error_histogram, plot_levels, plot_loss, plot_mask, plot_sqnr_vs_bits  # noqa: E402
from glmcourse.sizes import count_parameters, meta_model, weight_gib  # noqa: E402
from glmcourse.thudm_format import write_thudm_folder  # noqa: E402


def cover_alpaca2jsonl(argv: list[str]) -> int:
    """``python -m glmcourse.cover_alpaca2jsonl ARGS`` run in the notebook; returns the exit status."""
    from glmcourse import cover_alpaca2jsonl as command

    return command.main(argv)


def tokenize_dataset_rows(argv: list[str]) -> int:
    """``python -m glmcourse.tokenize_dataset_rows ARGS`` run in the notebook; returns the exit status."""
    from glmcourse import tokenize_dataset_rows as command

    return command.main(argv)


def tokenize_dataset_rows_args(argv: list[str], **kwargs):
    """The options ``tokenize_dataset_rows`` would run with (its parser only: nothing is read or written)."""
    from glmcourse import tokenize_dataset_rows as command

    return command.parse_args(argv, **kwargs)


def cli_demo(model, tokenizer, gen: dict, read=input) -> int:
    """The terminal chat of ``python -m glmcourse.cli_demo``, on a model already loaded (``read`` gives the lines)."""
    from glmcourse import cli_demo as command

    return command.run(model, tokenizer, gen, read=read)


def web_demo_respond(model, tokenizer, *args, **kwargs):
    """One turn of ``python -m glmcourse.web_demo``'s chat handler, without a browser (yields its updates)."""
    from glmcourse import web_demo

    return web_demo.respond(model, tokenizer, *args, **kwargs)


# P-Tuning v2 (lesson 07): the command's training loop, on the same rows and batch size as the LoRA run.
def ptuning_data(folder=None, limit: int | None = None) -> dict:
    """The lesson's P-Tuning rows (prompt/response JSONL, tokenized the same way as lesson 04)."""
    from glmcourse import ptuning_train

    return ptuning_train.lesson_data(folder, limit=limit)


def ptuning_settings() -> dict:
    """train() keyword arguments for notebook 07: {} (ptuning.LEARNER_DEFAULTS) or the fast-mode run."""
    from glmcourse import ptuning_train
    from glmcourse.settings import fast_or

    return fast_or(dict(ptuning_train.FAST_SETTINGS), {})


def train_ptuning(train_file, output_dir, **kwargs) -> dict:
    """``python -m glmcourse.ptuning`` as a function: trains a prefix, returns its summary (loss log included)."""
    from glmcourse import ptuning_train

    return ptuning_train.train(train_file, output_dir, **kwargs)
