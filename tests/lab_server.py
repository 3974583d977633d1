"""Start `make lab` / `make lab-zh` on a free port with a known token, for the tests that query it.

Runs the Makefile's own targets, so the tests check the commands a learner types, not copies of them.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
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
def serving(target: str, tmp_path: Path, lab_args: str = "", user_settings: dict | None = None):
    """Run `make <target>` on a free port with a known token; yield (port, token) once it answers.

    The server's workspace is ``tmp_path/work`` (``WORKSPACE=``), so the learner's own work/ is never used.

    ``lab_args`` are extra JupyterLab options; ``user_settings`` maps a plugin id to the user settings
    it starts with (for example autosave off, so a test never writes a committed notebook).
    """
    port, token = free_port(), secrets.token_hex(16)
    for plugin, values in (user_settings or {}).items():
        package, name = plugin.rsplit(":", 1)
        path = tmp_path / "user-settings" / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    # A fresh runtime dir and user-settings dir: the learner's own ~/.jupyter neither leaks in nor changes.
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "user-settings"))
    # -o STAMP: never re-run the pip set-up from inside a test.
    cmd = ["make", "-s", "-o", STAMP, target, f"LAB_PORT={port}", f"WORKSPACE={tmp_path / 'work'}",
           f"LAB_ARGS=--IdentityProvider.token={token} {lab_args}".strip()]
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
