"""The gettext catalogs of the Chinese edition: one ``i18n/zh_CN/<notebook stem>.po`` per lesson.

One source: the English notebook is the only one anybody edits or executes. Its translatable units
(``markdown_split.py``) are collected into a catalog keyed by the English text (``msgid``);
translators fill in ``msgstr``. ``update-catalogs`` keeps the translations of unchanged texts, marks
a changed text fuzzy (the old translation kept, the old English as ``#| msgid``) when it resembles a
text of the same cell, and makes texts no longer in the notebook obsolete. The checkers' messages and
the figures' labels have catalogs of their own (``template_catalogs.py``); ``editions.py`` writes
``notebooks/zh/`` from the catalogs.

Command line (through :mod:`glmcourse.tools.nbtools`)::

    python -m glmcourse.tools.nbtools update-catalogs [NOTEBOOKS...]   # English changed -> catalogs
    python -m glmcourse.tools.nbtools translate [--strict] [NOTEBOOKS...]  # catalogs -> notebooks/zh/
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from glmcourse import REPO_ROOT
from glmcourse.tools.markdown_split import Unit, notebook_units
from glmcourse.tools.notebook_io import read_notebook

LANG = "zh_CN"
CATALOG_DIR = REPO_ROOT / "i18n" / LANG
WRAP = 0  # no re-wrapping: a msgid/msgstr line is a line of the source, so diffs stay small
FUZZY_RATIO = 0.6  # difflib ratio above which a changed English text inherits the old translation
HEADER = """\
Simplified Chinese (zh_CN) catalog of notebooks/{name}.
Written by `python -m glmcourse.tools.nbtools update-catalogs`; translators edit msgstr only.
Rules, workflow and glossary: i18n/README.md, i18n/glossary.tsv."""
METADATA = {
    "Project-Id-Version": "glmcourse",
    "Language": LANG,
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=UTF-8",
    "Content-Transfer-Encoding": "8bit",
}
COMMENT_NOTE = "code comment: keep the translation on one line"
FIX_UPDATE = "python -m glmcourse.tools.nbtools update-catalogs"


def catalog_path(notebook, catalog_dir=None) -> Path:
    return Path(catalog_dir or CATALOG_DIR) / f"{Path(notebook).stem}.po"


def shown(path) -> str:
    """``path`` relative to the repository when it lies inside it (messages and catalog references)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def clip(text: str, n: int = 80) -> str:
    """One line of at most ``n`` characters, for a message quoting a text."""
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[:n - 3] + "..."


def _reference(nb_name: str, unit: Unit) -> tuple[str, str]:
    return (f"{nb_name}:{unit.where}", "")


def _ref_cell_ids(entry) -> set[str]:
    ids = set()
    for fil, line in entry.occurrences:
        ref = f"{fil}:{line}" if line else fil
        ids.add(ref.rsplit(":", 1)[-1])
    return ids


def load_catalog(path):
    """A .po catalog; a damaged one (merge conflict, not UTF-8, cut short, a garbage line) is a one-line
    ``cli.UsageError`` naming the file, the line and the fix, never polib's traceback."""
    import polib

    from glmcourse.cli import UsageError, read_text

    fix = ("restore it with `git checkout -- {p}` (or from your copy), then run python -m glmcourse.tools.nbtools "
           "update-catalogs").format(p=path)
    text = read_text(path, f"catalog {path}")
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(("<<<<<<<", ">>>>>>>")) or line.rstrip() == "=======":
            raise UsageError(f"catalog {path}: line {number} is a git merge-conflict marker; resolve the conflict "
                             f"(keep one side of each block), or {fix}.")
    try:
        return polib.pofile(text, wrapwidth=WRAP)
    except Exception as err:  # noqa: BLE001 - polib raises OSError/ValueError/its own errors for bad syntax
        raise UsageError(f"catalog {path}: not a valid .po file ({' '.join(str(err).split())}); fix that line, "
                         f"or {fix}.") from None


def new_catalog(header: str, old=None):
    """An empty catalog with ``header``, keeping the metadata of the ``old`` catalog it replaces."""
    import polib

    po = polib.POFile(wrapwidth=WRAP)
    po.header = header
    po.metadata = dict(old.metadata) if old is not None else {}
    po.metadata.update(METADATA)
    return po


@dataclass
class UpdateResult:
    text: str
    new: int = 0
    fuzzy: int = 0
    obsolete: int = 0
    kept: int = 0
    changed: bool = False


