"""One mechanism for every learner-facing message: English templates, looked up in gettext catalogs.

A message is a whole English ``str.format`` template with named fields, never glued from pieces:
``print(_("using the adapter in runs/{name} (trained by notebook 05)", name=folder))``. The template is the
key (msgid) of a catalog in ``i18n/zh_CN/``: ``messages.po`` for the package (``_``; a notebook's code cell
calls it ``gettext``, since IPython rebinds ``_``), ``exercises.po``
for the checkers (``glmcourse.exercises.say``), ``figures.po`` for figure text (``glmcourse.bilingual``).
``python -m glmcourse.tools.nbtools update-catalogs`` collects the templates from the source (with ``ast``:
the first argument must be a string literal, never an f-string), and tests/test_messages_i18n.py fails
while an entry is missing, untranslated or fuzzy.

The language is read at every call, so a notebook's first cell can choose it after the imports:
``GLMCOURSE_LANG`` starting with ``zh`` gives Chinese, any other non-empty value English; unset (or
empty), a ``zh`` locale in ``LC_ALL``, ``LC_MESSAGES`` or ``LANG`` (the first one set, as gettext reads
them) gives Chinese. An untranslated, fuzzy or broken entry (a lost ``{field}``) gives the English.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parent.parent / "i18n" / "zh_CN"
MESSAGES = CATALOG_DIR / "messages.po"


def language() -> str:
    """``"zh"`` or ``"en"`` (see the module docstring)."""
    chosen = os.environ.get("GLMCOURSE_LANG", "").strip().lower()
    if not chosen:
        chosen = next((os.environ[k] for k in ("LC_ALL", "LC_MESSAGES", "LANG") if os.environ.get(k)), "")
        chosen = chosen.strip().lower()
    return "zh" if chosen.startswith("zh") else "en"


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


def chinese(template: str, path: str | os.PathLike, /, **values) -> str | None:
    """The catalog's Chinese for ``template``, formatted; None when it has none (or it lost a field)."""
    text = translations(path).get(template)
    if text:
        try:
            return text.format(**values)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            pass  # a translation that lost or renamed a field: show the English rather than fail
    return None


def message(catalog: str | os.PathLike, template: str, values: dict) -> str:
    """``template.format(**values)`` in the learner's language, from ``catalog``."""
    if language() == "zh":
        text = chinese(template, catalog, **values)
        if text is not None:
            return text
    return template.format(**values)


def _(template: str, /, **values) -> str:
    """A package message (``messages.po``) in the learner's language: ``_("saved {n} rows", n=3)``."""
    return message(MESSAGES, template, values)


gettext = _  # the name for a notebook's code cells: IPython rebinds ``_`` there to the last result
