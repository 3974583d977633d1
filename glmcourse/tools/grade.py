"""``python -m glmcourse.tools.grade SUBMISSIONS --out DIR``: run the class's notebooks, grade every exercise.

Students: a notebook directly in SUBMISSIONS or in a section folder is one student, named by its path below
SUBMISSIONS without ``.ipynb`` (``alice.ipynb``: ``alice``; ``sec1/erin.ipynb``: ``sec1/erin``). A folder that
holds a lesson's notebook by its course name (``bob/02_quantization.ipynb``) is one student with all the files
under it (``bob``; ``sec2/bob``). A notebook is matched to its lesson by its exercise cells (tag
``exercise:<function>``), so a renamed file is still graded (and flagged "renamed").

Each notebook runs in learner mode (GLMCOURSE_FAST unset, offline) in a fresh kernel, cell by cell: a cell that
fails or loops (interrupted after --cell-timeout) costs only its own exercise. The student's file is only read.
Course cells that only demonstrate the reference solutions are skipped.

The kernel runs without the instructor's rights: in a scratch copy of the course (the package, data/, i18n/,
an empty runs/ and notebooks/; the reference solutions withheld), with an empty HOME and a clean environment,
under a memory cap (--memory-limit, an operating-system resource limit: a runaway allocation fails in that
kernel only), and where the operating system allows it (root, or user namespaces) without network, with the
course tree and the instructor's home hidden, and as the unprivileged user ``nobody`` when the grader is root.
report.html says which of these held.

Verdicts: PASS, TRY AGAIN, TODO (what ``attempt`` printed, English or 中文), ERROR (the exercise cell
raised), MEMORY (it ran out of --memory-limit), TIMEOUT, and CHANGED, never counted as passed: the exercise
cell is missing, its last line (the ``attempt(checks.check_..., ...)`` checker line) differs from the course's,
the notebook rebinds or patches ``attempt``, ``checks`` or anything of glmcourse where the course does not (also
seen at run time: a checker whose code differs from the course's), or the exercise cell calls the reference
solutions or the course's own function of that name.

Notebooks run in parallel up to --jobs (default: as many as the cores and the memory cap allow), each in
its own scratch copy, runs/ included.

Writes DIR/grades.csv (a row per student, a column per exercise, total = PASS count, flags) and
DIR/report.html (colour-coded, each student's hints one click away), each atomically; a re-run replaces both.
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import html
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import glmcourse
from glmcourse.cli import UsageError, check_output_dir, int_arg, one_line, run_cli
from glmcourse.files import OUTPUT_MARKER, atomic_write, write_marker
from glmcourse.i18n import _
from glmcourse.tools.notebook_io import notebook_or_reason

COURSE_NOTEBOOKS = glmcourse.REPO_ROOT / "notebooks"
OUTPUTS = ("grades.csv", "report.html")
TAG = "exercise:"
GUARDED = {"attempt", "checks"}  # the names every checker line relies on
# Writing to an attribute of these (or of a name imported from glmcourse) patches the course's code.
PATCHED_ROOTS = {"attempt", "checks", "glmcourse", "sys", "builtins", "__builtins__"}
DUNDER_WRITES = {"__code__", "__globals__", "__defaults__", "__kwdefaults__", "__dict__", "__class__", "__call__"}
DYNAMIC_CALLS = {"exec", "eval", "compile", "__import__", "reload"}
# What attempt() prints, in English and as i18n/zh_CN/exercises.po translates it.
WORDS = {"PASS": "PASS", "通过": "PASS", "TRY AGAIN": "TRY AGAIN", "再试一次": "TRY AGAIN",
         "TODO": "TODO", "待完成": "TODO"}
VERDICT_LINE = re.compile(r"^\[(" + "|".join(WORDS) + r")\] (\w+)(?:[:：] ?|$)", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OUT_OF_MEMORY = re.compile(r"MemoryError|can't allocate memory|[Oo]ut of memory|std::bad_alloc|Cannot allocate memory")
MAX_OUTPUT_CHARS = 200_000  # per cell: an endless print() loop keeps only its latest output
PROBE_TIMEOUT_S = 30  # after interrupting a cell, how long the kernel has to answer again
TIMED_OUT = "CellTimedOut"  # the ename of the stand-in reply for an interrupted cell
GIB = 2 ** 30
DEFAULT_MEMORY = 2 * GIB  # README: about 2 GiB of memory per student
# The kernel's whole environment: nothing else of the instructor's (tokens, keys, proxies) reaches students' code.
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
              "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False", "GLMCOURSE_QUIET": "1",
              "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "GLMCOURSE_LANG", "PYTHONHASHSEED")
SCRATCH_COPY = ("glmcourse", "data", "i18n")  # what of the course a kernel sees (copied, never linked)
UNPRIVILEGED = "nobody"
RUNNING = set()  # the clients whose kernels run now: Ctrl-C stops those kernels


@dataclass
class Lesson:
    path: Path  # the course's notebook
    checkers: dict  # exercise name -> its checker line, in lesson order
    guards: set  # the course's own statements that bind attempt/checks or patch glmcourse
    demos: set  # the course's cells (source, both editions) that only run the reference solutions: skipped

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
    sandbox: dict = field(default_factory=dict)  # what the kernel's launcher managed to isolate


# ------------------------------------------------------------------------------------------ notebooks
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
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _glmcourse_names(tree) -> set:
    """The names this code binds to glmcourse or its modules (``import glmcourse.x as y``, ``from glmcourse import z``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("glmcourse"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("glmcourse"):
            names.update(a.asname or a.name for a in node.names)
    return names


def rebinds(node, local: bool = False, roots=frozenset(PATCHED_ROOTS)) -> bool:
    """Does this code bind ``attempt``/``checks`` at module level, or patch the course's code: write to an
    attribute of glmcourse (or of a name bound to it), of ``sys``/``builtins``, to a function's ``__code__``,
    to a ``check_*`` attribute, or run code from a string? (A function's own locals don't count.)"""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return ((not local and node.name in GUARDED) or any(rebinds(child, True, roots) for child in node.body)
                or any(rebinds(d, local, roots) for d in node.decorator_list))
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return bool(GUARDED & set(node.names))
    if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
        return not local and node.id in GUARDED
    if isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
        attr = getattr(node, "attr", "")
        return _root(node) in roots or attr in DUNDER_WRITES or attr.startswith("check_")
    if isinstance(node, ast.alias):
        return not local and (node.asname or node.name.split(".")[0]) in GUARDED
    if isinstance(node, ast.Call):
        func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if func in {"setattr", "delattr"} and isinstance(node.func, ast.Name) and node.args:
            attr = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else ""
            if _root(node.args[0]) in roots or str(attr) in DUNDER_WRITES or str(attr).startswith("check_"):
                return True
        bare = isinstance(node.func, ast.Name)  # exec(...), not re.compile(...)
        if (bare and func in DYNAMIC_CALLS) or func == "reload" or (
                func in {"patch", "object"} and _root(node.func) in {"mock", "patch", "unittest"}):
            return True
    return any(rebinds(child, local, roots) for child in ast.iter_child_nodes(node))


def parsed(source: str):
    """The cell's code as a Python AST (%magics and !shell lines turned into Python), or None."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except Exception:  # noqa: BLE001 - a SyntaxError fails when run: its exercise shows ERROR
        return None


def guard_statements(nb) -> set:
    """The top-level statements (normalised source) that bind ``attempt``/``checks`` or patch the course's code."""
    trees = [tree for tree in (parsed(cell.source) for _, cell in code_cells(nb)) if tree is not None]
    roots = frozenset(PATCHED_ROOTS | set().union(*(_glmcourse_names(t) for t in trees)))
    return {ast.unparse(stmt) for tree in trees for stmt in tree.body if rebinds(stmt, roots=roots)}


def uses_solutions(source: str, name: str):
    """The first use, in an exercise cell, of the reference solutions (``solutions``) or of the course's own
    function of the exercise's name (``data.format_example``, ``from glmcourse.masks import prefix_mask``)."""
    tree = parsed(source)
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.Attribute) and (node.attr == name or "solutions" in ast.unparse(node.value).lower()):
            return ast.unparse(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(
                r"solutions[/\\.]|_solutions", node.value, re.I):  # a path or module name, not prose
            return repr(node.value)[:60]
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = getattr(node, "module", None) or ""
            for alias in node.names:
                if "solutions" in (module + alias.name).lower() or (module.startswith("glmcourse") and alias.name == name):
                    return ast.unparse(node)
    return None


def solution_demos(nb) -> set:
    """The sources of the (non-exercise) cells that use ``solutions.<something>``."""
    exercises = set(tagged_exercises(nb).values())
    found = set()
    for index, cell in code_cells(nb):
        tree = parsed(cell.source) if index not in exercises else None
        if tree and any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "solutions"
                        for n in ast.walk(tree)):
            found.add(cell.source.strip())
    return found


def course_lessons(folder: Path = COURSE_NOTEBOOKS) -> list:
    from glmcourse.tools.notebook_io import lesson_notebooks

    lessons = []
    for path in lesson_notebooks(folder):
        nb, _ = notebook_or_reason(path)
        twin, _ = notebook_or_reason(folder / "zh" / path.name)  # the Chinese edition: its own set-up cell
        if nb is None:
            continue
        checkers = {name: checker_line(nb.cells[i].source) for name, i in tagged_exercises(nb).items()}
        guards = guard_statements(nb) | (guard_statements(twin) if twin else set())
        demos = solution_demos(nb) | (solution_demos(twin) if twin else set())
        lessons.append(Lesson(path, checkers, guards, demos))
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
            changed[name] = _("the exercise cell is missing")
            continue
        where[name] = index
        found = checker_line(nb.cells[index].source)
        cheat = uses_solutions(nb.cells[index].source, name)
        if not same_statement(found, line):
            changed[name] = _("checker line edited: the course's is `{line}`, this one `{found}`", line=line,
                              found=found)
        elif cheat:
            changed[name] = _("calls the reference solution: `{cheat}`", cheat=cheat)
    extra = sorted(guard_statements(nb) - lesson.guards)
    if extra:
        first = extra[0].splitlines()[0][:80]
        for name in lesson.checkers:
            changed.setdefault(name, _("rebinds attempt/checks or patches the course's code: `{first}` and {n} more",
                                       first=first, n=len(extra) - 1) if len(extra) > 1 else
                               _("rebinds attempt/checks or patches the course's code: `{first}`", first=first))
    return where, changed


# ------------------------------------------------------------------------------------------ the sandbox
# Run by the kernel's own Python (``-I -c``) between its launch and ipykernel: namespaces, limits, user.
LAUNCHER = r"""
import ctypes, json, os, resource, shutil, sys
cfg, argv = json.loads(sys.argv[1]), sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
status = {}

def call(what, *args):
    if what(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))

def within(path, parent):
    return path == parent or path.startswith(parent.rstrip("/") + "/")

uid, gid = os.getuid(), os.getgid()
try:
    if uid == 0:
        call(libc.unshare, 0x40000000 | 0x00020000)  # CLONE_NEWNET | CLONE_NEWNS
    else:  # a user namespace lets an unprivileged grader make the other two
        call(libc.unshare, 0x10000000 | 0x40000000 | 0x00020000)
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    status["network"] = "none (a network namespace of its own)"
    call(libc.mount, b"none", b"/", None, 0x4000 | 0x40000, None)  # MS_REC | MS_PRIVATE
    hidden, keep = [], [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, cfg["scratch"])]
    for number, path in enumerate(cfg["hide"]):
        if not os.path.isdir(path) or any(within(path, k) for k in keep):
            continue
        inside = [k for k in keep if within(k, path)]  # Python (or the scratch) lives in there: shown again
        stash = [os.path.join(cfg["scratch"], "grader", f"keep{number}-{i}") for i in range(len(inside))]
        for source, place in zip(inside, stash):
            os.mkdir(place)
            call(libc.mount, source.encode(), place.encode(), None, 4096 | 0x4000, None)  # MS_BIND | MS_REC
        call(libc.mount, b"tmpfs", path.encode(), b"tmpfs", 2 | 4 | 8, b"size=64k,mode=0755")
        for source, place in zip(inside, stash):
            os.makedirs(source, exist_ok=True)
            call(libc.mount, place.encode(), source.encode(), None, 4096 | 0x4000, None)
        call(libc.mount, b"tmpfs", path.encode(), None, 32 | 1 | 2 | 4 | 8, None)  # MS_REMOUNT, read-only now
        hidden.append(path)
    status["hidden"] = hidden
    for path in cfg["read_only"]:  # the rest of each course tree (package, .venv): visible, never writable
        call(libc.mount, path.encode(), path.encode(), None, 4096 | 0x4000, None)  # MS_BIND | MS_REC
        call(libc.mount, b"none", path.encode(), None, 32 | 4096 | 1, None)  # MS_REMOUNT | MS_BIND | MS_RDONLY
    status["read_only"] = list(cfg["read_only"])
except OSError as err:
    status.setdefault("network", f"not isolated: the operating system refused a namespace ({err.strerror})")
    status["hidden"] = []
limit = cfg["memory"]
for which in (resource.RLIMIT_DATA, resource.RLIMIT_AS):
    resource.setrlimit(which, (limit if which == resource.RLIMIT_DATA else limit + cfg["address_room"],) * 2)
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # one file: no bigger than the memory cap
conn = argv.index("-f") + 1
mine = os.path.join(cfg["scratch"], "kernel.json")
shutil.copyfile(argv[conn], mine)
argv[conn] = mine
def reachable(path):  # can any user read it (every folder above it searchable by "others")?
    import stat
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & (stat.S_IXOTH if os.path.isdir(path) else stat.S_IROTH):
            return False
        if path == os.path.dirname(path):
            return True
        path = os.path.dirname(path)

drop = uid == 0 and cfg["user"]
# the interpreter, its standard library, the virtual environment's packages and the notebook's folder
if drop and not all(reachable(p) for p in (sys.executable, os.path.join(sys.base_prefix, "lib"), sys.prefix, cfg["cwd"])):
    drop = None  # without a mount namespace to show it again, nobody could not even start Python
    status["user"] = ("uid 0: Python or its environment lies below a folder an unprivileged user cannot enter "
                      "(e.g. a mode-700 parent of the course), so the kernel keeps the grader's user")
status.setdefault("user", f"uid {cfg['user'][0]} (unprivileged)" if drop else f"uid {uid} (the grader's own"
                  + (", mapped in a user namespace)" if uid else ")"))
with open(cfg["status"], "w") as handle:
    json.dump(status, handle)
if drop:
    run_as, group = cfg["user"]
    os.chown(mine, run_as, group)
    resource.setrlimit(resource.RLIMIT_NPROC, (512, 512))
    os.setgroups([])
    os.setgid(group)
    os.setuid(run_as)
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid program gives the rights back
os.chdir(cfg["cwd"])
os.execv(argv[0], argv)
"""


def kernel_user():
    """(uid, gid) of the unprivileged user the kernels run as when the grader is root, else None."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        return None
    import pwd

    with suppress(KeyError):
        entry = pwd.getpwnam(UNPRIVILEGED)
        return entry.pw_uid, entry.pw_gid
    return None


def withheld_solutions(folder: Path) -> None:
    """``folder`` gets a stand-in for each module of the course's notebooks/solutions/: the course's own cells
    still import it, and each of its functions raises instead of answering."""
    folder.mkdir()
    (folder / "__init__.py").write_text("", encoding="utf-8")
    for path in sorted((COURSE_NOTEBOOKS / "solutions").glob("*.py")):
        tree = parsed(path.read_text(encoding="utf-8"))
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] if tree else []
        (folder / path.name).write_text(
            '"""Withheld while grading."""\n\n\ndef _withheld(*args, **kwargs):\n'
            f'    raise RuntimeError({json.dumps(_("the reference solutions are withheld while grading"))})\n\n\n'
            + "".join(f"{name} = _withheld\n" for name in names), encoding="utf-8")


def make_scratch(scratch: Path, user) -> Path:
    """A copy of what a notebook needs, with no link back to the course: the package, data/, i18n/, an empty
    runs/ (a lesson that reuses an earlier lesson's run builds it again), notebooks/ (with the solutions
    withheld), an empty home and tmp. The kernel's user may write notebooks/, runs/, home/ and tmp/ only.
    Returns the notebooks folder."""
    root = glmcourse.REPO_ROOT
    for name in SCRATCH_COPY:
        if (root / name).exists():
            shutil.copytree(root / name, scratch / name, symlinks=False,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc") if name != "glmcourse" else None)
    (scratch / "runs").mkdir()  # empty, never the course's: it may hold an earlier class's report
    folder = scratch / "notebooks"
    folder.mkdir()
    withheld_solutions(folder / "solutions")
    for name in ("home", "tmp", "grader"):
        (scratch / name).mkdir()
    if user:
        os.chmod(scratch, 0o755)
        for name in ("notebooks", "runs", "home", "tmp", "kernel"):
            (scratch / name).mkdir(exist_ok=True)
            for path in [scratch / name, *(scratch / name).rglob("*")]:
                os.chown(path, *user, follow_symlinks=False)
    else:
        (scratch / "kernel").mkdir()
    return folder


def course_checkouts() -> list:
    """This course tree, and the one the environment's glmcourse is installed from (``pip install -e``), if other."""
    roots = [glmcourse.REPO_ROOT]
    with suppress(Exception):  # noqa: BLE001 - not installed, or not from a folder: nothing more to hide
        from importlib.metadata import distribution
        from urllib.parse import unquote, urlparse

        url = json.loads(distribution("glmcourse").read_text("direct_url.json") or "{}").get("url", "")
        if url.startswith("file://"):
            roots.append(Path(unquote(urlparse(url).path)))
    return roots


def hide_list() -> list:
    """What a kernel must not see even by absolute path: the course trees' notebooks, data, runs, tests and git
    history, and the instructor's home (each kept where Python itself lives in it)."""
    paths = []
    for root in course_checkouts():
        paths += [root / name for name in ("notebooks", "data", "runs", "tests", ".git", "i18n")]
        with suppress(OSError, ValueError, IndexError):  # a git worktree: .git is a file naming the history's folder
            gitdir = Path((root / ".git").read_text(encoding="utf-8").split("gitdir:", 1)[1].strip())
            paths.append(gitdir.parent.parent if gitdir.parent.name == "worktrees" else gitdir)
    paths += [Path.home(), Path("/root")]
    # A folder above the virtual environment that others may not enter (a mode-700 parent of the course, as
    # `mktemp -d` makes) is hidden too: the launcher then shows only the environment again, under an
    # enterable folder, so the unprivileged kernel can start Python.
    paths += [folder for folder in Path(os.path.realpath(sys.prefix)).parents
              if folder != Path("/") and not folder.stat().st_mode & stat.S_IXOTH]
    return sorted({os.path.realpath(p) for p in paths if p.is_dir()})


def sandbox_manager(cfg: dict):
    """A jupyter KernelManager class that starts the kernel through LAUNCHER and talks to it over Unix sockets
    in the scratch folder (a kernel without network has no TCP to answer on)."""
    from jupyter_client.manager import AsyncKernelManager

    class Sandboxed(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(Path(cfg["scratch"]) / "kernel" / "ipc")
            self.connection_file = str(Path(cfg["scratch"]) / "grader" / "connection.json")

        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-I", "-c", LAUNCHER, json.dumps(cfg), *super().format_kernel_cmd(extra_arguments)]

    return Sandboxed


def kernel_env(scratch: Path) -> dict:
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ} | KERNEL_ENV
    home = scratch / "home"
    return env | {"HOME": str(home), "TMPDIR": str(scratch / "tmp"), "PYTHONPATH": str(scratch),
                  "MPLCONFIGDIR": str(home / ".matplotlib"), "XDG_CACHE_HOME": str(home / ".cache"),
                  "IPYTHONDIR": str(home / ".ipython"), "JUPYTER_RUNTIME_DIR": str(home / ".jupyter")}


# ------------------------------------------------------------------------------------------ running
def make_client(nb, cwd: Path, timeouts: list, manager):
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
                  shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}},
                  **({"kernel_manager_class": manager} if manager else {}))


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


