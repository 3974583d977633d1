"""The exercise checkers speak the learner's language: English by default, Chinese with GLMCOURSE_LANG=zh.

(1) English mode prints exactly today's verdicts and hints (the committed notebooks' outputs show them);
(2) zh mode prints [通过] / [再试一次] / [待完成] and the Chinese hint, for a wrong answer in every lesson;
(3) every say() template of glmcourse/exercises/*.py has a non-empty, non-fuzzy translation in
    i18n/zh_CN/exercises.po with the same {fields}, and the catalog is what `update-catalogs` writes;
(4) a template missing from the catalog (or fuzzy, or with a broken field) falls back to English.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

import polib
import pytest

from glmcourse import bilingual, exercises
from glmcourse.tools import catalog_checks, catalogs, nbtools, notebook_io, template_catalogs
from glmcourse.exercises import attempt, chat, data, lora, masks, quant, say, sizes

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "notebooks" / "solutions"
CATALOG = REPO / "i18n" / "zh_CN" / "exercises.po"
TODO_EN = "not attempted yet. Fill in the function above and re-run this cell."
TODO_ZH = "尚未作答。请补全上面的函数，再重新运行这个单元格。"


def solutions(name: str):
    spec = importlib.util.spec_from_file_location(name, SOLUTIONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def named(fn, name):
    fn.__name__ = name
    return fn


def todo(*args):
    raise NotImplementedError


@pytest.fixture
def english(monkeypatch):
    monkeypatch.delenv("GLMCOURSE_LANG", raising=False)


@pytest.fixture
def chinese(monkeypatch):
    monkeypatch.setenv("GLMCOURSE_LANG", "zh")


def run(capsys, checker, fn):
    ok = attempt(checker, fn)
    return ok, capsys.readouterr().out


# (checker, solution module, solution name, wrong answer, English line, Chinese line) per lesson.
# The English lines were recorded from the checkers before they went through say().
S0, S1, S2 = solutions("00_start_here_solutions"), solutions("01_masks_solutions"), solutions("02_quant_solutions")
S3, S4, S5 = solutions("03_chat_solutions"), solutions("04_data_solutions"), solutions("05_lora_solutions")
S6 = solutions("06_inference_solutions")
LESSONS = {
    "sizes": (sizes.check_weight_gib, S0.weight_gib, lambda n, bits: n * bits / 8 / 1e9,
              "[TRY AGAIN] weight_gib: 32-bit weights of ChatGLM-6B: you returned 24.693, expected 22.997 GiB; "
              "that is GB (10**9 bytes); GiB is 2**30 bytes.\n",
              "[再试一次] weight_gib：ChatGLM-6B 的 32 位权重：你返回了 24.693，应为 22.997 GiB；"
              "这是 GB（10**9 字节）；GiB 是 2**30 字节。\n"),
    "masks": (masks.check_prefix_mask, S1.prefix_mask, lambda n, p: S1.prefix_mask(n, 0),
              "[TRY AGAIN] prefix_mask: n=5, prefix_len=2: query 0 (a prefix token) may attend to key 1. Rule: "
              "everyone sees the prefix; after the prefix attention is causal; the prefix never sees what follows.\n",
              "[再试一次] prefix_mask：n=5，prefix_len=2：query 0（前缀中的 token）可以关注 key 1。规则：每个位置都能看到"
              "整个前缀；前缀之后是单向（因果）注意力；前缀永远看不到它后面的内容。\n"),
    "quant": (quant.check_pack_int4, S2.pack_int4, lambda q: (q[..., 1::2] << 4) | (q[..., 0::2] & 0xF),
              "[TRY AGAIN] pack_int4: the nibbles are swapped: the EVEN column goes in the HIGH nibble "
              "(q[:, 0::2] << 4)\n",
              "[再试一次] pack_int4：两个半字节放反了：偶数列放进高半字节（q[:, 0::2] << 4）\n"),
    "chat": (chat.check_process_response, S3.process_response, lambda text: text,
             "[TRY AGAIN] process_response: process_response('  你好 \\n') should be '你好', got '  你好 \\n'. Rules: "
             "strip; then turn ASCII , ! : ; ? into ，！：；？ only when a character in U+4E00..U+9FFF stands directly "
             "before or after it.\n",
             "[再试一次] process_response：process_response('  你好 \\n') 应为 '你好'，实际得到 '  你好 \\n'。规则：先 "
             "strip；然后只有当紧挨着的前一个或后一个字符在 U+4E00..U+9FFF 范围内时，才把 ASCII 的 , ! : ; ? 换成 "
             "，！：；？。\n"),
    "data": (data.check_build_labels, S4.build_labels, lambda ids, seq_len: [-100] * seq_len + list(ids[seq_len:]),
             "[TRY AGAIN] build_labels: the label at the <sop> position must be <sop>'s id (it is supervised), "
             "got -100; mask only the first seq_len - 1 positions\n",
             "[再试一次] build_labels：<sop> 位置上的标签必须是 <sop> 的 id（这个位置也受监督），实际为 -100；"
             "只屏蔽前 seq_len - 1 个位置\n"),
    "lora": (lora.check_lora_param_count, S5.lora_param_count, lambda n_in, n_out, r: r * n_in + n_out * r + n_in * n_out,
             "[TRY AGAIN] lora_param_count: fn(256, 768, r=8) = 204800, expected 8192: A is r x in and B is out x r "
             "(no biases); the frozen W (196,608) does not count\n",
             "[再试一次] lora_param_count：fn(256, 768, r=8) = 204800，应为 8192：A 是 r x in，B 是 out x r（都没有"
             "偏置）；冻结的 W（196,608 个参数）不计入\n"),
    "lora (06)": (lora.check_model_key, S6.model_key, lambda key, name: key,
                  "[TRY AGAIN] model_key: fn('base_model.model.transformer.layers.0.attention.query_key_value.lora_A."
                  "weight', 'default') = 'base_model.model.transformer.layers.0.attention.query_key_value.lora_A."
                  "weight', expected 'base_model.model.transformer.layers.0.attention.query_key_value.lora_A.default."
                  "weight'\n",
                  "[再试一次] model_key：fn('base_model.model.transformer.layers.0.attention.query_key_value.lora_A."
                  "weight', 'default') = 'base_model.model.transformer.layers.0.attention.query_key_value.lora_A."
                  "weight'，应为 'base_model.model.transformer.layers.0.attention.query_key_value.lora_A.default."
                  "weight'\n"),
}


# ---------------------------------------------------------------------------- (1) English, unchanged
@pytest.mark.parametrize("lesson", LESSONS)
def test_english_verdicts_and_hints_are_todays(lesson, english, capsys):
    checker, solution, wrong, hint_en, _ = LESSONS[lesson]
    name = solution.__name__
    assert run(capsys, checker, named(wrong, name)) == (False, hint_en)
    ok, out = run(capsys, checker, solution)
    assert ok and out.endswith(f"[PASS] {name}\n") and out.count("\n") <= 2
    assert run(capsys, checker, named(todo, name)) == (False, f"[TODO] {name}: {TODO_EN}\n")


def test_english_crash_and_success_messages_are_todays(english, capsys):
    nowhere = eval("lambda n, p: {}[n]")  # noqa: S307 - code with no file: the message cannot quote a line
    assert run(capsys, masks.check_prefix_mask, named(nowhere, "prefix_mask")) == (
        False, "[TRY AGAIN] prefix_mask: calling it with (5, 2) raised KeyError: 5\n")
    assert run(capsys, sizes.check_weight_gib, S0.weight_gib) == (
        True, "weight memory: right for 32, 16, 8 and 4 bits\n[PASS] weight_gib\n")
    assert attempt(sizes.check_weight_gib, S0.weight_gib, name="custom")
    assert capsys.readouterr().out.endswith("[PASS] custom\n")


def test_english_for_any_other_language(monkeypatch):
    for value in ["", "en", "de", "EN_us"]:
        monkeypatch.setenv("GLMCOURSE_LANG", value)
        assert say("[PASS] {name}", name="f") == "[PASS] f"


# ---------------------------------------------------------------------------- (2) Chinese
@pytest.mark.parametrize("lesson", LESSONS)
def test_chinese_verdicts_and_hints(lesson, chinese, capsys):
    checker, solution, wrong, _, hint_zh = LESSONS[lesson]
    name = solution.__name__
    assert run(capsys, checker, named(wrong, name)) == (False, hint_zh)
    ok, out = run(capsys, checker, solution)
    assert ok and out.endswith(f"[通过] {name}\n") and "[PASS]" not in out
    assert run(capsys, checker, named(todo, name)) == (False, f"[待完成] {name}：{TODO_ZH}\n")


def test_chinese_success_crash_and_default_label(chinese, capsys):
    assert run(capsys, masks.check_prefix_mask, S1.prefix_mask) == (
        True, "正确：前缀内部是双向的，其余部分是因果的，并且能看到整个前缀。\n[通过] prefix_mask\n")
    nowhere = eval("lambda n, p: {}[n]")  # noqa: S307 - code with no file: the message cannot quote a line
    assert run(capsys, masks.check_prefix_mask, named(nowhere, "prefix_mask")) == (
        False, "[再试一次] prefix_mask：用参数 (5, 2) 调用它时抛出了 KeyError：5\n")

    class Answer:  # no __name__: the label is "your answer"
        def __call__(self, *args):
            raise NotImplementedError

    assert run(capsys, sizes.check_weight_gib, Answer()) == (False, f"[待完成] 你的答案：{TODO_ZH}\n")


def test_language_is_read_at_call_time(monkeypatch, capsys):
    monkeypatch.delenv("GLMCOURSE_LANG", raising=False)
    assert say("[PASS] {name}", name="f") == "[PASS] f"
    monkeypatch.setenv("GLMCOURSE_LANG", "zh")  # what a Chinese notebook's first cell does, after the import
    assert say("[PASS] {name}", name="f") == "[通过] f"
    monkeypatch.setenv("GLMCOURSE_LANG", "zh_CN")
    assert say("[PASS] {name}", name="f") == "[通过] f"


# ---------------------------------------------------------------------------- (3) the catalog
@functools.cache
def templates():
    """The package's templates, read once and only where a test of this file runs (not at collection)."""
    return template_catalogs.exercise_templates()


