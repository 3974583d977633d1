"""Lesson 04: Alpaca -> context/target -> token rows -> batches (glmcourse.data and its two commands).

Expected values come from the rules in the reference (the converter's format, the reference's
tokenized row, the collator's labels), written out by hand; the seed's own example lines are used
verbatim as the byte-identity check. Tokenization uses the course tokenizer (glmcourse.COURSE_MODEL);
``CharTokenizer`` (one id per character) stands in where a test needs a deliberately odd tokenizer or
lengths that are easy to count by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import glmcourse
from glmcourse import cover_alpaca2jsonl, data, tokenize_dataset_rows
from glmcourse.data import DataError
from glmcourse.exercises import data as checks

REPO = Path(glmcourse.REPO_ROOT)
MALFORMED = REPO / "data" / "malformed"


class CharTokenizer:
    """One id per character; ChatGLM's interface (encode appends [gMASK] <sop>; special-id attributes).

    ``offset`` shifts every id (old ChatGLM checkpoints had ids 20000 higher); ``append_sop=False``
    imitates a broken tokenizer whose prompts lack <sop>.
    """

    SPECIALS = ["<unk>", "<pad>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>"]

    def __init__(self, offset: int = 0, append_sop: bool = True):
        self.offset, self.append_sop = offset, append_sop
        self.name_or_path = f"char-tokenizer-{offset}"
        ids = {tok: offset + i for i, tok in enumerate(self.SPECIALS)}
        self.pad_token_id, self.gmask_token_id = ids["<pad>"], ids["[gMASK]"]
        self.sop_token_id = self.bos_token_id = ids["<sop>"]
        self.eop_token_id = self.eos_token_id = ids["<eop>"]
        self.mask_token_id = ids["[MASK]"]

    def _char_id(self, ch):
        return self.offset + 100 + ord(ch)

    def encode(self, text, add_special_tokens=True):
        ids = [self._char_id(ch) for ch in text]
        if add_special_tokens:
            ids += [self.gmask_token_id, self.sop_token_id] if self.append_sop else [self.gmask_token_id]
        return ids

    def get_vocab(self):
        vocab = {tok: self.offset + i for i, tok in enumerate(self.SPECIALS)}
        vocab.update({chr(c): self._char_id(chr(c)) for c in range(32, 127)})
        return vocab

    def decode(self, ids):
        return "".join(self.convert_ids_to_tokens(ids))

    def convert_ids_to_tokens(self, ids):
        back = {v: k for k, v in self.get_vocab().items()}
        return [back[i] if i in back else chr(i - self.offset - 100) for i in ids]


@pytest.fixture(scope="module")
def tok():
    """The course tokenizer, loaded as the commands load it."""
    return tokenize_dataset_rows.load_tokenizer(glmcourse.COURSE_MODEL)


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# The converter's format, from the rule
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "record, context",
    [
        ({"instruction": "Say hi.", "input": "", "output": "hi"}, "Instruction: Say hi.\nAnswer: "),
        ({"instruction": "Say hi.", "input": "to Bob", "output": "hi Bob"},
         "Instruction: Say hi.\nInput: to Bob\nAnswer: "),
        # whitespace-only input is truthy in Python, so it gets its line; nothing is stripped
        ({"instruction": " Say hi. ", "input": "  ", "output": "hi"}, "Instruction:  Say hi. \nInput:   \nAnswer: "),
        ({"instruction": "Say hi.", "input": "\n", "output": "hi"}, "Instruction: Say hi.\nInput: \n\nAnswer: "),
        ({"instruction": "Say hi.", "input": None, "output": "hi"}, "Instruction: Say hi.\nAnswer: "),
        ({"instruction": "Say hi.", "output": "hi"}, "Instruction: Say hi.\nAnswer: "),
        ({"instruction": "翻译成英文：", "input": "猫", "output": "cat"}, "Instruction: 翻译成英文：\nInput: 猫\nAnswer: "),
    ],
    ids=["no-input", "input", "whitespace-input", "newline-input", "input-None", "input-missing", "chinese"],
)
def test_format_example_follows_the_rule(record, context):
    assert data.format_example(record) == {"context": context, "target": record["output"]}


def test_target_is_the_output_verbatim():
    output = "  1. first\n2. second  \n"
    assert data.format_example({"instruction": "x", "input": "", "output": output})["target"] == output


def test_seed_example_lines_are_byte_identical(tmp_path):
    # The two records and the two expected lines from the seed's write-up of ChatGLM-Tuning.
    tips = ("1.Eat a balanced diet and make sure to include plenty of fruits and vegetables. \n2. Exercise "
            "regularly to keep your body active and strong. \n3. Get enough sleep and maintain a consistent "
            "sleep schedule.")
    records = [
        {"instruction": "Give three tips for staying healthy.", "input": "", "output": tips},
        {"instruction": "Edit the following sentence (highlight changes in bold)",
         "input": "We use computers for gaming and entertainment",
         "output": "We use computers for gaming, entertainment, and work."},
    ]
    expected = (
        '{"context": "Instruction: Give three tips for staying healthy.\\nAnswer: ", "target": "1.Eat a balanced '
        'diet and make sure to include plenty of fruits and vegetables. \\n2. Exercise regularly to keep your body '
        'active and strong. \\n3. Get enough sleep and maintain a consistent sleep schedule."}\n'
        '{"context": "Instruction: Edit the following sentence (highlight changes in bold)\\nInput: We use '
        'computers for gaming and entertainment\\nAnswer: ", "target": "We use computers for gaming, '
        'entertainment, and work."}\n'
    ).encode("ascii")
    out = tmp_path / "out.jsonl"
    assert cover_alpaca2jsonl.convert_file(write_json(tmp_path / "in.json", records), out) == 2
    assert out.read_bytes() == expected


def test_chinese_is_ascii_escaped_and_survives_the_round_trip(tmp_path):
    record = {"instruction": "把句子整理成 JSON：", "input": "王芳，29岁。", "output": '{"name": "王芳"}'}
    out = tmp_path / "out.jsonl"
    cover_alpaca2jsonl.convert_file(write_json(tmp_path / "in.json", [record]), out)
    raw = out.read_bytes()
    # json.dumps defaults: \uXXXX escapes (把 is U+628A, 王 is U+738B), ", " and ": " separators
    assert raw.isascii() and b"\\u628a" in raw and b"\\u738b" in raw
    assert raw.startswith(b'{"context": "Instruction: ') and b'", "target": "{\\"name\\": ' in raw
    assert json.loads(raw) == data.format_example(record)


def test_bom_input_gives_the_same_output_without_a_bom(tmp_path):
    plain, bom = tmp_path / "plain.jsonl", tmp_path / "bom.jsonl"
    cover_alpaca2jsonl.convert_file(MALFORMED / "utf8_bom.json", bom)
    text = (MALFORMED / "utf8_bom.json").read_text(encoding="utf-8-sig")
    (tmp_path / "plain.json").write_text(text, encoding="utf-8")
    cover_alpaca2jsonl.convert_file(tmp_path / "plain.json", plain)
    assert bom.read_bytes() == plain.read_bytes() and not bom.read_bytes().startswith(b"\xef\xbb\xbf")


# ------------------------------------------------------------------------------------------------
# Malformed records (docs/failure-catalog.md#f05-malformed-alpaca-records)
# ------------------------------------------------------------------------------------------------
def test_every_bad_record_is_reported_by_index_and_field():
    with pytest.raises(DataError) as err:
        data.load_alpaca(MALFORMED / "missing_fields.json")
    message = str(err.value)
    assert "5 of 7 records are invalid" in message
    for line in ["record 1: 'output' is missing", "record 2: 'instruction' is missing",
                 "record 3: 'output' is not a string", "record 4: 'instruction' is not a string",
                 "record 6: record is not an object"]:
        assert line in message
    assert "record 0" not in message and "record 5" not in message  # 5 has input null: that is fine
    assert {(i, f) for i, f, *_ in err.value.problems} == {
        (1, "output"), (2, "instruction"), (3, "output"), (4, "instruction"), (6, "(record)")}


def test_many_bad_records_are_all_listed_in_the_summary():
    records = [{"instruction": "ok", "output": "ok"}] * 3 + [{"instruction": "no output"}] * 40
    with pytest.raises(DataError) as err:
        data.validate_alpaca(records, "many.json")
    assert "40 of 43 records are invalid" in str(err.value)
    assert "'output' is missing: 3-42" in str(err.value)
    assert len(err.value.problems) == 40


def test_input_none_counts_as_empty():
    records = data.load_alpaca(MALFORMED / "input_none.json")
    assert records[0]["input"] == ""
    assert data.format_example(records[0])["context"] == "Instruction: 你好\nAnswer: "


@pytest.mark.parametrize("value", [1, 2.5, True, ["a"], {"a": 1}])
def test_non_string_input_is_an_error(value):
    with pytest.raises(DataError, match="record 0: 'input' is not a string"):
        data.validate_alpaca([{"instruction": "x", "input": value, "output": "y"}])


def test_top_level_object_is_explained():
    with pytest.raises(DataError, match=r"top level must be a JSON array.*\['data'\]"):
        data.load_alpaca(MALFORMED / "top_level_object.json")
    with pytest.raises(DataError, match="single record: wrap it in"):
        data.validate_alpaca({"instruction": "x", "output": "y"})


def test_empty_array_is_an_error():
    with pytest.raises(DataError, match="empty"):
        data.validate_alpaca([])


def test_data_readme_counts_match_the_files():
    import re

    readme = (REPO / "data" / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+\.json)` \| ([\d,]+) \|", readme, flags=re.M))
    assert set(rows) == {"course_chat.json", "chat_eval.json", "lora_train.json", "lora_eval.json"}
    for name, count in rows.items():
        records = json.loads((REPO / "data" / name).read_text(encoding="utf-8"))
        assert len(records) == int(count.replace(",", "")), f"data/README.md says {count} records in {name}"
    docs = re.search(r"^\| `corpus.txt` / `corpus_eval.txt` \| ([\d,]+) / ([\d,]+) documents", readme, flags=re.M)
    for name, count in zip(["corpus.txt", "corpus_eval.txt"], docs.groups()):
        text = (REPO / "data" / name).read_text(encoding="utf-8")
        assert len(text.strip("\n").split("\n\n\n")) == int(count.replace(",", "")), name


def test_lora_data_is_valid_and_train_and_eval_do_not_overlap():
    train = data.load_alpaca(REPO / "data" / "lora_train.json")
    evaluation = data.load_alpaca(REPO / "data" / "lora_eval.json")
    assert len(train) >= 1000 and len(evaluation) >= 200
    train_keys = {(r["instruction"], r["input"]) for r in train}
    assert not any((r["instruction"], r["input"]) in train_keys for r in evaluation)


# ------------------------------------------------------------------------------------------------
# File shape and encoding (docs/failure-catalog.md#f06-file-shape-and-encoding)
# ------------------------------------------------------------------------------------------------
def test_jsonl_instead_of_json_is_explained():
    with pytest.raises(DataError, match=r"JSON Lines \(2 lines.*single JSON array"):
        data.load_alpaca(MALFORMED / "records.jsonl")


def test_converted_jsonl_given_to_the_converter_points_to_the_next_step(tmp_path):
    out = tmp_path / "x.jsonl"
    cover_alpaca2jsonl.convert_file(MALFORMED / "utf8_bom.json", out)
    with pytest.raises(DataError, match="already converted context/target rows"):
        data.load_alpaca(out)


def test_json_array_given_where_jsonl_is_expected_is_explained():
    with pytest.raises(DataError, match="JSON array, not JSON Lines.*cover_alpaca2jsonl"):
        data.load_jsonl(MALFORMED / "utf8_bom.json")


def test_alpaca_records_as_jsonl_given_to_the_tokenizer_step_are_explained():
    with pytest.raises(DataError, match="every line is an Alpaca record"):
        data.load_jsonl(MALFORMED / "records.jsonl")


def test_gbk_file_gets_an_error_naming_the_encoding():
    with pytest.raises(DataError) as err:
        data.load_alpaca(MALFORMED / "gbk.json")
    message = str(err.value)
    assert "not UTF-8" in message and "GBK" in message and "encoding='utf-8'" in message
    assert "line 3" in message  # the first Chinese character is on line 3 of the file


def test_gbk_advice_actually_fixes_the_file(tmp_path):
    fixed = tmp_path / "fixed.json"
    fixed.write_text((MALFORMED / "gbk.json").read_text(encoding="gbk"), encoding="utf-8")
    assert data.load_alpaca(fixed)[0]["input"] == "王芳今年29岁，住在上海。"


def test_broken_json_line_reports_line_and_column():
    # broken_line.json has a trailing comma at the end of line 10; the parser stops at line 11, column 2
    with pytest.raises(DataError, match=r"line 11, column 2.*trailing comma"):
        data.load_alpaca(MALFORMED / "broken_line.json")


def test_broken_jsonl_line_is_reported_by_number():
    with pytest.raises(DataError, match=r"1 bad lines.*\n  line 2: not valid JSON"):
        data.load_jsonl(MALFORMED / "broken_line.jsonl")


def test_jsonl_lines_missing_fields_are_all_reported(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"context": "a", "target": "b"}\n{"context": "a"}\n[1]\n{"target": 3, "context": "c"}\n')
    with pytest.raises(DataError) as err:
        data.load_jsonl(path)
    assert [n for n, _ in err.value.problems] == [2, 3, 4]


# ------------------------------------------------------------------------------------------------
# Atomic output (docs/failure-catalog.md#f25-interrupted-run)
# ------------------------------------------------------------------------------------------------
def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp" in p.name)


def test_failure_midway_leaves_no_output_and_no_temp_file(tmp_path, monkeypatch):
    src = write_json(tmp_path / "in.json", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(50)])
    real, calls = data.jsonl_line, []

    def failing(example):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt  # what Ctrl-C raises
        return real(example)

    monkeypatch.setattr(cover_alpaca2jsonl, "jsonl_line", failing)  # the converter writes each line
    out = tmp_path / "out" / "rows.jsonl"
    with pytest.raises(KeyboardInterrupt):
        cover_alpaca2jsonl.convert_file(src, out)
    assert len(calls) == 25
    assert not out.exists() and leftovers(out.parent) == []


def test_failure_keeps_the_previous_output(tmp_path):
    out = tmp_path / "rows.jsonl"
    out.write_text("previous run\n")
    with pytest.raises(DataError):
        cover_alpaca2jsonl.convert_file(MALFORMED / "missing_fields.json", out)
    assert out.read_text() == "previous run\n" and leftovers(tmp_path) == []


# Subprocesses skip the model package (transformers takes many seconds to import on a busy machine):
# the converter does not need it. Everything else runs as `python -m glmcourse.cover_alpaca2jsonl`.
LIGHT_START = "import sys, types; sys.modules['glmcourse.modeling'] = types.ModuleType('glmcourse.modeling')\n"
LIGHT_ENV = {**os.environ, "GLMCOURSE_FAST": "0", "GLMCOURSE_QUIET": "0", "TQDM_DISABLE": "1"}
RUN_CONVERTER = LIGHT_START + "import runpy; runpy.run_module('glmcourse.cover_alpaca2jsonl', run_name='__main__')\n"
SLOW_CONVERTER = LIGHT_START + """
import time
import glmcourse.data as data
real = data.jsonl_line
def slow(example):
    time.sleep(0.002)
    return real(example)
