"""Figure titles and axis labels in English and 中文, and the catalog reader they share with the checkers.

The Chinese edition (notebooks/zh/) is never executed: it shows the English run's outputs. So every
title and axis label a lesson draws carries both languages, English on top:
``bilingual("rows")`` -> ``"rows\\n行数"``. The Chinese is looked up in ``i18n/zh_CN/figures.po``
(msgid = the English ``str.format`` template, collected from the ``bilingual(...)`` calls of the
package and the notebooks by ``python -m glmcourse.tools.nbtools update-catalogs``), so a template must be
a string literal. An untranslated or fuzzy entry gives the English alone. matplotlib draws the
Chinese with Noto Sans CJK SC from the ``mplfonts`` package (see ``settings.use_cjk_font``).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parent.parent / "i18n" / "zh_CN"
FIGURE_CATALOG = CATALOG_DIR / "figures.po"


@functools.cache
def translations(path: str | os.PathLike) -> dict[str, str]:
    """English template -> Chinese template, read once from a catalog. Untranslated, fuzzy and
    obsolete entries are left out; a missing catalog (or polib) gives an empty table."""
    try:
        import polib

        po = polib.pofile(str(path))
    except Exception:  # noqa: BLE001 - no catalog means English, never an error in a learner's notebook
        return {}
    return {e.msgid: e.msgstr for e in po if e.msgstr and not e.obsolete and "fuzzy" not in e.flags}


def chinese(template: str, path: str | os.PathLike, **values) -> str | None:
    """The catalog's Chinese for ``template``, formatted; None when it has none (or it lost a field)."""
    text = translations(path).get(template)
    if text:
        try:
            return text.format(**values)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            pass  # a translation that lost or renamed a field: show the English rather than fail
    return None


def bilingual(template: str, **values) -> str:
    """``template.format(**values)`` with its Chinese on the line below (see the module docstring)."""
    english = template.format(**values)
    zh = chinese(template, FIGURE_CATALOG, **values)
    return f"{english}\n{zh}" if zh else english
