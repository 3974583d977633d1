"""README.zh-CN.md, the Chinese README, against README.md and the Makefile.

  (1) every command line of README.md's Quick start code blocks is in the Chinese Quick start's code
      blocks, byte for byte (a trailing `# comment` is prose and may be translated);
  (2) the lessons table lists the same notebooks in the same order, with the same module, time and
      peak-RAM cells, and its "what you learn" column is translated;
  (3) the "What bad input gets" table has the same rows, each keeping the English row's code spans;
  (4) README.md links to README.zh-CN.md in its first lines, and README.zh-CN.md links back;
  (5) every `make` target the Chinese README names is a target of the Makefile.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_ZH = REPO / "README.zh-CN.md"
MAKEFILE = REPO / "Makefile"

ZH_LINK = "[简体中文 README](README.zh-CN.md)"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LESSON_CELL = re.compile(r"^`\d\d_\w+`")
CJK = re.compile(r"[\u4e00-\u9fff]")
MAKE_TARGET = re.compile(r"(?:^|[\s;&|(])make\s+([A-Za-z][\w-]*)")
# A rule line: `name [name ...]:` but not a `NAME := value` assignment.
MAKE_RULE = re.compile(r"^([A-Za-z][\w.-]*(?:[ \t]+[A-Za-z][\w.-]*)*)[ \t]*:(?!=)", re.M)


def read(path):
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    return path.read_text(encoding="utf-8")


def section(text, heading):
    """The text under `heading` (a whole line) up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.split("\n")
    assert heading in lines, f"no {heading!r} heading"
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines))
                if re.match(rf"#{{1,{level}}} ", lines[i]) and not in_fence(lines, i)), len(lines))
    return "\n".join(lines[start:end])


def in_fence(lines, index):
    return sum(line.startswith("```") for line in lines[:index]) % 2 == 1


def command_of(line):
    """A code-block line without its trailing `# comment` (a full-line comment gives '')."""
    return re.split(r"(?:^|\s)#(?:\s|$)", line, maxsplit=1)[0].rstrip()


def fenced_commands(text):
    return [command_of(line) for block in FENCE.findall(text) for line in block.split("\n")
            if command_of(line)]


def table_rows(text, first_cell):
    """The cells of every table row whose first cell matches `first_cell`."""
    rows = []
    for line in text.split("\n"):
        if line.startswith("|") and line.rstrip().endswith("|"):
            cells = [c.strip() for c in line.strip()[1:-1].split("|")]
            if first_cell.search(cells[0]):
                rows.append(cells)
    return rows


def lesson_rows(text):
    rows = table_rows(text, LESSON_CELL)
    assert rows, "no lessons table (rows starting with a `NN_name` notebook cell)"
    for row in rows:
        assert len(row) == 5, f"lessons row {row[0]} has {len(row)} cells, not 5: {row}"
    return rows


def bad_input_rows(text):
    body = "\n".join(line for line in text.split("\n")
                     if line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line))
    rows = [[c.strip() for c in line.strip()[1:-1].split(" | ")] for line in body.split("\n") if line]
    assert rows, "no table"
    return rows[1:]  # the header row is not a case


def makefile_targets():
    return {name for names in MAKE_RULE.findall(read(MAKEFILE)) for name in names.split()}


def zh_make_targets():
    """Targets of `make X` in the Chinese README's code spans and code blocks."""
    if not README_ZH.is_file():
        return []
    text = README_ZH.read_text(encoding="utf-8")
    code = [line for block in FENCE.findall(text) for line in block.split("\n")]
    code += CODE_SPAN.findall(FENCE.sub("", text))
    return sorted({target for piece in code for target in MAKE_TARGET.findall(piece)})


# The Chinese quick start opens the Chinese edition: `make lab-zh` where the English runs `make lab`.
ZH_EDITION_OF = {"make lab": "make lab-zh"}


