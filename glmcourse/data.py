"""Lesson 04: instruction data, from Alpaca records to ChatGLM training batches.

The pipeline, as in ChatGLM-Tuning (the seed project), with its bugs fixed:

1. ``load_alpaca``     an Alpaca JSON array of {"instruction", "input", "output"} records, validated.
2. ``format_example``  each record becomes {"context", "target"} (``cover_alpaca2jsonl`` writes JSONL).
3. ``tokenize_row``    context + target become ``input_ids`` and ``seq_len`` (the encoded context's
                       length, ``[gMASK] <sop>`` included), fitted to ``max_seq_length``.
4. ``DataCollator``    batches: right-padded ``input_ids`` and ``labels`` with the context masked.

Every bad input gets a ``DataError`` that says what is wrong, where, and how to fix it.
Files are written atomically: a crash or Ctrl-C never leaves a half-written output behind.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from glmcourse.files import atomic_write, file_sha256, read_utf8
from glmcourse.i18n import _

IGNORE_INDEX = -100  # label value that torch's cross-entropy skips
PARAMS_FILE = "glmcourse_params.json"  # written beside a tokenized dataset (docs/failure-catalog.md#f11-stale-tokenized-cache)
PARAMS_VERSION = 1
ALPACA_FIELDS = ("instruction", "input", "output")
# The smallest row that still teaches something: [gMASK] <sop> + one target token + <eop>.
MIN_SEQ_LENGTH = 4


class DataError(ValueError):
    """Bad input data or parameters. ``problems`` lists the individual findings."""

    def __init__(self, message: str, problems: list | None = None):
        super().__init__(message)
        self.problems = problems or []


# ----------------------------------------------------------------------------------------------
# Reading text files: UTF-8 (a BOM is fine); anything else is explained (files.read_utf8).
# ----------------------------------------------------------------------------------------------
def read_text(path) -> str:
    """Read a UTF-8 file (with or without a BOM); a non-UTF-8 file is a DataError naming its likely encoding."""
    return read_utf8(path, DataError)


def _line_excerpt(text: str, lineno: int, width: int = 80) -> str:
    lines = text.splitlines()
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def _json_lines(text: str):
    """(line number, parsed value) for each non-blank line, or None when a line is not JSON."""
    parsed = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append((lineno, json.loads(line)))
        except (json.JSONDecodeError, RecursionError):
            return None
    return parsed


# ----------------------------------------------------------------------------------------------
# Alpaca records
# ----------------------------------------------------------------------------------------------
def _json_kind(value) -> str:
    """What a parsed JSON value is, as learner text: "a JSON object", "a JSON number", ... (bool before int)."""
    kinds = ((bool, _("a JSON boolean")), (dict, _("a JSON object")), (list, _("a JSON array")),
             (str, _("a JSON string")), ((int, float), _("a JSON number")))
    return next((text for kind, text in kinds if isinstance(value, kind)), _("a JSON {name}", name=type(value).__name__))


def _record_problems(record) -> list[tuple[str, str, str]]:
    """(field, problem, detail) for one record; empty when the record is valid. ``problem`` is a fixed
    English key ("is missing", "is null", ...); ``detail`` is learner text (see ``_describe``)."""
    if not isinstance(record, dict):
        return [("(record)", "is not an object", _("got {kind}", kind=_json_kind(record)))]
    problems = []
    for field in ALPACA_FIELDS:
        value = record.get(field)
        if field not in record and field != "input":  # a missing input counts as empty
            problems.append((field, "is missing", ""))
        elif value is None and field != "input":  # input None counts as empty
            problems.append((field, "is null", ""))
        elif value is not None and not isinstance(value, str):
            shown = json.dumps(value, ensure_ascii=False)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            problems.append((field, "is not a string", _("got {kind}: {shown}", kind=_json_kind(value), shown=shown)))
        elif isinstance(value, str):
            bad = next((i for i, ch in enumerate(value) if "\ud800" <= ch <= "\udfff"), None)
            if bad is not None:  # a lone surrogate ("\ud800" in the JSON): not text, no tokenizer can encode it
                problems.append((field, "holds invalid Unicode", _(
                    "a lone surrogate U+{code:04X} at character {index}; fix or remove that escape in the file",
                    code=ord(value[bad]), index=bad)))
    return problems


def _describe(field: str, problem: str, detail: str = "") -> str:
    """One finding of ``_record_problems`` as a learner's sentence: "'output' is not a string (got ...)"."""
    if field == "(record)":
        return _("record is not an object ({detail})", detail=detail) if detail else _("record is not an object")
    if problem in ("is missing", "is null"):
        return _("'{field}' is missing", field=field) if problem == "is missing" else _("'{field}' is null",
                                                                                       field=field)
    if problem == "is not a string":
        return (_("'{field}' is not a string ({detail})", field=field, detail=detail) if detail
                else _("'{field}' is not a string", field=field))
    return (_("'{field}' holds invalid Unicode ({detail})", field=field, detail=detail) if detail
            else _("'{field}' holds invalid Unicode", field=field))


