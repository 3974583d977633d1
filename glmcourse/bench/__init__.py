"""Performance figures for the course: ``python -m glmcourse.bench`` (or ``make bench``).

Each figure is printed with its unit. Sections register themselves with ``@section``; a section is a
function that returns a list of ``Figure``. To add one (a lesson's speed or memory number)::

    @section("02 quantization")
    def quantization_figures():
        ...
        return [Figure("int8 matmul", seconds * 1e3, "ms", "1024x1024, best of 5")]

Sections run in the order they are defined; ``--only TEXT`` runs those whose title contains TEXT,
``--json PATH`` also saves the figures. Keep each section to a few seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""

    def line(self) -> str:
        value = f"{self.value:,.1f}" if abs(self.value) >= 10 else f"{self.value:.3g}"
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.name:<44} {value:>12} {self.unit}{note}"


SECTIONS: list[tuple[str, object]] = []


def section(title: str):
    """Register a function returning list[Figure] under ``title``."""
    def register(fn):
        SECTIONS.append((title, fn))
        return fn
    return register


def best_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Best wall time of ``fn()`` in seconds (the best run is the least disturbed by other work)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---------------------------------------------------------------------------- sections
@section("machine")
def machine_figures():
    """fp32 matmul peak: the ceiling every CPU number in the course should be read against."""
    import torch

    torch.manual_seed(0)
    figures = []
    peak = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        repeats = 10 if n < 2048 else 3
        seconds = best_time(lambda: torch.mm(a, b), repeats=repeats)
        gflops = 2 * n**3 / seconds / 1e9  # n^3 multiply-adds
        peak = max(peak, gflops)
        figures.append(Figure(f"fp32 matmul {n}x{n}", gflops, "GFLOP/s", f"{seconds * 1e3:.1f} ms, best of {repeats}"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    figures.insert(0, Figure("fp32 matmul peak", peak, "GFLOP/s",
                             f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
                             f"{platform.machine()}, 1-min load average {load:.1f}"))
    return figures


# The seed's commands, and the course's own; those marked False never need a model for --help.
COMMANDS = {"cover_alpaca2jsonl": False, "tokenize_dataset_rows": False, "finetune": False, "cli_demo": False,
            "web_demo": False, "bench": False, "tools.make_data": False, "tools.nbtools": False, "tools.grade": False,
            "tools.site": False, "tools.build_course_model": True}
HELP_GOAL_S = 1.0


@section("command start-up (--help)")
def help_figures():
    """Wall time of ``python -m glmcourse.X --help``: what a learner waits before the first line of output."""
    import subprocess

    figures = []
    for command, needs_model in COMMANDS.items():
        def run():
            subprocess.run([sys.executable, "-m", f"glmcourse.{command}", "--help"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = best_time(run, repeats=3, warmup=1)
        goal = "" if needs_model else f"goal <= {HELP_GOAL_S:g} s" + ("" if seconds <= HELP_GOAL_S else ", MISSED")
        figures.append(Figure(f"{command} --help", seconds, "s", goal))
    return figures


def unit_for(key: str) -> str:
    """The unit a lesson's result key carries, read off its name (``latency_s``, ``... %``, ``... dB``)."""
    k = key.lower()
    if k.endswith("per_s"):
        return "tokens/s"
    if k.endswith("_s") or k.endswith(" s"):
        return "s"
    if k.endswith("%"):
        return "%"
    if k.endswith("db"):
        return "dB"
    if "ratio" in k:
        return "x (of fp32)"
    if k.endswith("loss"):
        return "nats/token"
    if k.endswith("chars"):
        return "characters"
    if k.endswith("tokens"):
        return "tokens"
    if k.endswith("records"):
        return "records"
    if k.endswith("documents"):
        return "documents"
    if k.endswith("steps"):
        return "steps"
    if k.endswith("kib"):
        return "KiB"
    return ""


def figures_from(results: dict, drop_suffix: tuple = ("%", " s", "_s", " dB")) -> list[Figure]:
    """Numbers of a lesson's result dict as Figures (units from the key); text values become notes."""
    notes = "; ".join(f"{k}: {v}" for k, v in results.items() if isinstance(v, str))
    figures = []
    for key, value in results.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value is None:
            continue
        name = key
        for suffix in drop_suffix:
            if name.endswith(suffix) and not name.endswith("per_s"):
                name = name[: -len(suffix)].rstrip()
        figures.append(Figure(name.replace("_", " "), float(value), unit_for(key)))
    if figures and notes:
        figures[0].note = (figures[0].note + "; " if figures[0].note else "") + notes
    return figures


