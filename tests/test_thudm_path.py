"""A THUDM ChatGLM-6B folder, as published, through the course's own classes and the whole seed path.

The folder is tests/fixtures/thudm_chatglm6b, written by ``python -m glmcourse.thudm_format --out DIR``:
THUDM's file names and config keys, fp16 sharded ``.bin`` files with their index, ``ice_text.model``,
and THUDM's four ``.py`` files, which raise when imported. Every step below would fail if the course ran one.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import glmcourse
from glmcourse import loading
from glmcourse.loading import ModelFileError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "thudm_chatglm6b"
REPO = glmcourse.REPO_ROOT
ENV = {**os.environ, "GLMCOURSE_FAST": "1", "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0", "GLMCOURSE_QUIET": "1",
       "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A copy of the fixture, so that no test can write into the repository's one."""
    target = tmp_path_factory.mktemp("thudm") / "chatglm-6b"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture(scope="module")
def chat_pair(folder):
    return loading.load_chat_model(folder, device="cpu", flag="--model")


# ---------------------------------------------------------------------------------------------- the folder
def test_the_fixture_has_thudms_layout_and_raising_py_files(folder):
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "pytorch_model.bin.index.json", "ice_text.model", "tokenizer_config.json",
            "configuration_chatglm.py", "modeling_chatglm.py", "tokenization_chatglm.py"} <= names
    shards = sorted(n for n in names if n.startswith("pytorch_model-"))
    assert shards == [f"pytorch_model-0000{i}-of-00002.bin" for i in (1, 2)]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_chatglm.ChatGLMForConditionalGeneration"
    assert config["torch_dtype"] == "float16" and "quantization_bit" not in config
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    assert "lm_head.weight" in index["weight_map"]
    assert "transformer.layers.0.attention.rotary_emb.inv_freq" in index["weight_map"]
    state = torch.load(folder / shards[0], weights_only=True)
    assert {t.dtype for t in state.values()} == {torch.float16}
    for name in ("modeling_chatglm.py", "tokenization_chatglm.py"):
        proc = subprocess.run([sys.executable, str(folder / name)], capture_output=True, text=True)
        assert proc.returncode != 0 and "must never run" in proc.stderr


def test_ice_text_model_has_chatglm_6bs_piece_layout(folder):
    import sentencepiece as spm

    from glmcourse.modeling.tokenization_ice import CONTROL_TOKENS

    sp = spm.SentencePieceProcessor(model_file=str(folder / "ice_text.model"))
    assert [sp.IdToPiece(i) for i in range(5)] == ["<unk>", "<s>", "</s>", "<pad>", "<n>"]
    size = sp.GetPieceSize()
    base = size - 8 - 80 - 256
    assert [sp.IdToPiece(base + i) for i in range(8)] == CONTROL_TOKENS
    assert all(sp.IsControl(base + i) for i in range(8))
    assert sp.IdToPiece(base + 8) == "<|tab|>" and sp.IdToPiece(base + 9) == "<|blank_2|>"
    assert sp.IdToPiece(base + 87) == "<|blank_80|>"
    assert sp.IdToPiece(base + 88) == "<0x00>" and sp.IdToPiece(size - 1) == "<0xFF>"
    config = json.loads((folder / "config.json").read_text())
    assert (config["mask_token_id"], config["gmask_token_id"], config["bos_token_id"], config["eos_token_id"]) == (
        base, base + 1, base + 4, base + 5)
    assert config["pad_token_id"] == 3 and config["vocab_size"] >= size


def test_the_command_is_deterministic_and_refuses_a_foreign_folder(tmp_path):
    from glmcourse import thudm_format

    out = tmp_path / "again"
    assert thudm_format.main(["--out", str(out)]) == 0  # in this process: another process wrote the fixture
    for path in FIXTURE.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = subprocess.run([sys.executable, "-m", "glmcourse.thudm_format", "--out", str(foreign)], env=ENV,
                             capture_output=True, text=True, timeout=120, cwd=REPO)
    assert refused.returncode == 2 and "notes.txt" in refused.stderr and "Traceback" not in refused.stderr
    assert (foreign / "notes.txt").read_text() == "mine"


