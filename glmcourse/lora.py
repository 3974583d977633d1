"""Lessons 05-06: LoRA, from the formula to a model with adapters that is checked before it trains.

LoRA freezes a pretrained weight ``W`` (out x in) and learns a low-rank update next to it::

    y = W x + (B A x) * alpha / r        A: r x in (random),  B: out x r (zeros at the start)

so the model starts exactly as the base (B = 0) and training touches only ``r * (in + out)`` numbers
per adapted layer. ChatGLM-Tuning (the seed) adapts ``query_key_value`` with r=8, alpha=32,
dropout 0.1: 3,670,016 trainable parameters on ChatGLM-6B.

This module holds, in the notebook's order: the from-scratch layer; parameter counts; which layers get
adapters (target modules that do not exist are an error, not a silent no-op) and ``add_lora``; the
pre-flight checks (something trains, and only the adapters get a gradient); and the tokenizer helpers
the notebook uses to explain which answer fields the model can copy. Elsewhere: training is
``python -m glmcourse.finetune``; saving, loading and merging an adapter is ``glmcourse/adapters.py``
(lesson 06); loading a base in 8 or 4 bits is ``glmcourse/loading.py``; the checkers are in
``glmcourse/exercises/lora.py`` and the lesson's figures in ``glmcourse/bench/lora.py``.
"""
from __future__ import annotations

import json
import logging
import math
import re
import warnings

import torch
from torch import nn

from glmcourse.i18n import _

# peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` inside get_peft_model and
# PeftModel.from_pretrained: a FutureWarning on every wrap that the learner cannot act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
# peft imports bitsandbytes, whose CPU backend logs a missing optional fused 4-bit kernel; its own
# CPU kernels are used instead (see glmcourse.quant.import_bitsandbytes).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

SEED_LORA = dict(r=8, lora_alpha=32, lora_dropout=0.1)  # ChatGLM-Tuning's LoraConfig
ATTENTION_WORDS = ("attn", "attention")  # the rule for model types peft has no default for


class LoraError(ValueError):
    """A LoRA set-up or adapter problem: the message says what, where, and how to fix it."""


# ----------------------------------------------------------------------------------------------
# 1. The layer, from scratch
# ----------------------------------------------------------------------------------------------
class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus the trainable low-rank branch ``B @ A``, scaled by alpha / r.

    Initialised as peft does: A Kaiming-uniform, B zeros, so the layer starts equal to the base.
    Dropout acts on the branch's input only, and only in training mode.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 32, dropout: float = 0.0):
        super().__init__()
        if r < 1:
            raise LoraError(_("LoRA rank r={r}: it must be a positive integer (the seed uses 8).", r=r))
        self.base = base
        for param in self.base.parameters():
            param.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.dropout(x) @ self.lora_A.T @ self.lora_B.T
        return self.base(x) + update * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The update the branch adds to W: (B @ A) * alpha / r, shape (out, in)."""
        return self.lora_B @ self.lora_A * self.scaling

    def merged(self) -> nn.Linear:
        """A plain Linear with W + B A alpha/r: the same outputs (in eval mode), no extra matmul."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.delta_weight())
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out

    @classmethod
    def from_peft(cls, layer, adapter_name: str = "default") -> "LoRALinear":
        """The same layer as a peft ``lora.Linear``: shares its base, copies its A, B and scaling."""
        a = layer.lora_A[adapter_name].weight
        mine = cls(layer.get_base_layer(), r=a.shape[0], alpha=layer.scaling[adapter_name] * a.shape[0])
        with torch.no_grad():
            mine.lora_A.copy_(a)
            mine.lora_B.copy_(layer.lora_B[adapter_name].weight)
        return mine

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}"


# ----------------------------------------------------------------------------------------------
# 2. Counting parameters
# ----------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) distinct parameters (a tied weight counts once)."""
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


def _is_linear(module: nn.Module) -> bool:
    # bitsandbytes' Linear8bitLt / Linear4bit subclass nn.Linear too
    return isinstance(module, nn.Linear) or type(module).__name__ in {"Conv1D"}


def linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear-like module by its full name (peft's LoRA wrappers are looked through)."""
    found = {}
    for name, module in model.named_modules():
        if _is_linear(module) and ".lora_" not in name and not name.endswith("base_layer"):
            found[name] = module
        elif hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            found[name] = module.get_base_layer()
    return found


def linear_names(model: nn.Module) -> list[str]:
    """The Linear layers' names with layer numbers folded: 'transformer.layers.*.attention.dense'."""
    return sorted({re.sub(r"\.\d+\.", ".*.", name) for name in linear_layers(model)})


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def lora_parameter_count(model_or_config, r: int = 8, target_modules=None) -> int:
    """Trainable LoRA parameters: r * (in + out) summed over the adapted Linear layers.

    Given a config, the model is built on the meta device (no memory), so this works for the real
    ChatGLM-6B too. ``target_modules=None`` uses peft's default for the model type.
    """
    model = model_or_config
    if not isinstance(model_or_config, nn.Module):
        from glmcourse.sizes import meta_model

        model = meta_model(model_or_config)
    targets, _ = resolve_target_modules(model, target_modules, verbose=False)
    return sum(r * (m.in_features + m.out_features) for n, m in linear_layers(model).items()
               if any(_matches(n, t) for t in targets))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's per-parameter state (AdamW: exp_avg and exp_avg_sq, one value each per
    trainable parameter). The scalar step counters, a few bytes per tensor, are left out."""
    total = 0
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                total += value.numel() * value.element_size()
    return total


# ----------------------------------------------------------------------------------------------
# 3. Which layers get adapters (docs/failure-catalog.md#f13-missing-target-modules)
# ----------------------------------------------------------------------------------------------
def peft_default_targets(model_type: str):
    """peft's built-in LoRA targets for a model type (chatglm -> ['query_key_value']), or None."""
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAPPING,
    )

    targets = MAPPING.get(model_type)
    return sorted(targets) if targets is not None else None


def resolve_target_modules(model: nn.Module, target_modules=None, verbose: bool = True):
    """Check or choose LoRA's target modules. Returns (targets, how they were chosen).

    * Given names must each match a Linear layer (a full name or a name ending in '.' + target);
      otherwise a LoraError lists the model's Linear layers (docs/failure-catalog.md#f13-missing-target-modules).
    * None: peft's default for ``model.config.model_type`` (ChatGLM: query_key_value). A model type
      without a default gets every Linear inside an attention block (a parent named *attn* or
      *attention*): q_proj, k_proj, v_proj, o_proj on Llama- or GLM-4-style models.
    """
    layers = linear_layers(model)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    available = ", ".join(linear_names(model)) or "(none)"
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    if target_modules is not None:
        targets = sorted(set(target_modules))
        missing = [t for t in targets if not any(_matches(n, t) for n in layers)]
        if missing:
            default = peft_default_targets(model_type) if model_type else None
            hint = (_(" For model_type {model_type!r}, peft's default is {default}: leave target_modules out to use it.",
                      model_type=model_type, default=default)
                    if default else _(" Use the last part of a name, e.g. 'query_key_value' or 'q_proj'."))
            raise LoraError(_("target_modules {missing} match no Linear layer of {model} (model_type {model_type!r}). "
                              "Its Linear layers are: {available}.{hint}", missing=missing, model=type(model).__name__,
                              model_type=model_type, available=available, hint=hint))
        return targets, _("as given")
    default = peft_default_targets(model_type) if model_type else None
    if default is not None and all(any(_matches(n, t) for n in layers) for t in default):
        how = _("peft's default for model_type {model_type!r}", model_type=model_type)
        targets = default
    else:
        targets = sorted({n.rsplit(".", 1)[-1] for n in layers
                          if any(w in part.lower() for part in n.split(".")[:-1] for w in ATTENTION_WORDS)})
        if not targets:
            raise LoraError(_("peft has no default LoRA targets for model_type {model_type!r} and no Linear layer sits "
                              "in an attention block. Pass target_modules with names from: {available}.",
                              model_type=model_type, available=available))
        how = _("no peft default for model_type {model_type!r}: every Linear inside attention "
                "(a parent named {names})", model_type=model_type, names=" / ".join(ATTENTION_WORDS))
    if verbose:
        print(_("LoRA target modules: {targets} ({how})", targets=targets, how=how))
    return targets, how


def lora_config(r: int = 8, lora_alpha: float = 32, lora_dropout: float = 0.1, target_modules=None,
                inference_mode: bool = False):
    """The seed's ``LoraConfig(task_type=CAUSAL_LM, inference_mode=False, r, lora_alpha=32, lora_dropout=0.1)``."""
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, inference_mode=inference_mode, r=r, lora_alpha=lora_alpha,
                      lora_dropout=lora_dropout, target_modules=target_modules)


def add_lora(model: nn.Module, r: int = 8, lora_alpha: float = 32, lora_dropout: float = 0.1,
             target_modules=None, verbose: bool = True):
    """``get_peft_model`` after checking the targets, then the trainable-parameter check
    (docs/failure-catalog.md#f14-nothing-trains)."""
    from peft import get_peft_model

    # A quantize(4/8) or pre-quantized base works too: its QuantizedLinear layers are nn.Linear to peft, which
    # adds float LoRA matrices beside the frozen codes (the seed's P-Tuning/LoRA-on-INT4 case, README "GPU").
    targets, _ = resolve_target_modules(model, target_modules, verbose=verbose)
    default = peft_default_targets(getattr(model.config, "model_type", ""))
    # leave target_modules out when peft's default applies, exactly as the seed does
    config = lora_config(r, lora_alpha, lora_dropout, None if targets == default else targets)
    peft_model = get_peft_model(model, config)
    check_trainable(peft_model)
    return peft_model


