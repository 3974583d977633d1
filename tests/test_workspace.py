"""The learner's workspace (glmcourse.workspace): first copy, course updates merged as nbgitpuller does,
reset of one lesson, the port check of `make lab`, and the read-only course files in the lab.

Most tests build a small course in a temporary folder (lessons, package, solutions), so they can change
"the course" as a `git pull` would without touching the repository.
"""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from glmcourse import workspace
from glmcourse.workspace import MANIFEST, WorkspaceError, check_port, reset, sync

REPO = Path(__file__).resolve().parents[1]


def lesson(text: str) -> str:
    return json.dumps({"cells": [{"cell_type": "markdown", "id": "c1", "metadata": {}, "source": [text]}],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def course(tmp_path):
    """A tiny course: two English lessons, one Chinese, the package and the solutions."""
    repo = tmp_path / "course"
    (repo / "notebooks" / "zh").mkdir(parents=True)
    (repo / "notebooks" / "solutions").mkdir()
    (repo / "notebooks" / "solutions" / "01_masks_solutions.py").write_text("ANSWER = 1\n")
    (repo / "glmcourse").mkdir()
    (repo / "glmcourse" / "masks.py").write_text("def mask(): ...\n")
    (repo / "notebooks" / "01_masks.ipynb").write_text(lesson("lesson one v1"))
    (repo / "notebooks" / "02_quant.ipynb").write_text(lesson("lesson two v1"))
    (repo / "notebooks" / "zh" / "01_masks.ipynb").write_text(lesson("第一课 v1"))
    return repo


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_first_use_copies_the_lessons_and_links_the_course_files(course, tmp_path):
    before = snapshot(course)
    work = tmp_path / "work"
    messages = sync(work, "en", course)
    assert len(messages) == 1 and "2 lessons copied from notebooks/" in messages[0]
    assert (work / "01_masks.ipynb").read_text() == lesson("lesson one v1")
    assert (work / "02_quant.ipynb").read_text() == lesson("lesson two v1")
    # The prose's paths open from the workspace: glmcourse/masks.py and notebooks/solutions/...
    assert (work / "glmcourse" / "masks.py").read_text() == "def mask(): ...\n"
    assert (work / "notebooks" / "solutions" / "01_masks_solutions.py").read_text() == "ANSWER = 1\n"
    assert (work / "solutions" / "01_masks_solutions.py").read_text() == "ANSWER = 1\n"  # what lessons import
    manifest = json.loads((work / MANIFEST).read_text())
    assert manifest["lessons"]["01_masks.ipynb"] == workspace.sha256(course / "notebooks" / "01_masks.ipynb")
    # The Chinese edition lives in work/zh, from notebooks/zh.
    assert "1 lessons copied from notebooks/zh/" in sync(work, "zh", course)[0]
    assert (work / "zh" / "01_masks.ipynb").read_text() == lesson("第一课 v1")
    assert (work / "zh" / "glmcourse" / "masks.py").exists()
    zh_only = tmp_path / "work-zh-only"
    sync(zh_only, "zh", course)  # `make lab-zh` alone: the lessons chdir to work/ and import solutions there
    assert (zh_only / "solutions" / "01_masks_solutions.py").exists() and not (zh_only / "01_masks.ipynb").exists()
    # Nothing of the course changed, and a second sync has nothing to say.
    assert snapshot(course) == before
    assert sync(work, "en", course) == [] and sync(work, "zh", course) == []


def test_course_update_never_overwrites_a_lesson_the_learner_changed(course, tmp_path):
    work = tmp_path / "work"
    sync(work, "en", course)
    mine = lesson("lesson one, with MY answer")
    (work / "01_masks.ipynb").write_text(mine)
    (work / "notes.ipynb").write_text(lesson("my own notebook"))
    # `git pull`: both lessons change, and a third one arrives.
    (course / "notebooks" / "01_masks.ipynb").write_text(lesson("lesson one v2"))
    (course / "notebooks" / "02_quant.ipynb").write_text(lesson("lesson two v2"))
    (course / "notebooks" / "03_chat.ipynb").write_text(lesson("lesson three v1"))
    messages = sync(work, "en", course)
    assert len(messages) == 3, messages
    assert all("\n" not in m for m in messages)
    kept = [m for m in messages if "01_masks.ipynb" in m][0]
    assert "kept your changed copy" in kept and "01_masks.course-update.ipynb" in kept
    assert (work / "01_masks.ipynb").read_text() == mine
    assert (work / "01_masks.course-update.ipynb").read_text() == lesson("lesson one v2")
    # The lesson the learner never touched is simply updated; the new one is copied.
    assert any("02_quant.ipynb: updated" in m for m in messages)
    assert (work / "02_quant.ipynb").read_text() == lesson("lesson two v2")
    assert any("03_chat.ipynb: new lesson" in m for m in messages)
    assert (work / "notes.ipynb").read_text() == lesson("my own notebook")
    assert sync(work, "en", course) == []
    # A second update of the changed lesson goes beside it again, under a name not yet taken.
    (course / "notebooks" / "01_masks.ipynb").write_text(lesson("lesson one v3"))
    (message,) = sync(work, "en", course)
    assert "01_masks.course-update-2.ipynb" in message
    assert (work / "01_masks.course-update.ipynb").read_text() == lesson("lesson one v2")
    assert (work / "01_masks.course-update-2.ipynb").read_text() == lesson("lesson one v3")
    assert (work / "01_masks.ipynb").read_text() == mine


def test_a_deleted_lesson_comes_back(course, tmp_path):
    work = tmp_path / "work"
    sync(work, "en", course)
    (work / "02_quant.ipynb").unlink()
    (message,) = sync(work, "en", course)
    assert "02_quant.ipynb: restored" in message
    assert (work / "02_quant.ipynb").read_text() == lesson("lesson two v1")


def test_reset_restores_one_lesson_and_keeps_the_learners_copy(course, tmp_path):
    work = tmp_path / "work"
    sync(work, "en", course)
    (work / "01_masks.ipynb").write_text(lesson("my attempt"))
    (work / "02_quant.ipynb").write_text(lesson("my other attempt"))
    message = reset(work, "1", "en", course)
    assert "reset to the course's version" in message and "01_masks.mine.ipynb" in message
    assert (work / "01_masks.ipynb").read_text() == lesson("lesson one v1")
    assert (work / "01_masks.mine.ipynb").read_text() == lesson("my attempt")
    assert (work / "02_quant.ipynb").read_text() == lesson("my other attempt")  # only the one asked for
    assert "nothing to reset" in reset(work, "01", "en", course)
    (work / "01_masks.ipynb").write_text(lesson("second attempt"))
    assert "01_masks.mine-2.ipynb" in reset(work, "01_masks.ipynb", "en", course)
    assert (work / "01_masks.mine.ipynb").read_text() == lesson("my attempt")
    with pytest.raises(WorkspaceError, match=r"L=9: no such lesson; pass its number, one of 01, 02"):
        reset(work, "9", "en", course)


def test_a_workspace_inside_the_courses_folders_is_refused(course):
    for inside in (course / "notebooks" / "mine", course / "notebooks"):
        with pytest.raises(WorkspaceError, match="inside the course's notebooks/"):
            sync(inside, "en", course)
    assert not (course / "notebooks" / "mine").exists()


def test_a_broken_manifest_is_one_line_not_a_traceback(course, tmp_path):
    work = tmp_path / "work"
    sync(work, "en", course)
    (work / MANIFEST).write_text("{not json")
    with pytest.raises(WorkspaceError, match="unreadable workspace manifest"):
        sync(work, "en", course)


@pytest.mark.parametrize("value", ["0", "70000", "abc", "", "-1", "8888.5"])
def test_impossible_ports_are_refused(value):
    with pytest.raises(WorkspaceError, match=rf"LAB_PORT={value}: not a port; pass a whole number in 1-65535"):
        check_port(value)


def test_a_port_in_use_is_refused_and_a_free_one_accepted():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(WorkspaceError, match=rf"LAB_PORT={port}: already in use on 127.0.0.1"):
            check_port(str(port))
    assert check_port(str(port)) == port  # closed again: free


def test_command_line_bad_port_is_one_line_and_exit_2():
    # The system Python, as `make lab` runs it before the set-up: only the standard library is needed.
    done = subprocess.run([sys.executable, "-m", "glmcourse.workspace", "check-port", "abc"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: LAB_PORT=abc: not a port; pass a whole number in 1-65535, e.g. LAB_PORT=8889."]


def test_make_lab_refuses_a_bad_port_before_starting_anything(tmp_path):
    if subprocess.run(["which", "make"], capture_output=True).returncode:
        pytest.skip("make is not installed")
    work = tmp_path / "work"
    done = subprocess.run(["make", "-s", "-o", ".venv/.glmcourse-installed", "lab", "LAB_PORT=70000",
                           f"WORKSPACE={work}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "LAB_PORT=70000: not a port" in done.stderr and "http://" not in done.stdout + done.stderr
    assert not work.exists()  # nothing was created or started


def test_the_workspace_is_git_ignored_and_outside_what_tests_collect():
    if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "work/01_glm_attention_masks.ipynb"], cwd=REPO)
    assert ignored.returncode == 0, "work/ must be git-ignored"
    makefile = (REPO / "Makefile").read_text()
    assert "WORKSPACE ?= work\n" in makefile
    # make test collects tests/ and notebooks/ only (pyproject's testpaths and the nbval run's folder).
    assert 'testpaths = ["tests"]' in (REPO / "pyproject.toml").read_text()


def test_help_is_instant_and_names_the_commands():
    done = subprocess.run([sys.executable, "-m", "glmcourse.workspace", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and all(word in done.stdout for word in ("sync", "reset", "check-port"))


# ------------------------------------------------------------------ the lab's read-only course files
def test_the_lab_saves_in_the_workspace_and_refuses_to_write_course_files(course, tmp_path):
    from tornado.web import HTTPError

    from glmcourse.workspace_contents import WorkspaceContentsManager

    work = tmp_path / "work"
    sync(work, "en", course)
    before = snapshot(course)
    manager = WorkspaceContentsManager(root_dir=str(work))

    async def scenario():
        model = await manager.get("01_masks.ipynb")
        assert model["writable"] is True
        await manager.save(model, "01_masks.ipynb")
        listing = await manager.get("")
        writable = {item["name"]: item["writable"] for item in listing["content"]}
        assert writable["01_masks.ipynb"] is True and writable["glmcourse"] is False
        module = await manager.get("glmcourse/masks.py")
        assert module["writable"] is False and module["content"] == "def mask(): ...\n"
        for attempt in (lambda: manager.save(module, "glmcourse/masks.py"),
                        lambda: manager.save({"type": "file", "format": "text", "content": "x"}, "glmcourse/new.py"),
                        lambda: manager.delete_file("notebooks/solutions/01_masks_solutions.py"),
                        lambda: manager.rename_file("glmcourse", "mine"),
                        lambda: manager.rename_file("01_masks.ipynb", "glmcourse/01_masks.ipynb")):
            with pytest.raises(HTTPError) as refused:
                await attempt()
            assert refused.value.status_code == 403 and "read-only" in refused.value.log_message
        # A copy in the workspace is the learner's to edit.
        await manager.save(dict(module, content="def mask(): return 1\n"), "masks_copy.py")

    asyncio.run(scenario())
    assert snapshot(course) == before
    assert (work / "masks_copy.py").read_text() == "def mask(): return 1\n"