def test_quantization_bit_flag_accepts_4_and_8_only():
    from glmcourse import thudm_format

    args = thudm_format.build_parser().parse_args(["--out", "x", "--quantization_bit", "4"])
    assert args.quantization_bit == 4
    with pytest.raises(SystemExit):
        thudm_format.build_parser().parse_args(["--out", "x", "--quantization_bit", "3"])


# ---------------------------------------------------------------------------------------------- loading
LOAD_PROBE = """
import json, sys, torch
import glmcourse
from transformers import AutoModel, AutoTokenizer
folder = sys.argv[1]
tok = AutoTokenizer.from_pretrained(folder)
model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
ids = tok(["Hello"], return_tensors="pt")
logits = model.float()(**ids).logits
from glmcourse.loading import load_chat_model
tok2, model2 = load_chat_model(folder, device="cpu", trust_remote_code=True, flag="--model")
# the seed's own call, straight to transformers: answered by the course's classes, never the folder's code
tok3 = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model3 = AutoModel.from_pretrained(folder, trust_remote_code=True).float().eval()
same = bool(torch.equal(model3(**tok3(["Hello"], return_tensors="pt")).logits, logits))
folder_code = [m for m in sys.modules if m.startswith("transformers_modules")]
print("RESULT " + json.dumps({"tok": type(tok).__name__, "model": type(model).__name__, "same": same,
      "tok3": isinstance(tok3, type(tok)), "model3": isinstance(model3, type(model)),
      "info": {k: sorted(map(str, v)) for k, v in info.items()}, "finite": bool(logits.isfinite().all()),
      "tok2": type(tok2).__name__, "folder_code": folder_code,
      "smask": [model.config.smask_token_id, tok.smask_token_id]}))
"""


def test_auto_classes_and_every_loader_use_the_course_classes(folder):
    proc = subprocess.run([sys.executable, "-c", LOAD_PROBE, str(folder)], env=ENV, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    lines = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[0])
    assert result["tok"] == result["tok2"] == "IceTextTokenizer"
    assert result["model"] == "ChatGLMForConditionalGeneration" and result["finite"]
    assert result["info"] == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    assert result["folder_code"] == []
    assert result["tok3"] and result["model3"] and result["same"]
    assert proc.stderr.count("its .py files were not run") == 1  # the one-line note for trust_remote_code=True
    assert "Traceback" not in proc.stderr
    # THUDM's config.json names no [sMASK]: the config takes the tokenizer's (right after [gMASK]), so no
    # warning about a token id beyond a small folder's vocabulary
    assert result["smask"][0] == result["smask"][1] and "smask_token_id" not in proc.stderr


def test_the_weights_are_the_course_models(folder):
    from glmcourse.modeling import ChatGLMForConditionalGeneration

    course = ChatGLMForConditionalGeneration.from_pretrained(glmcourse.COURSE_MODEL)
    thudm = loading.load_base_model(folder)
    assert thudm.dtype == torch.float32
    for name in ("transformer.layers.3.attention.query_key_value.weight", "transformer.final_layernorm.bias"):
        want = course.state_dict()[name].half().float()
        assert torch.equal(thudm.state_dict()[name], want), name
    # the separate lm_head copy is the embedding, as in THUDM's checkpoints
    assert torch.equal(thudm.lm_head.weight, thudm.transformer.word_embeddings.weight)


BAD = ["missing shard", "damaged index", "not sentencepiece", "llama config", "chatglm2 config", "foreign names"]


