"""The ONE shared argument checker of the course's commands, and their clean error exit.

Every seed command and demo checks its flags here, before any slow work (loading a model, reading a
dataset), so bad input gets one line that names the flag, the value, what is allowed and the fix:

* ``int_arg`` / ``float_arg``: argparse ``type=`` callables for a number in a range (NaN and inf are
  refused); ``port_arg`` for ``--port`` (1-65535) and ``check_port_free`` for "is it free here";
* ``check_input_file``, ``check_output_file``, ``check_output_dir``: paths (input exists and is a file;
  output not a folder/file of the wrong kind, not under a file, not equal to or inside the input);
* ``is_offline``: ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` read the way huggingface_hub reads them;
* ``run_cli``: a command body whose course errors become ``error: ...`` on stderr and exit status 1;
* ``CourseParser`` and ``COMMANDS``: every command's parser, each flag declared as one kind (input file,
  input folder, model folder, output file, output folder, number, choice); the guard checks each value by
  its kind right after parsing (exit status 2, one line), and tests/test_command_registry.py tries the
  hostile values of each kind on every flag of every registered command.

Nothing heavy is imported at module level, so ``--help`` stays instant.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from glmcourse.files import OutputError, is_same_or_inside, sigterm_as_exit
from glmcourse.i18n import _

TRUE_ENV_WORDS = {"1", "true", "yes", "on"}  # huggingface_hub's ENV_VARS_TRUE_VALUES
SEED_RANGE = (0, 2**32 - 1)  # what numpy's and torch's seeding accept everywhere
PORT_RANGE = (1, 65535)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "ip6-localhost"}


class UsageError(ValueError):
    """A bad flag or path: the message names it, says what is allowed and how to fix it."""


class LineError(Exception):
    """Raised by an argparse ``type=`` whose message is already the whole line, naming the setting itself
    (a Make variable: ``LAB_PORT=abc: not a port; ...``): ``CourseParser`` prints it as it is, without
    argparse's ``argument X:`` in front. (Not a ValueError, which argparse would turn into "invalid value".)"""


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
    """The allowed range, a clause of the messages below: ``any number``, ``>= 1`` or ``in [0, 1)``."""
    if lo is None and hi is None:
        return _("any number")
    if hi is None:  # a comparison reads the same in every language
        return f"{'>' if lo_open else '>='} {lo}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi}"
    return _("in {interval}", interval=f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def check_int(value, flag: str, lo: int | None = None, hi: int | None = None, example=None) -> int:
    """``value`` as an int in [lo, hi], or a UsageError naming ``flag``, the value, the range and an example."""
    fields = dict(flag=flag, value=value, allowed=_interval(lo, hi, False, False), example=example)
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float) and value.is_integer():  # a slider's 100.0
            value = int(value)
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise UsageError(
            _("{flag} {value!r}: not a whole number; pass an integer {allowed}.", **fields) if example is None
            else _("{flag} {value!r}: not a whole number; pass an integer {allowed} (e.g. {flag} {example}).",
                   **fields)) from None
    fields["value"] = value
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise UsageError(
            _("{flag} {value}: out of range; pass an integer {allowed}.", **fields) if example is None
            else _("{flag} {value}: out of range; pass an integer {allowed} (e.g. {flag} {example}).", **fields))
    return number


def check_float(value, flag: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                hi_open: bool = False, example=None) -> float:
    """``value`` as a finite float in the interval (open or closed at each end), or a UsageError."""
    fields = dict(flag=flag, value=value, allowed=_interval(lo, hi, lo_open, hi_open), example=example)
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except (TypeError, ValueError):
        raise UsageError(
            _("{flag} {value!r}: not a number; pass a number {allowed}.", **fields) if example is None
            else _("{flag} {value!r}: not a number; pass a number {allowed} (e.g. {flag} {example}).", **fields)
        ) from None
    if not math.isfinite(number):
        raise UsageError(
            _("{flag} {value}: must be a finite number {allowed}; pass one in that range.", **fields) if example is None
            else _("{flag} {value}: must be a finite number {allowed}; pass one, e.g. {flag} {example}.", **fields))
    too_low = lo is not None and (number <= lo if lo_open else number < lo)
    too_high = hi is not None and (number >= hi if hi_open else number > hi)
    if too_low or too_high:
        raise UsageError(
            _("{flag} {value}: out of range; pass a number {allowed}.", **fields) if example is None
            else _("{flag} {value}: out of range; pass a number {allowed} (e.g. {flag} {example}).", **fields))
    return number


