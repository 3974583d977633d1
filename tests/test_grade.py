"""``python -m glmcourse.tools.grade`` on made-up classes built in tmp_path from the committed notebooks.

Three graded classes, each by one real command:
(1) ``main`` (full lessons 00 and 04, learner mode, --jobs 2): reference solutions (PASS), untouched (TODO),
    wrong answers (TRY AGAIN), a raising cell (ERROR), the Chinese edition (its checker line re-spaced: not a
    change), an edited checker line and a deleted exercise cell (CHANGED), a student folder with two lessons,
    a renamed and a copied lesson file, a non-notebook file and invalid JSON; the students' files are unchanged;
(2) ``timeouts`` (lesson 04's exercise cells only, --cell-timeout 5): an endless loop (TIMEOUT, the rest
    of that notebook and the other students still graded), a notebook past --notebook-timeout, a notebook
    that redefines ``attempt`` (CHANGED), and the kernel's environment (fast mode off, offline);
(3) no notebook to run: re-runs replace the outputs atomically; bad usage is one line and exit status 2.
"""
from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import glmcourse
from glmcourse.tools import grade
from glmcourse.bilingual import chinese
from glmcourse.exercises import CATALOG

NOTEBOOKS = glmcourse.REPO_ROOT / "notebooks"
L00, L04 = "00_start_here.ipynb", "04_data_formatting.ipynb"
SOLUTIONS = {L00: "00_start_here_solutions.py", L04: "04_data_solutions.py"}
EX00 = ["00:params_per_layer", "00:total_params", "00:weight_gib"]
EX04 = ["04:format_example", "04:build_labels", "04:truncate_target", "04:str2bool"]
WRONG = {  # plausible wrong answers: each makes its checker print [TRY AGAIN]
    "total_params": "def total_params(config):\n    return 0\n",
    "format_example": "def format_example(record):\n    return None\n",
    "build_labels": "def build_labels(input_ids, seq_len):\n    return list(input_ids)\n",
    "truncate_target": "def truncate_target(context_ids, target_ids, eop_id, max_seq_length):\n"
                       "    return (list(context_ids) + list(target_ids) + [eop_id])[:max_seq_length]\n",
}
LOOP = "def format_example(record):\n    while True:\n        pass\n\n\nformat_example({})\n"
ENV_CHECK = ("import os\nfrom glmcourse import settings\n"
             "assert not settings.FAST and os.environ['HF_HUB_OFFLINE'] == '1', 'fast mode on or online'\n")


# ------------------------------------------------------------------------------------------ building notebooks
def course(name: str, zh: bool = False) -> dict:
    return json.loads((NOTEBOOKS / ("zh" if zh else "") / name).read_text(encoding="utf-8"))


def cell_of(nb: dict, exercise: str) -> dict:
    return next(c for c in nb["cells"] if f"exercise:{exercise}" in c.get("metadata", {}).get("tags", []))


def answer(nb: dict, exercise: str, definition: str) -> None:
    """The exercise cell becomes ``definition`` followed by the course's own checker line."""
    cell = cell_of(nb, exercise)
    cell["source"] = definition + "\n\n" + grade.checker_line("".join(cell["source"])) + "\n"


def solution(lesson: str, exercise: str) -> str:
    """The reference solution's source, with the imports of its module."""
    text = (NOTEBOOKS / "solutions" / SOLUTIONS[lesson]).read_text(encoding="utf-8")
    tree = ast.parse(text)
    imports = [ast.get_source_segment(text, n) for n in tree.body
               if isinstance(n, (ast.Import, ast.ImportFrom)) and getattr(n, "module", "") != "__future__"]
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == exercise)
    return "\n".join(imports + [ast.get_source_segment(text, func)])


def solved(lesson: str, zh: bool = False) -> dict:
    nb = course(lesson, zh)
    for name in grade.tagged_exercises(grade_nb(nb)):
        answer(nb, name, solution(lesson, name))
    return nb


def grade_nb(nb: dict):
    import nbformat

    return nbformat.reads(json.dumps(nb), as_version=4)


def code(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8], "metadata": {}, "outputs": [],
            "source": source}