def run_probe(client, source: str, timeouts: list):
    """Run grader code in the kernel (not the notebook); its stdout, or None when it did not answer."""
    import nbformat

    cell, before = nbformat.v4.new_code_cell(source), len(timeouts)
    client.timeout = PROBE_TIMEOUT_S
    client.execute_cell(cell, -1)
    if len(timeouts) > before:
        return None
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def kernel_recovers(client, timeouts: list) -> bool:
    """After an interrupted cell: does the kernel answer a trivial cell within PROBE_TIMEOUT_S?"""
    return run_probe(client, "pass", timeouts) is not None


# The live checkers' code, fingerprinted in the kernel the way checker_fingerprints() does it from the source.
FINGERPRINT = '''
def _fp(code):
    import hashlib
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(_fp(const).encode() if hasattr(const, "co_code") else repr(const).encode())
    return hashlib.sha256(b"|".join(parts)).hexdigest()[:16]
'''
PROBE = '''import sys
sys.last_type = sys.last_value = sys.last_traceback = None  # a failed cell's frames (a runaway's hoard) go now
''' + FINGERPRINT + '''
def _probe():
    import json, sys
    found = {}
    for name, module in list(sys.modules.items()):
        if name == "glmcourse.exercises" or name.startswith("glmcourse.exercises."):
            for key, value in list(vars(module).items()):
                code = getattr(value, "__code__", None)
                if key.startswith("check_") or key in ("attempt", "call_learner", "say"):
                    found[name + "." + key] = _fp(code) if code is not None else type(value).__name__
    print("GRADER-PROBE " + json.dumps(found))
_probe()
del _probe, _fp
'''


