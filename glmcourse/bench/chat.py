"""``make bench`` figures of lesson 03 (chat)."""
from __future__ import annotations

import time

import torch

from glmcourse.chat import (
    _encode_prompt,
    _generation_kwargs,
    _model_device,
    build_prompt,
    chat,
    stream_ids,
)
from glmcourse.loading import load_chat_model


def bench_chat(model_path: str | None = None, new_tokens: int = 64, query: str = "你好", repeats: int = 3) -> dict:
    """Time a one-turn reply (at most ``new_tokens`` new tokens) and the streamed tokens per second.

    Returns ``reply_latency_s`` (one ``chat`` call, ChatGLM's sampling defaults), ``reply_tokens``
    (the reply re-encoded), ``stream_tokens``, ``stream_time_s``, ``stream_tokens_per_s`` and
    ``stream_first_token_s`` (a ``stream_ids`` run forced to exactly ``new_tokens`` tokens, so the
    rate is measured over a fixed length), plus text notes ``device`` and ``setup``. Times are the
    best of ``repeats`` runs.
    """
    from glmcourse.settings import seed_everything

    tokenizer, model = load_chat_model(model_path)
    seed_everything(0)
    chat(model, tokenizer, query, max_new_tokens=4)  # warm-up: first-call allocations are not the rate

    latency = float("inf")
    for _ in range(repeats):  # best of a few: a shared CPU adds noise, never speed
        seed_everything(0)
        start = time.perf_counter()
        response, _ = chat(model, tokenizer, query, max_new_tokens=new_tokens)
        latency = min(latency, time.perf_counter() - start)
    reply_tokens = len(tokenizer(response, add_special_tokens=False)["input_ids"])

    inputs = _encode_prompt(model, tokenizer, build_prompt(query))
    gen = _generation_kwargs(tokenizer, inputs["input_ids"].shape[1], 10**9, 1, True, 0.7, 0.95, None,
                             {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens})
    elapsed = first = float("inf")
    for _ in range(repeats):
        seed_everything(0)
        start, first_now, count = time.perf_counter(), None, 0
        for ids in stream_ids(model, inputs, dict(gen)):
            first_now = first_now if first_now is not None else time.perf_counter() - start
            count = len(ids)
        elapsed, first = min(elapsed, time.perf_counter() - start), min(first, first_now)
    return {
        "reply_latency_s": latency,
        "reply_tokens": reply_tokens,
        "stream_tokens": count,
        "stream_time_s": elapsed,
        "stream_tokens_per_s": count / elapsed if elapsed else float("nan"),
        "stream_first_token_s": first,
        "device": str(_model_device(model)),
        "setup": f"query {query!r}, top_p 0.7, temperature 0.95, reply <= {new_tokens} new tokens, "
                 f"stream forced to {new_tokens}, best of {repeats}, {torch.get_num_threads()} torch threads",
    }


