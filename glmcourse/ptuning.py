"""Lesson 07: P-Tuning v2, ChatGLM-6B's own parameter-efficient fine-tuning (``config.pre_seq_len``).

The base model stays frozen. Every layer gets ``pre_seq_len`` extra key/value vectors in front of the
tokens' keys and values, and every token may attend to them; only those vectors (the prefix encoder)
train. This module holds what notebook 07 teaches, read top to bottom:

1. the idea by hand: attention over [prefix; tokens] and the mask with its extra columns;
2. trainable-parameter counts (from the formula and from a meta-device model);
3. ChatGLM-6B's ptuning/main.py data rules: the prompt (``[Round i]`` with a history column), the cut
   to ``max_source_length - 1`` / ``max_target_length - 2``, the labels, and the batch collator;
4. the prefix checkpoint: only the prefix encoder's weights, in safetensors, with what it takes to
   rebuild it and to refuse a base it does not belong to.

The command line (``python -m glmcourse.ptuning``, ChatGLM-6B's ptuning/train.sh flags) and the
Trainer live in ``glmcourse/ptuning_train.py``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from glmcourse.bilingual import bilingual
from glmcourse.i18n import _

# The lesson's settings on the course model and data/lora_train.json (notebook 07 and `make bench`
# print what they reach). train.sh's own values (pre_seq_len 128, lr 2e-2, batch 1 x 16, 3000 steps)
# are for the 6B model on a GPU; here a larger batch and a few hundred steps fit in minutes on 2 cores.
LEARNER_DEFAULTS = dict(
    pre_seq_len=16,
    prefix_projection=False,
    learning_rate=2e-2,
    per_device_train_batch_size=16,
    gradient_accumulation_steps=1,
    max_steps=300,
    save_steps=100,
    save_total_limit=2,
    logging_steps=10,
    max_source_length=64,
    max_target_length=64,
)
# ChatGLM-6B's ptuning/train.sh, for reference (and the tests): what the same command line means there.
TRAIN_SH = dict(pre_seq_len=128, learning_rate=2e-2, quantization_bit=4, per_device_train_batch_size=1,
                gradient_accumulation_steps=16, max_steps=3000, logging_steps=10, save_steps=1000,
                max_source_length=64, max_target_length=128)

PREFIX_WEIGHTS = "prefix_encoder.safetensors"
PTUNING_CONFIG = "ptuning_config.json"
PREFIX_KEY = "transformer.prefix_encoder."  # ChatGLM-6B saves the prefix under these names
FORMAT = "glmcourse-ptuning-v2/1"
IGNORE_INDEX = -100


class PTuningError(ValueError):
    """A P-Tuning v2 setting, data row or checkpoint that cannot work; the message says how to fix it."""


# ----------------------------------------------------------------------------------------------
# 1. The idea by hand
# ----------------------------------------------------------------------------------------------
def attention_with_prefix(q, k, v, prefix_k, prefix_v, attend=None):
    """Scaled dot-product attention over [prefix; tokens], written out.

    ``q``, ``k``, ``v``: [L, d] (one head); ``prefix_k``, ``prefix_v``: [P, d]; ``attend``: [L, L] bool
    (True = may attend) for the tokens. Every query may attend to every prefix position. Returns
    ``(output [L, d], weights [L, P + L])``.
    """
    keys, values = torch.cat((prefix_k, k)), torch.cat((prefix_v, v))
    scores = q @ keys.T / math.sqrt(q.shape[-1])
    if attend is not None:
        scores = scores.masked_fill(~prefix_mask(attend, prefix_k.shape[0]), float("-inf"))
    weights = scores.softmax(-1)
    return weights @ values, weights


def prefix_mask(attend: torch.Tensor, pre_seq_len: int) -> torch.Tensor:
    """A may-attend mask [..., Lq, Lk] with ``pre_seq_len`` True columns in front: every token sees the prefix."""
    attend = torch.as_tensor(attend).bool()
    return torch.cat((attend.new_ones(*attend.shape[:-1], pre_seq_len), attend), dim=-1)


def plot_prefix_mask(mask, tokens, pre_seq_len: int, title: str | None = None, ax=None):
    """Draw a [L, P + L] may-attend mask (dark = may attend), prefix columns labelled p0..p{P-1}."""
    import matplotlib.pyplot as plt

    mask = torch.as_tensor(mask).bool()
    rows, cols = mask.shape[-2:]
    if ax is None:
        _, ax = plt.subplots(figsize=(min(11.0, 1.5 + 0.38 * cols), min(8.0, 1.5 + 0.38 * rows)))
    ax.imshow(mask.int().numpy(), cmap="Blues", vmin=0, vmax=1.25)
    labels = [str(t) for t in tokens]
    ax.set_xticks(range(cols), [f"p{i}" for i in range(pre_seq_len)] + labels, rotation=90)
    ax.set_yticks(range(rows), labels)
    ax.axvline(pre_seq_len - 0.5, color="tab:red", linewidth=1.5)
    ax.set_title(title or bilingual("ChatGLM's mask with a P-Tuning v2 prefix of {n} positions (left of the red line)",
                                    n=pre_seq_len))
    ax.set_xlabel(bilingual("key position: prefix p0.., then the tokens (dark = may attend)"))
    ax.set_ylabel(bilingual("query token: attending"))
    return ax


# ----------------------------------------------------------------------------------------------
# 2. Trainable parameters
# ----------------------------------------------------------------------------------------------
def prefix_parameter_count(config, pre_seq_len: int, prefix_projection: bool = False) -> int:
    """The prefix encoder's size from the formula.

    Without projection: an Embedding(pre_seq_len, num_layers * 2 * hidden): a key and a value vector
    per layer and prefix position. With projection: Embedding(pre_seq_len, hidden), then
    Linear(hidden, hidden) -> Tanh -> Linear(hidden, num_layers * 2 * hidden), biases included.
    """
    h, n = config.hidden_size, config.num_layers
    width = n * 2 * h
    if not prefix_projection:
        return pre_seq_len * width
    return pre_seq_len * h + (h * h + h) + (h * width + width)


def with_prefix(config, pre_seq_len: int, prefix_projection: bool = False):
    """A copy of a ChatGLM config with P-Tuning v2 switched on."""
    import copy

    config = copy.deepcopy(config)
    config.pre_seq_len, config.prefix_projection = pre_seq_len, bool(prefix_projection)
    return config


def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters; the tied lm_head counts once."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def meta_trainable(config, pre_seq_len: int, prefix_projection: bool = False) -> tuple[int, int]:
    """(trainable, total) of the P-Tuning v2 model for ``config``, built on the meta device (no memory)."""
    from glmcourse.sizes import meta_model

    return trainable_parameters(meta_model(with_prefix(config, pre_seq_len, prefix_projection)))


# ----------------------------------------------------------------------------------------------
# 3. Data: ChatGLM-6B's ptuning/main.py rules
# ----------------------------------------------------------------------------------------------
def build_prompt(query: str, history=None, history_column: bool = False) -> str:
    """main.py's prompt: the query itself, or, when the data has a history column, one
    ``[Round i]\\n问：{q}\\n答：{r}\\n`` per past turn and ``[Round n]\\n问：{query}\\n答：``.

    Note: with a history column an *empty* history still gives ``[Round 0]\\n问：{query}\\n答：``,
    whereas ``model.chat`` sends the bare query on a first turn. That is main.py's rule, kept here.
    """
    if not history_column:
        return query
    prompt = "".join(f"[Round {i}]\n问：{q}\n答：{r}\n" for i, (q, r) in enumerate(history or []))
    return prompt + f"[Round {len(history or [])}]\n问：{query}\n答："


def special_ids(tokenizer) -> dict:
    """[gMASK], <sop> (bos), <eop> (eos) and <pad> ids, read from the tokenizer (never hard-coded)."""
    pairs = {"gmask": ("gmask_token_id",), "sop": ("sop_token_id", "bos_token_id"),
             "eop": ("eop_token_id", "eos_token_id"), "pad": ("pad_token_id",)}
    ids = {}
    for name, attrs in pairs.items():
        value = next((getattr(tokenizer, a) for a in attrs if getattr(tokenizer, a, None) is not None), None)
        if value is None:
            raise PTuningError(_("the tokenizer {kind} has no {attrs}: it is not a ChatGLM tokenizer; load the base "
                                 "model's own tokenizer.", kind=type(tokenizer).__name__, attrs=" / ".join(attrs)))
        ids[name] = int(value)
    return ids


def check_lengths(max_source_length: int, max_target_length: int) -> None:
    """The prompt keeps max_source_length - 1 tokens, the answer max_target_length - 2: both must keep one."""
    if max_source_length < 2:
        raise PTuningError(_("--max_source_length {value}: must be at least 2 (the prompt keeps "
                             "max_source_length - 1 tokens before [gMASK] <sop>).", value=max_source_length))
    if max_target_length < 3:
        raise PTuningError(_("--max_target_length {value}: must be at least 3 (the answer keeps "
                             "max_target_length - 2 tokens, plus <sop> and <eop>).", value=max_target_length))


def build_example(tokenizer, query: str, response: str, max_source_length: int, max_target_length: int,
                  history=None, history_column: bool = False, ids: dict | None = None) -> dict:
    """One training row as main.py's preprocess_function_train builds it, before padding.

    ``a = encode(prompt)[:max_source_length - 1]``, ``b = encode(response)[:max_target_length - 2]``
    (no special tokens), ``input_ids = a + [gMASK, <sop>] + b + [<eop>]``; ``labels`` are -100 up to
    (not including) <sop>, then the ids themselves: <sop>, the answer and <eop> are supervised.
    Returns {"input_ids", "labels", "context_length", "cut_source", "cut_target"}.
    """
    ids = ids or special_ids(tokenizer)
    prompt = build_prompt(query, history, history_column)
    a = tokenizer.encode(prompt, add_special_tokens=False)
    b = tokenizer.encode(response, add_special_tokens=False)
    cut_a, cut_b = len(a) > max_source_length - 1, len(b) > max_target_length - 2
    a, b = a[: max_source_length - 1], b[: max_target_length - 2]
    input_ids = a + [ids["gmask"], ids["sop"]] + b + [ids["eop"]]
    context_length = input_ids.index(ids["sop"])
    labels = [IGNORE_INDEX] * context_length + input_ids[context_length:]
    return {"input_ids": input_ids, "labels": labels, "context_length": context_length,
            "cut_source": cut_a, "cut_target": cut_b}


def pad_example(example: dict, max_source_length: int, max_target_length: int, pad_id: int) -> dict:
    """main.py's fixed-length padding to max_source_length + max_target_length, with
    ``ignore_pad_token_for_loss``: every pad id in the labels becomes -100."""
    length = max_source_length + max_target_length
    pad = length - len(example["input_ids"])
    labels = example["labels"] + [pad_id] * pad
    return {"input_ids": example["input_ids"] + [pad_id] * pad,
            "labels": [IGNORE_INDEX if t == pad_id else t for t in labels]}


class PrefixCollator:
    """Right-pads a batch to its longest row (input_ids with <pad>, labels with -100).

    main.py pads every row to max_source_length + max_target_length; padding to the batch's longest
    row gives the same loss (the padding comes after <eop>, where causal attention never looks back
    from a supervised token) with less compute. Only input_ids and labels are passed: the model
    derives its mask and 2D positions from [gMASK] and <sop> itself.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, features) -> dict:
        longest = max(len(f["input_ids"]) for f in features)
        ids = [list(f["input_ids"]) + [self.pad_token_id] * (longest - len(f["input_ids"])) for f in features]
        labels = [list(f["labels"]) + [IGNORE_INDEX] * (longest - len(f["labels"])) for f in features]
        labels = [[IGNORE_INDEX if t == self.pad_token_id else t for t in row] for row in labels]
        return {"input_ids": torch.LongTensor(ids), "labels": torch.LongTensor(labels)}


