"""Lessons 05-06: LoRA, from the formula to a trained, saved, reloaded and merged adapter.

LoRA freezes a pretrained weight ``W`` (out x in) and learns a low-rank update next to it::

    y = W x + (B A x) * alpha / r        A: r x in (random),  B: out x r (zeros at the start)

so the model starts exactly as the base (B = 0) and training touches only ``r * (in + out)`` numbers
per adapted layer. ChatGLM-Tuning (the seed) adapts ``query_key_value`` with r=8, alpha=32,
dropout 0.1: 3,670,016 trainable parameters on ChatGLM-6B.

This module holds the lesson's from-scratch layer and everything around peft that goes wrong in
practice (known-failures #2, #13-#19): target modules that do not exist, adapters saved empty or
loaded without effect, a merge asked of an 8-bit base, and bitsandbytes without a usable backend.
``python -m glmcourse.finetune`` trains; ``bench_lora`` measures the lesson's figures.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from glmcourse.exercises import call_learner
from glmcourse.make_data import evenly_thinned, read_documents

# peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` inside get_peft_model and
# PeftModel.from_pretrained: a FutureWarning on every wrap that the learner cannot act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
# peft imports bitsandbytes, whose CPU backend logs a missing optional fused 4-bit kernel; its own
# CPU kernels are used instead (see glmcourse.quant.import_bitsandbytes).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_SAFETENSORS = "adapter_model.safetensors"
ADAPTER_BIN = "adapter_model.bin"
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
            raise LoraError(f"LoRA rank r={r}: it must be a positive integer (the seed uses 8).")
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
# 3. Which layers get adapters (known-failures #13)
# ----------------------------------------------------------------------------------------------
def peft_default_targets(model_type: str):
    """peft's built-in LoRA targets for a model type (chatglm -> ['query_key_value']), or None."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAPPING

    targets = MAPPING.get(model_type)
    return sorted(targets) if targets is not None else None


def resolve_target_modules(model: nn.Module, target_modules=None, verbose: bool = True):
    """Check or choose LoRA's target modules. Returns (targets, how they were chosen).

    * Given names must each match a Linear layer (a full name or a name ending in '.' + target);
      otherwise a LoraError lists the model's Linear layers (known-failures #13).
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
            hint = (f" For model_type {model_type!r}, peft's default is {default}: leave target_modules out to use it."
                    if default else " Use the last part of a name, e.g. 'query_key_value' or 'q_proj'.")
            raise LoraError(
                f"target_modules {missing} match no Linear layer of {type(model).__name__} "
                f"(model_type {model_type!r}). Its Linear layers are: {available}.{hint}"
            )
        return targets, "as given"
    default = peft_default_targets(model_type) if model_type else None
    if default is not None and all(any(_matches(n, t) for n in layers) for t in default):
        how = f"peft's default for model_type {model_type!r}"
        targets = default
    else:
        targets = sorted({n.rsplit(".", 1)[-1] for n in layers
                          if any(w in part.lower() for part in n.split(".")[:-1] for w in ATTENTION_WORDS)})
        if not targets:
            raise LoraError(
                f"peft has no default LoRA targets for model_type {model_type!r} and no Linear layer sits in an "
                f"attention block. Pass target_modules with names from: {available}."
            )
        how = (f"no peft default for model_type {model_type!r}: every Linear inside attention "
               f"(a parent named {' or '.join(ATTENTION_WORDS)})")
    if verbose:
        print(f"LoRA target modules: {targets} ({how})")
    return targets, how


def lora_config(r: int = 8, lora_alpha: float = 32, lora_dropout: float = 0.1, target_modules=None,
                inference_mode: bool = False):
    """The seed's ``LoraConfig(task_type=CAUSAL_LM, inference_mode=False, r, lora_alpha=32, lora_dropout=0.1)``."""
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, inference_mode=inference_mode, r=r, lora_alpha=lora_alpha,
                      lora_dropout=lora_dropout, target_modules=target_modules)


def add_lora(model: nn.Module, r: int = 8, lora_alpha: float = 32, lora_dropout: float = 0.1,
             target_modules=None, verbose: bool = True):
    """``get_peft_model`` after checking the targets, then the trainable-parameter check (#14)."""
    from peft import get_peft_model

    targets, _ = resolve_target_modules(model, target_modules, verbose=verbose)
    default = peft_default_targets(getattr(model.config, "model_type", ""))
    # leave target_modules out when peft's default applies, exactly as the seed does
    config = lora_config(r, lora_alpha, lora_dropout, None if targets == default else targets)
    peft_model = get_peft_model(model, config)
    check_trainable(peft_model)
    return peft_model