def _argparse_type(check, flag, **limits):
    def convert(text):
        try:
            return check(text, flag, **limits)
        except UsageError as err:  # argparse prints "prog: error: argument --x: <message>" and exits 2
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{flag} ")) from None

    convert.__name__ = "integer" if check is check_int else "number"  # argparse names the type in some errors
    convert.limits = dict(limits, integer=check is check_int)  # the guard's NUMBER kind; the registry test reads it
    return convert


def int_arg(flag: str, lo: int | None = None, hi: int | None = None, example=None):
    """An argparse ``type=`` for an int in [lo, hi]: ``p.add_argument("--n", type=int_arg("--n", 1))``."""
    return _argparse_type(check_int, flag, lo=lo, hi=hi, example=example)


def float_arg(flag: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
              hi_open: bool = False, example=None):
    """An argparse ``type=`` for a finite float in a range: ``type=float_arg("--top_p", 0, 1, lo_open=True)``."""
    return _argparse_type(check_float, flag, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, example=example)


SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def check_size(value, flag: str, lo: int | None = None, hi: int | None = None, example="2G") -> int:
    """A memory size in bytes: a number of bytes, or one with K, M, G, T (binary: ``2G`` = ``2GiB`` = 2**31),
    in [lo, hi] bytes, or a UsageError naming ``flag``."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value), re.I)
    if not match:
        raise UsageError(_("{flag} {value}: not a size; pass e.g. {example}, 1536M or a number of bytes.",
                           flag=flag, value=value, example=example))
    size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])

    def shown(n):
        for unit in "TGMK":
            if n % SIZE_UNITS[unit.lower()] == 0:
                return f"{n // SIZE_UNITS[unit.lower()]}{unit}"
        return _("{n} bytes", n=n)

    if lo is not None and size < lo:
        raise UsageError(_("{flag} {value}: too small; pass at least {size} (e.g. {example}).",
                           flag=flag, value=value, size=shown(lo), example=example))
    if hi is not None and size > hi:
        raise UsageError(_("{flag} {value}: too large; pass at most {size} (e.g. {example}).",
                           flag=flag, value=value, size=shown(hi), example=example))
    return size


def size_arg(flag: str, lo: int, hi: int, example="2G"):
    """An argparse ``type=`` for a memory size (``2G``, ``1536M``, bytes) in [lo, hi] bytes: the guard's NUMBER kind."""
    return _argparse_type(check_size, flag, lo=lo, hi=hi, example=example)


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
        raise UsageError(_("--host {host}: not an address this machine can resolve ({reason}); use 127.0.0.1 "
                           "(this machine only) or one of this machine's own addresses.", host=host, reason=err)
                         ) from None
    family, kind, proto, _canonname, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is not "busy"
        try:
            probe.bind(address)
        except PermissionError:
            raise UsageError(_("{flag} {port}: this user may not listen on ports below 1024 here; pass a port "
                               "in 1024-65535 (e.g. {flag} 7860).", flag=flag, port=port)) from None
        except OSError as err:
            if err.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise UsageError(_("{flag} {port}: already in use on {host} (another server, or an earlier demo "
                                   "still running); stop it, or pass another port, e.g. {flag} {other}.",
                                   flag=flag, port=port, host=host, other=port + 1 if port < 65535 else 7860)
                                 ) from None
            raise UsageError(_("--host {host}: cannot listen there ({reason}); use 127.0.0.1 or an address of this "
                               "machine.", host=host, reason=err.strerror or err)) from None


