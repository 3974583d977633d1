"""Rebuild the shipped course model from scratch, deterministically.

    python -m glmcourse.tools.build_course_model [--out glmcourse/course_model] [--seed 0]

1. Train the byte-level BPE tokenizer on the course's own text (data/, from glmcourse.tools.make_data).
2. Pre-train a ChatGLM-6B-architecture model with GLM's blank-infilling objectives, drawn in turn:
   token-level spans ([MASK], Poisson(3), 15%), whole sentences ([sMASK], 15%) and one document
   span ([gMASK], 50-100%), using the samplers of ``glmcourse.masks``.
3. Fine-tune it for chat on data/course_chat.json, in ChatGLM's prompt format (single and multi-turn)
   and in ChatGLM-Tuning's "Instruction: ...\\nAnswer: " format, still mixing in blank infilling.
   The LoRA lesson's skill (data/lora_*.json) is never shown to it.
4. Score it on held-out data and save config, safetensors weights, tokenizer and a training log.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from glmcourse import COURSE_MODEL, DATA_DIR, settings
from glmcourse.chat import build_prompt
from glmcourse.cli import UsageError, float_arg, int_arg, seed_arg
from glmcourse.course_data import load_course_data
from glmcourse.data import DataCollator, format_example
from glmcourse.evaluation import (
    chat_exact_match,
    collate_infilling,
    context_exact_match,
    infilling_accuracy,
    infilling_example,
    record_query,
)
from glmcourse.modeling import (
    ChatGLMForConditionalGeneration,
    course_config,
    train_tokenizer,
)

MAX_DOC_TOKENS = 160


def tokenizer_texts(data: dict) -> list[str]:
    """All course text, so every character the lessons use has tokens."""
    texts = list(data["corpus"])
    for rec in data["chat"] + data["lora_train"]:
        texts.append("\n".join([rec["instruction"], rec["input"], rec["output"]]))
    texts += [build_prompt("q", [("q", "r")]), "Instruction: \nInput: \nAnswer: "]
    return texts


def sft_rows(tokenizer, records) -> list[dict]:
    """Each chat record in the chat prompt format, and single-turn ones in ChatGLM-Tuning's format too."""
    rows = []
    eop = tokenizer.eop_token_id
    for rec in records:
        history = [tuple(t) for t in rec.get("history", [])]
        prompts = [build_prompt(record_query(rec), history)]
        if not history:
            prompts.append(format_example(rec)["context"])
        target = tokenizer.encode(rec["output"], add_special_tokens=False) + [eop]
        for prompt in prompts:
            context = tokenizer.encode(prompt)
            rows.append({"input_ids": context + target, "seq_len": len(context)})
    return rows