# ----------------------------------------------------------------------------------------------
# 4. Pre-flight checks (known-failures #14)
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
# 5. Adapters on disk: save, check, load (known-failures #16-#18)
# ----------------------------------------------------------------------------------------------
@dataclass
class AdapterSummary:
    path: str
    weights_file: str
    r: int
    lora_alpha: float
    target_modules: list
    base_model_name_or_path: str | None
    tensors: int
    parameters: int
    file_bytes: int
    max_abs_B: float
    shapes: dict = field(repr=False, default_factory=dict)

    def line(self) -> str:
        return (f"{self.weights_file}: {self.tensors} tensors ({self.tensors // 2} A/B pairs), "
                f"{self.parameters:,} parameters, {self.file_bytes / 1024:.1f} KiB, r={self.r}, "
                f"alpha={self.lora_alpha:g}, targets {self.target_modules}, max |B| = {self.max_abs_B:.3g}")


def adapter_folder(path) -> Path:
    """The folder of an adapter; a file, a missing folder or one without adapter_config.json explained (#17)."""
    path = Path(path)
    if path.is_file():
        where = path.parent
        if path.name in (ADAPTER_SAFETENSORS, ADAPTER_BIN, ADAPTER_CONFIG):
            raise LoraError(f"{path} is a file: pass the folder that holds it, {where}, as the adapter path.")
        raise LoraError(f"{path} is a file, not an adapter folder (a folder with {ADAPTER_CONFIG} and "
                        f"{ADAPTER_SAFETENSORS} or {ADAPTER_BIN}, as written by model.save_pretrained).")
    if not path.is_dir():
        raise LoraError(f"{path}: no such adapter folder. Train one with python -m glmcourse.finetune "
                        f"--dataset_path DIR --output_dir {path}, or check the path.")
    if not (path / ADAPTER_CONFIG).exists():
        weights = [n for n in (ADAPTER_SAFETENSORS, ADAPTER_BIN) if (path / n).exists()]
        checkpoints = sorted(p.name for p in path.glob("checkpoint-*") if (p / ADAPTER_CONFIG).exists())
        if weights:
            fix = (f"it has {weights[0]} but not the config that says which layers, rank and alpha the weights "
                   f"belong to. Save with model.save_pretrained(folder), which writes both, or write the config "
                   f"with lora.lora_config(r=...).save_pretrained('{path}') using the training's r and alpha.")
        elif checkpoints:
            fix = f"the adapters are in its checkpoints: pass {path / checkpoints[-1]}."
        else:
            fix = "nothing there looks like an adapter; pass the --output_dir of a finished training run."
        raise LoraError(f"{path}: no {ADAPTER_CONFIG}: {fix}")
    return path


def read_adapter_weights(path) -> tuple[dict, str]:
    """The adapter's tensors from adapter_model.safetensors (preferred) or adapter_model.bin."""
    path = adapter_folder(path)
    if (path / ADAPTER_SAFETENSORS).exists():
        from safetensors.torch import load_file

        name = ADAPTER_SAFETENSORS
        reader = lambda p: load_file(str(p))  # noqa: E731
    elif (path / ADAPTER_BIN).exists():
        name = ADAPTER_BIN
        reader = lambda p: torch.load(str(p), map_location="cpu", weights_only=True)  # noqa: E731
    else:
        raise LoraError(f"{path}: {ADAPTER_CONFIG} is there but no weights ({ADAPTER_SAFETENSORS} or "
                        f"{ADAPTER_BIN}): the save was interrupted or copied incompletely; save it again.")
    file = path / name
    if file.stat().st_size == 0:
        raise LoraError(f"{file} is empty (0 bytes): the save failed; save the adapter again.")
    try:
        return reader(file), name
    except Exception as err:
        raise LoraError(f"{file} could not be read ({type(err).__name__}: {err}); save the adapter again.") from None


