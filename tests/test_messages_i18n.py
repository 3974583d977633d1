"""One mechanism for the package's messages glmcourse.i18n._ and i18n/zh_CN/messages.po.

(1) the language: GLMCOURSE_LANG first, then a zh locale (LC_ALL, LC_MESSAGES, LANG); read at every call;
(2) messages.po is what `update-catalogs` writes from the _(...) calls, every entry translated, fields kept;
(3) the converted messages print Chinese in zh mode and today's English otherwise (commands' shared error
    exit, doctor, the terminal and web demos, lesson findings, chat warnings and errors);
(4) the Chinese edition keeps a Chinese run's outputs across `translate`, and `nbtools run --edition zh`
    executes it in Chinese.
"""
from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

import nbformat
import polib
import pytest

from glmcourse import i18n
from glmcourse.tools import catalog_checks, catalogs, editions, nbtools, notebook_io, template_catalogs
from glmcourse.i18n import _

REPO = Path(__file__).resolve().parents[1]
CATALOG = template_catalogs.MESSAGE_CATALOG


@functools.cache
def templates():
    """The package's templates, read once and only where a test of this file runs (not at collection)."""
    return template_catalogs.message_templates()


@pytest.fixture
def zh(monkeypatch):
    monkeypatch.setenv("GLMCOURSE_LANG", "zh")


@pytest.fixture
def en(monkeypatch):
    monkeypatch.setenv("GLMCOURSE_LANG", "en")