data.jsonl_line = slow
""" + RUN_CONVERTER.split("\n", 1)[1]


def converter_process(script, *args, **kw):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=LIGHT_ENV, **kw)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_converter_leaves_no_partial_output(tmp_path, sig):
    src = write_json(tmp_path / "big.json", [{"instruction": f"q{i}", "output": "a" * 50} for i in range(5000)])
    out = tmp_path / "out.jsonl"
    proc = converter_process(SLOW_CONVERTER, "--data_path", src, "--save_path", out)
    deadline = time.monotonic() + 60
    while not leftovers(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert leftovers(tmp_path), "the converter never started writing its temp file"
    time.sleep(0.3)  # well inside the ~10 s the slowed writer needs
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not out.exists()  # the output path never holds a partial file
    if sig == signal.SIGTERM:  # a catchable signal also cleans up the temp file
        assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Tokenization, from the reference's rule
# ------------------------------------------------------------------------------------------------
EXAMPLE = {"context": "Instruction: Turn this sentence into JSON:\nInput: Bob, aged 30, lives in Oslo.\nAnswer: ",
           "target": '{"name": "Bob", "age": 30, "city": "Oslo"}'}


def test_row_is_context_ids_then_target_ids_then_eop(tok):
    row, status = data.tokenize_row(tok, EXAMPLE, max_seq_length=1000)
    context_ids = list(tok.encode(EXAMPLE["context"]))
    target_ids = list(tok.encode(EXAMPLE["target"], add_special_tokens=False))
    assert context_ids[-2:] == [tok.gmask_token_id, tok.sop_token_id]
    assert row == {"input_ids": context_ids + target_ids + [tok.eop_token_id], "seq_len": len(context_ids)}
    assert status == "fits"


def test_chinese_row_decodes_back_to_the_text(tok):
    example = data.format_example({"instruction": "把句子整理成 JSON：", "input": "王芳，29岁。", "output": '{"name": "王芳"}'})
    row, _ = data.tokenize_row(tok, example, 1000)
    seq_len = row["seq_len"]
    assert tok.decode(row["input_ids"][: seq_len - 2]) == example["context"]
    assert tok.decode(row["input_ids"][seq_len:-1]) == example["target"]


def test_missing_tokenizer_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="could not load a tokenizer.*--model_name_or_path"):
        tokenize_dataset_rows.load_tokenizer(tmp_path / "no_model_here")


def test_overlength_row_keeps_specials_and_truncates_the_target(tok):
    context_len = len(tok.encode(EXAMPLE["context"]))
    target_ids = list(tok.encode(EXAMPLE["target"], add_special_tokens=False))
    max_len = context_len + 3  # room for two target tokens and <eop>
    assert len(target_ids) > 2
    row, status = data.tokenize_row(tok, EXAMPLE, max_seq_length=max_len)
    ids = row["input_ids"]
    assert status == "truncated" and len(ids) == max_len and row["seq_len"] == context_len
    assert ids[context_len - 2 : context_len] == [tok.gmask_token_id, tok.sop_token_id]
    assert ids[context_len:] == target_ids[:2] + [tok.eop_token_id]


def test_overlength_context_is_cut_from_the_left_keeping_the_specials():
    ctx, tgt, eop = [11, 12, 13, 14, 15, 1, 2], [21, 22, 23], 3
    ids, seq_len, status = data.fit_to_length(ctx, tgt, eop, 5)
    # 5 = [gMASK] <sop> + one target token + <eop> + one token of context text (the last one)
    assert (ids, seq_len, status) == ([15, 1, 2, 21, 3], 3, "context_truncated")
    assert data.fit_to_length(ctx, tgt, eop, 4)[0] == [1, 2, 21, 3]
    # an empty target needs no target token: [gMASK] <sop> + <eop> leaves one place for context text
    assert data.fit_to_length(ctx, [], eop, 4) == ([15, 1, 2, 3], 3, "context_truncated")


def test_skip_overlength_drops_long_rows_only(tok):
    context_len = len(tok.encode(EXAMPLE["context"]))
    full = context_len + len(tok.encode(EXAMPLE["target"], add_special_tokens=False)) + 1
    assert data.tokenize_row(tok, EXAMPLE, full - 1, skip_overlength=True) == (None, "skipped")
    assert data.tokenize_row(tok, EXAMPLE, full, skip_overlength=True)[1] == "fits"


def test_counts_of_kept_skipped_and_truncated():
    tok = CharTokenizer()
    # lengths: len(context) + 2 specials + len(target) + 1 eop
    examples = [{"context": "a", "target": "b"},         # 5
                {"context": "ab", "target": "cdef"},     # 9
                {"context": "abcdefgh", "target": "x"}]  # 12
    rows, counts = data.tokenize_examples(tok, examples, max_seq_length=8)
    assert counts == {"read": 3, "kept": 3, "skipped": 0, "truncated": 2, "context_truncated": 1}
    assert all(len(r["input_ids"]) <= 8 and r["input_ids"][-1] == tok.eop_token_id for r in rows)
    rows, counts = data.tokenize_examples(tok, examples, max_seq_length=8, skip_overlength=True)
    assert counts == {"read": 3, "kept": 1, "skipped": 2, "truncated": 0, "context_truncated": 0}
    assert rows == [{"input_ids": [tok._char_id("a"), tok.gmask_token_id, tok.sop_token_id, tok._char_id("b"),
                                   tok.eop_token_id], "seq_len": 3}]


# Lengths that cannot hold a row, and nothing left to train on (docs/failure-catalog.md: F08, F10)
@pytest.mark.parametrize("bad", [0, -5, 3, True, 200.0, "200"])
def test_max_seq_length_that_cannot_hold_a_row_is_rejected_before_any_work(bad):
    tok = CharTokenizer()
    with pytest.raises(DataError, match="max_seq_length"):
        data.tokenize_examples(tok, iter(()), bad)  # fails before looking at the examples


def test_zero_rows_after_filtering_is_an_error():
    tok = CharTokenizer()
    examples = [{"context": "long context", "target": "long target"}] * 3
    with pytest.raises(DataError, match=r"0 training samples after filtering \(3 overlength\)"):
        data.tokenize_examples(tok, examples, 10, skip_overlength=True)


def test_empty_jsonl_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match="0 training samples"):
        data.load_jsonl(path)


# Special-token ids (docs/failure-catalog.md#f12-special-token-ids)
def test_special_ids_are_read_from_the_tokenizer():
    shifted = CharTokenizer(offset=20000)  # like checkpoints from before 2023-04-06
    row, _ = data.tokenize_row(shifted, {"context": "q", "target": "a"}, 20)
    assert row["input_ids"] == [20100 + ord("q"), 20003, 20005, 20100 + ord("a"), 20006]
    assert data.DataCollator.from_tokenizer(shifted).pad_token_id == 20001


def test_prompt_without_sop_is_a_clear_error():
    with pytest.raises(DataError, match=r"did not end the prompt with \[gMASK\] <sop>"):
        data.tokenize_row(CharTokenizer(append_sop=False), {"context": "q", "target": "a"}, 20)


def test_tokenizer_without_chatglm_specials_is_a_clear_error():
    class Plain:
        pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    with pytest.raises(DataError, match="gmask_token_id.*not a ChatGLM tokenizer"):
        data.special_ids(Plain())


def test_suggested_max_seq_length_is_the_rounded_up_quantile():
    lengths = list(range(1, 101))  # nearest-rank 99th percentile is 99, 95th is 95
    assert data.suggest_max_seq_length(lengths) == 104
    assert data.suggest_max_seq_length(lengths, quantile=0.95) == 96
    assert data.suggest_max_seq_length(lengths, quantile=1.0, multiple=1) == 100


# ------------------------------------------------------------------------------------------------
# Collator: labels as in the reference
# ------------------------------------------------------------------------------------------------
def test_collator_sorts_pads_and_masks_the_prompt():
    pad, sop = 0, 2
    features = [
        {"input_ids": [11, 1, 2, 21, 3], "seq_len": 3},              # 5 long
        {"input_ids": [11, 12, 13, 1, 2, 21, 22, 3], "seq_len": 5},  # 8 long: comes first
        {"input_ids": [1, 2, 3], "seq_len": 2},                      # 3 long
    ]
    batch = data.DataCollator(pad_token_id=pad, sop_token_id=sop)(features)
    assert set(batch) == {"input_ids", "labels"}
    assert batch["input_ids"].dtype == torch.long and batch["labels"].dtype == torch.long
    assert batch["input_ids"].tolist() == [[11, 12, 13, 1, 2, 21, 22, 3],
                                           [11, 1, 2, 21, 3, 0, 0, 0],
                                           [1, 2, 3, 0, 0, 0, 0, 0]]
    m = -100
    assert batch["labels"].tolist() == [[m, m, m, m, 2, 21, 22, 3],   # <sop>, target and <eop> supervised
                                         [m, m, 2, 21, 3, m, m, m],
                                         [m, 2, 3, m, m, m, m, m]]


def test_collator_keeps_the_order_of_equal_lengths():
    features = [{"input_ids": [1, 2, 7], "seq_len": 2}, {"input_ids": [1, 2, 8], "seq_len": 2}]
    assert data.DataCollator(0)(features)["input_ids"][:, 2].tolist() == [7, 8]


def test_collator_rejects_rows_whose_prompt_was_cut_off():
    # upstream's input_ids[:max_seq_length] can leave seq_len > len(input_ids): labels all -100 and misaligned
    with pytest.raises(DataError, match="seq_len 6 does not fit len\\(input_ids\\) 4"):
        data.DataCollator(0, 2)([{"input_ids": [11, 12, 13, 14], "seq_len": 6}])
    with pytest.raises(DataError, match="not <sop>"):
        data.DataCollator(0, 2)([{"input_ids": [11, 12, 13, 14], "seq_len": 2}])


def test_collator_on_real_rows_supervises_exactly_sop_target_and_eop(tok):
    rows = [data.tokenize_row(tok, EXAMPLE, 1000)[0], data.tokenize_row(tok, {"context": "Hi", "target": "Yo"}, 1000)[0]]
    batch = data.DataCollator.from_tokenizer(tok)(rows)
    first = rows[0]  # the longer row
    supervised = [t for t in batch["labels"][0].tolist() if t != -100]
    assert supervised == first["input_ids"][first["seq_len"] - 1 :]
    assert supervised[0] == tok.sop_token_id and supervised[-1] == tok.eop_token_id


def test_token_names_name_the_specials_and_the_table_marks_the_masked_part(tok):
    row, _ = data.tokenize_row(tok, {"context": "Hi", "target": "Yo"}, 100)
    labels = data.build_labels(row["input_ids"], row["seq_len"])
    names = data.token_names(tok, row["input_ids"])
    assert names[row["seq_len"] - 2 : row["seq_len"]] == ["[gMASK]", "<sop>"] and names[-1] == "<eop>"
    assert "".join(names[: row["seq_len"] - 2]) == "Hi" and "".join(names[row["seq_len"] : -1]) == "Yo"
    table = data.row_table(tok, row["input_ids"], labels).splitlines()
    assert len(table) == 1 + len(labels)
    assert sum("-100 (masked)" in line for line in table) == row["seq_len"] - 1
    html = data.labels_html(names, labels)
    assert html.count("background:#ddd;color:#777;padding:1px 3px;margin") == row["seq_len"] - 1
    assert html.count("background:#b6e3b6;color:#063;padding:1px 3px;margin") == len(labels) - row["seq_len"] + 1


# ------------------------------------------------------------------------------------------------
# Strict bool flag (docs/failure-catalog.md#f09-skip-overlength-false)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("False", False), ("false", False), ("FALSE", False), ("0", False),
                                         ("no", False), ("True", True), ("true", True), ("1", True), ("YES", True)])
def test_str2bool_accepts_the_usual_spellings(text, value):
    assert data.str2bool(text) is value


@pytest.mark.parametrize("text", ["maybe", "", "2", "Fals", "none"])
def test_str2bool_rejects_anything_else(text):
    with pytest.raises(argparse.ArgumentTypeError):
        data.str2bool(text)


def test_upstream_type_bool_parses_false_as_true():
    # the bug being fixed: argparse calls bool("False"), and a non-empty string is True
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip_overlength", type=bool, default=False)
    assert parser.parse_args(["--skip_overlength", "False"]).skip_overlength is True


def test_cli_parses_skip_overlength_strictly(capsys, tmp_path):
    (tmp_path / "x.jsonl").write_text('{"context": "c", "target": "t"}\n')
    base = ["--jsonl_path", str(tmp_path / "x.jsonl"), "--save_path", str(tmp_path / "out")]
    assert tokenize_dataset_rows.parse_args(base + ["--skip_overlength", "False"]).skip_overlength is False
    assert tokenize_dataset_rows.parse_args(base + ["--skip_overlength", "true"]).skip_overlength is True
    assert tokenize_dataset_rows.parse_args(base).skip_overlength is False
    assert tokenize_dataset_rows.parse_args(base).max_seq_length == 200
    with pytest.raises(SystemExit) as exit_info:
        tokenize_dataset_rows.parse_args(base + ["--skip_overlength", "maybe"])
    assert exit_info.value.code == 2
    assert "--skip_overlength: expected true/false" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# The commands
# ------------------------------------------------------------------------------------------------
def test_converter_cli_counts_and_exit_status(tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    assert cover_alpaca2jsonl.main(["--data_path", str(MALFORMED / "utf8_bom.json"), "--save_path", str(out)]) == 0
    assert "converted 2 records" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 2
    assert cover_alpaca2jsonl.main(["--data_path", str(MALFORMED / "gbk.json"), "--save_path", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "GBK" in err and "Traceback" not in err


def test_converter_cli_reports_os_errors_and_restores_the_sigterm_handler(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    before = signal.getsignal(signal.SIGTERM)
    code = cover_alpaca2jsonl.main(["--data_path", str(MALFORMED / "utf8_bom.json"),
                                    "--save_path", str(blocker / "rows.jsonl")])
    assert code == 2 and capsys.readouterr().err.startswith("error: ")  # refused by the guard
    assert signal.getsignal(signal.SIGTERM) is before


def test_empty_alpaca_file_is_explained(tmp_path):
    (tmp_path / "empty.json").write_text("\n")
    with pytest.raises(DataError, match="the file is empty"):
        data.load_alpaca(tmp_path / "empty.json")


def test_converter_module_exits_non_zero_without_a_traceback(tmp_path):
    proc = converter_process(RUN_CONVERTER, "--data_path", MALFORMED / "missing_fields.json",
                             "--save_path", tmp_path / "x.jsonl")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in err and "record 1: 'output' is missing" in err
    assert not (tmp_path / "x.jsonl").exists()


def test_tokenize_cli_checks_max_seq_length_before_reading(tmp_path, capsys):
    code = tokenize_dataset_rows.main(["--jsonl_path", str(tmp_path / "missing.jsonl"), "--save_path",
                                       str(tmp_path / "out"), "--max_seq_length", "0"])
    assert code == 2 and "--max_seq_length: 0: out of range" in capsys.readouterr().err  # before reading


@pytest.fixture()
def tokenized(tmp_path, capsys):
    """A small JSONL tokenized by the command with its default (course) tokenizer:
    (jsonl, output folder, arguments, printed output)."""
    jsonl = tmp_path / "rows.jsonl"
    cover_alpaca2jsonl.convert_file(MALFORMED / "utf8_bom.json", jsonl)
    out = tmp_path / "tok"
    args = ["--jsonl_path", str(jsonl), "--save_path", str(out), "--max_seq_length", "30", "--skip_overlength", "false"]
    assert tokenize_dataset_rows.main(args) == 0
    return jsonl, out, args, capsys.readouterr().out


def test_tokenize_cli_saves_rows_counts_and_parameters(tokenized, tok):
    jsonl, out, _, printed = tokenized
    examples = data.load_jsonl(jsonl)
    lengths = data.example_lengths(tok, examples)
    n_long = sum(n > 30 for n in lengths)
    assert f"read 2 rows; kept 2 (truncated to 30 tokens: {n_long}" in printed and "skipped overlength: 0" in printed
    dataset, params = data.load_tokenized(out, tokenizer=tok, max_seq_length=30, skip_overlength=False,
                                          source_path=jsonl)
    assert dataset.column_names == ["input_ids", "seq_len"] and len(dataset) == 2
    expected = [data.tokenize_row(tok, ex, 30)[0] for ex in examples]
    assert [dict(r) for r in dataset] == expected
    assert params["max_seq_length"] == 30 and params["skip_overlength"] is False
    assert params["source"]["sha256"] == data.file_sha256(jsonl)
    assert leftovers(out.parent) == [] and out.stat().st_mode & 0o777 == 0o755


# Stale tokenized data (docs/failure-catalog.md#f11-stale-tokenized-cache)
def test_stale_parameters_are_detected(tokenized, tok):
    jsonl, out, *_ = tokenized
    with pytest.raises(DataError, match=r"stale.*max_seq_length: recorded 30, now 64"):
        data.load_tokenized(out, max_seq_length=64)
    with pytest.raises(DataError, match="skip_overlength: recorded False, now True"):
        data.load_tokenized(out, skip_overlength=True)
    with pytest.raises(DataError, match="tokenizer vocabulary"):
        data.load_tokenized(out, tokenizer=CharTokenizer(offset=7))
    jsonl.write_text(jsonl.read_text() + jsonl.read_text())
    with pytest.raises(DataError, match="source file"):
        data.load_tokenized(out, source_path=jsonl)


def test_cache_without_parameters_is_refused(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"input_ids": [[1, 2]], "seq_len": [2]}).save_to_disk(str(tmp_path / "old"))
    with pytest.raises(DataError, match="no glmcourse_params.json"):
        data.load_tokenized(tmp_path / "old")


def test_rerun_replaces_the_dataset_and_a_failed_save_keeps_the_old_one(tokenized, tok, monkeypatch):
    import datasets

    jsonl, out, args, _ = tokenized
    assert tokenize_dataset_rows.main(args[:-4] + ["--max_seq_length", "12", "--skip_overlength", "false"]) == 0
    assert data.load_tokenized(out, max_seq_length=12)[1]["max_seq_length"] == 12

    def broken_save(self, path, **kw):
        Path(path, "data-00000-of-00001.arrow").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", broken_save)
    with pytest.raises(OSError):
        data.save_tokenized([{"input_ids": [1, 2, 3], "seq_len": 2}], out, {"max_seq_length": 99})
    assert data.load_tokenized(out, max_seq_length=12)[1]["max_seq_length"] == 12
    assert leftovers(out.parent) == []


def test_save_refuses_to_overwrite_a_folder_that_is_not_a_dataset(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(DataError, match="not a tokenized dataset folder"):
        data.save_tokenized([{"input_ids": [1, 2, 3], "seq_len": 2}], precious, {})
    assert (precious / "thesis.txt").read_text() == "do not delete"


# ------------------------------------------------------------------------------------------------
# Exercise checkers: each accepts a right answer and rejects a wrong one
# ------------------------------------------------------------------------------------------------
def strip_input(record):  # a common wrong answer: strips whitespace
    context = f"Instruction: {record['instruction']}\n"
    if (record.get("input") or "").strip():
        context += f"Input: {record['input']}\n"
    return {"context": context + "Answer: ", "target": record["output"]}


def masks_sop(ids, seq_len):  # a common wrong answer: masks <sop> too
    return [-100] * seq_len + list(ids[seq_len:])


def upstream_truncate(context_ids, target_ids, eop_id, max_len):  # the upstream bug
    return (list(context_ids) + list(target_ids) + [eop_id])[:max_len]


def right_truncate(context_ids, target_ids, eop_id, max_len):
    return data.fit_to_length(context_ids, target_ids, eop_id, max_len)[0]


@pytest.mark.parametrize("checker, right, wrong", [
    (checks.check_format_example, data.format_example, strip_input),
    (checks.check_build_labels, data.build_labels, masks_sop),
    (checks.check_truncate_target, right_truncate, upstream_truncate),
    (checks.check_str2bool, data.str2bool, bool),
], ids=["format_example", "build_labels", "truncate_target", "str2bool"])
def test_checkers_accept_right_and_reject_wrong_answers(checker, right, wrong):
    checker(right)
    with pytest.raises(AssertionError):
        checker(wrong)


def solutions():
    import importlib.util

    path = REPO / "notebooks" / "solutions" / "04_data_solutions.py"
    spec = importlib.util.spec_from_file_location("data_solutions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_solutions_pass_every_checker():
    sol = solutions()
    checks.check_format_example(sol.format_example)
    checks.check_build_labels(sol.build_labels)
    checks.check_truncate_target(sol.truncate_target)
    checks.check_str2bool(sol.str2bool)


def test_save_replaces_a_foreign_folder_only_when_asked(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    assert data.foreign_dataset_entries(folder) == ["adapter_config.json"]
    rows = [{"input_ids": [1, 2, 3], "seq_len": 2}]
    with pytest.raises(DataError, match="adapter_config.json.*--overwrite_output_dir"):
        data.save_tokenized(rows, folder, {"max_seq_length": 3})
    assert (folder / "adapter_config.json").exists()
    data.save_tokenized(rows, folder, {"max_seq_length": 3}, overwrite=True)
    assert data.foreign_dataset_entries(folder) == [] and not (folder / "adapter_config.json").exists()
    data.save_tokenized(rows, folder, {"max_seq_length": 3})  # now its own: replaced without asking


def test_convert_file_refuses_its_input_and_a_folder(tmp_path):
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}]))
    with pytest.raises(DataError, match="is the input --data_path"):
        cover_alpaca2jsonl.convert_file(src, src)
    with pytest.raises(DataError, match="is a folder"):
        cover_alpaca2jsonl.convert_file(src, tmp_path)
    assert json.loads(src.read_text())[0]["output"] == "b"


def test_lone_surrogate_is_refused_with_the_record_index(tmp_path):
    src = tmp_path / "bad.json"
    src.write_text('[{"instruction": "ok", "input": "", "output": "x"}, {"instruction": "a\\ud800b", "input": "", "output": "y"}]',
                   encoding="utf-8")
    with pytest.raises(data.DataError, match=r"(?s)record 1.*instruction.*invalid Unicode.*U\+D800"):
        data.load_alpaca(src)


def test_max_seq_length_beyond_the_models_context_is_refused(tmp_path, capsys):
    from glmcourse import tokenize_dataset_rows

    src = tmp_path / "rows.jsonl"
    src.write_text('{"context": "Instruction: hi\\nAnswer: ", "target": "hello"}\n', encoding="utf-8")
    code = tokenize_dataset_rows.main(["--jsonl_path", str(src), "--save_path", str(tmp_path / "tok"),
                                       "--max_seq_length", "100000"])
    err = capsys.readouterr().err
    assert code == 2 and "context of 512" in err and not (tmp_path / "tok").exists()
