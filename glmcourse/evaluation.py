"""Scoring a ChatGLM-style model on the course's held-out data (used by the build, bench and lessons).

* ``chat_exact_match``: greedy replies to chat prompts (``build_prompt(query, history)``), compared
  after ChatGLM's ``process_response``, exactly as ``model.chat`` would print them.
* ``context_exact_match``: ChatGLM-Tuning's "Instruction: ...\\nAnswer: " prompts, the generated text
  after the context compared verbatim with the record's output.
* ``infilling_accuracy``: teacher-forced token accuracy on blank-infilling spans of held-out text.
"""
from __future__ import annotations

import random

import torch

from glmcourse import masks
from glmcourse.chat import build_prompt, process_response
from glmcourse.data import format_example


def record_query(record: dict) -> str:
    """The chat query of an Alpaca record: the instruction, then the input on its own line if any."""
    return record["instruction"] + (f"\n{record['input']}" if record.get("input") else "")


@torch.no_grad()
def greedy_replies(model, tokenizer, prompts, max_new_tokens: int = 64, batch_size: int = 32) -> list[str]:
    """Greedy generation for many prompts, in left-padded batches; returns the decoded new text."""
    from glmcourse.settings import progress

    model.eval()
    device = next(model.parameters()).device
    replies = []
    for start in progress(range(0, len(prompts), batch_size), desc="generating", unit="batch"):
        batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True).to(device)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        replies += tokenizer.batch_decode(new, skip_special_tokens=True)
    return replies


def chat_exact_match(model, tokenizer, records, **kwargs) -> tuple[float, list[str]]:
    prompts = [build_prompt(record_query(r), [tuple(t) for t in r.get("history", [])]) for r in records]
    replies = [process_response(t) for t in greedy_replies(model, tokenizer, prompts, **kwargs)]
    hits = [reply == process_response(r["output"]) for reply, r in zip(replies, records)]
    return sum(hits) / max(len(hits), 1), replies


def context_exact_match(model, tokenizer, records, **kwargs) -> tuple[float, list[str]]:
    prompts = [format_example(r)["context"] for r in records]
    replies = greedy_replies(model, tokenizer, prompts, **kwargs)
    hits = [reply.strip() == r["output"].strip() for reply, r in zip(replies, records)]
    return sum(hits) / max(len(hits), 1), replies


def infilling_example(ids, tokenizer, rng: random.Random, objective: str):
    """One blank-infilling example of ``objective`` ("token", "sentence" or "document") over ids."""
    if objective == "token":
        spans, mask_id = masks.sample_spans(len(ids), rng=rng), tokenizer.mask_token_id
    elif objective == "sentence":
        spans, mask_id = masks.sample_sentence_spans(ids, rng=rng, sentence_end=sentence_end_ids(tokenizer)), \
            tokenizer.smask_token_id
    else:
        spans, mask_id = masks.sample_document_span(len(ids), rng=rng), tokenizer.gmask_token_id
    return masks.blank_infilling(list(ids), spans, mask_token=mask_id, sop_token=tokenizer.sop_token_id,
                                 eop_token=tokenizer.eop_token_id)


_SENTENCE_END_CACHE: dict = {}


def sentence_end_ids(tokenizer) -> set[int]:
    """Token ids whose text ends a sentence (. ? ! ; : 。 ？ ！ ； … or a newline)."""
    key = id(tokenizer)
    if key not in _SENTENCE_END_CACHE:
        ends = tuple(".?!;:。？！；…\n")
        _SENTENCE_END_CACHE[key] = {
            i for i in range(len(tokenizer))
            if tokenizer.decode([i]).rstrip(" ").endswith(ends)
        }
    return _SENTENCE_END_CACHE[key]


def collate_infilling(examples, pad_id: int):
    """Pad blank-infilling examples to one batch: ids, 2D positions, may-attend mask, targets."""
    length = max(len(e.input_tokens) for e in examples)
    batch = len(examples)
    ids = torch.full((batch, length), pad_id, dtype=torch.long)
    positions = torch.zeros(batch, 2, length, dtype=torch.long)
    attend = torch.eye(length, dtype=torch.bool).repeat(batch, 1, 1)  # padding sees only itself
    targets = torch.full((batch, length), -100, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_tokens)
        ids[row, :n] = torch.tensor(e.input_tokens)
        positions[row, :, :n] = e.positions_2d
        attend[row, :n, :n] = e.attention_mask
        targets[row, :n] = torch.where(e.loss_mask.bool(), torch.tensor(e.target_tokens), -100)
    return ids, positions, attend, targets


@torch.no_grad()
def infilling_accuracy(model, tokenizer, documents, seed: int = 0, batch_size: int = 32) -> float:
    """Share of Part B tokens predicted exactly (teacher forcing), over all three objectives."""
    rng = random.Random(seed)
    model.eval()
    correct = total = 0
    objectives = ["token", "sentence", "document"]
    examples = [infilling_example(tokenizer.encode(d, add_special_tokens=False)[:160], tokenizer, rng,
                                  objectives[i % 3]) for i, d in enumerate(documents)]
    for start in range(0, len(examples), batch_size):
        ids, positions, attend, targets = collate_infilling(examples[start:start + batch_size],
                                                            tokenizer.pad_token_id)
        logits = model(input_ids=ids, position_ids=positions, attention_mask=attend, use_cache=False).logits
        keep = targets != -100
        correct += (logits.argmax(-1)[keep] == targets[keep]).sum().item()
        total += keep.sum().item()
    return correct / max(total, 1)