# ---------------------------------------------------------------------------- (1) the language
@pytest.mark.parametrize("env,want", [
    ({"GLMCOURSE_LANG": "zh"}, "zh"), ({"GLMCOURSE_LANG": "zh_CN.UTF-8"}, "zh"), ({"GLMCOURSE_LANG": "en"}, "en"),
    ({"GLMCOURSE_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),  # the course's own setting wins
    ({"LANG": "zh_CN.UTF-8"}, "zh"), ({"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "C.UTF-8"}, "zh"),
    ({"LC_ALL": "C.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"), ({"LANG": "C.UTF-8"}, "en"), ({}, "en"),
])
def test_the_language_comes_from_the_course_setting_then_the_locale(env, want, monkeypatch):
    for key in ("GLMCOURSE_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert i18n.language() == want
    assert _("error: {message}", message="x") == ("错误：x" if want == "zh" else "error: x")


# ---------------------------------------------------------------------------- (2) the catalog
def test_templates_are_collected_from_the_package():
    files = {Path(t.path).name for t in templates()}
    assert {"cli.py", "doctor.py", "cli_demo.py", "web_demo.py", "lesson_runs.py", "chat.py", "masks.py"} <= files
    assert len({t.text for t in templates()}) >= 50


def test_catalog_is_what_update_catalogs_writes():
    assert not template_catalogs.build_message_catalog().changed, (
        f"{CATALOG.relative_to(REPO)} is behind the _(...) calls of glmcourse/. Fix: {catalogs.FIX_UPDATE}, "
        "then fill in the new msgstr")


def test_every_template_is_translated_with_the_same_fields():
    table = {e.msgid: e for e in polib.pofile(str(CATALOG)) if not e.obsolete}
    problems = []
    for t in templates():
        entry = table.get(t.text)
        if entry is None or not entry.msgstr or "fuzzy" in entry.flags:
            problems.append(f"{t.reference} (line {t.line}): untranslated or fuzzy: {t.text!r}")
        elif template_catalogs.template_fields(entry.msgstr) != template_catalogs.template_fields(t.text):
            problems.append(f"{t.reference}: fields differ: {t.text!r}")
    problems += [f"{e.msgid!r}: {p}" for e in polib.pofile(str(CATALOG)) for p in catalog_checks.entry_problems(e)]
    assert not problems, "\n".join(problems) + f"\nFix the msgstr in {CATALOG.relative_to(REPO)}"


def test_a_field_may_have_any_name(zh):
    """A message's field may be called path, catalog or template: they do not collide with the lookup's own."""
    from glmcourse.exercises import say

    for name in ("path", "catalog", "template", "values"):
        assert _("error: {%s}" % name, **{name: "x"}) in ("错误：x", "error: x")
        assert say("[PASS] {name}", name=name)
    assert _("error: {message}", message="x", path="p", template="t") == "错误：x"


def test_an_fstring_message_is_refused(tmp_path):
    (tmp_path / "bad.py").write_text('from glmcourse.i18n import _\nx = 1\nprint(_(f"got {x}"))\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.py:3: _\(\) needs a string literal"):
        template_catalogs.message_templates(tmp_path)


def test_a_notebook_cell_says_gettext_and_is_collected(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('from glmcourse.i18n import gettext\n'
                                          'print(gettext("{n} steps in {s:.0f} s", n=6, s=1.2))\n_ = 3', id="c1")]
    path = tmp_path / "98_x.ipynb"
    nbformat.write(nb, path)
    found = template_catalogs.message_templates(tmp_path / "no_package", [path])
    assert [(t.text, t.function) for t in found] == [("{n} steps in {s:.0f} s", "c1")]
    assert i18n.gettext is _


def test_update_catalogs_refreshes_the_message_catalog(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(notebook_io, "lesson_notebooks", lambda folder=None: [])
    for name in ("EXERCISE_CATALOG", "FIGURE_CATALOG", "MESSAGE_CATALOG"):  # never the repo's catalogs
        monkeypatch.setattr(template_catalogs, name, tmp_path / f"{name}.po")
    assert nbtools.main(["update-catalogs"]) == 0
    assert "MESSAGE_CATALOG.po: updated" in capsys.readouterr().out
    package_only = template_catalogs.message_templates(notebooks=[])  # as lesson_notebooks() is patched to none
    assert {e.msgid for e in polib.pofile(str(tmp_path / "MESSAGE_CATALOG.po"))} == {t.text for t in package_only}


def test_no_function_that_calls_underscore_rebinds_it():
    """``_, x = ...`` or ``for _ in`` in a function that also calls ``_()`` would make ``_`` local there."""
    bad = []
    for path in (REPO / "glmcourse").rglob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nodes = list(ast.walk(fn))
                calls = any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "_" for n in nodes)
                binds = any(isinstance(n, ast.Name) and n.id == "_" and isinstance(n.ctx, ast.Store) for n in nodes)
                if calls and binds:
                    bad.append(f"{path.relative_to(REPO)}:{fn.lineno} {fn.name}")
    assert not bad, "rename the throw-away `_` in: " + ", ".join(bad)


# ---------------------------------------------------------------------------- (3) the messages
def test_the_commands_error_exit_speaks_the_language(monkeypatch, capsys):
    from glmcourse.cli import UsageError, run_cli

    def body():
        raise UsageError("--x 3: out of range")

    monkeypatch.setenv("GLMCOURSE_LANG", "en")
    assert run_cli(body) == 1 and capsys.readouterr().err == "error: --x 3: out of range\n"
    monkeypatch.setenv("GLMCOURSE_LANG", "zh")
    assert run_cli(body) == 1 and capsys.readouterr().err == "错误：--x 3: out of range\n"


def _parser():
    import argparse

    from glmcourse.cli import CourseParser, int_arg

    parser = CourseParser(prog="demo", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n", type=int_arg("--n", 1), default=2, help="how many")
    parser.add_argument("--mode", choices=["a", "b"], default="a", help="which")
    return parser


@pytest.mark.parametrize("lang, words", [
    ("en", ["usage: demo", "options:", "show this help message and exit", "(default: 2)"]),
    ("zh", ["用法：demo", "选项", "显示这条帮助信息并退出", "（默认值：2）"])])
def test_argparse_own_help_words_speak_the_language(lang, words, monkeypatch):
    monkeypatch.setenv("GLMCOURSE_LANG", lang)
    text = _parser().format_help()
    assert all(word in text for word in words), text


@pytest.mark.parametrize("argv, english, chinese", [
    (["--bogus"], "error: unrecognized arguments: --bogus (see demo --help)", "错误：无法识别的参数：--bogus（参见 demo --help）"),
    (["--mode", "c"], "error: argument --mode: invalid choice: 'c' (choose from 'a', 'b')",
     "错误：参数 --mode：无效的选项值：'c'（可选：'a', 'b'）"),
    (["--n"], "error: argument --n: expected one argument (see demo --help)",
     "错误：参数 --n：需要一个参数值（参见 demo --help）")])
def test_argparse_own_errors_speak_the_language(argv, english, chinese, monkeypatch, capsys):
    for lang, want in (("en", english), ("zh", chinese)):
        monkeypatch.setenv("GLMCOURSE_LANG", lang)
        with pytest.raises(SystemExit):
            _parser().parse_args(argv)
        assert capsys.readouterr().err.strip() == want


def test_doctor_lines_in_chinese(zh, tmp_path):
    from glmcourse import doctor

    check = doctor.check_disk(str(tmp_path))
    assert "GiB" in check.detail and "课程文件夹" in check.detail and "free in" not in check.detail
    failed = doctor.Check("RAM", False, "1.0", "python -m pip install x")
    assert failed.lines() == ["[FAIL] RAM: 1.0", "       修复：python -m pip install x"]


def test_doctor_lines_in_english_are_todays(en, tmp_path):
    from glmcourse import doctor

    assert doctor.check_disk(str(tmp_path)).detail.endswith("GiB free in the course folder (need >= 2 GiB)")


def test_the_terminal_demo_greets_in_the_language(monkeypatch):
    from glmcourse import cli_demo

    monkeypatch.setenv("GLMCOURSE_LANG", "en")
    assert cli_demo.welcome().startswith("Welcome to the ChatGLM course model") and "'stop'" in cli_demo.welcome()
    monkeypatch.setenv("GLMCOURSE_LANG", "zh")
    assert cli_demo.welcome().startswith("欢迎使用 ChatGLM 课程模型") and "'clear'" in cli_demo.welcome()
    assert all(e in cli_demo.welcome() for e in cli_demo.EXAMPLES[:4])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_an_unanswered_web_turn_is_recognised_in_both_languages(lang, monkeypatch):
    from glmcourse import web_demo

    monkeypatch.setenv("GLMCOURSE_LANG", lang)
    notes = [_("*(not answered: {reason})*", reason="x"),
             _("*(not answered: {reason}. The conversation so far is kept.)*", reason="x")]
    assert all(n.startswith(web_demo.NOT_ANSWERED) for n in notes), notes
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": notes[1]},
                {"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"}]
    assert web_demo.history_from(messages, None) == [("你好", "你好！")]


def test_chat_warnings_and_history_errors_in_chinese(zh):
    from glmcourse.chat import validate_history

    with pytest.raises(TypeError, match=r"^历史对话必须是 \(query, response\) 对组成的列表.*实际得到 str。$"):
        validate_history("你好")


def test_the_missing_sop_error_in_chinese(zh):
    from glmcourse.masks import chatglm_position_ids

    with pytest.raises(ValueError, match=r"chatglm_position_ids：input_ids 中没有 <sop> token（id 5）.*请用分词器"):
        chatglm_position_ids([1, 2, 3], gmask_id=4, sop_id=5)


def test_lesson_findings_in_chinese(zh, tmp_path, capsys, monkeypatch):
    from glmcourse import lesson_runs

    trained = []
    monkeypatch.setattr("glmcourse.finetune.finetune", lambda *a, **k: trained.append(a))
    monkeypatch.setattr(lesson_runs, "lesson_dataset", lambda: tmp_path / "rows")
    lesson_runs.ensure_adapter(tmp_path / "05_lora_fast")
    out = capsys.readouterr().out
    assert out.startswith("runs/05_lora_fast 中没有可用的适配器") and out.rstrip().endswith("现在训练一个") and trained


def _data_error(path) -> str:
    from glmcourse.data import DataError, load_alpaca

    with pytest.raises(DataError) as err:
        load_alpaca(path)
    return str(err.value)


def test_lesson_04s_data_errors_speak_the_language(tmp_path, monkeypatch):
    """A bad record: today's English under GLMCOURSE_LANG=en, every sentence and fragment Chinese under zh."""
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "a", "output": "b"}, {"instruction": "c", "output": 5}]', encoding="utf-8")
    monkeypatch.setenv("GLMCOURSE_LANG", "en")
    assert _data_error(bad) == (
        f"{bad}: 1 of 2 records are invalid (records are numbered from 0). Each record needs 'instruction' and "
        "'output' strings; 'input' may be a string, empty or null.\n"
        "  record 1: 'output' is not a string (got a JSON number: 5)\n"
        "  all bad records by problem: 'output' is not a string: 1")
    monkeypatch.setenv("GLMCOURSE_LANG", "zh")
    assert _data_error(bad) == (
        f"{bad}：2 条记录中有 1 条无效（记录从 0 开始编号）。每条记录都需要字符串 'instruction' 和 'output'；"
        "'input' 可以是字符串、空字符串或 null。\n"
        "  记录 1：'output' 不是字符串（实际是一个 JSON 数字：5）\n"
        "  按问题列出的全部无效记录：'output' 不是字符串：1")
    bad.write_text("{\"instruction\": 'a'}", encoding="utf-8")
    assert _data_error(bad).startswith(f"{bad}：第 1 行第 17 列不是有效的 JSON：")
    monkeypatch.setenv("GLMCOURSE_LANG", "en")
    assert _data_error(bad).startswith(f"{bad}: not valid JSON at line 1, column 17: Expecting value. ")


def test_training_lines_speak_the_language(tmp_path, monkeypatch, capsys):
    """The resume line (training.run) and the converter's summary line, in both languages."""
    import json
    from types import SimpleNamespace

    from glmcourse import ptuning_train, training

    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 4}), encoding="utf-8")
    trainer = SimpleNamespace(train=lambda resume_from_checkpoint: "trained")
    source = tmp_path / "alpaca.json"
    source.write_text('[{"instruction": "a", "input": "", "output": "b"}]', encoding="utf-8")
    argv = ["convert", "--data_path", str(source), "--save_path", str(tmp_path / "rows.json")]
    for lang, want in [("en", f"resuming from checkpoint-4 (step 4)\n1 records -> {tmp_path / 'rows.json'} "
                              "(prompt/response JSON lines, style instruction)\n"),
                       ("zh", f"从 checkpoint-4 恢复（第 4 步）\n1 条记录 -> {tmp_path / 'rows.json'}"
                              "（JSON lines，字段为提示词 prompt / 回答 response，风格 instruction）\n")]:
        monkeypatch.setenv("GLMCOURSE_LANG", lang)
        assert training.run(trainer, str(checkpoint), SimpleNamespace(diagnosis=None))[0] == "trained"
        assert ptuning_train.main(argv) == 0
        assert capsys.readouterr().out == want
    assert training.resume_state_problem(checkpoint, "optimizer.pt") == "缺少 optimizer.pt"


# ---------------------------------------------------------------------------- (4) the Chinese run
def _lesson(tmp_path, code: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
                   "language_info": {"name": "python"}}
    nb.cells = [nbformat.v4.new_markdown_cell("# A lesson", id="intro"),
                nbformat.v4.new_code_cell(code, id="work", execution_count=1)]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="[PASS] x\n")]
    path = tmp_path / "99_lesson.ipynb"
    nbformat.write(nb, path)
    return path


