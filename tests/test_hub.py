"""The class hub's pieces that need no browser: the class list, the options, the JupyterHub configuration
and the instructor's `collect`. The whole hub with two students is tests/test_hub_e2e.py (make e2e)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from glmcourse import hub, workspace
from glmcourse.hub import HubError, parse_size, read_class_list

REPO = Path(__file__).resolve().parents[1]


def test_class_list_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "class.txt"
    path.write_text("# spring class\nalice\n\n  bob   # second row\nc.wu-2\n")
    assert read_class_list(path) == ["alice", "bob", "c.wu-2"]


@pytest.mark.parametrize("text, message", [
    ("alice\nAlice Smith\n", r"line 2: 'Alice Smith' is not a usable user name"),
    ("alice\nbob\nalice\n", r"line 3: alice is listed twice"),
    ("# nobody yet\n\n", r"no user names in it"),
    ("../etc\n", r"line 1: '../etc' is not a usable user name"),
])
def test_bad_class_lists_are_one_line(tmp_path, text, message):
    path = tmp_path / "class.txt"
    path.write_text(text)
    with pytest.raises(HubError, match=message):
        read_class_list(path)
    with pytest.raises(HubError, match="no such file"):
        read_class_list(tmp_path / "missing.txt")


@pytest.mark.parametrize("text, size", [("2G", 2 * 1024**3), ("2GiB", 2 * 1024**3), ("1536M", 1536 * 1024**2),
                                        ("536870912", 512 * 1024**2)])
def test_memory_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1G", "100M", "2X", "2T", "nan"])
def test_bad_memory_sizes(text):
    with pytest.raises(HubError, match=f"--memory-limit {text}: "):
        parse_size(text)


def run_hub(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "glmcourse.hub", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_serve_refuses_bad_input_in_one_line_before_starting(tmp_path):
    users = tmp_path / "class.txt"
    users.write_text("alice\n")
    data = tmp_path / "data"
    for args, message in ((["--users", str(tmp_path / "none.txt")], "no such file"),
                          (["--users", str(users), "--port", "70000"], "--port: 70000: out of range; pass an integer"),
                          (["--users", str(users), "--memory-limit", "1K"], "--memory-limit: 1K: too small; pass at least"),
                          (["--users", str(users), "--admin", "Dr Who"], "--admin 'Dr Who': not a usable user name")):
        done = run_hub("serve", *args, "--data", str(data))
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr
    assert not data.exists()  # nothing was created


def config_for(tmp_path, **overrides) -> object:
    """Load glmcourse/hub/jupyterhub_config.py as JupyterHub does, with the variables `serve` sets."""
    from traitlets.config import Config

    env = {"GLMCOURSE_HUB_DATA": str(tmp_path / "data"), "GLMCOURSE_HUB_USERS": "alice,bob",
           "GLMCOURSE_HUB_IP": "127.0.0.1", "GLMCOURSE_HUB_PORT": "8000", "GLMCOURSE_HUB_API_PORT": "8081",
           "GLMCOURSE_HUB_PROXY_API_PORT": "8001", "GLMCOURSE_HUB_MEMORY": str(2 * 1024**3),
           "GLMCOURSE_HUB_RUNTIME": str(tmp_path / "rt"), "GLMCOURSE_HUB_PROXY": "/x/chp", **overrides}
    config = Config()
    namespace = {"get_config": lambda: config, "__file__": str(hub.CONFIG)}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        exec(compile(hub.CONFIG.read_text(), str(hub.CONFIG), "exec"), namespace)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return config, namespace


def test_the_hub_configuration(tmp_path):
    pytest.importorskip("jupyterhub")
    pytest.importorskip("nativeauthenticator")
    c, ns = config_for(tmp_path, GLMCOURSE_HUB_ADMINS="teacher")
    assert c.JupyterHub.ip == "127.0.0.1" and c.JupyterHub.hub_ip == "127.0.0.1"
    assert c.Authenticator.allowed_users == {"alice", "bob", "teacher"}
    assert c.Authenticator.admin_users == {"teacher"}
    assert c.NativeAuthenticator.open_signup is True and c.NativeAuthenticator.minimum_password_length == 8
    assert "--KernelManager.transport=ipc" in c.Spawner.args
    assert "--ServerApp.contents_manager_class=glmcourse.workspace_contents.WorkspaceContentsManager" in c.Spawner.args
    assert c.Spawner.mem_limit == 2 * 1024**3
    assert c.Spawner.cmd[0].endswith("jupyterhub-singleuser") and Path(c.Spawner.cmd[0]).parent == Path(sys.executable).parent
    assert c.Spawner.notebook_dir == str(tmp_path / "data" / "students" / "{username}")
    assert c.Spawner.environment["HF_HUB_OFFLINE"] == "1"
    # Only the class list (and admins) may sign up.
    auth = ns["ClassListAuthenticator"].__new__(ns["ClassListAuthenticator"])  # no database needed for this
    assert auth.validate_username("alice") and not auth.validate_username("mallory")
    # The Chinese edition serves DATA/students/NAME/zh.
    c_zh, _ = config_for(tmp_path, GLMCOURSE_HUB_EDITION="zh")
    assert c_zh.Spawner.notebook_dir == str(tmp_path / "data" / "students" / "{username}" / "zh")


def test_the_spawner_caps_memory_and_prepares_the_workspace(tmp_path):
    pytest.importorskip("jupyterhub")
    c, ns = config_for(tmp_path)

    class User:
        name = "alice"

    class Spawner:
        home_dir = str(tmp_path / "data" / "students" / "alice")
        user = User()
        environment = {"HF_HUB_OFFLINE": "1"}

        class log:
            lines = []

            @classmethod
            def info(cls, fmt, *args):
                cls.lines.append(fmt % args)

    spawner = Spawner()
    ns["prepare_workspace"](spawner)
    assert (Path(spawner.home_dir) / "01_glm_attention_masks.ipynb").is_file()
    assert any("8 lessons copied" in line for line in Spawner.log.lines)
    runtime = Path(spawner.environment["JUPYTER_RUNTIME_DIR"])
    assert runtime == tmp_path / "rt" / "alice" and runtime.stat().st_mode & 0o777 == 0o700
    assert spawner.environment["HF_HUB_OFFLINE"] == "1"
    # Each student's outputs go to their own runs/, inside their workspace data (never the shared runs/).
    assert spawner.environment["GLMCOURSE_RUNS_DIR"] == str(tmp_path / "data" / "students" / "alice" / "runs")

    class Bob(Spawner):
        home_dir = str(tmp_path / "data" / "students" / "bob")
        user = type("User", (), {"name": "bob"})()
        environment = {"HF_HUB_OFFLINE": "1"}

    bob = Bob()
    ns["prepare_workspace"](bob)
    assert bob.environment["GLMCOURSE_RUNS_DIR"] == str(tmp_path / "data" / "students" / "bob" / "runs")
    assert "GLMCOURSE_RUNS_DIR" not in c.Spawner.env_keep  # the hub's own value is not passed on
    # The limits, applied to a child process by the spawner's own preexec function, as for a server.
    server = ns["CourseSpawner"].__new__(ns["CourseSpawner"])
    server.home_dir = spawner.home_dir
    probe = "import os, resource; print(resource.getrlimit(resource.RLIMIT_DATA)[0], resource.getrlimit(resource.RLIMIT_AS)[0], os.getcwd())"
    done = subprocess.run([sys.executable, "-c", probe], preexec_fn=server.make_preexec_fn("alice"),
                          capture_output=True, text=True, timeout=60)
    data_cap, address_cap, cwd = done.stdout.split()
    assert int(data_cap) == 2 * 1024**3 and int(address_cap) == 2 * 1024**3 + ns["ADDRESS_ROOM"]
    assert cwd == spawner.home_dir


def test_runs_dir_honours_glmcourse_runs_dir(tmp_path):
    """glmcourse.RUNS_DIR is GLMCOURSE_RUNS_DIR when set (what the hub sets per student), else <repo>/runs."""
    probe = "import glmcourse; print(glmcourse.RUNS_DIR)"
    env = {k: v for k, v in os.environ.items() if k != "GLMCOURSE_RUNS_DIR"}
    default = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=60)
    assert default.returncode == 0 and Path(default.stdout.strip()) == REPO / "runs", default.stderr
    mine = tmp_path / "students" / "alice" / "runs"
    moved = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=dict(env, GLMCOURSE_RUNS_DIR=str(mine)),
                           capture_output=True, text=True, timeout=60)
    assert moved.returncode == 0 and Path(moved.stdout.strip()) == mine, moved.stderr
    # A relative value is taken from where the kernel starts (the student's workspace).
    relative = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=dict(env, GLMCOURSE_RUNS_DIR="runs"),
                              capture_output=True, text=True, timeout=60)
    assert Path(relative.stdout.strip()) == tmp_path / "runs", relative.stderr


def make_student(data: Path, name: str, answer: str | None) -> Path:
    folder = data / "students" / name
    workspace.sync(folder, "en")
    if answer is not None:
        path = folder / "01_glm_attention_masks.ipynb"
        nb = json.loads(path.read_text())
        nb["cells"][0]["source"] = answer
        path.write_text(json.dumps(nb))
    return folder


def test_collect_copies_each_students_changed_lessons(tmp_path):
    data = tmp_path / "hub-data"
    make_student(data, "alice", "alice's notes")
    make_student(data, "bob", None)  # opened nothing
    out = tmp_path / "submissions"
    done = run_hub("collect", "--data", str(data), "--out", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "alice: 1 lessons (01)" in done.stdout and "bob: 0 lessons" in done.stdout
    assert [p.name for p in (out / "alice").iterdir()] == ["01_glm_attention_masks.ipynb"]
    assert not (out / "bob").exists()
    assert json.loads((out / "alice" / "01_glm_attention_masks.ipynb").read_text())["cells"][0]["source"] == "alice's notes"
    # --all: every lesson; a second collect replaces its own earlier output.
    done = run_hub("collect", "--data", str(data), "--out", str(out), "--all", timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(list((out / "bob").glob("*.ipynb"))) == 8
    # A folder collect did not write is refused, unchanged.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    done = run_hub("collect", "--data", str(data), "--out", str(foreign))
    assert done.returncode == 2 and "already holds files this command did not write" in done.stderr
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    # ... unless the instructor asks for it.
    done = run_hub("collect", "--data", str(data), "--out", str(foreign), "--overwrite_output_dir", timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (foreign / "keep.txt").exists() and (foreign / "alice" / "01_glm_attention_masks.ipynb").is_file()


def test_hub_help_is_instant():
    done = run_hub("--help")
    assert done.returncode == 0 and "serve" in done.stdout and "collect" in done.stdout
    # The command line module imports nothing heavy (JupyterHub is loaded by the hub process only).
    probe = subprocess.run([sys.executable, "-c", "import sys, glmcourse.hub; print('jupyterhub' in sys.modules)"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "False"
