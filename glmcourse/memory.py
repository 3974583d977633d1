"""GPU/CPU memory: estimated for ChatGLM-6B from its config, and measured on the course model.

Lesson 02 rebuilds the published ChatGLM-6B figures (13/8/6 GB for inference, 14/9/7 GB for
fine-tuning) with ``estimate_memory``; lessons 05 and 07 measure the course model's peak memory while
training, in a fresh process so that one measurement never inherits another's allocations.
"""
from __future__ import annotations

import json
import sys

import torch

from glmcourse.loading import load_base_model
from glmcourse.lora import LoraError, add_lora, count_parameters, optimizer_state_bytes
from glmcourse.quant import GiB

TRAIN_SEQ_LEN = 256  # estimate_memory's training sequence length when seq_len is None


def _dims(config) -> dict:
    """The numbers the estimate needs, from any object with ChatGLM's config attribute names."""
    try:
        h, layers, heads = config.hidden_size, config.num_layers, config.num_attention_heads
        vocab = config.vocab_size
    except AttributeError as err:
        raise TypeError(
            f"estimate_memory needs a ChatGLM config (hidden_size, num_layers, num_attention_heads, "
            f"vocab_size, inner_hidden_size): {err}"
        ) from None
    ffn = getattr(config, "inner_hidden_size", None) or 4 * h
    return {"hidden": h, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab,
            "max_len": getattr(config, "max_sequence_length", 2048)}


def parameter_counts(config) -> dict:
    """ChatGLM parameter counts from the config (lm_head tied to the embedding).

    ``quantizable``: the weights of the four Linear kinds; ``float``: everything else (embedding,
    biases, LayerNorms); ``rows``: output rows of the quantized weights (one scale each).
    """
    d = _dims(config)
    h, ffn, n = d["hidden"], d["ffn"], d["layers"]
    weights = h * 3 * h + h * h + h * ffn + ffn * h
    biases = 3 * h + h + ffn + h
    layernorms = 2 * 2 * h
    embedding = d["vocab"] * h
    quantizable = n * weights
    other = n * (biases + layernorms) + embedding + 2 * h  # + the final LayerNorm
    return {"quantizable": quantizable, "float": other, "total": quantizable + other, "rows": n * biases}


def kv_cache_bytes(config, seq_len: int, batch_size: int = 1, bytes_per_value: float = 2) -> int:
    """Keys and values for every layer: ``2 * layers * batch * seq_len * hidden * bytes``."""
    d = _dims(config)
    return int(2 * d["layers"] * batch_size * seq_len * d["hidden"] * bytes_per_value)


def weight_bytes(config, weight_bits: int = 16, float_bytes: float = 2, scale_bytes: float = 2,
                 group_size: int | None = None) -> int:
    """Weights on the device: the four Linear kinds at ``weight_bits`` (+ their scales), the rest float."""
    counts = parameter_counts(config)
    if weight_bits >= 16:
        return int(counts["total"] * weight_bits / 8)
    if group_size:
        n_scales = counts["quantizable"] // group_size
    else:
        n_scales = counts["rows"]
    return int(counts["quantizable"] * weight_bits / 8 + n_scales * scale_bytes + counts["float"] * float_bytes)