# ----------------------------------------------------------------------------------------------
# 4. Pre-flight checks (docs/failure-catalog.md#f14-nothing-trains)
# ----------------------------------------------------------------------------------------------
def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


def check_trainable(model: nn.Module) -> int:
    """Trainable parameters > 0, all of them LoRA's; returns the count."""
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise LoraError(
            f"the model has 0 trainable parameters (of {total:,}): nothing would learn. Typical causes: "
            f"LoraConfig(inference_mode=True), or PeftModel.from_pretrained(...) without is_trainable=True "
            f"when you meant to continue training."
        )
    return trainable


def check_lora_grads(model: nn.Module) -> float:
    """After a backward pass: some LoRA gradient is non-zero. Returns the largest |grad|.

    At step 1, B = 0 so A's gradient is exactly zero; B's is not, unless no gradient flows.
    """
    params = lora_parameters(model)
    if not params:
        raise LoraError("the model holds no LoRA parameters: wrap it with get_peft_model (or lora.add_lora) first.")
    grads = [p.grad.detach().abs().max().item() for p in params.values() if p.grad is not None]
    if any(not math.isfinite(g) for g in grads):
        return float("nan")  # gradients do flow, but the loss is broken: finetune's loss guard reports that
    largest = max(grads, default=0.0)
    if largest == 0.0:
        state = "no LoRA parameter received a gradient" if not grads else "every LoRA gradient is exactly 0"
        raise LoraError(
            f"after one training step {state}. With gradient checkpointing and a frozen base, the checkpointed "
            f"blocks' inputs do not require grad, so nothing is recorded: call model.enable_input_require_grads() "
            f"(the seed does), or use gradient_checkpointing_kwargs={{'use_reentrant': False}}. Also check that "
            f"the labels are not all -100."
        )
    return largest


# ----------------------------------------------------------------------------------------------
# 5. What the lesson's data asks of the tokenizer (notebook 05's look at the JSON answers)
# ----------------------------------------------------------------------------------------------


def copyable_fields(tokenizer, records) -> dict:
    """Per field, the share of records whose value, as tokenized inside the JSON target, also appears as
    the same token ids in the input. Such a value can be copied by attention; any other has to be
    re-spelled from different tokens (e.g. an input token '吴倩今年' for the output token '吴倩')."""
    def contains(haystack, needle):
        return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))

    counts = {"name": 0, "age": 0, "city": 0}
    for record in records:
        source = tokenizer.encode(record["input"], add_special_tokens=False)
        target = tokenizer(record["output"], add_special_tokens=False, return_offsets_mapping=True)
        value = json.loads(record["output"])
        for key in counts:
            text = str(value[key])
            start = record["output"].index(text, record["output"].index(f'"{key}": ') + len(key) + 4)
            end = start + len(text)
            piece = [i for i, (a, b) in zip(target["input_ids"], target["offset_mapping"]) if a < end and b > start]
            counts[key] += contains(source, piece)
    return {key: value / max(len(records), 1) for key, value in counts.items()}


GPT2_PIECES = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def pre_token_pieces(text: str, rule: str = "course") -> list[str]:
    """How a tokenizer's pre-tokenizer cuts ``text`` before BPE merges anything (BPE never merges across
    a cut). ``rule``: "course" (the course tokenizer's) or "gpt2" (GPT-2's, common in byte-level BPEs:
    a word keeps its leading space, and a run of Chinese characters is one piece)."""
    from tokenizers import Regex, pre_tokenizers

    from glmcourse.modeling.tokenization_chatglm import PIECES

    patterns = {"course": PIECES, "gpt2": GPT2_PIECES}
    if rule not in patterns:
        raise ValueError(f"rule={rule!r}: use one of {sorted(patterns)}")
    split = pre_tokenizers.Split(Regex(patterns[rule]), behavior="isolated")
    return [piece for piece, _ in split.pre_tokenize_str(text)]


def unseen_tokens(tokenizer, text: str, seen_texts) -> list[str]:
    """The tokens of ``text`` that occur nowhere in ``seen_texts`` (as tokenized there).

    A model has never been trained to *write* such a token: its output embedding is still near its
    random start, so fine-tuning has to teach the token itself, not just when to use it.
    """
    seen = {i for ids in tokenizer(list(seen_texts), add_special_tokens=False)["input_ids"] for i in ids}
    ids = tokenizer.encode(text, add_special_tokens=False)
    return [tokenizer.decode([i]) for i in dict.fromkeys(ids) if i not in seen]