# ------------------------------------------------------------------------------------------ paths
def check_input_file(path, flag: str) -> Path:
    """``path`` must exist and be a regular file (not a folder): a UsageError says which and how to fix it."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(_("{flag} {path}: is a folder; pass the file itself (e.g. {flag} {example}).",
                           flag=flag, path=path, example=p / "data.json"))
    if not p.exists():
        raise UsageError(_("{flag} {path}: no such file; check the path (relative paths start at {cwd}).",
                           flag=flag, path=path, cwd=Path.cwd()))
    if not p.is_file():
        raise UsageError(_("{flag} {path}: not a regular file; pass a file.", flag=flag, path=path))
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
        if not is_same_or_inside(path, input_path):
            continue
        fields = dict(flag=flag, path=path, input_flag=input_flag, input_path=input_path)
        if Path(path).resolve() == Path(input_path).resolve():
            raise UsageError(_("{flag} {path}: is the same as {input_flag} {input_path}, so writing it would destroy "
                               "the input; choose another {flag}.", **fields))
        raise UsageError(_("{flag} {path}: is inside {input_flag} {input_path}, so writing it would destroy the "
                           "input; choose another {flag}.", **fields))


def check_output_file(path, flag: str, inputs=()) -> Path:
    """An output *file*: not an existing folder, not under a file, and none of ``inputs`` ((flag, path) pairs)."""
    p = Path(path)
    _not_the_input(p, flag, inputs)
    if p.is_dir():
        raise UsageError(_("{flag} {path}: is a folder; give a file name, e.g. {flag} {example}.",
                           flag=flag, path=path, example=p / "out.jsonl"))
    blocker = _file_above(p)
    if blocker is not None:
        raise UsageError(_("{flag} {path}: {blocker} is a file, so nothing can be written under it; choose "
                           "another {flag}.", flag=flag, path=path, blocker=blocker))
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
            raise UsageError(_("{flag} {path}: holds {input_flag} {input_path}, which replacing the folder would "
                               "delete; choose another {flag}.", flag=flag, path=path, input_flag=input_flag,
                               input_path=input_path))
    if p.exists() and not p.is_dir():
        raise UsageError(_("{flag} {path}: is a file, not a folder; choose another {flag} (a folder name).",
                           flag=flag, path=path))
    blocker = _file_above(p)
    if blocker is not None:
        raise UsageError(_("{flag} {path}: {blocker} is a file, so no folder can be made under it; choose "
                           "another {flag}.", flag=flag, path=path, blocker=blocker))
    try:
        check_replaceable(p, overwrite=overwrite, flag=flag, overwrite_flag=overwrite_flag, owned=owned)
    except OutputError as err:
        raise UsageError(str(err)) from None
    return p


def clean_text(text: str) -> str:
    """``text`` with any lone surrogate (text that is not valid Unicode, e.g. from a broken paste or a
    ``\\ud800`` escape) replaced by U+FFFD, so no encoder downstream fails on it; valid text is unchanged."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ------------------------------------------------------------------------------------------ the exit
