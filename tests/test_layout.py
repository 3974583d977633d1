"""The package layout: no import cycles, lesson modules at the bottom, and a README map that lists every file."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "glmcourse"
LESSON_MODULES = ["masks", "quant", "chat", "data", "lora", "ptuning"]
# What a lesson module may import from the package: shared basics below every lesson.
LESSON_MAY_IMPORT = {"glmcourse", "glmcourse.settings", "glmcourse.files", "glmcourse.sizes", "glmcourse.bilingual",
                     "glmcourse.i18n",
                     "glmcourse.modeling",
                     "glmcourse.modeling.tokenization_chatglm", "glmcourse.modeling.configuration_chatglm",
                     "glmcourse.modeling.modeling_chatglm"}
SEED_COMMANDS = ["cover_alpaca2jsonl", "tokenize_dataset_rows", "finetune", "cli_demo", "web_demo"]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def is_module(name: str) -> bool:
    where = REPO / Path(*name.split("."))
    return where.with_suffix(".py").exists() or (where / "__init__.py").exists()


def is_main_block(node) -> bool:
    """``if __name__ == "__main__":``: what runs when the file is the program, never when it is imported."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


# Calls that load a module named by their first argument, when that argument is a string literal.
LOADERS = {"import_module", "__import__", "run_module"}


def _imported_names(node, package: str) -> list[str]:
    """The modules one AST node loads: ``import a.b``, ``from a import b`` (a.b when b is a module, else a),
    relative forms, and ``importlib.import_module("glmcourse.x")`` / ``__import__`` / ``runpy.run_module``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # from . import x, from ..y import z
            parts = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        return [f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if called in LOADERS:
            name = node.args[0].value
            if name.startswith(".") and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                name = node.args[1].value + name  # import_module(".x", "glmcourse")
            return [name]
    return []


def package_imports(path: Path, top_level_only: bool = False, main_block: bool = False, source: str | None = None) -> set[str]:
    """glmcourse modules that ``path`` loads.

    Everything counts, wherever it is written: imports inside functions, and ``importlib.import_module``
    with a literal name, are as much an edge as a top-level import (they only run later). The one
    exception is an ``if __name__ == "__main__":`` block: it runs when the file is the program
    (``python -m glmcourse.x``), so it is the command's entry, not something importing the module sets
    off; ``main_block=True`` returns only what such a block loads. ``top_level_only`` keeps the imports
    that run while the module itself is being imported (its module-level statements)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node, in_main: bool, in_function: bool):
        for child in ast.iter_child_nodes(node):
            main = in_main or is_main_block(child)
            function = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if main == main_block and not (top_level_only and function):
                found.update(n for n in _imported_names(child, package) if n.split(".")[0] == "glmcourse")
            visit(child, main, function)

    visit(ast.parse(path.read_text(encoding="utf-8") if source is None else source), False, False)
    return found - {me}


def package_files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "course_model" not in p.parts)


def graph(top_level_only: bool) -> dict[str, set[str]]:
    """Module -> the package modules it loads. In the full graph, an import of one of the module's own
    packages (``import glmcourse`` in glmcourse.cli, for ``glmcourse.COURSE_MODEL``) is left out: Python
    runs a package's ``__init__`` before any module inside it, so such an import only reads a package
    that is already there. The top-level graph keeps those edges: there they can still meet a half-run
    ``__init__``."""
    edges = {}
    for path in package_files():
        name = module_name(path)
        deps = package_imports(path, top_level_only)
        edges[name] = deps if top_level_only else {d for d in deps if not name.startswith(d + ".")}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep] if dep in path else [node, dep]
            if dep not in state:
                cycle = visit(dep, path + [dep])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_are_followed_into_functions_and_importlib_strings():
    """The graph sees what a top-level scan misses, and leaves a __main__ block out."""
    source = ("import os\nfrom glmcourse import files\n\ndef later():\n    from glmcourse.cli import UsageError\n"
              "    import importlib\n    return importlib.import_module('glmcourse.data')\n\n"
              "if __name__ == '__main__':\n    from glmcourse import finetune\n")
    path = PKG / "probe.py"  # not on disk: only its name (glmcourse.probe) is used
    assert package_imports(path, source=source) == {"glmcourse.files", "glmcourse.cli", "glmcourse.data"}
    assert package_imports(path, top_level_only=True, source=source) == {"glmcourse.files"}
    assert package_imports(path, main_block=True, source=source) == {"glmcourse.finetune"}


