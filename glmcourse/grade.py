"""``python -m glmcourse.grade SUBMISSIONS --out DIR``: run the class's notebooks, grade every exercise.

SUBMISSIONS holds one notebook per student (``alice.ipynb``: the student is the file's stem) or one folder
per student (``bob/02_quantization.ipynb``: the folder's name). A notebook is matched to its lesson by its
exercise cells (tag ``exercise:<function>``), so a renamed file is still graded (and flagged "renamed").
Each runs in learner mode (GLMCOURSE_FAST unset, offline) in a fresh kernel, cell by cell: a cell that
fails or loops (interrupted after --cell-timeout) costs only its own exercise. The student's file is only read.

Verdicts: PASS, TRY AGAIN, TODO (what ``attempt`` printed, English or 中文), ERROR (the exercise cell
raised), TIMEOUT, and CHANGED, never counted as passed: the exercise cell is gone, its last line (the
``attempt(checks.check_..., ...)`` checker line) differs from the course's, or the notebook rebinds
``attempt`` or ``checks`` where the course does not.

Working directory: a scratch ``notebooks/`` folder per run whose ``solutions`` and ``../data`` lead to the
course's, so paths behave as in the lesson while stray files land in scratch (deleted afterwards). Lessons
that use the course's runs/ (datasets, adapters: 04-07) reuse and rewrite it as a learner's run does, so
those notebooks run one at a time whatever --jobs says.

Writes DIR/grades.csv (a row per student, a column per exercise, total = PASS count, flags) and
DIR/report.html (colour-coded, each student's hints one click away), each atomically; a re-run replaces both.
"""
from __future__ import annotations

import argparse
import ast
import csv
import html
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

import glmcourse
from glmcourse.cli import UsageError, check_output_dir, int_arg, one_line, run_cli
from glmcourse.files import OUTPUT_MARKER, atomic_write, write_marker

COURSE_NOTEBOOKS = glmcourse.REPO_ROOT / "notebooks"
OUTPUTS = ("grades.csv", "report.html")
TAG = "exercise:"
GUARDED = {"attempt", "checks"}  # the names every checker line relies on
# What attempt() prints, in English and as i18n/zh_CN/exercises.po translates it.
WORDS = {"PASS": "PASS", "通过": "PASS", "TRY AGAIN": "TRY AGAIN", "再试一次": "TRY AGAIN",
         "TODO": "TODO", "待完成": "TODO"}
VERDICT_LINE = re.compile(r"^\[(" + "|".join(WORDS) + r")\] (\w+)(?:[:：] ?|$)", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_OUTPUT_CHARS = 200_000  # per cell: an endless print() loop keeps only its latest output
PROBE_TIMEOUT_S = 30  # after interrupting a cell, how long the kernel has to answer again
TIMED_OUT = "CellTimedOut"  # the ename of the stand-in reply for an interrupted cell
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
              "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GLMCOURSE_QUIET": "1"}
RUNS_LOCK = threading.Lock()  # one notebook at a time in the course's runs/
RUNNING = set()  # the clients whose kernels run now: Ctrl-C stops those kernels


@dataclass
class Lesson:
    path: Path  # the course's notebook
    checkers: dict  # exercise name -> its checker line, in lesson order
    guards: set  # the course's own statements that bind attempt/checks
    uses_runs: bool

    @property
    def number(self) -> str:
        return self.path.name[:2]

    def column(self, name: str) -> str:
        return f"{self.number}:{name}"


@dataclass
class Result:
    verdict: str
    note: str = ""


@dataclass
class Task:  # one notebook to run
    student: str
    path: Path
    nb: object
    lesson: Lesson
    results: dict = field(default_factory=dict)  # column -> Result
    flags: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # for the report's details only


# ------------------------------------------------------------------------------------------ notebooks
def read_notebook(path):
    """(notebook, None), or (None, why it is not a notebook)."""
    import warnings

    import nbformat

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.read(str(path), as_version=4)
        if not isinstance(nb.get("cells"), list) or not all(
                isinstance(c, dict) and isinstance(c.get("source"), str) for c in nb.cells):
            return None, "no list of cells with source text"
    except Exception as err:  # noqa: BLE001 - invalid JSON, not UTF-8, not an nbformat notebook
        return None, f"{type(err).__name__}: {one_line(err)[:200]}"
    for cell in nb.cells:
        cell.setdefault("metadata", {})
    return nb, None


