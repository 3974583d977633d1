"""Translated editions of the notebooks, generated from the English ones and gettext catalogs.

One source: the English notebook is the only one anybody edits or executes. Its translatable
*units* are collected into a gettext catalog, ``i18n/zh_CN/<notebook stem>.po``, keyed by the
English text (``msgid``); translators fill in ``msgstr``. ``translate`` then writes
``notebooks/zh/<same name>``: the English notebook with every unit replaced by its translation,
the code, outputs and execution counts otherwise unchanged, plus one set-up cell at the top.

Units:

* a markdown cell is split into blocks at blank lines (a heading, a paragraph, a list, a table, a
  block quote, a ``$$`` math block). A fenced code block stays whole and untranslated, except the
  text of its full-line ``#`` comments; an indented code block (every line indented 4 spaces, not
  under a list item) is not translated either;
* in a code cell every comment's text (after ``# ``) is a unit, except machine-read markers
  (``# NBVAL_...``, ``# noqa``, ``# type:``, ``#!``, ``# -*- coding``, a bare ``# TODO``, and
  ``# lesson code:`` which tests/test_masks.py looks for). The code itself never changes.

Everything around a unit (indentation, the ``# `` prefix, blank lines, trailing newlines) is copied
byte for byte, so joining a cell's segments gives back its source exactly.

Command line (through :mod:`glmcourse.nbtools`)::

    python -m glmcourse.nbtools update-catalogs [NOTEBOOKS...]   # English changed -> catalogs
    python -m glmcourse.nbtools translate [--strict] [NOTEBOOKS...]  # catalogs -> notebooks/zh/
"""
from __future__ import annotations

import copy
import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from glmcourse.bilingual import FIGURE_CATALOG  # the figures' catalog, which bilingual() reads
from glmcourse.notebook_io import notebook_text, read_notebook, write_notebook

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
LANG = "zh_CN"
CATALOG_DIR = REPO_ROOT / "i18n" / LANG
EDITION = "zh"  # notebooks/zh/
WRAP = 0  # no re-wrapping: a msgid/msgstr line is a line of the source, so diffs stay small
FUZZY_RATIO = 0.6  # difflib ratio above which a changed English text inherits the old translation
SETUP_CELL_ID = "zh-setup"
SETUP_CELL_SOURCE = '''\
# 中文版的准备工作：英文版以 notebooks/ 为工作目录运行，这里切换过去，让相同的相对路径照常可用；
# 再设置 GLMCOURSE_LANG，让练习检查器用中文给出提示。
import os

if os.path.basename(os.getcwd()) == "zh":
    os.chdir(os.path.dirname(os.getcwd()))
os.environ["GLMCOURSE_LANG"] = "zh"'''
HEADER = """\
Simplified Chinese (zh_CN) catalog of notebooks/{name}.
Written by `python -m glmcourse.nbtools update-catalogs`; translators edit msgstr only.
Rules, workflow and glossary: i18n/README.md, i18n/glossary.tsv."""
METADATA = {
    "Project-Id-Version": "glmcourse",
    "Language": LANG,
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=UTF-8",
    "Content-Transfer-Encoding": "8bit",
}
COMMENT_NOTE = "code comment: keep the translation on one line"
FIX_TRANSLATE = "python -m glmcourse.nbtools translate"
FIX_UPDATE = "python -m glmcourse.nbtools update-catalogs"

# Comments that are read by machines (or are bare markers), never translated.
_SKIP_COMMENT = re.compile(r"(NBVAL_|noqa\b|type:|pragma\b|fmt:|pylint:|isort:|-\*-|lesson code:|"
                           r"(TODO|FIXME|XXX)\s*$)")
_INLINE_PRAGMA = re.compile(r"\s+#+\s*(noqa\b|type:|NBVAL_|pragma\b)")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_COMMENTED_FENCES = {"", "python", "py", "python3", "ipython", "ipython3", "bash", "sh", "shell", "console",
                     "zsh", "toml", "yaml", "yml"}
_PYTHON_FENCES = {"python", "py", "python3", "ipython", "ipython3"}