def _compress_indices(indices: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (sorted indices; a run of consecutive ones has a constant index - position)."""
    import itertools

    runs = [[idx for _pos, idx in run] for _key, run in itertools.groupby(enumerate(indices), lambda p: p[1] - p[0])]
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def _not_an_array(data, source: str) -> DataError:
    """The error for a top level that is not a list, with a hint for a single record or a wrapper object."""
    kind = _json_kind(data)
    if isinstance(data, dict) and "instruction" in data:
        return DataError(_("{source}: the top level must be a JSON array of records [{{...}}, {{...}}], got {kind}. "
                           "It holds a single record: wrap it in [ ] to make a list of one.", source=source, kind=kind))
    lists = [k for k, v in data.items() if isinstance(v, list)] if isinstance(data, dict) else []
    if lists:
        return DataError(_("{source}: the top level must be a JSON array of records [{{...}}, {{...}}], got {kind}. "
                           "Its list-valued keys are {keys}: save that list alone.", source=source, kind=kind,
                           keys=lists))
    return DataError(_("{source}: the top level must be a JSON array of records [{{...}}, {{...}}], got {kind}.",
                       source=source, kind=kind))


def _invalid_records(data: list, problems: list, source: str, max_listed: int) -> DataError:
    """Every bad record by index and field, then all of them grouped by problem."""
    bad = sorted({p[0] for p in problems})
    lines = ["  " + _("record {index}: {problem}", index=i, problem=_describe(*found))
             for i, *found in problems[:max_listed]]
    if len(problems) > max_listed:
        lines.append("  " + _("... and {n} more problems", n=len(problems) - max_listed))
    by_kind: dict[str, list[int]] = {}
    for i, field, problem, _detail in problems:
        by_kind.setdefault(_describe(field, problem), []).append(i)
    summary = "; ".join(_("{problem}: {records}", problem=kind, records=_compress_indices(idx))
                       for kind, idx in by_kind.items())
    head = _("{source}: {bad} of {total} records are invalid (records are numbered from 0). Each record needs "
             "'instruction' and 'output' strings; 'input' may be a string, empty or null.",
             source=source, bad=len(bad), total=len(data))
    tail = "  " + _("all bad records by problem: {summary}", summary=summary)
    return DataError("\n".join([head, *lines, tail]), problems=problems)


def validate_alpaca(data, source: str = "<data>", max_listed: int = 20) -> list[dict]:
    """Check a parsed Alpaca dataset; return clean records (input None/missing -> "").

    Raises DataError listing every bad record by index (0-based) and field.
    """
    if not isinstance(data, list):
        raise _not_an_array(data, source)
    if not data:
        raise DataError(_("{source}: the array is empty; there are no records to convert.", source=source))
    problems = [(i, *found) for i, rec in enumerate(data) for found in _record_problems(rec)]
    if problems:
        raise _invalid_records(data, problems, source, max_listed)
    return [{"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]} for r in data]


# Turns JSON Lines of Alpaca records into one array (shown to a learner who gave JSON Lines to load_alpaca).
JSONL_TO_ARRAY = ("python -c \"import json, sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1], "
                  "encoding='utf-8') if l.strip()], ensure_ascii=False))\"")


def _json_lines_refused(path, rows) -> DataError:
    """The error for JSON Lines given where an Alpaca array belongs, with the fix for what the lines hold."""
    first = rows[0][1]
    if isinstance(first, dict) and "context" in first:
        return DataError(_("{path}: this is JSON Lines ({lines} lines, one JSON value per line), but an Alpaca file is "
                           "a single JSON array [{{...}}, {{...}}]. These are already converted context/target rows: "
                           "give the file to tokenize_dataset_rows.", path=path, lines=len(rows)))
    return DataError(_("{path}: this is JSON Lines ({lines} lines, one JSON value per line), but an Alpaca file is a "
                       "single JSON array [{{...}}, {{...}}]. If these are Alpaca records, turn them into an array "
                       "with  {command} IN.jsonl > OUT.json", path=path, lines=len(rows), command=JSONL_TO_ARRAY))


def load_alpaca(path) -> list[dict]:
    """Read and validate an Alpaca JSON file (a JSON array of instruction/input/output records)."""
    text = read_text(path)
    if not text.strip():
        raise DataError(_("{path}: the file is empty; an Alpaca file is a JSON array [{{...}}, {{...}}].", path=path))
    try:
        data = json.loads(text)
    except RecursionError:
        raise DataError(_("{path}: nested too deeply to read (thousands of levels of brackets); an Alpaca file is a "
                          "flat array of {{instruction, input, output}} objects. Re-create the file.",
                          path=path)) from None
    except json.JSONDecodeError as err:
        rows = _json_lines(text)
        if rows and len(rows) > 1:
            raise _json_lines_refused(path, rows) from None
        raise DataError(_(
            "{path}: not valid JSON at line {line}, column {column}: {reason}. The line reads: {excerpt!r}. Common "
            "causes: a trailing comma before ] or }}, single quotes instead of double quotes, an unescaped quote or "
            "newline inside a string.", path=path, line=err.lineno, column=err.colno, reason=err.msg,
            excerpt=_line_excerpt(text, err.lineno))) from None
    return validate_alpaca(data, source=str(path))  # it names a lone surrogate by record and field


def format_example(record: dict) -> dict:
    """One Alpaca record -> {"context", "target"}, exactly as ChatGLM-Tuning's converter.

    context = "Instruction: {instruction}\\n" + ("Input: {input}\\n" if input else "") + "Answer: "
    Nothing is stripped: a whitespace-only input is truthy and gets its line. target = output, verbatim.
    """
    problems = _record_problems(record)
    if problems:
        raise DataError(_("bad record: {problems}", problems="; ".join(_describe(*p) for p in problems)), problems)
    context = f"Instruction: {record['instruction']}\n"
    if record.get("input"):
        context += f"Input: {record['input']}\n"
    context += "Answer: "
    return {"context": context, "target": record["output"]}


def jsonl_line(example: dict) -> str:
    """The converter's output line: json.dumps defaults (ASCII escapes, ', ' and ': ')."""
    return json.dumps({"context": example["context"], "target": example["target"]}) + "\n"


# ----------------------------------------------------------------------------------------------
# The converter's output: JSON lines, read back (cover_alpaca2jsonl.convert_file writes them)
# ----------------------------------------------------------------------------------------------
def json_lines(path, array_hint: str) -> tuple[list[tuple[int, object]], list[tuple[int, str]]]:
    """A JSON Lines file -> ([(line number, value)], [(line number, problem)]) for its non-blank lines.

    A file that is one JSON array instead is refused with ``array_hint`` (the command that converts it).
    Shared by the seed's tokenizer step and the P-Tuning command, which check the values themselves.
    """
    text = read_text(path)
    if text.lstrip().startswith("["):
        raise DataError(_("{path}: this is a JSON array, not JSON Lines (one object per line). {hint}",
                          path=path, hint=array_hint))
    values, problems = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append((lineno, _("not valid JSON at column {column}: {reason}", column=err.colno,
                                       reason=err.msg)))
            continue
        except RecursionError:
            problems.append((lineno, _("nested too deeply to read (thousands of levels of brackets)")))
            continue
        bad = lone_surrogate(value)
        if bad:
            problems.append((lineno, _("holds {escape}, a lone surrogate escape that is not valid Unicode (no "
                                       "tokenizer can read it); fix or remove that escape", escape=bad)))
            continue
        values.append((lineno, value))
    return values, problems


def lone_surrogate(value) -> str | None:
    """The first lone surrogate (e.g. from a ``\\ud800`` escape) in a parsed JSON value, as text; None if none."""
    if isinstance(value, str):
        for ch in value:
            if "\ud800" <= ch <= "\udfff":
                return f"\\u{ord(ch):04x}"
        return None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        found = lone_surrogate(item)
        if found:
            return found
    return None


def _row_problem(row) -> str | None:
    """Why one parsed line is not a context/target row (learner text), or None when it is one."""
    if not isinstance(row, dict):
        return _("must be an object {{\"context\", \"target\"}}, got {kind}", kind=_json_kind(row))
    bad = [f for f in ("context", "target") if not isinstance(row.get(f), str)]
    if len(bad) == 2:
        return _("'context' and 'target' missing or not a string")
    if bad:
        return _("'{field}' missing or not a string", field=bad[0])
    return None


def load_jsonl(path) -> list[dict]:
    """Read context/target JSONL (the converter's output); every bad line is reported by number."""
    command = f"python -m glmcourse.cover_alpaca2jsonl --data_path {path} --save_path OUT.jsonl"
    values, problems = json_lines(path, _("If it holds Alpaca records, convert it first: {command}", command=command))
    examples, alpaca_lines = [], []
    for lineno, row in values:
        if isinstance(row, dict) and "instruction" in row and "context" not in row:
            alpaca_lines.append(lineno)
            problems.append((lineno, _("is an Alpaca record (instruction/output): convert it with cover_alpaca2jsonl")))
            continue
        problem = _row_problem(row)
        if problem:
            problems.append((lineno, problem))
            continue
        examples.append({"context": row["context"], "target": row["target"]})
    problems.sort()  # in line order, whatever the check that found them
    if alpaca_lines and not examples and len(alpaca_lines) == len(problems):
        raise DataError(_("{path}: every line is an Alpaca record (instruction/input/output), not a context/target "
                          "row. Convert the Alpaca JSON first: {command}", path=path, command="python -m "
                          "glmcourse.cover_alpaca2jsonl --data_path IN.json --save_path OUT.jsonl"), problems)
    if problems:
        lines = ["  " + _("line {line}: {problem}", line=n, problem=what) for n, what in problems[:20]]
        if len(problems) > 20:
            lines.append("  " + _("... and {n} more", n=len(problems) - 20))
        head = _("{path}: {n} bad lines (lines are numbered from 1):", path=path, n=len(problems))
        raise DataError("\n".join([head, *lines]), problems)
    if not examples:
        raise DataError(_("{path}: no rows. 0 training samples after filtering (0 overlength).", path=path))
    return examples


# ----------------------------------------------------------------------------------------------
# Tokenization
# ----------------------------------------------------------------------------------------------
def special_ids(tokenizer) -> dict:
    """gmask/sop/eop/pad ids read from the tokenizer (never hard-coded: they moved between releases)."""
    aliases = {
        "gmask": ("gmask_token_id",),
        "sop": ("sop_token_id", "bos_token_id"),
        "eop": ("eop_token_id", "eos_token_id"),
        "pad": ("pad_token_id",),
    }
    ids = {}
    for name, attrs in aliases.items():
        value = next((getattr(tokenizer, a, None) for a in attrs if getattr(tokenizer, a, None) is not None), None)
        if value is None:
            raise DataError(_(
                "the tokenizer {name} has no {attrs}: it is not a ChatGLM tokenizer. Load one with "
                "AutoTokenizer.from_pretrained(glmcourse.COURSE_MODEL).", name=type(tokenizer).__name__,
                attrs=" / ".join(attrs)))
        ids[name] = int(value)
    return ids


def check_max_seq_length(max_seq_length) -> int:
    """Reject lengths that cannot hold [gMASK] <sop>, one target token and <eop>
    (docs/failure-catalog.md#f08-max-seq-length-too-small)."""
    if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int):
        raise DataError(_("max_seq_length must be an integer, got {value!r}.", value=max_seq_length))
    if max_seq_length < MIN_SEQ_LENGTH:
        raise DataError(_(
            "max_seq_length={value} is too small: a row needs at least {least} tokens ([gMASK] <sop>, one target "
            "token, <eop>), otherwise every label is -100 and nothing is learned. Use a value that fits your "
            "prompts, e.g. the 99th percentile of the lengths (200 in the seed).", value=max_seq_length,
            least=MIN_SEQ_LENGTH))
    return max_seq_length


