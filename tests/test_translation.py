"""The Chinese edition: generated from the English notebooks and i18n/zh_CN/*.po, never stale.

Course-wide checks (parametrized over the real notebooks and catalogs):
  (1) every notebooks/zh/*.ipynb is exactly what `translate` writes now, and every catalog is what
      `update-catalogs` writes now;
  (2) every msgid has a non-empty, non-fuzzy msgstr;
  (3) numbers, code spans, special tokens, formulas and link targets survive translation;
  (4) the Chinese notebooks pass the English notebooks' hygiene checks;
  (5) every English lesson has a catalog and a Chinese edition.
Small fixture notebooks built in tmp_path prove that each check catches what it is meant to catch.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import polib
import pytest

from glmcourse.tools import catalog_checks, catalogs, editions, markdown_split, nbtools, notebook_io

REPO = Path(__file__).resolve().parents[1]
LESSONS = notebook_io.lesson_notebooks(REPO / "notebooks")
CATALOGS = sorted((REPO / "i18n" / "zh_CN").glob("*.po"))
EDITIONS = sorted((REPO / "notebooks" / "zh").glob("*.ipynb"))


def rel(path):
    return str(Path(path).relative_to(REPO))


# ---------------------------------------------------------------------------- fixtures
def make_notebook(path, cells):
    """A small executed notebook: cells are ("markdown", text) or ("code", source, printed)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(nbtools.KERNELSPEC), "language_info": dict(nbtools.LANGUAGE_INFO)}
    count = 0
    for i, spec in enumerate(cells):
        if spec[0] == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(spec[1], id=f"md{i:02d}"))
        else:
            count += 1
            cell = nbformat.v4.new_code_cell(spec[1], id=f"code{i:02d}", execution_count=count)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=spec[2])] if spec[2] else []
            nb.cells.append(cell)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbtools.write_notebook(nb, path)
    return Path(path)


LESSON = [
    ("markdown", "# 07 · A new lesson\n\nThe mask has `prefix_len` 3 and ends in `<sop>`.\n\n"
                 "```python\n# build the mask\nmask = make_mask(3)\n```"),
    ("code", "# NBVAL_CHECK_OUTPUT\nx = 1  # one token\nprint(x)  # noqa: T201\n", "1\n"),
    ("markdown", "Read [the paper](https://arxiv.org/abs/2103.10360) and $y = Wx$."),
]
ZH = {
    "# 07 · A new lesson": "# 07 · 新的一课",
    "The mask has `prefix_len` 3 and ends in `<sop>`.": "掩码的 `prefix_len` 为 3,并以 `<sop>` 结尾。",
    "build the mask": "构造掩码",
    "one token": "一个 token",
    "Read [the paper](https://arxiv.org/abs/2103.10360) and $y = Wx$.":
        "请阅读[论文](https://arxiv.org/abs/2103.10360)以及 $y = Wx$。",
}


@pytest.fixture
def lesson(tmp_path):
    """notebooks/07_new.ipynb in tmp_path, its catalog fully translated, its edition written."""
    nb_path = make_notebook(tmp_path / "notebooks" / "07_new.ipynb", LESSON)
    po_path = tmp_path / "i18n" / "07_new.po"
    catalogs.update_catalog(nb_path, po_path)
    fill(po_path, ZH)
    editions.write_translation(nb_path, po_path)
    return nb_path, po_path


def fill(po_path, table):
    po = catalogs.load_catalog(po_path)
    for entry in po:
        if entry.msgid in table:
            entry.msgstr = table[entry.msgid]
            if "fuzzy" in entry.flags:
                entry.flags.remove("fuzzy")
            entry.previous_msgid = None
    catalogs.atomic_write(po_path, catalogs.po_text(po))


def edit_cell(nb_path, index, source):
    nb = nbtools.read_notebook(nb_path)
    nb.cells[index].source = source
    nbtools.write_notebook(nb, nb_path)


# ---------------------------------------------------------------------------- units
def test_units_of_every_course_cell_join_back_to_its_source():
    for path in LESSONS:
        for cell in nbtools.read_notebook(path).cells:
            assert "".join(s.text for s in markdown_split.cell_segments(cell)) == cell.source, (path.name, cell.id)