def checker_fingerprints() -> dict:
    """``module.function`` -> fingerprint of the course's checkers, compiled from glmcourse/exercises/*.py."""
    namespace = {}
    exec(FINGERPRINT, namespace)  # noqa: S102 - the grader's own constant, not students' code
    shared, found = {}, {}
    folder = Path(glmcourse.__file__).parent / "exercises"
    for path in sorted(folder.glob("*.py")):
        module = "glmcourse.exercises" + ("" if path.stem == "__init__" else "." + path.stem)
        code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
        mine = {c.co_name: namespace["_fp"](c) for c in code.co_consts if hasattr(c, "co_code")}
        found[module] = {k: v for k, v in mine.items() if k.startswith("check_") or k in ("attempt", "call_learner", "say")}
        if path.stem == "__init__":
            shared = found[module]
    return {f"{m}.{k}": v for m, funcs in found.items() for k, v in (shared | funcs).items()}


def patched_checkers(output, expected: dict) -> list:
    """The checkers whose live code differs from the course's (from the probe's output)."""
    match = re.search(r"GRADER-PROBE (\{.*\})", output or "")
    if not match:  # the kernel could not answer (out of memory, say): the code check above still holds
        return []
    live = json.loads(match.group(1))
    return sorted(key for key, value in live.items() if key in expected and value != expected[key])


