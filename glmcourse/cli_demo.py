"""Lesson 03: chat with a ChatGLM model in the terminal (the seed's cli_demo.py, on a laptop).

    python -m glmcourse.cli_demo [--model PATH] [--max_length N] [--max_new_tokens N] [--top_p P]
                                 [--temperature T] [--trust_remote_code]

Type a message and press Enter; the answer streams in. ``clear`` empties the history, ``stop`` quits
(either in any case, spaces around them ignored). An empty line asks again, Ctrl-D (EOF) quits, and
Ctrl-C stops the answer being written without leaving the program. A turn that cannot be answered (a
message longer than the model's context, text that is not UTF-8, a generation error) prints one line,
keeps the conversation and asks again. Flags are checked before the model is loaded.
"""
from __future__ import annotations

import os
import sys
import warnings

from glmcourse.cli import UsageError, check_float, check_int, clean_text, float_arg, int_arg, one_line
from glmcourse.i18n import _

# What the course model was trained to do (data/course_chat.json, written by glmcourse.tools.make_data):
# greetings, capitals, sums, translation of a word, remembering a name told earlier in the chat.
EXAMPLES = ["你好", "What is 7 + 8?", "法国的首都是哪座城市？", "把“牛奶”翻译成英文", "My name is Mia.",
            "Do you remember my name?"]


def welcome() -> str:
    """The greeting, in the learner's language (glmcourse/i18n.py)."""
    return _("Welcome to the ChatGLM course model (CourseGLM). It knows greetings, capitals, sums, word "
             "translation and your name once you tell it; try: {examples}. Type 'clear' to empty the history, "
             "'stop' to quit.", examples=" | ".join(EXAMPLES[:4]))


def not_utf8() -> str:
    return _("[that message was not valid UTF-8 text, so it was not sent. Set your terminal or file to UTF-8 "
             "(e.g. LANG=C.UTF-8) and type it again; the conversation so far is kept.]")


PROMPT = "\n用户："
ANSWER = "\nChatGLM："
MAX_LENGTH_RANGE = (16, 1_000_000)  # prompt + reply tokens; the model's own limit applies on top
TEMPERATURE_MAX = 2.0


def clear_screen() -> None:
    if os.name == "nt":
        os.system("cls")
    else:  # ANSI: erase the screen, cursor home (no dependency on the `clear` program or $TERM)
        print("\033[2J\033[H", end="", flush=True)


def check_gen(gen: dict) -> dict:
    """The generation settings of every turn, checked (a UsageError names the bad one and its range)."""
    checked = dict(gen)
    if "max_length" in gen:
        checked["max_length"] = check_int(gen["max_length"], "max_length", *MAX_LENGTH_RANGE, example=2048)
    if gen.get("max_new_tokens") is not None:
        checked["max_new_tokens"] = check_int(gen["max_new_tokens"], "max_new_tokens", 1, None, example=128)
    if "top_p" in gen:
        checked["top_p"] = check_float(gen["top_p"], "top_p", 0, 1, lo_open=True, example=0.7)
    if "temperature" in gen:
        checked["temperature"] = check_float(gen["temperature"], "temperature", 0, TEMPERATURE_MAX, lo_open=True,
                                             example=0.95)
    return checked


def _too_long_hint(model, tokenizer, query: str, gen: dict) -> str:
    """Why a message alone does not fit, in tokens, for the one-line message."""
    from glmcourse.chat import count_prompt_tokens

    limit = getattr(getattr(model, "config", None), "max_sequence_length", None)
    max_length = gen.get("max_length", 2048)
    if isinstance(limit, int):
        max_length = min(max_length, limit)
    try:
        n = count_prompt_tokens(tokenizer, query)
    except Exception:  # the hint is best effort
        return ""
    return _(" (it is {n} tokens; this model reads at most {max_length}, prompt and answer together)",
             n=n, max_length=max_length)


