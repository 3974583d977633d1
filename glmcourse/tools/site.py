"""`make site`: a static HTML site of the executed lessons, English and 中文, with the lesson map as index.

    python -m glmcourse.tools.site [--out runs/site] [--notebooks notebooks] [--overwrite_output_dir]

Nothing is executed: Sphinx + myst-nb (``nb_execution_mode = "off"``) render the committed outputs, so
the site shows exactly what the notebooks show. English lands at ``OUT/index.html`` and ``OUT/NN_*.html``,
the Chinese edition (``notebooks/zh/``) at ``OUT/zh/``; every page links to the same page in the other
language. The site is built in a temporary folder next to OUT, then swapped in; an existing OUT is
replaced only when it holds the marker file a previous build wrote (or with ``--overwrite_output_dir``).
Nothing is fetched, at build time or by the pages: no MathJax (formulas show as their LaTeX source),
no widget JavaScript (an interactive widget shows a note saying where it runs).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from glmcourse import REPO_ROOT
from glmcourse.cli import UsageError, check_output_dir, one_line, run_cli
from glmcourse.files import OutputError
from glmcourse.tools.notebook_io import LESSON_GLOB, lesson_notebooks as lessons  # a new lesson appears by itself

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
TOOL = "python -m glmcourse.tools.site"

# One entry per edition: where its notebooks are (under --notebooks) and its pages (under --out), its words.
EDITIONS = {
    "en": {
        "folder": "", "language": "en", "other": "zh", "switch_prefix": "zh/", "switch_label": "中文",
        "title": "glmcourse: ChatGLM-6B's workflow on a laptop CPU",
        "intro": "The course's lessons, executed: every output, table and figure below is what the committed "
                 "notebook shows. To run them yourself, clone the repository and run `make lab` "
                 "(English) or `make lab-zh` (中文); start with lesson 00.",
        "columns": ("Lesson", "Title"),
        "widget_note": "Interactive widget: it runs in JupyterLab (<code>make lab</code>), not on this page.",
    },
    "zh": {
        "folder": "zh", "language": "zh_CN", "other": "en", "switch_prefix": "../", "switch_label": "English",
        "title": "glmcourse：在笔记本电脑的 CPU 上走通 ChatGLM-6B 的流程",
        "intro": "课程的各课，均已执行：下面的每个输出、表格和图，都与仓库中提交的 notebook 一致。"
                 "想自己运行，请克隆仓库后执行 `make lab-zh`（中文）或 `make lab`（English），从第 00 课开始。",
        "columns": ("课", "标题"),
        "widget_note": "交互控件：请在 JupyterLab 中运行（<code>make lab-zh</code>），本页面不能运行它。",
    },
}

# Every page, search and the index included, gets the switch at the top (alabaster leaves `header` empty).
LAYOUT = """{% extends "!layout.html" %}
{% block header %}
<p class="lang-switch" style="text-align:right;margin:0.5em 1em 0"><a id="lang-switch"
   href="{{ switch_prefix }}{{ pagename }}.html" hreflang="{{ switch_lang }}">{{ switch_label }}</a></p>
{{ super() }}
{% endblock %}
"""


class SiteError(OutputError):
    """The build failed (a Sphinx warning or error, an unreadable notebook): ``run_cli`` exits 1."""


# ------------------------------------------------------------------------------------------ the lessons
def lesson_title(notebook: Path) -> str:
    """The notebook's first markdown heading, without its "Lesson 01 · " / "第 01 课 · " / "04 · " prefix."""
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            match = re.search(r"^#{1,6}\s+(.+?)\s*$", "".join(cell["source"]), re.M)
            if match:
                return re.sub(r"^(Lesson\s+|第\s*)?\d+(\s*课)?\s*·\s*", "", match.group(1)) or match.group(1)
    return notebook.stem


def index_page(edition: dict, notebooks: list[Path]) -> str:
    """The lesson map in MyST markdown: a table of number, title and link, and the (hidden) toctree."""
    number, title = edition["columns"]
    rows = [f"| {nb.name[:2]} | [{lesson_title(nb).replace('|', '&#124;')}]({nb.name}) |" for nb in notebooks]
    toctree = "\n".join(nb.stem for nb in notebooks)
    return (f"# {edition['title']}\n\n{edition['intro']}\n\n| {number} | {title} |\n|---|---|\n"
            + "\n".join(rows) + f"\n\n```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toctree}\n```\n")