def error_output(cell):
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def error_tail(cell, lines: int = 8) -> str:
    error = error_output(cell)
    if error is None:
        return ""
    text = ANSI.sub("", "\n".join(error.get("traceback") or [f"{error.get('ename')}: {error.get('evalue')}"]))
    return "\n".join(text.strip().splitlines()[-lines:])


def out_of_memory(cell) -> bool:
    error = error_output(cell)
    return error is not None and bool(OUT_OF_MEMORY.search(f"{error.get('ename')}: {error.get('evalue')}"))


def verdict(cell, name: str, index: int, memory: int) -> Result:
    """What the exercise cell printed (the last verdict line for ``name``), ERROR or MEMORY."""
    failure = error_tail(cell)
    if failure and out_of_memory(cell):
        return Result("MEMORY", _("cell {index} ran out of memory (--memory-limit {memory}) and was "
                                  "stopped:\n{tail}", index=index, memory=size_text(memory), tail=error_tail(cell, 2)))
    if failure:
        return Result("ERROR", failure)
    text = ANSI.sub("", "".join(o.get("text", "") for o in cell.outputs
                                if o.get("output_type") == "stream" and o.get("name") == "stdout"))
    found = [m for m in VERDICT_LINE.finditer(text) if m.group(2) == name]
    if not found:
        return Result("ERROR", _("the cell printed no verdict for {name}", name=name))
    return Result(WORDS[found[-1].group(1)], text[found[-1].end():].strip())