def length_batches(lengths, tokens_per_batch: int, rng: random.Random) -> list[list[int]]:
    """Group indices of similar length into batches of about ``tokens_per_batch`` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches, current = [], []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > tokens_per_batch:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


class Stream:
    """An endless, reshuffled stream of length-bucketed batches over one dataset."""

    def __init__(self, lengths, tokens_per_batch, rng):
        self.lengths, self.tokens, self.rng, self.queue = lengths, tokens_per_batch, rng, []

    def next(self) -> list[int]:
        if not self.queue:
            self.queue = length_batches(self.lengths, self.tokens, self.rng)
        return self.queue.pop()


def model_flops_per_token(config, seq_len: float) -> float:
    """Training FLOPs per token: 6 x (matmul weights incl. the LM head) + attention scores and values."""
    h, layers = config.hidden_size, config.num_layers
    matmul_params = layers * (4 * h * h + 2 * h * config.inner_hidden_size) + config.vocab_size * h
    return 6 * matmul_params + 6 * 2 * layers * h * seq_len


def measure_matmul_peak(seconds: float = 2.0, n: int = 1024) -> float:
    """Best fp32 GFLOP/s of an n x n matmul on this machine, now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model, tokenizer, data, args, log) -> dict:
    rng = random.Random(args.seed)
    docs = [tokenizer.encode(d, add_special_tokens=False)[:MAX_DOC_TOKENS] for d in data["corpus"]]
    rows = sft_rows(tokenizer, data["chat"])
    collate_sft = DataCollator.from_tokenizer(tokenizer)
    doc_stream = Stream([len(d) + 6 for d in docs], args.tokens_per_batch, rng)
    sft_stream = Stream([len(r["input_ids"]) for r in rows], args.tokens_per_batch, rng)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    total = args.pretrain_steps + args.sft_steps
    objectives = ["token", "sentence", "document"]
    model.train()
    flops = compute_time = 0.0
    tokens = real_tokens = 0
    start = time.perf_counter()
    for step in settings.progress(range(total), desc="training", unit="step"):
        pretraining = step < args.pretrain_steps or rng.random() < args.infill_mix
        t0 = time.perf_counter()
        if pretraining:
            examples = [infilling_example(docs[i], tokenizer, rng, objectives[(step + j) % 3])
                        for j, i in enumerate(doc_stream.next())]
            ids, positions, attend, targets = collate_infilling(examples, tokenizer.pad_token_id)
            logits = model(input_ids=ids, position_ids=positions, attention_mask=attend, use_cache=False).logits
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-100)
            n_real = sum(len(e.input_tokens) for e in examples)
        else:
            batch = collate_sft([rows[i] for i in sft_stream.next()])
            ids = batch["input_ids"]
            loss = model(input_ids=ids, labels=batch["labels"], use_cache=False).loss
            n_real = int((ids != tokenizer.pad_token_id).sum())
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, args.lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        dt = time.perf_counter() - t0
        compute_time += dt
        tokens += ids.numel()
        real_tokens += n_real
        flops += model_flops_per_token(model.config, ids.shape[1]) * ids.numel()
        if step % 50 == 0 or step == total - 1:
            log["loss"].append({"step": step, "phase": "infill" if pretraining else "chat", "loss": round(loss.item(), 4)})
            if not settings.QUIET:
                print(f"step {step:5d}  {'infill' if pretraining else 'chat  '}  loss {loss.item():.3f}", flush=True)
    return {
        "steps": total,
        "train_seconds": round(time.perf_counter() - start, 1),
        "tokens_per_second": round(tokens / compute_time, 1),
        "real_tokens_per_second": round(real_tokens / compute_time, 1),
        "model_gflops_per_second": round(flops / compute_time / 1e9, 2),
    }


