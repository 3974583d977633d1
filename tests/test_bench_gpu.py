"""``python -m glmcourse.bench gpu``: the GPU memory command, run here as its CPU-sized dry run
(the same code: meta-device build, to_empty, quantize, generate, one LoRA and one P-Tuning v2 step)."""
from __future__ import annotations

import json

import pytest
import torch

from glmcourse import bench
from glmcourse.bench import gpu


def test_without_cuda_one_line_and_exit_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["gpu"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA device" in out[0]


def test_bad_cases_are_refused_before_any_model(capsys):
    assert gpu.main(["--cases", "fp16,int3"]) == 2
    assert "unknown ['int3']" in capsys.readouterr().err


def test_random_model_is_built_on_the_device_tied_and_initialized():
    from glmcourse.modeling import course_config

    config = course_config(vocab_size=64, hidden_size=32, num_layers=2, num_attention_heads=4, inner_hidden_size=64)
    model = gpu.build_random_model(config, "cpu", torch.float16, seed=1)
    assert model.lm_head.weight is model.transformer.word_embeddings.weight
    assert all(p.device.type == "cpu" and p.dtype == torch.float16 for p in model.parameters())
    assert torch.equal(model.transformer.layers[0].input_layernorm.weight, torch.ones(32, dtype=torch.float16))
    assert model.transformer.layers[1].mlp.dense_h_to_4h.bias.abs().max() == 0
    std = model.transformer.layers[0].attention.query_key_value.weight.float().std().item()
    assert 0.015 < std < 0.025
    again = gpu.build_random_model(config, "cpu", torch.float16, seed=1)
    assert torch.equal(again.transformer.word_embeddings.weight, model.transformer.word_embeddings.weight)


def test_dry_run_measures_every_case(tmp_path, capsys):
    from glmcourse.modeling import course_config

    assert bench.main(["gpu", "--dry-run", "--json", str(tmp_path / "gpu.json")]) == 0
    out = capsys.readouterr().out
    assert "ChatGLM memory on CPU (dry run" in out and "13 GB" in out and "7 GB" in out
    saved = json.loads((tmp_path / "gpu.json").read_text(encoding="utf-8"))
    rows = {r["case"]: r for r in saved["rows"]}
    assert list(rows) == list(gpu.CASES) and saved["dry_run"] is True
    assert not any(r["note"].startswith("failed") for r in rows.values())
    sizes = gpu.Sizes.dry()
    config = course_config()
    for case in ("fp16", "int8", "int4"):
        assert rows[case]["extra"]["tokens"] == sizes.total_len  # the generation ran to the full length
    # the model shrinks with the bits (the dry run reports the model's bytes in that column)
    assert rows["int4"]["peak_allocated_gib"] < rows["int8"]["peak_allocated_gib"] < rows["fp16"]["peak_allocated_gib"]
    h, layers = config.hidden_size, config.num_layers
    assert rows["lora_int4"]["extra"]["trainable"] == layers * sizes.lora_r * (h + 3 * h)
    assert rows["ptuning_int4"]["extra"]["trainable"] == sizes.pre_seq_len * layers * 2 * h
    for row in rows.values():
        assert row["estimate_gib"] > 0 and row["smi_gib"] > 0 and row["seconds"] > 0
    assert rows["ptuning_int4"]["published_gb"] == 7 and rows["lora_int4"]["published_gb"] is None
    assert rows["int4"]["estimate_gib"] == pytest.approx(
        gpu.estimates(config, sizes)["int4"])  # the estimate uses the case's own settings
