"""The class hub end to end: `make hub` with a class of two, both students in headless Chromium.

Each student signs up (sets a password), logs in, and gets JupyterLab on their own workspace; in lesson 01
each answers the first exercise (prefix_mask), alice correctly and bob wrongly, runs it and saves. Then:
each answer is in its own workspace only; the kernels talked over IPC and no "without encryption" line
was logged; alice cannot open bob's server or files; `python -m glmcourse.hub collect` and
`python -m glmcourse.tools.grade` give alice PASS and bob TRY AGAIN. Everything started is stopped at the end.

Several minutes (two servers, two kernels, grading in learner mode), so it runs in `make e2e` only:
it is skipped unless GLMCOURSE_HUB_E2E=1, which that target sets.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import chromium_page, needs_chromium
from lab_server import REPO, STAMP, free_port

from glmcourse.hub import runtime_root

pytestmark = [
    needs_chromium,
    pytest.mark.skipif(os.environ.get("GLMCOURSE_HUB_E2E") != "1",
                       reason="the class hub's end-to-end test runs in `make e2e` (GLMCOURSE_HUB_E2E=1)"),
    pytest.mark.skipif(not (REPO / "node_modules/.bin/configurable-http-proxy").exists(),
                       reason="no configurable-http-proxy: run `make hub-deps`"),
    pytest.mark.skipif(not (REPO / ".venv/bin/jupyterhub").exists(), reason="no jupyterhub: run `make setup`"),
]

LESSON = "01_glm_attention_masks.ipynb"
EXERCISE = "exercise:prefix_mask"
ANSWERS = {  # alice: the reference answer; bob: every position may attend everywhere (wrong)
    "alice": "def prefix_mask(n, prefix_len):\n    rows = torch.arange(n).unsqueeze(1)\n"
             "    cols = torch.arange(n).unsqueeze(0)\n    return (cols <= rows) | (cols < prefix_len)  # alice\n",
    "bob": "def prefix_mask(n, prefix_len):\n    return torch.ones(n, n, dtype=torch.bool)  # bob\n",
}
EXPECTED = {"alice": "PASS", "bob": "TRY AGAIN"}
START_TIMEOUT_S = 180

# window.jupyterapp is exposed through GLMCOURSE_HUB_SERVER_ARGS (JupyterLab's own option).
CURRENT = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
NOTEBOOK_READY = f"""() => {{
    const panel = {CURRENT};
    const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!(kernel && kernel.status === 'idle' && panel.content && panel.content.widgets.length);
}}"""
# Put the answer into the exercise cell, make it the active cell: returns its index.
SET_ANSWER = f"""([tag, answer]) => {{
    const panel = {CURRENT};
    const cells = panel.content.widgets;
    const index = cells.findIndex(c => (c.model.getMetadata('tags') || []).includes(tag));
    const cell = cells[index];
    const source = cell.model.sharedModel.getSource();
    const checker = source.slice(source.indexOf('attempt('));
    cell.model.sharedModel.setSource(answer + '\\n\\n' + checker);
    panel.content.activeCellIndex = index;
    return index;
}}"""
CELL_STATE = f"""(index) => {{
    const panel = {CURRENT};
    const cells = panel.content.widgets.slice(0, index + 1).filter(c => c.model.type === 'code');
    const outputs = panel.content.widgets[index].model.toJSON().outputs || [];
    return {{idle: panel.sessionContext.session.kernel.status === 'idle',
             ran: cells.every(c => c.model.executionCount !== null),
             text: outputs.map(o => o.text || (o.data && o.data['text/plain']) || o.evalue || '').join(''),
             errors: panel.content.widgets.slice(0, index + 1).flatMap(c => (c.model.toJSON().outputs || [])
                 .filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue))}};
}}"""


def answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def processes_in(folder: Path) -> list[str]:
    """Processes whose working directory is inside ``folder`` (the students' servers and kernels)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        cwd = proc.info.get("cwd")
        if cwd and (cwd == str(folder) or cwd.startswith(str(folder) + os.sep)):
            found.append(f"{proc.info['pid']} {' '.join(proc.info.get('cmdline') or [])[:120]}")
    return found


@contextlib.contextmanager
def class_hub(tmp_path: Path):
    """`make hub` for alice and bob on a free port; yields (base URL, data folder, log path); stops it all."""
    class_list = tmp_path / "class.txt"
    class_list.write_text("# the class\nalice\nbob\n")
    data, log_path, port = tmp_path / "hub-data", tmp_path / "hub.log", free_port()
    env = dict(os.environ, GLMCOURSE_HUB_SERVER_ARGS="--LabApp.expose_app_in_browser=True",
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"))
    cmd = ["make", "-s", "-o", STAMP, "-o", "node_modules/.glmcourse-installed", "hub", f"HUB_USERS={class_list}",
           f"HUB_PORT={port}", f"HUB_DATA={data}"]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers_http(f"{base}/hub/login"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`make hub` did not answer on {base} (exit code {proc.poll()}):\n"
                            f"{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(1)
        yield base, data, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # JupyterHub stops the students' servers and the proxy
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    # Stopped for good: the hub's port is closed and no server or kernel of a student is left.
    assert not answers_http(f"{base}/hub/login")
    deadline = time.monotonic() + 30
    while processes_in(data) and time.monotonic() < deadline:
        time.sleep(1)
    assert processes_in(data) == [], f"left running: {processes_in(data)}"
    shutil.rmtree(runtime_root(data), ignore_errors=True)  # the kernels' socket folder under /tmp


def sign_up(page, base: str, name: str, password: str) -> str:
    """Fill in the hub's sign-up form; the message it answers with."""
    page.goto(f"{base}/hub/signup", wait_until="load")
    page.fill("input[name=username]", name)
    page.fill("input[name=signup_password]", password)
    page.fill("input[name=signup_password_confirmation]", password)
    with page.expect_navigation(wait_until="load"):
        page.click("#signup_submit")
    return page.locator(".alert").first.inner_text()


def sign_up_and_log_in(page, base: str, name: str, password: str) -> None:
    result = sign_up(page, base, name, password)
    assert "signup was successful" in result, f"{name}: sign-up failed: {result}"
    page.goto(f"{base}/hub/login", wait_until="load")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    with page.expect_navigation(wait_until="load"):
        page.click("#login_submit")
    page.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=START_TIMEOUT_S * 1000)


def answer_first_exercise(page, base: str, name: str) -> str:
    """Open lesson 01 in the student's lab, answer its first exercise, run up to it, save; the verdict text."""
    page.goto(f"{base}/user/{name}/lab/tree/{LESSON}?reset", wait_until="load", timeout=120_000)
    page.wait_for_function(NOTEBOOK_READY, timeout=180_000)
    index = page.evaluate(SET_ANSWER, [EXERCISE, ANSWERS[name]])
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-above')")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = page.evaluate(CELL_STATE, index)
        assert not state["errors"], f"{name}: cells show errors: {state['errors']}"
        if state["idle"] and state["ran"] and state["text"]:
            break
        page.wait_for_timeout(500)
    else:
        pytest.fail(f"{name}: the exercise cell did not finish: {state}")
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_timeout(1500)
    return state["text"]


def second_student(page, outside: list):
    """A page in a fresh browser context (its own cookies) of the same browser, also kept on 127.0.0.1."""
    context = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})

    def only_local(route):
        url = route.request.url
        if url.startswith(("data:", "blob:")) or url.startswith(("http://127.0.0.1", "http://localhost")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    other = context.new_page()
    other.route("**/*", only_local)
    return other


def exercise_cell(path: Path) -> dict:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return next(c for c in nb["cells"] if EXERCISE in c.get("metadata", {}).get("tags", []))


def test_two_students_on_the_class_hub(tmp_path):
    started = time.monotonic()
    committed = (REPO / "notebooks" / LESSON).read_bytes()
    with class_hub(tmp_path) as (base, data, log_path):
        with chromium_page("hub_alice") as (alice, outside):
            bob = second_student(alice, outside)
            for page, name in ((alice, "alice"), (bob, "bob")):
                sign_up_and_log_in(page, base, name, f"{name}-long-pass-42")
            verdicts = {name: answer_first_exercise(page, base, name) for page, name in ((alice, "alice"), (bob, "bob"))}
            assert "[PASS] prefix_mask" in verdicts["alice"], verdicts
            assert "[TRY AGAIN] prefix_mask" in verdicts["bob"], verdicts
            # Each answer is saved in its own workspace, and only there.
            for name, other in (("alice", "bob"), ("bob", "alice")):
                source = "".join(exercise_cell(data / "students" / name / LESSON)["source"])
                assert f"# {name}" in source and f"# {other}" not in source
            # alice cannot open bob's server, nor his files through it, nor sign up as him.
            for path in ("/user/bob/lab", f"/user/bob/api/contents/{LESSON}", f"/user/bob/files/{LESSON}"):
                response = alice.request.get(f"{base}{path}", max_redirects=10)
                assert response.status in (403, 404), f"alice got {response.status} for {path}"
                assert "# bob" not in response.text()
            # Only the class list can sign up, and a name once taken cannot be taken again.
            stranger = second_student(alice, outside)
            assert "Something went wrong" in sign_up(stranger, base, "mallory", "mallory-long-pass-42")
            assert "already in use" in sign_up(stranger, base, "bob", "not-bobs-pass-42")
            assert outside == [], f"a page tried to reach the network: {outside}"
            # Kernels over IPC: each student's kernel connection file says so, in a folder only the hub's
            # account can read; no "without encryption" line in the log the servers and kernels write to.
            runtime = runtime_root(data)
            for name in ("alice", "bob"):
                files = list((runtime / name).glob("kernel-*.json"))
                assert files and {json.loads(p.read_text())["transport"] for p in files} == {"ipc"}, files
                assert (runtime / name).stat().st_mode & 0o077 == 0
            log = log_path.read_text(errors="replace")
            assert log.count("Kernel started") >= 2 and "without encryption" not in log
    # Collect both workspaces, grade them through the grader's command line: one verdict each.
    submissions, grades = tmp_path / "submissions", tmp_path / "grades"
    collected = subprocess.run([sys.executable, "-m", "glmcourse.hub", "collect", "--data", str(data), "--out",
                                str(submissions)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr
    assert sorted(p.name for p in submissions.iterdir() if not p.name.startswith(".")) == ["alice", "bob"]
    assert [p.name for p in (submissions / "alice").iterdir()] == [LESSON]
    graded = subprocess.run([sys.executable, "-m", "glmcourse.tools.grade", str(submissions), "--out", str(grades),
                             "--jobs", "2"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert graded.returncode == 0, graded.stderr[-3000:]
    with open(grades / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    for name, verdict in EXPECTED.items():
        cells = [value for key, value in rows[name].items() if "prefix_mask" in key]
        assert cells and cells[0] == verdict, f"{name}: {rows[name]}"
    assert (REPO / "notebooks" / LESSON).read_bytes() == committed
    print(f"class hub end-to-end: {time.monotonic() - started:.0f} s")
