"""Running exercises in a notebook without breaking it.

Each lesson module holds ``check_*`` functions: they raise AssertionError with a hint on a wrong
answer and return normally on a right one. A notebook's exercise cell holds the learner's function
with ``raise NotImplementedError`` in its body; ``attempt`` then reports "not attempted yet" instead of
failing, so the notebook still runs top to bottom (and under nbval).
"""
from __future__ import annotations


def attempt(checker, candidate, name: str | None = None) -> bool:
    """Run ``checker(candidate)``; print the verdict. Returns True when the answer passes."""
    label = name or getattr(candidate, "__name__", "your answer")
    try:
        checker(candidate)
    except NotImplementedError:
        print(f"[TODO] {label}: not attempted yet. Fill in the function above and re-run this cell.")
        return False
    except AssertionError as err:
        print(f"[TRY AGAIN] {label}: {err}")
        return False
    print(f"[PASS] {label}")
    return True


def call_learner(fn, *args):
    """Call the learner's function for a checker: a crash becomes a hint (AssertionError) instead of a
    traceback, while NotImplementedError passes through so ``attempt`` can say "not attempted yet"."""
    try:
        return fn(*args)
    except (NotImplementedError, AssertionError):
        raise
    except Exception as err:  # noqa: BLE001 - any crash becomes a hint
        raise AssertionError(f"calling it with {args!r} raised {type(err).__name__}: {err}") from None
