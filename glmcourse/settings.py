"""Course-wide switches: fast mode, seeding, device choice and quiet output.

Every lesson imports from here, so one environment variable changes the whole course:

* ``GLMCOURSE_FAST=1`` (set by ``make test``) shrinks steps and data but runs the same code path.
* ``GLMCOURSE_QUIET=1`` (also set by ``make test``) hides progress bars and chatty library logs,
  so nbval compares stable output.

Hub kernels stay off: no library may download compiled code from a model hub and run it (lesson 02,
"Kernels from a hub"). The lock leaves out the ``kernels`` package that would fetch them, and
``HUB_KERNELS_SWITCH`` below is transformers' own switch, set to off where the course starts.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path

FAST = os.environ.get("GLMCOURSE_FAST", "0").lower() in {"1", "true", "yes"}

# transformers' switch for kernels from the Hugging Face Hub; `USE_HUB_KERNELS=YES` in the environment
# before starting Python turns them back on (with the `kernels` package installed).
HUB_KERNELS_SWITCH = "USE_HUB_KERNELS"
os.environ.setdefault(HUB_KERNELS_SWITCH, "0")


class AbsentHubKernelNote(logging.Filter):
    """bitsandbytes (0.49 and later), on a CPU with AVX512-BF16, asks the ``kernels`` package for a 4-bit
    matmul kernel from the hub while it is imported; without that package it logs "Failed to load ...
    Please make sure you already `pip install kernels`" and uses its own built-in kernel. The course
    leaves ``kernels`` out on purpose, so that one record would tell the learner to undo a deliberate
    choice: it is dropped, and only while ``kernels`` is absent (an installed one still speaks)."""

    PREFIX = "Failed to load CPU gemm_4bit_forward from kernels-community"

    def filter(self, record: logging.LogRecord) -> bool:
        import importlib.util

        return not (str(record.msg).startswith(self.PREFIX) and importlib.util.find_spec("kernels") is None)


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(AbsentHubKernelNote())
QUIET = FAST or os.environ.get("GLMCOURSE_QUIET", "0").lower() in {"1", "true", "yes"}


def fast_or(fast_value, learner_value):
    """Pick the fast-mode value under test and the learner value otherwise."""
    return fast_value if FAST else learner_value


def mode_line() -> str:
    """The line a lesson's first cell prints: which mode this run is in."""
    from glmcourse.i18n import _

    return _("mode: fast (GLMCOURSE_FAST=1, as under make test)") if FAST else _("mode: learner")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so every run repeats."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # numpy is optional for the helpers that call this
        pass
    import torch

    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device(prefer: str | None = None) -> str:
    """Return 'cuda', 'mps' or 'cpu' (or ``prefer`` when it is given)."""
    import torch

    if prefer:
        return prefer
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str):
    """fp16 on a GPU, fp32 on the CPU (CPU half-precision matmuls are slow or missing)."""
    import torch

    return torch.float16 if device == "cuda" else torch.float32


def quiet() -> None:
    """No progress bar for short steps in any mode (loading weights, saving a small dataset); under test
    (QUIET) no progress bars or library chatter at all.

    The environment variables reach libraries imported later; the calls cover those already imported.
    """
    import sys

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if QUIET:
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        if QUIET:
            transformers.logging.set_verbosity_error()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        if QUIET:
            datasets.logging.set_verbosity_error()


CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"  # Noto Sans CJK SC, bundled by the mplfonts package


def use_cjk_font() -> str | None:
    """Let matplotlib draw Chinese: DejaVu Sans (its default) first, Noto Sans CJK SC for every glyph
    DejaVu lacks. The font file comes with the ``mplfonts`` package, so nothing is downloaded.
    Returns the CJK family's name, or None when mplfonts is missing (``python -m glmcourse doctor``
    says so); figures then warn about missing glyphs instead."""
    import importlib.util

    import matplotlib
    from matplotlib import font_manager

    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / CJK_FONT_FILE
    if not path.is_file():
        return None
    font_manager.fontManager.addfont(str(path))
    family = font_manager.FontProperties(fname=str(path)).get_name()
    families = [f for f in matplotlib.rcParams["font.family"] if f != family]
    if families == ["sans-serif"]:  # matplotlib's default: name the first font so the fallback is explicit
        families = ["DejaVu Sans"]
    matplotlib.rcParams["font.family"] = [*families, family]
    return family


def progress(iterable=None, min_items: int = 0, **kwargs):
    """``tqdm.auto`` that stays silent under test, and for work of fewer than ``min_items`` items."""
    from tqdm.auto import tqdm

    total = kwargs.get("total", len(iterable) if hasattr(iterable, "__len__") else None)
    kwargs.setdefault("disable", QUIET or (total is not None and total < min_items))
    return tqdm(iterable, **kwargs)


quiet()