def test_markdown_splits_at_blank_lines_and_keeps_fences():
    source = ("## Title\nA paragraph\non two lines.\n\n- item 1\n- item 2\n\n```bash\n# make it\nmake test\n\n"
              "make lab\n```\n\n    indented code\n\n$$\na = b\n\nc = d\n$$\n\n| a | b |\n|---|---|\n")
    units = [(s.kind, s.text) for s in markdown_split.split_markdown(source) if s.kind]
    assert units == [("markdown", "## Title\nA paragraph\non two lines."), ("markdown", "- item 1\n- item 2"),
                     ("comment", "make it"), ("markdown", "$$\na = b\n\nc = d\n$$"), ("markdown", "| a | b |\n|---|---|")]


def test_code_comments_are_units_and_markers_are_not():
    source = ("#!/usr/bin/env python\n# NBVAL_CHECK_OUTPUT\nimport os  # noqa: F401\n"
              "    #   indented note  \ns = '# not a comment'\nraise NotImplementedError  # TODO\n"
              "y = 2  # two, see below  # noqa: E501\nx: int = 1  # type: ignore\n")
    segs = markdown_split.split_code(source)
    assert [s.text for s in segs if s.kind] == ["indented note", "two, see below"]
    assert "".join(s.text for s in segs) == source
    magic = "%matplotlib inline\n!pip list\n# a full-line comment\n"  # IPython syntax: not Python
    segs = markdown_split.split_code(magic)
    assert [s.text for s in segs if s.kind] == ["a full-line comment"] and "".join(s.text for s in segs) == magic


def test_translate_replaces_units_and_keeps_code_and_outputs(lesson):
    nb_path, po_path = lesson
    zh = nbtools.read_notebook(editions.edition_path(nb_path))
    assert zh.cells[1].id == editions.SETUP_CELL_ID  # the first code cell, after the title cell
    assert 'os.environ["GLMCOURSE_LANG"] = "zh"' in zh.cells[1].source
    assert zh.cells[0].source.startswith("# 07 · 新的一课\n\n掩码的 `prefix_len` 为 3")
    assert "```python\n# 构造掩码\nmask = make_mask(3)\n```" in zh.cells[0].source
    assert zh.cells[2].source == "# NBVAL_CHECK_OUTPUT\nx = 1  # 一个 token\nprint(x)  # noqa: T201\n"
    assert zh.cells[2].outputs[0]["text"] == "1\n" and zh.cells[2].execution_count == 2
    assert nbtools.check_notebook(zh) == []


def test_setup_cell_makes_english_relative_paths_work(tmp_path, monkeypatch):
    (tmp_path / "notebooks" / "zh").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks" / "zh")
    monkeypatch.setenv("GLMCOURSE_LANG", "")  # recorded, so the "zh" the cell sets is undone afterwards
    exec(editions.SETUP_CELL_SOURCE, {})
    assert Path.cwd() == tmp_path / "notebooks"
    exec(editions.SETUP_CELL_SOURCE, {})  # running it twice changes nothing
    assert Path.cwd() == tmp_path / "notebooks"
    import os

    assert os.environ["GLMCOURSE_LANG"] == "zh"


# ---------------------------------------------------------------------------- update-catalogs
def test_catalog_references_and_duplicates(tmp_path):
    nb_path = make_notebook(tmp_path / "01_x.ipynb", [("markdown", "Same text."), ("code", "a = 1  # Same text.\n", ""),
                                                      ("markdown", "Same text.\n\nOther.")])
    po_path = tmp_path / "01_x.po"
    catalogs.update_catalog(nb_path, po_path)
    po = catalogs.load_catalog(po_path)
    assert [e.msgid for e in po] == ["Same text.", "Other."]
    text = po_path.read_text(encoding="utf-8")
    assert "#: 01_x.ipynb:cell-0:md00 01_x.ipynb:cell-1:code01 01_x.ipynb:cell-2:md02\n" in text