def test_no_import_cycle_at_module_level():
    cycle = find_cycle(graph(top_level_only=True))
    assert cycle is None, f"import cycle at module level: {' -> '.join(cycle)}"


def test_no_import_cycle_anywhere():
    """Imports inside functions and importlib strings included: a cycle there still loads a module half-built
    or twice, and ties two rooms of the package together."""
    cycle = find_cycle(graph(top_level_only=False))
    assert cycle is None, f"import cycle (imports inside functions and importlib strings count): {' -> '.join(cycle)}"


def test_a_command_entry_that_imports_its_module_back_registers_it():
    """A ``__main__`` block loading a module that imports this one back (ptuning.py -> ptuning_train.py ->
    ptuning) must put itself in sys.modules first, or ``python -m`` runs the lesson's code twice."""
    edges = graph(top_level_only=False)

    def reaches(start, goal, seen=()):
        return start == goal or any(reaches(d, goal, seen + (start,)) for d in edges.get(start, ()) if d not in seen)

    for path in package_files():
        name = module_name(path)
        entry = package_imports(path, main_block=True)
        if any(reaches(dep, name) for dep in entry):
            block = next(n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if is_main_block(n))
            assert "sys.modules" in ast.unparse(block), (
                f"glmcourse/{path.relative_to(PKG)}: its __main__ block loads {sorted(entry)}, which imports "
                f"{name} back; register it first: sys.modules.setdefault({name!r}, sys.modules[__name__])")


def test_python_m_ptuning_loads_the_lesson_module_once():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "glmcourse.ptuning", "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0 and "--pre_seq_len" in done.stdout, done.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "glmcourse.ptuning_train" in imported
    assert "glmcourse.ptuning" not in imported, "python -m glmcourse.ptuning imported the lesson module a second time"


def test_lesson_modules_sit_at_the_bottom():
    """Including imports inside functions: a lesson module never reaches up to checkers, benches or loaders."""
    for name in LESSON_MODULES:
        deps = package_imports(PKG / f"{name}.py")
        assert deps <= LESSON_MAY_IMPORT, f"glmcourse/{name}.py imports {sorted(deps - LESSON_MAY_IMPORT)}"


