"""``make bench`` figures of lesson 07: P-Tuning v2 against LoRA on the same base, data and held-out records."""
from __future__ import annotations

import os
from pathlib import Path


def bench_ptuning(work_dir=None, eval_limit: int | None = None, with_lora: bool = True, **ptuning_overrides) -> dict:
    """Train P-Tuning v2 (``ptuning.LEARNER_DEFAULTS``) and LoRA (``finetune.LEARNER_DEFAULTS``) on
    data/lora_train.json in the same run; score both on data/lora_eval.json with the same prompts and
    greedy decoding (``evaluation.exact_match``)."""
    from transformers import AutoTokenizer

    import glmcourse
    from glmcourse import finetune, ptuning, ptuning_train
    from glmcourse.adapters import load_adapter
    from glmcourse.course_data import lora_records
    from glmcourse.evaluation import exact_match, heldout_target_loss
    from glmcourse.lesson_runs import tokenize_lora_train
    from glmcourse.loading import load_base_model
    from glmcourse.settings import seed_everything

    work_dir = Path(work_dir or glmcourse.RUNS_DIR / "bench_ptuning")
    tokenizer = AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)
    records = lora_records("eval", eval_limit)
    data = ptuning_train.lesson_data(work_dir / "data")
    out = {"eval records": len(records)}
    seed_everything(0)
    result = ptuning_train.train(data["train"], work_dir / "ptuning", overwrite_output_dir=True, quiet=True,
                                 **ptuning_overrides)
    model = ptuning.load_ptuned_model(work_dir / "ptuning", verbose=False)
    settings = {**ptuning.LEARNER_DEFAULTS, **ptuning_overrides}
    out["P-Tuning exact match %"] = 100 * exact_match(model, tokenizer, records)[0]
    out["P-Tuning held-out loss"] = heldout_target_loss(model, tokenizer, records)
    out["P-Tuning training s"] = result["train_seconds"]
    out["P-Tuning steps"] = result["global_step"]
    out["P-Tuning trainable parameters"] = result["trainable"]
    out["P-Tuning prefix KiB"] = result["prefix_bytes"] / 1024
    out["P-Tuning settings"] = (f"pre_seq_len {settings['pre_seq_len']}, projection {settings['prefix_projection']}, "
                                f"lr {settings['learning_rate']:g}, batch {settings['per_device_train_batch_size']}")
    if with_lora:
        seed_everything(0)
        lora = finetune.finetune(tokenize_lora_train(work_dir / "lora_train_tok"), work_dir / "lora", overwrite=True,
                                 quiet=True)
        tuned = load_adapter(load_base_model(), lora["output_dir"], verbose=False).eval()
        out["LoRA exact match %"] = 100 * exact_match(tuned, tokenizer, records)[0]
        out["LoRA held-out loss"] = heldout_target_loss(tuned, tokenizer, records)
        out["LoRA training s"] = lora["train_seconds"]
        out["LoRA steps"] = lora["global_step"]
        out["LoRA trainable parameters"] = lora["trainable"]
        out["LoRA adapter KiB"] = lora["adapter"]["file_bytes"] / 1024
    out["load average (1 min)"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return out
