"""A notebook's translatable *units*: what the Chinese edition replaces, and everything it copies.

* a markdown cell is split into blocks at blank lines (a heading, a paragraph, a list, a table, a
  block quote, a ``$$`` math block). A fenced code block stays whole and untranslated, except the
  text of its full-line ``#`` comments; an indented code block (every line indented 4 spaces, not
  under a list item) is not translated either;
* in a code cell every comment's text (after ``# ``) is a unit, except machine-read markers
  (``# NBVAL_...``, ``# noqa``, ``# type:``, ``#!``, ``# -*- coding``, a bare ``# TODO``, and
  ``# lesson code:`` which tests/test_masks.py looks for). The code itself never changes.

Everything around a unit (indentation, the ``# `` prefix, blank lines, trailing newlines) is copied
byte for byte, so joining a cell's segments gives back its source exactly. The catalogs
(``catalogs.py``) collect the units; the edition (``editions.py``) replaces them.
"""
from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass

# Comments that are read by machines (or are bare markers), never translated.
_SKIP_COMMENT = re.compile(r"(NBVAL_|noqa\b|type:|pragma\b|fmt:|pylint:|isort:|-\*-|lesson code:|"
                           r"(TODO|FIXME|XXX)\s*$)")
_INLINE_PRAGMA = re.compile(r"\s+#+\s*(noqa\b|type:|NBVAL_|pragma\b)")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_COMMENTED_FENCES = {"", "python", "py", "python3", "ipython", "ipython3", "bash", "sh", "shell", "console",
                     "zsh", "toml", "yaml", "yml"}
_PYTHON_FENCES = {"python", "py", "python3", "ipython", "ipython3"}


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
