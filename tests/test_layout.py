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
                     "glmcourse.modeling",
                     "glmcourse.modeling.tokenization_chatglm", "glmcourse.modeling.configuration_chatglm",
                     "glmcourse.modeling.modeling_chatglm"}
SEED_COMMANDS = ["cover_alpaca2jsonl", "tokenize_dataset_rows", "finetune", "cli_demo", "web_demo"]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def package_imports(path: Path, top_level_only: bool = False) -> set[str]:
    """glmcourse modules that ``path`` imports (``from glmcourse import x`` counts as glmcourse.x when x is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "glmcourse":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (REPO / Path(*sub.split("."))).with_suffix(".py").exists() or (REPO / Path(*sub.split("."))).is_dir()
                found.add(sub if is_module else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "glmcourse"}
    return found - {module_name(path)}


def package_files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "course_model" not in p.parts)


def graph(top_level_only: bool) -> dict[str, set[str]]:
    return {module_name(p): package_imports(p, top_level_only) for p in package_files()}


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


def test_no_import_cycle_at_module_level():
    assert find_cycle(graph(top_level_only=True)) is None


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


def test_readme_map_lists_every_file():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Where things are", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    listed = set(re.findall(r"[\w.]+\.py|[\w]+/", block))
    missing = []
    for path in package_files():
        rel = path.relative_to(PKG)
        if len(rel.parts) > 1:  # a sub-package is one line: its folder
            if rel.parts[0] + "/" not in listed:
                missing.append(rel.parts[0] + "/")
        elif rel.name not in listed and rel.name not in ("__init__.py", "__main__.py"):
            missing.append(rel.name)
    assert not missing, f"README 'Where things are' lacks: {sorted(set(missing))}"


LIGHT_COMMANDS = ["cover_alpaca2jsonl", "tokenize_dataset_rows", "finetune", "make_data", "nbtools", "bench", "site",
                  "grade"]


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
