"""``make hub``: a JupyterHub for a class on one machine, and the instructor's ``collect`` for ``make grade``.

    python -m glmcourse.hub serve --users class.txt [--port 8000] [--data hub-data] [--memory-limit 2G]
    python -m glmcourse.hub collect [--data hub-data] --out runs/class-submissions [--all] [--overwrite_output_dir]

* The class list is a text file of user names, one a line (``#`` starts a comment). Only those names can
  sign up; each student picks a password on first visit (Sign up), then logs in (NativeAuthenticator).
* Each student's server serves their own workspace, ``DATA/students/NAME/`` (``glmcourse.workspace``:
  lesson copies, course updates merged at each start), with the course's environment as the kernel.
  Their lessons' outputs go to ``DATA/students/NAME/runs/`` (``GLMCOURSE_RUNS_DIR``), not the shared runs/.
* Each student's server and each of their kernels may use ``--memory-limit`` of memory (2 GiB by
  default, as the grader), an operating-system limit set when the server starts.
* Kernels talk to their server over IPC (Unix sockets in a folder only this account can read), not TCP.
* The hub listens on 127.0.0.1 unless ``--ip`` says otherwise; its state (user database, cookie secret)
  is in DATA (git-ignored).

``collect`` copies every student's lessons that differ from the course's copy (``--all``: every lesson)
into OUT/NAME/, the layout ``python -m glmcourse.tools.grade OUT --out DIR`` grades. OUT is created, or replaced
when an earlier collect wrote it; a folder of anyone else's only with ``--overwrite_output_dir``.

Nothing heavy is imported here, so ``--help`` is instant; the hub's configuration is jupyterhub_config.py.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from glmcourse import workspace
from glmcourse.i18n import _

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).resolve().parent / "jupyterhub_config.py"
PROXY = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
GIB = 1024**3
DEFAULT_MEMORY = 2 * GIB  # the grader's default cap
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")  # what JupyterHub, URLs and folder names all accept


class HubError(ValueError):
    """Bad input for the hub: one line, with the fix."""


def read_class_list(path) -> list[str]:
    """The user names in a class list (one a line, ``#`` comments and blank lines skipped), checked."""
    p = Path(path)
    if not p.is_file():
        raise HubError(_("--users {path}: no such file; write the class's user names into it, one a line "
                         "(e.g. alice), and pass it again.", path=path))
    names, seen = [], set()
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not NAME.match(name):
            raise HubError(_("--users {path}, line {number}: {name!r} is not a usable user name; use lower-case "
                             "letters, digits, '.', '_' or '-' (at most 32, starting with a letter or digit).",
                             path=path, number=number, name=name))
        if name in seen:
            raise HubError(_("--users {path}, line {number}: {name} is listed twice; keep one line per student.",
                             path=path, number=number, name=name))
        seen.add(name)
        names.append(name)
    if not names:
        raise HubError(_("--users {path}: no user names in it; write one a line (e.g. alice).", path=path))
    return names


MEMORY_RANGE = (256 * 1024**2, 1024**4)  # a Python kernel needs 256 MiB; 1 TiB is more than any class machine


def parse_size(text) -> int:
    """``2G``, ``2GiB``, ``1536M``, ``2147483648`` -> bytes (powers of 1024), from 256 MiB to 1 TiB."""
    from glmcourse.cli import UsageError, check_size

    try:
        return check_size(text, "--memory-limit", *MEMORY_RANGE)
    except UsageError as err:
        raise HubError(str(err)) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runtime_root(data: Path) -> Path:
    """A short folder for the kernels' Unix sockets (a socket path may hold only ~107 bytes)."""
    import hashlib

    tag = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"glmcourse-hub-{os.getuid()}-{tag}"


def serve(args) -> None:
    """Check everything, then replace this process with JupyterHub (Ctrl-C / SIGTERM stop it and the servers)."""
    users = read_class_list(args.users)
    admins = [name for name in args.admin if name]
    for name in admins:
        if not NAME.match(name):
            raise HubError(_("--admin {name!r}: not a usable user name; use lower-case letters, digits, '.', '_' or "
                             "'-'.", name=name))
    memory = args.memory_limit  # bytes: the guard parsed and checked it
    workspace.check_port(args.port, "--port", args.ip)
    if not os.access(PROXY, os.X_OK):
        raise HubError(_("{path}: missing; install the proxy with `make hub-deps` (npm ci), then run this again.",
                         path=PROXY.relative_to(REPO_ROOT)))
    data = Path(args.data).resolve()
    if data.exists() and not data.is_dir():
        raise HubError(_("--data {path}: is a file; pass a folder for the hub's state and the workspaces.",
                         path=args.data))
    (data / "students").mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)  # the user database and cookie secret
    jupyterhub = Path(sys.executable).parent / "jupyterhub"
    env = dict(os.environ, GLMCOURSE_HUB_DATA=str(data), GLMCOURSE_HUB_USERS=",".join(users),
               GLMCOURSE_HUB_ADMINS=",".join(admins),
               GLMCOURSE_HUB_IP=args.ip, GLMCOURSE_HUB_PORT=str(args.port),
               GLMCOURSE_HUB_API_PORT=str(free_port()), GLMCOURSE_HUB_PROXY_API_PORT=str(free_port()),
               GLMCOURSE_HUB_MEMORY=str(memory), GLMCOURSE_HUB_EDITION=args.edition,
               GLMCOURSE_HUB_RUNTIME=str(runtime_root(data)), GLMCOURSE_HUB_PROXY=str(PROXY))
    print(_("class hub for {count} students on http://{ip}:{port}/ (first visit: Sign up with your user name; "
            "workspaces in {folder}); Ctrl-C stops it", count=len(users), ip=args.ip, port=args.port,
            folder=data / "students"), flush=True)
    os.chdir(data)
    os.execve(str(jupyterhub), [str(jupyterhub), "-f", str(CONFIG)], env)


