"""Figures draw their titles and axis labels in the learner's language (中文 in zh mode), with a CJK font from the set-up."""
from __future__ import annotations

import string
import warnings

import matplotlib
import polib
import pytest

import glmcourse  # noqa: F401  (its import hook gives matplotlib the CJK fallback font)
from glmcourse import bilingual as figure_text, settings
from glmcourse.tools import catalogs, template_catalogs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CATALOG = template_catalogs.FIGURE_CATALOG
ENTRIES = [e for e in polib.pofile(str(CATALOG)) if not e.obsolete]


def sample_values(template: str) -> dict:
    return {name: 7 for _, name, _, _ in string.Formatter().parse(template) if name}


def draw(text: str) -> None:
    """Render ``text`` as a title, axis labels and a legend, turning any matplotlib warning into an error."""
    fig, ax = plt.subplots(figsize=(4, 3))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ax.plot([0, 1], [0, 1], label=text)
            ax.set(title=text, xlabel=text, ylabel=text)
            ax.legend()
            fig.canvas.draw()
    finally:
        plt.close(fig)


def test_catalog_is_up_to_date_with_the_bilingual_calls():
    assert not template_catalogs.build_figure_catalog().changed, (
        f"{CATALOG.relative_to(catalogs.REPO_ROOT)} is behind the bilingual(...) calls of the package and the "
        "notebooks: run `python -m glmcourse.tools.nbtools update-catalogs`, then translate the new msgstr")


def test_every_figure_text_is_collected_from_a_literal(tmp_path):
    (tmp_path / "bad.py").write_text('from glmcourse.bilingual import bilingual\nbilingual(f"{1} step")\n')
    with pytest.raises(ValueError, match=r"bad.py:2: bilingual\(\) needs a string literal template"):
        template_catalogs.figure_templates(package=tmp_path, notebooks=[])


def test_bilingual_speaks_the_learners_language(monkeypatch):
    monkeypatch.setenv("GLMCOURSE_LANG", "en")
    assert figure_text.bilingual("rows") == "rows"
    assert figure_text.bilingual("{spans} span(s), Part A = {part_a} tokens", spans=2, part_a=9) == \
        "2 span(s), Part A = 9 tokens"
    monkeypatch.setenv("GLMCOURSE_LANG", "zh")  # what a Chinese notebook's first cell does
    assert figure_text.bilingual("rows") == "行数"
    two = figure_text.bilingual("{spans} span(s), Part A = {part_a} tokens", spans=2, part_a=9)
    assert two == "2 个片段，Part A = 9 个 token"
    assert figure_text.bilingual("no such label {n}", n=3) == "no such label 3"  # not in the catalog: English


def test_the_cjk_font_comes_from_mplfonts_and_is_the_fallback():
    family = settings.use_cjk_font()
    assert family == "Noto Sans CJK SC", "pip install mplfonts (pyproject.toml lists it)"
    assert matplotlib.rcParams["font.family"][-1] == family
    assert matplotlib.rcParams["font.family"][0] == "DejaVu Sans"  # English keeps matplotlib's default look


def test_without_the_cjk_font_chinese_warns_so_the_check_can_fail():
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        with pytest.raises(UserWarning, match="missing from font"):
            draw("行数")


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.msgid[:40])
def test_every_chinese_label_renders_without_missing_glyphs(entry):
    assert entry.msgstr and "fuzzy" not in entry.flags, f"untranslated in {CATALOG.name}: {entry.msgid!r}"
    values = sample_values(entry.msgid)
    draw(entry.msgstr.format(**values))