def test_templates_are_collected_from_every_lesson():
    files = {Path(t.path).name for t in templates()}
    assert {"__init__.py", "sizes.py", "masks.py", "quant.py", "chat.py", "data.py", "lora.py"} <= files
    assert len({t.text for t in templates()}) >= 100
    assert "[TRY AGAIN] {name}: {hint}" in {t.text for t in templates()}


def test_every_template_is_translated_with_the_same_fields():
    table = {e.msgid: e for e in polib.pofile(str(CATALOG)) if not e.obsolete}
    problems = []
    for t in templates():
        entry = table.get(t.text)
        if entry is None or not entry.msgstr:
            problems.append(f"{t.reference} (line {t.line}): untranslated: {t.text!r}")
        elif "fuzzy" in entry.flags:
            problems.append(f"{t.reference}: fuzzy: {t.text!r}")
        elif template_catalogs.template_fields(entry.msgstr) != template_catalogs.template_fields(t.text):
            problems.append(f"{t.reference}: fields {template_catalogs.template_fields(entry.msgstr)} != "
                            f"{template_catalogs.template_fields(t.text)}: {t.text!r}")
        elif not any(ref.startswith(f"{t.path}:{t.function}") for ref, _ in entry.occurrences):
            problems.append(f"{t.reference}: the entry does not name its checker: {t.text!r}")
    assert not problems, ("\n".join(problems) + f"\nFix: {catalogs.FIX_UPDATE}, then fill in msgstr "
                          f"(and clear #, fuzzy) in {CATALOG.relative_to(REPO)}")