def died(client) -> str:
    """How the kernel process ended, for the report."""
    with suppress(AttributeError, TypeError):
        code = client.km.provisioner.process.wait(timeout=5)
        if code is not None and code < 0:
            with suppress(ValueError):
                return _(" (killed by {signal})", signal=signal.Signals(-code).name)
        return _(" (exit status {code})", code=code)
    return ""


class MemoryWatch(threading.Thread):
    """Samples the kernel's data size twice a second, so that a kernel that died at its cap is called MEMORY."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client, self.last, self.done = client, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.5):
            with suppress(AttributeError, OSError, TypeError, ValueError):
                with open(f"/proc/{self.client.km.provisioner.pid}/status", encoding="ascii") as handle:
                    self.last = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmData:"))


@dataclass
class Run:  # what one notebook's run found
    results: dict = field(default_factory=dict)  # exercise -> Result
    notes: list = field(default_factory=list)  # other cells, for the report's details
    flags: list = field(default_factory=list)
    patched: dict = field(default_factory=dict)  # exercise -> checkers whose code was changed when it ran
    sandbox: dict = field(default_factory=dict)
    stopped: Result | None = None


def run_notebook(nb, where: dict, lesson: Lesson, options, stop: threading.Event) -> Run:
    """Execute ``nb`` cell by cell in a fresh, sandboxed kernel."""
    from nbclient.exceptions import DeadKernelError

    exercise_at = {index: name for name, index in where.items()}
    run, timeouts, expected = Run(), [], checker_fingerprints()
    cell_timeout, notebook_timeout, memory = options.cell_timeout, options.notebook_timeout, options.memory_limit
    with tempfile.TemporaryDirectory(prefix="glmcourse-grade-") as scratch_name:
        scratch, user = Path(scratch_name), kernel_user()
        cwd = make_scratch(scratch, user)
        cfg = {"scratch": str(scratch), "cwd": str(cwd), "memory": memory, "address_room": 8 * GIB,
               "user": list(user) if user else None, "hide": hide_list(), "status": str(scratch / "grader" / "status"),
               "read_only": sorted({os.path.realpath(root) for root in course_checkouts()})}
        client = make_client(nb, cwd, timeouts, sandbox_manager(cfg) if os.name == "posix" else None)
        deadline = time.monotonic() + notebook_timeout
        # The kernel's own stdout/stderr (not the cells' outputs) would only clutter the teacher's terminal.
        with client.setup_kernel(env=kernel_env(scratch), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), \
                running(client):
            with suppress(OSError, ValueError):
                run.sandbox = json.loads((scratch / "grader" / "status").read_text(encoding="utf-8"))
            watch = MemoryWatch(client)
            watch.start()
            for index, cell in code_cells(nb):
                if index not in exercise_at and cell.source.strip() in lesson.demos:
                    continue  # the course's own demonstration of the reference solutions
                left = deadline - time.monotonic()
                if left < 1 or stop.is_set():
                    run.stopped = Result("TIMEOUT", _("not run: the notebook ran past --notebook-timeout "
                                                      "{seconds} s", seconds=notebook_timeout))
                    break
                outcome = None
                try:
                    client.timeout = max(1, int(min(cell_timeout, left)))
                    client.execute_cell(cell, index)
                    if index in timeouts and left <= cell_timeout:
                        run.stopped = Result("TIMEOUT", _("the notebook ran past --notebook-timeout {seconds} "
                                                          "s (in cell {index}); the cells after it were not run",
                                                          seconds=notebook_timeout, index=index))
                        break
                    if index in timeouts:
                        outcome = Result("TIMEOUT", _("ran past --cell-timeout {seconds} s and was interrupted",
                                                      seconds=cell_timeout))
                        if not kernel_recovers(client, timeouts):
                            run.stopped = Result("TIMEOUT", _("not run: the kernel did not recover from "
                                                              "interrupting cell {index}", index=index))
                    elif index in exercise_at:
                        changed = patched_checkers(run_probe(client, PROBE, timeouts), expected)
                        if changed:
                            run.patched[exercise_at[index]] = changed
                except DeadKernelError:
                    how = died(client)
                    if watch.last >= 0.9 * memory:
                        outcome = Result("MEMORY", _("cell {index} ran out of memory (--memory-limit "
                                                     "{memory}): the kernel died{how}", index=index,
                                                     memory=size_text(memory), how=how))
                        run.stopped = Result("ERROR", _("not run: the kernel ran out of memory in cell {index} and "
                                                        "died", index=index))
                    else:
                        run.stopped = Result("ERROR", _("the kernel died in cell {index}{how}; the cells after it "
                                                        "were not run", index=index, how=how))
                    if index in exercise_at and outcome:
                        run.results[exercise_at[index]] = outcome
                    break
                if index in exercise_at:
                    run.results[exercise_at[index]] = outcome or verdict(cell, exercise_at[index], index, memory)
                elif outcome or error_tail(cell):
                    run.notes.append(_("cell {index}: {note}", index=index,
                                       note=outcome.note if outcome else error_tail(cell, 1)))
                    if not outcome and out_of_memory(cell):
                        run.flags.append(_("{lesson}: cell {index} ran out of memory (--memory-limit {memory})",
                                           lesson=lesson.number, index=index, memory=size_text(memory)))
                if run.stopped:
                    break
            watch.done.set()
    for name in where:
        run.results.setdefault(name, run.stopped or Result("ERROR", _("not run")))
    return run


def grade(task: Task, options, stop: threading.Event) -> None:
    """Run one notebook and fill in ``task.results`` and ``task.flags``; never raises for the student's doing."""
    lesson, start = task.lesson, time.monotonic()
    where, changed = check_integrity(task.nb, lesson)
    try:
        run = run_notebook(task.nb, where, lesson, options, stop)
    except Exception as err:  # noqa: BLE001 - e.g. no kernel could start: this notebook only
        run = Run(stopped=Result("ERROR", _("could not run it: {error}: {message}", error=type(err).__name__,
                                            message=one_line(err))))
    if run.stopped:
        task.flags.append(f"{lesson.number}: {run.stopped.note}")
    task.flags.extend(run.flags)
    for name, checkers in run.patched.items():
        changed.setdefault(name, _("a checker's code was changed when this cell ran: {checkers}",
                                   checkers=", ".join(checkers[:3])))
    for name in lesson.checkers:
        result = run.results.get(name) or run.stopped or Result("ERROR", _("not run"))
        if name in changed:
            ran = "" if name not in where else _(" (it ran: {verdict})", verdict=result.verdict) + (
                f"\n{result.note}" if result.note else "")
            result = Result("CHANGED", changed[name] + ran)
        task.results[lesson.column(name)] = result
    if changed:
        task.flags.append(_("checker changed: {columns}", columns=", ".join(lesson.column(n) for n in changed)))
    task.sandbox = run.sandbox
    task.notes = run.notes + [_("{name} ran in {seconds:.0f} s", name=task.path.name,
                                seconds=time.monotonic() - start)]


