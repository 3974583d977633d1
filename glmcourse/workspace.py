"""The learner's workspace: a git-ignored working copy of the lessons that `make lab` serves.

The committed notebooks stay as the course ships them; the learner runs, edits and saves copies:

* ``work/`` holds the English lessons (``make lab``), ``work/zh/`` the Chinese ones (``make lab-zh``);
  both are created on first use from ``notebooks/`` and ``notebooks/zh/``.
* Beside the lessons, links let the prose's paths open from the workspace: ``glmcourse/`` (the lesson
  modules) and ``notebooks/solutions/``, plus ``solutions/``, which the lessons import the reference
  solutions from (as they do from ``notebooks/``). The lab serves them read-only
  (``glmcourse.workspace_contents``), so the learner's copies are the only files the lab writes.
* Course updates, as nbgitpuller merges them: after a ``git pull``, ``sync`` copies new lessons and
  lessons the learner never changed; a lesson the learner changed is kept, and the course's new
  version is put beside it as ``NAME.course-update.ipynb`` with one line saying so. What was copied
  is recorded (SHA-256 per lesson) in the hidden manifest ``.glmcourse-workspace.json``.
* ``reset 01`` restores one lesson and keeps the learner's copy as ``NAME.mine.ipynb``.
* ``check-port`` refuses a port `make lab` could not listen on, in one line, before anything starts.

    python -m glmcourse.workspace sync [--edition zh] [--dir work]
    python -m glmcourse.workspace reset 01 [--edition zh] [--dir work]
    python -m glmcourse.workspace check-port 8888

Only the standard library is imported, so the port check runs before the set-up has installed anything.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
from pathlib import Path

from glmcourse.i18n import _

REPO_ROOT = Path(__file__).resolve().parent.parent
EDITIONS = {"en": Path("notebooks"), "zh": Path("notebooks") / "zh"}  # lessons' source, under the repo
SUBDIR = {"en": Path("."), "zh": Path("zh")}  # where each edition lives inside a workspace
MANIFEST = ".glmcourse-workspace.json"
# name in the workspace -> the course's folder: the modules and solutions the prose names, and
# ``solutions`` itself, which the lessons import (``importlib.import_module("solutions.01_...")``).
LINKS = {Path("glmcourse"): Path("glmcourse"), Path("notebooks") / "solutions": Path("notebooks") / "solutions",
         Path("solutions"): Path("notebooks") / "solutions"}
UPDATE_SUFFIX = ".course-update"  # the course's new version of a lesson the learner changed
MINE_SUFFIX = ".mine"  # the learner's copy that `reset` set aside


class WorkspaceError(ValueError):
    """A problem with the workspace or the arguments: one line, with the fix."""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def course_lessons(edition: str, repo: Path = REPO_ROOT) -> list[Path]:
    """The lesson notebooks of an edition, in order (top level of notebooks/ or notebooks/zh/)."""
    return sorted((repo / EDITIONS[edition]).glob("[0-9][0-9]_*.ipynb"))


def edition_dir(workspace: Path, edition: str) -> Path:
    return Path(workspace) / SUBDIR[edition]


def _copy(src: Path, dest: Path) -> None:
    """Copy via a hidden temp file renamed into place, so an interrupted copy leaves no half lesson."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


def _free_name(path: Path, suffix: str) -> Path:
    """``NAME<suffix>.ipynb``, or ``NAME<suffix>-2.ipynb`` ... when taken: nothing is ever overwritten."""
    stem = path.name[: -len(".ipynb")]
    candidate, n = path.with_name(f"{stem}{suffix}.ipynb"), 2
    while candidate.exists() or candidate.is_symlink():
        candidate, n = path.with_name(f"{stem}{suffix}-{n}.ipynb"), n + 1
    return candidate


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        return {"lessons": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("lessons"), dict):
            raise ValueError(_("no 'lessons' table"))
        return data
    except ValueError as err:
        raise WorkspaceError(_("{path}: unreadable workspace manifest ({error}); move it aside and run `make lab` "
                               "again (your lessons are kept; changed ones get a copy beside).", path=path,
                               error=err)) from None


def _write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def _link(folder: Path, name: Path, target: Path, repo: Path) -> None:
    """``folder/name`` -> ``target``: relative inside the course's folder (it may be moved), absolute outside
    (a class hub's workspaces). An existing link or file of the learner's is left alone."""
    link = folder / name
    if link.is_symlink() or link.exists():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    inside = Path(os.path.realpath(link.parent)).is_relative_to(Path(os.path.realpath(repo)))
    link.symlink_to(os.path.relpath(target, link.parent) if inside else target.resolve(), target_is_directory=True)


