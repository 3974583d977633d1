"""Lesson 06: a trained LoRA adapter on disk: save it, check what it holds, load it into a base (with the
matched-key count, never a silent ``strict=False``), and merge it into the weights.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from glmcourse.i18n import _
from glmcourse.loading import load_base_model
from glmcourse.lora import LoraError, _matches, linear_layers, linear_names

ADAPTER_CONFIG = "adapter_config.json"


ADAPTER_SAFETENSORS = "adapter_model.safetensors"


ADAPTER_BIN = "adapter_model.bin"


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
        return _("{file}: {tensors} tensors ({pairs} A/B pairs), {parameters:,} parameters, {kib:.1f} KiB, r={r}, "
                 "alpha={alpha:g}, targets {targets}, max |B| = {max_b:.3g}", file=self.weights_file,
                 tensors=self.tensors, pairs=self.tensors // 2, parameters=self.parameters, kib=self.file_bytes / 1024,
                 r=self.r, alpha=self.lora_alpha, targets=self.target_modules, max_b=self.max_abs_B)


def adapter_folder(path) -> Path:
    """The folder of an adapter; a file, a missing folder or one without adapter_config.json explained
    (docs/failure-catalog.md#f17-unusable-adapter-folder)."""
    path = Path(path)
    if path.is_file():
        where = path.parent
        if path.name in (ADAPTER_SAFETENSORS, ADAPTER_BIN, ADAPTER_CONFIG):
            raise LoraError(_("{path} is a file: pass the folder that holds it, {where}, as the adapter path.",
                              path=path, where=where))
        raise LoraError(_("{path} is a file, not an adapter folder (a folder with {config} and {safetensors} or "
                          "{bin}, as written by model.save_pretrained).", path=path, config=ADAPTER_CONFIG,
                          safetensors=ADAPTER_SAFETENSORS, bin=ADAPTER_BIN))
    if not path.is_dir():
        raise LoraError(_("{path}: no such adapter folder. Train one with python -m glmcourse.finetune "
                          "--dataset_path DIR --output_dir {path}, or check the path.", path=path))
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
    """Re-read a saved adapter and check it (docs/failure-catalog.md#f16-empty-adapter).

    It must hold LoRA A/B pairs with shapes A [r, in], B [out, r] (r from its config); after training
    some B must be non-zero (B = 0 is the untrained start: such an adapter changes nothing). With
    ``model``, the pair count must equal the number of the model's layers the config targets.
    """
    path = adapter_folder(path)
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as err:  # truncated or overwritten, e.g. by an interrupted copy
        raise LoraError(f"{path / ADAPTER_CONFIG}: damaged, not the JSON peft writes ({err}); copy the adapter folder "
                        f"again, or save it again with model.save_pretrained(folder) from the PeftModel.") from None
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
    interrupted save never leaves a half-written adapter where the previous good one was (docs/failure-catalog.md: F16, F25).
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
    """``PeftModel.from_pretrained(model, adapter_dir)`` with the checks peft does not do (docs/failure-catalog.md: F17, F18).

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
    except RuntimeError as err:  # "size mismatch for ...": trained on a base of other sizes
        if "size mismatch" not in str(err):
            raise
        first = str(err).split("size mismatch for", 1)[1].split(".", 1)[0].strip() if "size mismatch for" in str(err) else ""
        raise LoraError(f"{path}: this adapter was trained on another base model: its tensors do not fit this "
                        f"model's layers (first mismatch: {first or 'a LoRA weight'}). Load it into the base it was "
                        f"trained on (its adapter_config.json names base_model_name_or_path), or train a new one.") from None
    if summary.max_abs_B == 0:
        import warnings

        warnings.warn(f"{path}: every LoRA B matrix is zero, so this adapter changes nothing (it was saved before "
                      f"any training step); train it, or load the adapter of a finished run.", stacklevel=2)
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
        print(_("adapter loaded from {folder}/{file}: {matched}/{total} tensors matched; "
                "r={r}, alpha={alpha:g}, targets {targets}", folder=Path(path).name, file=name,
                matched=len(report["matched"]), total=total, r=summary.r, alpha=summary.lora_alpha,
                targets=summary.target_modules))
    return peft_model


def is_quantized(model: nn.Module) -> str | None:
    """'8-bit' or '4-bit' when bitsandbytes layers are inside the model, 'int8/int4 (quantize)' for the
    course's QuantizedLinear (model.quantize or a quantization_bit folder), else None."""
    bits = sorted({m.bits for m in model.modules() if type(m).__name__ == "QuantizedLinear"})
    if bits:
        return f"int{bits[0]} (ChatGLM's quantize)"
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
    (docs/failure-catalog.md#f19-merge-on-quantized-base), so this takes the fp32 path instead: it loads the base again in fp32 (from
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
    explain = _("the base is {kind}: merging would round W + B A alpha/r back to {kind} and lose most of the LoRA "
                "update. The fp32 path: load the base in fp32, load the adapter on it, merge there, then quantize "
                "the merged model if needed", kind=kind)
    if not reload_fp32:
        raise LoraError(_("refusing to merge: {explain} (adapters.merge_lora(model, base_path=...) does it for you).",
                          explain=explain))
    if not base_path:
        raise LoraError(_("cannot merge: {explain}, but the base's path is unknown: pass base_path=.", explain=explain))
    weights = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(peft_model, adapter_name=name).items()}
    reloaded = load_base_model(base_path)
    if is_quantized(reloaded):  # e.g. the adapter was trained on a quantization_bit=4 folder
        raise LoraError(_("cannot merge: {explain}; but {base_path} is itself pre-quantized ({kind}). Pass base_path= the "
                          "fp16 folder of the same model (python -m glmcourse.thudm_format --out DIR writes one), or keep "
                          "the adapter separate: PeftModel.from_pretrained(base, adapter).", explain=explain,
                          base_path=base_path, kind=is_quantized(reloaded)))
    fp32 = get_peft_model(reloaded, config.__class__(**{**config.to_dict(), "inference_mode": True}),
                          adapter_name=name)
    set_peft_model_state_dict(fp32, weights, adapter_name=name)
    report = matched_keys(fp32, weights, name)
    if len(report["matched"]) != len(weights) or report["not_in_file"]:
        raise LoraError(_("the adapter did not transfer to the fp32 base {base_path}: {matched} of {total} tensors "
                          "matched.", base_path=base_path, matched=len(report["matched"]), total=len(weights)))
    if verbose:
        print(_("merge: {explain}. Done: merged into an fp32 copy of {base} ({tensors} adapter tensors).",
                explain=explain, base=Path(str(base_path)).name, tensors=len(weights)))
    return fp32.merge_and_unload().eval()


def build_parser():
    from glmcourse.cli import INPUT_DIR, CourseParser

    parser = CourseParser(prog="python -m glmcourse.adapters", description=main.__doc__)
    parser.add_argument("path", kind=INPUT_DIR, help="a saved adapter folder (adapter_config.json + weights)")
    return parser


def main(argv=None) -> int:
    """``python -m glmcourse.adapters PATH``: check a saved adapter folder and print what it holds."""
    args = build_parser().parse_args(argv)
    try:
        print(check_adapter(args.path).line())
    except LoraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
