"""`make lab` and `make lab-zh` serve JupyterLab on 127.0.0.1: start each server, query it, stop it.

Runs the Makefile's own targets (with a free port and a known token), so the tests check the
commands a learner types, not copies of them. Also available on their own as `make check-lab`.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAMP = ".venv/.glmcourse-installed"
START_TIMEOUT_S = 90
L10N_PLUGIN = "@jupyterlab/translation-extension:plugin"

pytestmark = [
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
    pytest.mark.skipif(not (REPO / ".venv/bin/jupyter").exists(), reason="no .venv: run `make setup` first"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port: int, token: str, path: str):
    url = f"http://127.0.0.1:{port}{path}?token={token}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def get_status(port: int, token: str):
    return get_json(port, token, "/api/status")


@contextlib.contextmanager
def serving(target: str, tmp_path: Path):
    """Run `make <target>` on a free port with a known token; yield (port, token) once it answers."""
    port, token = free_port(), secrets.token_hex(16)
    # A fresh runtime dir and user-settings dir: the learner's own ~/.jupyter neither leaks in nor changes.
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "user-settings"))
    # -o STAMP: never re-run the pip set-up from inside a test.
    cmd = ["make", "-s", "-o", STAMP, target, f"LAB_PORT={port}",
           f"LAB_ARGS=--IdentityProvider.token={token}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = get_status(port, token)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        if answer is None:
            proc.kill()
            log = proc.communicate(timeout=10)[0].decode(errors="replace")
            pytest.fail(f"`make {target}` did not answer on 127.0.0.1:{port} within {START_TIMEOUT_S} s "
                        f"(exit code {proc.returncode}). Its log:\n{log[-3000:]}")
        status, body = answer
        assert status == 200 and "started" in body
        yield port, token
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group holds make, its shell and jupyter
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        proc.stdout.close()
    # Stopped for good: the port no longer answers.
    with pytest.raises(OSError):
        get_status(port, token)


def locale_in_effect(port: int, token: str) -> tuple[str, str]:
    """(locale in effect, default locale) from the settings API: a user setting wins over the default,
    and the default is the schema's, with any overrides.json already applied by the server."""
    status, body = get_json(port, token, f"/lab/api/settings/{L10N_PLUGIN}")
    assert status == 200 and body["id"] == L10N_PLUGIN
    default = body["schema"]["properties"]["locale"]["default"]
    return body["settings"].get("locale", default), default


def root_listing(port: int, token: str) -> set[str]:
    status, body = get_json(port, token, "/api/contents")
    assert status == 200
    return {item["name"] for item in body["content"]}


def test_make_lab_serves_jupyterlab_on_localhost(tmp_path):
    with serving("lab", tmp_path) as (port, token):
        # Without the token the API refuses: the server is not open to anyone who can reach the port.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
        assert refused.value.code == 403
        # The English course is as before: notebooks/ at the root, no Chinese default locale.
        assert {"00_start_here.ipynb", "zh"} <= root_listing(port, token)
        assert locale_in_effect(port, token)[1] != "zh_CN"


def test_make_lab_zh_serves_the_chinese_edition_in_chinese(tmp_path):
    with serving("lab-zh", tmp_path) as (port, token):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
        assert refused.value.code == 403
        # notebooks/zh/ is the root: its notebooks at the top, nothing of the English folder above it.
        listing = root_listing(port, token)
        assert "00_start_here.ipynb" in listing and "zh" not in listing and "solutions" not in listing
        # The language pack is installed where this server finds it ...
        status, packs = get_json(port, token, "/lab/api/translations/")
        assert status == 200 and packs["message"] == "", packs["message"]
        assert "zh_CN" in packs["data"], f"zh_CN not among installed language packs {sorted(packs['data'])}"
        status, pack = get_json(port, token, "/lab/api/translations/zh_CN")
        assert status == 200 and pack["message"] == "", pack["message"]
        assert pack["data"]["jupyterlab"][""]["language"] == "zh-CN"
        assert pack["data"]["jupyterlab"]["Settings"] == ["设置"]
        # ... and it is the locale in effect, set by lab-zh/settings/overrides.json (no user setting here).
        assert locale_in_effect(port, token) == ("zh_CN", "zh_CN")