def test_update_keeps_marks_fuzzy_and_obsoletes(lesson):
    nb_path, po_path = lesson
    before = po_path.read_bytes()
    assert catalogs.update_catalog(nb_path, po_path).changed is False
    assert po_path.read_bytes() == before  # no English change: an identical file
    # A small edit in cell 0's paragraph, a removed comment, a new paragraph.
    edit_cell(nb_path, 0, LESSON[0][1].replace("ends in `<sop>`.", "always ends in `<sop>`.")
              .replace("# build the mask\n", ""))
    edit_cell(nb_path, 2, LESSON[2][1] + "\n\nA brand-new paragraph.")
    res = catalogs.update_catalog(nb_path, po_path)
    assert (res.new, res.fuzzy, res.obsolete) == (1, 1, 1)
    po = catalogs.load_catalog(po_path)
    fuzzy = po.find("The mask has `prefix_len` 3 and always ends in `<sop>`.")
    assert "fuzzy" in fuzzy.flags
    assert fuzzy.msgstr == ZH["The mask has `prefix_len` 3 and ends in `<sop>`."]
    assert fuzzy.previous_msgid == "The mask has `prefix_len` 3 and ends in `<sop>`."
    assert [e.msgid for e in po.obsolete_entries()] == ["build the mask"]
    text = po_path.read_text(encoding="utf-8")
    assert '#| msgid "The mask has `prefix_len` 3 and ends in `<sop>`."' in text
    assert '#~ msgid "build the mask"' in text
    again = po_path.read_bytes()
    assert catalogs.update_catalog(nb_path, po_path).changed is False and po_path.read_bytes() == again
    # Translating the fuzzy entry (flag and previous msgid cleared) is kept on the next update.
    fill(po_path, {fuzzy.msgid: "掩码的 `prefix_len` 为 3,并且总是以 `<sop>` 结尾。"})
    catalogs.update_catalog(nb_path, po_path)
    kept = catalogs.load_catalog(po_path).find(fuzzy.msgid)
    assert not kept.flags and kept.previous_msgid is None and "总是" in kept.msgstr


def test_a_very_different_text_is_new_not_fuzzy(lesson):
    nb_path, po_path = lesson
    edit_cell(nb_path, 2, "Completely unrelated words here.")
    res = catalogs.update_catalog(nb_path, po_path)
    assert (res.new, res.fuzzy) == (1, 0)
    assert not catalogs.load_catalog(po_path).find("Completely unrelated words here.").msgstr


def test_catalog_writes_are_atomic(lesson, monkeypatch):
    nb_path, po_path = lesson
    before = po_path.read_bytes()
    edit_cell(nb_path, 2, "Something new.")

    def crash(src, dst):
        raise OSError("disk full")

    import glmcourse.files

    monkeypatch.setattr(glmcourse.files.os, "replace", crash)
    with pytest.raises(OSError):
        catalogs.update_catalog(nb_path, po_path)
    assert po_path.read_bytes() == before
    assert [p.name for p in po_path.parent.iterdir()] == [po_path.name]  # no temporary file left


# ---------------------------------------------------------------------------- (1) freshness
@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.name)
def test_chinese_edition_is_what_translate_writes(notebook):
    problems = editions.staleness(notebook)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.name)
def test_catalog_is_up_to_date_with_the_english(notebook):
    po_path = catalogs.catalog_path(notebook)
    assert po_path.exists(), f"no catalog {rel(po_path)}. Fix: {catalogs.FIX_UPDATE} {rel(notebook)}"
    res = catalogs.build_catalog(notebook, po_path)
    assert not res.changed, (f"{rel(po_path)} is behind {rel(notebook)} ({res.new} new, {res.fuzzy} changed, "
                             f"{res.obsolete} removed texts). Fix: {catalogs.FIX_UPDATE} {rel(notebook)}, "
                             f"translate the new/fuzzy entries, then {editions.FIX_TRANSLATE}")


def test_staleness_names_notebook_cell_text_and_fix(lesson):
    nb_path, po_path = lesson
    assert editions.staleness(nb_path, po_path) == []
    edit_cell(nb_path, 2, "Read [the paper](https://arxiv.org/abs/2103.10360) and $y = Wx + b$.")
    catalogs.update_catalog(nb_path, po_path)
    problems = "\n".join(editions.staleness(nb_path, po_path))
    assert "07_new.ipynb cell-2:md02" in problems
    assert "Read [the paper](https://arxiv.org/abs/2103.10360) and $y = Wx + b$." in problems
    assert "Fix: python -m glmcourse.tools.nbtools translate" in problems