def changed_lessons(folder: Path, edition: str, everything: bool) -> list[Path]:
    """A student's lesson notebooks: those that differ from the copy the workspace made (all with ``everything``)."""
    import json

    edition_dir = workspace.edition_dir(folder, edition)
    manifest = edition_dir / workspace.MANIFEST
    copied = json.loads(manifest.read_text(encoding="utf-8")).get("lessons", {}) if manifest.exists() else {}
    names = [p.name for p in workspace.course_lessons(edition)]
    return [edition_dir / name for name in names if (edition_dir / name).is_file()
            and (everything or workspace.sha256(edition_dir / name) != copied.get(name))]


def collect(args) -> list[str]:
    """Copy each student's lessons into OUT/NAME/ (a fresh folder each time); returns the summary lines."""
    from glmcourse.cli import UsageError, check_output_dir
    from glmcourse.files import write_marker

    if args.data is None:
        args.data = str(REPO_ROOT / "hub-data")
    students_dir = Path(args.data) / "students"
    if not students_dir.is_dir():
        raise HubError(_("--data {path}: no students/ folder; pass the --data folder `make hub` used "
                         "(default hub-data).", path=args.data))
    try:
        out = check_output_dir(args.out, "--out", inputs=[("--data", Path(args.data))],
                               overwrite=args.overwrite_output_dir)
    except UsageError as err:
        raise HubError(str(err)) from None
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    lines = []
    try:
        for student in sorted(p for p in students_dir.iterdir() if p.is_dir() and NAME.match(p.name)):
            lessons = changed_lessons(student, args.edition, args.all)
            for path in lessons:
                (staging / student.name).mkdir(exist_ok=True)
                shutil.copyfile(path, staging / student.name / path.name)
            if lessons:
                lines.append(_("{name}: {count} lessons ({numbers})", name=student.name, count=len(lessons),
                               numbers=", ".join(p.name[:2] for p in lessons)))
            else:
                lines.append(_("{name}: 0 lessons", name=student.name))
        write_marker(staging, "glmcourse.hub collect")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)  # an earlier collect's output (check_output_dir made sure)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    lines.append(_("collected into {out}; grade them with: make grade SUBMISSIONS={out}", out=out))
    return lines


def build_parser():
    """The command line; the shared guard (glmcourse.cli) checks every value before anything starts."""
    from glmcourse.cli import INPUT_DIR, INPUT_FILE, OUTPUT_DIR, CourseParser, port_arg, size_arg

    parser = CourseParser(prog="python -m glmcourse.hub", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help=_("start the class hub (JupyterHub) in the foreground"))
    run.add_argument("--users", required=True, kind=INPUT_FILE, fmt="text",
                     help=_("class list: a text file of user names, one a line"))
    run.add_argument("--ip", default="127.0.0.1",
                     help=_("address to listen on (default 127.0.0.1: this machine only)"))
    run.add_argument("--port", type=port_arg("--port"), default=8000, help=_("port to listen on (default 8000)"))
    run.add_argument("--admin", action="append", default=[],
                     help=_("an instructor's user name (repeatable): signs up like a student, gets the admin page"))
    run.add_argument("--memory-limit", type=size_arg("--memory-limit", *MEMORY_RANGE), default=DEFAULT_MEMORY,
                     metavar="SIZE",
                     help=_("memory of each student's server and kernel, e.g. 2G or 1536M (default 2G)"))
    # The hub's state and the workspaces: created on first use, added to afterwards, never replaced.
    run.add_argument("--data", default=str(REPO_ROOT / "hub-data"), kind=OUTPUT_DIR, replace_check=False,
                     help=_("the hub's state and the students' workspaces (default hub-data/)"))
    col = sub.add_parser("collect", help=_("copy every student's lessons into OUT/NAME/ for make grade"))
    col.add_argument("--data", kind=INPUT_DIR,  # None: hub-data/, which collect checks itself
                     help=_("the --data folder `make hub` used (default hub-data/)"))
    col.add_argument("--out", required=True, kind=OUTPUT_DIR, overwrite_flag="--overwrite_output_dir",
                     help=_("folder to create (or an earlier collect's, replaced)"))
    col.add_argument("--overwrite_output_dir", action="store_true",
                     help=_("replace --out even if it holds files collect did not write"))
    col.add_argument("--all", action="store_true", help=_("every lesson, also those the student never changed"))
    for cmd in (run, col):
        cmd.add_argument("--edition", default="en", choices=sorted(workspace.EDITIONS),
                         help=_("the lessons students work on: en (notebooks/) or zh (notebooks/zh/)"))
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)  # the shared guard: one line and status 2 for a bad value
    except SystemExit as stop:
        return stop.code
    try:
        if args.command == "serve":
            serve(args)
        else:
            for line in collect(args):
                print(line)
    except (HubError, workspace.WorkspaceError, OSError) as err:
        print(_("error: {message}", message=err), file=sys.stderr)
        return 2
    return 0