def save_atomically(model, tokenizer, out: Path, log: dict) -> None:
    """Write the folder next to its destination, then swap it in: never a half-written model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".course_model.", dir=out.parent))
    tmp.chmod(0o755)
    model.save_pretrained(tmp, safe_serialization=True)  # with the auto_map shims (glmcourse.modeling.shims)
    tokenizer.save_pretrained(tmp)
    (tmp / "training_log.json").write_text(json.dumps(log, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for file in tmp.iterdir():
        file.chmod(0o644)  # readable by everyone, like any checked-out file
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def round_weights_to_fp16(model) -> None:
    """Make every weight an fp16 number (still stored as fp32).

    ChatGLM-6B's code builds its layers in fp16 and copies a checkpoint into them, so an fp32 weight
    that is not an fp16 number would change on its way in. Rounded once here, the course model loads
    bit for bit in that code too; the held-out figures are measured after the rounding.
    """
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def evaluate(model, tokenizer, data) -> dict:
    chat_em, _ = chat_exact_match(model, tokenizer, data["chat_eval"])
    lora_em, _ = context_exact_match(model, tokenizer, data["lora_eval"])
    return {
        "chat_exact_match": round(chat_em, 4),
        "lora_skill_exact_match": round(lora_em, 4),
        "infilling_accuracy": round(infilling_accuracy(model, tokenizer, data["corpus_eval"]), 4),
    }


COURSE_MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                      "tokenizer_config.json", "training_log.json", "configuration_chatglm.py", "modeling_chatglm.py",
                      "tokenization_chatglm.py", "special_tokens_map.json", ".glmcourse-output"}


def foreign_model_entries(folder) -> list[str]:
    """Names in ``folder`` that a course-model build does not write (so replacing the folder would lose them)."""
    return [p.name for p in Path(folder).iterdir() if p.name not in COURSE_MODEL_FILES]


def check_data_dir(data_dir: Path) -> None:
    """Every file the build reads is there, UTF-8 and (the JSON ones) valid JSON: a UsageError otherwise."""
    from glmcourse.cli import parse_json, read_text

    for name in ("course_chat.json", "chat_eval.json", "lora_train.json", "lora_eval.json", "corpus.txt",
                 "corpus_eval.txt"):
        path = data_dir / name
        if not path.is_file():
            raise UsageError(f"--data_dir {data_dir}: lacks {name}; run python -m glmcourse.tools.make_data --out {data_dir} "
                             f"first, or pass the repo's data/ folder.")
        text = read_text(path, f"--data_dir {data_dir}: {name}")
        if name.endswith(".json"):
            parse_json(text, f"--data_dir {data_dir}: {name}")


def build_parser():
    from glmcourse.cli import INPUT_DIR, OUTPUT_DIR, CourseParser

    parser = CourseParser(prog="python -m glmcourse.tools.build_course_model",
                          description="Rebuild the course model from scratch (deterministic).")
    parser.add_argument("--out", default=COURSE_MODEL, kind=OUTPUT_DIR, course_model_ok=True,
                        owned=foreign_model_entries, overwrite_flag="--overwrite_output_dir",
                        help="output folder (default: the shipped course model); replaced as a whole")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="replace --out even if it holds files other than a course model's")
    parser.add_argument("--data_dir", default=str(DATA_DIR), kind=INPUT_DIR)
    parser.add_argument("--seed", type=seed_arg(), default=0)
    parser.add_argument("--pretrain_steps", type=int_arg("--pretrain_steps", 0, 10**7), default=settings.fast_or(4, 600))
    parser.add_argument("--sft_steps", type=int_arg("--sft_steps", 0, 10**7), default=settings.fast_or(4, 1500))
    parser.add_argument("--infill_mix", type=float_arg("--infill_mix", 0, 1), default=0.2,
                        help="share of blank-infilling steps in chat tuning")
    parser.add_argument("--tokens_per_batch", type=int_arg("--tokens_per_batch", 256, 2**20), default=4096)
    parser.add_argument("--lr", type=float_arg("--lr", 0, 1, lo_open=True), default=2e-3)
    parser.add_argument("--threads", type=int_arg("--threads", 1, os.cpu_count() or 1), default=min(2, os.cpu_count() or 1),
                        help="torch threads (fixed, for repeatable results)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # the guard: --out is not a file, not the data, not a folder of someone else's
    if args.pretrain_steps + args.sft_steps < 1:
        parser.error("--pretrain_steps + --sft_steps must be at least 1")
    try:  # before half an hour of training, not after it
        check_data_dir(Path(args.data_dir))
        probe = Path(args.out).parent
        probe.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=probe).cleanup()
    except UsageError as err:
        parser.error(str(err))
    except OSError as err:
        parser.error(f"--out {args.out}: cannot be written ({err.strerror or err}); choose another folder.")

    torch.set_num_threads(args.threads)
    settings.seed_everything(args.seed)
    t_start = time.perf_counter()
    data = load_course_data(Path(args.data_dir))
    tokenizer = train_tokenizer(tokenizer_texts(data), vocab_size=4096)
    config = course_config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, mask_token_id=tokenizer.mask_token_id,
        gmask_token_id=tokenizer.gmask_token_id, smask_token_id=tokenizer.smask_token_id,
        bos_token_id=tokenizer.sop_token_id, eos_token_id=tokenizer.eop_token_id,
    )
    model = ChatGLMForConditionalGeneration(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"course model: {n_params:,} parameters, vocab {len(tokenizer)}", flush=True)
    log = {"args": vars(args) | {"out": None, "data_dir": None}, "parameters": n_params, "loss": []}
    peak = measure_matmul_peak()
    log["throughput"] = train(model, tokenizer, data, args, log)
    log["throughput"]["matmul_peak_gflops"] = round(peak, 1)
    log["throughput"]["fraction_of_peak"] = round(log["throughput"]["model_gflops_per_second"] / peak, 3)
    model.eval()
    round_weights_to_fp16(model)
    log["weights"] = "fp16 numbers stored as fp32"
    log["eval"] = evaluate(model, tokenizer, data)
    log["build_seconds"] = round(time.perf_counter() - t_start, 1)
    save_atomically(model, tokenizer, Path(args.out), log)
    print(json.dumps({k: log[k] for k in ("throughput", "eval", "build_seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


