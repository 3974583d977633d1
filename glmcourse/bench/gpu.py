"""``python -m glmcourse.bench gpu``: ChatGLM-6B's GPU memory, measured at full size with random weights.

ChatGLM-6B's published minimum GPU memory (13 / 8 / 6 GB for inference at FP16 / INT8 / INT4, 7 GB for
P-Tuning v2 at INT4) is rebuilt in lesson 02 by ``glmcourse.memory.estimate_memory``. This command measures
it on a CUDA device:

* inference: a 2,048-token greedy generation (a 512-token prompt, then 1,536 new tokens, so the KV cache
  reaches the full ``max_sequence_length``) at fp16, after ``quantize(8)`` and after ``quantize(4)``;
* one LoRA training step at INT4 (r = 8 on ``query_key_value``, batch 6 at length 200, as the seed's
  ChatGLM-Tuning: gradient checkpointing on, AdamW);
* one P-Tuning v2 step at INT4 (``pre_seq_len`` 128, train.sh's batch 1 at 64 + 64 tokens, prefix fp32).

The model is built on the meta device and materialized straight on the GPU (``to_empty``), never on the
CPU; random weights use the memory real ones would. Each case reports ``torch.cuda.max_memory_allocated()``
and the highest memory ``nvidia-smi`` reported while it ran (the process's, or the whole GPU's when the
process is not visible), beside the published figure and ``estimate_memory``.

Without CUDA it says so in one line and exits 0. ``--dry-run`` runs the same code at the course model's
size on the CPU (reporting the model's bytes and the process's peak RSS instead), which the unit test uses.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

GiB = 2**30
CASES = ("fp16", "int8", "int4", "lora_int4", "ptuning_int4")
PUBLISHED_GB = {"fp16": 13, "int8": 8, "int4": 6, "ptuning_int4": 7}  # README of ChatGLM-6B (minimum GPU memory)


@dataclass
class Sizes:
    """What each case runs; ``full()`` is the issue's ChatGLM-6B setting, ``dry()`` the CPU-sized one."""

    prompt_len: int = 512
    total_len: int = 2048
    lora_batch: int = 6
    lora_len: int = 200
    lora_r: int = 8
    pre_seq_len: int = 128
    ptuning_batch: int = 1
    ptuning_len: int = 128
    gradient_checkpointing: bool = True
    seed: int = 0  # the random weights and token ids

    @classmethod
    def full(cls):
        return cls()

    @classmethod
    def dry(cls):
        return cls(prompt_len=8, total_len=16, lora_batch=2, lora_len=16, pre_seq_len=4, ptuning_len=16)


