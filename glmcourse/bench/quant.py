"""``make bench`` figures of lesson 02 (quantization)."""
from __future__ import annotations

import torch

from glmcourse.course_data import heldout_documents, heldout_records
from glmcourse.evaluation import compare_quantized, heldout_batches, heldout_loss
from glmcourse.loading import load_bnb_model, load_course_model
from glmcourse.quant import model_bytes, sqnr_db


def bench_quant(path: str | None = None, limit: int | None = None, answers: int = 64,
                with_bitsandbytes: bool = True) -> dict:
    """The issue's figures on the course model, as a flat dict (for ``make bench`` and the notebook).

    Keys: ``fp32_loss``; per variant ``<name> loss increase %``, ``<name> bytes ratio`` and
    ``<name> answer agreement %``; with bitsandbytes, ``bnb <kind> ...`` footprint ratio and logits
    error (or ``bnb error`` with the reason).
    """
    from glmcourse.settings import seed_everything

    seed_everything(0)
    model, tokenizer = load_course_model(path)
    records, documents = heldout_records(), heldout_documents(limit=limit)
    answer_records = records[:: max(1, len(records) // answers)][:answers] if answers else None
    table = compare_quantized(model, tokenizer, documents, answer_records=answer_records)
    out = {"heldout documents": len(documents), "fp32 loss": table["fp32"]["loss"]}
    for name, row in table.items():
        if name == "fp32":
            continue
        out[f"{name} loss increase %"] = 100 * row["loss_increase"]
        out[f"{name} bytes ratio"] = row["bytes_ratio"]
        if row["agreement"] is not None:
            out[f"{name} answer agreement %"] = 100 * row["agreement"]
    if with_bitsandbytes:
        try:
            out.update(bench_bitsandbytes(model, tokenizer, documents, path))
        except RuntimeError as err:
            out["bnb error"] = str(err)
    return out


@torch.no_grad()
def bench_bitsandbytes(model, tokenizer, records, path: str | None = None) -> dict:
    """bitsandbytes int8 and NF4 loads of the same model: memory vs fp32, logits error, held-out loss."""
    batches = heldout_batches(tokenizer, records)
    reference = torch.cat([model(input_ids=b["input_ids"]).logits.flatten() for b in batches])
    base_loss = heldout_loss(model, batches)
    out = {}
    for kind in ("int8", "nf4"):
        qmodel = load_bnb_model(path, kind)
        logits = torch.cat([qmodel(input_ids=b["input_ids"]).logits.float().flatten() for b in batches])
        out[f"bnb {kind} memory ratio"] = model_bytes(qmodel) / model_bytes(model)
        out[f"bnb {kind} logits sqnr dB"] = sqnr_db(reference, logits)
        out[f"bnb {kind} loss increase %"] = 100 * (heldout_loss(qmodel, batches) / base_loss - 1)
        del qmodel
    return out


