"""`make lab` serves JupyterLab on 127.0.0.1: start its server command, wait for an answer, stop it.

Runs the Makefile's own `lab` target (with a free port and a known token), so the test checks the
command a learner types, not a copy of it. Also available on its own as `make check-lab`.
"""
from __future__ import annotations

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_status(port: int, token: str):
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status, json.loads(resp.read())


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.skipif(not (REPO / ".venv/bin/jupyter").exists(), reason="no .venv: run `make setup` first")
def test_make_lab_serves_jupyterlab_on_localhost(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    # -o STAMP: never re-run the pip set-up from inside a test.
    cmd = ["make", "-s", "-o", STAMP, "lab", f"LAB_PORT={port}",
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
            pytest.fail(f"JupyterLab did not answer on 127.0.0.1:{port} within {START_TIMEOUT_S} s "
                        f"(exit code {proc.returncode}). Its log:\n{log[-3000:]}")
        status, body = answer
        assert status == 200 and "started" in body
        # Without the token the API refuses: the server is not open to anyone who can reach the port.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
        assert refused.value.code == 403
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