def code_cells(nb):
    return [(i, c) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]


def tagged_exercises(nb) -> dict:
    """Exercise name -> index of its (last) tagged code cell."""
    found = {}
    for index, cell in code_cells(nb):
        for tag in cell.metadata.get("tags") or []:
            if isinstance(tag, str) and tag.startswith(TAG):
                found[tag[len(TAG):]] = index
    return found


def checker_line(source: str) -> str:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def same_statement(a: str, b: str) -> bool:
    """The same Python code, whatever the spacing, a trailing ``;`` or a comment."""
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:
        return a == b


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def rebinds(node, local: bool = False) -> bool:
    """Does this code bind or modify the module-level ``attempt``/``checks``? (A function's locals don't count.)"""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return (not local and node.name in GUARDED) or any(rebinds(child, True) for child in node.body)
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return bool(GUARDED & set(node.names))
    if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
        return not local and node.id in GUARDED
    if isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
        return _root(node) in GUARDED
    if isinstance(node, ast.alias):
        return not local and (node.asname or node.name.split(".")[0]) in GUARDED
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"setattr", "delattr"}:
        return bool(node.args) and _root(node.args[0]) in GUARDED
    return any(rebinds(child, local) for child in ast.iter_child_nodes(node))


def guard_statements(nb) -> set:
    """The top-level statements (normalised source) that bind or modify ``attempt``/``checks``."""
    from IPython.core.inputtransformer2 import TransformerManager  # %magics and !shell lines -> Python

    found, to_python = set(), TransformerManager().transform_cell
    for _, cell in code_cells(nb):
        try:
            tree = ast.parse(to_python(cell.source))
        except Exception:  # noqa: BLE001 - a SyntaxError fails when run: its exercise shows ERROR
            continue
        found.update(ast.unparse(stmt) for stmt in tree.body if rebinds(stmt))
    return found


def course_lessons(folder: Path = COURSE_NOTEBOOKS) -> list:
    from glmcourse.translation import lesson_notebooks

    lessons = []
    for path in lesson_notebooks(folder):
        nb, _ = read_notebook(path)
        twin, _ = read_notebook(folder / "zh" / path.name)  # the Chinese edition: its own set-up cell
        if nb is None:
            continue
        checkers = {name: checker_line(nb.cells[i].source) for name, i in tagged_exercises(nb).items()}
        code = "\n".join(cell.source for _, cell in code_cells(nb))
        guards = guard_statements(nb) | (guard_statements(twin) if twin else set())
        lessons.append(Lesson(path, checkers, guards, "RUNS_DIR" in code or "lesson_runs" in code))
    return lessons


def recognise(nb, path: Path, lessons: list):
    """The lesson sharing most exercises (tags or ``def`` names) with ``nb``; by file name when none does."""
    code = "\n".join(cell.source for _, cell in code_cells(nb))
    names = set(tagged_exercises(nb)) | set(re.findall(r"^def (\w+)\(", code, re.M))
    score, same_name, lesson = max(((len(names & set(lesson.checkers)), lesson.path.name == path.name, lesson)
                                    for lesson in lessons), key=lambda s: s[:2])
    return lesson if score or same_name else None


def check_integrity(nb, lesson: Lesson):
    """(exercise -> its cell index, exercise -> why it is CHANGED)."""
    tagged, where, changed = tagged_exercises(nb), {}, {}
    for name, line in lesson.checkers.items():
        index = tagged.get(name)
        if index is None:  # tag lost: the checker line still identifies the cell
            index = next((i for i, c in code_cells(nb) if same_statement(checker_line(c.source), line)), None)
        if index is None:
            changed[name] = "the exercise cell is missing"
            continue
        where[name] = index
        found = checker_line(nb.cells[index].source)
        if not same_statement(found, line):
            changed[name] = f"checker line edited: the course's is `{line}`, this one `{found}`"
    extra = sorted(guard_statements(nb) - lesson.guards)
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        for name in lesson.checkers:
            changed.setdefault(name, f"rebinds attempt/checks: `{extra[0].splitlines()[0][:80]}`{more}")
    return where, changed


