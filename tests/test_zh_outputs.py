"""How much English the Chinese edition's outputs still show (a Chinese run prints Chinese).

Per notebooks/zh/ lesson, the output lines holding an English sentence (``glmcourse.tools.zh_edition``: a run of
4+ ASCII words outside quotes, code, identifiers, paths and numbers; token tables and model replies left
out) must stay at or below the ceiling committed in tests/zh_english_lines.json. The counts are printed
(`pytest -s`, or `python -m glmcourse.tools.zh_edition count --show` for the lines themselves).
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from glmcourse.tools import zh_edition

REPO = Path(__file__).resolve().parents[1]
CEILINGS = json.loads((REPO / "tests" / "zh_english_lines.json").read_text(encoding="utf-8"))["ceilings"]
EDITIONS = zh_edition.zh_notebooks()


def test_every_chinese_notebook_has_a_ceiling():
    assert sorted(p.name for p in EDITIONS) == sorted(CEILINGS), (
        "tests/zh_english_lines.json must list every notebooks/zh/ lesson (and no other): "
        "`python -m glmcourse.tools.zh_edition count` prints the numbers")


@pytest.mark.parametrize("path", EDITIONS, ids=lambda p: p.name)
def test_english_lines_stay_under_the_ceiling(path):
    found = zh_edition.english_lines(nbformat.read(path, as_version=4))
    print(f"{path.name}: {len(found)} output line(s) with an English sentence (ceiling {CEILINGS[path.name]})")
    shown = "\n".join(f"  cell {i}: {line.strip()[:120]}" for i, line in found)
    assert len(found) <= CEILINGS[path.name], (
        f"notebooks/zh/{path.name}: {len(found)} output lines hold an English sentence, more than the ceiling "
        f"{CEILINGS[path.name]}:\n{shown}\nPut the message through glmcourse.i18n._ (or say/bilingual) with a "
        "catalog entry, then `python -m glmcourse.tools.nbtools run --edition zh notebooks/NN_x.ipynb`")


@pytest.mark.parametrize("line", [
    "[TODO] prefix_mask: not attempted yet. Fill in the function above and re-run this cell.",
    "warning: chat: dropped the 1 oldest of 4 turns so the prompt fits max_length=160",
    "ChatGLM-6B has 1,731 times the course model's parameters",
    "error: the adapter did not transfer to the fp32 base",
])
def test_an_english_sentence_is_found(line):
    assert zh_edition.english_sentence(line)


@pytest.mark.parametrize("line", [
    "[待完成] prefix_mask：尚未作答。请补全上面的函数，再重新运行这个单元格。",
    "LoRA 目标模块：['query_key_value']（peft 对 model_type 'chatglm' 的默认目标）",
    "transformer.layers.0.attention.query_key_value.lora_A.weight torch.Size([8, 64]) float32",
    "runs/05_lora_fast/adapter_model.safetensors 4096 x 4096 int8 cuda:0",
    "process_response('  hello there my friend ') 应为 'hello there my friend'",  # quoted data
    "fp16: weights  11.5 GiB | 3 GB",
])
def test_code_data_and_chinese_are_not_english_sentences(line):
    assert zh_edition.english_sentence(line) is None


def test_token_tables_and_model_replies_are_left_out():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "|    the [MASK]  reads    the   text    and [MASK]    the blanks\n"
        "What is the capital of Japan?      -> The capital of Japan is Tokyo.\n"
        "答：Nice to meet you, Henry!\n"
        "the whole mask is an encoder and a decoder in one stack\n"))]
    nb.cells.append(cell)
    assert [line for _, line in zh_edition.english_lines(nb)] == [
        "What is the capital of Japan?      -> The capital of Japan is Tokyo.",
        "the whole mask is an encoder and a decoder in one stack"]


def test_the_count_command_prints_per_notebook(capsys):
    assert zh_edition.main(["count", str(EDITIONS[0])]) == 0
    out = capsys.readouterr().out
    assert EDITIONS[0].name in out and "total" in out
    assert zh_edition.main(["count", "no/such.ipynb"]) == 2


def test_printed_floats_source_listings_and_numbered_questions_are_left_out():
    """``nan``/``inf`` are numbers; ``inspect.getsource`` output is code; ``[3] 问：...`` is a record's question."""
    assert zh_edition.english_sentence("之前：[[1.0, nan, inf, -inf], [nan, nan, nan, nan]]") is None
    nb = nbformat.v4.new_notebook()
    source = nbformat.v4.new_code_cell("print(inspect.getsource(f))")
    source.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "def get_prompt(self, batch_size):\n"
        '    """The prefix: one key and value per layer, each of them passed through dropout."""\n'
        "    return self.prefix_encoder(batch_size)\n"))]
    record = nbformat.v4.new_code_cell("side_by_side(records)")
    record.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "[1] 问：Turn this sentence into JSON: Living in Sydney, Lucy is 66 years old.\n"
        "[2] Turn this sentence into JSON: Anna lives in Oslo.\n"
        "prose: the model keeps a cache of the keys and values\n"))]
    nb.cells += [source, record]
    assert [line for _, line in zh_edition.english_lines(nb)] == [
        "[2] Turn this sentence into JSON: Anna lives in Oslo.",
        "prose: the model keeps a cache of the keys and values"]
    assert not zh_edition.is_source_listing("def is how Python starts a function, and this is prose")