def build_catalog(notebook, po_path) -> UpdateResult:
    """The catalog ``update-catalogs`` writes for ``notebook``, merged with the one at ``po_path``."""
    import polib

    notebook = Path(notebook)
    nb = read_notebook(notebook)
    po_path = Path(po_path)
    old = load_catalog(po_path) if po_path.exists() else None
    old_active = {e.msgid: e for e in old if not e.obsolete} if old is not None else {}
    old_obsolete = {e.msgid: e for e in old.obsolete_entries()} if old is not None else {}

    grouped: dict[str, dict] = {}
    for unit in notebook_units(nb):
        info = grouped.setdefault(unit.text, {"refs": [], "cells": set(), "comment": False})
        ref = _reference(notebook.name, unit)
        if ref not in info["refs"]:
            info["refs"].append(ref)
        info["cells"].add(unit.cell_id)
        info["comment"] |= unit.kind == "comment"

    po = new_catalog(HEADER.format(name=notebook.name), old)
    result = UpdateResult(text="")
    consumed: set[str] = set()
    for msgid, info in grouped.items():
        entry = polib.POEntry(msgid=msgid, msgstr="", occurrences=list(info["refs"]),
                              comment=COMMENT_NOTE if info["comment"] else "")
        previous = old_active.get(msgid) or old_obsolete.get(msgid)
        if previous is not None:
            entry.msgstr = previous.msgstr
            entry.flags = list(previous.flags)
            entry.tcomment = previous.tcomment
            if "fuzzy" in entry.flags:
                entry.previous_msgid = previous.previous_msgid
            result.kept += bool(previous.msgstr)
        else:
            source = fuzzy_source(msgid, info["cells"], old_active, grouped)
            if source is not None:
                consumed.add(source.msgid)
                entry.msgstr = source.msgstr
                entry.flags = ["fuzzy"]
                entry.tcomment = source.tcomment
                was_fuzzy = "fuzzy" in source.flags and source.previous_msgid
                entry.previous_msgid = source.previous_msgid if was_fuzzy else source.msgid
                result.fuzzy += 1
            else:
                result.new += 1
        po.append(entry)

    finish_catalog(po, po_path, old, old_active, grouped, consumed, result)
    return result


def finish_catalog(po, po_path, old, old_active: dict, grouped, consumed: set, result) -> None:
    """The end every catalog build shares: translated entries whose English is gone (and not carried into a
    fuzzy entry) are kept as obsolete, so a text that comes back finds its translation; then ``result``
    gets the catalog's text and whether it differs from the file on disk."""
    import polib

    obsolete = [e for e in old.obsolete_entries() if e.msgid not in grouped] if old is not None else []
    for e in old_active.values():
        if e.msgid in grouped or e.msgid in consumed or not e.msgstr:
            continue
        obsolete.append(polib.POEntry(msgid=e.msgid, msgstr=e.msgstr, flags=list(e.flags), tcomment=e.tcomment,
                                      previous_msgid=e.previous_msgid))
        result.obsolete += 1
    for e in obsolete:
        e.obsolete, e.occurrences = True, []
        po.append(e)
    result.text = po_text(po)
    result.changed = not po_path.exists() or po_path.read_text(encoding="utf-8") != result.text


def fuzzy_source(msgid, cells, old_active, grouped):
    """The old translated entry of the same cell that this new English text most resembles."""
    best, best_ratio = None, FUZZY_RATIO
    for old_id, e in old_active.items():
        if old_id in grouped or not e.msgstr or not (_ref_cell_ids(e) & cells):
            continue
        ratio = difflib.SequenceMatcher(None, old_id, msgid, autojunk=False).ratio()
        if ratio >= best_ratio:
            best, best_ratio = e, ratio
    return best


def po_text(po) -> str:
    text = str(po)
    return text if text.endswith("\n") else text + "\n"


def atomic_write(path, text: str) -> None:
    """Write ``text`` through a temp file renamed into place (glmcourse.files.atomic_write)."""
    from glmcourse.files import atomic_write as atomic

    with atomic(path) as handle:
        handle.write(text)


def save_if_changed(po_path, result: UpdateResult) -> UpdateResult:
    """Write a built catalog to ``po_path`` (atomically) only when its text changed."""
    if result.changed:
        atomic_write(po_path, result.text)
    return result


def update_catalog(notebook, po_path=None) -> UpdateResult:
    po_path = Path(po_path) if po_path else catalog_path(notebook)
    return save_if_changed(po_path, build_catalog(notebook, po_path))
