"""The README's lesson times and memory figures come from docs/course_times.json (`make course`).

After a lesson is re-measured, these tests name every README sentence that still quotes the old run.
(README.zh-CN.md's lessons table is checked against README.md's by test_readme_zh.py.)
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
README_ZH = (REPO / "README.zh-CN.md").read_text(encoding="utf-8")
RUNS = json.loads((REPO / "docs" / "course_times.json").read_text(encoding="utf-8"))["notebooks"]
PEAK = {run["notebook"][:2]: run["peak_rss_mib"] for run in RUNS}
LOWEST, HIGHEST = min(PEAK, key=PEAK.get), max(PEAK, key=PEAK.get)
MIB_PER_GIB = 1024
PLAN_GIB = 2  # the instructors' plan per student
SERVER_GIB = 0.2  # a student's JupyterLab server, as the README adds it


def one(pattern: str, text: str) -> re.Match:
    found = list(re.finditer(pattern, text))
    assert len(found) == 1, f"expected one sentence matching {pattern!r}, found {len(found)}"
    return found[0]


def mib(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r["notebook"][:2])
def test_lessons_table_peak_ram_is_the_latest_run(run):
    row = one(rf"(?m)^\| `{re.escape(run['notebook'].removesuffix('.ipynb'))}` \|.*\| (\d+) MiB \|$", README)
    assert int(row.group(1)) == round(run["peak_rss_mib"]), (
        f"README.md's lessons table: {run['notebook']} peaks at {run['peak_rss_mib']:.0f} MiB in docs/course_times.json")


def test_whole_course_time_is_the_sum_of_the_latest_runs():
    total = sum(run["wall_s"] for run in RUNS)
    quoted = one(r"\((\d+) s summed over the latest runs", README)
    assert int(quoted.group(1)) == round(total)
    low, high = map(int, one(r"The whole course takes (\d+)-(\d+) minutes of compute", README).groups())
    assert low <= total / 60 <= high


def test_hungriest_notebook_is_named_with_its_peak():
    gib = f"{PEAK[HIGHEST] / MIB_PER_GIB:.1f}"
    english = one(r"the hungriest notebook, (\d\d), peaks at ([\d.]+) GiB", README)
    chinese = one(r"最耗内存的 notebook (\d\d) 峰值为 ([\d.]+) GiB", README_ZH)
    for found in (english, chinese):
        assert found.groups() == (HIGHEST, gib)


def test_memory_per_student_covers_the_hungriest_lesson():
    english = one(r"peaks at ([\d,]+) MiB \(lesson (\d\d)\) to ([\d,]+) MiB \(lesson (\d\d)", README)
    chinese = one(r"在 ([\d,]+) MiB（第 (\d\d) 课）到 ([\d,]+) MiB（第 (\d\d) 课）", README_ZH)
    for found in (english, chinese):
        low, low_lesson, high, high_lesson = found.groups()
        assert (low_lesson, high_lesson) == (LOWEST, HIGHEST)
        assert (mib(low), mib(high)) == (round(PEAK[LOWEST]), round(PEAK[HIGHEST]))
    assert f"Plan **{PLAN_GIB} GiB of RAM per student**" in README and f"按每人 **{PLAN_GIB} GiB**" in README_ZH
    assert PEAK[HIGHEST] / MIB_PER_GIB + SERVER_GIB <= PLAN_GIB