def check_adapter(path, expect_trained: bool = True, model: nn.Module | None = None) -> AdapterSummary:
    """Re-read a saved adapter and check it (known-failures #16).

    It must hold LoRA A/B pairs with shapes A [r, in], B [out, r] (r from its config); after training
    some B must be non-zero (B = 0 is the untrained start: such an adapter changes nothing). With
    ``model``, the pair count must equal the number of the model's layers the config targets.
    """
    path = adapter_folder(path)
    config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    weights, name = read_adapter_weights(path)
    r = int(config.get("r", 0))
    a_keys = sorted(k for k in weights if ".lora_A." in k)
    b_keys = sorted(k for k in weights if ".lora_B." in k)
    if not a_keys or not b_keys:
        raise LoraError(
            f"{path / name} holds {len(weights)} tensors and no LoRA A/B pairs ({sorted(weights)[:4]}): the adapter "
            f"was saved empty. Save the PeftModel returned by get_peft_model (model.save_pretrained), not the base."
        )
    problems = []
    for a_key in a_keys:
        b_key = a_key.replace(".lora_A.", ".lora_B.")
        if b_key not in weights:
            problems.append(f"{a_key} has no matching {b_key}")
            continue
        a, b = weights[a_key], weights[b_key]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != r or b.shape[1] != r:
            problems.append(f"{a_key} {tuple(a.shape)} / lora_B {tuple(b.shape)}: "
                            f"expected A [r={r}, in] and B [out, r={r}]")
    if len(b_keys) != len(a_keys):
        problems.append(f"{len(a_keys)} lora_A tensors but {len(b_keys)} lora_B tensors")
    if problems:
        raise LoraError(f"{path / name} is inconsistent with its config (r={r}): " + "; ".join(problems[:5]))
    max_b = max(weights[k].abs().max().item() for k in b_keys)
    if expect_trained and max_b == 0.0:
        raise LoraError(
            f"{path / name}: every lora_B is zero, so the adapter changes nothing (this is the untrained start). "
            f"Training did not update it: check that the optimizer ran (max_steps > 0, learning_rate > 0) and "
            f"that the adapter was saved after training."
        )
    targets = config.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else sorted(targets)
    if model is not None:
        expected = sum(1 for n in linear_layers(model) if any(_matches(n, t) for t in targets))
        if expected != len(a_keys):
            raise LoraError(f"{path}: {len(a_keys)} A/B pairs saved, but the model has {expected} layers "
                            f"matching {targets}: the adapter belongs to another model or was saved partially.")
    return AdapterSummary(
        path=str(path), weights_file=name, r=r, lora_alpha=float(config.get("lora_alpha", 0)),
        target_modules=targets, base_model_name_or_path=config.get("base_model_name_or_path"),
        tensors=len(a_keys) + len(b_keys), parameters=sum(weights[k].numel() for k in a_keys + b_keys),
        file_bytes=(path / name).stat().st_size, max_abs_B=max_b,
        shapes={k: tuple(v.shape) for k, v in weights.items()},
    )