@dataclass
class Row:
    case: str
    what: str
    published_gb: float | None
    estimate_gib: float
    peak_allocated_gib: float | None = None  # torch.cuda.max_memory_allocated (CPU dry run: model bytes)
    smi_gib: float | None = None  # nvidia-smi's highest reading (CPU dry run: peak RSS)
    seconds: float = 0.0
    note: str = ""
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- memory meters
def _smi_used_mib(pid: int) -> tuple[float | None, str]:
    """This process's GPU memory in MiB from nvidia-smi, else the GPU's total used memory; (None, why) if absent."""
    try:
        apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10)
        for line in apps.stdout.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
                return float(parts[1]), "process"
        device = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        total = subprocess.run(["nvidia-smi", "-i", device, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=10)
        value = total.stdout.strip().splitlines()[0].strip() if total.stdout.strip() else ""
        return (float(value), "whole GPU") if value.replace(".", "", 1).isdigit() else (None, "nvidia-smi: no reading")
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"nvidia-smi unavailable ({type(err).__name__})"


class Meter:
    """Peak memory of the code inside ``with``: CUDA peak allocated and nvidia-smi sampled every 0.2 s, or on
    the CPU the model's bytes and the process's peak RSS."""

    def __init__(self, device: str, model_bytes=None):
        self.device, self.model_bytes = device, model_bytes
        self.peak_allocated = self.smi = None
        self.smi_source = ""

    def __enter__(self):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._samples, self._stop = [], threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self.start = time.perf_counter()
        return self

    def _sample(self):
        while True:
            value, source = _smi_used_mib(os.getpid())
            if value is not None:
                self._samples.append(value)
            self.smi_source = source
            if self._stop.wait(0.2):
                return

    def __exit__(self, *exc):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.start
            self._stop.set()
            self._thread.join()
            final, source = _smi_used_mib(os.getpid())  # one reading at the end, while everything is still alive
            samples = self._samples + ([final] if final is not None else [])
            self.peak_allocated = torch.cuda.max_memory_allocated() / GiB
            self.smi = max(samples) / 1024 if samples else None
            self.smi_source = source
        else:
            from glmcourse.memory import peak_rss_bytes

            self.seconds = time.perf_counter() - self.start
            self.smi = peak_rss_bytes() / GiB
            self.peak_allocated = self.model_bytes() / GiB if self.model_bytes else None
            self.smi_source = "CPU dry run: peak RSS"
        return False


# ---------------------------------------------------------------------------------------------- the model
def build_random_model(config, device: str, dtype, seed: int = 0):
    """ChatGLM at ``config``'s size with random weights, materialized directly on ``device`` (never built on the
    CPU when the device is a GPU): meta-device construction, ``to_empty``, then N(0, 0.02) matrices, zero
    biases, unit LayerNorm weights, in place; the lm_head stays tied to the word embeddings."""
    import torch

    from glmcourse.modeling import ChatGLMForConditionalGeneration

    with torch.device("meta"):
        model = ChatGLMForConditionalGeneration(config)
    model = model.to(dtype=dtype).to_empty(device=device)
    model.lm_head.weight = model.transformer.word_embeddings.weight
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                param.fill_(1.0)
            elif param.dim() == 1:
                param.zero_()
            else:
                param.normal_(0.0, 0.02, generator=generator)
    return model.eval()


def _prompt(config, batch: int, length: int, device, seed: int = 0):
    """Random token ids ending in [gMASK] <sop>, as a ChatGLM prompt does."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, min(config.vocab_size, 20000), (batch, length), generator=generator)
    ids[:, -2], ids[:, -1] = config.gmask_token_id, config.bos_token_id
    return ids.to(device)


def _training_ids(config, batch: int, length: int, device, seed: int = 0):
    """A prompt half, [gMASK] <sop>, then an answer half (labels = ids)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, min(config.vocab_size, 20000), (batch, length), generator=generator)
    ids[:, length // 2 - 1], ids[:, length // 2] = config.gmask_token_id, config.bos_token_id
    return ids.to(device)


def _free(device: str):
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- the cases
def run_inference(config, bits: int | None, sizes: Sizes, device: str, dtype) -> Meter:
    from glmcourse.quant import model_bytes

    model = build_random_model(config, device, dtype, sizes.seed)
    if bits:
        model.quantize(bits)
    _free(device)
    ids = _prompt(config, 1, sizes.prompt_len, device, sizes.seed)
    new = sizes.total_len - sizes.prompt_len
    import torch

    with torch.no_grad(), Meter(device, lambda: model_bytes(model)) as meter:
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                             pad_token_id=config.pad_token_id)
    meter.tokens = int(out.shape[1])
    del model, out
    _free(device)
    return meter


def run_lora_step(config, sizes: Sizes, device: str, dtype) -> Meter:
    import torch
    from peft import LoraConfig, get_peft_model

    import glmcourse.lora  # noqa: F401  (silences peft's warnings the learner cannot act on, before peft runs)
    from glmcourse.quant import model_bytes

    model = build_random_model(config, device, dtype, sizes.seed)
    model.quantize(4)
    model.config.use_cache = False
    if sizes.gradient_checkpointing:  # as ChatGLM-Tuning's finetune.py (transformers 5 renamed the method)
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, LoraConfig(r=sizes.lora_r, lora_alpha=32, lora_dropout=0.1,
                                                  target_modules=["query_key_value"]))
    peft_model.train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ids = _training_ids(config, sizes.lora_batch, sizes.lora_len, device, sizes.seed)
    _free(device)
    with Meter(device, lambda: model_bytes(peft_model)) as meter:
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    meter.loss = loss.item()
    meter.trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    del peft_model, model, optimizer, loss
    _free(device)
    return meter


