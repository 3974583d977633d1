"""`make site` (glmcourse/tools/site.py): the static HTML site of the executed lessons, English and 中文.

The real site is built once per module from the committed notebooks; small made-up notebooks test
the replace / refuse / fail behaviour quickly. The browser test (headless Chromium, see tests/browser.py)
clicks through the served site.
"""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from browser import chromium_page, needs_chromium
from glmcourse import REPO_ROOT
from glmcourse.files import OUTPUT_MARKER
from glmcourse.tools.site import lesson_title

NOTEBOOKS = REPO_ROOT / "notebooks"
EDITIONS = {"en": NOTEBOOKS, "zh": NOTEBOOKS / "zh"}  # edition -> its notebooks (its pages: site/ and site/zh/)
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def run_site(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "glmcourse.tools.site", *map(str, args)], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def lessons(edition):
    return sorted(EDITIONS[edition].glob("[0-9][0-9]_*.ipynb"))


def png_outputs(notebook: Path) -> int:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum("image/png" in out.get("data", {}) for cell in cells for out in cell.get("outputs", []))


def page_of(site: Path, edition: str, name: str) -> Path:
    return (site / "zh" if edition == "zh" else site) / f"{name}.html"


def internal_urls(html: str):
    """href/src/action values without a scheme (http:, data:, ...), a bare #anchor left out."""
    for url in re.findall(r'\b(?:href|src|action)="([^"]*)"', html):
        if url and not url.startswith(("#", "//")) and not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", url):
            yield url


def target(page: Path, url: str) -> Path:
    """The file a relative URL on ``page`` names (query and #anchor dropped; a folder means its index.html)."""
    path = page.parent / unquote(urlsplit(url).path)
    return path / "index.html" if path.is_dir() else path


def switch_href(html: str) -> str:
    match = re.search(r'<a id="lang-switch"\s+href="([^"]+)"', html)
    assert match, "no language switch link"
    return match.group(1)


def html_lang(html: str) -> str:
    return re.search(r'<html lang="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    started = time.perf_counter()
    result = run_site("--out", out)
    assert result.returncode == 0, result.stderr
    print(f"site built in {time.perf_counter() - started:.1f} s: {result.stdout.strip()}")
    return out


def test_help_is_instant_and_imports_no_sphinx():
    started = time.perf_counter()
    assert run_site("--help").returncode == 0
    assert time.perf_counter() - started < 10
    probe = subprocess.run([sys.executable, "-c", "import sys, glmcourse.tools.site; print('sphinx' in sys.modules)"],
                           cwd=REPO_ROOT, env=ENV, capture_output=True, text=True)
    assert probe.stdout.strip() == "False", probe.stderr


@pytest.mark.parametrize("edition", EDITIONS)
def test_the_index_lists_every_lesson_with_its_title(site, edition):
    index = page_of(site, edition, "index").read_text(encoding="utf-8")
    table = re.search(r"<table.*?</table>", index, re.S).group(0)  # the lesson map, not the sidebar
    links = dict((href, re.sub(r"<[^>]+>", "", text).replace("’", "'"))
                 for href, text in re.findall(r'<a class="reference internal" href="([^"#]+)">(.*?)</a>', table))
    assert lessons(edition), "no lesson notebooks found"
    for notebook in lessons(edition):
        assert f"{notebook.stem}.html" in links, f"{notebook.name} missing from the {edition} index"
        assert links[f"{notebook.stem}.html"] == lesson_title(notebook).replace("`", "")
        assert f"<td><p>{notebook.name[:2]}</p></td>" in table  # the number column


@pytest.mark.parametrize("edition", EDITIONS)
def test_every_lesson_page_shows_its_figures(site, edition):
    for notebook in lessons(edition):
        page = page_of(site, edition, notebook.stem)
        assert page.is_file(), f"no page for {notebook.name}"
        images = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', page.read_text(encoding="utf-8"))
        shown = [src for src in images if target(page, src).is_file()]
        assert len(shown) >= png_outputs(notebook), f"{page.name}: {len(shown)} of {png_outputs(notebook)} figures"
    assert sum(png_outputs(nb) for nb in lessons(edition)) > 0  # the check above checked something


def test_no_internal_link_is_broken(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 2 * (len(lessons("en")) + 1)
    broken = [f"{page.relative_to(site)} -> {url}" for page in pages
              for url in internal_urls(page.read_text(encoding="utf-8")) if not target(page, url).is_file()]
    assert broken == []


def test_every_page_switches_to_the_same_page_in_the_other_language(site):
    for page in sorted(site.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        other = target(page, switch_href(html)).resolve()
        assert other.is_file(), f"{page.relative_to(site)}: switch to missing {other}"
        assert other.name == page.name and html_lang(other.read_text(encoding="utf-8")) != html_lang(html)
        back = target(other, switch_href(other.read_text(encoding="utf-8"))).resolve()
        assert back == page.resolve()  # and the other page switches back here
    assert html_lang(page_of(site, "zh", "index").read_text(encoding="utf-8")) == "zh-CN"


# ------------------------------------------------------------------ replacing, refusing, failing (tiny notebooks)


def write_notebook(path: Path, title: str, markdown: str = "Some text.") -> None:
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG_1PX, "text/plain": "<Figure>"}}
    cells = [{"id": "a", "cell_type": "markdown", "metadata": {}, "source": f"# {title}\n\n{markdown}"},
             {"id": "b", "cell_type": "code", "metadata": {}, "execution_count": 1, "source": "plot()",
              "outputs": [png]}]
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}))


