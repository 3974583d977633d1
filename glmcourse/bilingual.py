"""Figure titles, axis labels and legends in the learner's language.

``bilingual("rows")`` is ``"rows"`` in an English run and ``"行数"`` in a Chinese one (``GLMCOURSE_LANG=zh``,
which the first cell of every notebooks/zh/ lesson sets; see glmcourse/i18n.py, the one mechanism for
messages). The Chinese edition is executed in Chinese (``python -m glmcourse.tools.nbtools run --edition zh``),
so each edition's figures carry its own language. A notebook's printed lines use ``gettext`` (re-exported
here from glmcourse/i18n.py, catalog ``messages.po``), so a lesson imports both from this module. The
figures' Chinese is looked up in ``i18n/zh_CN/figures.po`` (msgid = the English ``str.format`` template, collected from the ``bilingual(...)`` calls of the
package and the notebooks by ``python -m glmcourse.tools.nbtools update-catalogs``), so a template must be
a string literal. An untranslated or fuzzy entry gives the English. matplotlib draws the Chinese with
Noto Sans CJK SC from the ``mplfonts`` package (see ``settings.use_cjk_font``).
"""
from __future__ import annotations

from glmcourse.i18n import CATALOG_DIR, chinese, gettext, message, translations  # noqa: F401 - re-exported

FIGURE_CATALOG = CATALOG_DIR / "figures.po"


def bilingual(template: str, /, **values) -> str:
    """``template.format(**values)`` in the learner's language (see the module docstring)."""
    return message(FIGURE_CATALOG, template, values)