# ------------------------------------------------------------------------------------------ the class
def hidden(name: str) -> bool:
    return name.startswith(".") or name in {"__MACOSX", "__pycache__"}


def lesson_named(name: str) -> bool:
    """A course lesson's file name (``04_data_formatting.ipynb``, or a copy such as ``04_data_formatting-Copy1``)."""
    return bool(re.match(r"\d\d_", name)) and name.lower().endswith(".ipynb")


def visible_files(folder: Path) -> list:
    return [p for p in sorted(folder.rglob("*")) if p.is_file()
            and not any(hidden(part) for part in p.relative_to(folder).parts)]


def collect(folder: Path, base: Path | None = None) -> dict:
    """Student (their path below SUBMISSIONS) -> their files. A file is a student (``alice.ipynb``: ``alice``,
    ``sec1/erin.ipynb``: ``sec1/erin``); so is a folder that holds a lesson's notebook by its course name, or
    nothing at all (``bob/``, ``sec2/bob/``). Any other folder is a section: its entries are looked at the same way."""
    base, students = base or folder, {}
    for entry in sorted(folder.iterdir()):
        if hidden(entry.name):
            continue
        name = entry.relative_to(base).as_posix()
        if entry.is_dir():
            files = visible_files(entry)
            if not files or any(lesson_named(p.name) for p in entry.iterdir() if p.is_file()):
                students.setdefault(name, []).extend(files)
            else:
                for student, more in collect(entry, base).items():
                    students.setdefault(student, []).extend(more)
        else:
            students.setdefault(name[:-len(entry.suffix)] if entry.suffix else name, []).append(entry)
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
            nb, problem = notebook_or_reason(path) if path.suffix == ".ipynb" else (None, _("not a .ipynb file"))
            lesson = recognise(nb, path, lessons) if nb else None
            if nb is None:
                notes.append(_("not a notebook: {shown} ({problem})", shown=shown, problem=problem))
            elif lesson is None:
                notes.append(_("not a course lesson: {shown} (no exercise cell of the course's notebooks)",
                               shown=shown))
            elif lesson.path.name in seen:
                notes.append(_("two notebooks for lesson {lesson}: {first}, {shown} (graded {first})",
                               lesson=lesson.number, first=seen[lesson.path.name], shown=shown))
            else:
                seen[lesson.path.name] = shown
                if path.name != lesson.path.name and path.stem != student.split("/")[-1]:  # in a student's folder
                    notes.append(_("renamed: {shown} is lesson {lesson}", shown=shown, lesson=lesson.path.name))
                tasks.append(Task(student, path, nb, lesson))
        if not files:
            notes.append(_("no files submitted"))
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


