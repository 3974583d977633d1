"""Run, clean and check the course notebooks.

The course commits its notebooks *executed*, so they read well on a code-hosting site, and keeps
them tidy so diffs stay small. This module is the one tool for both jobs::

    python -m glmcourse.tools.nbtools run   notebooks/01_glm_attention_masks.ipynb   # execute in place + clean
    python -m glmcourse.tools.nbtools clean notebooks/*.ipynb                        # clean only
    python -m glmcourse.tools.nbtools check notebooks/*.ipynb                        # report hygiene problems
    python -m glmcourse.tools.nbtools course                                         # `make course`
    python -m glmcourse.tools.nbtools update-catalogs                                # i18n/zh_CN/*.po from the English (+ exercises.po)
    python -m glmcourse.tools.nbtools translate [--strict]                           # notebooks/zh/ from the catalogs
    python -m glmcourse.tools.nbtools run --edition zh notebooks/0*.ipynb             # regenerate + execute notebooks/zh/ in Chinese

``run`` executes with the ``python3`` kernel, the notebook's own folder as working directory and a
300 s limit per cell. A notebook that fails is left untouched on disk and the command exits 1.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from glmcourse.files import atomic_write
from glmcourse.tools import notebook_io
from glmcourse.tools.notebook_io import read_notebook, write_notebook  # the one reader and writer (also nbtools' API)

# What JupyterLab writes when it opens and saves a notebook, so opening a lesson never breaks the check.
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
DISPLAY_NAMES = {"Python 3 (ipykernel)", "Python 3"}  # ipykernel's name, and the older form
LANGUAGE_INFO = {"name": "python"}
# Keys a running kernel adds to language_info (JupyterLab saves them): accepted, removed by `clean`.
KERNEL_LANGUAGE_KEYS = {"codemirror_mode", "file_extension", "mimetype", "name", "nbconvert_exporter",
                        "pygments_lexer", "version"}
# For a learner who ran a lesson in notebooks/ itself: keep their copy in the workspace first, then restore
# only that file (README "Where your work lives").
RESTORE_HINT = ("If you ran or edited a course notebook in notebooks/: your work belongs in your workspace work/ "
                "(`make lab` serves it; README \"Where your work lives\"). Copy your version there first, e.g. "
                "`cp notebooks/01_glm_attention_masks.ipynb work/01_glm_attention_masks.mine.ipynb`, then restore "
                "the course's version of that file: `git checkout -- notebooks/01_glm_attention_masks.ipynb`.")
CELL_TIMEOUT_S = 300
LEARNER_CELL_TIMEOUT_S = 1800  # `course` runs full-size training cells
# Machine-specific folders that must never show up in a committed output.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:root|tmp|home|work)/")
BINARY_MIME_PREFIXES = ("image/",)  # base64 payloads can contain "/tmp/" by chance


# ---------------------------------------------------------------------------- cleaning
def clean_notebook(nb):
    """Strip machine- and session-specific metadata; renumber executed cells 1..n. Returns ``nb``."""
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    count = 0
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = {"tags": list(tags)} if tags else {}
        if cell.cell_type != "code":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            continue
        if cell.get("execution_count") is None and not cell.get("outputs"):
            continue  # never executed: leave it so `check` reports it
        count += 1
        cell.execution_count = count
        for out in cell.get("outputs", []):
            if out.get("output_type") == "execute_result":
                out["execution_count"] = count
    return nb


# ---------------------------------------------------------------------------- checking
def _output_texts(output):
    """Yield (label, text) for every textual part of one output."""
    kind = output.get("output_type")
    if kind == "stream":
        yield f"{output.get('name', 'stream')}", _join(output.get("text", ""))
    elif kind == "error":
        yield "error", "\n".join([output.get("ename", ""), output.get("evalue", "")]
                                 + list(output.get("traceback", [])))
    else:
        for mime, value in (output.get("data") or {}).items():
            if mime.startswith(BINARY_MIME_PREFIXES) and mime != "image/svg+xml":
                continue
            yield mime, value if isinstance(value, str) else _join(value)


def _join(value):
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return json.dumps(value)


def check_notebook(nb, name: str = "notebook") -> list[str]:
    """Return a list of hygiene problems (empty when the notebook is clean)."""
    problems = []
    meta = dict(nb.get("metadata", {}))
    spec = dict(meta.get("kernelspec") or {})
    if spec.get("display_name") in DISPLAY_NAMES:
        spec["display_name"] = KERNELSPEC["display_name"]
    if spec != KERNELSPEC:
        problems.append(f"{name}: kernelspec is {meta.get('kernelspec')!r}; expected {KERNELSPEC!r}")
    info = meta.get("language_info")
    if not isinstance(info, dict) or info.get("name") != "python" or set(info) - KERNEL_LANGUAGE_KEYS:
        problems.append(f"{name}: language_info is {info!r}; expected {LANGUAGE_INFO!r}")
    extra = sorted(set(meta) - {"kernelspec", "language_info"})
    if extra:
        problems.append(f"{name}: extra notebook metadata {extra}")

    expected_count = 0
    for index, cell in enumerate(nb.cells):
        where = f"{name} cell {index}"
        extra = sorted(set(cell.get("metadata", {})) - {"tags"})
        if extra:
            problems.append(f"{where}: extra cell metadata {extra}")
        if cell.cell_type != "code":
            continue
        count = cell.get("execution_count")
        if count is None:
            if cell.source.strip():
                problems.append(f"{where}: code cell was not executed (no execution count)")
            elif cell.get("outputs"):
                problems.append(f"{where}: outputs without an execution count")
            continue
        expected_count += 1
        if count != expected_count:
            problems.append(f"{where}: execution count {count}, expected {expected_count} (run top to bottom)")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{where}: error output {output.get('ename')}: {output.get('evalue', '')[:120]}")
            for label, text in _output_texts(output):
                match = ABSOLUTE_PATH.search(text)
                if match:
                    start = max(match.start() - 30, 0)
                    snippet = text[start:match.end() + 30].replace("\n", " ")
                    problems.append(f"{where}: absolute path in {label} output: ...{snippet}...")
    return problems


def check_paths(paths) -> list[str]:
    problems = []
    for path in paths:
        try:
            nb = read_notebook(path)
        except Exception as exc:  # unreadable JSON is a hygiene problem too
            problems.append(f"{path}: cannot read notebook: {exc}")
            continue
        problems.extend(check_notebook(nb, str(path)))
    return problems


# ---------------------------------------------------------------------------- executing
class _PeakRSS:
    """Poll the resident memory of this process's children (the kernel and anything it starts)."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def execute_notebook(path, output=None, timeout: int = CELL_TIMEOUT_S, measure: bool = False) -> dict:
    """Execute ``path`` (cwd = its folder) and write the cleaned result to ``output`` (default: in place).

    Returns {"notebook", "ok", "wall_s", "peak_rss_mib", "error"}. On failure nothing is written.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    nb = read_notebook(path)
    current = {}

    def note_cell(cell, cell_index, **_):
        current.update(index=cell_index, source=cell.source.strip().splitlines()[:1])

    # The kernel talks to this process over Unix sockets in a private temporary folder, not over TCP: nothing
    # listens on a port, and the kernel has no "running over TCP without encryption" warning to print.
    from traitlets.config import Config

    sockets = tempfile.mkdtemp(prefix="glmcourse-kernel-")
    config = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", on_cell_start=note_cell, config=config,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    result = {"notebook": path.name, "ok": False, "wall_s": None, "peak_rss_mib": None, "error": None}
    start = time.perf_counter()
    monitor = _PeakRSS() if measure else None
    try:
        if monitor:
            monitor.__enter__()
        client.execute()
        result["ok"] = True
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        where = f"cell {current.get('index')} ({(current.get('source') or [''])[0][:60]!r})"
        result["error"] = f"{type(exc).__name__} in {where}: {exc}"
    finally:
        if monitor:
            monitor.__exit__(None, None, None)
            result["peak_rss_mib"] = round(monitor.peak_bytes / 2**20, 1)
        result["wall_s"] = round(time.perf_counter() - start, 1)
        shutil.rmtree(sockets, ignore_errors=True)
    if result["ok"]:
        write_notebook(clean_notebook(nb), output or path)
    return result


def notebooks_in(folder) -> list[Path]:
    """The course notebooks of ``folder`` in lesson order (no checkpoints, no solutions)."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.startswith("."))


