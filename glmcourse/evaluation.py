"""Scoring a ChatGLM-style model on the course's held-out data (used by the build, bench and lessons).

* ``chat_exact_match``: greedy replies to chat prompts (``build_prompt(query, history)``), compared
  after ChatGLM's ``process_response``, exactly as ``model.chat`` would print them.
* ``context_exact_match``: ChatGLM-Tuning's "Instruction: ...\\nAnswer: " prompts, the generated text
  after the context compared verbatim with the record's output.
* ``infilling_accuracy``: teacher-forced token accuracy on blank-infilling spans of held-out text.
"""
from __future__ import annotations

import json
import random
import re

import torch
import torch.nn.functional as F

from glmcourse import masks
from glmcourse.chat import build_prompt, process_response
from glmcourse.data import format_example
from glmcourse.i18n import _
from glmcourse.quant import QUANT_VARIANTS, quantize_model, quantized_weight_bytes


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
    for start in progress(range(0, len(prompts), batch_size), min_items=4, desc="generating", unit="batch"):
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
def heldout_batches(tokenizer, records, batch_size: int = 32):
    """Rows supervised on their second part only (-100 on the context), collated in batches.

    A record (dict) becomes a ChatGLM-Tuning row: its prompt ``[gMASK] <sop>``, then its output and ``<eop>``.
    A document (str) becomes GLM's document-level task: its first half, ``[gMASK] <sop>``, then the
    model writes the second half. The model rarely misses a chat answer (its loss is near 0), so the
    quantization lesson measures the documents, where the loss has room to move.
    """
    from glmcourse.data import DataCollator, encode_example, format_example

    collate = DataCollator.from_tokenizer(tokenizer)
    eop = tokenizer.eop_token_id
    rows = []
    for record in records:
        if isinstance(record, str):
            ids = tokenizer.encode(record, add_special_tokens=False)
            half = len(ids) // 2
            context, target = ids[:half] + [tokenizer.gmask_token_id, tokenizer.sop_token_id], ids[half:]
        else:
            context, target = encode_example(tokenizer, format_example(record))
        rows.append({"input_ids": context + target + [eop], "seq_len": len(context)})
    return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def heldout_loss(model, batches) -> float:
    """Mean cross-entropy per supervised token (the target and <eop>) over all batches."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        logits = model(input_ids=batch["input_ids"]).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                 ignore_index=-100, reduction="sum").item()
        count += int((labels != -100).sum())
    return total / count


def greedy_answers(model, tokenizer, records, max_new_tokens: int = 32) -> list[str]:
    """Greedy chat replies (ChatGLM prompt format) to each record's query."""
    from glmcourse.chat import build_prompt, process_response

    prompts = [build_prompt(record_query(r)) for r in records]
    return [process_response(t) for t in greedy_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens)]


def agreement(answers, reference) -> float:
    """Share of answers identical to the reference answers."""
    return sum(a == b for a, b in zip(answers, reference)) / max(len(reference), 1)


def exact_match(model, tokenizer, records) -> tuple[float, list[str]]:
    """Held-out exact match on ChatGLM-Tuning prompts (glmcourse.evaluation.context_exact_match)."""

    return context_exact_match(model, tokenizer, records, max_new_tokens=40)


def side_by_side(records, columns: dict, limit: int = 5, width: int = 46) -> None:
    """Print input, expected output and each model's reply (✓ = exact match) for the first ``limit`` records."""
    def cut(text):
        text = text.replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    for i, record in enumerate(records[:limit]):
        print(_("[{i}] {instruction} {input}", i=i, instruction=record["instruction"], input=record["input"]))
        print(f"    {_('expected'):<12} {cut(record['output'])}")
        for name, replies in columns.items():
            mark = "✓" if replies[i].strip() == record["output"].strip() else "✗"
            print(f"    {name:<12} {mark} {cut(replies[i])}")


FIELD_PATTERNS = {"name": r'"name": "([^"]*)"', "age": r'"age": (\d+)', "city": r'"city": "([^"]*)"'}


def field_accuracy(replies, records) -> dict:
    """Partial credit: the share of replies that are valid person JSON, and of each field found with the
    right value (read with a pattern, so a reply broken elsewhere still gets its right fields)."""
    counts = {"valid JSON": 0, "name": 0, "age": 0, "city": 0}
    for reply, record in zip(replies, records):
        want = json.loads(record["output"])
        try:
            got = json.loads(reply.strip())
        except ValueError:
            got = None
        counts["valid JSON"] += isinstance(got, dict) and set(got) == set(want)
        for key, pattern in FIELD_PATTERNS.items():
            found = re.search(pattern, reply)
            counts[key] += bool(found) and found.group(1) == str(want[key])
    return {key: value / max(len(records), 1) for key, value in counts.items()}


@torch.no_grad()
def heldout_target_loss(model, tokenizer, records, batch_size: int = 32) -> float:
    """Mean cross-entropy (nats/token) of the records' targets given their contexts: the training loss,
    measured on held-out data. It moves long before exact match does."""
    from glmcourse.data import DataCollator, format_example, tokenize_examples

    rows, _ = tokenize_examples(tokenizer, [format_example(r) for r in records], 256, False)
    collate = DataCollator.from_tokenizer(tokenizer)
    model.eval()
    total = tokens = 0.0
    for start in range(0, len(rows), batch_size):
        batch = collate(rows[start:start + batch_size])
        n = (batch["labels"][:, 1:] != -100).sum().item()
        total += model(**batch).loss.item() * n
        tokens += n
    return total / max(tokens, 1)