def sandbox_summary(tasks: list) -> str:
    """One line on what the kernels' launcher managed to isolate (the same for every kernel, or each variant)."""
    seen = []
    for task in tasks:
        box = task.sandbox
        if not box:
            continue
        hidden = box.get("hidden") or []
        parts = [_("network {network}", network=box.get("network", "?")), _("user {user}", user=box.get("user", "?")),
                 _("hidden: {folders}", folders=", ".join(hidden)) if hidden else
                 _("course tree and home not hidden (no mount namespace)")]
        if box.get("read_only"):
            parts.append(_("read-only: {folders}", folders=", ".join(box["read_only"])))
        parts.append(_("a scratch copy of the course with the solutions withheld, an empty HOME and environment"))
        line = "; ".join(parts)
        if line not in seen:
            seen.append(line)
    return " | ".join(seen)


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
.CHANGED{background:#f5e663}.MEMORY{background:#f0a0d0}pre{white-space:pre-wrap;margin:.2em 0;max-width:60em}.flag{color:#a00}"""


def write_html(path: Path, columns: list, table: list, options) -> None:
    e = html.escape
    title = e(_("Grades"))
    intro = _("{students} students, graded {when} (--cell-timeout {cell} s, --notebook-timeout {notebook} s, "
              "--memory-limit {memory}, --jobs {jobs}). Students' kernels: {kernels}. "
              "Hover a verdict for its hint; open a student's <i>details</i> for all of them.", students=len(table),
              when=e(time.strftime("%Y-%m-%d %H:%M")), cell=options.cell_timeout, notebook=options.notebook_timeout,
              memory=e(size_text(options.memory_limit)), jobs=options.jobs,
              kernels=e(getattr(options, "sandbox", "") or _("none ran")))
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style>"
           f"</head><body><h1>{title}</h1><p>{intro}</p><table><thead><tr>"
           f"<th>{e(_('student'))}</th>" + "".join(f"<th>{e(c)}</th>" for c in columns)
           + f"<th>{e(_('total'))}</th><th>{e(_('flags and hints'))}</th></tr></thead><tbody>"]
    not_submitted, details, note = e(_("not submitted")), e(_("details")), e(_("note"))
    for student, results, flags, notes in table:
        cells = "".join(f"<td class='v {r.verdict.replace(' ', '_')}' title='{e(r.note)}'>{e(r.verdict)}</td>"
                        if r else f"<td class='v' title='{not_submitted}'>&ndash;</td>"
                        for r in (results.get(c) for c in columns))
        hints = "".join(f"<dt>{e(c)}: {e(r.verdict)}</dt><dd><pre>{e(r.note)}</pre></dd>"
                        for c, r in results.items() if r.verdict != "PASS" and r.note)
        hints += "".join(f"<dt>{note}</dt><dd><pre>{e(n)}</pre></dd>" for n in notes)
        total = sum(r.verdict == "PASS" for r in results.values())
        out.append(f"<tr><th>{e(student)}</th>{cells}<td>{total}</td><td>"
                   + "".join(f"<div class='flag'>{e(f)}</div>" for f in flags)
                   + (f"<details><summary>{details}</summary><dl>{hints}</dl></details>" if hints else "")
                   + "</td></tr>")
    passed = [sum(r.get(c) is not None and r[c].verdict == "PASS" for _student, r, _flags, _notes in table)
              for c in columns]
    out.append(f"</tbody><tfoot><tr><th>{e(_('passed'))}</th>" + "".join(f"<td class='v'>{n}</td>" for n in passed)
               + "<td></td><td></td></tr></tfoot></table></body></html>\n")
    with atomic_write(path) as handle:
        handle.write("".join(out))