def test_checkers_live_in_exercises_and_benches_in_bench():
    for path in package_files():
        rel = path.relative_to(PKG)
        if rel.parts[0] in ("exercises", "bench"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert not [n for n in names if n.startswith("check_") and path.stem in LESSON_MODULES + ["sizes"]
                    and "fn" in _arg_names(tree, n)], f"{rel}: exercise checkers belong in glmcourse/exercises/"
        assert not [n for n in names if n.startswith("bench_")], f"{rel}: bench_* functions belong in glmcourse/bench/"


def _arg_names(tree, function_name):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function_name:
            return [a.arg for a in node.args.args]
    return []


@pytest.mark.parametrize("command", SEED_COMMANDS)
def test_seed_commands_keep_their_names(command):
    text = (PKG / f"{command}.py").read_text(encoding="utf-8")
    assert 'if __name__ == "__main__":' in text, f"python -m glmcourse.{command} must stay runnable"


# ------------------------------------------------------------------------------------------ rooms and the map
# The package's four kinds of room: the lessons floor (glmcourse/ itself: lesson modules, seed commands and the
# support modules they share), and three sub-packages above it.
ROOMS = {"exercises": "the checkers", "bench": "the benchmarks", "tools": "the authoring and instructor tools"}
MAPS = {"README.md": "## Where things are", "README.zh-CN.md": "## 代码结构"}
TREE_ENTRY = re.compile(r"^((?:│   |    )*)[├└]── (\S+)")


def map_entries(text: str) -> list[str]:
    """The paths of a README's "Where things are" tree, relative to glmcourse/: a nested line's path is its
    folder's plus its name (``tools/`` then ``    ├── grade.py`` is ``tools/grade.py``)."""
    entries, folders = [], []
    for line in text.splitlines():
        match = TREE_ENTRY.match(line)
        if match:
            depth = len(match.group(1)) // 4
            folders = folders[:depth]
            entries.append("".join(folders) + match.group(2))
            folders.append(match.group(2))
    return entries


def readme_map(readme: str) -> list[str]:
    heading = MAPS[readme]
    text = (REPO / readme).read_text(encoding="utf-8")
    assert heading in text, f"{readme} has no {heading!r} section"
    return map_entries(text.split(heading, 1)[1].split("```text", 1)[1].split("```", 1)[0])


def package_entries() -> set[str]:
    """What the map must list: every module (package __init__/__main__ files are their folder's line) and
    every folder of the package."""
    wanted = set()
    for path in package_files():
        rel = path.relative_to(PKG)
        wanted |= {"".join(f"{part}/" for part in rel.parts[:k]) for k in range(1, len(rel.parts))}
        if rel.name not in ("__init__.py", "__main__.py"):
            wanted.add(rel.as_posix())
    return wanted


def test_map_entries_follow_the_nesting():
    tree = ("glmcourse/\n│ ── a label\n├── masks.py      01  x\n├── tools/        --  y\n│   ├── grade.py\n"
            "│   └── site.py\n└── bench/\n    └── gpu.py\n")
    assert map_entries(tree) == ["masks.py", "tools/", "tools/grade.py", "tools/site.py", "bench/", "bench/gpu.py"]


def test_readme_map_lists_every_module_and_nothing_else():
    listed = readme_map("README.md")
    missing = sorted(package_entries() - set(listed))
    assert not missing, f"README 'Where things are' lacks: {missing}"
    gone = [entry for entry in listed if not (PKG / entry).exists()]
    assert not gone, f"README 'Where things are' lists what is not in glmcourse/: {gone}"
    assert len(listed) == len(set(listed)), f"README 'Where things are' lists twice: {sorted(listed)}"


def test_chinese_readme_map_lists_the_same_entries():
    assert readme_map("README.zh-CN.md") == readme_map("README.md"), (
        "README.zh-CN.md's 代码结构 tree must list README.md's 'Where things are' entries, in the same order")


@pytest.mark.parametrize("room", ROOMS)
def test_every_room_is_a_package_on_the_map(room):
    assert (PKG / room / "__init__.py").is_file(), f"glmcourse/{room}/ ({ROOMS[room]}) is not a package"
    listed = readme_map("README.md")
    assert f"{room}/" in listed and any(e.startswith(f"{room}/") and e != f"{room}/" for e in listed), \
        f"README 'Where things are' does not show the room {room}/ ({ROOMS[room]}) and what is in it"


def test_no_lesson_notebook_imports_a_tool():
    """tools/ is for authors and instructors: a learner's notebook never needs it."""
    import json

    importing = re.compile(r"^\s*(?:from\s+glmcourse\.tools\b|import\s+glmcourse\.tools\b|from\s+glmcourse\s+import\s+"
                           r"(?:\(?[\w\s,]*\b)?tools\b)", re.M)
    found = []
    for path in sorted((REPO / "notebooks").rglob("*.ipynb")) + sorted((REPO / "notebooks").rglob("*.py")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        sources = ["".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code"] \
            if path.suffix == ".ipynb" else [text]
        found += [str(path.relative_to(REPO)) for source in sources if importing.search(source)]
    assert importing.search("x = 1\nfrom glmcourse.tools import grade\n")  # the pattern sees an import
    assert not found, f"these notebooks import glmcourse.tools: {sorted(set(found))}"


def test_the_floor_reads_from_tools_only_where_known():
    """Lesson modules never import tools/ (test_lesson_modules_sit_at_the_bottom); the rest of the floor only
    in the known places, so the authoring tools stay above what the lessons load."""
    reads = {}
    for path in package_files():
        name = module_name(path)
        if name.startswith(("glmcourse.tools", "glmcourse.bench", "glmcourse.exercises")):
            continue
        deps = {d for d in package_imports(path) if d.startswith("glmcourse.tools")}
        if deps:
            reads[name] = deps
    assert not reads, f"modules of the lessons floor importing glmcourse.tools (move what they need down): {reads}"


LIGHT_COMMANDS = ["cover_alpaca2jsonl", "tokenize_dataset_rows", "finetune", "bench", "tools.make_data", "tools.nbtools",
                  "tools.site", "tools.grade"]


@pytest.mark.parametrize("command", LIGHT_COMMANDS)
def test_help_imports_no_heavy_library(command):
    """`--help` of a command that needs no model imports neither torch, transformers, datasets nor gradio."""
    import subprocess
    import sys

    code = (f"import runpy, sys\nsys.argv = ['{command}', '--help']\n"
            f"try:\n    runpy.run_module('glmcourse.{command}', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'gradio') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120).stdout
    assert "HEAVY []" in out, f"python -m glmcourse.{command} --help imports {out.split('HEAVY')[-1].strip()}"


def test_importing_transformers_after_glmcourse_registers_the_course_model():
    import subprocess
    import sys

    code = ("import glmcourse, sys\nassert 'transformers' not in sys.modules\n"
            "from transformers import AutoConfig\n"
            "print(type(AutoConfig.from_pretrained(glmcourse.COURSE_MODEL)).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.stdout.strip() == "ChatGLMConfig", out.stderr[-2000:]


# ---------------------------------------------------------------------------------------- function length
MAX_FUNCTION_LINES = 80  # a function a reader can hold in view; longer ones are split into named steps


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'name (line N, L lines)' for every function or method (nested ones too) longer than ``limit`` lines,
    decorators and docstring included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = node.end_lineno - first + 1
            if length > limit:
                found.append(f"{node.name} (line {first}, {length} lines)")
    return found


def test_long_functions_sees_a_long_function():
    body = "".join(f"    x{i} = {i}\n" for i in range(4))
    source = f"def short():\n{body}\nclass A:\n    def method(self):\n{body.replace('    ', '        ')}"
    assert long_functions(source, limit=4) == ["short (line 1, 5 lines)", "method (line 8, 5 lines)"]
    assert long_functions(source, limit=5) == []


def test_no_function_is_over_80_lines():
    """Every function in the package (methods and nested functions included) fits in 80 lines."""
    long = [f"glmcourse/{path.relative_to(PKG)}: {name}" for path in sorted(PKG.rglob("*.py"))
            for name in long_functions(path.read_text(encoding="utf-8"))]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): {long}"


# Section headers, as the package writes them: either a box of three comment lines,
#     # ------------------------------------------------------------------------------------------
#     # 3. Which layers get adapters        (numbered in lora.py and ptuning.py, plain elsewhere)
#     # ------------------------------------------------------------------------------------------
# or one line: a rule followed by the title, "# ---------------------------------------- int4 packing".
# A rule is "# " and at least 20 dashes.
RULE = re.compile(r"^# -{20,}$")
RULE_WITH_TITLE = re.compile(r"^# -{20,} (\S.*)$")
NUMBERED = re.compile(r"^(\d+)\. ")


def section_headers(lines: list[str]) -> list[tuple[int, str, int]]:
    """(first line index, title, index of the first line after the header) for every section header."""
    found, i = [], 0
    while i < len(lines):
        if RULE.match(lines[i]) and i + 2 < len(lines) and lines[i + 1].startswith("# ") \
                and not RULE.match(lines[i + 1]) and RULE.match(lines[i + 2]):
            found.append((i, lines[i + 1][2:].strip(), i + 3))
            i += 3
            continue
        match = RULE_WITH_TITLE.match(lines[i])
        if match:
            found.append((i, match.group(1).strip(), i + 1))
        i += 1
    return found


def header_problems(text: str) -> list[str]:
    """Sections with no code under them (only blank or comment lines before the next header or the end of
    the file), and numbered sections that do not count 1, 2, 3... in order."""
    lines = text.splitlines()
    headers = section_headers(lines)
    problems = []
    for k, (start, title, body) in enumerate(headers):
        end = headers[k + 1][0] if k + 1 < len(headers) else len(lines)
        if not any(line.strip() and not line.lstrip().startswith("#") for line in lines[body:end]):
            problems.append(f"line {start + 1}: section {title!r} has no code under it")
    numbers = [int(m.group(1)) for _, title, _ in headers if (m := NUMBERED.match(title))]
    if numbers and numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"numbered sections run {numbers}, not 1..{len(numbers)}")
    return problems


def test_header_problems_sees_an_empty_or_misnumbered_section():
    box = "# " + "-" * 40 + "\n# {}\n# " + "-" * 40 + "\n"
    good = box.format("1. The layer") + "x = 1\n" + "# " + "-" * 30 + " plots\ndef f():\n    pass\n"
    assert header_problems(good) == []
    empty = good + box.format("2. Merging") + "\n\n" + box.format("3. Checkers") + "# a comment only\n"
    assert header_problems(empty) == ["line 8: section '2. Merging' has no code under it",
                                      "line 13: section '3. Checkers' has no code under it"]
    assert header_problems(box.format("1. A") + "a = 1\n" + box.format("3. C") + "c = 1\n") == [
        "numbered sections run [1, 3], not 1..2"]


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_every_section_header_has_code_under_it(path):
    problems = header_problems(path.read_text(encoding="utf-8"))
    assert not problems, f"glmcourse/{path.relative_to(PKG)}: " + "; ".join(problems)


# ------------------------------------------------------------------------------------------ references
CATALOG = REPO / "docs" / "failure-catalog.md"
# Two ways to cite the catalog: one entry by its anchor, "docs/failure-catalog.md#f14-nothing-trains", or
# several by their numbers, "docs/failure-catalog.md: F03, F13-F16, F25".
CITATION = re.compile(r"failure-catalog\.md#([\w-]+)")
CITED_NUMBERS = re.compile(r"failure-catalog\.md: ((?:[FN]\d\d(?:-[FN]\d\d)?(?:, )?)+)")
# Citations of what is not in the repository: the old list of known failures, tracker issue numbers, the
# reference notes, and bare case numbers such as "(#14)".
STRAY_CITATION = re.compile(r"known[- _]failures?\b|known failure #|已知问题 ?#|\bissues? #?\d+\b|chatglm-reference"
                            r"|\(#\d{1,2}\b", re.I)
CITING_FOLDERS = ("glmcourse", "tests", "notebooks")
# Notebook prose still citing the old list: fixed in the notebooks' own change (English, catalog and
# zh edition together), then removed here. The test fails when this list and the notebooks disagree.
NOTEBOOK_PROSE_TO_FIX: dict[str, list[str]] = {}


def catalog_anchors() -> set[str]:
    return set(re.findall(r'<a id="([\w-]+)"></a>', CATALOG.read_text(encoding="utf-8")))


def citing_files() -> list[Path]:
    return sorted(p for folder in CITING_FOLDERS for p in (REPO / folder).rglob("*")
                  if p.suffix in (".py", ".ipynb", ".md", ".cfg") and "course_model" not in p.parts
                  and ".ipynb_checkpoints" not in p.parts and p != Path(__file__).resolve())


def _numbers(spec: str) -> list[str]:
    """"F03, F13-F16" -> F03, F13, F14, F15, F16."""
    out = []
    for part in spec.rstrip(", ").split(", "):
        first, _, last = part.partition("-")
        out += [f"{first[0]}{n:02d}" for n in range(int(first[1:]), int((last or first)[1:]) + 1)]
    return out


def test_every_catalog_citation_names_an_anchor():
    anchors = catalog_anchors()
    numbers = {a.split("-")[0].upper() for a in anchors}
    assert len(anchors) >= 25 and _numbers("F03, F13-F15") == ["F03", "F13", "F14", "F15"]
    cited, broken = set(), []
    for path in citing_files():
        text = path.read_text(encoding="utf-8")
        for anchor in CITATION.findall(text):
            cited.add(anchor)
            if anchor not in anchors:
                broken.append(f"{path.relative_to(REPO)}: #{anchor}")
        for spec in CITED_NUMBERS.findall(text):
            broken += [f"{path.relative_to(REPO)}: {n}" for n in _numbers(spec) if n not in numbers]
    assert not broken, f"citations of docs/failure-catalog.md with no such entry: {broken}"
    assert cited, "nothing cites docs/failure-catalog.md"


def test_no_citation_of_a_document_outside_the_repository():
    """'known-failures #N', 'issue NN' and the reference notes live outside the repository: cite the catalog."""
    stray, notebook_prose = [], {}
    for path in citing_files():
        rel = path.relative_to(REPO).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in STRAY_CITATION.finditer(line):
                if rel in NOTEBOOK_PROSE_TO_FIX:
                    notebook_prose.setdefault(rel, []).append(match.group(0))
                else:
                    stray.append(f"{rel}:{number}: {line.strip()[:100]}")
    assert not stray, "cite docs/failure-catalog.md#ANCHOR (or nothing) instead of:\n" + "\n".join(stray)
    assert notebook_prose == NOTEBOOK_PROSE_TO_FIX, "update NOTEBOOK_PROSE_TO_FIX to what the notebooks still cite"


def test_the_catalog_names_only_tests_that_exist():
    """Each entry's `tests/FILE::test_name` (and `::test_name`, same file) is a test function in that file."""
    text = CATALOG.read_text(encoding="utf-8")
    missing = []
    for entry in text.split('<a id="')[1:]:
        anchor, current = entry.split('"', 1)[0], None
        for file, name in re.findall(r"(tests/[\w/]+\.py)?::(\w+)", entry):
            current = file or current
            source = (REPO / current).read_text(encoding="utf-8")
            if not re.search(rf"^(async )?def {name}\(", source, re.M):
                missing.append(f"#{anchor}: {current}::{name}")
    assert not missing, f"docs/failure-catalog.md names tests that do not exist: {missing}"
