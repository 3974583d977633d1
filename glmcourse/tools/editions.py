"""The Chinese edition, ``notebooks/zh/<same name>``, written from the English notebook and its catalog.

``translate`` writes the English notebook with every unit (``markdown_split.py``) replaced by its
translation from ``i18n/zh_CN/<stem>.po`` (``catalogs.py``), the code, outputs and execution counts
otherwise unchanged, plus one set-up cell at the top. A text with no translation yet (untranslated or
fuzzy) stays in English; ``translate --strict`` refuses to write while any is left. ``staleness`` says
why a committed edition differs from what ``translate`` writes now (tests/test_translation.py).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from glmcourse.tools.catalogs import FIX_UPDATE, catalog_path, clip, load_catalog, shown
from glmcourse.tools.markdown_split import cell_segments
from glmcourse.tools.notebook_io import lesson_notebooks, notebook_text, read_notebook, write_notebook

EDITION = "zh"  # notebooks/zh/
SETUP_CELL_ID = "zh-setup"
SETUP_CELL_SOURCE = '''\
# 中文版的准备工作：英文版以 notebooks/ 为工作目录运行，这里切换过去，让相同的相对路径照常可用；
# 再设置 GLMCOURSE_LANG，让练习检查器用中文给出提示。
import os

if os.path.basename(os.getcwd()) == "zh":
    os.chdir(os.path.dirname(os.getcwd()))
os.environ["GLMCOURSE_LANG"] = "zh"'''
FIX_TRANSLATE = "python -m glmcourse.tools.nbtools translate"


def edition_path(notebook) -> Path:
    notebook = Path(notebook)
    return notebook.parent / EDITION / notebook.name


@dataclass
class Missing:
    notebook: str
    cell_index: int
    cell_id: str
    text: str
    reason: str  # "untranslated" | "fuzzy" | "not in the catalog"

    def __str__(self):
        short = self.text if len(self.text) <= 100 else self.text[:97] + "..."
        return f"{self.notebook} cell-{self.cell_index}:{self.cell_id}: {self.reason}: {short!r}"


@dataclass
class Translation:
    notebook: object  # the nbformat notebook of the edition
    missing: list = field(default_factory=list)
    units: int = 0


def _lookup(po) -> dict:
    table = {}
    if po is None:
        return table
    for e in po:
        if not e.obsolete:
            table[e.msgid] = e
    return table


def setup_cell():
    import nbformat

    cell = nbformat.v4.new_code_cell(SETUP_CELL_SOURCE, execution_count=1, id=SETUP_CELL_ID)
    cell.metadata = {"tags": ["remove-cell"]}  # plumbing: a static site (Jupyter Book) leaves it out
    cell.outputs = []
    return cell


def translate_notebook(notebook, po_path=None) -> Translation:
    """The translated edition of ``notebook`` (not written), and the units left in English."""
    notebook = Path(notebook)
    po_path = Path(po_path) if po_path else catalog_path(notebook)
    english = read_notebook(notebook)
    table = _lookup(load_catalog(po_path) if po_path.exists() else None)
    nb = copy.deepcopy(english)
    result = Translation(nb)
    for index, cell in enumerate(nb.cells):
        pieces = []
        for seg in cell_segments(cell):
            if not seg.kind:
                pieces.append(seg.text)
                continue
            result.units += 1
            entry = table.get(seg.text)
            if entry is None or not entry.msgstr or "fuzzy" in entry.flags:
                reason = "not in the catalog" if entry is None else ("fuzzy" if entry.msgstr else "untranslated")
                result.missing.append(Missing(notebook.name, index, cell.get("id", str(index)), seg.text, reason))
                pieces.append(seg.text)
                continue
            if seg.kind == "comment" and ("\n" in entry.msgstr or "\r" in entry.msgstr):
                raise ValueError(f"{po_path}: the translation of the code comment {seg.text!r} spans lines; "
                                 "a comment must stay on one line")
            pieces.append(entry.msgstr)
        if cell.cell_type in ("markdown", "code"):
            cell.source = "".join(pieces)
    # The set-up cell runs first; every executed cell after it moves one count up.
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            cell.execution_count += 1
            for out in cell.get("outputs", []):
                if out.get("output_type") == "execute_result" and out.get("execution_count") is not None:
                    out["execution_count"] += 1
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first_code, setup_cell())
    return result


def keep_edition_outputs(nb, edition) -> int:
    """Keep the outputs of the Chinese run (``nbtools run --edition zh``) across ``translate``: every code
    cell of ``nb`` whose source is unchanged in the existing ``edition`` takes that cell's outputs; a cell
    whose code (or comment translation) changed keeps the English run's, until the next Chinese run.
    Returns how many cells kept Chinese-run outputs."""
    edition = Path(edition)
    if not edition.exists():
        return 0
    try:
        old = {c.get("id"): c for c in read_notebook(edition).cells if c.cell_type == "code"}
    except Exception:  # noqa: BLE001 - an unreadable edition is rewritten from the English
        return 0
    kept = 0
    for cell in nb.cells:
        before = old.get(cell.get("id")) if cell.cell_type == "code" else None
        if before is not None and before.source == cell.source and before.get("outputs") != cell.get("outputs"):
            cell.outputs = copy.deepcopy(before.outputs)
            for out in cell.outputs:  # the counts stay translate's (English + 1), as a top-to-bottom run gives
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = cell.execution_count
            kept += 1
    return kept


def write_translation(notebook, po_path=None, out_path=None) -> Translation:
    result = translate_notebook(notebook, po_path)
    out_path = Path(out_path) if out_path else edition_path(notebook)
    keep_edition_outputs(result.notebook, out_path)
    if not out_path.exists() or out_path.read_text(encoding="utf-8") != notebook_text(result.notebook):
        write_notebook(result.notebook, out_path)
    return result


def staleness(notebook, po_path=None, edition=None) -> list[str]:
    """Why the committed edition differs from what ``translate`` writes now (empty: it is fresh)."""
    notebook = Path(notebook)
    edition = Path(edition) if edition else edition_path(notebook)
    fix = f"Fix: {FIX_TRANSLATE} {shown(notebook)} (run `{FIX_UPDATE}` first if the English changed)"
    if not edition.exists():
        return [f"{shown(edition)}: missing, no Chinese edition of {notebook.name}. {fix}"]
    result = translate_notebook(notebook, po_path)
    keep_edition_outputs(result.notebook, edition)
    expected = notebook_text(result.notebook)
    actual_text = edition.read_text(encoding="utf-8")
    if actual_text == expected:
        return []
    problems = []
    try:
        actual = read_notebook(edition)
    except Exception as exc:  # noqa: BLE001 - unreadable is stale too
        return [f"{shown(edition)}: cannot be read ({exc}). {fix}"]
    english = read_notebook(notebook)
    english_cells = {c.get("id"): (i, c) for i, c in enumerate(english.cells)}
    have = {c.get("id"): c for c in actual.cells}
    for cell in result.notebook.cells:
        cid = cell.get("id")
        where = f"cell-{english_cells[cid][0]}:{cid}" if cid in english_cells else f"cell {cid}"
        old = have.get(cid)
        if old is None:
            problems.append(f"{shown(edition)} {where}: cell missing from the Chinese edition")
            continue
        if old.source != cell.source:
            changed = [seg.text for seg in cell_segments(english_cells[cid][1]) if seg.kind] if cid in english_cells else []
            rendered = _unit_renderings(cell, english_cells.get(cid, (None, None))[1], po_path or catalog_path(notebook))
            suspects = [text for text, out in zip(changed, rendered) if out not in old.source]
            if suspects:
                for text in suspects:
                    problems.append(f"{shown(edition)} {where}: the English text {clip(text)!r} "
                                    "(or its translation) changed")
            else:
                problems.append(f"{shown(edition)} {where}: the source differs from the English cell's "
                                f"(English starts {clip(english_cells[cid][1].source if cid in english_cells else '')!r})")
        for key in ("outputs", "execution_count", "metadata", "cell_type"):
            if old.get(key) != cell.get(key):
                problems.append(f"{shown(edition)} {where}: {key} differ from the English notebook's"
                                + (" (or from the Chinese run's)" if key == "outputs" else ""))
    for cid in have.keys() - {c.get("id") for c in result.notebook.cells}:
        problems.append(f"{shown(edition)}: cell {cid} is no longer in the English notebook")
    if actual.metadata != result.notebook.metadata:
        problems.append(f"{shown(edition)}: notebook metadata differ from the English notebook's")
    if not problems:
        problems.append(f"{shown(edition)}: differs from what translate writes (formatting)")
    problems.append(fix)
    return problems


def _unit_renderings(cell, english_cell, po_path) -> list[str]:
    if english_cell is None:
        return []
    table = _lookup(load_catalog(po_path) if Path(po_path).exists() else None)
    out = []
    for seg in cell_segments(english_cell):
        if seg.kind:
            e = table.get(seg.text)
            ok = e is not None and e.msgstr and "fuzzy" not in e.flags
            out.append(e.msgstr if ok else seg.text)
    return out


def missing_editions(notebooks_dir=None, catalog_dir=None) -> list[str]:
    """Lessons without a catalog or a Chinese edition, each with the command that makes it."""
    problems = []
    for notebook in lesson_notebooks(notebooks_dir):
        if not catalog_path(notebook, catalog_dir).exists():
            problems.append(f"{shown(notebook)}: no catalog {shown(catalog_path(notebook, catalog_dir))}. "
                            f"Fix: {FIX_UPDATE} {shown(notebook)}")
        if not edition_path(notebook).exists():
            problems.append(f"{shown(notebook)}: no Chinese edition {shown(edition_path(notebook))}. "
                            f"Fix: {FIX_TRANSLATE} {shown(notebook)}")
    return problems
