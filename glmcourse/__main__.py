"""``python -m glmcourse <command>``: the course's command-line entry point.

Commands:
    doctor   check the environment ([OK]/[FAIL] lines, each FAIL with its fix); exit 1 on any FAIL
    bench    print the course's performance figures, each with its unit
"""
from __future__ import annotations

import sys

COMMANDS = {
    "doctor": "glmcourse.doctor",
    "bench": "glmcourse.bench",
}


def build_parser():
    """The dispatcher's parser (its one argument is the command; the command parses the rest)."""
    import argparse

    from glmcourse.cli import CourseParser

    parser = CourseParser(prog="python -m glmcourse", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="the command's own flags")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"\nunknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
            return 2
        return 0 if argv else 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
