"""The Chinese edition, executed in Chinese; and how much English its outputs still show.

``python -m glmcourse.tools.nbtools run --edition zh notebooks/NN_x.ipynb ...`` regenerates each named lesson's
``notebooks/zh/`` edition from the English notebook and the catalogs (as ``translate`` does), then
executes it in place with ``GLMCOURSE_LANG=zh``: the edition's first cell (``zh-setup``) sets that too, so
Run All in ``make lab-zh`` and nbval print the same Chinese. ``translate`` keeps those outputs for every
cell whose code did not change (``tools.editions.keep_edition_outputs``).

``python -m glmcourse.tools.zh_edition count [NOTEBOOKS...]`` prints, per Chinese notebook, how many output
lines hold an English sentence (``english_sentence``); tests/test_zh_outputs.py holds each notebook to a
ceiling in tests/zh_english_lines.json.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# A word: ASCII letters, maybe joined by an apostrophe or a hyphen ("don't", "held-out"). A token with a
# digit, "_", "/", "." inside, "=" or brackets is code, an identifier, a path or a number, and ends a run.
WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")
EDGE = "\"'`([{<«“‘,.;:!?)]}>»”’…"  # punctuation around a word that does not make it code
QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`")  # quoted strings are data or code: not counted
SENTENCE_WORDS = 4  # a run of this many English words is a sentence
# A line a notebook marks as the model's reply (the model writes what it writes): not counted.
REPLY_MARKERS = ("ChatGLM：", "ChatGLM:", "答：", "问：", "用户：")
REPLY_ARROW = " -> "  # "question -> the model's reply" in a table of replies: the reply is not counted
TOKEN_ROW = "|"  # a row of a token table (one token per column) is data
RECORD_INDEX = re.compile(r"^\[\d+\]\s*")  # "[3] 问：..." numbers a data record: the marker after it counts
NUMBER_WORDS = {"nan", "inf"}  # printed floats, not English


def english_sentence(line: str, words: int = SENTENCE_WORDS) -> str | None:
    """The first run of ``words`` or more English words in ``line`` outside quotes, or None.

    >>> english_sentence("[TODO] prefix_mask: not attempted yet. Fill in the function")
    'not attempted yet. Fill in the function'
    >>> english_sentence("[待完成] prefix_mask：尚未作答。 model.layers.0.attention q_proj 4096 x 4096") is None
    True
    """
    run: list[str] = []
    for token in QUOTED.sub(" ", line).split() + [""]:  # the empty token ends the last run
        bare = token.strip(EDGE)
        if (WORD.fullmatch(bare) and bare.lower() not in NUMBER_WORDS
                and not (token[-1:] in "([{=" or token[:1] in "=)]}")):
            run.append(token)  # commas and full stops keep the run going: a sentence often spans them
            continue
        if len(run) >= words:
            return " ".join(run)
        run = []
    return None


def is_source_listing(text: str) -> bool:
    """True for an output that is a Python function or class, as ``inspect.getsource`` prints one."""
    import ast
    import textwrap

    source = textwrap.dedent(text)
    if not source.lstrip().startswith(("def ", "class ", "@", "async def ")):
        return False
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


def output_lines(nb) -> list[tuple[int, str]]:
    """``(cell index, line)`` of every text a learner reads in the outputs: streams, text/plain results and
    errors (name and message; a traceback is code)."""
    lines = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            kind = out.get("output_type")
            if kind == "stream":
                text = out.get("text", "")
            elif kind in ("execute_result", "display_data"):
                text = out.get("data", {}).get("text/plain", "")
                if "image/png" in out.get("data", {}) or "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                    text = ""  # a figure's or a widget's repr is no sentence
            elif kind == "error":
                text = f"{out.get('ename', '')}: {out.get('evalue', '')}"
            else:
                text = ""
            if isinstance(text, list):
                text = "".join(text)
            if is_source_listing(text):
                continue  # printed source code (inspect.getsource) is code, docstring included
            lines.extend((index, line) for line in text.splitlines())
    return lines


def english_lines(nb) -> list[tuple[int, str]]:
    """The output lines of ``nb`` with an English sentence (model replies left out)."""
    found = []
    for i, line in output_lines(nb):
        text = line.strip()
        if RECORD_INDEX.sub("", text, count=1).startswith(REPLY_MARKERS) or text.startswith(TOKEN_ROW):
            continue
        if english_sentence(text.split(REPLY_ARROW)[0]):
            found.append((i, line))
    return found


def count(paths) -> dict[str, int]:
    from glmcourse.tools.notebook_io import read_notebook

    return {Path(p).name: len(english_lines(read_notebook(p))) for p in paths}


def zh_notebooks() -> list[Path]:
    from glmcourse.tools import editions
    from glmcourse.tools.catalogs import shown

    return [editions.edition_path(p) for p in editions.lesson_notebooks()]


def run_edition(english_paths, timeout: int, execute) -> int:
    """Regenerate and execute the Chinese edition of each English lesson, in Chinese. Exit status.
    ``execute`` is ``nbtools.execute_notebook`` (passed in: nbtools imports this module)."""
    before = os.environ.get("GLMCOURSE_LANG")
    os.environ["GLMCOURSE_LANG"] = "zh"  # the kernel inherits it (the edition's first cell sets it as well)
    try:
        return _run_each(english_paths, timeout, execute)
    finally:
        if before is None:
            os.environ.pop("GLMCOURSE_LANG", None)
        else:
            os.environ["GLMCOURSE_LANG"] = before


def _run_each(english_paths, timeout: int, execute) -> int:
    from glmcourse.tools import editions
    from glmcourse.tools.catalogs import shown

    failed = 0
    for path in english_paths:
        path = Path(path)
        if path.parent.name == editions.EDITION:  # notebooks/zh/NN_x.ipynb names its English lesson too
            path = path.parent.parent / path.name
        res = editions.write_translation(path)
        edition = editions.edition_path(path)
        if res.missing:
            print(f"[WARN] {shown(edition)}: {len(res.missing)} of {res.units} texts left in English "
                  "(untranslated or fuzzy; `translate --strict` lists them)")
        ran = execute(edition, timeout=timeout)
        if ran["ok"]:
            left = count([edition])[edition.name]
            print(f"[OK] {shown(edition)}: executed in Chinese in {ran['wall_s']:.1f} s; "
                  f"{left} output line(s) with an English sentence")
        else:
            failed += 1
            print(f"[FAIL] {shown(edition)}: left as translate wrote it ({ran['wall_s']:.1f} s)\n"
                  f"{ran['error']}", file=sys.stderr)
    return 1 if failed else 0


def build_parser():
    from glmcourse.cli import INPUT_FILE, CourseParser

    parser = CourseParser(prog="python -m glmcourse.tools.zh_edition",
                          description="count output lines with English sentences in the Chinese notebooks")
    sub = parser.add_subparsers(dest="command", required=True)
    p_count = sub.add_parser("count", help="per notebook: output lines holding an English sentence")
    p_count.add_argument("notebooks", nargs="*", kind=INPUT_FILE, fmt="ipynb",
                         help="default: every notebooks/zh/NN_*.ipynb")
    p_count.add_argument("--show", action="store_true", help="print the lines too")
    return parser


def main(argv=None) -> int:
    from glmcourse.tools.notebook_io import read_notebook

    try:
        args = build_parser().parse_args(argv)  # the guard: every notebook named exists and is a notebook
    except SystemExit as stop:
        return stop.code
    paths = [Path(p) for p in args.notebooks] or zh_notebooks()
    total = 0
    for path in paths:
        found = english_lines(read_notebook(path))
        total += len(found)
        print(f"{path.name:<36} {len(found):>5}")
        if args.show:
            for index, line in found:
                print(f"    cell {index}: {line.strip()[:150]}")
    print(f"{'total':<36} {total:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