def run_course(folder, out_dir, results_file, timeout: int = LEARNER_CELL_TIMEOUT_S, only=None) -> list[dict]:
    """Execute every notebook (or those named in ``only``) in learner mode into ``out_dir``.

    Prints a table of wall time and peak RSS and saves it to ``results_file``; rows of notebooks
    not run this time are kept from the previous file, so the course can be measured in parts.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = notebooks_in(folder)
    if only:
        wanted = {Path(name).name for name in only}
        unknown = wanted - {p.name for p in paths}
        if unknown:
            raise SystemExit(f"not in {folder}: {sorted(unknown)}; choose from {[p.name for p in paths]}")
        paths = [p for p in paths if p.name in wanted]
    rows = []
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        row = execute_notebook(path, output=out_dir / path.name, timeout=timeout, measure=True)
        rows.append(row)
        if not row["ok"]:
            print(row["error"], file=sys.stderr)
    print(format_table(rows))
    results_file = Path(results_file)
    previous = {}
    if results_file.exists():
        try:
            previous = {r["notebook"]: r for r in json.loads(results_file.read_text(encoding="utf-8"))["notebooks"]}
        except (ValueError, KeyError):
            previous = {}
    merged = dict(previous)
    merged.update({r["notebook"]: {k: r[k] for k in ("notebook", "ok", "wall_s", "peak_rss_mib")} for r in rows})
    existing = {p.name for p in notebooks_in(folder)}
    record = {
        "what": "learner-mode run of every notebook (GLMCOURSE_FAST unset), measured by `make course`",
        "machine": _machine(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_1min": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "notebooks": [merged[name] for name in sorted(merged) if name in existing],
    }
    with atomic_write(results_file) as handle:
        handle.write(json.dumps(record, indent=2) + "\n")
    print(f"saved {results_file}")
    return rows


def _machine() -> str:
    import platform

    try:
        import psutil

        ram = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        ram = ""
    return f"{platform.machine()}, {os.cpu_count()} CPU cores{ram}"


def format_table(rows) -> str:
    lines = [f"{'notebook':<36} {'status':>6} {'wall time (s)':>14} {'peak RSS (MiB)':>15}",
             "-" * 74]
    for r in rows:
        rss = "-" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f}"
        lines.append(f"{r['notebook']:<36} {'ok' if r['ok'] else 'FAILED':>6} {r['wall_s']:>14.1f} {rss:>15}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line
def _is_times_file(path) -> bool:
    """An earlier --results of `course`: a JSON object (the guard replaces nothing else)."""
    try:
        return isinstance(json.loads(Path(path).read_text(encoding="utf-8")), dict)
    except (OSError, ValueError, RecursionError):
        return False


def build_parser():
    from glmcourse.cli import INPUT_DIR, INPUT_FILE, OUTPUT_DIR, OUTPUT_FILE, CourseParser, int_arg

    parser = CourseParser(prog="python -m glmcourse.tools.nbtools", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    timeout = int_arg("--timeout", 1, 24 * 3600, example=CELL_TIMEOUT_S)
    p_run = sub.add_parser("run", help="execute notebooks in place, then clean them")
    p_run.add_argument("notebooks", nargs="+", kind=INPUT_FILE, fmt="ipynb")
    p_run.add_argument("--timeout", type=timeout, default=CELL_TIMEOUT_S, help="seconds per cell (default 300)")
    p_run.add_argument("--edition", choices=["en", "zh"], default="en",
                       help="zh: regenerate notebooks/zh/ editions of the named lessons and execute them in Chinese")
    p_clean = sub.add_parser("clean", help="clean metadata and renumber, without executing")
    p_clean.add_argument("notebooks", nargs="+", kind=INPUT_FILE, fmt="ipynb")
    p_check = sub.add_parser("check", help="report hygiene problems; exit 1 if any")
    p_check.add_argument("notebooks", nargs="+", kind=INPUT_FILE, fmt="ipynb")
    p_course = sub.add_parser("course", help="execute every notebook in learner mode and time it")
    p_course.add_argument("only", nargs="*", help="notebook names to (re-)measure; default: all")
    p_course.add_argument("--notebooks-dir", default="notebooks", kind=INPUT_DIR)
    p_course.add_argument("--out-dir", default="runs/course", kind=OUTPUT_DIR, replace_check=False)
    p_course.add_argument("--results", default="docs/course_times.json", kind=OUTPUT_FILE, owned=_is_times_file)
    p_course.add_argument("--timeout", type=int_arg("--timeout", 1, 24 * 3600, example=LEARNER_CELL_TIMEOUT_S),
                          default=LEARNER_CELL_TIMEOUT_S, help="seconds per cell (default 1800)")
    p_update = sub.add_parser("update-catalogs", help="add new English texts to i18n/zh_CN/*.po, mark changed ones fuzzy")
    p_update.add_argument("notebooks", nargs="*", kind=INPUT_FILE, fmt="ipynb", help="default: every notebooks/NN_*.ipynb")
    p_translate = sub.add_parser("translate", help="write notebooks/zh/ from the English notebooks and the catalogs")
    p_translate.add_argument("notebooks", nargs="*", kind=INPUT_FILE, fmt="ipynb", help="default: every notebooks/NN_*.ipynb")
    p_translate.add_argument("--strict", action="store_true",
                             help="exit 1 if any text is untranslated or fuzzy (nothing is written)")
    return parser


def main(argv=None) -> int:
    from glmcourse.cli import run_cli

    try:
        args = build_parser().parse_args(argv)  # the guard: every notebook named exists and is a notebook
    except SystemExit as stop:
        return stop.code
    status = []
    code = run_cli(lambda: status.append(_main(args)))
    return status[0] if status and code == 0 else code


def _main(args) -> int:
    if args.command == "run" and args.edition == "zh":
        from glmcourse.tools.zh_edition import run_edition

        return run_edition(args.notebooks, timeout=args.timeout, execute=execute_notebook)
    if args.command == "run":
        failed = 0
        for nb_path in args.notebooks:
            res = execute_notebook(nb_path, timeout=args.timeout)
            if res["ok"]:
                print(f"[OK] {nb_path}: executed and cleaned in {res['wall_s']:.1f} s")
            else:
                failed += 1
                print(f"[FAIL] {nb_path}: left unchanged ({res['wall_s']:.1f} s)\n{res['error']}", file=sys.stderr)
        return 1 if failed else 0
    if args.command == "clean":
        for nb_path in args.notebooks:
            write_notebook(clean_notebook(read_notebook(nb_path)), nb_path)
            print(f"[OK] {nb_path}: cleaned")
        return 0
    if args.command == "check":
        problems = check_paths(args.notebooks)
        for line in problems:
            print(f"[FAIL] {line}")
        if problems:
            print(RESTORE_HINT)
        else:
            print(f"[OK] {len(args.notebooks)} notebook(s) clean")
        return 1 if problems else 0
    if args.command == "course":
        rows = run_course(args.notebooks_dir, args.out_dir, args.results, timeout=args.timeout, only=args.only)
        return 0 if all(r["ok"] for r in rows) else 1
    if args.command == "update-catalogs":
        return _update_catalogs(args.notebooks)
    if args.command == "translate":
        return _translate(args.notebooks, strict=args.strict)
    return 2


# ---------------------------------------------------------------------------- translations
def _lesson_paths(names):
    paths = [Path(n) for n in names] if names else notebook_io.lesson_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"no such notebook: {', '.join(missing)}")
    return paths


def _report_update(po_path, res) -> None:
    from glmcourse.tools.catalogs import shown

    state = "updated" if res.changed else "unchanged"
    print(f"[OK] {shown(po_path)}: {state} ({res.new} new, {res.fuzzy} fuzzy, "
          f"{res.obsolete} newly obsolete, {res.kept} translations kept)")


def _update_catalogs(names) -> int:
    from glmcourse.tools import catalogs, template_catalogs

    for path in _lesson_paths(names):
        po_path = catalogs.catalog_path(path)
        _report_update(po_path, catalogs.update_catalog(path, po_path))
    if not names:  # the checkers' messages and the figures' labels have a catalog each too
        for update, po_path in ((template_catalogs.update_exercise_catalog, template_catalogs.EXERCISE_CATALOG),
                                (template_catalogs.update_figure_catalog, template_catalogs.FIGURE_CATALOG),
                                (template_catalogs.update_message_catalog, template_catalogs.MESSAGE_CATALOG)):
            _report_update(po_path, update(po_path))
    return 0


def _translate(names, strict: bool = False) -> int:
    from glmcourse.tools import catalogs, editions

    paths = _lesson_paths(names)
    if strict:
        missing = [m for path in paths for m in editions.translate_notebook(path).missing]
        if missing:
            for m in missing:
                print(f"[FAIL] {m}", file=sys.stderr)
            print(f"[FAIL] {len(missing)} text(s) untranslated or fuzzy; nothing written. Fill in msgstr "
                  f"(and clear the fuzzy flag) in i18n/{catalogs.LANG}/*.po", file=sys.stderr)
            return 1
    for path in paths:
        res = editions.write_translation(path)
        out = catalogs.shown(editions.edition_path(path))
        if res.missing:
            print(f"[WARN] {out}: {len(res.missing)} of {res.units} texts left in English "
                  f"(untranslated or fuzzy; `translate --strict` lists them)")
        else:
            print(f"[OK] {out}: all {res.units} texts translated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