def sync(workspace, edition: str = "en", repo: Path = REPO_ROOT) -> list[str]:
    """Create or update an edition's workspace from the course; returns the one-line messages for the learner.

    Per lesson, with ``known`` the hash last copied (the manifest), ``course`` the course's and
    ``theirs`` the workspace file's: missing -> copied; course == known -> nothing to do; course changed
    and theirs == known -> replaced; course changed and theirs changed -> theirs kept, course's beside it.
    """
    if edition not in EDITIONS:
        raise WorkspaceError(_("--edition {edition!r}: unknown; pass one of {choices}.", edition=edition,
                               choices=", ".join(EDITIONS)))
    repo = Path(repo)
    folder = edition_dir(workspace, edition)
    for inside in (repo / "notebooks", repo / "tests", repo / "glmcourse"):
        real, course = Path(os.path.realpath(workspace)), Path(os.path.realpath(inside))
        if real == course or course in real.parents:
            raise WorkspaceError(_("WORKSPACE={workspace}: inside the course's {folder}/, where `make test` would "
                                   "collect your lessons; pick a folder outside it (default: work/).",
                                   workspace=workspace, folder=inside.name))
    if folder.exists() and not folder.is_dir():
        raise WorkspaceError(_("{folder}: is a file, not a folder; move it aside or pass another --dir.",
                               folder=folder))
    lessons = course_lessons(edition, repo)
    if not lessons:
        raise WorkspaceError(_("{folder}: no lessons (NN_*.ipynb) to copy; run this from the course's folder.",
                               folder=repo / EDITIONS[edition]))
    created = not (folder / MANIFEST).exists()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(folder)
    known = manifest["lessons"]
    messages = []
    for src in lessons:
        dest, course = folder / src.name, sha256(src)
        if not dest.exists():
            _copy(src, dest)
            if src.name in known and not created:
                messages.append(_("{path}: restored from the course (it had been deleted)", path=dest))
            elif not created:
                messages.append(_("{path}: new lesson from the course update", path=dest))
            known[src.name] = course
            continue
        if known.get(src.name) == course:
            continue  # the course did not change this lesson since it was copied
        theirs = sha256(dest)
        if theirs == course:
            known[src.name] = course  # already the same (e.g. a manifest that was lost)
        elif src.name in known and theirs == known[src.name]:
            _copy(src, dest)
            known[src.name] = course
            messages.append(_("{path}: updated to the course's new version (you had not changed it)", path=dest))
        else:
            beside = _free_name(dest, UPDATE_SUFFIX)
            _copy(src, beside)
            known[src.name] = course
            messages.append(_("{path}: kept your changed copy; the course's new version is beside it as {name}",
                              path=dest, name=beside.name))
    # The links in the edition's folder, and in the workspace's top folder too: the Chinese lessons' first cell
    # moves from work/zh to work/ (as from notebooks/zh to notebooks/), and then imports solutions from there.
    for top in {folder, Path(workspace)}:
        for name, target in LINKS.items():
            _link(top, name, repo / target, repo)
    manifest["source"] = str(EDITIONS[edition])
    _write_manifest(folder, manifest)
    if created:
        messages.insert(0, _("{folder}: your workspace, {count} lessons copied from {source}/ (run and save them "
                             "here; the course's files stay as they are)", folder=folder, count=len(lessons),
                             source=EDITIONS[edition]))
    return messages


def find_lesson(lesson: str, edition: str, repo: Path = REPO_ROOT) -> Path:
    """The course lesson named by ``lesson``: its number (1, 01), file name, or name without .ipynb."""
    lessons = course_lessons(edition, repo)
    key = str(lesson).strip()
    key = key.zfill(2) if key.isdigit() else key.removesuffix(".ipynb")
    matches = [p for p in lessons if p.stem == key or p.name[:2] == key]
    if len(matches) != 1:
        names = ", ".join(p.name[:2] for p in lessons)
        raise WorkspaceError(_("L={lesson}: no such lesson; pass its number, one of {names} (e.g. make reset-lesson "
                               "L=01).", lesson=lesson, names=names))
    return matches[0]


