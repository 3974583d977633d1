"""Exercise checkers of lesson 03 (``glmcourse.chat``): each raises AssertionError with a hint, or returns."""
from __future__ import annotations

from glmcourse.chat import build_prompt, fit_history, process_response
from glmcourse.exercises import call_learner, say


def check_build_prompt(fn) -> None:
    """Exercise: ``fn(query, history)`` returns ChatGLM-6B's prompt string."""
    cases = [
        ("你好", []),
        ("如何提高弹跳", [("你好", "你好！")]),
        ("还有呢？", [("a", "A"), ("b", "B\n第二行")]),
        ("q", [("", "")]),
    ]
    for query, history in cases:
        got, want = call_learner(fn, query, list(history)), build_prompt(query, history)
        if got == want:
            continue
        if not history:
            raise AssertionError(say("with an empty history the prompt is the query itself: {want!r}, got {got!r}",
                                     want=want, got=got))
        if isinstance(got, str) and ":" in got:
            raise AssertionError(say("the colons after 问 and 答 are full-width '：' (U+FF1A), not ASCII ':'"))
        raise AssertionError(say("for query={query!r}, history={history!r} expected\n{want!r}\ngot\n{got!r}\n"
                                 "Each past turn is '[Round i]\\n问：q\\n答：r\\n' (i from 0), then the new query as "
                                 "'[Round n]\\n问：query\\n答：'.", query=query, history=history, want=want, got=got))
    print(say("Correct: empty history gives the raw query; every turn is a numbered round with full-width colons."))


def check_process_response(fn) -> None:
    """Exercise: ``fn(text)`` strips the reply and makes , ! : ; ? full-width next to a CJK character."""
    cases = ["  你好 \n", "你好,世界", "对!", "是吗?", "ok;好", "time: 12:30", "Hi, 你好!", "你好 , 世界",
             "你好.", "中,文,标,点", "a,b!c:d;e?"]
    for text in cases:
        got, want = call_learner(fn, text), process_response(text)
        if got != want:
            raise AssertionError(say("process_response({text!r}) should be {want!r}, got {got!r}. Rules: strip; then "
                                     "turn ASCII , ! : ; ? into ，！：；？ only when a character in U+4E00..U+9FFF stands "
                                     "directly before or after it.", text=text, want=want, got=got))
    print(say("Correct: stripped, and only punctuation touching a CJK character became full-width."))


class _CharTokenizer:
    """For the checker: one id per character, plus [gMASK] <sop>, so lengths are easy to reason about."""

    def __call__(self, text, **kwargs):
        return {"input_ids": list(range(len(text) + 2))}


def check_fit_history(fn) -> None:
    """Exercise: ``fn(tokenizer, query, history, max_length, reply_room)`` -> ``(kept, n_dropped)``."""
    tok = _CharTokenizer()
    history = [("第一个问题", "第一个回答"), ("second", "2nd"), ("third question", "3rd")]
    sizes = [len(build_prompt("q", history[k:])) + 2 for k in range(4)]  # prompt length keeping turns k..
    for max_length in [sizes[0] + 10, sizes[0] + 9, sizes[1] + 10, sizes[2] + 10, sizes[3] + 10, 10_000]:
        got = call_learner(fn, tok, "q", list(history), max_length, 10)
        want = fit_history(tok, "q", history, max_length, 10)
        try:
            kept, dropped = got
            kept = [tuple(t) for t in kept]
        except Exception:  # noqa: BLE001
            raise AssertionError(say("return a pair (kept_turns, number_dropped)")) from None
        if (kept, dropped) != want:
            raise AssertionError(say("max_length={max_length}, 10 tokens kept for the reply: expected to keep "
                                     "{want} (dropped {want_dropped}), got {got} (dropped {dropped}). Drop the OLDEST "
                                     "turns one at a time until len(prompt ids) + reply_room <= max_length.",
                                     max_length=max_length, want=want[0], want_dropped=want[1], got=kept,
                                     dropped=dropped))
    try:
        call_learner(fn, tok, "x" * 100, [], 50, 10, allowed=(ValueError,))
    except ValueError:
        pass
    else:
        raise AssertionError(say("when even the query alone does not fit, raise ValueError (nothing to drop)"))
    print(say("Correct: the oldest turns go first, the newest stay, and an impossible fit is an error."))


def check_whole_chars(fn) -> None:
    """Exercise: ``fn(data: bytes)`` returns the text of the complete UTF-8 characters at the start of
    ``data``, holding back a character whose bytes have not all arrived yet."""
    text = "你好, GLM 😀!"
    data = text.encode("utf-8")
    for cut in range(len(data) + 1):
        want = data[:cut].decode("utf-8", errors="ignore")
        got = call_learner(fn, data[:cut])
        if got != want:
            raise AssertionError(say("for the first {cut} bytes of {text!r} expected {want!r}, got {got!r}. A UTF-8 "
                                     "character is 1-4 bytes; keep the longest prefix that decodes, never show "
                                     "'\\ufffd'.", cut=cut, text=text, want=want, got=got))
    print(say("Correct: a character is shown only once all its bytes have arrived."))