def alpaca_to_ptuning(record: dict, style: str = "instruction") -> dict:
    """An Alpaca record -> a {"prompt", "response"} row (with "history" when the record has one).

    ``style="instruction"`` (default): the prompt is ChatGLM-Tuning's ``Instruction: …\\nInput: …\\nAnswer: ``
    context (lesson 04), so P-Tuning and LoRA (lesson 05) see the very same token ids.
    ``style="chat"``: the chat query, the instruction then the input on its own line (what
    ``model.chat`` sends), as ChatGLM-6B's own P-Tuning data (a bare prompt column) does.
    """
    if style not in ("instruction", "chat"):
        raise PTuningError(_("style={style!r}: choose 'instruction' (the LoRA lesson's prompt) or 'chat'.",
                             style=style))
    instruction, given, output = record.get("instruction"), record.get("input") or "", record.get("output")
    if not isinstance(instruction, str) or not isinstance(output, str) or not isinstance(given, str):
        raise PTuningError(_("not an Alpaca record (string instruction/output, optional input): {record!r:.120}",
                             record=record))
    if style == "instruction":
        prompt = f"Instruction: {instruction}\n" + (f"Input: {given}\n" if given else "") + "Answer: "
    else:
        prompt = instruction + (f"\n{given}" if given else "")
    row = {"prompt": prompt, "response": output}
    if record.get("history"):
        row["history"] = [[q, r] for q, r in record["history"]]
    return row