def test_staleness_reports_outputs_and_a_missing_edition(lesson):
    nb_path, po_path = lesson
    nb = nbtools.read_notebook(nb_path)
    nb.cells[1].outputs[0]["text"] = "2\n"  # the English notebook was re-executed, its code unchanged:
    nbtools.write_notebook(nb, nb_path)
    assert editions.staleness(nb_path, po_path) == []  # the edition keeps its own run's outputs
    nb.cells[1].source += "\n"  # the code changed: translate gives the cell the English run's outputs again
    nbtools.write_notebook(nb, nb_path)
    assert any("cell-1:code01: outputs differ" in p for p in editions.staleness(nb_path, po_path))
    editions.edition_path(nb_path).unlink()
    problems = editions.staleness(nb_path, po_path)
    assert "missing" in problems[0] and "Fix: python -m glmcourse.tools.nbtools translate" in problems[0]


# ---------------------------------------------------------------------------- (2) completeness
@pytest.mark.parametrize("po_path", CATALOGS, ids=lambda p: p.name)
def test_every_text_is_translated(po_path):
    missing = catalog_checks.incomplete_entries(catalogs.load_catalog(po_path))
    assert not missing, (f"{rel(po_path)}: {len(missing)} entries untranslated or fuzzy:\n" + "\n".join(missing[:20])
                         + f"\nFix: fill in msgstr (and clear #, fuzzy) in {rel(po_path)}, then "
                         f"{editions.FIX_TRANSLATE}")


def test_untranslated_and_fuzzy_entries_are_reported(lesson):
    nb_path, po_path = lesson
    assert catalog_checks.incomplete_entries(catalogs.load_catalog(po_path)) == []
    po = catalogs.load_catalog(po_path)
    po.find("one token").msgstr = ""
    po.find("build the mask").flags.append("fuzzy")
    found = catalog_checks.incomplete_entries(po)
    assert len(found) == 2
    assert any("cell-1:code01: untranslated: 'one token'" in f for f in found)
    assert any("fuzzy: 'build the mask'" in f for f in found)


def test_strict_translate_refuses_english_fallback(lesson, monkeypatch, capsys):
    nb_path, po_path = lesson
    monkeypatch.setattr(catalogs, "CATALOG_DIR", po_path.parent)
    assert nbtools.main(["translate", "--strict", str(nb_path)]) == 0
    fill(po_path, {"one token": ""})
    edition = editions.edition_path(nb_path)
    before = edition.read_bytes()
    assert nbtools.main(["translate", "--strict", str(nb_path)]) == 1
    err = capsys.readouterr().err
    assert "07_new.ipynb cell-1:code01: untranslated: 'one token'" in err
    assert edition.read_bytes() == before  # nothing written
    assert nbtools.main(["translate", str(nb_path)]) == 0  # plain translate falls back, and says so
    assert "1 of 5 texts left in English" in capsys.readouterr().out
    assert "x = 1  # one token" in edition.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- (3) protected items
@pytest.mark.parametrize("po_path", CATALOGS, ids=lambda p: p.name)
def test_numbers_code_tokens_formulas_and_links_survive(po_path):
    bad = []
    for entry in catalogs.load_catalog(po_path):
        for problem in catalog_checks.entry_problems(entry):
            ref = entry.occurrences[0][0] if entry.occurrences else "?"
            bad.append(f"{ref}: {problem}: {catalogs.clip(entry.msgid)!r}")
    assert not bad, f"{rel(po_path)}: translations that changed protected text:\n" + "\n".join(bad)


@pytest.mark.parametrize("msgstr, kind", [
    ("掩码的 `prefix_len` 为 4,并以 `<sop>` 结尾。见[论文](https://arxiv.org/abs/2103.10360)和 $y = Wx$。", "number"),
    ("掩码的 prefix_len 为 3,并以 `<sop>` 结尾。见[论文](https://arxiv.org/abs/2103.10360)和 $y = Wx$。", "code span"),
    ("掩码的 `prefix_len` 为 3,并以 `<sop>` 结尾。见[论文](https://arxiv.org/abs/2103.10360)和 $y = W x$。", "formula"),
    ("掩码的 `prefix_len` 为 3,并以 `<sop>` 结尾。见[论文](https://arxiv.org/abs/2103.10361)和 $y = Wx$。", "link target"),
])
def test_each_protected_kind_is_caught(msgstr, kind):
    msgid = "The mask has `prefix_len` 3 and ends in `<sop>`. See [the paper](https://arxiv.org/abs/2103.10360) and $y = Wx$."
    good = "掩码的 `prefix_len` 为 3,并以 `<sop>` 结尾。见[论文](https://arxiv.org/abs/2103.10360)和 $y = Wx$。"
    assert catalog_checks.placeholder_problems(msgid, good) == []
    problems = catalog_checks.placeholder_problems(msgid, msgstr)
    assert problems and problems[0].startswith(kind), problems