# ------------------------------------------------------------------------------------------ command line
UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": GIB, "t": 2 ** 40}


def size_text(n: int) -> str:
    return f"{n / GIB:g} GiB" if n >= GIB else f"{n / 2 ** 20:g} MiB"


def memory_arg(text: str) -> int:
    """``--memory-limit``: bytes, or a number with K, M, G (binary units: 2G = 2 GiB), at least 256M."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.I)
    if not match:
        raise argparse.ArgumentTypeError(_("--memory-limit {text!r}: not a size; write e.g. 2G or 1536M", text=text))
    value = int(float(match.group(1)) * UNITS[match.group(2).lower()])
    if not 256 * 2 ** 20 <= value <= 2 ** 40:
        raise argparse.ArgumentTypeError(_("--memory-limit {text}: must be between 256M and 1T; e.g. 2G", text=text))
    return value


def default_jobs(memory: int) -> int:
    """As many notebooks at once as there are cores, and as the machine's free memory holds at the cap."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            free = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        free = 4 * memory
    return max(1, min(os.cpu_count() or 1, free // memory, 16))


def build_parser():
    from glmcourse.cli import INPUT_DIR, OUTPUT_DIR, CourseParser

    p = CourseParser(prog="python -m glmcourse.tools.grade", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", metavar="SUBMISSIONS", kind=INPUT_DIR,
                   help=_("folder of students' notebooks: alice.ipynb per student, or a folder per student"))
    p.add_argument("--out", required=True, kind=OUTPUT_DIR, replace_check=False,
                   help=_("folder for grades.csv and report.html (created)"))
    p.add_argument("--cell-timeout", type=int_arg("--cell-timeout", 1, 24 * 3600, example=600), default=600,
                   help=_("seconds one cell may run before it is interrupted (default 600)"))
    p.add_argument("--notebook-timeout", type=int_arg("--notebook-timeout", 1, 24 * 3600, example=1800), default=1800,
                   help=_("seconds one notebook may run; the exercises left are TIMEOUT (default 1800)"))
    p.add_argument("--jobs", type=int_arg("--jobs", 1, 64, example=2), default=None,
                   help=_("notebooks run at the same time (default: the number of cores, fewer when the free "
                        "memory does not hold that many kernels at --memory-limit)"))
    p.add_argument("--memory-limit", type=memory_arg, default=DEFAULT_MEMORY, metavar="SIZE",
                   help=_("memory one student's kernel may allocate, e.g. 2G or 1536M (default 2G); past it the "
                        "allocation fails in that kernel only and the cell's exercise is MEMORY"))
    p.error_prefix = "grade: "
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def check_usage(args) -> list:
    """Every bad path as a UsageError before any slow work; returns the course's lessons."""
    folder, out = Path(args.submissions), Path(args.out)
    fix = _("pass the folder holding the students' notebooks (alice.ipynb, or bob/02_quantization.ipynb)")
    if not folder.exists():
        raise UsageError(_("SUBMISSIONS {folder}: no such folder; {fix}.", folder=folder, fix=fix))
    if not folder.is_dir():
        raise UsageError(_("SUBMISSIONS {folder}: is a file, not a folder; {fix}.", folder=folder, fix=fix))
    if not any(not hidden(p.name) for p in folder.iterdir()):
        raise UsageError(_("SUBMISSIONS {folder}: is empty; put one notebook per student in it (alice.ipynb) "
                           "or one folder per student (bob/01_glm_attention_masks.ipynb).", folder=folder))
    check_output_dir(out, "--out", inputs=[("SUBMISSIONS", folder)], overwrite=True)
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        foreign = sorted(names - {*OUTPUTS, OUTPUT_MARKER}) if OUTPUT_MARKER in names else sorted(names)
        if foreign:
            raise UsageError(_("--out {out}: holds files grade did not write ({files}); nothing was "
                               "changed. Choose a new folder, or one an earlier grade run wrote.", out=out,
                               files=", ".join(foreign[:5])))
    lessons = [lesson for lesson in course_lessons() if lesson.checkers]
    if not lessons:
        raise UsageError(_("no tagged exercise cells in the course's notebooks ({folder}); run grade "
                           "from a complete checkout of the course.", folder=COURSE_NOTEBOOKS))
    return lessons


def main(argv=None) -> int:
    from glmcourse.cli import GuardExit

    try:
        args = parse_args(argv)  # the shared guard checks the paths first (one line, status 2)
    except GuardExit as stop:
        return stop.code
    if args.jobs is None:
        args.jobs = default_jobs(args.memory_limit)
    try:
        lessons = check_usage(args)
    except UsageError as err:
        print(_("grade: {error}", error=err), file=sys.stderr)
        return 2

    def body():
        start = time.monotonic()
        tasks, flags = plan(Path(args.submissions), lessons)
        run_all(tasks, args)
        args.sandbox = sandbox_summary(tasks)
        columns, table = rows(tasks, flags, lessons)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "glmcourse.tools.grade")
        write_csv(out / OUTPUTS[0], columns, table)
        write_html(out / OUTPUTS[1], columns, table, args)
        print(_("graded {notebooks} notebooks of {students} students in {seconds:.0f} s: {csv}, {html}",
                notebooks=len(tasks), students=len(table), seconds=time.monotonic() - start, csv=out / OUTPUTS[0],
                html=out / OUTPUTS[1]))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