def score(model, tokenizer, records) -> tuple[dict, list[str]]:
    """({exact match, valid JSON, name, age, city (all %), held-out loss (nats/token)}, greedy replies)."""
    exact, replies = exact_match(model, tokenizer, records)
    out = {"exact match %": 100 * exact}
    out.update({f"{k} %": 100 * v for k, v in field_accuracy(replies, records).items()})
    out["held-out loss"] = heldout_target_loss(model, tokenizer, records)
    return out, replies


def print_scores(columns: dict, records) -> None:
    """The scores of several models as one table (rows: metrics, columns: models)."""
    names = list(columns)
    print(f"{_('{count} held-out records', count=len(records)):<24}" + "".join(f"{n:>12}" for n in names))
    for key in columns[names[0]]:
        unit = "%" if key.endswith("%") else ""
        label = key.removesuffix(" %")
        label = {"exact match": _("exact match"), "valid JSON": _("valid JSON"),
                 "held-out loss": _("held-out loss (nats/token)")}.get(label, label)
        print(f"{label:<24}" + "".join(f"{columns[n][key]:>11.{1 if unit else 3}f}{unit or ' '}" for n in names))


def compare_quantized(model, tokenizer, records, variants=None, answer_records=None,
                      max_new_tokens: int = 32) -> dict:
    """Held-out loss (on ``records``: documents or chat records, see ``heldout_batches``), weight bytes and
    answer agreement (on ``answer_records``, chat records) of each ``quantize_model`` variant vs fp32.

    ``model`` stays untouched (each variant quantizes a deep copy). Returns ``{name: row}`` with the
    fp32 row first; a row holds ``loss``, ``loss_increase`` (relative), ``bytes_ratio`` (quantized
    layers vs fp32, scales included), and, if ``answer_records`` is given, ``answers`` (greedy
    replies) and ``agreement`` (share of replies equal to fp32's).
    """
    import copy

    variants = QUANT_VARIANTS if variants is None else variants
    batches = heldout_batches(tokenizer, records)
    base_loss = heldout_loss(model, batches)
    base_answers = greedy_answers(model, tokenizer, answer_records, max_new_tokens) if answer_records else None
    rows = {"fp32": {"loss": base_loss, "loss_increase": 0.0, "bytes_ratio": 1.0,
                     "agreement": 1.0 if answer_records else None, "answers": base_answers}}
    for name, (bits, group_size) in variants.items():
        quantized = quantize_model(copy.deepcopy(model), bits, group_size)
        loss = heldout_loss(quantized, batches)
        row = {"loss": loss, "loss_increase": loss / base_loss - 1,
               "bytes_ratio": quantized_weight_bytes(quantized)["ratio"], "agreement": None, "answers": None}
        if answer_records:
            row["answers"] = greedy_answers(quantized, tokenizer, answer_records, max_new_tokens)
            row["agreement"] = agreement(row["answers"], base_answers)
        rows[name] = row
        del quantized
    return rows




# Names in no training list (glmcourse.course_data.ZH_NAMES / EN_NAMES), to test recall beyond the lists.
UNSEEN_NAMES_ZH = ["小明", "阿强", "诗涵", "子轩", "雨桐", "浩然", "梓萱", "俊杰"]
UNSEEN_NAMES_EN = ["Zorblat", "Quenby", "Marisol", "Tavish", "Odalys", "Brennan", "Yusuf", "Ingrid"]
SEED_DEMO_TURNS = ["你好", "如何提高弹跳"]  # the seed's two-turn demo


def beyond_training_checks(model, tokenizer) -> dict:
    """Two held-out checks of what the course model does outside its templates (issue: a newcomer's chat).

    * ``unseen_name_recall``: "我叫小明。" then "我叫什么名字？" (and the English pair) with names in no
      training list; a reply counts when it is exactly "你叫小明。" / "Your name is Zorblat.".
    * ``third_turn``: after the seed's two-turn demo, a third turn (a greeting, a sum, a capital) must get
      the reply the model gives to the same question asked alone.
    """
    from glmcourse.chat import chat
    from glmcourse.course_data import EN_NAMES, ZH_NAMES

    assert not set(UNSEEN_NAMES_ZH + UNSEEN_NAMES_EN) & set(ZH_NAMES + EN_NAMES), "the test names must be unseen"
    greedy = dict(do_sample=False, max_length=512)
    hits = []
    for names, tell, ask, want in ((UNSEEN_NAMES_ZH, "我叫{}。", "我叫什么名字？", "你叫{}。"),
                                   (UNSEEN_NAMES_EN, "My name is {}.", "What is my name?", "Your name is {}.")):
        for name in names:
            first, history = chat(model, tokenizer, tell.format(name), [], **greedy)
            reply, _ = chat(model, tokenizer, ask, history, **greedy)
            hits.append(reply == want.format(name))
    history = []
    for query in SEED_DEMO_TURNS:
        _, history = chat(model, tokenizer, query, history, **greedy)
    third = []
    for query in ["你好", "3加5等于多少？", "中国的首都是哪里？", "What is 2 plus 7?"]:
        alone, _ = chat(model, tokenizer, query, [], **greedy)
        after, _ = chat(model, tokenizer, query, history, **greedy)
        third.append(after == alone)
    return {"unseen_name_recall": sum(hits) / len(hits), "third_turn": sum(third) / len(third),
            "unseen_names": len(hits), "third_turn_queries": len(third)}