def run_ptuning_step(config, sizes: Sizes, device: str, dtype) -> Meter:
    import copy

    import torch

    from glmcourse.quant import model_bytes

    config = copy.deepcopy(config)
    config.pre_seq_len, config.use_cache = sizes.pre_seq_len, False
    model = build_random_model(config, device, dtype, sizes.seed)
    model.quantize(4)
    model.freeze_for_prefix_tuning()
    model.transformer.prefix_encoder.float()  # the prefix stays fp32, as ChatGLM-6B's main.py
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-2)
    ids = _training_ids(config, sizes.ptuning_batch, sizes.ptuning_len, device, sizes.seed)
    _free(device)
    with Meter(device, lambda: model_bytes(model)) as meter:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    meter.loss = loss.item()
    meter.trainable = sum(p.numel() for p in params)
    del model, optimizer, loss
    _free(device)
    return meter


def estimates(config, sizes: Sizes) -> dict:
    """``estimate_memory`` for each case, with the settings the case runs."""
    from glmcourse.memory import estimate_memory

    def gib(**kw):
        return estimate_memory(config, **kw)["total_gib"]

    inference = dict(seq_len=sizes.total_len, prompt_len=sizes.prompt_len)
    return {
        "fp16": gib(weight_bits=16, **inference),
        "int8": gib(weight_bits=8, **inference),
        "int4": gib(weight_bits=4, **inference),
        "lora_int4": gib(weight_bits=4, mode="lora", batch_size=sizes.lora_batch, seq_len=sizes.lora_len,
                         lora_rank=sizes.lora_r),
        "ptuning_int4": gib(weight_bits=4, mode="ptuning", batch_size=sizes.ptuning_batch,
                            seq_len=sizes.ptuning_len, pre_seq_len=sizes.pre_seq_len),
    }


def describe(case: str, sizes: Sizes) -> str:
    tokens = f"{sizes.total_len:,}-token generation ({sizes.prompt_len} prompt)"
    return {
        "fp16": f"inference fp16, {tokens}",
        "int8": f"inference quantize(8), {tokens}",
        "int4": f"inference quantize(4), {tokens}",
        "lora_int4": f"LoRA step, int4 base (r={sizes.lora_r}, batch {sizes.lora_batch} x {sizes.lora_len})",
        "ptuning_int4": f"P-Tuning v2 step, int4 (pre_seq_len {sizes.pre_seq_len}, batch {sizes.ptuning_batch} x "
                        f"{sizes.ptuning_len})",
    }[case]


def measure(config, sizes: Sizes, device: str, dtype, cases=CASES, say=print) -> list[Row]:
    """Run ``cases`` in order; one Row each (a case that fails gets its error as the note)."""
    est = estimates(config, sizes)
    rows = []
    for case in cases:
        row = Row(case, describe(case, sizes), PUBLISHED_GB.get(case), est[case])
        say(f"  running: {row.what} ...")
        try:
            if case in ("fp16", "int8", "int4"):
                meter = run_inference(config, {"fp16": None, "int8": 8, "int4": 4}[case], sizes, device, dtype)
                row.extra["tokens"] = meter.tokens
            elif case == "lora_int4":
                meter = run_lora_step(config, sizes, device, dtype)
                row.extra.update(loss=meter.loss, trainable=meter.trainable)
            else:
                meter = run_ptuning_step(config, sizes, device, dtype)
                row.extra.update(loss=meter.loss, trainable=meter.trainable)
            row.peak_allocated_gib, row.smi_gib, row.seconds = meter.peak_allocated, meter.smi, meter.seconds
            row.note = meter.smi_source
        except Exception as err:  # noqa: BLE001 - e.g. out of memory on a small card: the other cases still run
            row.note = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}"
            _free(device)
        rows.append(row)
    return rows


