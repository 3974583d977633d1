"""One vocabulary: every catalog in i18n/zh_CN/ uses the terms of i18n/glossary.tsv.

For each glossary row and each English alternative of it (`A / B` in the English column, with
any `(...)` dropped), every catalog entry whose English contains that term (as whole words, any
case, a plural `s`, a hyphen or a line break for a space; code spans, formulas and link targets
do not count) must contain the row's Chinese. When the Chinese column has as many alternatives
as the English one they pair up in order; otherwise any of them will do.

A word with a legitimately different sense is listed in the row's fourth column, `other senses`
(English phrases separated by `;`): those phrases are removed from the English before the term is
looked for. Keep that column short: it is for real homonyms (a random *seed*, a *code block*), not
for translations that drifted.
"""
from __future__ import annotations

import re
from pathlib import Path

import polib
import pytest

REPO = Path(__file__).resolve().parents[1]
GLOSSARY = REPO / "i18n" / "glossary.tsv"
CATALOGS = sorted((REPO / "i18n" / "zh_CN").glob("*.po"))
HEADER = ["English", "中文", "note", "other senses"]

# Not prose: code spans, link targets, formulas, {fields}, `name=` arguments, `(a, b)` tuples and the
# variables of a checker's formula (`scale = ...`, `w[i] / scale`, `layers x batch x seq_len`).
_NOT_PROSE = [re.compile(r"`[^`]*`"), re.compile(r"\]\([^)]*\)"), re.compile(r"\$\$.*?\$\$", re.S),
              re.compile(r"\$[^$\n]*\$"), re.compile(r"\{[A-Za-z_][^{}]*\}"), re.compile(r"\b\w+ ?=(?!=)"),
              re.compile(r"\(\w+(?:, \w+)+\)"), re.compile(r"[\])}]\s*[*/]\s*\w+"), re.compile(r"\b\w+(?: x \w+)+")]
_PAREN = re.compile(r"\s*[(（][^)）]*[)）]")


def _alternatives(cell: str) -> list[str]:
    return [_PAREN.sub("", a).strip() for a in cell.split(" / ")]


def _phrase(english: str) -> re.Pattern:
    """Whole words, any case, each with an optional plural `s`; a space or hyphen in the term matches
    spaces, hyphens and line breaks; `…` stands for up to six words in between (`turn … into`)."""
    pattern = ""
    for word in (w for w in re.split(r"[\s-]+", english) if w):
        if word == "…":
            pattern += r"(?:[\s-]+[^\s]+){0,6}?"
        else:
            pattern += (r"[\s-]+" if pattern else "") + re.escape(word) + r"(?:s|es)?"
    return re.compile(r"(?<![\w-])" + pattern + r"(?![\w-])", re.I)


def read_glossary(path=GLOSSARY):
    """[(row number, English term, pattern, accepted Chinese, other-sense patterns)], one per term."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == HEADER, f"{path.name}: the header must be {HEADER}"
    terms = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        assert len(cells) in (3, 4) and cells[0] and cells[1], \
            f"{path.name}:{number}: want English<TAB>中文<TAB>note[<TAB>other senses], got {cells}"
        english, chinese = _alternatives(cells[0]), _alternatives(cells[1])
        others = [_phrase(p.strip()) for p in (cells[3].split(";") if len(cells) == 4 else []) if p.strip()]
        for i, term in enumerate(english):
            accepted = [chinese[i]] if len(chinese) == len(english) else chinese
            terms.append((number, term, _phrase(term), accepted, others))
    # A longer term holds the shorter one in its own sense: `batch size` is not a `batch`.
    return [(n, term, pattern, accepted, others + [p for _, longer, p, _, _ in terms
                                                   if longer != term and pattern.search(longer)])
            for n, term, pattern, accepted, others in terms]


def prose(msgid: str) -> str:
    for pattern in _NOT_PROSE:
        msgid = pattern.sub(" ", msgid)
    return msgid


def violations(po, terms):
    """[(English term, accepted Chinese, msgid, msgstr)] for every entry that breaks a term."""
    found = []
    for entry in po:
        if entry.obsolete or not entry.msgstr:
            continue
        for _, term, pattern, accepted, others in terms:
            english = prose(entry.msgid)
            for other in others:
                english = other.sub(" ", english)
            if pattern.search(english) and not any(z.lower() in entry.msgstr.lower() for z in accepted):
                found.append((term, accepted, entry.msgid, entry.msgstr))
    return found


TERMS = read_glossary()


def test_glossary_has_the_terms_of_issue_30():
    english = {t[1].lower() for t in TERMS}
    for term in ["transformer block", "widget", "KV cache", "the seed", "the seed's notes", "chat history",
                 "causal", "cell", "chat skill"]:
        assert term.lower() in english, f"glossary.tsv has no row for {term!r}"
    print(f"glossary terms checked: {len(TERMS)}")


@pytest.mark.parametrize("po_path", CATALOGS, ids=lambda p: p.name)
def test_catalog_uses_the_glossary(po_path):
    found = violations(polib.pofile(str(po_path)), TERMS)
    lines = [f"{po_path.name}: {term!r} must be {' or '.join(accepted)}\n    EN: {msgid[:120]!r}\n"
             f"    ZH: {msgstr[:120]!r}" for term, accepted, msgid, msgstr in found]
    assert not found, f"{len(found)} entries break i18n/glossary.tsv:\n" + "\n".join(lines)


def test_a_drifted_term_is_caught_and_another_sense_is_not(tmp_path):
    glossary = tmp_path / "glossary.tsv"
    glossary.write_text("\t".join(HEADER) + "\n"
                        "KV cache / cache of past keys and values\tKV 缓存\t02\n"
                        "the seed\t原项目\t04\ta seed or\n"
                        "scale\t缩放因子\t02\n", encoding="utf-8")
    terms = read_glossary(glossary)
    po = polib.POFile()
    po.append(polib.POEntry(msgid="The KV cache grows.", msgstr="键值缓存会增长。"))              # drifted
    po.append(polib.POEntry(msgid="The cache of past keys\nand values.", msgstr="过去的键和值的缓存。"))  # drifted
    po.append(polib.POEntry(msgid="The KV cache grows.x", msgstr="KV 缓存会增长。"))            # right
    po.append(polib.POEntry(msgid="Each takes a seed or a Random.", msgstr="每个都接受一个种子。"))  # other sense
    po.append(polib.POEntry(msgid="As the seed does.", msgstr="和种子项目一样。"))               # drifted
    po.append(polib.POEntry(msgid="Call `the seed`.", msgstr="调用。"))                        # code span
    po.append(polib.POEntry(msgid="w[{i}] / scale = {x}: check scale = max / 127", msgstr="检查公式"))  # code
    po.append(polib.POEntry(msgid="one scale per row", msgstr="每行一个比例"))                   # drifted
    found = violations(po, terms)
    assert [(t, m) for t, _, m, _ in found] == [
        ("KV cache", "The KV cache grows."), ("cache of past keys and values", "The cache of past keys\nand values."),
        ("the seed", "As the seed does."), ("scale", "one scale per row")]


def test_a_malformed_row_is_refused(tmp_path):
    glossary = tmp_path / "glossary.tsv"
    glossary.write_text("\t".join(HEADER) + "\nKV cache KV 缓存\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"glossary.tsv:2"):
        read_glossary(glossary)