def test_catalog_is_what_update_catalogs_writes():
    assert not template_catalogs.build_exercise_catalog(CATALOG).changed, (
        f"{CATALOG.relative_to(REPO)} is behind the say() templates of glmcourse/exercises/. "
        f"Fix: {catalogs.FIX_UPDATE}")


def test_chinese_prose_keeps_numbers_code_and_tokens():
    bad = [f"{e.msgid!r}: {p}" for e in polib.pofile(str(CATALOG)) for p in catalog_checks.entry_problems(e)]
    assert not bad, "\n".join(bad)


def test_every_translation_formats():
    values = {name: 1 for t in templates() for name, _, _ in template_catalogs.template_fields(t.text)}
    for e in polib.pofile(str(CATALOG)):
        if e.msgstr and not e.obsolete:
            e.msgstr.format(**values)  # raises on a stray brace


# Checkers not yet converted to say(): remove a name here once its messages go through say().
NOT_CONVERTED: set[str] = set()
CHECKER_FILES = sorted(p for p in (REPO / "glmcourse" / "exercises").glob("*.py") if p.name != "__init__.py")


def _bare_messages(path: Path) -> list[str]:
    """Messages a checker raises, asserts or prints without say()."""
    def is_say(node):
        return isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "say"

    def plain(node):  # a message that is neither say(...) nor a name holding say()'s result
        if isinstance(node, ast.IfExp):
            return plain(node.body) or plain(node.orelse)
        return node is not None and not is_say(node) and not isinstance(node, ast.Name)

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        msg = None
        if isinstance(node, ast.Assert):
            msg = node.msg
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            if getattr(node.exc.func, "id", "") == "AssertionError":
                msg = node.exc.args[0]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print" and node.args:
            msg = node.args[0]
        if plain(msg):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(msg)[:80]}")
    return found


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="not converted to say() yet"))
    if p.name in NOT_CONVERTED else p for p in CHECKER_FILES], ids=lambda p: p.name)