# ---------------------------------------------------------------------------- splitting into units
@dataclass(frozen=True)
class Segment:
    text: str
    kind: str | None = None  # None: copied as is; "markdown" / "comment": a translatable unit


@dataclass(frozen=True)
class Unit:
    text: str
    kind: str
    cell_index: int
    cell_id: str

    @property
    def where(self) -> str:
        return f"cell-{self.cell_index}:{self.cell_id}"


def _comment_segments(comment: str) -> list[Segment]:
    """Split one comment token ("#  some text  # noqa") into prefix, unit and rest."""
    if comment.startswith("#!"):
        return [Segment(comment)]
    prefix = re.match(r"#+[ \t]*", comment).group()
    rest = comment[len(prefix):]
    if not rest.strip() or _SKIP_COMMENT.match(rest):
        return [Segment(comment)]
    pragma = _INLINE_PRAGMA.search(rest)
    body = rest[:pragma.start()] if pragma else rest
    body = body.rstrip()
    if not body:
        return [Segment(comment)]
    return [Segment(prefix), Segment(body, "comment"), Segment(rest[len(body):])]


def _line_comment_segments(source: str) -> list[Segment]:
    """Full-line ``#`` comments only (shell fences, and code that Python cannot tokenize)."""
    segments = []
    for line in source.splitlines(keepends=True):
        match = re.match(r"([ \t]*)(#[^\n\r]*)(\r?\n?)$", line)
        if match:
            segments += [Segment(match.group(1)), *_comment_segments(match.group(2)), Segment(match.group(3))]
        else:
            segments.append(Segment(line))
    return segments