def one_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def run_cli(main_body, errors: tuple = (), interrupted: str | None = None) -> int:
    """Run a command's body: a course error (or one of the command's own ``errors``) -> ``error: ...`` on stderr
    and exit status 1; Ctrl-C -> ``interrupted`` (default: nothing was written) and 130."""
    import sys

    from glmcourse.data import DataError

    try:
        with sigterm_as_exit():
            main_body()
    except (DataError, UsageError, OutputError, OSError, *errors) as err:  # OSError: unreadable input, full disk
        print(_("error: {message}", message=err), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(interrupted or _("interrupted: nothing was written."), file=sys.stderr)
        return 130
    return 0


# ------------------------------------------------------------------------------------------ the guard
# Every flag of every command is one of these kinds, declared where the flag is added
# (``parser.add_argument("--data_path", kind=INPUT_FILE, fmt="json")``); ``CourseParser`` checks each
# value by its kind right after parsing, before any slow work, and refuses a bad one with one line and
# exit status 2. Flags whose kind is not given get SWITCH (store_true), CHOICE (choices=), NUMBER
# (int_arg/float_arg/seed_arg/port_arg) or TEXT.
INPUT_FILE = "input file"
INPUT_DIR = "input folder"
OUTPUT_FILE = "output file"
OUTPUT_DIR = "output folder"
MODEL_DIR = "model folder"
NUMBER = "number"
CHOICE = "choice"
TEXT = "text"
SWITCH = "switch"
KINDS = (INPUT_FILE, INPUT_DIR, OUTPUT_FILE, OUTPUT_DIR, MODEL_DIR, NUMBER, CHOICE, TEXT, SWITCH)
INPUT_KINDS = (INPUT_FILE, INPUT_DIR, MODEL_DIR)
FORMATS = ("json", "jsonl", "ipynb", "text", "any")  # what an INPUT_FILE's content must be

# Every ``python -m glmcourse.X`` command: its name -> "module:function returning its parser". A
# command with sub-commands lists each (``"nbtools run"``). tests/test_command_registry.py checks that
# every module with a ``__main__`` block is listed here, then tries hostile values on every flag.
COMMANDS = {
    "glmcourse.cover_alpaca2jsonl": "glmcourse.cover_alpaca2jsonl:build_parser",
    "glmcourse.tokenize_dataset_rows": "glmcourse.tokenize_dataset_rows:build_parser",
    "glmcourse.finetune": "glmcourse.finetune:build_parser",
    "glmcourse.ptuning": "glmcourse.ptuning_train:build_parser",
    "glmcourse.ptuning convert": "glmcourse.ptuning_train:convert_parser",
    "glmcourse.tools.make_data": "glmcourse.tools.make_data:build_parser",
    "glmcourse.tools.build_course_model": "glmcourse.tools.build_course_model:build_parser",
    "glmcourse.cli_demo": "glmcourse.cli_demo:build_parser",
    "glmcourse.web_demo": "glmcourse.web_demo:build_parser",
    "glmcourse.tools.site": "glmcourse.tools.site:build_parser",
    "glmcourse.bench": "glmcourse.bench:build_parser",
    "glmcourse.tools.nbtools": "glmcourse.tools.nbtools:build_parser",
    "glmcourse.adapters": "glmcourse.adapters:build_parser",
    "glmcourse.memory": "glmcourse.memory:build_parser",
    "glmcourse.doctor": "glmcourse.doctor:build_parser",
    "glmcourse.tools.grade": "glmcourse.tools.grade:build_parser",
    "glmcourse.bench gpu": "glmcourse.bench.gpu:build_parser",
    "glmcourse.workspace": "glmcourse.workspace:build_parser",
    "glmcourse.hub": "glmcourse.hub:build_parser",
    "glmcourse.thudm_format": "glmcourse.thudm_format:build_parser",
    "glmcourse.tools.zh_edition": "glmcourse.tools.zh_edition:build_parser",
    "glmcourse": "glmcourse.__main__:build_parser",
}


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of a registered command (``COMMANDS``); sub-commands are reached through it."""
    import importlib

    module, function = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), function)()


class GuardExit(SystemExit):
    """The guard refused a path or a number (a SystemExit with status 2; the line is already printed)."""


class _LanguageHelp(argparse.HelpFormatter):
    """argparse's own help words ("usage: ", " (default: ...)") in the learner's language."""

    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, _("usage: ") if prefix is None else prefix)

    def _get_help_string(self, action):  # ArgumentDefaultsHelpFormatter appends its English " (default: ...)"
        return super()._get_help_string(action).replace(
            " (default: %(default)s)", _(" (default: {default})", default="%(default)s"))


def argparse_error_text(text: str) -> str:
    """argparse's own error texts (English in every Python) in the learner's language; other texts unchanged.
    Each template gives back the English text it matched, so English output is argparse's own."""
    import re

    def match(pattern):
        return re.fullmatch(pattern, text, re.S)

    if m := match(r"argument ([^:]+): (.+)"):
        return _("argument {argument}: {problem}", argument=m[1], problem=argparse_error_text(m[2]))
    if m := match(r"unrecognized arguments: (.+)"):
        return _("unrecognized arguments: {arguments}", arguments=m[1])
    if m := match(r"the following arguments are required: (.+)"):
        return _("the following arguments are required: {arguments}", arguments=m[1])
    if m := match(r"invalid choice: (.+) \(choose from (.+)\)"):
        return _("invalid choice: {value} (choose from {choices})", value=m[1], choices=m[2])
    if m := match(r"invalid (\S+) value: (.+)"):
        return _("invalid {type} value: {value}", type=m[1], value=m[2])
    if m := match(r"ambiguous option: (\S+) could match (.+)"):
        return _("ambiguous option: {option} could match {matches}", option=m[1], matches=m[2])
    if m := match(r"one of the arguments (.+) is required"):
        return _("one of the arguments {arguments} is required", arguments=m[1])
    if m := match(r"not allowed with argument (.+)"):
        return _("not allowed with argument {argument}", argument=m[1])
    if m := match(r"ignored explicit argument (.+)"):
        return _("ignored explicit argument {value}", value=m[1])
    return {"expected one argument": _("expected one argument"),
            "expected at most one argument": _("expected at most one argument"),
            "expected at least one argument": _("expected at least one argument")}.get(text, text)


class CourseParser(argparse.ArgumentParser):
    """argparse with a ``kind=`` per flag, checked by ``guard`` after parsing; errors are one line, exit 2.
    argparse's own words (usage, section titles, -h's help, its error texts) come in the learner's language."""

    error_prefix = None  # None: ``error: `` in the learner's language; a command may put its own name there

    def __init__(self, *args, formatter_class=argparse.HelpFormatter, **kwargs):
        if not issubclass(formatter_class, _LanguageHelp):
            formatter_class = type(f"Course{formatter_class.__name__}", (_LanguageHelp, formatter_class), {})
        super().__init__(*args, formatter_class=formatter_class, **kwargs)
        self._positionals.title = _("positional arguments")
        self._optionals.title = _("options")
        for action in self._actions:
            if isinstance(action, argparse._HelpAction):
                action.help = _("show this help message and exit")

    def add_argument(self, *args, kind=None, fmt=None, owned=None, overwrite_flag=None, same_as_input_ok=False,
                     replace_check=True, course_model_ok=False, within_context=False, **kwargs):
        action = super().add_argument(*args, **kwargs)
        action.kind = kind or _default_kind(action)
        if action.kind not in KINDS:
            raise ValueError(f"{action.kind!r}: not one of the guard's kinds {KINDS}")
        if fmt is not None and fmt not in FORMATS:
            raise ValueError(f"fmt {fmt!r}: not one of {FORMATS}")
        action.fmt, action.owned, action.overwrite_flag = fmt, owned, overwrite_flag
        action.replace_check, action.course_model_ok = replace_check, course_model_ok
        action.same_as_input_ok, action.within_context = same_as_input_ok, within_context
        return action

    def error(self, message):  # one line (no usage block): what, where and the fix
        import sys

        message = argparse_error_text(" ".join(str(message).split("\n")))
        if not message.rstrip().endswith((".", ")", "。", "）")):
            message = _("{message} (see {prog} --help)", message=message, prog=self.prog)
        line = _("error: {message}", message=message) if self.error_prefix is None else self.error_prefix + message
        print(line, file=sys.stderr)  # as run_cli's errors: one line, "error: " first
        raise SystemExit(2)

    check_values = True  # False: types and choices only, none of the guard's file and range checks

    def parse_known_args(self, args=None, namespace=None):
        try:
            namespace, rest = super().parse_known_args(args, namespace)
        except LineError as err:  # a type= whose message is the whole line
            self.error(str(err))
        if not self.check_values:  # parse only (lesson 04 shows how a flag reads, with no files at hand)
            return namespace, rest
        try:
            guard(self, namespace)
        except UsageError as err:
            try:
                self.error(str(err))
            except SystemExit:
                raise GuardExit(2) from None
        return namespace, rest


def _default_kind(action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                           argparse._VersionAction, argparse._SubParsersAction, argparse._StoreConstAction)):
        return SWITCH
    if action.choices is not None:
        return CHOICE
    if getattr(action.type, "limits", None) is not None:
        return NUMBER
    return TEXT


