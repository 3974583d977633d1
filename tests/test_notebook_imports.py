"""Each lesson notebook reads alongside its own module: it imports that module, ``lesson_runs`` and a few
support modules, nothing else from the package.

What a notebook may import from ``glmcourse``:

* its lesson module (``OWN``): the code the lesson teaches, read side by side with the notebook;
* ``lesson_runs``: everything else the lesson calls (training runs, scores, loaders, figures, the seed
  commands), under the name the defining module gives it (``lesson_runs.score``);
* the course itself: the package root (``glmcourse.COURSE_MODEL``, ``DATA_DIR``, ``RUNS_DIR``) and the model
  (``glmcourse.modeling``), which every lesson studies and every lesson module builds on;
* at most ``MAX_SUPPORT`` of ``SUPPORT``: ``settings`` (fast mode, seeding), ``bilingual`` (figure labels and printed lines in
  the reader's language) and ``exercises`` (the checkers of the exercise cells). These three are about how
  a notebook runs, not what it teaches, and are the same in every lesson.

Counting: ``from glmcourse import a, b`` is two modules, ``from glmcourse.a import x`` is ``a``, and an
import anywhere in a cell (inside a function too) or ``importlib.import_module("glmcourse.x")`` counts.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# The start page (00) checks the setup and sizes the model; every other notebook has one lesson module.
OWN = {
    "00_start_here": {"sizes", "doctor"},
    "01_glm_attention_masks": {"masks"},
    "02_quantization": {"quant"},
    "03_deploy_and_chat": {"chat"},
    "04_data_formatting": {"data"},
    "05_lora_finetuning": {"lora"},
    "06_inference_with_lora": {"adapters"},
    "07_ptuning_v2": {"ptuning"},
}
ALWAYS = {"lesson_runs", "<package>", "modeling"}  # <package>: glmcourse itself (its paths)
SUPPORT = {"settings", "bilingual", "exercises"}
MAX_SUPPORT = 3
LOADERS = {"import_module", "__import__", "run_module"}


def _is_module(dotted: str) -> bool:
    where = REPO / Path(*dotted.split("."))
    return where.with_suffix(".py").exists() or (where / "__init__.py").exists()


def _top(dotted: str) -> str:
    """glmcourse.modeling.modeling_chatglm -> modeling; glmcourse -> <package>."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "<package>"


def imported_modules(source: str) -> set[str]:
    """The package's modules (second component of the dotted name) that a cell's code imports."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    found = set()
    for node in ast.walk(ast.parse(code)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{a.name}" if _is_module(f"{node.module}.{a.name}") else node.module
                     for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in LOADERS:
                names = [node.args[0].value]
        found.update(_top(n) for n in names if n.split(".")[0] == "glmcourse")
    return found


def notebook_imports(path: Path) -> set[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    found = set()
    for cell in cells:
        if cell["cell_type"] == "code":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            found |= imported_modules(source)
    return found


def import_problems(stem: str, modules: set[str]) -> list[str]:
    own = OWN[stem]
    problems = [f"does not import its lesson module {sorted(own - modules)}"] if not own & modules else []
    other = modules - own - ALWAYS - SUPPORT
    if other:
        problems.append(f"imports {sorted(other)}: reach them through glmcourse.lesson_runs (or the lesson module)")
    support = modules & SUPPORT
    if len(support) > MAX_SUPPORT:
        problems.append(f"imports {len(support)} support modules {sorted(support)}, at most {MAX_SUPPORT}")
    return problems


def lesson_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_every_lesson_notebook_has_an_entry():
    assert [p.stem for p in lesson_notebooks()] == sorted(OWN)


@pytest.mark.parametrize("path", lesson_notebooks(), ids=lambda p: p.stem)
def test_notebook_imports_its_module_lesson_runs_and_support_only(path):
    problems = import_problems(path.stem, notebook_imports(path))
    assert not problems, f"notebooks/{path.name}: " + "; ".join(problems)


def test_import_counting_sees_every_form():
    cell = ("import glmcourse\nfrom glmcourse import lora, settings\nfrom glmcourse.exercises import attempt\n"
            "%matplotlib inline\nfrom glmcourse.modeling.modeling_chatglm import rotary_inv_freq\n"
            "def later():\n    from glmcourse.evaluation import score\n"
            "plots = importlib.import_module('glmcourse.plots')\nimport torch\n")
    assert imported_modules(cell) == {"<package>", "lora", "settings", "exercises", "modeling", "evaluation", "plots"}


def test_import_problems_names_what_is_wrong():
    assert import_problems("05_lora_finetuning", {"lora", "lesson_runs", "settings", "<package>"}) == []
    assert import_problems("05_lora_finetuning", {"lora", "evaluation", "finetune"}) == [
        "imports ['evaluation', 'finetune']: reach them through glmcourse.lesson_runs (or the lesson module)"]
    assert import_problems("06_inference_with_lora", {"lesson_runs"}) == [
        "does not import its lesson module ['adapters']"]
    global MAX_SUPPORT
    saved, MAX_SUPPORT = MAX_SUPPORT, 2
    try:
        assert import_problems("01_glm_attention_masks", {"masks"} | SUPPORT) == [
            "imports 3 support modules ['bilingual', 'exercises', 'settings'], at most 2"]
    finally:
        MAX_SUPPORT = saved


def test_lesson_runs_names_what_the_notebooks_call():
    """Every ``lesson_runs.NAME`` a notebook uses exists (so a rename there fails here, not in a kernel)."""
    from glmcourse import lesson_runs

    missing = []
    for path in lesson_notebooks():
        text = path.read_text(encoding="utf-8")
        missing += [f"{path.name}: lesson_runs.{name}" for name in sorted(set(re.findall(r"lesson_runs\.(\w+)", text)))
                    if not hasattr(lesson_runs, name)]
    assert not missing, missing


MAX_LESSON_MODULE_LINES = 700  # a module one reads top to bottom beside its notebook


def test_lesson_modules_stay_short_enough_to_read_beside_the_notebook():
    """data.py was 757 lines; its file readers and the converter's writing moved to files.py and the command."""
    lengths = {name: len((REPO / "glmcourse" / f"{name}.py").read_text(encoding="utf-8").splitlines())
               for names in OWN.values() for name in names}
    assert "data" in lengths and all(n > 0 for n in lengths.values())
    too_long = {name: n for name, n in lengths.items() if n > MAX_LESSON_MODULE_LINES}
    assert not too_long, f"lesson modules over {MAX_LESSON_MODULE_LINES} lines: {too_long}"
