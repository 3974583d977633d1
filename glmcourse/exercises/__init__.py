"""Running exercises in a notebook without breaking it.

Each lesson module holds ``check_*`` functions: they raise AssertionError with a hint on a wrong
answer and return normally on a right one. A notebook's exercise cell holds the learner's function
with ``raise NotImplementedError`` in its body; ``attempt`` then reports "not attempted yet" instead of
failing, so the notebook still runs top to bottom (and under nbval).

Every message a checker prints or raises goes through ``say(template, **values)``: the template is an
English ``str.format`` string with named fields (``say("expected {want!r}, got {got!r}", want=1, got=2)``).
When the learner's language is Chinese (``GLMCOURSE_LANG=zh``, which the first cell of every
notebooks/zh/ lesson sets, or a zh_CN locale; see glmcourse/i18n.py, the one mechanism) the template is looked up in ``i18n/zh_CN/exercises.po`` (msgid = the English template) and the Chinese
one is formatted instead; an untranslated, fuzzy or broken entry falls back to the English. The
catalog's msgids are collected from the ``say(...)`` calls of glmcourse/exercises/*.py by
``python -m glmcourse.tools.nbtools update-catalogs`` (see glmcourse/tools/template_catalogs.py and i18n/README.md),
so a template must be a string literal, never an f-string.
"""
from __future__ import annotations

from glmcourse.i18n import CATALOG_DIR, language, message  # noqa: F401 - language() is part of this API

CATALOG = CATALOG_DIR / "exercises.po"


def say(template: str, /, **values) -> str:
    """``template.format(**values)``, in the learner's language (see the module docstring)."""
    return message(CATALOG, template, values)


def attempt(checker, candidate, name: str | None = None) -> bool:
    """Run ``checker(candidate)``; print the verdict. Returns True when the answer passes."""
    label = name or getattr(candidate, "__name__", None)
    if label is None:
        label = say("your answer")
    try:
        checker(candidate)
    except NotImplementedError:
        print(say("[TODO] {name}: not attempted yet. Fill in the function above and re-run this cell.", name=label))
        return False
    except AssertionError as err:
        print(say("[TRY AGAIN] {name}: {hint}", name=label, hint=err))
        return False
    except MemoryError:  # out of memory is no hint: the cell fails (a grader reports MEMORY)
        raise
    except Exception as err:  # noqa: BLE001 - an answer of the wrong kind (None, a string...) tripped the checker
        hint = say("the checker could not use what it returned ({error}: {message}); check the return type "
                   "the exercise asks for", error=type(err).__name__, message=err)
        print(say("[TRY AGAIN] {name}: {hint}", name=label, hint=hint))
        return False
    print(say("[PASS] {name}", name=label))
    return True


def _their_line(fn, tb):
    """(line number, code) of the deepest traceback frame in the learner's own code: in the file ``fn`` was
    defined in (a notebook cell), else in any file outside Python, its packages and glmcourse; or None."""
    import linecache
    import sys
    import traceback
    from pathlib import Path

    theirs = getattr(getattr(fn, "__code__", None), "co_filename", None)
    library = tuple(str(p) for p in {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
                                      Path(__file__).resolve().parents[1]})
    own, other = None, None
    for frame, number in traceback.walk_tb(tb):
        name = frame.f_code.co_filename
        code = linecache.getline(name, number).strip()
        if code and name == theirs:
            own = number, code
        elif code and not (name.startswith("<") or str(Path(name).resolve()).startswith(library)):
            other = number, code
    return own or other  # the cell that defined fn first: a helper module it called is not "your cell"


def call_learner(fn, *args, allowed: tuple = ()):
    """Call the learner's function for a checker: a crash becomes a hint (AssertionError) that names the
    learner's exception, its message and the line of their cell that raised it, instead of a traceback.
    NotImplementedError passes through so ``attempt`` can say "not attempted yet", and so do MemoryError and
    the exception types in ``allowed`` (the ones an exercise asks the learner to raise)."""
    try:
        return fn(*args)
    except MemoryError as err:  # free what the learner's frames hold before anyone formats the traceback
        import traceback

        traceback.clear_frames(err.__traceback__)
        raise
    except (NotImplementedError, AssertionError, *allowed):
        raise
    except Exception as err:  # noqa: BLE001 - any crash becomes a hint
        where = _their_line(fn, err.__traceback__)
        if where is None:
            raise AssertionError(say("calling it with {args!r} raised {error}: {message}",
                                     args=args, error=type(err).__name__, message=err)) from None
        shown = " ".join(repr(args).split())  # a tensor's repr spans lines: the hint stays on one
        raise AssertionError(say("calling it with {args} raised {error}: {message} (line {line} of your cell: "
                                 "{code})", args=shown if len(shown) <= 300 else shown[:297] + "...",
                                 error=type(err).__name__, message=err, line=where[0], code=where[1])) from None