def split_code(source: str, python: bool = True) -> list[Segment]:
    """Segments of a code cell: its comments' texts are units, everything else is copied."""
    if not python:
        return _merge(_line_comment_segments(source))
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    try:
        comments = [tok for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return _merge(_line_comment_segments(source))  # IPython magics and friends
    segments, pos = [], 0
    for tok in comments:
        begin = starts[tok.start[0] - 1] + tok.start[1]
        if source[begin:begin + len(tok.string)] != tok.string:  # tokenizer saw other line ends
            return _merge(_line_comment_segments(source))
        segments.append(Segment(source[pos:begin]))
        segments += _comment_segments(tok.string)
        pos = begin + len(tok.string)
    segments.append(Segment(source[pos:]))
    return _merge(segments)


def split_markdown(source: str) -> list[Segment]:
    """Segments of a markdown cell: blocks between blank lines are units; fences stay whole."""
    lines = source.splitlines(keepends=True)
    segments: list[Segment] = []
    block: list[str] = []
    state = {"after_list": False}  # an indented block right after a list continues the list

    def flush():
        if block:
            text = "".join(block)
            body = text.rstrip("\r\n")
            indented_code = all(re.match(r"( {4}|\t)", ln) for ln in block) and not state["after_list"]
            segments.append(Segment(body, None if indented_code else "markdown"))
            segments.append(Segment(text[len(body):]))
            state["after_list"] = not indented_code and (
                state["after_list"] or any(_LIST_ITEM.match(ln) for ln in block))
            block.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            state["after_list"] = False
            marker, info = fence.group(1), fence.group(2).lower()
            j = i + 1
            while j < len(lines) and not re.match(r"^ {0,3}" + re.escape(marker[0]) + "{%d,}\\s*$" % len(marker),
                                                  lines[j]):
                j += 1
            segments.append(Segment(line))
            inner = "".join(lines[i + 1:j])
            if info in _COMMENTED_FENCES:
                segments += split_code(inner, python=info in _PYTHON_FENCES)
            else:
                segments.append(Segment(inner))
            if j < len(lines):
                segments.append(Segment(lines[j]))
            i = j + 1
            continue
        if not line.strip():
            if block and "".join(block).count("$$") % 2 == 1:
                block.append(line)  # a blank line inside a $$ math block
            else:
                flush()
                segments.append(Segment(line))
        else:
            block.append(line)
        i += 1
    flush()
    return _merge(segments)


def _merge(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring literal segments and drop empty ones (a canonical form)."""
    out: list[Segment] = []
    for seg in segments:
        if not seg.text:
            continue
        if seg.kind is None and out and out[-1].kind is None:
            out[-1] = Segment(out[-1].text + seg.text)
        else:
            out.append(seg)
    return out


def cell_segments(cell) -> list[Segment]:
    if cell.cell_type == "markdown":
        return split_markdown(cell.source)
    if cell.cell_type == "code":
        return split_code(cell.source)
    return [Segment(cell.source)] if cell.source else []


def notebook_units(nb) -> list[Unit]:
    """Every unit of the notebook, in order of appearance."""
    units = []
    for index, cell in enumerate(nb.cells):
        for seg in cell_segments(cell):
            if seg.kind:
                units.append(Unit(seg.text, seg.kind, index, cell.get("id", str(index))))
    return units


# ---------------------------------------------------------------------------- catalogs
def catalog_path(notebook, catalog_dir=None) -> Path:
    return Path(catalog_dir or CATALOG_DIR) / f"{Path(notebook).stem}.po"


def edition_path(notebook) -> Path:
    notebook = Path(notebook)
    return notebook.parent / EDITION / notebook.name


LESSON_GLOB = "[0-9][0-9]_*.ipynb"


def lesson_notebooks(folder=None) -> list[Path]:
    """notebooks/NN_*.ipynb in lesson order: a new lesson is picked up without configuration
    (by the Chinese edition, the grader and the site alike)."""
    return sorted(Path(folder or NOTEBOOKS_DIR).glob(LESSON_GLOB))


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

    fix = ("restore it with `git checkout -- {p}` (or from your copy), then run python -m glmcourse.nbtools "
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


def _new_catalog(name: str, old=None):
    import polib

    po = polib.POFile(wrapwidth=WRAP)
    po.header = HEADER.format(name=name)
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

    po = _new_catalog(notebook.name, old)
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
            source = _fuzzy_source(msgid, info["cells"], old_active, grouped)
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

    obsolete = [e for e in old.obsolete_entries() if e.msgid not in grouped] if old is not None else []
    for e in (old_active.values() if old is not None else []):
        if e.msgid in grouped or e.msgid in consumed or not e.msgstr:
            continue
        entry = polib.POEntry(msgid=e.msgid, msgstr=e.msgstr, flags=list(e.flags), tcomment=e.tcomment,
                              previous_msgid=e.previous_msgid, obsolete=True)
        obsolete.append(entry)
        result.obsolete += 1
    for e in obsolete:
        e.obsolete = True
        e.occurrences = []
        po.append(e)
    result.text = _po_text(po)
    result.changed = not po_path.exists() or po_path.read_text(encoding="utf-8") != result.text
    return result


def _fuzzy_source(msgid, cells, old_active, grouped):
    """The old translated entry of the same cell that this new English text most resembles."""
    best, best_ratio = None, FUZZY_RATIO
    for old_id, e in old_active.items():
        if old_id in grouped or not e.msgstr or not (_ref_cell_ids(e) & cells):
            continue
        ratio = difflib.SequenceMatcher(None, old_id, msgid, autojunk=False).ratio()
        if ratio >= best_ratio:
            best, best_ratio = e, ratio
    return best


def _po_text(po) -> str:
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


# ---------------------------------------------------------------------------- translating
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
    fix = f"Fix: {FIX_TRANSLATE} {_shown(notebook)} (run `{FIX_UPDATE}` first if the English changed)"
    if not edition.exists():
        return [f"{_shown(edition)}: missing, no Chinese edition of {notebook.name}. {fix}"]
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
        return [f"{_shown(edition)}: cannot be read ({exc}). {fix}"]
    english = read_notebook(notebook)
    english_cells = {c.get("id"): (i, c) for i, c in enumerate(english.cells)}
    have = {c.get("id"): c for c in actual.cells}
    for cell in result.notebook.cells:
        cid = cell.get("id")
        where = f"cell-{english_cells[cid][0]}:{cid}" if cid in english_cells else f"cell {cid}"
        old = have.get(cid)
        if old is None:
            problems.append(f"{_shown(edition)} {where}: cell missing from the Chinese edition")
            continue
        if old.source != cell.source:
            changed = [seg.text for seg in cell_segments(english_cells[cid][1]) if seg.kind] if cid in english_cells else []
            rendered = _unit_renderings(cell, english_cells.get(cid, (None, None))[1], po_path or catalog_path(notebook))
            suspects = [text for text, out in zip(changed, rendered) if out not in old.source]
            if suspects:
                for text in suspects:
                    problems.append(f"{_shown(edition)} {where}: the English text {_clip(text)!r} "
                                    "(or its translation) changed")
            else:
                problems.append(f"{_shown(edition)} {where}: the source differs from the English cell's "
                                f"(English starts {_clip(english_cells[cid][1].source if cid in english_cells else '')!r})")
        for key in ("outputs", "execution_count", "metadata", "cell_type"):
            if old.get(key) != cell.get(key):
                problems.append(f"{_shown(edition)} {where}: {key} differ from the English notebook's"
                                + (" (or from the Chinese run's)" if key == "outputs" else ""))
    for cid in have.keys() - {c.get("id") for c in result.notebook.cells}:
        problems.append(f"{_shown(edition)}: cell {cid} is no longer in the English notebook")
    if actual.metadata != result.notebook.metadata:
        problems.append(f"{_shown(edition)}: notebook metadata differ from the English notebook's")
    if not problems:
        problems.append(f"{_shown(edition)}: differs from what translate writes (formatting)")
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


def _clip(text: str, n: int = 80) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[:n - 3] + "..."


def _shown(path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- checks on translations
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?![\s$])[^$\n]+?(?<![\s\\])\$(?![\w$])")
_TOKEN = re.compile(r"\[(?:[gs]?MASK|CLS|SEP|PAD|UNK)\]|</?[a-z][a-z_]*>|<\|[a-z_]+\|>")
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def protected_items(text: str) -> dict[str, list[str]]:
    """What a translation must keep byte-identical: code spans, formulas, tokens, links, numbers.

    A line break inside a code span renders as a space (CommonMark), so spans are compared with
    their whitespace runs folded to one space.
    """
    spans = [re.sub(r"\s+", " ", m.group(0)) for m in _CODE_SPAN.finditer(text)]
    rest = _CODE_SPAN.sub(" ", text)
    display = _DISPLAY_MATH.findall(rest)
    rest = _DISPLAY_MATH.sub(" ", rest)
    inline = _INLINE_MATH.findall(rest)
    links = _LINK.findall(rest) + _REF_DEF.findall(rest) + _AUTOLINK.findall(rest)
    return {
        "code span": spans,
        "formula": display + inline,
        "special token": _TOKEN.findall(text),
        "link target": links,
        "number": _NUMBER.findall(text),
    }


_TAG = re.compile(r"^\[[^\]\n]+\]")


def verdict_tags(po_path=None) -> dict[str, str]:
    """The checkers' verdict tags and what the Chinese checkers print instead, from exercises.po:
    `{"[PASS]": "[通过]", ...}`. Chinese prose names the tags a learner sees, so a code span
    `` `[PASS]` `` is kept when its translation reads `` `[通过]` ``."""
    path = Path(po_path or EXERCISE_CATALOG)
    stamp = path.stat().st_mtime_ns if path.is_file() else None
    if _verdict_cache.get(path, (None,))[0] != stamp:
        tags = {}
        for entry in (load_catalog(path) if stamp else []):
            english, chinese = _TAG.match(entry.msgid), _TAG.match(entry.msgstr)
            if english and chinese and not entry.obsolete and "fuzzy" not in entry.flags:
                tags[english.group(0)] = chinese.group(0)
        _verdict_cache[path] = (stamp, tags)
    return dict(_verdict_cache[path][1])


_verdict_cache: dict = {}


def placeholder_problems(msgid: str, msgstr: str) -> list[str]:
    """Items of ``msgid`` that its translation lost or altered (a verdict tag's code span may be
    the tag the Chinese checkers print, see `verdict_tags`)."""
    want, have = protected_items(msgid), protected_items(msgstr)
    tags = {f"`{en}`": f"`{zh}`" for en, zh in verdict_tags().items()}
    have["code span"] = have["code span"] + [en for en, zh in tags.items() if zh in have["code span"]]
    problems = []
    for kind, items in want.items():
        missing = [item for item in dict.fromkeys(items) if item not in have[kind]]
        if missing:
            problems.append(f"{kind}{'s' if len(missing) > 1 else ''} {missing} missing or changed")
    if msgid.endswith("\n") != msgstr.endswith("\n") or msgid.startswith("\n") != msgstr.startswith("\n"):
        problems.append("leading/trailing newline differs from the English")
    return problems


def entry_problems(entry) -> list[str]:
    """Checks on one translated, non-fuzzy catalog entry."""
    if not entry.msgstr or "fuzzy" in entry.flags or entry.obsolete:
        return []
    problems = placeholder_problems(entry.msgid, entry.msgstr)
    if entry.comment == COMMENT_NOTE and ("\n" in entry.msgstr or "\r" in entry.msgstr):
        problems.append("a code comment's translation spans lines")
    return problems


def incomplete_entries(po) -> list[str]:
    """Entries with an empty or fuzzy msgstr, each with its first reference."""
    out = []
    for e in po:
        if e.obsolete:
            continue
        if not e.msgstr or "fuzzy" in e.flags:
            ref = e.occurrences[0][0] if e.occurrences else "?"
            out.append(f"{ref}: {'fuzzy' if e.msgstr else 'untranslated'}: {_clip(e.msgid)!r}")
    return out


def missing_editions(notebooks_dir=None, catalog_dir=None) -> list[str]:
    """Lessons without a catalog or a Chinese edition, each with the command that makes it."""
    problems = []
    for notebook in lesson_notebooks(notebooks_dir):
        if not catalog_path(notebook, catalog_dir).exists():
            problems.append(f"{_shown(notebook)}: no catalog {_shown(catalog_path(notebook, catalog_dir))}. "
                            f"Fix: {FIX_UPDATE} {_shown(notebook)}")
        if not edition_path(notebook).exists():
            problems.append(f"{_shown(notebook)}: no Chinese edition {_shown(edition_path(notebook))}. "
                            f"Fix: {FIX_TRANSLATE} {_shown(notebook)}")
    return problems


# ---------------------------------------------------------------------------- exercise checker messages
# The checkers of glmcourse/exercises/ speak through ``say("English {field} template", field=...)``;
# their templates are collected (with ast, never by importing) into one more catalog, keyed by the
# English template. ``update-catalogs`` (with no notebook named) refreshes it like a lesson's.
EXERCISES_DIR = REPO_ROOT / "glmcourse" / "exercises"
EXERCISE_CATALOG = CATALOG_DIR / "exercises.po"
EXERCISE_HEADER = """\
Simplified Chinese (zh_CN) catalog of the exercise checkers' messages (glmcourse/exercises/*.py).
Written by `python -m glmcourse.nbtools update-catalogs`; translators edit msgstr only.
Each msgid is a str.format template: keep every {field} (and its !r / :spec) as it is.
Rules, workflow and glossary: i18n/README.md, i18n/glossary.tsv."""
BRACE_FLAG = "python-brace-format"


@dataclass(frozen=True)
class Template:
    text: str
    path: str  # repo-relative, e.g. glmcourse/exercises/masks.py
    function: str  # the enclosing function, e.g. check_prefix_mask ("<module>" at top level)
    line: int

    @property
    def reference(self) -> str:
        return f"{self.path}:{self.function}"


def template_fields(template: str) -> list[tuple[str, str, str]]:
    """The ``(name, conversion, format_spec)`` of every replacement field, sorted."""
    import string

    return sorted((name, conv or "", spec or "") for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None)


def _calls_in(source: str, shown: str, func_name: str, problems: list[str], place: str | None = None):
    """``(template, enclosing function or place, line)`` of every ``func_name("...")`` call in ``source``."""
    import ast

    tree = ast.parse(source, filename=shown)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if not isinstance(node, ast.Call) or (getattr(func, "id", None) or getattr(func, "attr", None)) != func_name:
            continue
        if isinstance(func, ast.Attribute) and func.value.__class__ is not ast.Name:
            continue
        first = node.args[0] if node.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            problems.append(f"{shown}:{node.lineno}: {func_name}() needs a string literal template")
            continue
        outer = parents.get(node)
        while outer is not None and not isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef)):
            outer = parents.get(outer)
        yield first.value, place or (outer.name if outer else "<module>"), node.lineno


def call_templates(func_name: str, files=(), notebooks=()) -> list[Template]:
    """Every ``func_name(...)`` template of the ``*.py`` ``files`` and the notebooks' code cells, in
    file and line order. Raises ValueError (naming file and line) for a call whose first argument is
    not a plain string literal: an f-string or a variable cannot be looked up in a catalog."""
    found, problems = [], []
    for path in sorted(files):
        shown = _shown(path)
        for text, where, line in _calls_in(Path(path).read_text(encoding="utf-8"), shown, func_name, problems):
            found.append(Template(text, shown, where, line))
    for path in sorted(notebooks):
        shown = _shown(path)
        for cell in read_notebook(path).cells:
            if cell.cell_type == "code" and func_name in cell.source:
                for text, where, line in _calls_in(cell.source, f"{shown} cell {cell.id}", func_name, problems,
                                                   place=cell.id):
                    found.append(Template(text, shown, where, line))
    if problems:
        raise ValueError("\n".join(problems))
    return found


def exercise_templates(folder=None) -> list[Template]:
    """Every ``say(...)`` template of ``folder``'s ``*.py`` files (the checkers), in file and line order."""
    return sorted(call_templates("say", Path(folder or EXERCISES_DIR).glob("*.py")), key=lambda t: (t.path, t.line))


def build_exercise_catalog(po_path=None, folder=None) -> UpdateResult:
    """The catalog ``update-catalogs`` writes for the checkers (see ``build_template_catalog``)."""
    return build_template_catalog(exercise_templates(folder), Path(po_path or EXERCISE_CATALOG), EXERCISE_HEADER)


def build_template_catalog(templates, po_path, header) -> UpdateResult:
    """The catalog of ``templates``, merged with the one at ``po_path``: translations of unchanged
    templates kept, a changed one fuzzy (old text as ``#| msgid``) when it resembles an old template
    of the same function or cell, templates no longer in the code obsolete."""
    import polib

    po_path = Path(po_path)
    old = load_catalog(po_path) if po_path.exists() else None
    old_active = {e.msgid: e for e in old if not e.obsolete} if old is not None else {}
    old_obsolete = {e.msgid: e for e in old.obsolete_entries()} if old is not None else {}

    grouped: dict[str, dict] = {}
    for t in templates:
        info = grouped.setdefault(t.text, {"refs": [], "cells": set()})
        if (t.reference, "") not in info["refs"]:
            info["refs"].append((t.reference, ""))
        info["cells"].add(t.function)  # _fuzzy_source matches on the last part of a reference

    po = polib.POFile(wrapwidth=WRAP)
    po.header = header
    po.metadata = dict(old.metadata) if old is not None else {}
    po.metadata.update(METADATA)
    result, consumed = UpdateResult(text=""), set()
    for msgid, info in grouped.items():
        brace = [BRACE_FLAG] if template_fields(msgid) else []
        entry = polib.POEntry(msgid=msgid, msgstr="", occurrences=info["refs"], flags=list(brace))
        previous = old_active.get(msgid) or old_obsolete.get(msgid)
        if previous is not None:
            entry.msgstr, entry.tcomment = previous.msgstr, previous.tcomment
            if "fuzzy" in previous.flags:
                entry.flags = ["fuzzy", *brace]
                entry.previous_msgid = previous.previous_msgid
            result.kept += bool(previous.msgstr)
        elif (source := _fuzzy_source(msgid, info["cells"], old_active, grouped)) is not None:
            consumed.add(source.msgid)
            entry.msgstr, entry.tcomment, entry.flags = source.msgstr, source.tcomment, ["fuzzy", *brace]
            was_fuzzy = "fuzzy" in source.flags and source.previous_msgid
            entry.previous_msgid = source.previous_msgid if was_fuzzy else source.msgid
            result.fuzzy += 1
        else:
            result.new += 1
        po.append(entry)

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
    result.text = _po_text(po)
    result.changed = not po_path.exists() or po_path.read_text(encoding="utf-8") != result.text
    return result


def update_exercise_catalog(po_path=None, folder=None) -> UpdateResult:
    po_path = Path(po_path or EXERCISE_CATALOG)
    return save_if_changed(po_path, build_exercise_catalog(po_path, folder))


# ---------------------------------------------------------------------------- figure titles and labels
# ``bilingual("English {field} template", field=...)`` (glmcourse/bilingual.py) draws a figure's text
# in both languages; its templates come from the package and the English notebooks' code cells into
# FIGURE_CATALOG (imported above from glmcourse.bilingual).
FIGURE_HEADER = """\
Simplified Chinese (zh_CN) catalog of the figures' titles and axis labels (bilingual(...) calls in
glmcourse/*.py and the notebooks' code cells). Figures show the English line, then this one.
Written by `python -m glmcourse.nbtools update-catalogs`; translators edit msgstr only.
Each msgid is a str.format template: keep every {field} (and its !r / :spec) as it is.
Rules, workflow and glossary: i18n/README.md, i18n/glossary.tsv."""


def figure_templates(package=None, notebooks=None) -> list[Template]:
    package = Path(package or REPO_ROOT / "glmcourse")
    files = [p for p in package.rglob("*.py") if p.name != "bilingual.py"]
    return call_templates("bilingual", files, lesson_notebooks() if notebooks is None else notebooks)


def build_figure_catalog(po_path=None, package=None, notebooks=None) -> UpdateResult:
    return build_template_catalog(figure_templates(package, notebooks), Path(po_path or FIGURE_CATALOG), FIGURE_HEADER)


def update_figure_catalog(po_path=None) -> UpdateResult:
    po_path = Path(po_path or FIGURE_CATALOG)
    return save_if_changed(po_path, build_figure_catalog(po_path))


# ---------------------------------------------------------------------------- package messages
# Every other learner-facing message of the package goes through ``_("English {field} template", ...)``
# (glmcourse/i18n.py); the templates of glmcourse/**/*.py are collected into MESSAGE_CATALOG the same way.
MESSAGE_CATALOG = CATALOG_DIR / "messages.po"
MESSAGE_HEADER = """\
Simplified Chinese (zh_CN) catalog of the package's messages (_(...) calls in glmcourse/**/*.py):
findings, table headers, errors and warnings of the commands, the demos' text, doctor.
Written by `python -m glmcourse.nbtools update-catalogs`; translators edit msgstr only.
Each msgid is a str.format template: keep every {field} (and its !r / :spec) as it is.
Rules, workflow and glossary: i18n/README.md, i18n/glossary.tsv."""


def message_templates(package=None, notebooks=None) -> list[Template]:
    """Every ``_(...)`` and ``gettext(...)`` template of the package's ``*.py`` files, and every ``gettext(...)``
    one of the notebooks' code cells (IPython rebinds ``_`` to the last result, so a notebook imports
    ``gettext``, the same function), in file and line order."""
    package = Path(package or REPO_ROOT / "glmcourse")
    files = [p for p in package.rglob("*.py") if p.name != "i18n.py"]
    notebooks = lesson_notebooks() if notebooks is None else notebooks
    found = call_templates("_", files) + call_templates("gettext", files, notebooks)
    return sorted(found, key=lambda t: (t.path, t.line))


def build_message_catalog(po_path=None, package=None, notebooks=None) -> UpdateResult:
    return build_template_catalog(message_templates(package, notebooks), Path(po_path or MESSAGE_CATALOG),
                                  MESSAGE_HEADER)


def update_message_catalog(po_path=None, package=None) -> UpdateResult:
    po_path = Path(po_path or MESSAGE_CATALOG)
    return save_if_changed(po_path, build_message_catalog(po_path, package))