def flag_name(action) -> str:
    if action.option_strings:
        return max(action.option_strings, key=len)
    return action.metavar if isinstance(action.metavar, str) else action.dest


def _values(value):
    if value is None or value is argparse.SUPPRESS:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def guard(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    """Check every path flag of ``parser`` in ``ns`` by its kind (numbers and choices argparse has checked)."""
    actions = [a for a in parser._actions if getattr(a, "kind", None) in INPUT_KINDS + (OUTPUT_FILE, OUTPUT_DIR)]
    inputs = [(flag_name(a), str(v)) for a in actions if a.kind in INPUT_KINDS
              for v in _values(getattr(ns, a.dest, None))]
    for action in actions:
        flag = flag_name(action)
        for value in _values(getattr(ns, action.dest, None)):
            value = str(value)
            if action.kind == INPUT_FILE:
                check_input_content(value, flag, action.fmt or "any")
            elif action.kind == INPUT_DIR:
                check_input_dir(value, flag)
            elif action.kind == MODEL_DIR:
                check_model_dir(value, flag)
            else:
                others = [(f, p) for f, p in inputs if f != flag]
                overwrite = bool(action.overwrite_flag and getattr(ns, action.overwrite_flag.lstrip("-"), False))
                if not action.course_model_ok:
                    check_not_course_model(value, flag)
                if action.kind == OUTPUT_FILE:
                    check_output_file(value, flag, inputs=others if not action.same_as_input_ok else ())
                    if Path(value).is_file() and not overwrite and not (action.owned and action.owned(Path(value))):
                        raise UsageError(_overwrite_refusal(flag, value, action.overwrite_flag))
                else:
                    check_output_dir(value, flag, inputs=others, overwrite=overwrite or not action.replace_check,
                                     overwrite_flag=action.overwrite_flag or "--overwrite_output_dir",
                                     owned=action.owned)
    _check_context(parser, ns)


def _overwrite_refusal(flag: str, path: str, overwrite_flag: str | None) -> str:
    """An output file that is there and not this command's: what the guard says."""
    if overwrite_flag:
        return _("{flag} {path}: already exists and was not written by this command; nothing was changed. "
                 "Choose another {flag}, or pass {overwrite_flag} to replace it.",
                 flag=flag, path=path, overwrite_flag=overwrite_flag)
    return _("{flag} {path}: already exists and was not written by this command; nothing was changed. "
             "Choose another {flag}.", flag=flag, path=path)


def model_context(path) -> int | None:
    """A model folder's context length from its config.json (None for a hub id or no readable config)."""
    import json

    try:
        data = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    for key in ("max_sequence_length", "seq_length", "max_position_embeddings"):
        if isinstance(data, dict) and isinstance(data.get(key), int):
            return data[key]
    return None


def _check_context(parser, ns) -> None:
    """Numbers declared ``within_context=True`` must fit the model folder's context (its config.json)."""
    bounded = [a for a in parser._actions if getattr(a, "within_context", False)]
    models = [a for a in parser._actions if getattr(a, "kind", None) == MODEL_DIR]
    if not bounded or not models:
        return
    import glmcourse

    model = str(getattr(ns, models[0].dest) or glmcourse.COURSE_MODEL)  # None: the commands' default model
    context = model_context(model)
    if not context:
        return
    for action in bounded:
        value = getattr(ns, action.dest, None)
        if value is not None and value > context:
            raise UsageError(_("{flag} {value}: does not fit the model's context of {context} tokens "
                               "(max_sequence_length in {model}/config.json); pass {context} or less, e.g. "
                               "{flag} {example}.", flag=flag_name(action), value=value, context=context,
                               model=model, example=min(action.default or 1, context // 4) or 1))


def _loop_or_dangling(path: Path, flag: str, what: str) -> None:
    """A UsageError when ``path`` is a broken symbolic link; ``what`` is ``"file"`` or ``"folder"``."""
    if path.is_symlink() and not path.exists():
        try:
            os.stat(path)
        except OSError as err:
            raise UsageError(_broken_link(path, flag, what, loop=err.errno == 40)) from None


def _broken_link(path: Path, flag: str, what: str, loop: bool) -> str:
    fields = dict(flag=flag, path=path)
    if what == "folder":
        if loop:
            return _("{flag} {path}: is a symbolic link loop; pass the real folder (or fix the link).", **fields)
        return _("{flag} {path}: is a symbolic link to nothing; pass the real folder (or fix the link).", **fields)
    if loop:
        return _("{flag} {path}: is a symbolic link loop; pass the real file (or fix the link).", **fields)
    return _("{flag} {path}: is a symbolic link to nothing; pass the real file (or fix the link).", **fields)


def check_not_course_model(path, flag: str) -> None:
    import glmcourse

    if is_same_or_inside(path, glmcourse.COURSE_MODEL):
        raise UsageError(_("{flag} {path}: is the shipped course model's folder, which this command must not "
                           "write into; choose another {flag}, e.g. {flag} runs/my_output.", flag=flag, path=path))


def check_input_dir(path, flag: str) -> Path:
    p = Path(path)
    _loop_or_dangling(p, flag, "folder")
    if p.is_file():
        raise UsageError(_("{flag} {path}: is a file, not a folder; pass the folder that holds it (e.g. {flag} "
                           "{parent}).", flag=flag, path=path, parent=p.parent))
    if not p.exists():
        raise UsageError(_("{flag} {path}: no such folder; check the path (relative paths start at {cwd}).",
                           flag=flag, path=path, cwd=Path.cwd()))
    if not p.is_dir():
        raise UsageError(_("{flag} {path}: not a folder; pass a folder.", flag=flag, path=path))
    if not os.access(p, os.R_OK | os.X_OK):
        raise UsageError(_("{flag} {path}: cannot be read (permission denied); fix with chmod u+rx {path}.",
                           flag=flag, path=path))
    return p


def looks_like_hub_id(text: str) -> bool:
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text)) and not text.startswith((".", "/"))


def check_model_dir(path, flag: str) -> Path:
    """A model folder: exists (or, online, a hub id), and its config.json is readable JSON."""
    import json

    p = Path(path)
    if not p.exists() and not p.is_symlink() and looks_like_hub_id(str(path)):
        if is_offline():
            setting = offline_variable()
            raise UsageError(_("{flag} {path}: no such folder here, and {setting} forbids downloading it; pass a "
                               "local model folder (e.g. {flag} glmcourse/course_model), or unset {variable} to "
                               "download it.", flag=flag, path=path, setting=setting, variable=setting.split("=")[0]))
        return p  # a hub id: the loader's business
    check_input_dir(path, flag)
    config = p / "config.json"
    if not config.is_file():
        raise UsageError(_("{flag} {path}: no config.json in this folder, so it is not a model folder; pass the "
                           "folder save_pretrained() wrote (e.g. {flag} glmcourse/course_model).",
                           flag=flag, path=path))
    try:
        parsed = json.loads(read_text(config, _("{flag} {path}: config.json", flag=flag, path=path)))
    except ValueError as err:
        raise UsageError(_("{flag} {path}: config.json is damaged ({reason}); copy the model folder again, or "
                           "rebuild the course model with python -m glmcourse.tools.build_course_model.",
                           flag=flag, path=path, reason=one_line(err))) from None
    if not isinstance(parsed, dict):
        raise UsageError(_("{flag} {path}: config.json is not a JSON object; copy the model folder again.",
                           flag=flag, path=path))
    return p


def read_text(path, where: str | None = None) -> str:
    """A file's text as UTF-8, or a UsageError that says which encoding it seems to be in and how to fix it."""
    p = Path(path)
    where = where or str(path)
    try:
        raw = p.read_bytes()
    except PermissionError:
        raise UsageError(_("{where}: cannot be read (permission denied); fix with chmod u+r {path}.",
                           where=where, path=path)) from None
    except IsADirectoryError:
        raise UsageError(_("{where}: is a folder; pass a file.", where=where)) from None
    except FileNotFoundError:
        raise UsageError(_("{where}: no such file; check the path (relative paths start at {cwd}).",
                           where=where, cwd=Path.cwd())) from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(raw) >= 4 and (raw[1::2].count(0) > len(raw) // 4
                                                                     or raw[0::2].count(0) > len(raw) // 4)):
        raise UsageError(_("{where}: is UTF-16, not UTF-8; re-save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8).",
                           where=where))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        fields = dict(where=where, line=raw[: err.start].count(b"\n") + 1, byte=err.start)
        try:
            raw.decode("gb18030")
        except UnicodeDecodeError:
            raise UsageError(_("{where}: not valid UTF-8 at line {line} (byte {byte}); re-save it as UTF-8 "
                               "(e.g. iconv -f GB18030 -t UTF-8).", **fields)) from None
        raise UsageError(_("{where}: not valid UTF-8 at line {line} (byte {byte}) (it looks like GBK/GB18030); "
                           "re-save it as UTF-8 (e.g. iconv -f GB18030 -t UTF-8).", **fields)) from None


def parse_json(text: str, where: str):
    """``json.loads`` with the line and column of the first error, and no RecursionError on deep nesting."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(_("{where}: not valid JSON at line {line}, column {column} ({reason}); fix that line or "
                           "re-create the file.", where=where, line=err.lineno, column=err.colno, reason=err.msg)
                         ) from None
    except RecursionError:
        raise UsageError(_("{where}: nested too deeply to read (thousands of levels of brackets), so it is damaged "
                           "or not this kind of data; re-create the file from its source.", where=where)) from None


def check_input_content(path, flag: str, fmt: str = "any") -> Path:
    """An input file: exists, is a file, readable, UTF-8 (text formats), and parses as ``fmt``."""
    p = Path(path)
    _loop_or_dangling(p, flag, "file")
    check_input_file(path, flag)
    if not os.access(p, os.R_OK):
        raise UsageError(_("{flag} {path}: cannot be read (permission denied); fix with chmod u+r {path}.",
                           flag=flag, path=path))
    if fmt == "any":
        return p
    text = read_text(p, f"{flag} {path}")
    if fmt == "json" or fmt == "ipynb":
        value = parse_json(text, f"{flag} {path}")
        if fmt == "ipynb" and not (isinstance(value, dict) and isinstance(value.get("cells"), list)):
            raise UsageError(_("{flag} {path}: not a Jupyter notebook (no list of cells); pass an .ipynb file.",
                               flag=flag, path=path))
    elif fmt == "jsonl":
        if text.lstrip().startswith("["):
            raise UsageError(_("{flag} {path}: is one JSON array, not JSON Lines (one object per line); convert "
                               "Alpaca records first (python -m glmcourse.cover_alpaca2jsonl, or python -m "
                               "glmcourse.ptuning convert).", flag=flag, path=path))
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                parse_json(line, _("{flag} {path} line {number}", flag=flag, path=path, number=number))
    return p
