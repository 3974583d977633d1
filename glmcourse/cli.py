"""The ONE shared argument checker of the course's commands, and their clean error exit.

Every seed command and demo checks its flags here, before any slow work (loading a model, reading a
dataset), so bad input gets one line that names the flag, the value, what is allowed and the fix:

* ``int_arg`` / ``float_arg``: argparse ``type=`` callables for a number in a range (NaN and inf are
  refused); ``port_arg`` for ``--port`` (1-65535) and ``check_port_free`` for "is it free here";
* ``check_input_file``, ``check_output_file``, ``check_output_dir``: paths (input exists and is a file;
  output not a folder/file of the wrong kind, not under a file, not equal to or inside the input);
* ``is_offline``: ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` read the way huggingface_hub reads them;
* ``run_cli``: a command body whose course errors become ``error: ...`` on stderr and exit status 1.

Nothing heavy is imported at module level, so ``--help`` stays instant.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from glmcourse.files import OutputError, is_same_or_inside, sigterm_as_exit

TRUE_ENV_WORDS = {"1", "true", "yes", "on"}  # huggingface_hub's ENV_VARS_TRUE_VALUES
SEED_RANGE = (0, 2**32 - 1)  # what numpy's and torch's seeding accept everywhere
PORT_RANGE = (1, 65535)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "ip6-localhost"}


class UsageError(ValueError):
    """A bad flag or path: the message names it, says what is allowed and how to fix it."""


# ------------------------------------------------------------------------------------------ environment
def is_offline(environ=None) -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is 1/true/yes/on (any case), as the hub reads them."""
    env = os.environ if environ is None else environ
    return any(str(env.get(name, "")).strip().lower() in TRUE_ENV_WORDS
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def offline_variable(environ=None) -> str:
    """How the offline switch is set, for messages: e.g. ``HF_HUB_OFFLINE=true`` (empty when online)."""
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if str(env.get(name, "")).strip().lower() in TRUE_ENV_WORDS:
            return f"{name}={env[name]}"
    return ""


# ------------------------------------------------------------------------------------------ numbers
def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "any number"
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def check_int(value, flag: str, lo: int | None = None, hi: int | None = None, example=None) -> int:
    """``value`` as an int in [lo, hi], or a UsageError naming ``flag``, the value, the range and an example."""
    allowed = _interval(lo, hi, False, False)
    fix = f" (e.g. {flag} {example})" if example is not None else ""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and value.is_integer():  # a slider's 100.0
            value = int(value)
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: not a whole number; pass an integer {allowed}{fix}.") from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise UsageError(f"{flag} {value}: out of range; pass an integer {allowed}{fix}.")
    return number


def check_float(value, flag: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                hi_open: bool = False, example=None) -> float:
    """``value`` as a finite float in the interval (open or closed at each end), or a UsageError."""
    allowed = _interval(lo, hi, lo_open, hi_open)
    fix = f" (e.g. {flag} {example})" if example is not None else ""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: not a number; pass a number {allowed}{fix}.") from None
    if not math.isfinite(number):
        raise UsageError(f"{flag} {value}: must be a finite number {allowed}{fix}.")
    too_low = lo is not None and (number <= lo if lo_open else number < lo)
    too_high = hi is not None and (number >= hi if hi_open else number > hi)
    if too_low or too_high:
        raise UsageError(f"{flag} {value}: out of range; pass a number {allowed}{fix}.")
    return number


def _argparse_type(check, flag, **limits):
    def convert(text):
        try:
            return check(text, flag, **limits)
        except UsageError as err:  # argparse prints "prog: error: argument --x: <message>" and exits 2
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{flag} ")) from None

    convert.__name__ = "integer" if check is check_int else "number"  # argparse names the type in some errors
    return convert


def int_arg(flag: str, lo: int | None = None, hi: int | None = None, example=None):
    """An argparse ``type=`` for an int in [lo, hi]: ``p.add_argument("--n", type=int_arg("--n", 1))``."""
    return _argparse_type(check_int, flag, lo=lo, hi=hi, example=example)


def float_arg(flag: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
              hi_open: bool = False, example=None):
    """An argparse ``type=`` for a finite float in a range: ``type=float_arg("--top_p", 0, 1, lo_open=True)``."""
    return _argparse_type(check_float, flag, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, example=example)


def seed_arg(flag: str = "--seed"):
    """An argparse ``type=`` for a random seed: an integer in [0, 2**32 - 1]."""
    return int_arg(flag, *SEED_RANGE, example=42)


# ------------------------------------------------------------------------------------------ network
def port_arg(flag: str = "--port"):
    """An argparse ``type=`` for a TCP port, 1-65535 (whether it is free is ``check_port_free``)."""
    return int_arg(flag, *PORT_RANGE, example=7860)


def is_loopback(host: str) -> bool:
    return str(host).strip().lower() in LOOPBACK_HOSTS or str(host).startswith("127.")


def check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """UsageError unless a server could listen on ``host:port`` now (the port free, the host one of ours)."""
    import socket

    check_int(port, flag, *PORT_RANGE, example=7860)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as err:
        raise UsageError(f"--host {host}: not an address this machine can resolve ({err}); use 127.0.0.1 "
                         f"(this machine only) or one of this machine's own addresses.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is not "busy"
        try:
            probe.bind(address)
        except PermissionError:
            raise UsageError(f"{flag} {port}: this user may not listen on ports below 1024 here; pass a port "
                             f"in 1024-65535 (e.g. {flag} 7860).") from None
        except OSError as err:
            if err.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise UsageError(f"{flag} {port}: already in use on {host} (another server, or an earlier demo "
                                 f"still running); stop it, or pass another port, e.g. {flag} {port + 1 if port < 65535 else 7860}."
                                 ) from None
            raise UsageError(f"--host {host}: cannot listen there ({err.strerror or err}); use 127.0.0.1 or an "
                             f"address of this machine.") from None


# ------------------------------------------------------------------------------------------ paths
def check_input_file(path, flag: str) -> Path:
    """``path`` must exist and be a regular file (not a folder): a UsageError says which and how to fix it."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; pass the file itself (e.g. {flag} {p / 'data.json'}).")
    if not p.exists():
        raise UsageError(f"{flag} {path}: no such file; check the path (relative paths start at "
                         f"{Path.cwd()}).")
    if not p.is_file():
        raise UsageError(f"{flag} {path}: not a regular file; pass a file.")
    return p


def _file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is a file (not a folder), if any."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _not_the_input(path: Path, flag: str, inputs) -> None:
    for input_flag, input_path in inputs:
        if input_path is None:
            continue
        if is_same_or_inside(path, input_path):
            raise UsageError(f"{flag} {path}: is {'the same as' if Path(path).resolve() == Path(input_path).resolve() else 'inside'} "
                             f"{input_flag} {input_path}, so writing it would destroy the input; choose another {flag}.")


def check_output_file(path, flag: str, inputs=()) -> Path:
    """An output *file*: not an existing folder, not under a file, and none of ``inputs`` ((flag, path) pairs)."""
    p = Path(path)
    _not_the_input(p, flag, inputs)
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name, e.g. {flag} {p / 'out.jsonl'}.")
    blocker = _file_above(p)
    if blocker is not None:
        raise UsageError(f"{flag} {path}: {blocker} is a file, so nothing can be written under it; choose "
                         f"another {flag}.")
    return p


def check_output_dir(path, flag: str, inputs=(), overwrite: bool = False, overwrite_flag="--overwrite_output_dir",
                     owned=None) -> Path:
    """An output *folder*: not a file, not under a file, not an input nor around one, and not holding
    someone else's files (see ``glmcourse.files.check_replaceable``) unless ``overwrite``."""
    from glmcourse.files import check_replaceable

    p = Path(path)
    _not_the_input(p, flag, inputs)
    for input_flag, input_path in inputs:  # replacing the folder would delete an input inside it
        if input_path is not None and is_same_or_inside(input_path, p):
            raise UsageError(f"{flag} {path}: holds {input_flag} {input_path}, which replacing the folder would "
                             f"delete; choose another {flag}.")
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a folder; choose another {flag} (a folder name).")
    blocker = _file_above(p)
    if blocker is not None:
        raise UsageError(f"{flag} {path}: {blocker} is a file, so no folder can be made under it; choose "
                         f"another {flag}.")
    try:
        check_replaceable(p, overwrite=overwrite, flag=flag, overwrite_flag=overwrite_flag, owned=owned)
    except OutputError as err:
        raise UsageError(str(err)) from None
    return p


# ------------------------------------------------------------------------------------------ the exit
def one_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def run_cli(main_body) -> int:
    """Run a command's body: a course error -> ``error: ...`` on stderr and exit status 1; Ctrl-C -> 130."""
    import sys

    from glmcourse.data import DataError

    try:
        with sigterm_as_exit():
            main_body()
    except (DataError, UsageError, OutputError, OSError) as err:  # OSError: unreadable input, full disk
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written.", file=sys.stderr)
        return 130
    return 0
