"""The notebooks' training runs: fast-mode and learner-mode settings, their output folders under
``runs/``, and reusing an adapter a lesson already trained (lessons 05 and 06).
"""
from __future__ import annotations

from pathlib import Path

from glmcourse.adapters import check_adapter
from glmcourse.course_data import lora_records
from glmcourse.i18n import _
from glmcourse.lora import LoraError


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


# What the notebooks train: the learner defaults, or a shorter run on fewer rows in fast mode (same code).
FAST_TRAIN_ROWS = 320


FAST_SETTINGS = dict(max_steps=80, save_steps=40, logging_steps=10)


FAST_EVAL_RECORDS = 32


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


