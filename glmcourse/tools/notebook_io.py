"""Reading and saving notebooks: the one place the package opens or writes an ``.ipynb`` file.

The notebook tools (``nbtools``: run, clean, check), the translation pipeline (catalogs, the Chinese
edition), the site builder and the grader all come here, so a notebook is read and saved the same way
everywhere, and the same lessons are found:

* ``lesson_notebooks()``: ``notebooks/NN_*.ipynb`` in lesson order;
* ``read_notebook(path)``: for commands; a missing, non-UTF-8 or damaged notebook is a one-line ``cli.UsageError``;
* ``notebook_or_reason(path)``: for the grader, which must not stop on one student's broken file:
  ``(notebook, None)`` or ``(None, why it is not a notebook)``;
* ``notebook_text(nb)``: the text a notebook is saved as (nbformat 4, ending in a newline);
* ``write_notebook(nb, path)``: that text, written atomically by ``files.atomic_write``.

nbformat is imported inside the functions, so importing this module costs nothing.
"""
from __future__ import annotations

from pathlib import Path

from glmcourse import REPO_ROOT
from glmcourse.files import atomic_write

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"


def lesson_notebooks(folder=None) -> list[Path]:
    """notebooks/NN_*.ipynb in lesson order: a new lesson is picked up without configuration
    (by the Chinese edition, the grader and the site alike)."""
    return sorted(Path(folder or NOTEBOOKS_DIR).glob(LESSON_GLOB))


def read_notebook(path):
    """A notebook (nbformat 4); a missing, non-UTF-8 or damaged one is a one-line ``cli.UsageError``."""
    import nbformat

    from glmcourse.cli import UsageError, one_line, parse_json, read_text

    text = read_text(path, f"notebook {path}")
    value = parse_json(text, f"notebook {path}")
    if not isinstance(value, dict) or not isinstance(value.get("cells"), list):
        raise UsageError(f"notebook {path}: not a Jupyter notebook (no list of cells); restore it with "
                         f"`git checkout -- {path}`, or pass an .ipynb file.")
    try:
        return nbformat.reads(text, as_version=4)
    except Exception as err:  # noqa: BLE001 - nbformat's validation and conversion errors
        raise UsageError(f"notebook {path}: not a valid notebook ({one_line(err)}); restore it with "
                         f"`git checkout -- {path}`.") from None


def notebook_or_reason(path):
    """(notebook, None), or (None, why it is not a notebook): never raises on a damaged file."""
    import warnings

    import nbformat

    from glmcourse.cli import one_line

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


def notebook_text(nb) -> str:
    """The text ``write_notebook`` saves: nbformat 4 JSON, ending in a newline."""
    import nbformat

    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def write_notebook(nb, path) -> None:
    """Write atomically: a crash mid-write never leaves half a notebook behind."""
    with atomic_write(path) as handle:
        handle.write(notebook_text(nb))
