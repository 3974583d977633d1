"""Context/target JSONL -> tokenized rows (input_ids, seq_len) saved with datasets (lesson 04).

    python -m glmcourse.tokenize_dataset_rows --jsonl_path runs/lora_train.jsonl \
        --save_path runs/lora_train_tok --max_seq_length 200 --skip_overlength False

As ChatGLM-Tuning's tokenize_dataset_rows.py, with its bugs fixed: --skip_overlength is parsed strictly
("False" means False), overlength rows keep [gMASK] <sop> and <eop>, the counts are printed, zero rows
left is an error, and the parameters are saved beside the rows (glmcourse_params.json).
"""
from __future__ import annotations

import argparse
from glmcourse.data import (
    DataError,
    build_params,
    check_max_seq_length,
    load_jsonl,
    run_cli,
    save_tokenized,
    str2bool,
    tokenize_examples,
)


def parse_args(argv=None) -> argparse.Namespace:
    import glmcourse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl_path", required=True, help="context/target JSONL from cover_alpaca2jsonl")
    parser.add_argument("--save_path", required=True, help="folder for the tokenized dataset (save_to_disk)")
    parser.add_argument("--max_seq_length", type=int, default=200, help="longest row in tokens (default 200)")
    parser.add_argument(
        "--skip_overlength", type=str2bool, nargs="?", const=True, default=False,
        help="true: drop rows longer than max_seq_length; false (default): truncate their target",
    )
    parser.add_argument("--model_name_or_path", default=glmcourse.COURSE_MODEL, help="tokenizer (default: the course model)")
    return parser.parse_args(argv)


def load_tokenizer(path):
    """AutoTokenizer for a ChatGLM model (folder or hub id); failure is a DataError, not a traceback."""
    import glmcourse  # noqa: F401  (registers the course tokenizer with AutoTokenizer)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"could not load a tokenizer from {path!r} ({first}). Pass --model_name_or_path with a folder "
            f"holding the tokenizer files (the default is the course model, glmcourse/course_model/)."
        ) from None


def main(argv=None) -> int:
    args = parse_args(argv)

    def body():
        check_max_seq_length(args.max_seq_length)  # fail before any work
        examples = load_jsonl(args.jsonl_path)
        tokenizer = load_tokenizer(args.model_name_or_path)
        rows, counts = tokenize_examples(tokenizer, examples, args.max_seq_length, args.skip_overlength)
        params = build_params(tokenizer, args.jsonl_path, args.max_seq_length, args.skip_overlength)
        params["counts"] = counts
        save_tokenized(rows, args.save_path, params)
        print(
            f"read {counts['read']} rows; kept {counts['kept']} (truncated to {args.max_seq_length} tokens: "
            f"{counts['truncated']}, of which context also cut: {counts['context_truncated']}); "
            f"skipped overlength: {counts['skipped']}; saved to {args.save_path}"
        )

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
