"""Every ``python -m glmcourse.*`` command, every flag, the hostile values of its kind.

The commands and their flags come from the parsers themselves (``glmcourse.cli.COMMANDS``); each flag's
kind (input file, input folder, model folder, output file, output folder, number, choice) is declared
where the flag is added, and the shared guard (``cli.CourseParser``) checks it right after parsing. For
each hostile value this test asserts: exit status 2, one line naming the flag with the problem and the
fix, no traceback, and no file changed outside what the command created. A command added later (a module
with a ``__main__`` block) must be registered, and is then covered without a new test. All cases run in
this process and stop at the guard, before any slow work, so the whole registry takes seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import glmcourse
from glmcourse import cli

PACKAGE = Path(glmcourse.__file__).parent
FIX_WORDS = ("pass ", "convert", "re-create", "choose", "e.g.", "re-save", "fix", "use ", "restore", "check the path", "rebuild", "copy ")


def registered_parsers():
    """(command name, argv prefix, parser) for every command and sub-command."""
    found = []
    for name in cli.COMMANDS:
        parser = cli.command_parser(name)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            found += [(f"{name} {sub}", [sub], p) for sub, p in subs[0].choices.items()]
        else:
            found.append((name, [], parser))
    return found


PARSERS = registered_parsers()
EXPECT_UNREADABLE = "GLMCOURSE_REGISTRY_EXPECT_UNREADABLE"


def flag_actions(parser):
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def test_every_command_module_is_registered():
    # A module with a __main__ block, and a package's __main__.py (``python -m glmcourse.hub``).
    modules = {".".join(("glmcourse",) + p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
               for p in PACKAGE.rglob("*.py") if 'if __name__ == "__main__"' in p.read_text(encoding="utf-8")}
    modules |= {".".join(("glmcourse",) + p.parent.relative_to(PACKAGE).parts)
                for p in PACKAGE.rglob("__main__.py") if p.parent != PACKAGE}
    registered = {v.split(":")[0] for v in cli.COMMANDS.values()} | {k.split()[0] for k in cli.COMMANDS}
    assert modules and modules - registered == set(), "add these commands to glmcourse.cli.COMMANDS"


@pytest.mark.parametrize("name, prefix, parser", PARSERS, ids=[p[0] for p in PARSERS])
def test_every_flag_has_a_kind_the_guard_knows(name, prefix, parser):
    assert isinstance(parser, cli.CourseParser), f"{name}: build its parser with glmcourse.cli.CourseParser"
    for action in flag_actions(parser):
        flag = cli.flag_name(action)
        assert getattr(action, "kind", None) in cli.KINDS, f"{name} {flag}: no kind"
        assert action.type not in (int, float) or action.choices, \
            f"{name} {flag}: a bare int/float; use cli.int_arg/float_arg with a range"
        if action.kind == cli.NUMBER:
            limits = action.type.limits
            assert limits["lo"] is not None and limits["hi"] is not None, f"{name} {flag}: give the range both ends"
        if action.kind == cli.TEXT and re.search(r"(path|_dir|file|model|out|json)$", action.dest):
            pytest.fail(f"{name} {flag}: looks like a path; declare its kind (input/output file/folder, model folder)")


# ------------------------------------------------------------------------------------------ the workspace
@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    alpaca = [{"instruction": "hi", "input": "", "output": "hello"}]
    files = {
        "json": ("data.json", json.dumps(alpaca)),
        "jsonl": ("rows.jsonl", '{"context": "Instruction: hi\\nAnswer: ", "target": "hello", '
                                '"prompt": "hi", "response": "hello"}\n'),
        "ipynb": ("lesson.ipynb", json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})),
        "any": ("input.txt", "text\n"),
        "text": ("input.txt", "text\n"),
    }
    for fmt, (file_name, text) in files.items():
        (root / file_name).write_text(text, encoding="utf-8")
    (root / "in_dir").mkdir()
    (root / "in_dir" / "keep.txt").write_text("keep")
    (root / "a_file").write_text("a file, not a folder")
    (root / "users_folder").mkdir()
    (root / "users_folder" / "thesis.tex").write_text("precious")
    (root / "users_file.txt").write_text("precious")
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(root / "nothing_here")
    (root / "no_config").mkdir()
    (root / "bad_config").mkdir()
    (root / "bad_config" / "config.json").write_text('{"model_type": "chatglm", ')
    (root / "utf16_config").mkdir()
    (root / "utf16_config" / "config.json").write_bytes('{"model_type": "chatglm"}'.encode("utf-16-le"))
    damaged = {"damaged": "{\"instruction\": \"hi\", ", "gbk": None, "utf16": None, "deep": "[" * 50000 + "]" * 50000,
               "conflict": "<<<<<<< HEAD\n{}\n=======\n[]\n>>>>>>> theirs\n"}
    for label, text in damaged.items():
        path = root / f"{label}.input"
        if label == "gbk":
            path.write_bytes('[{"instruction": "你好"}]'.encode("gbk"))
        elif label == "utf16":
            path.write_bytes('[{"instruction": "hi"}]'.encode("utf-16-le"))
        else:
            path.write_text(text, encoding="utf-8")
    return {"root": root, "files": {fmt: root / name for fmt, (name, _) in files.items()}}


def valid_value(action, space):
    root = space["root"]
    kind = action.kind
    if kind == cli.INPUT_FILE:
        return str(space["files"][action.fmt or "any"])
    if kind == cli.INPUT_DIR:
        return str(root / "in_dir")
    if kind == cli.MODEL_DIR:
        return glmcourse.COURSE_MODEL
    if kind == cli.OUTPUT_FILE:
        return str(root / "new_out" / "result.json")
    if kind == cli.OUTPUT_DIR:
        return str(root / "new_out_dir")
    if action.choices:
        return str(sorted(action.choices)[0])
    if kind == cli.NUMBER:  # a positional number (workspace check-port's LAB_PORT)
        return str(action.type.limits["lo"])
    return "LoRA" if action.dest == "only" else "x"


def baseline(parser, space, skip):
    """Values for every required flag and positional (other than ``skip``), as argv."""
    argv = []
    for action in flag_actions(parser):
        if action is skip or not (action.required or not action.option_strings):
            continue
        if action.nargs == argparse.REMAINDER:
            continue
        value = valid_value(action, space)
        argv += [action.option_strings[0], value] if action.option_strings else [value]
    return argv


def inputs_of(parser, space, skip):
    """Flags of ``parser`` that hold an input, other than ``skip``, with the argv that sets them."""
    found = []
    for action in flag_actions(parser):
        if action is not skip and action.kind in (cli.INPUT_FILE, cli.INPUT_DIR) and action.option_strings:
            found.append((action, [action.option_strings[0], valid_value(action, space)]))
    return found


def hostile_values(action, parser, space):
    """(label, value, extra argv) for the kind of ``action``."""
    root, kind = space["root"], action.kind
    cases = []
    if kind in (cli.INPUT_FILE, cli.INPUT_DIR, cli.MODEL_DIR):
        cases += [("missing", str(root / "not_there"), []), ("symlink loop", str(root / "loop"), []),
                  ("dangling link", str(root / "dangling"), [])]
        cases.append(("folder for a file", str(root / "in_dir"), []) if kind == cli.INPUT_FILE
                     else ("file for a folder", str(root / "a_file"), []))
    if kind == cli.INPUT_FILE and (action.fmt or "any") in ("json", "jsonl", "ipynb"):
        for label in ("damaged", "gbk", "utf16", "deep", "conflict"):
            cases.append((f"content: {label}", str(root / f"{label}.input"), []))
        unreadable = root / "unreadable.input"
        if not unreadable.exists():
            unreadable.write_text("[]")
            unreadable.chmod(0)
        if not os.access(unreadable, os.R_OK):  # root reads a mode-000 file anyway: see the test at the end
            cases.append(("unreadable", str(unreadable), []))
    if kind == cli.MODEL_DIR:
        cases += [("no config.json", str(root / "no_config"), []), ("damaged config.json", str(root / "bad_config"), []),
                  ("UTF-16 config.json", str(root / "utf16_config"), [])]
    if kind in (cli.OUTPUT_FILE, cli.OUTPUT_DIR):
        cases.append(("under a file", str(root / "a_file" / "out"), []))
        cases.append(("file for a folder", str(root / "a_file"), []) if kind == cli.OUTPUT_DIR
                     else ("folder for a file", str(root / "in_dir"), []))
        if not action.course_model_ok:
            cases.append(("the course model", glmcourse.COURSE_MODEL, []))
        for other, argv in inputs_of(parser, space, action):
            cases.append((f"same as {cli.flag_name(other)}", argv[1], argv))
        if kind == cli.OUTPUT_FILE:
            cases.append(("a user's file", str(root / "users_file.txt"), []))
        elif action.replace_check:
            cases.append(("a user's folder", str(root / "users_folder"), []))
    if kind == cli.NUMBER:
        limits = action.type.limits
        cases += [("NaN", "nan", []), ("inf", "inf", []), ("not a number", "lots", []),
                  ("below the range", str(limits["lo"] - 1), []), ("above the range", str(limits["hi"] + 1), [])]
        if limits["lo"] > 0:
            cases.append(("zero", "0", []))
        if getattr(action, "within_context", False):
            cases.append(("beyond the context", "513", []))  # the course model reads 512 tokens
    if kind == cli.CHOICE:
        cases.append(("not a choice", "zzz_no_such_choice", []))
    return cases


def tree_digest(*folders) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_symlink():
                digest.update(f"{path} -> {os.readlink(path)}".encode())
            elif path.is_file():
                digest.update(str(path).encode() + path.read_bytes() if os.access(path, os.R_OK) else b"")
            else:
                digest.update(f"{path}/".encode())
    return digest.hexdigest()


def run_parser(parser, argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
            code = 0
        except SystemExit as stop:
            code = stop.code
    return code, err.getvalue()


@pytest.mark.parametrize("name, prefix, parser", PARSERS, ids=[p[0] for p in PARSERS])
def test_hostile_values_exit_2_with_one_line_and_change_nothing(name, prefix, parser, space):
    shipped = tree_digest(glmcourse.COURSE_MODEL, glmcourse.DATA_DIR)
    tried, failures, labels = 0, [], set()
    for action in flag_actions(parser):
        flag = cli.flag_name(action)
        for label, value, extra in hostile_values(action, parser, space):
            before = tree_digest(space["root"])
            rest = baseline(parser, space, skip=action)
            argv = rest + extra + ([action.option_strings[0], value] if action.option_strings else [value])
            if not action.option_strings:  # a positional goes where the parser expects it
                argv = extra + [value] + rest
            code, err = run_parser(parser, argv)
            tried += 1
            labels.add(label)
            lines = [line for line in err.splitlines() if line.strip()]
            shown = {flag, action.dest, str(action.metavar)}
            problem = None
            if code != 2:
                problem = f"exit status {code}"
            elif len(lines) != 1:
                problem = f"{len(lines)} lines"
            elif "Traceback" in err:
                problem = "a traceback"
            elif not any(s in lines[0] for s in shown):
                problem = "the flag is not named"
            elif not any(w in lines[0].lower() for w in FIX_WORDS):
                problem = "no fix given"
            elif tree_digest(space["root"]) != before:
                problem = "a file changed"
            if problem:
                failures.append(f"{name} {flag} {label} ({value}): {problem}: {err.strip()[:300]}")
    assert tree_digest(glmcourse.COURSE_MODEL, glmcourse.DATA_DIR) == shipped
    assert tried or not any(a.kind not in (cli.TEXT, cli.SWITCH) for a in flag_actions(parser)), "no case tried"
    assert not failures, "\n".join(failures)
    if os.environ.get(EXPECT_UNREADABLE) and any(a.kind == cli.INPUT_FILE and (a.fmt or "any") in ("json", "jsonl", "ipynb")
                                                for a in flag_actions(parser)):
        assert "unreadable" in labels, f"{name}: the mode-000 input was readable, so its case was not tried"


@pytest.mark.parametrize("name, prefix, parser", PARSERS, ids=[p[0] for p in PARSERS])
def test_the_valid_baseline_passes_the_guard(name, prefix, parser, space):
    """The hostile cases fail because of the one hostile value, not because the baseline is wrong."""
    if name == "glmcourse":
        return
    argv = baseline(parser, space, skip=None)  # a sub-command's own parser: no prefix
    code, err = run_parser(parser, argv)
    assert code == 0, err


def test_each_command_main_goes_through_the_guard(space):
    """A bad path given to each command's ``main`` stops at the guard with status 2 (no slow work)."""
    import importlib

    missing = str(space["root"] / "not_there" / "x")
    checked = 0
    for name, target in cli.COMMANDS.items():
        if " " in name or name == "glmcourse":
            continue
        module = importlib.import_module(target.split(":")[0])
        parser = cli.command_parser(name)
        paths = [a for a in flag_actions(parser) if a.kind in (cli.INPUT_FILE, cli.INPUT_DIR, cli.MODEL_DIR)
                 and a.option_strings]
        if not paths:
            continue
        argv = baseline(parser, space, skip=paths[0]) + [paths[0].option_strings[0], missing]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = module.main(argv)
            except SystemExit as stop:
                code = stop.code
        assert code == 2 and "no such" in err.getvalue(), (name, err.getvalue())
        checked += 1
    assert checked >= 8


@pytest.mark.skipif(os.geteuid() != 0, reason="as an ordinary user the hostile-value test above already tries unreadable files")
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux's setpriv to drop root's read override")
def test_unreadable_inputs_are_refused_when_root_cannot_read_them(tmp_path):
    """Root (tests in containers and CI) reads a mode-000 file anyway, so the hostile-value test runs again in a
    child that keeps uid 0 but has lost the two capabilities that override file modes: there the unreadable case
    is tried for every command that reads a JSON, JSONL or notebook file, and must exit 2 with one line."""
    child = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "pytest", "-q",
         "-p", "no:cacheprovider", "-p", "no:xdist", "--basetemp", str(tmp_path / "base"), __file__,
         "-k", "test_hostile_values_exit_2"],
        env={**os.environ, EXPECT_UNREADABLE: "1"}, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed", child.stdout), child.stdout[-500:]
