"""Alpaca JSON -> ChatGLM-Tuning context/target JSONL (lesson 04).

    python -m glmcourse.cover_alpaca2jsonl --data_path data/lora_train.json --save_path runs/lora_train.jsonl

Same output bytes as ChatGLM-Tuning's cover_alpaca2jsonl.py, with validation, a clear message on bad
input (exit status 1) and an atomic write (an interrupted run leaves no partial file). It never writes over
its input, and replaces an existing --save_path only when that is an earlier output of this converter
(context/target lines), unless --overwrite_output_dir is given.
"""
from __future__ import annotations

import argparse

from glmcourse.cli import check_input_file, check_output_file, run_cli
from glmcourse.data import convert_file


def build_parser():
    from glmcourse.cli import INPUT_FILE, OUTPUT_FILE, CourseParser
    from glmcourse.data import _is_converter_output

    parser = CourseParser(prog="python -m glmcourse.cover_alpaca2jsonl", description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", required=True, kind=INPUT_FILE, fmt="json",
                        help="Alpaca JSON: an array of instruction/input/output records")
    parser.add_argument("--save_path", required=True, kind=OUTPUT_FILE, owned=_is_converter_output,
                        overwrite_flag="--overwrite_output_dir", help="output JSONL, one {context, target} per line")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="replace --save_path even if it is not an earlier output of this converter")
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
        print(f"converted {count} records: {args.data_path} -> {args.save_path}")

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