def test_tokens_display_math_and_code_comment_lines_are_caught():
    msgid = "Part A ends in [gMASK] and <sop>:\n$$ y = W x + \\frac{\\alpha}{r} B A x $$"
    assert catalog_checks.placeholder_problems(msgid, "A 部分以 [gMASK] 和 <sop> 结尾:\n$$ y = W x + \\frac{\\alpha}{r} B A x $$") == []
    assert "special token" in catalog_checks.placeholder_problems(msgid, "A 部分以 [MASK] 和 <sop> 结尾:\n$$ y = W x + \\frac{\\alpha}{r} B A x $$")[0]
    assert "formula" in catalog_checks.placeholder_problems(msgid, "A 部分以 [gMASK] 和 <sop> 结尾:\n$$ y = Wx $$")[0]
    # A line break inside a code span renders as a space: the checker allows rewrapping.
    assert catalog_checks.placeholder_problems("Write `f(a,\nb)`.", "编写 `f(a, b)`。") == []
    entry = polib.POEntry(msgid="one token", msgstr="一个\ntoken", comment=catalogs.COMMENT_NOTE)
    assert "spans lines" in catalog_checks.entry_problems(entry)[-1]


@pytest.mark.parametrize("po_path", [p for p in CATALOGS if p.name[:2].isdigit()], ids=lambda p: p.name)
def test_chinese_prose_names_the_tags_the_chinese_checkers_print(po_path):
    """`[PASS]` in the English prose is `[通过]` in the Chinese, as exercises.po makes a zh run print it."""
    tags = catalog_checks.verdict_tags()
    assert {"[PASS]", "[TRY AGAIN]", "[TODO]"} <= set(tags), f"exercises.po lacks a verdict tag: {tags}"
    bad = [f"{catalogs.clip(e.msgid)!r}: write `{zh}` for `{en}`"
           for e in catalogs.load_catalog(po_path) if not e.obsolete and e.msgstr
           for en, zh in tags.items() if f"`{en}`" in e.msgid and (f"`{zh}`" not in e.msgstr or f"`{en}`" in e.msgstr)]
    assert not bad, f"{rel(po_path)}: prose names a tag the Chinese checkers never print:\n" + "\n".join(bad)


def test_a_verdict_tag_may_be_the_chinese_one_and_only_that(tmp_path):
    tags = catalog_checks.verdict_tags()
    assert catalog_checks.placeholder_problems("prints `[PASS]`", f"打印 `{tags['[PASS]']}`") == []
    assert "code span" in catalog_checks.placeholder_problems("prints `[PASS]`", "打印 `[通 过]`")[0]
    po = tmp_path / "exercises.po"
    po.write_text('msgid ""\nmsgstr ""\n\nmsgid "[PASS] {name}"\nmsgstr "[对] {name}"\n', encoding="utf-8")
    assert catalog_checks.verdict_tags(po) == {"[PASS]": "[对]"}


# ---------------------------------------------------------------------------- output language (measure)
# The Chinese edition should show Chinese outputs in notebooks/zh/. Until they are executed in zh mode this only measures:
#   PYTHONPATH=$PWD .venv/bin/python -c "import sys; sys.path.insert(0, 'tests'); import test_translation as t; \
#       t.print_english_outputs(sys.argv[1:])" notebooks/zh/*.ipynb [-v]
ENGLISH_SENTENCE = re.compile(r"\b[A-Za-z][a-z]+(?:[ ,;:'()-]+[A-Za-z][a-z]+){2,}")  # 3+ English words in a row
NOT_PROSE_LINE = re.compile(r"^\s*(?:tensor\(|\[[\d'\"\[\s-]|\{['\"\d]|\(|\w+\(|def |class |raise |return |for |if |with |import |from |self\.|#|@)"
                            r"|^\s{4,}\S")  # reprs, calls and indented source listings


def output_lines(nb):
    """Every line of a notebook's text outputs (stream, execute_result, display_data; not tracebacks)."""
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain") or ""
            yield from ("".join(text) if isinstance(text, list) else text).splitlines()


def english_output_lines(nb) -> list[str]:
    return [line for line in output_lines(nb) if ENGLISH_SENTENCE.search(line) and not NOT_PROSE_LINE.match(line)]


