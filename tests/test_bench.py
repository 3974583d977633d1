"""The bench registry: sections run in order, print figures with units, and one failure is contained."""
from __future__ import annotations

import json

import pytest

from glmcourse import bench


@pytest.fixture
def sections(monkeypatch):
    registry = []
    monkeypatch.setattr(bench, "SECTIONS", registry)
    return registry


def test_sections_print_figures_with_units(sections, capsys, tmp_path):
    @bench.section("alpha speed")
    def alpha():
        return [bench.Figure("tokens per second", 1234.5, "tokens/s", "batch 4")]

    @bench.section("beta memory")
    def beta():
        return [bench.Figure("peak memory", 0.25, "GiB")]

    out_file = tmp_path / "figs.json"
    assert bench.main(["--json", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert out.index("alpha speed") < out.index("beta memory")
    assert "1,234.5 tokens/s  (batch 4)" in out and "0.25 GiB" in out
    saved = json.loads(out_file.read_text())
    assert saved["beta memory"][0] == {"name": "peak memory", "value": 0.25, "unit": "GiB", "note": ""}


def test_only_filters_and_a_broken_section_is_reported(sections, capsys):
    @bench.section("works")
    def ok():
        return [bench.Figure("x", 1.0, "s")]

    @bench.section("breaks")
    def broken():
        raise RuntimeError("no model")

    assert bench.main(["--only", "works"]) == 0
    assert "breaks" not in capsys.readouterr().out
    assert bench.main([]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] RuntimeError: no model" in out and "1 s" in out


def test_matmul_peak_is_the_first_figure():
    assert bench.SECTIONS[0][0] == "machine"


def test_best_time_takes_the_minimum(monkeypatch):
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    assert bench.best_time(lambda: None, repeats=3, warmup=0) == 1.0


def test_lesson_result_dicts_become_figures_with_units():
    figs = bench.figures_from({"latency_s": 1.5, "tokens_per_s": 20.0, "int8 loss increase %": 0.4,
                               "int4 bytes ratio": 0.16, "bnb nf4 logits sqnr dB": 18.0, "fp32 loss": 2.3,
                               "device": "cpu", "ok": True})
    got = {(f.name, f.unit) for f in figs}
    assert got == {("latency", "s"), ("tokens per s", "tokens/s"), ("int8 loss increase", "%"),
                   ("int4 bytes ratio", "x (of fp32)"), ("bnb nf4 logits sqnr", "dB"), ("fp32 loss", "nats/token")}
    assert figs[0].note == "device: cpu"
