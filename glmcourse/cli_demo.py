"""Lesson 03: chat with a ChatGLM model in the terminal (the seed's cli_demo.py, on a laptop).

    python -m glmcourse.cli_demo [--model PATH] [--max_length N] [--top_p P] [--temperature T]

Type a message and press Enter; the answer streams in. ``clear`` empties the history, ``stop`` quits
(either in any case, spaces around them ignored). An empty line asks again, Ctrl-D (EOF) quits, and
Ctrl-C stops the answer being written without leaving the program.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from glmcourse.chat import load_chat_model, stream_chat

WELCOME = ("欢迎使用 ChatGLM 课程模型。Type a message to chat; "
           "'clear' empties the history, 'stop' quits.")
PROMPT = "\n用户："
ANSWER = "\nChatGLM："


def clear_screen() -> None:
    if os.name == "nt":
        os.system("cls")
    else:  # ANSI: erase the screen, cursor home (no dependency on the `clear` program or $TERM)
        print("\033[2J\033[H", end="", flush=True)


def answer(model, tokenizer, query: str, history: list, gen: dict) -> list:
    """Stream one answer to stdout; return the new history (unchanged if Ctrl-C cut the answer)."""
    print(ANSWER, end="", flush=True)
    shown = ""
    stream = stream_chat(model, tokenizer, query, history, **gen)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        try:
            for response, new_history in stream:
                print(response[len(shown):], end="", flush=True)  # each response extends the last
                shown = response
        except KeyboardInterrupt:
            stream.close()  # stops generate() at the next token
            print("\n[answer interrupted; it is not kept in the history]", flush=True)
            return history
    print(flush=True)
    for note in notes:
        print(f"[{note.message}]", flush=True)
    return new_history


def run(model, tokenizer, gen: dict, read=input) -> int:
    print(WELCOME, flush=True)
    history: list = []
    while True:
        try:
            line = read(PROMPT)
        except EOFError:
            print(flush=True)
            return 0
        except KeyboardInterrupt:  # at the prompt, Ctrl-C just discards the line
            print(flush=True)
            continue
        query = line.strip()
        if not query:
            continue
        if query.lower() == "stop":
            return 0
        if query.lower() == "clear":
            history = []
            clear_screen()
            print(WELCOME, flush=True)
            continue
        history = answer(model, tokenizer, query, history, gen)


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _unit_interval(text):
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m glmcourse.cli_demo", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the course model)")
    parser.add_argument("--max_length", type=_positive_int, default=2048, help="prompt + reply tokens (2048)")
    parser.add_argument("--top_p", type=_unit_interval, default=0.7, help="nucleus sampling mass (0.7)")
    parser.add_argument("--temperature", type=_positive_float, default=0.95, help="sampling temperature (0.95)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        tokenizer, model = load_chat_model(args.model)
    except (FileNotFoundError, OSError, ValueError) as err:
        print(f"cli_demo: cannot load the model: {err}", file=sys.stderr)
        return 2
    gen = dict(max_length=args.max_length, top_p=args.top_p, temperature=args.temperature)
    return run(model, tokenizer, gen)


if __name__ == "__main__":
    sys.exit(main())