# ----------------------------------------------------------------------------------------------
# 4. The prefix checkpoint
# ----------------------------------------------------------------------------------------------
def base_fingerprint(model) -> str:
    """16 hex digits from the first 4,096 values (as fp16) of the tensors that never get quantized
    (word embeddings, LayerNorms): cheap at any size, the same for an fp16/fp32/quantized copy of a base."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        if PREFIX_KEY.strip(".") in name or not ("word_embeddings" in name or "layernorm" in name):
            continue
        values = state[name].detach().flatten()[:4096].to("cpu", torch.float16)
        digest.update(name.encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()[:16]


def base_identity(model) -> dict:
    """What a prefix belongs to: the base's model type and sizes, and its fingerprint."""
    c = model.config
    return {"model_type": getattr(c, "model_type", None), "hidden_size": c.hidden_size, "num_layers": c.num_layers,
            "num_attention_heads": c.num_attention_heads, "vocab_size": c.vocab_size,
            "fingerprint": base_fingerprint(model), "name_or_path": Path(str(c._name_or_path or "")).name or None}


def _prefix_encoder(model):
    inner = getattr(model, "transformer", None)
    encoder = getattr(inner, "prefix_encoder", None)
    if encoder is None:
        pre = getattr(getattr(model, "config", None), "pre_seq_len", None)
        raise PTuningError(_(
            "{kind} has no transformer.prefix_encoder (config.pre_seq_len = {pre}): build the base "
            "with P-Tuning v2 on, ChatGLMForConditionalGeneration.from_pretrained(path, pre_seq_len=N, "
            "prefix_projection=...). Only ChatGLM-6B-style models have it.", kind=type(model).__name__, pre=pre))
    return encoder