def answer(model, tokenizer, query: str, history: list, gen: dict) -> list:
    """Stream one answer to stdout; return the new history (unchanged if the turn failed or Ctrl-C cut it)."""
    from glmcourse.chat import QueryTooLong, stream_chat

    print(ANSWER, end="", flush=True)
    shown = ""
    new_history = history
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        try:
            stream = stream_chat(model, tokenizer, query, history, **gen)
            for response, new_history in stream:
                print(response[len(shown):], end="", flush=True)  # each response extends the last
                shown = response
        except KeyboardInterrupt:
            stream.close()  # stops generate() at the next token
            print("\n" + _("[answer interrupted; it is not kept in the history]"), flush=True)
            return history
        except ValueError as err:  # the message alone does not fit the context, or a bad setting
            text = one_line(err)
            if isinstance(err, QueryTooLong):
                text = _("your message is too long for the model's context{why}. Shorten it or split it into several "
                         "messages", why=_too_long_hint(model, tokenizer, query, gen))
            print("\n" + _("[not answered: {reason}. The conversation so far is kept; type another message.]",
                           reason=text), flush=True)
            return history
        except (RuntimeError, TypeError, IndexError) as err:  # a failure inside generate()
            print("\n" + _("[not answered: the model failed on this message ({error}: {message}). The conversation so "
                            "far is kept; try another message, or 'clear'.]", error=type(err).__name__,
                            message=one_line(err)), flush=True)
            return history
    print(flush=True)
    for note in notes:
        print(f"[{note.message}]", flush=True)
    if not shown and new_history is not history:
        print(_("[the model gave an empty answer]"), flush=True)
    return new_history


def _undecodable(text: str) -> bool:
    """True when a line read with errors='surrogateescape' held bytes that are not UTF-8."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)




def run(model, tokenizer, gen: dict, read=input) -> int:
    """The chat loop; returns the exit status (2 when ``gen`` holds a setting out of its range)."""
    try:
        gen = check_gen(gen)
    except UsageError as err:
        print(f"cli_demo: {err}", file=sys.stderr)
        return 2
    print(welcome(), flush=True)
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
        except UnicodeDecodeError:  # stdin not reconfigured (run() called directly) and not UTF-8
            print(not_utf8(), flush=True)
            continue
        if _undecodable(line):
            print(not_utf8(), flush=True)
            continue
        query = clean_text(line).strip()  # a lone surrogate (not valid Unicode) becomes U+FFFD, not a crash
        if not query:
            continue
        if query.lower() == "stop":
            return 0
        if query.lower() == "clear":
            history = []
            clear_screen()
            print(welcome(), flush=True)
            continue
        history = answer(model, tokenizer, query, history, gen)


def build_parser():
    from glmcourse.cli import MODEL_DIR, CourseParser

    lo, hi = MAX_LENGTH_RANGE
    parser = CourseParser(prog="python -m glmcourse.cli_demo", description=_(
        "Lesson 03: chat with a ChatGLM model in the terminal (the seed's cli_demo.py, on a laptop)."))
    parser.add_argument("--model", default=None, kind=MODEL_DIR, help=_("model folder (default: the course model)"))
    parser.add_argument("--max_length", type=int_arg("--max_length", lo, hi, example=2048), default=2048,
                        help=_("prompt + reply tokens, {lo}-{hi} (2048; the model's own limit applies)", lo=lo, hi=hi))
    parser.add_argument("--max_new_tokens", type=int_arg("--max_new_tokens", 1, 2**20, example=128), default=None,
                        help=_("at most this many reply tokens, >= 1 (default: whatever fits max_length)"))
    parser.add_argument("--top_p", type=float_arg("--top_p", 0, 1, lo_open=True, example=0.7), default=0.7,
                        help=_("nucleus sampling mass, in (0, 1] (0.7)"))
    parser.add_argument("--temperature", type=float_arg("--temperature", 0, TEMPERATURE_MAX, lo_open=True, example=0.95),
                        default=0.95, help=_("sampling temperature, in (0, {high}] (0.95)", high=TEMPERATURE_MAX))
    parser.add_argument("--trust_remote_code", action="store_true",
                        help=_("allow the model folder's own Python code to run (off by default; the course model "
                             "needs none). Read that code first."))
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from glmcourse.loading import load_chat_model

    try:
        tokenizer, model = load_chat_model(args.model, trust_remote_code=args.trust_remote_code, flag="--model")
    except (FileNotFoundError, OSError, ValueError) as err:
        print(_("cli_demo: cannot load the model: {error}", error=err), file=sys.stderr)
        return 2
    gen = dict(max_length=args.max_length, top_p=args.top_p, temperature=args.temperature)
    if args.max_new_tokens is not None:
        gen["max_new_tokens"] = args.max_new_tokens
    for stream in (sys.stdin, sys.stdout):  # a bad byte on stdin becomes one message, not a crash
        try:
            stream.reconfigure(errors="surrogateescape" if stream is sys.stdin else "replace")
        except (AttributeError, ValueError):  # not a TextIOWrapper (a test's stand-in)
            pass
    return run(model, tokenizer, gen)


if __name__ == "__main__":
    sys.exit(main())
