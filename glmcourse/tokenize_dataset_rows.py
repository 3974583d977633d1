"""Context/target JSONL -> tokenized rows (input_ids, seq_len) saved with datasets (lesson 04).

    python -m glmcourse.tokenize_dataset_rows --jsonl_path runs/lora_train.jsonl \
        --save_path runs/lora_train_tok --max_seq_length 200 --skip_overlength False

As ChatGLM-Tuning's tokenize_dataset_rows.py, with its bugs fixed: --skip_overlength is parsed strictly
("False" means False), overlength rows keep [gMASK] <sop> and <eop>, the counts are printed, zero rows
left is an error, and the parameters are saved beside the rows (glmcourse_params.json). An existing
--save_path is replaced only when it is a tokenized dataset this command wrote (nothing else in it),
unless --overwrite_output_dir is given; the tokenizer folder's own Python code runs only with
--trust_remote_code.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from glmcourse.cli import check_input_file, check_output_dir, one_line, run_cli
from glmcourse.data import (
    DataError,
    build_params,
    check_max_seq_length,
    foreign_dataset_entries,
    load_jsonl,
    save_tokenized,
    str2bool,
    tokenize_examples,
)
from glmcourse.i18n import _


def build_parser():
    import glmcourse
    from glmcourse.cli import INPUT_FILE, MODEL_DIR, OUTPUT_DIR, TEXT, CourseParser, int_arg

    parser = CourseParser(prog="python -m glmcourse.tokenize_dataset_rows",
                          description=_("Context/target JSONL -> tokenized rows (input_ids, seq_len) saved with "
                                        "datasets (lesson 04)."))
    parser.add_argument("--jsonl_path", required=True, kind=INPUT_FILE, fmt="jsonl",
                        help=_("context/target JSONL from cover_alpaca2jsonl"))
    parser.add_argument("--save_path", required=True, kind=OUTPUT_DIR, owned=foreign_dataset_entries,
                        overwrite_flag="--overwrite_output_dir",
                        help=_("folder for the tokenized dataset (save_to_disk)"))
    parser.add_argument("--max_seq_length", type=int_arg("--max_seq_length", 1, 2**20, example=200), default=200,
                        within_context=True, help=_("longest row in tokens (default 200)"))
    parser.add_argument(
        "--skip_overlength", type=str2bool, nargs="?", const=True, default=False, kind=TEXT,
        help=_("true: drop rows longer than max_seq_length; false (default): truncate their target"),
    )
    parser.add_argument("--model_name_or_path", default=glmcourse.COURSE_MODEL, kind=MODEL_DIR,
                        help=_("tokenizer (default: the course model)"))
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help=_("replace --save_path even if it holds files this command did not write"))
    parser.add_argument("--trust_remote_code", action="store_true",
                        help=_("allow the tokenizer folder's own Python code to run (off: the course's tokenizer "
                               "is built in; read that code first)"))
    return parser


def parse_args(argv=None, check_values: bool = True) -> argparse.Namespace:
    """The command's flags, checked by the shared guard; ``check_values=False`` only parses them (lesson 04
    shows how ``--skip_overlength`` reads without files at hand)."""
    parser = build_parser()
    parser.check_values = check_values
    return parser.parse_args(argv)


def load_tokenizer(path, trust_remote_code: bool = False):
    """AutoTokenizer for a ChatGLM model (folder or hub id); failure is a DataError, not a traceback.

    The folder's own Python code (``auto_map``) runs only with ``trust_remote_code=True``: the course
    tokenizer is registered with AutoTokenizer by ``import glmcourse`` and needs none.
    """
    from glmcourse.loading import ModelFileError, check_tokenizer_files
    from glmcourse.loading import load_tokenizer as _load

    try:
        check_tokenizer_files(path)
        return _load(path, trust_remote_code=trust_remote_code, flag="--model_name_or_path")
    except (ModelFileError, OSError, ValueError) as err:
        raise DataError(_("could not load a tokenizer from {path!r} ({error}). Pass --model_name_or_path with a "
                          "folder holding the tokenizer files (the default is the course model, "
                          "glmcourse/course_model/).", path=str(path), error=one_line(err))) from None


def model_context(path) -> int | None:
    """The model's context length from its config.json (None for a hub id or a folder without one)."""
    import json

    config = Path(path) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("max_sequence_length", "seq_length", "max_position_embeddings"):
        if isinstance(data.get(key), int):
            return data[key]
    return None


def main(argv=None) -> int:
    try:
        args = parse_args(argv)  # the guard: exit 2 with one line on a bad path or number
    except SystemExit as stop:
        return stop.code

    def body():
        check_max_seq_length(args.max_seq_length)  # fail before any work
        check_input_file(args.jsonl_path, "--jsonl_path")
        check_output_dir(args.save_path, "--save_path", inputs=[("--jsonl_path", args.jsonl_path)],
                         overwrite=args.overwrite_output_dir, owned=foreign_dataset_entries)
        examples = load_jsonl(args.jsonl_path)
        tokenizer = load_tokenizer(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
        context = model_context(args.model_name_or_path)
        if context and args.max_seq_length > context:
            raise DataError(_("--max_seq_length {value}: longer than the model's context of {context} tokens "
                              "(max_sequence_length in {model}/config.json); rows that long could not be trained on. "
                              "Pass --max_seq_length {context} or less.", value=args.max_seq_length, context=context,
                              model=args.model_name_or_path))
        rows, counts = tokenize_examples(tokenizer, examples, args.max_seq_length, args.skip_overlength)
        params = build_params(tokenizer, args.jsonl_path, args.max_seq_length, args.skip_overlength)
        params["counts"] = counts
        save_tokenized(rows, args.save_path, params, overwrite=args.overwrite_output_dir)
        print(_("read {read} rows; kept {kept} (truncated to {max_seq_length} tokens: {truncated}, of which context "
                "also cut: {context_truncated}); skipped overlength: {skipped}; saved to {path}", **counts,
                max_seq_length=args.max_seq_length, path=args.save_path))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