# ------------------------------------------------------------------------------------------ running
def scratch_notebooks_dir(scratch: Path) -> Path:
    """``scratch/notebooks`` laid out like the course's: solutions/, ../data and ../runs lead to the real ones."""
    folder = scratch / "notebooks"
    folder.mkdir()
    try:
        (folder / "solutions").symlink_to(COURSE_NOTEBOOKS / "solutions", target_is_directory=True)
        (scratch / "data").symlink_to(glmcourse.DATA_DIR, target_is_directory=True)
        (scratch / "runs").symlink_to(glmcourse.RUNS_DIR, target_is_directory=True)
    except OSError:  # no symlinks here (Windows without developer mode): run in the course's own folder
        return COURSE_NOTEBOOKS
    return folder


def make_client(nb, cwd: Path, timeouts: list):
    """An nbclient that interrupts a cell at its timeout and moves on (``timeouts`` gets the cell's index)."""
    from nbclient import NotebookClient

    class Client(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            out = super().output(outs, msg, display_id, cell_index)
            while (len(outs) > 1 and outs[0].get("output_type") == "stream"
                   and sum(len(o.get("text", "")) for o in outs) > MAX_OUTPUT_CHARS):
                outs.pop(0)  # the oldest first: the verdict comes last
            return out

    def on_error(cell, cell_index, execute_reply):
        if execute_reply["content"].get("ename") == TIMED_OUT:
            timeouts.append(cell_index)

    # error_on_timeout: after the interrupt, a stand-in error reply, so a kernel deaf to it cannot hang us.
    return Client(nb, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True, on_cell_error=on_error,
                  error_on_timeout={"ename": TIMED_OUT, "evalue": "", "traceback": []},
                  shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}})


@contextmanager
def running(client):
    RUNNING.add(client)
    try:
        yield
    finally:
        RUNNING.discard(client)


def stop_kernels() -> None:
    """Kill the running kernels (they run in their own session, so Ctrl-C never reaches them)."""
    for client in list(RUNNING):
        with suppress(AttributeError, OSError, TypeError):
            os.kill(client.km.provisioner.pid, getattr(signal, "SIGKILL", signal.SIGTERM))


def kernel_recovers(client, timeouts: list) -> bool:
    """After an interrupted cell: does the kernel answer a trivial cell within PROBE_TIMEOUT_S?"""
    import nbformat

    before, client.timeout = len(timeouts), PROBE_TIMEOUT_S
    client.execute_cell(nbformat.v4.new_code_cell("pass"), -1)
    return len(timeouts) == before


def error_tail(cell, lines: int = 8) -> str:
    error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
    if error is None:
        return ""
    text = ANSI.sub("", "\n".join(error.get("traceback") or [f"{error.get('ename')}: {error.get('evalue')}"]))
    return "\n".join(text.strip().splitlines()[-lines:])


def verdict(cell, name: str) -> Result:
    """What the exercise cell printed (the last verdict line for ``name``), or ERROR."""
    failure = error_tail(cell)
    if failure:
        return Result("ERROR", failure)
    text = ANSI.sub("", "".join(o.get("text", "") for o in cell.outputs
                                if o.get("output_type") == "stream" and o.get("name") == "stdout"))
    found = [m for m in VERDICT_LINE.finditer(text) if m.group(2) == name]
    if not found:
        return Result("ERROR", "the cell printed no verdict for " + name)
    return Result(WORDS[found[-1].group(1)], text[found[-1].end():].strip())


