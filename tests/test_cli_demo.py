"""Lesson 03: the terminal chat (glmcourse/cli_demo.py), docs/failure-catalog.md#f21-cli-input.

The loop is tested directly with scripted input, then the real program is driven through a
pseudo-terminal (pexpect) on a tiny random-weight model saved to a temporary folder.
"""
import os
import sys

import pexpect
import pytest

from chat_fakes import ByteTokenizer, ScriptedModel, save_tiny_chat_model
from glmcourse import REPO_ROOT, cli_demo

TOK = ByteTokenizer()


def scripted_input(lines):
    """An input() stand-in: returns the lines, then raises EOFError (Ctrl-D)."""
    lines = list(lines)
    prompts = []

    def read(prompt):
        prompts.append(prompt)
        if not lines:
            raise EOFError
        item = lines.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    read.prompts = prompts
    return read


def test_commands_are_stripped_and_case_insensitive(capsys):
    model = ScriptedModel("好的")
    read = scripted_input(["你好", "   ", " CLEAR ", "Clear", "  StOp  ", "never read"])
    assert cli_demo.run(model, TOK, {}, read=read) == 0
    out = capsys.readouterr().out
    assert len(model.calls) == 1  # only 你好 reached the model
    assert out.count(cli_demo.welcome()) == 3  # at start and after each clear
    assert out.count("\033[2J") == 2
    assert "ChatGLM：好的" in out
    assert len(read.prompts) == 5 and set(read.prompts) == {"\n用户："}


def test_clear_empties_the_history():
    model = ScriptedModel("好")
    cli_demo.run(model, TOK, {}, read=scripted_input(["一", "二", "clear", "三", "stop"]))
    prompts = [bytes(c["input_ids"][0, :-2].tolist()).decode() for c in model.calls]
    assert prompts == ["一", "[Round 0]\n问：一\n答：好\n[Round 1]\n问：二\n答：", "三"]


def test_eof_and_ctrl_c_at_the_prompt_exit_cleanly_or_reprompt():
    model = ScriptedModel("好")
    read = scripted_input([KeyboardInterrupt(), "你好"])  # then EOF
    assert cli_demo.run(model, TOK, {}, read=read) == 0
    assert len(model.calls) == 1


def test_bad_arguments_are_refused(capsys):
    for argv in (["--top_p", "0"], ["--temperature", "-1"], ["--max_length", "0"], ["--top_p", "1.5"],
                 ["--temperature", "nan"], ["--max_length", "1"], ["--max_new_tokens", "0"]):
        with pytest.raises(SystemExit):
            cli_demo.parse_args(argv)
        err = capsys.readouterr().err
        assert argv[0] in err and ("out of range" in err or "finite" in err)
    args = cli_demo.parse_args([])
    assert (args.max_length, args.top_p, args.temperature, args.model) == (2048, 0.7, 0.95, None)
    assert args.max_new_tokens is None and args.trust_remote_code is False


def test_the_welcome_line_lists_example_prompts():
    shown = [e for e in cli_demo.EXAMPLES if e in cli_demo.welcome()]
    assert 3 <= len(shown) <= 4 and "'clear'" in cli_demo.welcome() and "'stop'" in cli_demo.welcome()


def test_pty_too_long_message_keeps_the_conversation(tiny_dir):
    child = spawn(tiny_dir, "--max_length", "64")
    child.expect_exact(PROMPT)
    child.sendline("你好")
    child.expect_exact("ChatGLM：")
    child.expect_exact(PROMPT)
    child.sendline("长" * 1000)  # past 64 tokens; under the terminal's 4 KiB line limit
    child.expect_exact("[not answered: your message is too long")
    child.expect_exact(PROMPT)
    child.sendline("stop")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and "Traceback" not in (child.before or "")


def test_a_missing_model_folder_is_named(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert cli_demo.main(["--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "model.safetensors" in err and "tokenizer" in err


# ------------------------------------------------------------------ through a real pseudo-terminal
PROMPT = "用户："


def spawn(model_dir, *args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", GLMCOURSE_QUIET="1", PYTHONUNBUFFERED="1", TERM="dumb")
    return pexpect.spawn(sys.executable, ["-m", "glmcourse.cli_demo", "--model", model_dir, *args],
                         cwd=str(REPO_ROOT), env=env, encoding="utf-8", timeout=90, dimensions=(40, 200))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny_chat"))


@pytest.fixture(scope="module")
def long_answer_dir(tmp_path_factory):  # every answer >= 400 tokens: time to press Ctrl-C
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny_long"), min_new_tokens=400)


def test_pty_chat_turn_empty_line_clear_and_stop(tiny_dir):
    child = spawn(tiny_dir, "--max_length", "40")
    child.expect_exact(cli_demo.welcome())
    child.expect_exact(PROMPT)
    child.sendline("你好")
    child.expect_exact("ChatGLM：")
    child.expect_exact(PROMPT)  # the answer finished and we are asked again
    assert "\ufffd" not in child.before
    child.sendline("")
    child.expect_exact(PROMPT)
    assert "ChatGLM" not in child.before  # an empty line only re-prompts
    child.sendline("  CLEAR ")
    child.expect_exact("\x1b[2J")
    child.expect_exact(cli_demo.welcome())
    child.expect_exact(PROMPT)
    child.sendline(" stop ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_pty_ctrl_c_stops_only_the_answer_and_eof_exits(long_answer_dir):
    child = spawn(long_answer_dir, "--max_length", "512")
    child.expect_exact(PROMPT)
    child.sendline("你好")
    child.expect_exact("ChatGLM：")
    child.expect(r"\S")  # the answer has started streaming
    child.sendintr()
    child.expect_exact("[answer interrupted")
    child.expect_exact(PROMPT)  # still running, asking for the next message
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def _course_model_ready():
    from pathlib import Path

    import glmcourse

    return (Path(glmcourse.COURSE_MODEL) / "model.safetensors").exists()


@pytest.mark.skipif(not _course_model_ready(), reason="the course model is not built yet")
def test_pty_default_model_answers_two_turns():
    env = dict(os.environ, HF_HUB_OFFLINE="1", GLMCOURSE_QUIET="1", PYTHONUNBUFFERED="1", TERM="dumb")
    child = pexpect.spawn(sys.executable, ["-m", "glmcourse.cli_demo"], cwd=str(REPO_ROOT), env=env,
                          encoding="utf-8", timeout=90, dimensions=(40, 200))
    child.expect_exact(PROMPT)
    child.sendline("I am Mia.")
    child.expect_exact("ChatGLM：")
    child.expect_exact(PROMPT)
    assert child.before.strip()  # a non-empty answer was streamed
    child.sendline("Do you remember my name?")
    child.expect_exact("ChatGLM：")
    child.expect_exact(PROMPT)
    answer = child.before.strip()
    child.sendline("stop")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert answer and "\ufffd" not in answer