@section("course model (build, generation, held-out quality)")
def course_model_figures():
    from glmcourse.bench.course_model import bench_course_model

    r = bench_course_model()
    return [
        Figure("greedy generate, 128 new tokens, KV cache", r["cache_s"], "s"),
        Figure("greedy generate, 128 new tokens, no cache", r["no_cache_s"], "s"),
        Figure("KV cache speed-up", r["cache_speedup"], "x"),
        Figure("chat exact match, held-out questions", r["chat_em_pct"], "%", "data/chat_eval.json, greedy"),
        Figure("blank-infilling token accuracy, held-out", r["infill_pct"], "%", "data/corpus_eval.txt"),
        Figure("LoRA skill exact match, base model", r["lora_skill_pct"], "%", "data/lora_eval.json"),
        Figure("recall of a name in no training list", r["unseen_name_recall_pct"], "%",
               "16 names, e.g. 我叫小明。 then 我叫什么名字？"),
        Figure("third turn after the seed's two-turn demo", r["third_turn_pct"], "%",
               "same reply as the question asked alone; 4 queries"),
        Figure("training throughput (build loop)", r["train_tokens_per_s"], "tokens/s", "20 steps"),
        Figure("training model FLOP rate", r["train_gflops"], "GFLOP/s"),
        Figure("fp32 matmul peak, same run", r["peak_gflops"], "GFLOP/s"),
        Figure("training fraction of matmul peak", r["fraction_pct"], "%"),
        Figure("shipped model build time", r["build_s"] / 60, "min", "training_log.json"),
    ]


@section("02 quantization (course model, held-out data)")
def quantization_figures():
    from glmcourse.bench.quant import bench_quant

    return figures_from(bench_quant())


@section("03 chat (course model)")
def chat_figures():
    from glmcourse.bench.chat import bench_chat

    return figures_from(bench_chat())


@section("05-06 LoRA (learner defaults, fp32 and 8-bit base, all 240 held-out records)")
def lora_figures():
    from glmcourse.bench.lora import bench_lora

    return figures_from(bench_lora())


@section("07 P-Tuning v2 vs LoRA (learner defaults, same base and data, all 240 held-out records)")
def ptuning_figures():
    from glmcourse.bench.ptuning import bench_ptuning

    return figures_from(bench_ptuning())


# ---------------------------------------------------------------------------- running
def run(only: str | None = None) -> dict[str, list[Figure]]:
    results = {}
    for title, fn in SECTIONS:
        if only and only.lower() not in title.lower():
            continue
        print(f"{title}", flush=True)
        try:
            figures = fn()
        except Exception as exc:  # one broken section must not hide the others
            print(f"  [FAIL] {type(exc).__name__}: {exc}", flush=True)
            results[title] = []
            continue
        for fig in figures:
            print(fig.line(), flush=True)
        results[title] = figures
    return results


def _only_arg(text: str) -> str:
    """``--only`` must match at least one section title (case-insensitive), else argparse names the choices."""
    if not any(text.lower() in title.lower() for title, _ in SECTIONS):
        shown = "; ".join(repr(title.split(" (")[0]) for title, _ in SECTIONS)
        raise argparse.ArgumentTypeError(f"{text!r} matches no section; pass part of a section title: {shown} "
                                         f"(e.g. --only LoRA).")
    return text


def build_parser():
    from glmcourse.cli import OUTPUT_FILE, CourseParser

    parser = CourseParser(prog="python -m glmcourse.bench", description="Print the course's performance figures.")
    parser.add_argument("--only", type=_only_arg, kind="choice",
                        help="run only sections whose title contains this text")
    parser.add_argument("--json", kind=OUTPUT_FILE, owned=_is_bench_json,
                        help="also write the figures to this JSON file (replaces only an earlier bench JSON)")
    return parser


def _is_bench_json(path) -> bool:
    from pathlib import Path

    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(value, dict) and all(isinstance(v, list) for v in value.values())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gpu"]:  # python -m glmcourse.bench gpu: ChatGLM-6B's GPU memory, measured (bench/gpu.py)
        from glmcourse.bench.gpu import main as gpu_main

        return gpu_main(argv[1:])
    args = build_parser().parse_args(argv)
    print(f"glmcourse bench: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    results = run(args.only)
    if args.json:
        payload = {title: [asdict(f) for f in figs] for title, figs in results.items()}
        from glmcourse.files import atomic_write

        with atomic_write(args.json) as f:
            json.dump(payload, f, indent=2)
    failed = [title for title, figs in results.items() if not figs]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