def save_adapter(model, output_dir, expect_trained: bool = True) -> AdapterSummary:
    """Save adapter_config.json + adapter_model.safetensors into ``output_dir``, atomically, then check them.

    The files are written to a hidden temp folder first, checked, and only then moved into place: an
    interrupted save never leaves a half-written adapter where the previous good one was (#16, #25).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", suffix=".tmp", dir=output_dir))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        check_adapter(tmp, expect_trained=expect_trained)
        for name in (ADAPTER_SAFETENSORS, ADAPTER_CONFIG):  # weights first: a config never points at nothing new
            os.chmod(tmp / name, 0o644)
            os.replace(tmp / name, output_dir / name)
        stale = output_dir / ADAPTER_BIN
        if stale.exists():
            stale.unlink()  # an old .bin beside the new .safetensors would only confuse
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return check_adapter(output_dir, expect_trained=expect_trained)


def model_key(file_key: str, adapter_name: str = "default") -> str:
    """Where a saved tensor lands in the model: '...lora_A.weight' -> '...lora_A.<adapter_name>.weight'."""
    return re.sub(r"\.(lora_[A-Za-z_]+)\.", rf".\1.{adapter_name}.", file_key, count=1)


def matched_keys(model: nn.Module, weights: dict, adapter_name: str = "default") -> dict:
    """How the adapter's tensors map onto the model's LoRA parameters, compared by value.

    Returns {"matched": [...], "not_in_model": [...], "not_in_file": [...], "different": [...]}.
    """
    params = {n: p for n, p in model.named_parameters() if ".lora_" in n and f".{adapter_name}." in n}
    report = {"matched": [], "not_in_model": [], "different": []}
    used = set()
    for key, tensor in weights.items():
        target = model_key(key, adapter_name)
        param = params.get(target)
        if param is None:
            report["not_in_model"].append(key)
        elif not torch.equal(param.detach().to(tensor.dtype).cpu(), tensor):
            report["different"].append(key)
            used.add(target)
        else:
            report["matched"].append(key)
            used.add(target)
    report["not_in_file"] = sorted(set(params) - used)
    return report


def load_adapter(model: nn.Module, adapter_dir, adapter_name: str = "default", is_trainable: bool = False,
                 verbose: bool = True):
    """``PeftModel.from_pretrained(model, adapter_dir)`` with the checks peft does not do (#17, #18).

    Accepts .safetensors or .bin; explains a missing config or a file given instead of a folder; and
    counts the adapter tensors that actually landed in the model. peft loads with strict=False, so a
    key mismatch would otherwise leave B = 0 and change nothing, silently: here it is an error.
    """
    from peft import PeftModel

    path = adapter_folder(adapter_dir)
    weights, name = read_adapter_weights(path)
    summary = check_adapter(path, expect_trained=False)
    try:
        peft_model = PeftModel.from_pretrained(model, str(path), adapter_name=adapter_name, is_trainable=is_trainable)
    except ValueError as err:  # e.g. the config's target modules do not exist in this model
        raise LoraError(f"{path}: peft could not apply this adapter to {type(model).__name__}: {err}. Its Linear "
                        f"layers are: {', '.join(linear_names(model))}.") from None
    report = matched_keys(peft_model, weights, adapter_name)
    total = len(weights)
    if report["not_in_model"] or report["different"] or report["not_in_file"]:
        sample = (report["not_in_model"] + report["different"])[:2]
        raise LoraError(
            f"{path / name}: only {len(report['matched'])} of {total} adapter tensors were applied to the model "
            f"({len(report['not_in_model'])} have no matching parameter, {len(report['different'])} did not load, "
            f"{len(report['not_in_file'])} LoRA parameters of the model got nothing; e.g. {sample}). The adapter "
            f"was saved from a differently wrapped or different model: its keys must look like "
            f"'base_model.model.<module path>.lora_A.weight'. Re-save it with model.save_pretrained(folder) from "
            f"the PeftModel."
        )
    if verbose:
        print(f"adapter loaded from {Path(path).name}/{name}: {len(report['matched'])}/{total} tensors matched; "
              f"r={summary.r}, alpha={summary.lora_alpha:g}, targets {summary.target_modules}")
    return peft_model


# ----------------------------------------------------------------------------------------------
# 6. Loading the base, 8-bit / 4-bit (known-failures #2), and merging (#19)
# ----------------------------------------------------------------------------------------------
def bnb_options(path) -> str:
    return (
        "Options: (1) leave out --load_in_8bit/--load_in_4bit: LoRA on the fp32 base is what the course model "
        "needs anyway (its fp32 weights are 17 MB); (2) use a smaller model in fp32; (3) on a machine with a "
        f"CUDA GPU, `pip install -U bitsandbytes` and load {path} there."
    )


def load_base_model(path=None, load_in_8bit: bool = False, load_in_4bit: bool = False):
    """The base model for LoRA: fp32, or bitsandbytes 8-bit (LLM.int8()) / 4-bit (NF4), on any device.

    ``load_in_8bit=True`` is the seed's ``AutoModel.from_pretrained(..., load_in_8bit=True)``, spelled
    the transformers 5 way (``quantization_config=BitsAndBytesConfig(load_in_8bit=True)``). On a CPU,
    bitsandbytes' CPU backend runs it. Without a usable backend: a LoraError with the options.
    """
    import glmcourse
    from transformers import AutoModelForCausalLM

    path = str(path or glmcourse.COURSE_MODEL)
    if load_in_8bit and load_in_4bit:
        raise LoraError("choose one of load_in_8bit and load_in_4bit, not both.")
    if not (load_in_8bit or load_in_4bit):
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    from transformers import BitsAndBytesConfig

    from glmcourse.quant import import_bitsandbytes

    kind = "8-bit" if load_in_8bit else "4-bit"
    try:
        import_bitsandbytes()
    except RuntimeError as err:
        reason = str(err).split(". Options:")[0]
        raise LoraError(f"loading {path} in {kind} needs bitsandbytes with a working backend: {reason}. "
                        f"{bnb_options(path)}") from None
    # LLM.int8() multiplies in fp16 by design and says so at every call on the CPU: known, not a problem.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    config = (BitsAndBytesConfig(load_in_8bit=True) if load_in_8bit else
              BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32))
    try:
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, dtype=torch.float32)
    except (RuntimeError, ImportError, AttributeError) as err:
        raise LoraError(f"bitsandbytes could not load {path} in {kind} here ({type(err).__name__}: {err}). "
                        f"{bnb_options(path)}") from None


def is_quantized(model: nn.Module) -> str | None:
    """'8-bit' or '4-bit' when bitsandbytes layers are inside the model, else None."""
    names = {type(m).__name__ for m in model.modules()}
    if "Linear8bitLt" in names or getattr(model, "is_loaded_in_8bit", False):
        return "8-bit"
    if "Linear4bit" in names or getattr(model, "is_loaded_in_4bit", False):
        return "4-bit"
    return None


def merge_lora(peft_model, base_path=None, reload_fp32: bool = True, verbose: bool = True):
    """``merge_and_unload()``: W + B A alpha/r baked into plain Linear layers, the adapter removed.

    On an fp32 base the result equals the adapter's outputs up to float rounding. On an 8-bit or 4-bit
    base the sum would be rounded back to 8 or 4 bits, losing most of the small LoRA update
    (known-failures #19), so this takes the fp32 path instead: it loads the base again in fp32 (from
    ``base_path`` or the adapter config's ``base_model_name_or_path``), applies the same adapter
    weights, checks they all landed, and merges there. Quantize the merged model afterwards if you
    need it small. ``reload_fp32=False`` refuses.
    """
    from peft import get_peft_model
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    kind = is_quantized(peft_model)
    if kind is None:
        return peft_model.merge_and_unload()
    name = peft_model.active_adapter
    config = peft_model.peft_config[name]
    base_path = base_path or config.base_model_name_or_path
    explain = (f"the base is {kind}: merging would round W + B A alpha/r back to {kind} and lose most of the LoRA "
               f"update. The fp32 path: load the base in fp32, load the adapter on it, merge there, then quantize "
               f"the merged model if needed")
    if not reload_fp32:
        raise LoraError(f"refusing to merge: {explain} (lora.merge_lora(model, base_path=...) does it for you).")
    if not base_path:
        raise LoraError(f"cannot merge: {explain}, but the base's path is unknown: pass base_path=.")
    weights = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(peft_model, adapter_name=name).items()}
    fp32 = get_peft_model(load_base_model(base_path), config.__class__(**{**config.to_dict(), "inference_mode": True}),
                          adapter_name=name)
    set_peft_model_state_dict(fp32, weights, adapter_name=name)
    report = matched_keys(fp32, weights, name)
    if len(report["matched"]) != len(weights) or report["not_in_file"]:
        raise LoraError(f"the adapter did not transfer to the fp32 base {base_path}: {len(report['matched'])} of "
                        f"{len(weights)} tensors matched.")
    if verbose:
        print(f"merge: {explain}. Done: merged into an fp32 copy of {Path(str(base_path)).name} "
              f"({len(weights)} adapter tensors).")
    return fp32.merge_and_unload().eval()


# ----------------------------------------------------------------------------------------------
# 7. Memory: LoRA against full fine-tuning
# ----------------------------------------------------------------------------------------------
def measure_training_memory(mode: str = "lora", steps: int = 3, batch_size: int = 8, seq_len: int = 48,
                            model_path=None) -> dict:
    """Train ``steps`` AdamW steps on random tokens; report peak RSS and the optimizer's state bytes.

    Peak RSS only grows within a process, so run each mode in a fresh one:
    ``python -m glmcourse.lora memory --mode lora`` (``memory_in_subprocess`` does that).
    """
    import resource
    import sys

    from glmcourse.settings import seed_everything

    seed_everything(0)
    model = load_base_model(model_path)
    if mode == "lora":
        model = add_lora(model, verbose=False)
    elif mode != "full":
        raise LoraError(f"mode={mode!r}: choose 'lora' or 'full'.")
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
    rss_unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"mode": mode, "trainable": trainable, "total": total,
            "optimizer_state_bytes": optimizer_state_bytes(optimizer), "gradient_bytes": grad_bytes,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * rss_unit}


def memory_in_subprocess(mode: str, **kwargs) -> dict:
    """``measure_training_memory`` in a fresh Python process (its own peak RSS)."""
    import subprocess
    import sys

    import glmcourse

    cmd = [sys.executable, "-m", "glmcourse.lora", "memory", "--mode", mode]
    for key, value in kwargs.items():
        cmd += [f"--{key}", str(value)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(glmcourse.REPO_ROOT), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# 8. Plots
# ----------------------------------------------------------------------------------------------
def plot_loss(log, ax=None, title: str = "LoRA training loss"):
    """Training loss (nats/token) against the optimizer step, from finetune's loss log."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    points = [(row["step"], row["loss"]) for row in log if "loss" in row]
    if points:
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker="o", markersize=3)
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (nats/token)")
    ax.grid(alpha=0.3)
    return ax


# ----------------------------------------------------------------------------------------------
# 9. The lesson's figures: base vs LoRA vs LoRA on an 8-bit base (`make bench`)
# ----------------------------------------------------------------------------------------------
def lora_records(name: str, limit: int | None = None) -> list[dict]:
    """data/lora_<name>.json ('train' or 'eval'), evenly thinned to ``limit`` records."""
    import glmcourse
    from glmcourse.data import load_alpaca

    return evenly_thinned(load_alpaca(glmcourse.DATA_DIR / f"lora_{name}.json"), limit)


def tokenize_lora_train(save_path, model_path=None, limit: int | None = None, max_seq_length: int = 128):
    """data/lora_train.json -> tokenized rows in ``save_path`` (lesson 04's pipeline); returns the path."""
    import glmcourse
    from glmcourse.data import build_params, format_example, save_tokenized, tokenize_examples
    from glmcourse.tokenize_dataset_rows import load_tokenizer

    tokenizer = load_tokenizer(model_path or glmcourse.COURSE_MODEL)
    examples = [format_example(r) for r in lora_records("train", limit)]
    rows, counts = tokenize_examples(tokenizer, examples, max_seq_length, False)
    params = build_params(tokenizer, glmcourse.DATA_DIR / "lora_train.json", max_seq_length, False)
    params["counts"] = counts | {"limit": limit}
    save_tokenized(rows, save_path, params)
    return Path(save_path)


def exact_match(model, tokenizer, records) -> tuple[float, list[str]]:
    """Held-out exact match on ChatGLM-Tuning prompts (glmcourse.evaluation.context_exact_match)."""
    from glmcourse.evaluation import context_exact_match

    return context_exact_match(model, tokenizer, records, max_new_tokens=40)


# What the notebooks train: the learner defaults, or a shorter run on fewer rows in fast mode (same code).
FAST_TRAIN_ROWS = 320
FAST_SETTINGS = dict(max_steps=80, save_steps=40, logging_steps=10)
FAST_EVAL_RECORDS = 32


def lesson_settings() -> dict:
    """finetune() keyword arguments for the notebooks: {} (the learner defaults) or the fast-mode run."""
    from glmcourse.settings import fast_or

    return fast_or(dict(FAST_SETTINGS), {})


def lesson_output_dir() -> Path:
    """Where notebook 05 saves its adapter and notebook 06 looks for it (fast and learner runs kept apart)."""
    import glmcourse
    from glmcourse.settings import fast_or

    return glmcourse.RUNS_DIR / fast_or("05_lora_fast", "05_lora")


def lesson_dataset() -> Path:
    """data/lora_train.json tokenized into runs/ (all 1200 rows; FAST_TRAIN_ROWS in fast mode); reused when fresh."""
    import glmcourse
    from glmcourse.data import DataError, load_tokenized
    from glmcourse.settings import fast_or
    from glmcourse.tokenize_dataset_rows import load_tokenizer

    limit = fast_or(FAST_TRAIN_ROWS, None)
    path = glmcourse.RUNS_DIR / fast_or("lora_train_tok_fast", "lora_train_tok")
    try:
        _, params = load_tokenized(path, tokenizer=load_tokenizer(glmcourse.COURSE_MODEL),
                                   source_path=glmcourse.DATA_DIR / "lora_train.json")
        if params.get("counts", {}).get("limit") == limit:
            return path
    except DataError:
        pass
    return tokenize_lora_train(path, limit=limit)


def ensure_adapter(output_dir=None, callbacks=()) -> Path:
    """The lesson's adapter: reused when ``output_dir`` holds a valid trained one, else trained now."""
    from glmcourse import finetune

    output_dir = Path(output_dir or lesson_output_dir())
    try:
        check_adapter(output_dir)
        print(f"using the adapter in runs/{output_dir.name} (trained by notebook 05)")
        return output_dir
    except LoraError as err:
        reason = str(err).split(":", 1)[-1].strip()[:80]
        print(f"no usable adapter in runs/{output_dir.name} ({reason}...); training one")
    finetune.finetune(lesson_dataset(), output_dir, overwrite=True, callbacks=callbacks, **lesson_settings())
    return output_dir


def side_by_side(records, columns: dict, limit: int = 5, width: int = 46) -> None:
    """Print input, expected output and each model's reply (✓ = exact match) for the first ``limit`` records."""
    def cut(text):
        text = text.replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    for i, record in enumerate(records[:limit]):
        print(f"[{i}] {record['instruction']} {record['input']}")
        print(f"    {'expected':<12} {cut(record['output'])}")
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


def base_training_texts() -> list[str]:
    """The text the course model was trained on: data/corpus.txt and data/course_chat.json's records."""
    import glmcourse

    chat = json.loads((glmcourse.DATA_DIR / "course_chat.json").read_text(encoding="utf-8"))
    turns = [text for r in chat for text in [r["instruction"], r.get("input", ""), r["output"]]
             + [t for pair in r.get("history", []) for t in pair] if text]
    return read_documents(glmcourse.DATA_DIR / "corpus.txt") + turns


def unseen_tokens(tokenizer, text: str, seen_texts) -> list[str]:
    """The tokens of ``text`` that occur nowhere in ``seen_texts`` (as tokenized there).

    A model has never been trained to *write* such a token: its output embedding is still near its
    random start, so fine-tuning has to teach the token itself, not just when to use it.
    """
    seen = {i for ids in tokenizer(list(seen_texts), add_special_tokens=False)["input_ids"] for i in ids}
    ids = tokenizer.encode(text, add_special_tokens=False)
    return [tokenizer.decode([i]) for i in dict.fromkeys(ids) if i not in seen]


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
    print(f"{f'{len(records)} held-out records':<24}" + "".join(f"{n:>12}" for n in names))
    for key in columns[names[0]]:
        unit = "%" if key.endswith("%") else ""
        label = key.removesuffix(" %") + (" (nats/token)" if key == "held-out loss" else "")
        print(f"{label:<24}" + "".join(f"{columns[n][key]:>11.{1 if unit else 3}f}{unit or ' '}" for n in names))


def bench_lora(work_dir=None, eval_limit: int | None = None, with_8bit: bool = True, **train_overrides) -> dict:
    """The issue's figures in learner mode: tokenize lora_train, train with the learner defaults on the
    fp32 and on the 8-bit base, and score base / fp32 LoRA / 8-bit LoRA on data/lora_eval.json.
    """
    import glmcourse
    from glmcourse import finetune
    from glmcourse.settings import seed_everything
    from transformers import AutoTokenizer

    work_dir = Path(work_dir or glmcourse.RUNS_DIR / "bench_lora")
    data_dir = tokenize_lora_train(work_dir / "lora_train_tok")
    tokenizer = AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL)
    records = lora_records("eval", eval_limit)
    out = {"eval records": len(records)}
    seed_everything(0)
    out.update({f"base {k}": v for k, v in score(load_base_model().eval(), tokenizer, records)[0].items()})
    runs = [("fp32", {})] + ([("8-bit", {"load_in_8bit": True})] if with_8bit else [])
    for label, extra in runs:
        seed_everything(0)
        result = finetune.finetune(dataset_path=data_dir, output_dir=work_dir / f"lora_{label}",
                                   overwrite=True, **extra, **train_overrides)
        base = load_base_model(load_in_8bit=extra.get("load_in_8bit", False))
        model = load_adapter(base, result["output_dir"], verbose=False).eval()
        start = time.perf_counter()
        out.update({f"{label} LoRA {k}": v for k, v in score(model, tokenizer, records)[0].items()})
        out[f"{label} LoRA eval s"] = time.perf_counter() - start
        out[f"{label} LoRA training s"] = result["train_seconds"]
        out[f"{label} LoRA training CPU s"] = result["train_cpu_seconds"]
        out[f"{label} LoRA steps"] = result["global_step"]
        out[f"{label} LoRA final training loss"] = result["final_loss"]
        out[f"{label} adapter KiB"] = result["adapter"]["file_bytes"] / 1024
    out["load average (1 min)"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return out


# ----------------------------------------------------------------------------------------------
# 10. Exercise checkers (notebooks 05 and 06)
# ----------------------------------------------------------------------------------------------
def _close(got, want, what: str, atol: float = 1e-5):
    assert torch.is_tensor(got), f"{what}: return a torch.Tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    err = (got.float() - want.float()).abs().max().item()
    assert err <= atol, f"{what}: largest difference from the expected values is {err:.3g}"


def check_lora_param_count(fn) -> None:
    """fn(in_features, out_features, r) -> trainable LoRA parameters of one adapted Linear layer."""
    for n_in, n_out, r in [(256, 768, 8), (4096, 12288, 8), (10, 20, 1), (64, 64, 16)]:
        got = call_learner(fn, n_in, n_out, r)
        want = nn.Linear(n_in, r, bias=False).weight.numel() + nn.Linear(r, n_out, bias=False).weight.numel()
        assert got == want, (f"fn({n_in}, {n_out}, r={r}) = {got}, expected {want}: A is r x in and B is out x r "
                             f"(no biases); the frozen W ({n_out * n_in:,}) does not count")


def check_lora_forward(fn) -> None:
    """fn(x, W, b, A, B, alpha, r) -> W x + b + (B A x) alpha / r, batched over x's leading dims."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=gen)
    W, b = torch.randn(24, 16, generator=gen), torch.randn(24, generator=gen)
    A, B = torch.randn(4, 16, generator=gen), torch.randn(24, 4, generator=gen)
    base = nn.Linear(16, 24)
    with torch.no_grad():
        base.weight.copy_(W)
        base.bias.copy_(b)
    layer = LoRALinear(base, r=4, alpha=8)
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    got = call_learner(fn, x, W, b, A, B, 8, 4)
    assert torch.is_tensor(got), f"return a tensor, got {type(got).__name__}"
    if got.shape == layer(x).shape:
        plain = x @ W.T + b + x @ A.T @ B.T
        assert not torch.allclose(got, plain, atol=1e-4), "scale the low-rank branch by alpha / r (here 8 / 4 = 2)"
    _close(got, layer(x).detach(), "W x + b + (B A x) * alpha / r", atol=1e-4)


def check_merge_weight(fn) -> None:
    """fn(W, A, B, alpha, r) -> the merged weight W + (B @ A) * alpha / r."""
    gen = torch.Generator().manual_seed(1)
    W, A, B = torch.randn(12, 6, generator=gen), torch.randn(2, 6, generator=gen), torch.randn(12, 2, generator=gen)
    got = call_learner(fn, W, A, B, 16, 2)
    assert torch.is_tensor(got), f"return a tensor, got {type(got).__name__}"
    if got.shape == (12, 12) or got.shape == (6, 6):
        raise AssertionError("the update is B @ A (out x r times r x in = out x in), not A @ B")
    _close(got, W + B @ A * 8, "W + (B @ A) * alpha / r")
    assert torch.equal(W, torch.randn(12, 6, generator=torch.Generator().manual_seed(1))), "do not modify W in place"


def check_optimizer_state_bytes(fn) -> None:
    """fn(trainable_params, bytes_per_value=4) -> AdamW's state bytes: two moments per parameter."""
    for n, width in [(32_768, 4), (3_670_016, 4), (6_173_286_400, 2), (1, 4)]:
        got = call_learner(fn, n, width)
        want = 2 * n * width
        assert got == want, (f"fn({n:,}, {width}) = {got}, expected {want:,}: AdamW keeps exp_avg and exp_avg_sq, "
                             f"one value each per trainable parameter")


def check_model_key(fn) -> None:
    """fn(file_key, adapter_name) -> the model parameter a saved adapter tensor loads into."""
    cases = [
        ("base_model.model.transformer.layers.0.attention.query_key_value.lora_A.weight", "default",
         "base_model.model.transformer.layers.0.attention.query_key_value.lora_A.default.weight"),
        ("base_model.model.transformer.layers.3.attention.query_key_value.lora_B.weight", "json",
         "base_model.model.transformer.layers.3.attention.query_key_value.lora_B.json.weight"),
        ("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", "default",
         "base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight"),
    ]
    for key, name, want in cases:
        got = call_learner(fn, key, name)
        assert got == want, f"fn({key!r}, {name!r}) = {got!r}, expected {want!r}"


def check_adapter_bytes(fn) -> None:
    """fn(num_layers, hidden_size, r) -> bytes of an fp32 LoRA adapter on query_key_value (h -> 3h)."""
    from glmcourse.modeling import course_config

    for layers, hidden, r in [(4, 256, 8), (28, 4096, 8), (2, 64, 4)]:
        config = course_config(num_layers=layers, hidden_size=hidden, num_attention_heads=8 if hidden >= 64 else 4,
                               inner_hidden_size=4 * hidden)
        want = 4 * lora_parameter_count(config, r=r)
        got = call_learner(fn, layers, hidden, r)
        assert got == want, (f"fn({layers}, {hidden}, r={r}) = {got}, expected {want:,}: per layer A is r x h, "
                             f"B is 3h x r, 4 bytes per fp32 value")


def check_parse_person(fn) -> None:
    """fn(reply) -> {"name", "age", "city"} for a valid one-line JSON reply, else None."""
    good = '{"name": "Anna", "age": 31, "city": "Oslo"}'
    assert call_learner(fn, good) == {"name": "Anna", "age": 31, "city": "Oslo"}, f"fn({good!r}) should give the dict"
    assert call_learner(fn, ' ' + good + ' ') == {"name": "Anna", "age": 31, "city": "Oslo"}, "surrounding spaces are fine"
    for bad, why in [('{"name": "Anna", "age": 31', "cut-off JSON"), ("Anna is 31", "not JSON"),
                     ('{"name": "Anna", "age": "31", "city": "Oslo"}', "age must be a number"),
                     ('{"name": "Anna", "age": 31}', "city is missing"), ("[1, 2]", "not an object")]:
        got = call_learner(fn, bad)
        assert got is None, f"fn({bad!r}) = {got!r}: expected None ({why})"


# ----------------------------------------------------------------------------------------------
def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m glmcourse.lora")
    sub = parser.add_subparsers(dest="command", required=True)
    mem = sub.add_parser("memory", help="peak RSS and optimizer state of a few training steps (one JSON line)")
    mem.add_argument("--mode", choices=["lora", "full"], default="lora")
    mem.add_argument("--steps", type=int, default=3)
    mem.add_argument("--batch_size", type=int, default=8)
    mem.add_argument("--seq_len", type=int, default=48)
    mem.add_argument("--model_path", default=None)
    check = sub.add_parser("check", help="check a saved adapter folder")
    check.add_argument("path")
    args = parser.parse_args(argv)
    try:
        if args.command == "memory":
            kwargs = {k: v for k, v in vars(args).items() if k != "command"}
            print(json.dumps(measure_training_memory(**kwargs)))
        else:
            print(check_adapter(args.path).line())
    except LoraError as err:
        print(f"error: {err}", file=__import__("sys").stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