def write_tiny_notebooks(folder: Path) -> Path:
    for where, title in ((folder, "01 · Tiny"), (folder / "zh", "01 · 小课")):
        write_notebook(where / "01_tiny.ipynb", title)
    return folder


@pytest.fixture
def tiny_notebooks(tmp_path):
    return write_tiny_notebooks(tmp_path / "nb")


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    """The tiny lesson's site, built once: each test that changes it works on its own copy (tiny_site)."""
    root = tmp_path_factory.mktemp("tiny")
    result = run_site("--out", root / "site", "--notebooks", write_tiny_notebooks(root / "nb"))
    assert result.returncode == 0, result.stderr
    return root / "site"


@pytest.fixture
def tiny_site(tiny_build, tmp_path, tiny_notebooks):
    """(notebooks, site): a copy of tiny_build's site, next to its notebooks, at tmp_path/out/site."""
    out = tmp_path / "out" / "site"
    shutil.copytree(tiny_build, out)
    return tiny_notebooks, out


def test_a_rebuild_replaces_its_own_folder_and_shows_a_new_lesson(tiny_site):
    tiny_notebooks, out = tiny_site
    assert (out / OUTPUT_MARKER).is_file() and (out / "zh" / "01_tiny.html").is_file()
    (out / "stale.html").write_text("from an older build")
    for folder, title in ((tiny_notebooks, "02 · Another"), (tiny_notebooks / "zh", "02 · 又一课")):
        write_notebook(folder / "02_another.ipynb", title)
    result = run_site("--out", out, "--notebooks", tiny_notebooks)
    assert result.returncode == 0, result.stderr
    assert not (out / "stale.html").exists() and (out / OUTPUT_MARKER).is_file()
    assert 'href="02_another.html"' in (out / "index.html").read_text(encoding="utf-8")
    assert "又一课" in (out / "zh" / "index.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in out.parent.iterdir()) == ["site"]  # no temporary folder left behind


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path, tiny_notebooks):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("someone's work")
    result = run_site("--out", out, "--notebooks", tiny_notebooks)
    assert result.returncode == 2
    assert "error: --out" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "--overwrite_output_dir" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "nb"]  # nothing built next to it


@pytest.mark.parametrize("problem", ["no notebooks", "zh lacks a lesson", "out is a file"])
def test_bad_usage_is_one_line_and_exit_2(tmp_path, tiny_notebooks, problem):
    args = {"no notebooks": ["--notebooks", tmp_path / "nowhere"],
            "zh lacks a lesson": ["--notebooks", tiny_notebooks],
            "out is a file": ["--out", tmp_path / "file.txt", "--notebooks", tiny_notebooks]}[problem]
    (tmp_path / "file.txt").write_text("x")
    if problem == "zh lacks a lesson":
        write_notebook(tiny_notebooks / "02_only_english.ipynb", "02 · Only English")
    result = run_site("--out", tmp_path / "out", *args) if problem != "out is a file" else run_site(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_sphinx_warning_fails_the_build_and_keeps_the_old_site(tiny_site):
    tiny_notebooks, out = tiny_site
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    write_notebook(tiny_notebooks / "zh" / "01_tiny.ipynb", "01 · 小课", "See {ref}`no-such-label`.")
    result = run_site("--out", out, "--notebooks", tiny_notebooks)
    assert result.returncode == 1
    assert "no-such-label" in result.stderr and result.stderr.strip().splitlines()[-1].startswith("error: the zh")
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["site"]  # no temporary folder left behind


# ------------------------------------------------------------------ headless Chromium


@pytest.fixture
def served_site(site):
    handler = functools.partial(type("Quiet", (http.server.SimpleHTTPRequestHandler,),
                                     {"log_message": lambda *a: None}), directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


IMAGES_JS = "Array.from(document.images).map(img => img.complete ? img.naturalWidth : 0)"


@needs_chromium
def test_browser_clicks_through_the_lessons_and_switches_language(served_site):
    with chromium_page("site") as (page, outside):
        for notebook in lessons("en"):
            page.goto(served_site, wait_until="load")
            page.locator(f'div.body table a[href="{notebook.stem}.html"]').click()
            page.wait_for_load_state("load")
            assert page.url == f"{served_site}{notebook.stem}.html"
            widths = page.evaluate(IMAGES_JS)
            assert len(widths) >= png_outputs(notebook) and all(w > 0 for w in widths), (notebook.name, widths)

        page.locator("#lang-switch").click()  # from the last lesson to its Chinese page
        page.wait_for_load_state("load")
        assert page.url == f"{served_site}zh/{lessons('en')[-1].stem}.html"
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert all(w > 0 for w in page.evaluate(IMAGES_JS))
        page.goto(f"{served_site}zh/index.html", wait_until="load")
        page.locator("#lang-switch").click()
        page.wait_for_load_state("load")
        assert page.url == f"{served_site}index.html"
    assert outside == [], f"the site tried to reach the network: {outside}"
