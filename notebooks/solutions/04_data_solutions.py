"""Reference solutions for notebook 04 (instruction data). Try the exercises before reading these."""
from __future__ import annotations

import argparse


def format_example(record: dict) -> dict:
    """Alpaca record -> ChatGLM-Tuning's {"context", "target"}. Nothing is stripped."""
    context = "Instruction: " + record["instruction"] + "\n"
    if record.get("input"):  # None and "" are falsy; "  " is truthy and keeps its line
        context += "Input: " + record["input"] + "\n"
    return {"context": context + "Answer: ", "target": record["output"]}


def build_labels(input_ids, seq_len: int) -> list[int]:
    """-100 over the prompt before <sop>; <sop>, the target and <eop> keep their ids."""
    return [-100] * (seq_len - 1) + list(input_ids[seq_len - 1 :])


def truncate_target(context_ids, target_ids, eop_id: int, max_seq_length: int) -> list[int]:
    """Keep the whole context ([gMASK] <sop> included) and <eop>; cut the target to what fits."""
    room = max_seq_length - len(context_ids) - 1
    return list(context_ids) + list(target_ids)[: max(room, 0)] + [eop_id]


def str2bool(text) -> bool:
    """Strict: true/false, 1/0, yes/no in any case; anything else is an argparse error."""
    word = str(text).strip().lower()
    if word in {"true", "1", "yes"}:
        return True
    if word in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