def encode_example(tokenizer, example: dict, ids: dict | None = None) -> tuple[list[int], list[int]]:
    """(context ids ending in [gMASK] <sop>, target ids without specials)."""
    ids = ids or special_ids(tokenizer)
    context_ids = list(tokenizer.encode(example["context"]))
    if context_ids[-2:] != [ids["gmask"], ids["sop"]]:
        raise DataError(_(
            "the tokenizer's encode() did not end the prompt with [gMASK] <sop> (ids {gmask}, {sop}); got "
            "...{last}. Without <sop> the model cannot find where the answer starts (upstream fails later with "
            "'x is not in list'). Use the ChatGLM tokenizer with add_special_tokens=True (the default).",
            gmask=ids["gmask"], sop=ids["sop"], last=context_ids[-4:]))
    target_ids = list(tokenizer.encode(example["target"], add_special_tokens=False))
    return context_ids, target_ids


def fit_to_length(context_ids, target_ids, eop_id: int, max_seq_length: int):
    """Build input_ids = context + target + [eop] within max_seq_length, keeping the special tokens.

    Returns (input_ids, seq_len, status) with status "fits", "truncated" (target cut) or
    "context_truncated" (the context's text was cut from the left too, so "Answer: " stays next to
    [gMASK] <sop>). At least one target token survives when the target has any.
    Upstream cut ``input_ids[:max_seq_length]``, which can drop <eop> and the whole target.
    """
    check_max_seq_length(max_seq_length)
    context_ids, target_ids = list(context_ids), list(target_ids)
    if len(context_ids) + len(target_ids) + 1 <= max_seq_length:
        return context_ids + target_ids + [eop_id], len(context_ids), "fits"
    status = "truncated"
    min_target = min(1, len(target_ids))
    if len(context_ids) + min_target + 1 > max_seq_length:
        text, specials = context_ids[:-2], context_ids[-2:]
        keep = max_seq_length - len(specials) - min_target - 1
        context_ids = text[len(text) - keep :] + specials if keep > 0 else specials
        status = "context_truncated"
    room = max_seq_length - len(context_ids) - 1
    return context_ids + target_ids[:room] + [eop_id], len(context_ids), status