def test_every_checker_message_goes_through_say(path):
    assert not _bare_messages(path), "wrap these in say(...):\n" + "\n".join(_bare_messages(path))


def test_an_fstring_template_is_refused(tmp_path):
    (tmp_path / "checks.py").write_text('from glmcourse.exercises import say\n\n\ndef check_x(fn):\n'
                                        '    x = 1\n    print(say(f"got {x}"))\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"checks.py:6: say\(\) needs a string literal"):
        template_catalogs.exercise_templates(tmp_path)


def test_update_keeps_marks_fuzzy_and_obsoletes(tmp_path):
    src, po_path = tmp_path / "checks.py", tmp_path / "exercises.po"
    src.write_text('def check_a(fn):\n    say("expected {want}, got {got}", want=1, got=2)\n'
                   '    say("try again")\n', encoding="utf-8")
    res = template_catalogs.update_exercise_catalog(po_path, tmp_path)
    assert (res.new, res.changed) == (2, True)
    po = catalogs.load_catalog(po_path)
    entry = po.find("expected {want}, got {got}")
    assert entry.occurrences == [(f"{catalogs.shown(src)}:check_a", "")]
    assert "python-brace-format" in entry.flags and "python-brace-format" not in po.find("try again").flags
    entry.msgstr, po.find("try again").msgstr = "应为 {want}，实际得到 {got}", "再试一次"
    catalogs.atomic_write(po_path, catalogs.po_text(po))
    assert not template_catalogs.update_exercise_catalog(po_path, tmp_path).changed  # translations kept as they are

    src.write_text('def check_a(fn):\n    say("expected {want}, but got {got}", want=1, got=2)\n', encoding="utf-8")
    res = template_catalogs.update_exercise_catalog(po_path, tmp_path)
    assert (res.new, res.fuzzy, res.obsolete) == (0, 1, 1)
    po = polib.pofile(str(po_path))
    changed = po.find("expected {want}, but got {got}")
    assert "fuzzy" in changed.flags and changed.previous_msgid == "expected {want}, got {got}"
    assert changed.msgstr == "应为 {want}，实际得到 {got}"
    assert [e.msgid for e in po.obsolete_entries()] == ["try again"]


def test_update_catalogs_command_refreshes_the_exercise_catalog(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(notebook_io, "lesson_notebooks", lambda folder=None: [])
    monkeypatch.setattr(template_catalogs, "EXERCISE_CATALOG", tmp_path / "exercises.po")
    monkeypatch.setattr(template_catalogs, "FIGURE_CATALOG", tmp_path / "figures.po")  # never the repo's catalogs
    monkeypatch.setattr(template_catalogs, "MESSAGE_CATALOG", tmp_path / "messages.po")
    assert nbtools.main(["update-catalogs"]) == 0
    assert f"{len({t.text for t in templates()})} new" in capsys.readouterr().out
    assert {e.msgid for e in polib.pofile(str(tmp_path / "exercises.po"))} == {t.text for t in templates()}


# ---------------------------------------------------------------------------- (4) falling back to English
def test_a_template_missing_from_the_catalog_falls_back_to_english(chinese):
    assert say("no such template: {x!r} and {y:.1f}", x="a", y=2.25) == "no such template: 'a' and 2.2"
    assert say("[PASS] {name}", name="f") == "[通过] f"  # while a known one is translated


def test_fuzzy_broken_and_missing_catalogs_fall_back_to_english(chinese, tmp_path, monkeypatch):
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    po.append(polib.POEntry(msgid="hello {name}", msgstr="你好 {name}"))
    po.append(polib.POEntry(msgid="old {name}", msgstr="旧的 {name}", flags=["fuzzy"]))
    po.append(polib.POEntry(msgid="lost {name}", msgstr="丢了 {nom}"))
    po.append(polib.POEntry(msgid="empty {name}", msgstr=""))
    po.save(str(tmp_path / "exercises.po"))
    monkeypatch.setattr(exercises, "CATALOG", tmp_path / "exercises.po")
    assert say("hello {name}", name="x") == "你好 x"
    assert say("old {name}", name="x") == "old x"
    assert say("lost {name}", name="x") == "lost x"
    assert say("empty {name}", name="x") == "empty x"
    monkeypatch.setattr(exercises, "CATALOG", tmp_path / "nowhere.po")
    assert say("hello {name}", name="x") == "hello x"


def test_the_catalog_is_read_once(chinese, monkeypatch):
    bilingual.translations.cache_clear()
    calls = []
    real = polib.pofile
    monkeypatch.setattr(polib, "pofile", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        say("[PASS] {name}", name="f")
    assert len(calls) == 1


def test_an_answer_of_the_wrong_kind_is_a_hint_not_a_traceback(capsys):
    from glmcourse.exercises import attempt, data as checks, sizes

    def build_labels(input_ids, seq_len):
        return None  # the checker iterates over the result

    def total_params(config):
        return None  # the checker formats the result with {:,}

    assert attempt(checks.check_build_labels, build_labels) is False
    assert attempt(sizes.check_total_params, total_params) is False
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(line.startswith("[TRY AGAIN] ") for line in out), out
    assert "TypeError" in out[0] and "return type" in out[0]


# ------------------------------------------------------------------------------------------ the learner's exception
def every_exercise() -> list:
    """(exercise, its checker) for every exercise cell of every lesson, from the checker lines of the notebooks."""
    import re

    from glmcourse.tools.grade import course_lessons

    modules = [chat, data, lora, masks, quant, sizes, importlib.import_module("glmcourse.exercises.ptuning")]
    found = []
    for lesson in course_lessons():
        for name, line in lesson.checkers.items():
            checker = re.search(r"checks\.(check_\w+)", line).group(1)
            owners = [m for m in modules if hasattr(m, checker)]
            assert len(owners) == 1, (lesson.path.name, checker, owners)
            found.append((f"{lesson.number}:{name}", getattr(owners[0], checker)))
    return found


EXERCISES = every_exercise()
RAISER = "def learners(*args):\n    values = list(args)\n    return {}['no ' + 'such key']\n"


def test_every_lesson_has_exercises_for_the_raising_test():
    assert len(EXERCISES) >= 25 and len({e.split(":")[0] for e, _ in EXERCISES}) == 8


@pytest.mark.parametrize("exercise,checker", EXERCISES, ids=[e for e, _ in EXERCISES])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_learners_exception_is_reported_as_theirs(exercise, checker, lang, tmp_path, monkeypatch, capsys):
    """A raising function planted into every exercise: the hint names its exception, message and line."""
    import re

    monkeypatch.setenv("GLMCOURSE_LANG", lang)
    cell = tmp_path / "cell.py"  # stands for the notebook cell: the traceback's line is read back from it
    cell.write_text(RAISER, encoding="utf-8")
    scope = {}
    exec(compile(RAISER, str(cell), "exec"), scope)  # noqa: S102 - the test's own code
    name = exercise.split(":")[1]
    ok, out = run(capsys, checker, named(scope["learners"], name))
    assert not ok and out.count("\n") == 1, out
    if lang == "en":
        pattern = (rf"\[TRY AGAIN\] {name}: calling it with \(.* raised KeyError: 'no such key' "
                   r"\(line 3 of your cell: return \{\}\['no ' \+ 'such key'\]\)$")
    else:
        pattern = (rf"\[再试一次\] {name}：用参数 \(.* 调用它时，你的代码抛出了 KeyError：'no such key'"
                   r"（你的单元格第 3 行：return \{\}\['no ' \+ 'such key'\]）$")
    assert re.match(pattern, out.strip(), re.S), out
    assert "return type" not in out and "返回类型" not in out


def test_running_out_of_memory_is_not_a_hint(capsys):
    def hoarder(*args):
        raise MemoryError

    with pytest.raises(MemoryError):
        attempt(data.check_format_example, hoarder)
    assert capsys.readouterr().out == ""
