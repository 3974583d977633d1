"""Alpaca JSON -> ChatGLM-Tuning context/target JSONL (lesson 04).

    python -m glmcourse.cover_alpaca2jsonl --data_path data/lora_train.json --save_path runs/lora_train.jsonl

Same output bytes as ChatGLM-Tuning's cover_alpaca2jsonl.py, with validation, a clear message on bad
input (exit status 1) and an atomic write (an interrupted run leaves no partial file). It never writes over
its input, and replaces an existing --save_path only when that is an earlier output of this converter
(context/target lines), unless --overwrite_output_dir is given.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from glmcourse.cli import check_input_file, check_output_file, run_cli
from glmcourse.data import DataError, format_example, jsonl_line, load_alpaca
from glmcourse.i18n import _


def _is_converter_output(path: Path) -> bool:
    """True when every line of ``path`` is a {"context", "target"} object: a file this converter wrote."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict) or set(row) != {"context", "target"}:
                        return False
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return True


def convert_file(data_path, save_path, overwrite: bool = False) -> int:
    """Alpaca JSON -> context/target JSONL (byte-identical to ChatGLM-Tuning). Returns the row count.

    ``save_path`` may replace an earlier output of the converter, never the input itself nor any other
    file (unless ``overwrite``, the command's ``--overwrite_output_dir``).
    """
    from glmcourse.files import atomic_write, is_same_or_inside
    from glmcourse.settings import progress

    save = Path(save_path)
    if is_same_or_inside(save, data_path):
        raise DataError(_("--save_path {save_path} is the input --data_path {data_path}: writing it would destroy "
                          "the input; choose another --save_path, e.g. {example}.", save_path=save_path,
                          data_path=data_path, example=Path(data_path).with_name(Path(data_path).stem + "_rows.jsonl")))
    if save.is_dir():
        raise DataError(_("--save_path {save_path}: is a folder; give a file name, e.g. --save_path {example}.",
                          save_path=save_path, example=save / "rows.jsonl"))
    if save.exists() and not overwrite and not _is_converter_output(save):
        raise DataError(_("--save_path {save_path}: already exists and is not a context/target JSONL written by this "
                          "converter; nothing was changed. Choose another --save_path, or pass --overwrite_output_dir "
                          "to replace it.", save_path=save_path))
    records = load_alpaca(data_path)
    with atomic_write(save_path) as out:
        for record in progress(records, min_items=2000, desc=_("converting"), unit="rec"):
            out.write(jsonl_line(format_example(record)))
    return len(records)


def build_parser():
    from glmcourse.cli import INPUT_FILE, OUTPUT_FILE, CourseParser

    parser = CourseParser(prog="python -m glmcourse.cover_alpaca2jsonl",
                          description=_("Alpaca JSON -> ChatGLM-Tuning context/target JSONL (lesson 04)."))
    parser.add_argument("--data_path", required=True, kind=INPUT_FILE, fmt="json",
                        help=_("Alpaca JSON: an array of instruction/input/output records"))
    parser.add_argument("--save_path", required=True, kind=OUTPUT_FILE, owned=_is_converter_output,
                        overwrite_flag="--overwrite_output_dir",
                        help=_("output JSONL, one {{context, target}} per line"))
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help=_("replace --save_path even if it is not an earlier output of this converter"))
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    try:
        args = parse_args(argv)  # the guard: exit 2 with one line on a bad path
    except SystemExit as stop:
        return stop.code

    def body():
        check_input_file(args.data_path, "--data_path")
        check_output_file(args.save_path, "--save_path", inputs=[("--data_path", args.data_path)])
        count = convert_file(args.data_path, args.save_path, overwrite=args.overwrite_output_dir)
        print(_("converted {count} records: {data_path} -> {save_path}", count=count, data_path=args.data_path,
                save_path=args.save_path))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