@pytest.mark.parametrize("case", BAD)
def test_bad_folders_get_one_line_naming_the_file_and_the_fix(folder, tmp_path, case):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    index_path = bad / "pytorch_model.bin.index.json"
    if case == "missing shard":
        (bad / "pytorch_model-00002-of-00002.bin").unlink()
        expect = ["pytorch_model-00002-of-00002.bin", "missing", "copy them"]
    elif case == "damaged index":
        index_path.write_text('{"weight_map": {"transformer.')
        expect = ["pytorch_model.bin.index.json", "not valid JSON", "copy the complete model folder"]
    elif case == "not sentencepiece":
        (bad / "ice_text.model").write_bytes(b"<html>404 Not Found</html>")
        expect = ["ice_text.model", "not a SentencePiece model", "copy ice_text.model again"]
    elif case == "llama config":
        (bad / "config.json").write_text(json.dumps(config | {"model_type": "llama"}))
        expect = ["config.json", "llama", "not ChatGLM-6B", "point --model at"]
    elif case == "chatglm2 config":
        (bad / "config.json").write_text(json.dumps(config | {"padded_vocab_size": 65024, "multi_query_attention": True}))
        expect = ["config.json", "ChatGLM2", "padded_vocab_size", "point --model at"]
    else:  # every tensor renamed: nothing matches the model, which must not load with random weights
        index = json.loads(index_path.read_text())
        index["weight_map"] = {"model." + k: v for k, v in index["weight_map"].items()}
        index_path.write_text(json.dumps(index))
        expect = [str(bad), "none of its", "not a ChatGLM-6B checkpoint"]
    with pytest.raises(ModelFileError) as caught:
        loading.load_chat_model(bad, device="cpu", flag="--model")
    message = str(caught.value)
    assert "\n" not in message
    for part in expect:
        assert part in message, (part, message)
    if case == "not sentencepiece":  # and through a command: one line on stderr, no traceback
        cli = subprocess.run([sys.executable, "-m", "glmcourse.cli_demo", "--model", str(bad)], input="stop\n",
                             env=ENV, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert cli.returncode != 0 and "Traceback" not in cli.stderr and expect[0] in cli.stderr
        assert cli.stderr.strip().count("\n") == 0


def test_a_weight_file_missing_some_tensors_is_an_error_not_random_weights(folder, tmp_path):
    bad = tmp_path / "partial"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(config | {"num_layers": config["num_layers"] + 1}))
    with pytest.raises(ModelFileError, match=r"lack \d+ of the model's tensors.*num_layers"):
        loading.load_base_model(bad)