def print_english_outputs(paths):
    verbose = "-v" in paths
    for path in (p for p in paths if p != "-v"):
        nb = nbformat.read(path, as_version=4)
        english, lines = english_output_lines(nb), list(output_lines(nb))
        chinese = [line for line in lines if re.search(r"[\u4e00-\u9fff]", line)]
        print(f"{path}: {len(english)} of {len(lines)} output lines have an English sentence; {len(chinese)} have Chinese")
        if verbose:
            print("\n".join("    " + line[:150] for line in english))


def test_english_output_lines_counts_sentences_not_code_or_data():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="[待完成] f：尚未作答。\n[TODO] f: not attempted yet\n"
        "tensor([1, 2, 3])\n['The', 'sky', 'looks', 'blue']\n    def forward(self, x): return the sum of it\nloss 0.42\n")])]
    assert english_output_lines(nb) == ["[TODO] f: not attempted yet"]


# ---------------------------------------------------------------------------- (4) hygiene
@pytest.mark.parametrize("path", EDITIONS, ids=lambda p: p.name)
def test_chinese_notebook_passes_the_hygiene_checks(path):
    problems = nbtools.check_paths([path])
    assert not problems, "\n".join(problems) + (
        "\nThe Chinese notebook mirrors the English one: fix the English notebook (python -m glmcourse.tools.nbtools run"
        f" notebooks/{path.name}), then {editions.FIX_TRANSLATE} notebooks/{path.name}")


def test_hygiene_test_covers_the_chinese_notebooks():
    spec = importlib.util.spec_from_file_location("_hygiene", REPO / "tests" / "test_notebook_hygiene.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert EDITIONS and set(EDITIONS) <= set(module.COURSE_NOTEBOOKS)


def test_hygiene_catches_a_broken_setup_cell(lesson):
    nb_path, _ = lesson
    zh = nbtools.read_notebook(editions.edition_path(nb_path))
    assert nbtools.check_notebook(zh) == []
    zh.cells[1].execution_count = None  # a set-up cell without a count breaks the order check
    assert any("not executed" in p for p in nbtools.check_notebook(zh))


def test_code_cells_are_the_english_code(lesson):
    nb_path, _ = lesson
    english = nbtools.read_notebook(nb_path)
    zh = nbtools.read_notebook(editions.edition_path(nb_path))
    zh_cells = [c for c in zh.cells if c.get("id") != editions.SETUP_CELL_ID]
    for en, ch in zip(english.cells, zh_cells):
        if en.cell_type == "code":
            literal = lambda cell: [s.text for s in markdown_split.split_code(cell.source) if not s.kind]  # noqa: E731
            assert literal(en) == literal(ch) and en.outputs == ch.outputs


# ---------------------------------------------------------------------------- (5) every lesson
def test_every_lesson_has_a_catalog_and_a_chinese_edition():
    assert LESSONS, "no notebooks/NN_*.ipynb found"
    problems = editions.missing_editions(REPO / "notebooks")
    assert not problems, "\n".join(problems)
    assert {p.name for p in EDITIONS} == {p.name for p in LESSONS}, "notebooks/zh/ holds a notebook with no English lesson"


def test_a_new_lesson_without_an_edition_is_reported(lesson, monkeypatch):
    nb_path, po_path = lesson
    assert editions.missing_editions(nb_path.parent, po_path.parent) == []
    make_notebook(nb_path.parent / "08_next.ipynb", [("markdown", "# 08 · Next")])
    problems = editions.missing_editions(nb_path.parent, po_path.parent)
    assert len(problems) == 2 and all("08_next" in p for p in problems)
    assert "Fix: python -m glmcourse.tools.nbtools translate" in problems[1]


def test_glossary_is_well_formed():
    rows = [line.split("\t") for line in (REPO / "i18n" / "glossary.tsv").read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["English", "中文", "note", "other senses"]
    assert all(len(r) in (3, 4) and r[0] and r[1] for r in rows[1:]), [r for r in rows if len(r) not in (3, 4)]
    english = [r[0] for r in rows[1:]]
    assert len(english) == len(set(english))
    terms = {r[1] for r in rows[1:]}
    for seed_term in ["自回归空格填充", "注意力掩码", "量化范围", "量化映射", "反量化", "微调", "显存", "低秩适配"]:
        assert seed_term in terms