def run_notebook(nb, where: dict, cell_timeout: int, notebook_timeout: int, stop: threading.Event):
    """Execute ``nb`` cell by cell in a fresh kernel: ({exercise: Result}, notes on other cells, why it stopped)."""
    from nbclient.exceptions import DeadKernelError

    exercise_at = {index: name for name, index in where.items()}
    results, notes, stopped, timeouts = {}, [], None, []
    with tempfile.TemporaryDirectory(prefix="glmcourse-grade-") as scratch:
        client = make_client(nb, scratch_notebooks_dir(Path(scratch)), timeouts)
        deadline = time.monotonic() + notebook_timeout
        env = {k: v for k, v in os.environ.items() if k != "GLMCOURSE_FAST"} | KERNEL_ENV
        # The kernel's own stdout/stderr (not the cells' outputs) would only clutter the teacher's terminal.
        with client.setup_kernel(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), running(client):
            for index, cell in code_cells(nb):
                left = deadline - time.monotonic()
                if left < 1 or stop.is_set():
                    stopped = Result("TIMEOUT", f"not run: the notebook ran past --notebook-timeout "
                                                f"{notebook_timeout} s")
                    break
                outcome = None
                try:
                    client.timeout = max(1, int(min(cell_timeout, left)))
                    client.execute_cell(cell, index)
                    if index in timeouts and left <= cell_timeout:
                        stopped = Result("TIMEOUT", f"the notebook ran past --notebook-timeout {notebook_timeout} s "
                                                    f"(in cell {index}); the cells after it were not run")
                        break
                    if index in timeouts:
                        outcome = Result("TIMEOUT", f"ran past --cell-timeout {cell_timeout} s and was interrupted")
                        if not kernel_recovers(client, timeouts):
                            stopped = Result("TIMEOUT", f"not run: the kernel did not recover from interrupting "
                                                        f"cell {index}")
                except DeadKernelError:
                    stopped = Result("ERROR", f"the kernel died in cell {index}; the cells after it were not run")
                    break
                if index in exercise_at:
                    results[exercise_at[index]] = outcome or verdict(cell, exercise_at[index])
                elif outcome or error_tail(cell):
                    notes.append(f"cell {index}: " + (outcome.note if outcome else error_tail(cell, 1)))
                if stopped:
                    break
    for name in where:
        results.setdefault(name, stopped or Result("ERROR", "not run"))
    return results, notes, stopped


def grade(task: Task, options, stop: threading.Event) -> None:
    """Run one notebook and fill in ``task.results`` and ``task.flags``; never raises for the student's doing."""
    lesson, start = task.lesson, time.monotonic()
    where, changed = check_integrity(task.nb, lesson)
    try:
        with RUNS_LOCK if lesson.uses_runs else nullcontext():
            ran, notes, stopped = run_notebook(task.nb, where, options.cell_timeout, options.notebook_timeout, stop)
    except Exception as err:  # noqa: BLE001 - e.g. no kernel could start: this notebook only
        ran, notes, stopped = {}, [], Result("ERROR", f"could not run it: {type(err).__name__}: {one_line(err)}")
    if stopped:
        task.flags.append(f"{lesson.number}: {stopped.note}")
    for name in lesson.checkers:
        result = ran.get(name) or stopped or Result("ERROR", "not run")
        if name in changed:
            result = Result("CHANGED", f"{changed[name]} (it ran: {result.verdict})")
        task.results[lesson.column(name)] = result
    if changed:
        task.flags.append("checker changed: " + ", ".join(lesson.column(n) for n in changed))
    task.notes = notes + [f"{task.path.name} ran in {time.monotonic() - start:.0f} s"]


# ------------------------------------------------------------------------------------------ the class
def hidden(name: str) -> bool:
    return name.startswith(".") or name in {"__MACOSX", "__pycache__"}


def collect(folder: Path) -> dict:
    """Student -> their files: a top-level file is a student (its stem), so is a top-level folder."""
    students = {}
    for entry in sorted(folder.iterdir()):
        if hidden(entry.name):
            continue
        if entry.is_dir():
            files = [p for p in sorted(entry.rglob("*")) if p.is_file()
                     and not any(hidden(part) for part in p.relative_to(entry).parts)]
            students.setdefault(entry.name, []).extend(files)
        else:
            students.setdefault(entry.stem, []).append(entry)
    return students


