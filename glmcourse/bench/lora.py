"""``make bench`` figures of lessons 05-06 (LoRA)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from glmcourse.adapters import load_adapter
from glmcourse.course_data import lora_records
from glmcourse.evaluation import score
from glmcourse.lesson_runs import tokenize_lora_train
from glmcourse.loading import load_base_model


def bench_lora(work_dir=None, eval_limit: int | None = None, with_8bit: bool = True, **train_overrides) -> dict:
    """The issue's figures in learner mode: tokenize lora_train, train with the learner defaults on the
    fp32 and on the 8-bit base, and score base / fp32 LoRA / 8-bit LoRA on data/lora_eval.json.
    """
    from transformers import AutoTokenizer

    import glmcourse
    from glmcourse import finetune
    from glmcourse.settings import seed_everything

    work_dir = Path(work_dir or glmcourse.RUNS_DIR / "bench_lora")
    data_dir = tokenize_lora_train(work_dir / "lora_train_tok")
    tokenizer = AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)
    records = lora_records("eval", eval_limit)
    out = {"eval records": len(records)}
    seed_everything(0)
    out.update({f"base {k}": v for k, v in score(load_base_model().eval(), tokenizer, records)[0].items()})
    runs = [("fp32", {})] + ([("8-bit", {"load_in_8bit": True})] if with_8bit else [])
    for label, extra in runs:
        seed_everything(0)
        result = finetune.finetune(dataset_path=data_dir, output_dir=work_dir / f"lora_{label}",
                                   overwrite=True, **extra, **train_overrides)
        base = load_base_model(load_in_8bit=extra.get("load_in_8bit", False))
        model = load_adapter(base, result["output_dir"], verbose=False).eval()
        start = time.perf_counter()
        out.update({f"{label} LoRA {k}": v for k, v in score(model, tokenizer, records)[0].items()})
        out[f"{label} LoRA eval s"] = time.perf_counter() - start
        out[f"{label} LoRA training s"] = result["train_seconds"]
        out[f"{label} LoRA training CPU s"] = result["train_cpu_seconds"]
        out[f"{label} LoRA steps"] = result["global_step"]
        out[f"{label} LoRA final training loss"] = result["final_loss"]
        out[f"{label} adapter KiB"] = result["adapter"]["file_bytes"] / 1024
    out["load average (1 min)"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return out


