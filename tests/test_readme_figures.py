"""The READMEs' lesson times and memory figures come from docs/course_times.json (`make course`).

Every figure is checked in README.md and in README.zh-CN.md, so that after a lesson is re-measured these
tests name every sentence, in either language, that still quotes the old run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
README_ZH = (REPO / "README.zh-CN.md").read_text(encoding="utf-8")
RECORD = json.loads((REPO / "docs" / "course_times.json").read_text(encoding="utf-8"))
RUNS = RECORD["notebooks"]
READMES = {"README.md": README, "README.zh-CN.md": README_ZH}
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


def decimals(number: str) -> int:
    return len(number.partition(".")[2])


@pytest.mark.parametrize("readme", READMES, ids=str)
@pytest.mark.parametrize("run", RUNS, ids=lambda r: r["notebook"][:2])
def test_lessons_table_is_the_latest_run(run, readme):
    """Peak RAM is the latest run's; the time range holds the latest run, to the precision quoted."""
    name = re.escape(run["notebook"].removesuffix(".ipynb"))
    row = one(rf"(?m)^\| `{name}` \|.*\| ([\d.]+)-([\d.]+) (s|min) \| (\d+) MiB \|$", READMES[readme])
    low, high, unit, peak = row.groups()
    assert int(peak) == round(run["peak_rss_mib"]), (
        f"{readme}'s lessons table: {run['notebook']} peaks at {run['peak_rss_mib']:.0f} MiB in docs/course_times.json")
    latest = round(run["wall_s"] / (60 if unit == "min" else 1), decimals(high))
    assert float(low) <= latest <= float(high), (
        f"{readme}'s lessons table: {run['notebook']} took {run['wall_s']} s in docs/course_times.json, "
        f"outside {low}-{high} {unit}")


@pytest.mark.parametrize("readme, total_s, minutes", [
    ("README.md", r"\((\d+) s summed over the latest runs", r"The whole course takes (\d+)-(\d+) minutes of compute"),
    ("README.zh-CN.md", r"最近各次运行合计 (\d+) 秒", r"整门课程的计算时间为 (\d+)-(\d+) 分钟"),
])
def test_whole_course_time_is_the_sum_of_the_latest_runs(readme, total_s, minutes):
    total = sum(run["wall_s"] for run in RUNS)
    assert int(one(total_s, READMES[readme]).group(1)) == round(total), f"{readme}: the runs sum to {total:.0f} s"
    low, high = map(int, one(minutes, READMES[readme]).groups())
    assert low <= total / 60 <= high, f"{readme}: {total / 60:.1f} min is outside {low}-{high} minutes"


@pytest.mark.parametrize("readme, pattern", [
    ("README.md", r"A lesson's compute is (\d+) s to about (\d+) minutes"),
    ("README.zh-CN.md", r"一课的计算时间从 (\d+) 秒到约 (\d+) 分钟"),
])
def test_lesson_compute_range_is_the_shortest_and_longest_run(readme, pattern):
    shortest, longest = (f(run["wall_s"] for run in RUNS) for f in (min, max))
    assert tuple(map(int, one(pattern, READMES[readme]).groups())) == (round(shortest), round(longest / 60))


@pytest.mark.parametrize("readme, pattern", [
    ("README.md", r"re-measured alone at load ([\d.]+)"),
    ("README.zh-CN.md", r"在负载 ([\d.]+) 下单独重测"),
])
def test_load_average_is_the_recorded_one(readme, pattern):
    assert float(one(pattern, READMES[readme]).group(1)) == RECORD["load_average_1min"]


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
