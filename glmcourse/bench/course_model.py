"""``make bench`` figures of the course model (build, generation, held-out quality)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from glmcourse import COURSE_MODEL, DATA_DIR, settings
from glmcourse.tools.build_course_model import measure_matmul_peak, train
from glmcourse.chat import build_prompt, process_response
from glmcourse.course_data import load_course_data
from glmcourse.evaluation import (
    beyond_training_checks,
    chat_exact_match,
    context_exact_match,
    infilling_accuracy,
)
from glmcourse.modeling.modeling_chatglm import ChatGLMForConditionalGeneration


def bench_course_model(train_steps: int = 20) -> dict:
    """Figures for ``make bench``: KV-cache speed-up, held-out quality, and training throughput."""
    from transformers import AutoModel, AutoTokenizer

    settings.seed_everything(0)
    tokenizer = AutoTokenizer.from_pretrained(COURSE_MODEL)
    model = AutoModel.from_pretrained(COURSE_MODEL).eval()
    data = load_course_data(DATA_DIR)
    # a two-turn chat prompt, 128 new tokens, greedy, no early stop; best of 2 after a warm-up
    history = [("你好", process_response(data["chat"][0]["output"])), ("我叫周杰。", "你好，周杰！很高兴认识你。")]
    prompt = tokenizer(build_prompt("我叫什么名字？", history), return_tensors="pt")
    generate = lambda cache: model.generate(**prompt, max_new_tokens=128, min_new_tokens=128,  # noqa: E731
                                            do_sample=False, use_cache=cache)
    generate(True)
    timings = {}
    for use_cache in (True, False):
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            generate(use_cache)
            runs.append(time.perf_counter() - t)
        timings[use_cache] = min(runs)
    chat_em, _ = chat_exact_match(model, tokenizer, data["chat_eval"])
    lora_em, _ = context_exact_match(model, tokenizer, data["lora_eval"])
    results = {
        "cache_s": timings[True],
        "no_cache_s": timings[False],
        "cache_speedup": timings[False] / timings[True],
        "chat_em_pct": 100 * chat_em,
        "infill_pct": 100 * infilling_accuracy(model, tokenizer, data["corpus_eval"]),
        "lora_skill_pct": 100 * lora_em,
    }
    beyond = beyond_training_checks(model, tokenizer)
    results.update(unseen_name_recall_pct=100 * beyond["unseen_name_recall"], third_turn_pct=100 * beyond["third_turn"])
    # Throughput of the build's own training loop, against the matmul peak measured in the same run.
    fresh = ChatGLMForConditionalGeneration(model.config)
    args = argparse.Namespace(seed=0, pretrain_steps=train_steps // 2, sft_steps=train_steps - train_steps // 2,
                              infill_mix=0.2, tokens_per_batch=4096, lr=2e-3)
    peak = measure_matmul_peak()
    speed = train(fresh, tokenizer, data, args, {"loss": []})
    results.update(train_tokens_per_s=speed["tokens_per_second"], train_gflops=speed["model_gflops_per_second"],
                   peak_gflops=peak, fraction_pct=100 * speed["model_gflops_per_second"] / peak)
    log = json.loads(Path(COURSE_MODEL, "training_log.json").read_text(encoding="utf-8"))
    results["build_s"] = log["build_seconds"]
    return results


