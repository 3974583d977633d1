"""Checks on the translations in the catalogs: what a Chinese text must keep from its English.

A translation keeps byte for byte the English text's code spans, formulas, special tokens, link
targets and numbers; a code comment's translation stays on one line; and a verdict tag in a code span
(`` `[PASS]` ``) may read as the tag the Chinese checkers print (`` `[通过]` ``). tests/test_translation.py
applies these checks to every catalog of i18n/zh_CN/.
"""
from __future__ import annotations

import re
from pathlib import Path

from glmcourse.tools.catalogs import COMMENT_NOTE, clip, load_catalog
from glmcourse.tools.template_catalogs import EXERCISE_CATALOG

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
            out.append(f"{ref}: {'fuzzy' if e.msgstr else 'untranslated'}: {clip(e.msgid)!r}")
    return out
