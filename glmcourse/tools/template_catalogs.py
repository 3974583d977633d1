"""Two more catalogs, of message templates rather than notebook text: the checkers' and the figures'.

The checkers of glmcourse/exercises/ speak through ``say("English {field} template", field=...)``,
and ``bilingual("English {field} template", field=...)`` (glmcourse/bilingual.py) draws a figure's
text in both languages. Their templates are collected with ast, never by importing, into
``i18n/zh_CN/exercises.po`` and ``i18n/zh_CN/figures.po``, keyed by the English template.
``update-catalogs`` (with no notebook named) refreshes them the way ``catalogs.py`` refreshes a lesson's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from glmcourse import PACKAGE_DIR
from glmcourse.bilingual import FIGURE_CATALOG  # the figures' catalog, which bilingual() reads
from glmcourse.tools.catalogs import (
    CATALOG_DIR, UpdateResult, finish_catalog, fuzzy_source, load_catalog, new_catalog, save_if_changed, shown)
from glmcourse.tools import notebook_io
from glmcourse.tools.notebook_io import read_notebook

# ---------------------------------------------------------------------------- exercise checker messages
EXERCISES_DIR = PACKAGE_DIR / "exercises"
EXERCISE_CATALOG = CATALOG_DIR / "exercises.po"
EXERCISE_HEADER = """\
Simplified Chinese (zh_CN) catalog of the exercise checkers' messages (glmcourse/exercises/*.py).
Written by `python -m glmcourse.tools.nbtools update-catalogs`; translators edit msgstr only.
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


def _calls_in(source: str, label: str, func_name: str, problems: list[str], place: str | None = None):
    """``(template, enclosing function or place, line)`` of every ``func_name("...")`` call in ``source``."""
    import ast

    tree = ast.parse(source, filename=label)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if not isinstance(node, ast.Call) or (getattr(func, "id", None) or getattr(func, "attr", None)) != func_name:
            continue
        if isinstance(func, ast.Attribute) and func.value.__class__ is not ast.Name:
            continue
        first = node.args[0] if node.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            problems.append(f"{label}:{node.lineno}: {func_name}() needs a string literal template")
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
        name, source = shown(path), Path(path).read_text(encoding="utf-8")
        if f"{func_name}(" not in source:  # no call to look for: skip parsing
            continue
        for text, where, line in _calls_in(source, name, func_name, problems):
            found.append(Template(text, name, where, line))
    for path in sorted(notebooks):
        name = shown(path)
        for cell in read_notebook(path).cells:
            if cell.cell_type == "code" and func_name in cell.source:
                for text, where, line in _calls_in(cell.source, f"{name} cell {cell.id}", func_name, problems,
                                                   place=cell.id):
                    found.append(Template(text, name, where, line))
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

    po = new_catalog(header, old)
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
        elif (source := fuzzy_source(msgid, info["cells"], old_active, grouped)) is not None:
            consumed.add(source.msgid)
            entry.msgstr, entry.tcomment, entry.flags = source.msgstr, source.tcomment, ["fuzzy", *brace]
            was_fuzzy = "fuzzy" in source.flags and source.previous_msgid
            entry.previous_msgid = source.previous_msgid if was_fuzzy else source.msgid
            result.fuzzy += 1
        else:
            result.new += 1
        po.append(entry)

    finish_catalog(po, po_path, old, old_active, grouped, consumed, result)
    return result


def update_exercise_catalog(po_path=None, folder=None) -> UpdateResult:
    po_path = Path(po_path or EXERCISE_CATALOG)
    return save_if_changed(po_path, build_exercise_catalog(po_path, folder))


# ---------------------------------------------------------------------------- figure titles and labels
# The templates of bilingual(...) come from the package and the English notebooks' code cells into
# FIGURE_CATALOG (imported above from glmcourse.bilingual).
FIGURE_HEADER = """\
Simplified Chinese (zh_CN) catalog of the figures' titles and axis labels (bilingual(...) calls in
glmcourse/**/*.py and the notebooks' code cells). In Chinese mode a figure shows this line instead.
Written by `python -m glmcourse.tools.nbtools update-catalogs`; translators edit msgstr only.
Each msgid is a str.format template: keep every {field} (and its !r / :spec) as it is.
Rules, workflow and glossary: i18n/README.md, i18n/glossary.tsv."""


def figure_templates(package=None, notebooks=None) -> list[Template]:
    package = Path(package or PACKAGE_DIR)
    files = [p for p in package.rglob("*.py") if p.name != "bilingual.py"]
    return call_templates("bilingual", files, notebook_io.lesson_notebooks() if notebooks is None else notebooks)


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
Written by `python -m glmcourse.tools.nbtools update-catalogs`; translators edit msgstr only.
Each msgid is a str.format template: keep every {field} (and its !r / :spec) as it is.
Rules, workflow and glossary: i18n/README.md, i18n/glossary.tsv."""


def message_templates(package=None, notebooks=None) -> list[Template]:
    """Every ``_(...)`` and ``gettext(...)`` template of the package's ``*.py`` files, and every ``gettext(...)``
    one of the notebooks' code cells (IPython rebinds ``_`` to the last result, so a notebook imports
    ``gettext``, the same function), in file and line order."""
    package = Path(package or PACKAGE_DIR)
    files = [p for p in package.rglob("*.py") if p.name != "i18n.py"]
    notebooks = notebook_io.lesson_notebooks() if notebooks is None else notebooks
    found = call_templates("_", files) + call_templates("gettext", files, notebooks)
    return sorted(found, key=lambda t: (t.path, t.line))


def build_message_catalog(po_path=None, package=None, notebooks=None) -> UpdateResult:
    return build_template_catalog(message_templates(package, notebooks), Path(po_path or MESSAGE_CATALOG),
                                  MESSAGE_HEADER)


def update_message_catalog(po_path=None, package=None) -> UpdateResult:
    po_path = Path(po_path or MESSAGE_CATALOG)
    return save_if_changed(po_path, build_message_catalog(po_path, package))