def tokenize_row(tokenizer, example: dict, max_seq_length: int, skip_overlength: bool = False, ids=None):
    """One context/target example -> ({"input_ids", "seq_len"} or None when skipped, status).

    status is "fits", "truncated", "context_truncated" or "skipped".
    """
    check_max_seq_length(max_seq_length)
    ids = ids or special_ids(tokenizer)
    context_ids, target_ids = encode_example(tokenizer, example, ids)
    if skip_overlength and len(context_ids) + len(target_ids) + 1 > max_seq_length:
        return None, "skipped"
    input_ids, seq_len, status = fit_to_length(context_ids, target_ids, ids["eop"], max_seq_length)
    return {"input_ids": input_ids, "seq_len": seq_len}, status


def tokenize_examples(tokenizer, examples, max_seq_length: int, skip_overlength: bool = False):
    """Tokenize many examples. Returns (rows, counts); 0 rows left is a DataError (docs/failure-catalog.md#f10-no-samples-left)."""
    from glmcourse.settings import progress

    check_max_seq_length(max_seq_length)
    ids = special_ids(tokenizer)
    counts = {"read": 0, "kept": 0, "skipped": 0, "truncated": 0, "context_truncated": 0}
    rows = []
    for example in progress(examples, min_items=2000, desc="tokenizing", unit="row"):
        row, status = tokenize_row(tokenizer, example, max_seq_length, skip_overlength, ids)
        counts["read"] += 1
        if row is None:
            counts["skipped"] += 1
            continue
        rows.append(row)
        counts["kept"] += 1
        counts["truncated"] += status != "fits"
        counts["context_truncated"] += status == "context_truncated"
    if not rows:
        raise DataError(_(
            "0 training samples after filtering ({skipped} overlength). Raise --max_seq_length (now {max_seq_length}) "
            "or pass --skip_overlength false to truncate instead of skipping.", skipped=counts["skipped"],
            max_seq_length=max_seq_length))
    return rows, counts