def plan(folder: Path, lessons: list):
    """(tasks to run, flags per student) for every student of ``folder``; nothing is run yet."""
    tasks, flags = [], {}
    course_names = {lesson.path.name for lesson in lessons}
    for student, files in collect(folder).items():
        notes = flags.setdefault(student, [])
        files.sort(key=lambda p: p.name not in course_names)  # a lesson's own file name first, then a copy
        seen = {}
        for path in files:
            shown = path.relative_to(folder).as_posix()
            nb, problem = read_notebook(path) if path.suffix == ".ipynb" else (None, "not a .ipynb file")
            lesson = recognise(nb, path, lessons) if nb else None
            if nb is None:
                notes.append(f"not a notebook: {shown} ({problem})")
            elif lesson is None:
                notes.append(f"not a course lesson: {shown} (no exercise cell of the course's notebooks)")
            elif lesson.path.name in seen:
                notes.append(f"two notebooks for lesson {lesson.number}: {seen[lesson.path.name]}, {shown} "
                             f"(graded {seen[lesson.path.name]})")
            else:
                seen[lesson.path.name] = shown
                if path.parent != folder and path.name != lesson.path.name:
                    notes.append(f"renamed: {shown} is lesson {lesson.path.name}")
                tasks.append(Task(student, path, nb, lesson))
        if not files:
            notes.append("no files submitted")
    return tasks, flags


def run_all(tasks: list, options) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from glmcourse.settings import progress

    stop = threading.Event()
    with progress(total=len(tasks), desc="grading", unit="notebook") as bar, ThreadPoolExecutor(options.jobs) as pool:
        try:
            for _ in pool.map(lambda task: grade(task, options, stop), tasks):
                bar.update()
        except BaseException:  # Ctrl-C, kill PID: queued notebooks never start, running ones stop now
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            stop_kernels()
            raise


# ------------------------------------------------------------------------------------------ outputs
def rows(tasks: list, flags: dict, lessons: list):
    """(exercise columns, [(student, {column: Result}, flags, notes)]) in course and name order."""
    graded = {task.lesson.path for task in tasks}
    columns = [lesson.column(name) for lesson in lessons if lesson.path in graded for name in lesson.checkers]
    table = []
    for student in sorted(flags, key=str.lower):
        mine = [task for task in tasks if task.student == student]
        results = {column: result for task in mine for column, result in task.results.items()}
        notes = [note for task in mine for note in task.notes]
        table.append((student, results, flags[student] + [f for task in mine for f in task.flags], notes))
    return columns, table


def write_csv(path: Path, columns: list, table: list) -> None:
    with atomic_write(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["student", *columns, "total", "flags"])
        for student, results, flags, _ in table:
            verdicts = [results[c].verdict if c in results else "" for c in columns]
            writer.writerow([student, *verdicts, verdicts.count("PASS"), "; ".join(flags)])


STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}thead th{background:#eee}
td.v{text-align:center;white-space:nowrap}.PASS{background:#c8efc8}.TRY_AGAIN{background:#ffe0a8}
.TODO{background:#eee;color:#666}.ERROR{background:#f7b8b8}.TIMEOUT{background:#dcc8f0}
.CHANGED{background:#f5e663}pre{white-space:pre-wrap;margin:.2em 0;max-width:60em}.flag{color:#a00}"""


def write_html(path: Path, columns: list, table: list, options) -> None:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>Grades</title><style>{STYLE}</style>"
           f"</head><body><h1>Grades</h1><p>{len(table)} students, graded {e(time.strftime('%Y-%m-%d %H:%M'))} "
           f"(--cell-timeout {options.cell_timeout} s, --notebook-timeout {options.notebook_timeout} s). "
           "Hover a verdict for its hint; open a student's <i>details</i> for all of them.</p><table><thead><tr>"
           "<th>student</th>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "<th>total</th><th>flags and hints</th>"
           "</tr></thead><tbody>"]
    for student, results, flags, notes in table:
        cells = "".join(f"<td class='v {r.verdict.replace(' ', '_')}' title='{e(r.note)}'>{e(r.verdict)}</td>"
                        if r else "<td class='v' title='not submitted'>&ndash;</td>"
                        for r in (results.get(c) for c in columns))
        hints = "".join(f"<dt>{e(c)}: {e(r.verdict)}</dt><dd><pre>{e(r.note)}</pre></dd>"
                        for c, r in results.items() if r.verdict != "PASS" and r.note)
        hints += "".join(f"<dt>note</dt><dd><pre>{e(n)}</pre></dd>" for n in notes)
        total = sum(r.verdict == "PASS" for r in results.values())
        out.append(f"<tr><th>{e(student)}</th>{cells}<td>{total}</td><td>"
                   + "".join(f"<div class='flag'>{e(f)}</div>" for f in flags)
                   + (f"<details><summary>details</summary><dl>{hints}</dl></details>" if hints else "") + "</td></tr>")
    passed = [sum(r.get(c) is not None and r[c].verdict == "PASS" for _, r, _, _ in table) for c in columns]
    out.append("</tbody><tfoot><tr><th>passed</th>" + "".join(f"<td class='v'>{n}</td>" for n in passed)
               + "<td></td><td></td></tr></tfoot></table></body></html>\n")
    with atomic_write(path) as handle:
        handle.write("".join(out))


# ------------------------------------------------------------------------------------------ command line
def build_parser():
    from glmcourse.cli import INPUT_DIR, OUTPUT_DIR, CourseParser

    p = CourseParser(prog="python -m glmcourse.grade", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", metavar="SUBMISSIONS", kind=INPUT_DIR,
                   help="folder of students' notebooks: alice.ipynb per student, or a folder per student")
    p.add_argument("--out", required=True, kind=OUTPUT_DIR, replace_check=False,
                   help="folder for grades.csv and report.html (created)")
    p.add_argument("--cell-timeout", type=int_arg("--cell-timeout", 1, 24 * 3600, example=600), default=600,
                   help="seconds one cell may run before it is interrupted (default 600)")
    p.add_argument("--notebook-timeout", type=int_arg("--notebook-timeout", 1, 24 * 3600, example=1800), default=1800,
                   help="seconds one notebook may run; the exercises left are TIMEOUT (default 1800)")
    p.add_argument("--jobs", type=int_arg("--jobs", 1, 64, example=2), default=1,
                   help="notebooks run at the same time (default 1)")
    p.error_prefix = "grade: "
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def check_usage(args) -> list:
    """Every bad path as a UsageError before any slow work; returns the course's lessons."""
    folder, out = Path(args.submissions), Path(args.out)
    fix = "pass the folder holding the students' notebooks (alice.ipynb, or bob/02_quantization.ipynb)"
    if not folder.exists():
        raise UsageError(f"SUBMISSIONS {folder}: no such folder; {fix}.")
    if not folder.is_dir():
        raise UsageError(f"SUBMISSIONS {folder}: is a file, not a folder; {fix}.")
    if not any(not hidden(p.name) for p in folder.iterdir()):
        raise UsageError(f"SUBMISSIONS {folder}: is empty; put one notebook per student in it (alice.ipynb) "
                         f"or one folder per student (bob/01_glm_attention_masks.ipynb).")
    check_output_dir(out, "--out", inputs=[("SUBMISSIONS", folder)], overwrite=True)
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        foreign = sorted(names - {*OUTPUTS, OUTPUT_MARKER}) if OUTPUT_MARKER in names else sorted(names)
        if foreign:
            raise UsageError(f"--out {out}: holds files grade did not write ({', '.join(foreign[:5])}); nothing was "
                             f"changed. Choose a new folder, or one an earlier grade run wrote.")
    lessons = [lesson for lesson in course_lessons() if lesson.checkers]
    if not lessons:
        raise UsageError(f"no tagged exercise cells in the course's notebooks ({COURSE_NOTEBOOKS}); run grade "
                         f"from a complete checkout of the course.")
    return lessons


def main(argv=None) -> int:
    from glmcourse.cli import GuardExit

    try:
        args = parse_args(argv)  # the shared guard checks the paths first (one line, status 2)
    except GuardExit as stop:
        return stop.code
    try:
        lessons = check_usage(args)
    except UsageError as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2

    def body():
        start = time.monotonic()
        tasks, flags = plan(Path(args.submissions), lessons)
        run_all(tasks, args)
        columns, table = rows(tasks, flags, lessons)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "glmcourse.grade")
        write_csv(out / OUTPUTS[0], columns, table)
        write_html(out / OUTPUTS[1], columns, table, args)
        print(f"graded {len(tasks)} notebooks of {len(table)} students in {time.monotonic() - start:.0f} s: "
              f"{out / OUTPUTS[0]}, {out / OUTPUTS[1]}")

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