# ---------------------------------------------------------------------------------------------- the seed path
@pytest.fixture(scope="module")
def tokenized(folder, tmp_path_factory):
    from glmcourse import cover_alpaca2jsonl, tokenize_dataset_rows

    root = tmp_path_factory.mktemp("seed")
    records = json.loads((glmcourse.DATA_DIR / "lora_train.json").read_text(encoding="utf-8"))[:16]
    (root / "alpaca.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert cover_alpaca2jsonl.main(["--data_path", str(root / "alpaca.json"), "--save_path", str(root / "a.jsonl")]) == 0
    assert tokenize_dataset_rows.main(["--jsonl_path", str(root / "a.jsonl"), "--save_path", str(root / "rows"),
                                       "--max_seq_length", "200", "--model_name_or_path", str(folder)]) == 0
    return root


def test_tokenize_dataset_rows_uses_the_ice_tokenizer(folder, tokenized):
    from datasets import load_from_disk

    from glmcourse.modeling import IceTextTokenizer

    tok = IceTextTokenizer.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    rows = load_from_disk(str(tokenized / "rows"))
    first = json.loads((tokenized / "a.jsonl").read_text(encoding="utf-8").splitlines()[0])
    ids = rows[0]["input_ids"]
    assert ids[:rows[0]["seq_len"]] == tok.encode(first["context"])
    assert ids[rows[0]["seq_len"] - 2:rows[0]["seq_len"]] == [config["gmask_token_id"], config["bos_token_id"]]
    assert ids[-1] == config["eos_token_id"]
    assert tok.decode(ids[rows[0]["seq_len"]:-1]) == first["target"].strip() or \
        tok.decode(ids[rows[0]["seq_len"]:-1]) == tok.decode(tok.encode(first["target"], add_special_tokens=False))


@pytest.fixture(scope="module")
def lora_out(folder, tokenized):
    from glmcourse import finetune

    out = tokenized / "lora"
    code = finetune.main(["--dataset_path", str(tokenized / "rows"), "--output_dir", str(out), "--model_name_or_path",
                          str(folder), "--per_device_train_batch_size", "4", "--max_steps", "2", "--save_steps", "2",
                          "--logging_steps", "1", "--learning_rate", "1e-3"])
    assert code == 0
    return out


def test_finetune_lora_fp32_then_peft_chat_and_merge(folder, lora_out):
    from peft import PeftModel

    from glmcourse import adapters
    from glmcourse.modeling import IceTextTokenizer

    summary = adapters.check_adapter(lora_out)
    assert summary is not None
    tok = IceTextTokenizer.from_pretrained(folder)
    base = loading.load_base_model(folder)
    model = PeftModel.from_pretrained(base, str(lora_out)).eval()
    response, history = model.chat(tok, "What is the capital of France?", do_sample=False, max_length=64)
    assert isinstance(response, str) and history == [("What is the capital of France?", response)]
    ids = tok(["Give three tips for staying healthy."], return_tensors="pt")
    with torch.no_grad():
        before = model(**ids).logits
        merged = adapters.merge_lora(model, base_path=str(folder), verbose=False)
        after = merged(**ids).logits
    assert torch.allclose(before, after, atol=1e-4)
    assert type(merged).__name__ == "ChatGLMForConditionalGeneration"


def test_finetune_lora_8bit(folder, tokenized, tmp_path):
    from glmcourse import finetune

    pytest.importorskip("bitsandbytes")
    out = tmp_path / "lora8"
    code = finetune.main(["--dataset_path", str(tokenized / "rows"), "--output_dir", str(out), "--model_name_or_path",
                          str(folder), "--per_device_train_batch_size", "4", "--max_steps", "2", "--save_steps", "2",
                          "--logging_steps", "1", "--load_in_8bit"])
    assert code == 0
    from glmcourse import adapters

    assert adapters.check_adapter(out) is not None


def test_ptuning_on_the_thudm_folder(folder, tmp_path):
    from glmcourse import ptuning_train

    records = json.loads((glmcourse.DATA_DIR / "lora_train.json").read_text(encoding="utf-8"))[:8]
    (tmp_path / "alpaca.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    ptuning_train.convert(tmp_path / "alpaca.json", tmp_path / "train.json")
    out = tmp_path / "pt"
    code = ptuning_train.main(["--do_train", "--train_file", str(tmp_path / "train.json"), "--model_name_or_path",
                               str(folder), "--output_dir", str(out), "--per_device_train_batch_size", "4",
                               "--max_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--pre_seq_len", "4"])
    assert code == 0
    from glmcourse import ptuning

    model = ptuning.load_ptuned_model(out, base_path=str(folder), verbose=False)
    assert model.config.pre_seq_len == 4


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_on_the_thudm_folder(folder, bits):
    from glmcourse.modeling import IceTextTokenizer

    tok = IceTextTokenizer.from_pretrained(folder)
    fp32 = loading.load_base_model(folder).eval()
    ids = tok(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        want = fp32(**ids).logits
        got = loading.load_base_model(folder).eval().quantize(bits)(**ids).logits
    assert got.isfinite().all()
    rel = ((got - want).norm() / want.norm()).item()
    assert 0 < rel < (0.05 if bits == 8 else 0.5), rel


def test_cli_demo_answers_on_the_thudm_folder(folder):
    pexpect = pytest.importorskip("pexpect")
    env = dict(ENV, TERM="dumb")
    child = pexpect.spawn(sys.executable, ["-m", "glmcourse.cli_demo", "--model", str(folder), "--max_length", "64"],
                          cwd=str(REPO), env=env, encoding="utf-8", timeout=120, dimensions=(40, 200))
    child.expect_exact("用户：")
    child.sendline("What is the capital of France?")
    child.expect_exact("ChatGLM：")
    child.expect_exact("用户：")
    answer = child.before.strip()
    child.sendline("stop")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert answer and "\ufffd" not in answer


def test_web_demo_starts_and_answers_on_the_thudm_folder(folder, tmp_path, chat_pair):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "server.log"
    with open(log_path, "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "glmcourse.web_demo", "--model", str(folder), "--port",
                                 str(port)], cwd=str(REPO), env=ENV, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 240
            while "Running on local URL" not in log_path.read_text():
                assert proc.poll() is None and time.time() < deadline, log_path.read_text()
                time.sleep(0.5)
            import urllib.request

            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read().decode("utf-8", "replace")
            assert "gradio" in page.lower()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert "Traceback" not in log_path.read_text()
    # the answer the page streams: web_demo.respond on the same folder's model and tokenizer
    from glmcourse import web_demo

    tokenizer, model = chat_pair
    steps = list(web_demo.respond(model, tokenizer, "What is the capital of France?", [], [], 64, 0.7, 0.95))
    messages, history, _ = steps[-1]
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"].strip()
    assert history[-1][0] == "What is the capital of France?"