def example_lengths(tokenizer, examples) -> list[int]:
    """Untruncated row lengths: len(context ids) + len(target ids) + 1 (<eop>)."""
    ids = special_ids(tokenizer)
    lengths = []
    for example in examples:
        context_ids, target_ids = encode_example(tokenizer, example, ids)
        lengths.append(len(context_ids) + len(target_ids) + 1)
    return lengths


def suggest_max_seq_length(lengths, quantile: float = 0.99, multiple: int = 8) -> int:
    """The given quantile of the lengths (nearest-rank), rounded up to a multiple of ``multiple``."""
    if not lengths:
        raise DataError(_("no lengths given: tokenize at least one example first."))
    ordered = sorted(lengths)
    rank = max(1, math.ceil(quantile * len(ordered)))
    return max(MIN_SEQ_LENGTH, math.ceil(ordered[rank - 1] / multiple) * multiple)


# ----------------------------------------------------------------------------------------------
# Saving and loading tokenized rows, with their parameters (docs/failure-catalog.md#f11-stale-tokenized-cache)
# ----------------------------------------------------------------------------------------------
def tokenizer_fingerprint(tokenizer) -> dict:
    """Name, vocab size, a hash of the vocabulary and the special ids: enough to spot a different tokenizer."""
    vocab = sorted(tokenizer.get_vocab().items())
    vocab_hash = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()
    return {"name_or_path": str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)),
            "vocab_size": len(vocab), "vocab_sha256": vocab_hash, "special_ids": special_ids(tokenizer)}


