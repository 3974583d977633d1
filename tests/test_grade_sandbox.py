"""``python -m glmcourse.tools.grade`` against students who try to sink, fool or use the grader.

One made-up class, built in tmp_path and graded once by a grader running from a copy of the course (so an
attack that got through would hit the copy, never this checkout), --jobs 2, lesson 04's exercise cells only:
- ``runaway`` allocates without end in one exercise cell (``hoarder``: in the function its checker calls): that
  exercise is MEMORY with its cell, the rest of the notebook and the other students are graded as usual;
- ``attacker``'s exercise cell deletes files (relative to its folder and by absolute path in the course tree and
  next to it), reads ``~/.ssh`` and the instructor's home by absolute path, dumps its environment and opens a
  socket to a server the test runs on 127.0.0.1; whatever it got it raises as its error, so it would show in
  report.html: nothing outside its scratch copy changes, and no secret reaches report.html or grades.csv;
- ``sec1/erin`` rebinds a checker (seen in the code), ``sec2/erin`` (the same file name, another section)
  patches one through ``vars()`` (seen only at run time) and ``sec2/frank`` calls the reference solutions: all
  CHANGED, three separate students;
- ``carol`` deleted an exercise cell: "the exercise cell is missing", nothing about it having run.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

import glmcourse

REPO = glmcourse.REPO_ROOT
L04 = "04_data_formatting.ipynb"
EX04 = ["04:format_example", "04:build_labels", "04:truncate_target", "04:str2bool"]
SSH_SECRET, HOME_SECRET, ENV_SECRET, NET_SECRET = (f"{w}-{uuid.uuid4().hex[:12]}" for w in ("SSH", "HOME", "ENV", "NET"))
SET_UP = "from glmcourse.exercises import attempt, data as checks\n"
SOLVED_FORMAT = ("def format_example(record):\n    context = f\"Instruction: {record['instruction']}\\n\"\n"
                 "    if record.get('input'):\n        context += f\"Input: {record['input']}\\n\"\n"
                 "    return {'context': context + 'Answer: ', 'target': record['output']}\n")


def course_nb() -> dict:
    return json.loads((REPO / "notebooks" / L04).read_text(encoding="utf-8"))


def cell_of(nb: dict, exercise: str) -> dict:
    return next(c for c in nb["cells"] if f"exercise:{exercise}" in c.get("metadata", {}).get("tags", []))


def answer(nb: dict, exercise: str, definition: str) -> None:
    cell = cell_of(nb, exercise)
    last = [line for line in "".join(cell["source"]).splitlines() if line.strip()][-1]
    cell["source"] = definition + "\n\n" + last + "\n"


def exercises_only() -> dict:
    nb = course_nb()
    set_up = {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8], "metadata": {},
              "outputs": [], "source": SET_UP}
    nb["cells"] = [set_up] + [c for c in nb["cells"]
                              if any(t.startswith("exercise:") for t in c.get("metadata", {}).get("tags", []))]
    return nb


def save(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")


def hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def attack(course: Path, home: Path, decoy: Path, port: int) -> str:
    """An exercise cell that tries everything; it raises whatever it got, so a leak would reach the report."""
    from glmcourse.tools.grade import course_checkouts

    installed = course_checkouts()[-1]  # where the environment's glmcourse was installed from (pip install -e)
    return f'''import glob, os, shutil, socket, subprocess
got = []
subprocess.run("rm -rf solutions/* ../data/* ../glmcourse/exercises/*.py ../i18n", shell=True)
for target in ["{course}/notebooks/solutions", "{course}/data", "{course}/glmcourse/exercises", "{decoy}"]:
    shutil.rmtree(target, ignore_errors=True)
for path in [os.path.expanduser("~/.ssh/id_rsa"), "{home}/.ssh/id_rsa", "{home}/notes.txt",
             *glob.glob("/root/.ssh/*"), "{course}/notebooks/solutions/04_data_solutions.py",
             *glob.glob("{installed}/notebooks/solutions/*.py")]:
    try:
        got.append(open(path).read())
    except OSError as err:
        pass
got.append(repr(dict(os.environ)))
try:
    with socket.create_connection(("127.0.0.1", {port}), timeout=3) as conn:
        got.append(conn.recv(100).decode())
except OSError:
    pass
raise RuntimeError("ATTACK-RAN " + repr(got))
''' + SOLVED_FORMAT


class Server:
    """A TCP server on 127.0.0.1 that hands every client NET_SECRET and counts them."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.clients = self.sock.getsockname()[1], 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.clients += 1
            with conn:
                conn.sendall(NET_SECRET.encode())


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("sandbox")
    course = root / "course"  # the grader runs from this copy: an attack that got through would change it
    for name in ("glmcourse", "notebooks", "data", "i18n"):
        shutil.copytree(REPO / name, course / name, ignore=shutil.ignore_patterns("__pycache__"))
    home, decoy = root / "home", root / "decoy"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SSH_SECRET, encoding="utf-8")
    (home / "notes.txt").write_text(HOME_SECRET, encoding="utf-8")
    decoy.mkdir()
    (decoy / "keep.txt").write_text("the instructor's file\n", encoding="utf-8")
    server = Server()
    subs, out = root / "submissions", root / "out"

    runaway = exercises_only()
    answer(runaway, "format_example", SOLVED_FORMAT)
    answer(runaway, "build_labels", "hoard = []\nwhile True:\n    hoard.append(bytearray(10 ** 7))\n")
    save(runaway, subs / "runaway.ipynb")
    hoarder = exercises_only()  # the runaway inside the function the checker calls
    answer(hoarder, "str2bool", "def str2bool(text):\n    hoard = []\n    while True:\n"
                                "        hoard.append(bytearray(10 ** 7))\n")
    save(hoarder, subs / "hoarder.ipynb")
    attacker = exercises_only()
    answer(attacker, "format_example", attack(course, home, decoy, server.port))
    save(attacker, subs / "attacker.ipynb")
    rebinder = exercises_only()
    answer(rebinder, "format_example", "import glmcourse.exercises.data\nglmcourse.exercises.data."
                                       "check_format_example = lambda fn: None\n\n\ndef format_example(record):\n"
                                       "    return None\n")
    save(rebinder, subs / "sec1" / "erin.ipynb")
    patcher = exercises_only()
    answer(patcher, "build_labels", "vars(checks)['check_build_labels'] = print\n\n\n"
                                    "def build_labels(input_ids, seq_len):\n    return None\n")
    save(patcher, subs / "sec2" / "erin.ipynb")
    copier = exercises_only()
    answer(copier, "str2bool", "import importlib\nanswers = importlib.import_module('solutions.04_data_solutions')\n"
                               "\n\ndef str2bool(text):\n    return answers.str2bool(text)\n")
    save(copier, subs / "sec2" / "frank.ipynb")
    carol = exercises_only()
    answer(carol, "format_example", SOLVED_FORMAT)
    carol["cells"].remove(cell_of(carol, "truncate_target"))
    save(carol, subs / "carol.ipynb")

    before, before_subs = hashes(course), hashes(subs)
    env = {**{k: v for k, v in os.environ.items() if k != "GLMCOURSE_FAST"}, "HOME": str(home),
           "PYTHONPATH": str(course), "GRADER_API_TOKEN": ENV_SECRET, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", "glmcourse.tools.grade", str(subs), "--out", str(out), "--jobs", "2",
                           "--cell-timeout", "120", "--memory-limit", "1G"], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    server.sock.close()
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "grades.csv", encoding="utf-8", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    report = (out / "report.html").read_text(encoding="utf-8")
    return {"rows": rows, "report": report, "csv": (out / "grades.csv").read_text(encoding="utf-8"),
            "course": course, "before": before, "after": hashes(course), "decoy": decoy, "server": server,
            "subs": subs, "before_subs": before_subs, "stdout": done.stdout}