def table(rows: list[Row], device_name: str, dry_run: bool) -> str:
    alloc = "model bytes" if dry_run else "max_memory_allocated"
    smi = "peak RSS" if dry_run else "nvidia-smi"
    head = f"{'case':<64} {'published':>9} {'estimate':>9} {alloc:>20} {smi:>11} {'time':>8}"
    lines = [f"ChatGLM memory on {device_name}", head, "-" * len(head)]

    def num(value):
        if value is None:
            return "-"
        return f"{value * 1024:.1f} MiB" if value < 1 else f"{value:.2f} GiB"

    for r in rows:
        published = "-" if r.published_gb is None else f"{r.published_gb:g} GB"
        lines.append(f"{r.what:<64} {published:>9} {num(r.estimate_gib):>9} {num(r.peak_allocated_gib):>20} "
                     f"{num(r.smi_gib):>11} {r.seconds:>7.1f}s" + (f"  ({r.note})" if r.note else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- command line
def _cases_arg(text: str) -> list[str]:
    """``--cases``: a comma-separated subset of CASES, refused while parsing when a name is unknown."""
    cases = [c.strip() for c in str(text).split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        raise argparse.ArgumentTypeError(f"{text!r}: unknown {unknown}; choose from {', '.join(CASES)} "
                                         f"(e.g. --cases fp16,int4).")
    return cases


def _is_gpu_json(path) -> bool:
    """An earlier ``bench gpu --json`` file, which ``--json`` may replace."""
    from pathlib import Path

    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(value, dict) and isinstance(value.get("rows"), list) and "device" in value


def build_parser() -> argparse.ArgumentParser:
    from glmcourse.cli import CHOICE, OUTPUT_FILE, CourseParser, seed_arg

    p = CourseParser(prog="python -m glmcourse.bench gpu", description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true",
                   help="the same code at the course model's size on the CPU (no GPU needed; for the unit test)")
    p.add_argument("--cases", type=_cases_arg, default=list(CASES), kind=CHOICE,
                   help=f"comma-separated subset of {', '.join(CASES)} (each case builds its own model)")
    p.add_argument("--json", kind=OUTPUT_FILE, owned=_is_gpu_json,
                   help="also write the rows to this JSON file (replaces only an earlier bench gpu JSON)")
    p.add_argument("--seed", type=seed_arg(), default=0, help="seeds the random weights and token ids")
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)  # the shared guard: one line and status 2 for a bad value
    except SystemExit as stop:
        return stop.code
    cases = args.cases
    import torch

    from glmcourse.modeling import chatglm_6b_config, course_config
    from glmcourse.settings import seed_everything

    seed_everything(args.seed)
    if args.dry_run:
        config, sizes, device, dtype = course_config(), Sizes.dry(), "cpu", torch.float32  # fp16 matmuls crawl on CPUs
        name = "CPU (dry run, course model size)"
    elif not torch.cuda.is_available():
        print("bench gpu: no CUDA device here, nothing measured (run it on a machine with a GPU; --dry-run "
              "exercises the code on the CPU).")
        return 0
    else:
        config, sizes, device, dtype = chatglm_6b_config(), Sizes.full(), "cuda", torch.float16
        props = torch.cuda.get_device_properties(0)
        name = f"{props.name} ({props.total_memory / GiB:.0f} GiB), torch {torch.__version__}"
    sizes.seed = args.seed
    print(f"bench gpu: {name}")
    rows = measure(config, sizes, device, dtype, cases)
    print(table(rows, name, args.dry_run))
    if args.json:
        from glmcourse.files import atomic_write

        with atomic_write(args.json) as out:
            json.dump({"device": name, "dry_run": args.dry_run, "sizes": asdict(sizes),
                       "rows": [asdict(r) for r in rows]}, out, indent=1)
    return 1 if any(r.note.startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