def prefix_state(model) -> dict:
    """The prefix encoder's tensors under ChatGLM-6B's names (``transformer.prefix_encoder.*``), on the CPU."""
    return {PREFIX_KEY + k: v.detach().to("cpu", torch.float32).contiguous()
            for k, v in _prefix_encoder(model).state_dict().items()}


def save_prefix(model, output_dir) -> dict:
    """Write prefix_encoder.safetensors + ptuning_config.json into ``output_dir``, atomically, re-read and checked.

    Both files go to a hidden temp folder first and are moved into place only after they read back
    correctly, so an interrupted save never leaves a half-written prefix where a good one was.
    Returns ``read_prefix``'s summary.
    """
    from safetensors.torch import save_file

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state = prefix_state(model)
    config = {"format": FORMAT, "pre_seq_len": int(model.config.pre_seq_len),
              "prefix_projection": bool(getattr(model.config, "prefix_projection", False)),
              "base": base_identity(model), "parameters": sum(v.numel() for v in state.values()),
              "tensors": {k: list(v.shape) for k, v in state.items()}}
    tmp = Path(tempfile.mkdtemp(prefix=".prefix-", suffix=".tmp", dir=output_dir))
    try:
        save_file(state, str(tmp / PREFIX_WEIGHTS),
                  metadata={"format": "pt", "pre_seq_len": str(config["pre_seq_len"]),
                            "prefix_projection": str(config["prefix_projection"]).lower()})
        (tmp / PTUNING_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        read_prefix(tmp)
        for name in (PREFIX_WEIGHTS, PTUNING_CONFIG):  # weights first: a config never points at nothing new
            os.chmod(tmp / name, 0o644)
            os.replace(tmp / name, output_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_prefix(output_dir)


def read_prefix(folder) -> dict:
    """Read and check a saved prefix: {"config", "weights", "file_bytes", "path"}; a PTuningError if unusable."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if folder.is_file():
        raise PTuningError(_("{folder} is a file: pass the folder that holds {weights} and {config}.",
                             folder=folder, weights=PREFIX_WEIGHTS, config=PTUNING_CONFIG))
    if not folder.is_dir():
        raise PTuningError(_("{folder}: no such folder. Train a prefix with python -m glmcourse.ptuning --do_train "
                             "--train_file FILE --output_dir {folder}, or check the path.", folder=folder))
    if not (folder / PREFIX_WEIGHTS).exists():
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise PTuningError(_("{folder} has no {weights} (it holds {found}): not a P-Tuning v2 output folder.",
                             folder=folder, weights=PREFIX_WEIGHTS, found=found))
    if not (folder / PTUNING_CONFIG).exists():
        raise PTuningError(_("{folder} has {weights} but no {config}: without it pre_seq_len and the "
                             "base cannot be checked. Copy it from the training run's output folder.", folder=folder,
                             weights=PREFIX_WEIGHTS, config=PTUNING_CONFIG))
    config = json.loads((folder / PTUNING_CONFIG).read_text(encoding="utf-8"))
    weights = load_file(str(folder / PREFIX_WEIGHTS))
    want = {k: tuple(v) for k, v in config.get("tensors", {}).items()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if not weights or got != want:
        raise PTuningError(_("{path} holds {got}, but {config} lists {want}: the files do "
                             "not belong together (an interrupted copy?). Re-save the prefix.",
                             path=folder / PREFIX_WEIGHTS, got=got, config=PTUNING_CONFIG, want=want))
    bad = [k for k, v in weights.items() if not torch.isfinite(v).all()]
    if bad:
        raise PTuningError(_("{path}: {bad} hold NaN/inf values; the run that saved them diverged.",
                             path=folder / PREFIX_WEIGHTS, bad=bad))
    return {"config": config, "weights": weights, "file_bytes": (folder / PREFIX_WEIGHTS).stat().st_size,
            "path": str(folder)}


def check_prefix_fits(model, config: dict, folder="the prefix", check_fingerprint: bool = True) -> None:
    """Refuse a prefix whose pre_seq_len, projection or base differs from ``model``'s, with the fix."""
    encoder_config = getattr(model.config, "pre_seq_len", None)
    want_p, want_proj = config["pre_seq_len"], config["prefix_projection"]
    if encoder_config is None or not hasattr(getattr(model, "transformer", None), "prefix_encoder"):
        raise PTuningError(_(
            "{folder} is a P-Tuning v2 prefix (pre_seq_len {want_p}), but this model was built without one: load "
            "the base with ChatGLMForConditionalGeneration.from_pretrained(path, pre_seq_len={want_p}, "
            "prefix_projection={want_proj}).", folder=folder, want_p=want_p, want_proj=want_proj))
    have_proj = bool(getattr(model.config, "prefix_projection", False))
    if encoder_config != want_p or have_proj != want_proj:
        raise PTuningError(_(
            "{folder} was trained with pre_seq_len {want_p}, prefix_projection {want_proj}; this model was built "
            "with pre_seq_len {have_p}, prefix_projection {have_proj}. Build the base with the prefix's "
            "values: from_pretrained(path, pre_seq_len={want_p}, prefix_projection={want_proj}).", folder=folder,
            want_p=want_p, want_proj=want_proj, have_p=encoder_config, have_proj=have_proj))
    base, here = config.get("base", {}), base_identity(model)
    sizes = [k for k in ("model_type", "hidden_size", "num_layers", "num_attention_heads", "vocab_size")
             if base.get(k) != here[k]]
    if sizes:
        diff = ", ".join(f"{k} {base.get(k)} vs {here[k]}" for k in sizes)
        raise PTuningError(_("{folder} belongs to another base model ({diff}; prefix vs this model): a prefix only "
                             "works on the base it was trained on ({base}).", folder=folder, diff=diff,
                             base=base.get("name_or_path")))
    if check_fingerprint and base.get("fingerprint") and base["fingerprint"] != here["fingerprint"]:
        raise PTuningError(_(
            "{folder} was trained on another base of the same size (fingerprint {theirs}, this model "
            "{ours}; base {base}): its keys and values would mean nothing here. "
            "Load the base it was trained on, or pass check_fingerprint=False if you know better.", folder=folder,
            theirs=base["fingerprint"], ours=here["fingerprint"], base=base.get("name_or_path")))


def load_prefix(model, folder, check_fingerprint: bool = True, verbose: bool = True):
    """Load a saved prefix into ``model.transformer.prefix_encoder`` (strict: every tensor must land), in fp32."""
    saved = read_prefix(folder)
    check_prefix_fits(model, saved["config"], folder, check_fingerprint)
    encoder = _prefix_encoder(model)
    state = {k[len(PREFIX_KEY):]: v for k, v in saved["weights"].items()}
    encoder.float()  # the prefix stays floating point on a quantized base, as ChatGLM-6B's prefix_encoder.float()
    encoder.load_state_dict(state, strict=True)
    if verbose:
        c = saved["config"]
        print(_("prefix loaded from {folder}/{file}: {tensors}/{tensors} tensors, {parameters:,} parameters, "
                "pre_seq_len {pre_seq_len}, projection {projection}", folder=Path(folder).name, file=PREFIX_WEIGHTS,
                tensors=len(state), parameters=c["parameters"], pre_seq_len=c["pre_seq_len"],
                projection=c["prefix_projection"]))
    return model


def load_ptuned_model(folder, base_path=None, quantization_bit: int | None = None, verbose: bool = True):
    """The P-Tuning v2 inference recipe: build the base with the prefix's pre_seq_len, quantize it if asked
    (the prefix stays fp32), load the prefix. Returns the model in eval mode."""
    import glmcourse
    from glmcourse.modeling import ChatGLMForConditionalGeneration

    config = read_prefix(folder)["config"]
    model = ChatGLMForConditionalGeneration.from_pretrained(
        str(base_path or glmcourse.COURSE_MODEL), pre_seq_len=config["pre_seq_len"],
        prefix_projection=config["prefix_projection"], dtype=torch.float32)
    quantize_once(model, base_path or glmcourse.COURSE_MODEL, quantization_bit)
    if model.quantized_bits:
        model.freeze_for_prefix_tuning()
    return load_prefix(model, folder, verbose=verbose).eval()


def quantize_once(model, model_path, quantization_bit: int | None) -> None:
    """``model.quantize(bits)`` unless the folder is already quantized (THUDM's chatglm-6b-int4/int8 layout):
    the same bits then mean nothing to do, as in ChatGLM-6B's own code; other bits are an error."""
    loaded = getattr(model, "quantized_bits", None)
    if quantization_bit is None:
        return
    if loaded is None:
        model.quantize(quantization_bit)
    elif loaded != quantization_bit:
        raise PTuningError(_("{path} is already quantized to int{loaded} (config.json quantization_bit); "
                             "--quantization_bit {bits} cannot re-quantize it: leave the flag out, or "
                             "pass the fp16 folder to quantize to int{bits}.", path=model_path, loaded=loaded,
                             bits=quantization_bit))


# `python -m glmcourse.ptuning` (the seed's command name) starts here, but the command lives one floor up in
# ptuning_train.py, which imports this lesson module. Python runs this file as `__main__`, so it is entered
# under its package name first: ptuning_train's `from glmcourse import ptuning` then finds this very module
# instead of loading the lesson a second time (two PTuningError classes, two copies of every constant).
# The block is the command's entry, not an import of the lesson module: tests/test_layout.py leaves
# `if __name__ == "__main__":` blocks out of the import graph, and checks that such an entry registers itself.
if __name__ == "__main__":
    import sys

    sys.modules.setdefault("glmcourse.ptuning", sys.modules[__name__])
    from glmcourse import ptuning_train

    raise SystemExit(ptuning_train.main())