def reset(workspace, lesson: str, edition: str = "en", repo: Path = REPO_ROOT) -> str:
    """Put the course's version of one lesson back in the workspace; the learner's copy is kept beside it."""
    src = find_lesson(lesson, edition, Path(repo))
    folder = edition_dir(workspace, edition)
    if not (folder / MANIFEST).exists():
        sync(workspace, edition, repo)
        return _("{path}: the course's version (workspace created)", path=folder / src.name)
    manifest = _read_manifest(folder)
    dest = folder / src.name
    course = sha256(src)
    if dest.exists() and sha256(dest) == course:
        manifest["lessons"][src.name] = course
        _write_manifest(folder, manifest)
        return _("{path}: already the course's version; nothing to reset", path=dest)
    aside = None
    if dest.exists():
        aside = _free_name(dest, MINE_SUFFIX)
        os.replace(dest, aside)
    _copy(src, dest)
    manifest["lessons"][src.name] = course
    _write_manifest(folder, manifest)
    if aside is not None:
        return _("{path}: reset to the course's version; your copy is kept as {name}", path=dest, name=aside.name)
    return _("{path}: reset to the course's version", path=dest)


def port_number(value, name: str = "LAB_PORT") -> int:
    """``value`` as a whole number in 1-65535, or a one-line WorkspaceError naming ``name``."""
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise WorkspaceError(_("{name}={value}: not a port; pass a whole number in 1-65535, e.g. {name}=8889.",
                               name=name, value=value))
    return int(text)


def check_port(value, name: str = "LAB_PORT", host: str = "127.0.0.1") -> int:
    """``value`` as a port a server could listen on at ``host`` now, or a one-line WorkspaceError."""
    example = "8889"
    port = port_number(value, name)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use", as for servers
        try:
            probe.bind((host, port))
        except PermissionError:
            raise WorkspaceError(_("{name}={port}: this user may not listen on ports below 1024; pass one in "
                                   "1024-65535, e.g. {name}={example}.", name=name, port=port,
                                   example=example)) from None
        except OSError as err:
            if err.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                other = port + 1 if port < 65535 else 8889
                raise WorkspaceError(_("{name}={port}: already in use on {host} (another server, or an earlier lab "
                                       "still running); stop it or pass another, e.g. {name}={other}.", name=name,
                                       port=port, host=host, other=other)) from None
            raise WorkspaceError(_("{name}={port}: cannot listen on {host} ({error}).", name=name, port=port, host=host,
                                   error=err.strerror or err)) from None
    return port


def _lab_port(text: str) -> int:
    """check-port's argument: the range is checked while parsing, in the words `make lab` users know."""
    from glmcourse.cli import LineError

    try:
        return port_number(text)
    except WorkspaceError as err:
        raise LineError(str(err)) from None


_lab_port.limits = {"lo": 1, "hi": 65535, "integer": True}  # the guard's NUMBER kind


def build_parser():
    """The command line; glmcourse.cli (standard library only) checks every value before anything runs."""
    from glmcourse.cli import NUMBER, OUTPUT_DIR, CourseParser

    parser = CourseParser(prog="python -m glmcourse.workspace", description=_(
        "The learner's workspace: a git-ignored working copy of the lessons that `make lab` serves."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("sync", _("create the workspace, or bring a course update into it")),
                       ("reset", _("restore one lesson; your copy is kept as NAME.mine.ipynb"))):
        cmd = sub.add_parser(name, help=text, description=text)
        if name == "reset":
            cmd.add_argument("lesson", help=_("the lesson's number (01) or file name"))
        # Lessons are added beside the learner's files and a changed lesson is never overwritten, so an
        # existing folder is fine (sync refuses the course's own folders itself).
        cmd.add_argument("--dir", default="work", kind=OUTPUT_DIR, replace_check=False,
                         help=_("the workspace folder (default: work)"))
        cmd.add_argument("--edition", default="en", choices=sorted(EDITIONS),
                         help=_("en: notebooks/ into DIR; zh: notebooks/zh/ into DIR/zh (default: en)"))
    port = sub.add_parser("check-port", help=_("exit 2 with one line unless a server could listen on this port"))
    port.add_argument("port", metavar="LAB_PORT", type=_lab_port, kind=NUMBER,
                      help=_("the port `make lab` would serve on (1-65535, free on 127.0.0.1)"))
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)  # the shared guard: one line and status 2 for a bad value
    except SystemExit as stop:
        return stop.code
    try:
        if args.command == "check-port":
            check_port(args.port)
        elif args.command == "sync":
            for line in sync(Path(args.dir), args.edition):
                print(line)
        else:
            print(reset(Path(args.dir), args.lesson, args.edition))
    except (WorkspaceError, OSError) as err:
        print(_("error: {message}", message=err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