def build_params(tokenizer, source_path, max_seq_length: int, skip_overlength: bool) -> dict:
    return {"format_version": PARAMS_VERSION, "max_seq_length": max_seq_length,
            "skip_overlength": bool(skip_overlength),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "source": {"path": str(source_path), "sha256": file_sha256(source_path)}}


DATASET_FILES = ("dataset_info.json", "state.json", PARAMS_FILE)  # what save_tokenized writes, with data-*.arrow


def foreign_dataset_entries(path: Path) -> list[str]:
    """Names in ``path`` that save_tokenized did not write (all of them when it has no params file)."""
    names = sorted(p.name for p in Path(path).iterdir())
    if names and PARAMS_FILE not in names:
        return names
    return [n for n in names if n not in DATASET_FILES and not (n.startswith("data-") and n.endswith(".arrow"))]


def save_tokenized(rows, save_path, params: dict, overwrite: bool = False):
    """save_to_disk into a temp folder beside ``save_path``, add the params file, then rename into place.

    An existing ``save_path`` is replaced only when it is a tokenized dataset this step wrote (its
    params file and the dataset's own files, nothing else), or when ``overwrite`` is true.
    """
    import datasets

    save_path = Path(save_path)
    if save_path.exists() and not save_path.is_dir():
        raise DataError(_("--save_path {path}: is a file, not a folder; choose another --save_path (a folder name).",
                          path=save_path))
    foreign = foreign_dataset_entries(save_path) if save_path.is_dir() else []
    if foreign and not overwrite:
        shown = ", ".join(foreign[:5])
        if len(foreign) > 5:
            shown = _("{names} and {n} more", names=shown, n=len(foreign) - 5)
        raise DataError(_(
            "--save_path {path}: exists and is not a tokenized dataset folder written by this step (it holds "
            "{shown}); refusing to overwrite it, nothing was changed. Choose another --save_path, or pass "
            "--overwrite_output_dir to replace the folder and everything in it.", path=save_path, shown=shown))
    save_path.parent.mkdir(parents=True, exist_ok=True)
    features = datasets.Features(
        {"input_ids": datasets.List(datasets.Value("int64")), "seq_len": datasets.Value("int64")}
    )
    dataset = datasets.Dataset.from_list(rows, features=features)
    tmp = Path(tempfile.mkdtemp(prefix=f".{save_path.name}.", suffix=".tmp", dir=save_path.parent))
    old = tmp.with_name(tmp.name + ".old")
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset folder should be readable like any other
        dataset.save_to_disk(str(tmp))
        with atomic_write(tmp / PARAMS_FILE) as handle:
            json.dump(params, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        if save_path.exists():
            os.replace(save_path, old)
        os.replace(tmp, save_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not save_path.exists():
            os.replace(old, save_path)  # put the previous dataset back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return dataset


def _read_params(path: Path, rebuild: str) -> dict:
    """The parameters recorded beside a tokenized dataset; a DataError when they are missing or damaged."""
    params_file = path / PARAMS_FILE
    if not path.is_dir():
        raise DataError(_("{path}: no tokenized dataset there; {rebuild}", path=path, rebuild=rebuild))
    if not params_file.exists():
        raise DataError(_("{path}: no {file}, so its parameters are unknown (an old or foreign cache); {rebuild}",
                          path=path, file=PARAMS_FILE, rebuild=rebuild))
    try:
        params = json.loads(params_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DataError(_("{file}: damaged, not valid JSON ({reason}); the dataset's parameters are unknown, so "
                          "{rebuild}", file=params_file, reason=err, rebuild=rebuild)) from None
    if not isinstance(params, dict):
        raise DataError(_("{file}: damaged, holds {kind} instead of an object; {rebuild}", file=params_file,
                          kind=_json_kind(params), rebuild=rebuild))
    return params


def load_tokenized(path, tokenizer=None, max_seq_length=None, skip_overlength=None, source_path=None):
    """Load rows saved by ``save_tokenized``; any parameter you pass must match the recorded one.

    Returns (dataset, params). A mismatch raises DataError naming each stale parameter.
    """
    import datasets

    path = Path(path)
    rebuild = _("re-create it: {command}", command=f"python -m glmcourse.tokenize_dataset_rows --jsonl_path IN.jsonl "
                f"--save_path {path} --max_seq_length N --skip_overlength false")
    params = _read_params(path, rebuild)
    wanted = {}
    if max_seq_length is not None:
        wanted["max_seq_length"] = (params.get("max_seq_length"), max_seq_length)
    if skip_overlength is not None:
        wanted["skip_overlength"] = (params.get("skip_overlength"), bool(skip_overlength))
    if tokenizer is not None:
        now = tokenizer_fingerprint(tokenizer)
        then = params.get("tokenizer", {})
        wanted[_("tokenizer vocabulary")] = (then.get("vocab_sha256", "?")[:12], now["vocab_sha256"][:12])
        wanted[_("tokenizer special ids")] = (then.get("special_ids"), now["special_ids"])
    if source_path is not None:
        wanted[_("source file (sha256)")] = (params.get("source", {}).get("sha256", "?")[:12],
                                             file_sha256(source_path)[:12])
    stale = [_("{name}: recorded {was!r}, now {now!r}", name=name, was=was, now=now)
             for name, (was, now) in wanted.items() if was != now]
    if stale:
        raise DataError(_("{path}: stale tokenized data, built with other parameters ({stale}); {rebuild}", path=path,
                          stale="; ".join(stale), rebuild=rebuild), stale)
    return datasets.load_from_disk(str(path)), params


# ----------------------------------------------------------------------------------------------
# Labels and the collator
# ----------------------------------------------------------------------------------------------
def build_labels(input_ids, seq_len: int) -> list[int]:
    """Mask the prompt up to (not including) <sop>: [-100] * (seq_len - 1) + input_ids[seq_len - 1:]."""
    return [IGNORE_INDEX] * (seq_len - 1) + list(input_ids[seq_len - 1 :])


class DataCollator:
    """Batches as in ChatGLM-Tuning: longest row first, input_ids right-padded with the pad id,
    labels from ``build_labels`` padded with -100. Only input_ids and labels are returned: the
    model derives its attention mask and 2D positions from [gMASK] and <sop> itself.
    """

    def __init__(self, pad_token_id: int, sop_token_id: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.sop_token_id = sop_token_id

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "DataCollator":
        ids = special_ids(tokenizer)
        return cls(ids["pad"], ids["sop"])

    def _check(self, ids, seq_len, index):
        if not 1 <= seq_len <= len(ids):
            raise DataError(_(
                "batch row {index}: seq_len {seq_len} does not fit len(input_ids) {length}: the prompt was cut off "
                "(the upstream truncation bug) or the columns are mixed up; re-tokenize with "
                "python -m glmcourse.tokenize_dataset_rows.", index=index, seq_len=seq_len, length=len(ids)))
        if self.sop_token_id is not None and ids[seq_len - 1] != self.sop_token_id:
            raise DataError(_(
                "batch row {index}: input_ids[seq_len - 1] is {found}, not <sop> ({sop}): the row was built with "
                "another tokenizer or without special tokens; re-tokenize it.", index=index, found=ids[seq_len - 1],
                sop=self.sop_token_id))

    def __call__(self, features) -> dict:
        import torch

        if not features:
            raise DataError(_("empty batch: 0 training samples after filtering (0 overlength)."))
        longest = max(len(f["input_ids"]) for f in features)
        ordered = sorted(enumerate(features), key=lambda item: -len(item[1]["input_ids"]))
        batch_ids, batch_labels = [], []
        for index, feature in ordered:
            ids, seq_len = list(feature["input_ids"]), int(feature["seq_len"])
            self._check(ids, seq_len, index)
            pad = longest - len(ids)
            batch_ids.append(ids + [self.pad_token_id] * pad)
            batch_labels.append(build_labels(ids, seq_len) + [IGNORE_INDEX] * pad)
        return {"input_ids": torch.LongTensor(batch_ids), "labels": torch.LongTensor(batch_labels)}


# ----------------------------------------------------------------------------------------------
# Command-line helpers
# ----------------------------------------------------------------------------------------------
TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}


def str2bool(value) -> bool:
    """Strict bool for argparse: true/false, 1/0, yes/no (any case). Upstream's type=bool made "False" True."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(_("expected true/false, 1/0 or yes/no, got {value!r}", value=value))


# ----------------------------------------------------------------------------------------------
# Labels in colour (for the notebook)
# ----------------------------------------------------------------------------------------------
def token_names(tokenizer, input_ids) -> list[str]:
    """A readable piece per id: special tokens by name ([gMASK], <sop>, <eop>), others decoded alone.

    A byte-level BPE can split one Chinese character over several ids; such a piece shows as '�'.
    """
    input_ids = [int(i) for i in input_ids]
    specials = set(getattr(tokenizer, "all_special_ids", [])) | set(special_ids(tokenizer).values())
    names = tokenizer.convert_ids_to_tokens(input_ids)
    return [str(name) if i in specials else tokenizer.decode([i]) for i, name in zip(input_ids, names)]


def row_table(tokenizer, input_ids, labels) -> str:
    """position | id | token | label, one line per token: the row as the loss sees it."""
    lines, masked = [_("pos     id  token         label")], _("-100 (masked)")
    for pos, (i, piece, label) in enumerate(zip(input_ids, token_names(tokenizer, input_ids), labels)):
        lines.append(f"{pos:>3}  {i:>5}  {piece!r:<12}  {masked if label == IGNORE_INDEX else label}")
    return "\n".join(lines)


def labels_html(tokens, labels) -> str:
    """Tokens as coloured chips: grey = masked (-100, no loss), green = supervised."""
    import html

    chips = []
    for token, label in zip(tokens, labels):
        masked = label == IGNORE_INDEX
        style = "background:#ddd;color:#777" if masked else "background:#b6e3b6;color:#063"
        chips.append(
            f'<span style="{style};padding:1px 3px;margin:1px;border-radius:3px;font-family:monospace" '
            f'title="label {label}">{html.escape(token)}</span>'
        )
    legend = (
        '<div style="margin-top:4px"><span style="background:#ddd;color:#777;padding:1px 3px">'
        + html.escape(_("masked: label -100")) + '</span> <span style="background:#b6e3b6;color:#063;padding:1px 3px">'
        + html.escape(_("supervised: label = token id")) + "</span></div>"
    )
    return '<div style="line-height:1.9">' + "".join(chips) + "</div>" + legend
