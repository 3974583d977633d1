"""glmcourse: the ChatGLM-6B fine-tuning workflow, runnable on a laptop CPU.

``import glmcourse`` registers the course model's classes with transformers' Auto* factories, so
``AutoModel.from_pretrained(glmcourse.COURSE_MODEL)`` works without remote code. The registration
waits until transformers itself is imported, so that commands which never load a model (a
converter's ``--help``, say) start in a fraction of a second. In the same way, the first
``import matplotlib`` gets a CJK fallback font (``settings.use_cjk_font``), so figures draw 中文.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
COURSE_MODEL = str(PACKAGE_DIR / "course_model")  # the shipped tiny ChatGLM (safetensors + tokenizer)
DATA_DIR = REPO_ROOT / "data"  # the course's datasets (Alpaca format)
# Scratch outputs of notebooks and scripts (git-ignored): <repo>/runs, or GLMCOURSE_RUNS_DIR when set (the
# class hub gives each student their own, inside their workspace, so students never share runs/). A kernel of
# the Chinese edition (GLMCOURSE_LANG=zh, set by its first cell) uses runs/zh/: the two editions of a lesson
# can then run side by side (make test's two workers) without overwriting each other's adapters and data.
_EDITION_RUNS = "runs/zh" if os.environ.get("GLMCOURSE_LANG", "").strip().lower().startswith("zh") else "runs"
RUNS_DIR = Path(os.environ.get("GLMCOURSE_RUNS_DIR") or REPO_ROOT / _EDITION_RUNS).expanduser().absolute()

from glmcourse import settings  # noqa: E402,F401  (sets quiet mode before transformers is imported)


def register_course_model() -> None:
    """Register ``model_type="chatglm"`` with AutoConfig/AutoModel/AutoTokenizer (glmcourse.modeling does it)."""
    try:
        from glmcourse import modeling  # noqa: F401
    except ImportError:  # pragma: no cover - transformers or torch missing: `python -m glmcourse doctor` says so
        pass
    settings.quiet()


# What to do once a library has been imported, whoever imports it first.
AFTER_IMPORT = {"transformers": register_course_model, "matplotlib": settings.use_cjk_font}


class _RunAfterImport(importlib.abc.MetaPathFinder):
    """Runs ``AFTER_IMPORT[name]`` right after the first ``import name`` finishes."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            AFTER_IMPORT[name]()

        spec.loader.exec_module = exec_module
        return spec


for _name, _then in AFTER_IMPORT.items():
    if _name in sys.modules:
        _then()
    elif not any(isinstance(f, _RunAfterImport) and f.name == _name for f in sys.meta_path):
        sys.meta_path.insert(0, _RunAfterImport(_name))