def isolated(graded) -> bool:
    return "network none" in graded["report"]


def test_every_student_is_a_row_named_by_their_path(graded):
    assert sorted(graded["rows"]) == ["attacker", "carol", "hoarder", "runaway", "sec1/erin", "sec2/erin",
                                      "sec2/frank"]
    assert "graded 7 notebooks of 7 students" in graded["stdout"]


def test_a_runaway_allocation_is_memory_in_its_cell_and_costs_nothing_else(graded):
    runaway = graded["rows"]["runaway"]
    assert [runaway[c] for c in EX04] == ["PASS", "MEMORY", "TODO", "TODO"]
    assert "ran out of memory (--memory-limit 1 GiB)" in graded["report"]
    assert graded["rows"]["carol"]["04:format_example"] == "PASS"
    hoarder = graded["rows"]["hoarder"]  # in the function the checker calls: MEMORY too, not a hint
    assert [hoarder[c] for c in EX04] == ["TODO", "TODO", "TODO", "MEMORY"]


def test_the_attack_ran_and_changed_nothing_outside_its_scratch_copy(graded):
    assert "ATTACK-RAN" in graded["report"]  # it ran, and what it got is in its error
    assert graded["rows"]["attacker"]["04:format_example"] == "CHANGED"  # it names the solutions folder
    assert "calls the reference solution" in graded["report"] and "(it ran: ERROR)" in graded["report"]
    assert hashes(graded["subs"]) == graded["before_subs"]
    if not isolated(graded):
        pytest.skip("no namespaces here: the course tree is protected only by file permissions")
    assert graded["after"] == graded["before"]
    assert (graded["decoy"] / "keep.txt").exists()