def copy_notebook(source: Path, target: Path, widget_note: str) -> None:
    """Copy a notebook, a widget's output (no saved state: it would show nothing) replaced by a note."""
    notebook = json.loads(source.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if WIDGET_MIME in output.get("data", {}):
                output["data"] = {"text/html": f'<p class="widget-note"><em>{widget_note}</em></p>'}
    target.write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")


# ------------------------------------------------------------------------------------------ Sphinx
def setup(app):
    """Sphinx extension hook (this module is listed in `extensions`): formulas as LaTeX source, no MathJax."""
    from docutils import nodes

    def visit_math(self, node):
        self.body.append(f'<code class="math">{self.encode(node.astext())}</code>')
        raise nodes.SkipNode

    def visit_displaymath(self, node):
        self.body.append(f'<pre class="math">{self.encode(node.astext())}</pre>')
        raise nodes.SkipNode

    app.add_html_math_renderer("latex_source", (visit_math, None), (visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def sphinx_config(edition: dict) -> dict:
    return {
        "project": "glmcourse", "language": edition["language"], "html_title": edition["title"],
        "extensions": ["myst_nb", "glmcourse.tools.site"], "templates_path": ["_templates"],
        "nb_execution_mode": "off",  # render the committed outputs; never run a kernel
        "nb_ipywidgets_js": {},  # no widget JavaScript from a CDN
        "myst_enable_extensions": ["dollarmath"], "html_math_renderer": "latex_source",
        "html_theme": "alabaster", "html_theme_options": {"page_width": "1200px", "show_powered_by": False},
        "html_show_sphinx": False, "html_show_copyright": False,  # no footer links off the site
        "html_show_sourcelink": False, "html_copy_source": False,
        "html_context": {"switch_prefix": edition["switch_prefix"], "switch_label": edition["switch_label"],
                         "switch_lang": EDITIONS[edition["other"]]["language"].replace("_", "-")},
    }


def build_edition(name: str, notebooks_dir: Path, work: Path) -> Path:
    """Write one edition's Sphinx source under ``work``, build it, return its HTML folder."""
    from sphinx.application import Sphinx
    from sphinx.util.console import nocolor
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    if not sys.stderr.isatty():
        nocolor()  # warnings go to a log or a pipe: no colour codes

    edition = EDITIONS[name]
    src = work / name / "src"
    (src / "_templates").mkdir(parents=True)
    (src / "_templates" / "layout.html").write_text(LAYOUT, encoding="utf-8")
    notebooks = lessons(notebooks_dir / edition["folder"])
    for notebook in notebooks:
        copy_notebook(notebook, src / notebook.name, edition["widget_note"])
    (src / "index.md").write_text(index_page(edition, notebooks), encoding="utf-8")

    html, warnings = work / name / "html", io.StringIO()
    try:  # as sphinx-build does: docutils' registries are restored after each build
        with patch_docutils(src), docutils_namespace():
            app = Sphinx(src, None, html, work / name / "doctrees", "html", confoverrides=sphinx_config(edition),
                         status=None, warning=warnings, freshenv=True, warningiserror=True, keep_going=True)
            app.build()
    except Exception as err:  # Sphinx reports a broken notebook or config as an exception: one line
        raise SiteError(f"the {name} edition did not build: {one_line(err)}") from None
    if app.statuscode or warnings.getvalue().strip():
        print(warnings.getvalue().rstrip(), file=sys.stderr)
        raise SiteError(f"the {name} edition built with the warnings above (they count as errors); "
                        f"fix their causes, nothing was changed.")
    return html


# ------------------------------------------------------------------------------------------ the command
def check_notebooks(notebooks_dir: Path) -> None:
    """Both editions exist, hold lessons, and hold the same ones (else a language switch would break)."""
    english, chinese = lessons(notebooks_dir), lessons(notebooks_dir / "zh")
    if not english:
        raise UsageError(f"--notebooks {notebooks_dir}: no lesson notebooks ({LESSON_GLOB}) there; pass the "
                         f"course's notebooks folder (e.g. --notebooks {REPO_ROOT / 'notebooks'}).")
    missing = sorted({nb.name for nb in english} ^ {nb.name for nb in chinese})
    if missing:
        raise UsageError(f"--notebooks {notebooks_dir}: the English and zh/ lessons differ ({', '.join(missing)}); "
                         f"run `python -m glmcourse.tools.nbtools translate` to write notebooks/zh/.")
    from glmcourse.tools.notebook_io import read_notebook

    for notebook in english + chinese:  # a damaged one is named here, not deep inside Sphinx
        read_notebook(notebook)


def build_site(out: Path, notebooks_dir: Path, overwrite: bool = False) -> None:
    """Build both editions in a temporary folder next to ``out``, then put it in ``out``'s place."""
    from glmcourse.files import write_marker

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))  # same disk: renames work
    try:
        site = build_edition("en", notebooks_dir, work)
        os.replace(build_edition("zh", notebooks_dir, work), site / "zh")
        write_marker(site, TOOL)
        check_output_dir(out, "--out", overwrite=overwrite)  # still ours?
        previous = work / "previous"  # the old site, moved aside and deleted with `work` below
        if out.exists():
            os.replace(out, previous)
        try:
            os.replace(site, out)
        except BaseException:
            if previous.exists():
                os.replace(previous, out)  # put the old site back
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_parser():
    from glmcourse.cli import INPUT_DIR, OUTPUT_DIR, CourseParser

    parser = CourseParser(prog=TOOL, description="Build the static HTML site of the executed "
                          "lessons (English and 中文) from the committed notebooks; nothing is run.")
    parser.add_argument("--out", type=Path, default=Path("runs/site"), kind=OUTPUT_DIR,
                        overwrite_flag="--overwrite_output_dir",
                        help="the site folder, replaced as a whole (default: runs/site)")
    parser.add_argument("--notebooks", type=Path, default=REPO_ROOT / "notebooks", kind=INPUT_DIR,
                        help="the English lessons NN_*.ipynb, the Chinese ones in its zh/ (default: notebooks)")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="replace --out even if it holds files this command did not write")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the hub; make sure nothing tries
    try:
        check_notebooks(args.notebooks)
        check_output_dir(args.out, "--out", inputs=[("--notebooks", args.notebooks)],
                         overwrite=args.overwrite_output_dir)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def body():  # run_cli: a failed build -> one error line and exit 1; Ctrl-C or kill -> 130, OUT unchanged
        started = time.perf_counter()
        build_site(args.out, args.notebooks, args.overwrite_output_dir)
        print(f"site: {args.out / 'index.html'} and {args.out / 'zh' / 'index.html'} "
              f"({len(lessons(args.notebooks))} lessons each, {time.perf_counter() - started:.1f} s)")

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