def test_translate_keeps_the_chinese_runs_outputs_of_unchanged_cells(tmp_path):
    english = _lesson(tmp_path, "print('hi')")
    po = tmp_path / "none.po"
    edition = tmp_path / "zh" / english.name
    edition.parent.mkdir()
    editions.write_translation(english, po, edition)
    nb = nbformat.read(edition, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="[通过] x\n")]  # a Chinese run's
    nbformat.write(nb, edition)
    assert editions.staleness(english, po, edition) == []  # the Chinese output is no staleness
    editions.write_translation(english, po, edition)
    assert nbformat.read(edition, as_version=4).cells[2].outputs[0]["text"] == "[通过] x\n"

    code = nbformat.read(english, as_version=4)
    code.cells[1].source = "print('hello')"  # the code changed: the English run's output until the next zh run
    nbformat.write(code, english)
    assert editions.staleness(english, po, edition)
    editions.write_translation(english, po, edition)
    assert nbformat.read(edition, as_version=4).cells[2].outputs[0]["text"] == "[PASS] x\n"


def test_run_edition_zh_executes_the_chinese_notebook_in_chinese(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLMCOURSE_LANG", "en")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    english = _lesson(tmp_path, "from glmcourse.exercises import say\nprint(say('[PASS] {name}', name='x'))")
    assert nbtools.main(["run", "--edition", "zh", str(english)]) == 0
    edition = nbformat.read(tmp_path / "zh" / english.name, as_version=4)
    assert edition.cells[1].id == editions.SETUP_CELL_ID
    assert edition.cells[2].outputs[0]["text"] == "[通过] x\n"
    assert "executed in Chinese" in capsys.readouterr().out
    assert nbformat.read(english, as_version=4).cells[1].outputs[0]["text"] == "[PASS] x\n"  # English untouched
    assert os.environ["GLMCOURSE_LANG"] == "en"  # this process's language is left as it was