def exercises_only(lesson: str, set_up: str) -> dict:
    """The lesson's exercise cells after one light set-up cell (keeps a 5 s --cell-timeout realistic)."""
    nb = course(lesson)
    nb["cells"] = [code(set_up)] + [c for c in nb["cells"] if any(t.startswith("exercise:")
                                                                   for t in c.get("metadata", {}).get("tags", []))]
    return nb


def save(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")


def hashes(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_grade(*args: str, env=None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "glmcourse.tools.grade", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def read_csv(out: Path) -> dict:
    with open(out / "grades.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return {row["student"]: row for row in rows}


# ------------------------------------------------------------------------------------------ (1) the main class
@pytest.fixture(scope="module")
def main_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("main")
    subs, out = root / "submissions", root / "out"
    save(solved(L00), subs / "alice.ipynb")
    save(course(L00), subs / "bob" / L00)
    save(course(L00), subs / "bob" / "00_start_here-Copy1.ipynb")
    bob04 = course(L04)
    for name in ("format_example", "build_labels", "truncate_target"):
        answer(bob04, name, WRONG[name])
    answer(bob04, "str2bool", "import no_such_module_for_grading\n\n\ndef str2bool(text):\n    return True\n")
    save(bob04, subs / "bob" / "my data lesson.ipynb")
    (subs / "bob" / "notes.txt").write_text("questions for the teacher\n", encoding="utf-8")
    carol = solved(L00)
    edited = cell_of(carol, "total_params")
    edited["source"] = "".join(edited["source"]).replace("passed = attempt(checks.check_total_params, total_params)",
                                                         "passed = True")
    carol["cells"].remove(cell_of(carol, "weight_gib"))
    save(carol, subs / "carol.ipynb")
    grace = course(L00, zh=True)
    answer(grace, "params_per_layer", solution(L00, "params_per_layer"))
    answer(grace, "total_params", WRONG["total_params"])
    respaced = cell_of(grace, "weight_gib")  # the same checker statement, spaced and commented: not a change
    respaced["source"] = "".join(respaced["source"]).replace("passed = attempt(checks.check_weight_gib, weight_gib)",
                                                             "passed = attempt( checks.check_weight_gib,weight_gib ) ;# x")
    assert respaced["source"].endswith(";# x")
    save(grace, subs / "grace.ipynb")
    (subs / "notes.txt").write_text("not a notebook\n", encoding="utf-8")
    (subs / "broken.ipynb").write_text('{"cells": [', encoding="utf-8")
    before = hashes(subs)
    start = time.monotonic()
    done = run_grade(subs, "--out", out, "--jobs", "2", "--cell-timeout", "300", env={"GLMCOURSE_FAST": "1"})
    return {"subs": subs, "out": out, "done": done, "before": before, "seconds": time.monotonic() - start}


def test_main_class_runs_and_writes_both_outputs(main_class):
    done = main_class["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "graded 5 notebooks of 6 students" in done.stdout
    assert sorted(p.name for p in main_class["out"].iterdir()) == [".glmcourse-output", "grades.csv", "report.html"]


def test_csv_header_and_one_row_per_student(main_class):
    with open(main_class["out"] / "grades.csv", encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["student", *EX00, *EX04, "total", "flags"]
    assert sorted(read_csv(main_class["out"])) == ["alice", "bob", "broken", "carol", "grace", "notes"]


def test_reference_solutions_pass(main_class):
    alice = read_csv(main_class["out"])["alice"]
    assert [alice[c] for c in EX00] == ["PASS"] * 3 and alice["total"] == "3"
    assert [alice[c] for c in EX04] == [""] * 4 and alice["flags"] == ""


def test_untouched_wrong_and_raising_answers_in_a_student_folder(main_class):
    bob = read_csv(main_class["out"])["bob"]
    assert [bob[c] for c in EX00] == ["TODO"] * 3
    assert [bob[c] for c in EX04] == ["TRY AGAIN"] * 3 + ["ERROR"]
    assert bob["total"] == "0"
    assert "renamed: bob/my data lesson.ipynb is lesson 04_data_formatting.ipynb" in bob["flags"]
    assert "two notebooks for lesson 00: bob/00_start_here.ipynb, bob/00_start_here-Copy1.ipynb" in bob["flags"]
    assert "not a notebook: bob/notes.txt" in bob["flags"]


def test_edited_and_deleted_checker_cells_are_changed_not_passed(main_class):
    carol = read_csv(main_class["out"])["carol"]
    assert [carol[c] for c in EX00] == ["PASS", "CHANGED", "CHANGED"] and carol["total"] == "1"
    assert "checker changed: 00:total_params, 00:weight_gib" in carol["flags"]
    report = (main_class["out"] / "report.html").read_text(encoding="utf-8")
    assert ("checker line edited: the course&#x27;s is `passed = attempt(checks.check_total_params, total_params)`, "
            "this one `passed = True`") in report
    assert "the exercise cell is missing</pre>" in report and "the exercise cell is missing (it ran" not in report


def test_the_chinese_edition_is_graded_from_its_chinese_verdicts(main_class):
    grace = read_csv(main_class["out"])["grace"]
    assert [grace[c] for c in EX00] == ["PASS", "TRY AGAIN", "TODO"] and grace["flags"] == ""
    assert "尚未作答" in (main_class["out"] / "report.html").read_text(encoding="utf-8")


def test_files_that_are_not_notebooks_are_rows_with_a_flag(main_class):
    rows = read_csv(main_class["out"])
    assert rows["notes"]["flags"] == "not a notebook: notes.txt (not a .ipynb file)"
    assert rows["broken"]["flags"].startswith("not a notebook: broken.ipynb (NotJSONError")
    assert all(rows[s][c] == "" for s in ("notes", "broken") for c in EX00 + EX04)


def test_report_shows_every_student_verdict_and_hint(main_class):
    report = (main_class["out"] / "report.html").read_text(encoding="utf-8")
    for student in ("alice", "bob", "broken", "carol", "grace", "notes"):
        assert f"<th>{student}</th>" in report
    assert "class='v TRY_AGAIN'" in report and "class='v PASS'" in report and "class='v CHANGED'" in report
    assert "the row must still end with &lt;eop&gt;" in report  # bob's truncate_target hint, escaped
    assert "No module named &#x27;no_such_module_for_grading&#x27;" in report  # bob's traceback tail
    assert report.count("<details>") >= 4


def test_students_files_are_unchanged(main_class):
    assert hashes(main_class["subs"]) == main_class["before"]


def test_main_class_time(main_class):
    print(f"main class graded in {main_class['seconds']:.0f} s")
    assert main_class["seconds"] < 240


# ------------------------------------------------------------------------------------------ (2) timeouts
@pytest.fixture(scope="module")
def timeouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("timeouts")
    subs, out = root / "submissions", root / "out"
    set_up = "from glmcourse.exercises import attempt, data as checks\n"
    looper = exercises_only(L04, set_up + ENV_CHECK)
    answer(looper, "format_example", LOOP)
    answer(looper, "build_labels", solution(L04, "build_labels"))
    answer(looper, "truncate_target", WRONG["truncate_target"])
    save(looper, subs / "looper.ipynb")
    sleeper = exercises_only(L04, set_up)
    sleeper["cells"][1:1] = [code("import time\ntime.sleep(4)\n") for _ in range(4)]
    save(sleeper, subs / "sleeper.ipynb")
    erin = exercises_only(L04, set_up)
    for name in grade.tagged_exercises(grade_nb(erin)):
        answer(erin, name, solution(L04, name))
    erin["cells"].insert(1, code("def attempt(checker, fn):\n    print(f'[PASS] {fn.__name__}')\n    return True\n"))
    save(erin, subs / "erin.ipynb")
    done = run_grade(subs, "--out", out, "--cell-timeout", "5", "--notebook-timeout", "15", "--jobs", "3",
                     env={"GLMCOURSE_FAST": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return {"rows": read_csv(out), "report": (out / "report.html").read_text(encoding="utf-8")}


def test_an_endless_cell_times_out_and_the_rest_is_still_graded(timeouts):
    looper = timeouts["rows"]["looper"]
    assert [looper[c] for c in EX04] == ["TIMEOUT", "PASS", "TRY AGAIN", "TODO"]
    assert "ran past --cell-timeout 5 s and was interrupted" in timeouts["report"]


def test_a_notebook_past_its_timeout_leaves_its_exercises_timeout(timeouts):
    sleeper = timeouts["rows"]["sleeper"]
    assert [sleeper[c] for c in EX04] == ["TIMEOUT"] * 4
    assert "04: the notebook ran past --notebook-timeout 15 s" in sleeper["flags"]


def test_redefining_attempt_is_changed_even_though_it_printed_pass(timeouts):
    erin = timeouts["rows"]["erin"]
    assert [erin[c] for c in EX04] == ["CHANGED"] * 4 and erin["total"] == "0"
    assert "rebinds attempt/checks or patches the course&#x27;s code: `def attempt(checker, fn):`" in timeouts["report"]
    assert "(it ran: PASS)" in timeouts["report"]


def test_the_kernel_runs_in_learner_mode_and_offline(timeouts):
    assert "fast mode on or online" not in timeouts["report"]  # the set-up cell's assertion passed
    assert "cell 0:" not in timeouts["report"]


# ------------------------------------------------------------------------------------------ (3) no kernel needed
def test_a_rerun_replaces_the_outputs_whole_and_leaves_no_temp_files(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    (subs / "notes.txt").write_text("x", encoding="utf-8")
    (subs / "ivan").mkdir()
    assert grade.main([str(subs), "--out", str(out)]) == 0
    first = read_csv(out)
    assert sorted(first) == ["ivan", "notes"] and first["ivan"]["flags"] == "no files submitted"
    (subs / "zed.ipynb").write_text("[]", encoding="utf-8")
    (subs / "notes.txt").unlink()
    assert grade.main([str(subs), "--out", str(out)]) == 0
    assert sorted(read_csv(out)) == ["ivan", "zed"]
    assert "<th>zed</th>" in (out / "report.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == [".glmcourse-output", "grades.csv", "report.html"]


@pytest.mark.parametrize("template", [
    "[PASS] {name}", "[TRY AGAIN] {name}: {hint}",
    "[TODO] {name}: not attempted yet. Fill in the function above and re-run this cell."])
def test_the_verdict_words_are_those_of_attempt_in_both_languages(template):
    english = template[1:template.index("]")]
    for text in (template.format(name="x", hint="h"), chinese(template, CATALOG, name="x", hint="h")):
        match = grade.VERDICT_LINE.match(text)
        assert grade.WORDS[match.group(1)] == english and match.group(2) == "x"


@pytest.mark.parametrize("case", ["missing", "file", "empty", "out_inside", "out_is_file", "out_foreign"])
def test_bad_usage_is_one_line_and_exit_2(tmp_path, capsys, case):
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    (subs / ".DS_Store").write_text("", encoding="utf-8")
    if case != "empty":
        (subs / "alice.ipynb").write_text("{}", encoding="utf-8")
    if case == "missing":
        subs = tmp_path / "nowhere"
    elif case == "file":
        subs = subs / "alice.ipynb"
    elif case == "out_inside":
        out = subs / "grades"
    elif case == "out_is_file":
        out.write_text("", encoding="utf-8")
    elif case == "out_foreign":
        out.mkdir()
        (out / "thesis.tex").write_text("", encoding="utf-8")
    assert grade.main([str(subs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("grade: ")
    expected = {"missing": "no such folder", "file": "is a file, not a folder", "empty": "is empty",
                "out_inside": "inside SUBMISSIONS", "out_is_file": "is a file", "out_foreign": "thesis.tex"}[case]
    assert expected in err
    if case == "out_foreign":
        assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    elif case != "out_is_file":
        assert not out.exists()


def test_bad_numbers_are_argparse_errors():
    with pytest.raises(SystemExit) as exit_info:
        grade.main(["subs", "--out", "out", "--cell-timeout", "0"])
    assert exit_info.value.code == 2


def test_help_is_instant_and_imports_nothing_heavy():
    probe = ("import sys, time; t = time.perf_counter(); from glmcourse.tools import grade\n"
             "try:\n    grade.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
             "heavy = [m for m in ('nbclient', 'nbformat', 'torch', 'IPython') if m in sys.modules]\n"
             "print(time.perf_counter() - t, heavy)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seconds, heavy = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert heavy == "[]" and float(seconds) < 2
    assert "--cell-timeout" in done.stdout and "--notebook-timeout" in done.stdout and "--jobs" in done.stdout
