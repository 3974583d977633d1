"""Alpaca JSON -> ChatGLM-Tuning context/target JSONL (lesson 04).

    python -m glmcourse.cover_alpaca2jsonl --data_path data/lora_train.json --save_path runs/lora_train.jsonl

Same output bytes as ChatGLM-Tuning's cover_alpaca2jsonl.py, with validation, a clear message on bad
input (exit status 1) and an atomic write (an interrupted run leaves no partial file).
"""
from __future__ import annotations

import argparse

from glmcourse.data import convert_file, run_cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", required=True, help="Alpaca JSON: an array of instruction/input/output records")
    parser.add_argument("--save_path", required=True, help="output JSONL, one {context, target} per line")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body():
        count = convert_file(args.data_path, args.save_path)
        print(f"converted {count} records: {args.data_path} -> {args.save_path}")

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