def estimate_memory(config, weight_bits: int = 16, *, mode: str = "inference", batch_size: int = 1,
                    seq_len: int | None = None, prompt_len: int = 512, kv_bytes: float = 2,
                    act_bytes: float = 2, group_size: int | None = None,
                    cuda_context_gib: float = 0.75, pre_seq_len: int = 128, lora_rank: int = 8,
                    optimizer_bytes_per_param: float = 16, saved_act_factor: float = 34,
                    logits_bytes_per_value: float | None = None) -> dict:
    """GPU memory for ChatGLM inference or parameter-efficient training; every assumption is an argument.

    ``mode``: ``"inference"`` (chat with a KV cache), ``"ptuning"`` (P-Tuning v2 prefix of
    ``pre_seq_len``, the README's fine-tuning column) or ``"lora"`` (rank ``lora_rank`` on
    query_key_value, as ChatGLM-Tuning). Components, in bytes:

    * ``weights``: ``weight_bytes`` (fp16 non-quantized parts, fp16 scales).
    * ``kv_cache`` (inference): keys and values for ``seq_len`` tokens (default the config's
      ``max_sequence_length``, what a long chat fills), ``kv_bytes`` each.
    * ``activations``: inference keeps one layer's transients while prefilling ``prompt_len`` tokens:
      fp32 attention scores and probabilities, the block's widest tensors, the logits in fp16 and
      fp32; training keeps ``saved_act_factor * hidden`` bytes per token and layer for backward
      (34 for fp16 without recomputation, Korthikanti et al. 2022), ``5 * heads * key_len`` bytes of
      attention per token and layer, and the logits, their fp32 log-softmax and gradient.
    * ``dequant_workspace``: one fp16 weight matrix dequantized on the fly (quantized models).
    * ``trainable``: trainable parameters x ``optimizer_bytes_per_param`` (fp32 weight, gradient,
      Adam m and v = 16 bytes).
    * ``cuda_context``: CUDA context, cuBLAS workspace and allocator slack, in GiB.

    Returns the components in bytes, ``total_bytes`` and ``total_gib``.
    """
    if mode not in ("inference", "ptuning", "lora"):
        raise ValueError(f"mode={mode!r}: choose 'inference', 'ptuning' or 'lora'.")
    if weight_bits not in (4, 8, 16, 32):
        raise ValueError(f"weight_bits={weight_bits!r}: choose 4 or 8 (quantized), 16 or 32 (float).")
    d = _dims(config)
    h, n, heads, ffn, vocab = d["hidden"], d["layers"], d["heads"], d["ffn"], d["vocab"]
    parts = {"weights": weight_bytes(config, weight_bits, group_size=group_size)}
    if mode == "inference":
        seq_len = d["max_len"] if seq_len is None else seq_len
        p = min(prompt_len, seq_len)
        parts["kv_cache"] = kv_cache_bytes(config, seq_len, batch_size, kv_bytes)
        attention = batch_size * heads * p * p * 4 * 2  # fp32 scores + probabilities
        block = batch_size * p * (3 * h + ffn) * act_bytes  # qkv output, MLP intermediate
        per_value = 2 + 4 if logits_bytes_per_value is None else logits_bytes_per_value  # fp16 + fp32 copy
        logits = batch_size * p * vocab * per_value
        parts["activations"] = int(attention + block + logits)
        parts["trainable"] = 0
    else:
        seq_len = TRAIN_SEQ_LEN if seq_len is None else seq_len
        parts["kv_cache"] = 0  # training runs full sequences; nothing is cached between steps
        key_len = seq_len + (pre_seq_len if mode == "ptuning" else 0)
        saved = n * batch_size * seq_len * (saved_act_factor * h + 5 * heads * key_len)
        per_value = 16 if logits_bytes_per_value is None else logits_bytes_per_value  # fp16 + fp32 + grads
        parts["activations"] = int(saved + batch_size * seq_len * vocab * per_value)
        if mode == "ptuning":
            trainable = pre_seq_len * n * 2 * h  # a key and a value vector per layer and prefix slot
        else:
            trainable = n * lora_rank * (h + 3 * h)  # A [r, h] and B [3h, r] on query_key_value
        parts["trainable"] = int(trainable * optimizer_bytes_per_param)
    parts["dequant_workspace"] = 0 if weight_bits >= 16 else int(max(h * 3 * h, h * ffn) * 2)
    parts["cuda_context"] = int(cuda_context_gib * GiB)
    total = sum(parts.values())
    return {**parts, "total_bytes": total, "total_gib": total / GiB}


# README memory claims (minimum GPU memory, GB) for ChatGLM-6B.
README_CLAIMS_GB = {
    "inference": {16: 13, 8: 8, 4: 6},
    "ptuning": {16: 14, 8: 9, 4: 7},
}


# The seed notes' figures: (mode, weight bits, GB, what the figure says).
def seed_figures_gb() -> list[tuple[str, int, int, str]]:
    """The seed's GPU-memory claims: ``(mode, weight bits, GB, the claim in the learner's language)``."""
    from glmcourse.i18n import _

    return [
        ("inference", 16, 13, _("FP16 inference takes about 13 GB")),
        ("inference", 8, 11, _("INT8 inference runs on one 11 GB RTX 2080 Ti")),
        ("inference", 4, 6, _("INT4 inference needs 6 GB")),
        ("ptuning", 4, 7, _("P-Tuning v2 (INT4) needs 7 GB")),
    ]


