"""glmcourse: the ChatGLM-6B fine-tuning workflow, runnable on a laptop CPU.

``import glmcourse`` registers the course model's classes with transformers' Auto* factories, so
``AutoModel.from_pretrained(glmcourse.COURSE_MODEL)`` works without remote code.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
COURSE_MODEL = str(PACKAGE_DIR / "course_model")  # the shipped tiny ChatGLM (safetensors + tokenizer)
DATA_DIR = REPO_ROOT / "data"  # the course's datasets (Alpaca format)
RUNS_DIR = REPO_ROOT / "runs"  # scratch outputs of notebooks and scripts (git-ignored)

from glmcourse import settings  # noqa: E402  (sets quiet mode before transformers is imported)

try:  # registration needs transformers; the doctor must still run without it
    from glmcourse import modeling as _modeling  # noqa: F401,E402
except ImportError as exc:  # pragma: no cover - reported by `python -m glmcourse doctor`
    _IMPORT_ERROR = exc