def test_quick_start_commands_are_byte_identical():
    english = fenced_commands(section(read(README), "## Quick start"))
    assert english, "README.md's Quick start has no command in a code block"
    chinese = fenced_commands(section(read(README_ZH), "## 快速开始"))
    missing = [ZH_EDITION_OF.get(command, command) for command in english
               if ZH_EDITION_OF.get(command, command) not in chinese]
    assert not missing, f"README.zh-CN.md's 快速开始 code blocks lack these commands: {missing}"
    assert "make lab" not in chinese, "the Chinese quick start opens the English course (`make lab`): use `make lab-zh`"


def test_chinese_readme_names_the_tags_a_chinese_run_prints():
    from glmcourse.tools import catalog_checks

    text = read(README_ZH)
    tags = catalog_checks.verdict_tags()
    assert tags, "exercises.po has no verdict tags"
    missing = [zh for zh in tags.values() if f"`{zh}`" not in text]
    assert not missing, f"README.zh-CN.md does not name {missing}, the tags `GLMCOURSE_LANG=zh` checkers print"
    assert "lab-zh` 这个目标" not in text, "README.zh-CN.md still doubts that `make lab-zh` exists"


def test_lessons_table_matches_readme():
    english, chinese = lesson_rows(read(README)), lesson_rows(read(README_ZH))
    assert [r[0] for r in chinese] == [r[0] for r in english], (
        "README.zh-CN.md's lessons table must list README.md's notebooks in the same order:\n"
        f"  README.md:       {[r[0] for r in english]}\n  README.zh-CN.md: {[r[0] for r in chinese]}")
    for en, zh in zip(english, chinese):
        for index, name in ((2, "module"), (3, "time"), (4, "peak RAM")):
            assert zh[index] == en[index], f"{en[0]}: the {name} cell is {zh[index]!r}, README.md says {en[index]!r}"


def test_lessons_table_is_translated():
    for en, zh in zip(lesson_rows(read(README)), lesson_rows(read(README_ZH))):
        assert CJK.search(zh[1]) and zh[1] != en[1], f"{en[0]}: 'what you learn' is not translated: {zh[1]!r}"
        lost = [span for span in CODE_SPAN.findall(en[1]) if f"`{span}`" not in zh[1]]
        assert not lost, f"{en[0]}: the translation lost the code spans {lost}"


def test_bad_input_table_has_the_same_rows():
    english = bad_input_rows(section(read(README), "### What bad input gets"))
    chinese = bad_input_rows(section(read(README_ZH), "### 错误输入会得到什么"))
    assert len(chinese) == len(english), f"{len(chinese)} rows in README.zh-CN.md, {len(english)} in README.md"
    for number, (en, zh) in enumerate(zip(english, chinese), 1):
        for en_cell, zh_cell in zip(en, zh):
            lost = [span for span in CODE_SPAN.findall(en_cell) if f"`{span}`" not in zh_cell]
            assert not lost, f"row {number} ({en[0]}): the Chinese cell lost the code spans {lost}"


def test_readme_links_to_the_chinese_readme_at_the_top():
    first_lines = read(README).split("\n")[:5]
    assert first_lines[0].startswith("# "), "README.md must start with its title line"
    assert ZH_LINK in first_lines, f"README.md's first lines must hold the line {ZH_LINK!r}"


def test_chinese_readme_links_back():
    first_lines = read(README_ZH).split("\n")[:5]
    assert any("](README.md)" in line for line in first_lines), "README.zh-CN.md's first lines must link to README.md"


def test_chinese_readme_names_the_main_targets():
    named = zh_make_targets()
    for target in ("lab", "test", "doctor", "lab-zh"):
        assert target in named, f"README.zh-CN.md never names `make {target}` (found {named})"


@pytest.mark.parametrize("target", zh_make_targets())
def test_make_target_exists(target):
    targets = makefile_targets()
    if target == "lab-zh" and target not in targets:
        pytest.skip("`lab-zh:` is not in the Makefile yet (another change adds it); "
                    "README.zh-CN.md already documents it")
    assert target in targets, f"README.zh-CN.md names `make {target}`, which the Makefile does not define"