def test_no_secret_reaches_the_report_or_the_csv(graded):
    for secret in (SSH_SECRET, HOME_SECRET, ENV_SECRET, "GRADER_API_TOKEN"):
        assert secret not in graded["report"] and secret not in graded["csv"]
    assert "def str2bool(text) -&gt; bool" not in graded["report"]  # the solutions file was not readable


def test_a_socket_learns_nothing(graded):
    if not isolated(graded):
        pytest.skip("no network namespace here (needs root or unprivileged user namespaces)")
    assert graded["server"].clients == 0
    assert NET_SECRET not in graded["report"]


def test_rebinding_patching_and_calling_the_solutions_are_changed(graded):
    rows, report = graded["rows"], graded["report"]
    assert [rows["sec1/erin"][c] for c in EX04] == ["CHANGED"] * 4
    assert "patches the course&#x27;s code: `glmcourse.exercises.data.check_format_example = lambda fn: None`" in report
    assert rows["sec2/erin"]["04:build_labels"] == "CHANGED"
    assert "glmcourse.exercises.data.check_build_labels" in report  # the live checker's code differed
    assert rows["sec2/frank"]["04:str2bool"] == "CHANGED"
    assert "calls the reference solution" in report
    assert all(row["total"] == "0" for name, row in rows.items() if name.startswith("sec"))


def test_a_missing_cell_says_so_and_nothing_about_running(graded):
    carol = graded["rows"]["carol"]
    assert carol["04:truncate_target"] == "CHANGED"
    assert "the exercise cell is missing</pre>" in graded["report"]
    assert "the exercise cell is missing (it ran" not in graded["report"]


def test_the_report_says_how_kernels_were_isolated(graded):
    assert "Students&#x27; kernels: network " in graded["report"] or "Students' kernels: network " in graded["report"]
    assert "--memory-limit 1 GiB, --jobs 2" in graded["report"]


# ------------------------------------------------------------------------------------------ no kernel needed
def test_memory_limit_sizes_and_bad_values():
    from glmcourse.tools import grade

    assert grade.memory_arg("2G") == grade.memory_arg("2GiB") == 2 * 2 ** 30 == grade.DEFAULT_MEMORY
    assert grade.memory_arg("1536M") == 1536 * 2 ** 20 and grade.memory_arg(str(2 ** 30)) == 2 ** 30
    for bad in ("lots", "1K", "-2G", "2P"):
        with pytest.raises(SystemExit) as exit_info:
            grade.main(["subs", "--out", "out", "--memory-limit", bad])
        assert exit_info.value.code == 2


def test_default_jobs_follow_cores_and_memory():
    from glmcourse.tools import grade

    assert 1 <= grade.default_jobs(grade.DEFAULT_MEMORY) <= (os.cpu_count() or 1)
    assert grade.default_jobs(2 ** 40) == 1  # no machine here holds two 1 TiB kernels


