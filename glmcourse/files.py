"""The ONE safe-write helper: atomic replacement, never replacing what the course did not write, SIGTERM as Ctrl-C.

* ``atomic_write(path)``: a text file written via a temp file and renamed into place;
* ``check_replaceable(folder, overwrite, flag)``: refuse to replace a folder holding files no course command
  wrote (a folder the course creates gets ``write_marker(folder, tool)``, the ``.glmcourse-output`` file);
* ``is_same_or_inside(a, b)``: an output equal to or inside an input;
* ``sigterm_as_exit()``: ``kill PID`` runs the same clean-up as Ctrl-C;
* ``read_utf8(path, error)``: a UTF-8 text file, or ``error`` naming the encoding it looks like.
"""
from __future__ import annotations

import os
import signal
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

from glmcourse.i18n import _


@contextmanager
def atomic_write(path, encoding: str = "utf-8"):
    """Write a text file via a hidden temp file in the same folder, renamed into place at the end.

    On any exception (Ctrl-C included) the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(_("{path}: is a directory; give a file name for the output.", path=path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def sigterm_as_exit():
    """While active, SIGTERM (``kill PID``) raises SystemExit, so cleanup code runs as it does on Ctrl-C."""

    def _handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, _handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)




# ------------------------------------------------------------------------------------------ not replacing others' work
OUTPUT_MARKER = ".glmcourse-output"  # written into every folder the course's commands create


class OutputError(ValueError):
    """An output the command refuses to write (it would replace something it did not create)."""


def is_same_or_inside(path, other) -> bool:
    """True when ``path`` is ``other`` or lies inside it (symlinks and ``..`` resolved; neither need exist)."""
    a, b = Path(os.path.realpath(path)), Path(os.path.realpath(other))
    return a == b or b in a.parents


def write_marker(folder, tool: str) -> Path:
    """Mark ``folder`` as written by ``tool`` (a small JSON file, written atomically); returns its path."""
    import json

    marker = Path(folder) / OUTPUT_MARKER
    with atomic_write(marker) as handle:
        json.dump({"written_by": tool, "note": "this folder was created by a glmcourse command; it may "
                   "replace the folder's contents when run again"}, handle)
        handle.write("\n")
    return marker


def foreign_entries(folder, owned=None) -> list[str]:
    """Names in ``folder`` that a course command did not write.

    ``owned`` is a callable ``(folder) -> list of foreign names`` for outputs with their own signature
    (a tokenized dataset: its params file); by default a folder holding the marker file counts as ours.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if owned is not None:
        return sorted(owned(folder))
    names = sorted(p.name for p in folder.iterdir())
    return [] if OUTPUT_MARKER in names else names


def check_replaceable(path, overwrite: bool = False, flag: str = "output", overwrite_flag: str = "--overwrite_output_dir",
                      owned=None) -> None:
    """Raise OutputError unless writing the folder ``path`` replaces nothing but the course's own output.

    Fine: ``path`` does not exist, is empty, was written by a course command (``foreign_entries`` is
    empty), or ``overwrite`` is true (the user asked for it with ``overwrite_flag``).
    """
    path = Path(path)
    if not path.exists() or overwrite:
        return
    if not path.is_dir():
        raise OutputError(_("{flag} {path}: is a file, not a folder; choose another {flag}.", flag=flag, path=path))
    foreign = foreign_entries(path, owned)
    if foreign:
        shown = ", ".join(foreign[:5])
        if len(foreign) > 5:
            shown = _("{names} and {count} more", names=shown, count=len(foreign) - 5)
        raise OutputError(_("{flag} {path}: already holds files this command did not write ({shown}); nothing "
                            "was changed. Choose another {flag}, or pass {overwrite_flag} to replace that "
                            "folder and everything in it.", flag=flag, path=path, shown=shown,
                            overwrite_flag=overwrite_flag))


# ---------------------------------------------------------------------------------------------- reading text
def _guess_encoding(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or raw[:200].count(b"\x00") > 10:
        return "UTF-16"
    try:
        text = raw.decode("gb18030")
    except UnicodeDecodeError:
        pass
    else:
        if any("\u4e00" <= ch <= "\u9fff" for ch in text):
            return "GBK (GB2312/GB18030, the usual Chinese Windows encoding)"
    return "a legacy 8-bit code page such as cp1252/Latin-1"


def _short_codec(guess: str) -> str:
    return {"UTF-16": "utf-16"}.get(guess, "gbk" if guess.startswith("GBK") else "cp1252")


def _encoding_name(guess: str) -> str:
    """``_guess_encoding``'s answer as learner text."""
    if guess.startswith("GBK"):
        return _("GBK (GB2312/GB18030, the usual Chinese Windows encoding)")
    if guess == "UTF-16":
        return guess
    return _("a legacy 8-bit code page such as cp1252/Latin-1")


def read_utf8(path, error: type[Exception] = ValueError) -> str:
    """Read a UTF-8 file (with or without a BOM). A missing file, a folder or another encoding raises ``error``
    with a message that names the likely encoding and how to re-save the file as UTF-8."""
    path = Path(path)
    if not path.exists():
        raise error(_("{path}: no such file. Check the path (it is relative to the current directory).", path=path))
    if path.is_dir():
        raise error(_("{path}: is a directory, expected a file.", path=path))
    raw = path.read_bytes()
    if len(raw) >= 4 and (raw[1::2].count(0) > len(raw) // 4 or raw[0::2].count(0) > len(raw) // 4):
        # UTF-16 without a byte-order mark decodes as "UTF-8" full of NUL characters: say what it is
        raise error(_("{path}: UTF-16 text (no byte-order mark), not UTF-8. Re-save it as UTF-8: in your editor "
                      "choose 'Save with encoding: UTF-8', or run  iconv -f UTF-16LE -t UTF-8 IN > OUT.", path=path))
    try:
        return raw.decode("utf-8-sig")  # utf-8-sig drops a leading BOM and reads plain UTF-8 too
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        guess = _guess_encoding(raw)
        codec = _short_codec(guess)
        command = (f"python -c \"import pathlib; p = pathlib.Path(r'{path}'); "
                   f"p.write_text(p.read_text(encoding='{codec}'), encoding='utf-8')\"")
        raise error(_(
            "{path}: not UTF-8 text (byte 0x{byte:02X} at line {line}, byte column {column}). It looks like "
            "{encoding}. Re-save it as UTF-8: in your editor choose 'Save with encoding: UTF-8', or run  {command}  "
            "(or: iconv -f {codec} -t UTF-8 IN > OUT).", path=path, byte=raw[err.start], line=line, column=column,
            encoding=_encoding_name(guess), command=command, codec=codec.upper())) from None