def measure_training_memory(mode: str = "lora", steps: int = 3, batch_size: int = 8, seq_len: int = 48,
                            model_path=None, pre_seq_len: int = 16) -> dict:
    """Train ``steps`` AdamW steps on random tokens; report peak RSS and the optimizer's state bytes.

    ``mode``: ``"lora"`` (r=8 on query_key_value), ``"ptuning"`` (P-Tuning v2, a prefix of
    ``pre_seq_len`` positions, base frozen) or ``"full"`` (every parameter trains).

    Peak RSS only grows within a process, so run each mode in a fresh one:
    ``python -m glmcourse.memory --mode lora`` (``memory_in_subprocess`` does that).
    """
    from glmcourse.settings import seed_everything

    seed_everything(0)
    if mode == "ptuning":
        import glmcourse
        from glmcourse.modeling import ChatGLMForConditionalGeneration

        model = ChatGLMForConditionalGeneration.from_pretrained(str(model_path or glmcourse.COURSE_MODEL),
                                                                pre_seq_len=pre_seq_len, dtype=torch.float32)
    else:
        model = load_base_model(model_path)
    if mode == "lora":
        model = add_lora(model, verbose=False)
    elif mode not in ("full", "ptuning"):
        raise LoraError(f"mode={mode!r}: choose 'lora', 'ptuning' or 'full'.")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    config = model.config
    for _ in range(steps):
        ids = torch.randint(10, config.vocab_size, (batch_size, seq_len))
        if getattr(config, "gmask_token_id", None) is not None:  # ChatGLM: a prompt half, then the answer half
            ids[:, seq_len // 2 - 1], ids[:, seq_len // 2] = config.gmask_token_id, config.bos_token_id
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    trainable, total = count_parameters(model)
    grad_bytes = sum(p.numel() * p.element_size() for p in params)
    return {"mode": mode, "trainable": trainable, "total": total,
            "optimizer_state_bytes": optimizer_state_bytes(optimizer), "gradient_bytes": grad_bytes,
            "peak_rss_bytes": peak_rss_bytes()}


def peak_rss_bytes() -> int:
    """This process's own peak resident memory.

    On Linux that is ``VmHWM`` in /proc/self/status: ``ru_maxrss`` there also counts the RSS its parent had
    when it forked, so a measurement started from a 1 GB notebook kernel would read at least 1 GB whatever it
    did. Elsewhere ``ru_maxrss`` (bytes on macOS, KiB on other systems)."""
    import resource

    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def memory_in_subprocess(mode: str, **kwargs) -> dict:
    """``measure_training_memory`` in a fresh Python process (its own peak RSS)."""
    import subprocess
    import sys

    import glmcourse

    cmd = [sys.executable, "-m", "glmcourse.memory", "--mode", mode]
    for key, value in kwargs.items():
        cmd += [f"--{key}", str(value)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(glmcourse.REPO_ROOT), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_parser():
    from glmcourse.cli import MODEL_DIR, CourseParser, int_arg

    parser = CourseParser(prog="python -m glmcourse.memory", description=main.__doc__)
    parser.add_argument("--mode", choices=["lora", "ptuning", "full"], default="lora")
    parser.add_argument("--steps", type=int_arg("--steps", 1, 10**6), default=3)
    parser.add_argument("--batch_size", type=int_arg("--batch_size", 1, 2**16), default=8)
    parser.add_argument("--seq_len", type=int_arg("--seq_len", 2, 2**20), default=48, within_context=True)
    parser.add_argument("--model_path", default=None, kind=MODEL_DIR)
    parser.add_argument("--pre_seq_len", type=int_arg("--pre_seq_len", 1, 2**20), default=16, within_context=True,
                        help="prefix positions (--mode ptuning)")
    return parser


def main(argv=None) -> int:
    """``python -m glmcourse.memory``: peak RSS and optimizer state of a few training steps (one JSON line)."""
    args = build_parser().parse_args(argv)
    try:
        print(json.dumps(measure_training_memory(**vars(args))))
    except LoraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