def test_section_folders_and_student_folders(tmp_path):
    from glmcourse.tools import grade

    for name in ("sec1/erin.ipynb", "sec2/erin.ipynb", "sec2/bob/01_glm_attention_masks.ipynb",
                 "sec2/bob/notes.txt", "alice.ipynb", "carl/04_data_formatting.ipynb", "carl/extra/x.ipynb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    students = {k: sorted(p.relative_to(tmp_path).as_posix() for p in v) for k, v in grade.collect(tmp_path).items()}
    assert students == {"alice": ["alice.ipynb"], "carl": ["carl/04_data_formatting.ipynb", "carl/extra/x.ipynb"],
                        "empty": [], "sec1/erin": ["sec1/erin.ipynb"], "sec2/erin": ["sec2/erin.ipynb"],
                        "sec2/bob": ["sec2/bob/01_glm_attention_masks.ipynb", "sec2/bob/notes.txt"]}


# ------------------------------------------------------------------ an unprivileged grader: the user-namespace path
PROBE = r"""
import json, os, resource, socket, sys
seen = {"uid": os.getuid(), "data_limit": resource.getrlimit(resource.RLIMIT_DATA)[0]}
seen["secret_visible"] = os.path.exists(sys.argv[1])
try:
    with open(os.path.join(sys.argv[2], "planted.txt"), "w") as handle:
        handle.write("x")
    seen["read_only_write"] = "written"
except OSError as err:
    seen["read_only_write"] = err.strerror
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[3])), timeout=2).close()
    seen["socket"] = "connected"
except OSError as err:
    seen["socket"] = err.strerror or type(err).__name__
print(json.dumps(seen))
"""


def unprivileged_python():
    """A Python that uid 65534 can start (every folder above it searchable by others), or None."""
    for candidate in (sys.executable, shutil.which("python3") or "", "/usr/bin/python3"):
        path = Path(os.path.realpath(candidate)) if candidate else None
        if path and path.is_file() and all(p.stat().st_mode & 0o001 for p in path.parents):
            return str(path)
    return None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to start the launcher as an unprivileged user")
def test_an_unprivileged_grader_isolates_kernels_in_a_user_namespace():
    """The launcher's other path: a grader that is not root makes a user namespace, and in it the same network
    and mount namespaces, hidden folders, read-only course tree and memory cap as a root grader's kernels get."""
    python = unprivileged_python()
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if python is None or subprocess.run(as_nobody + ["unshare", "-U", "-n", "-m", "true"],
                                        capture_output=True).returncode != 0:
        pytest.skip("no Python an unprivileged user can start, or this kernel allows no unprivileged user namespace")
    from glmcourse.tools import grade

    import tempfile

    base = Path(tempfile.mkdtemp(prefix="glmcourse-userns-", dir="/tmp"))  # tmp_path's parents may be mode 700
    try:
        secret, course, scratch = base / "instructor", base / "course", base / "scratch"
        for folder in (secret, course, scratch):
            folder.mkdir()
        (secret / "key.txt").write_text("secret")
        os.chmod(base, 0o755)
        os.chmod(secret, 0o755)
        os.chmod(secret / "key.txt", 0o644)
        os.chown(scratch, 65534, 65534)
        os.chown(course, 65534, 65534)  # writable by the kernel's user, so only the read-only mount can stop it
        (scratch / "connection.json").write_text("{}")
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            cfg = {"scratch": str(scratch), "hide": [str(secret)], "read_only": [str(course)], "memory": 2**30,
                   "address_room": 2**34, "status": str(scratch / "status.json"), "cwd": str(scratch), "user": None}
            launched = subprocess.run(
                as_nobody + [python, "-I", "-c", grade.LAUNCHER, json.dumps(cfg), python, "-I", "-c", PROBE,
                             str(secret / "key.txt"), str(course), str(server.getsockname()[1]), "-f",
                             str(scratch / "connection.json")],
                capture_output=True, text=True, timeout=60, cwd="/")
        assert launched.returncode == 0, launched.stderr[-2000:]
        seen = json.loads(launched.stdout.strip().splitlines()[-1])
        status = json.loads((scratch / "status.json").read_text())
        assert status["network"].startswith("none") and status["hidden"] == [str(secret)], status
        assert "mapped in a user namespace" in status["user"], status
        assert seen["uid"] == 65534 and seen["data_limit"] == 2**30
        assert seen["secret_visible"] is False
        assert seen["read_only_write"] == "Read-only file system" and not (course / "planted.txt").exists()
        assert seen["socket"] != "connected"
    finally:
        shutil.rmtree(base, ignore_errors=True)
