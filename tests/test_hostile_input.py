"""Hostile and careless input: each bad input gets one clear line, and nothing is lost.

A. the terminal demo survives a bad turn (too long, not UTF-8, a failing model) and refuses bad flags;
B. no command deletes or overwrites what it did not write;
C. damaged model files and dataset parameters are named, never a traceback;
D. a model folder's own Python code never runs unless asked (--trust_remote_code);
E. out-of-range numbers, ports and the offline switch are checked up front;
F. the web page shows messages as text (no remote fetch), stays quiet and on one language.
Tiny random models and the stand-ins of chat_fakes keep every test to seconds of compute.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import glmcourse
from chat_fakes import ByteTokenizer, ScriptedModel, save_tiny_chat_model
from glmcourse import cli, cli_demo, cover_alpaca2jsonl, data, files, loading, tokenize_dataset_rows, web_demo

TOK = ByteTokenizer()
REPO = glmcourse.REPO_ROOT
ALPACA = [{"instruction": "把“牛奶”翻译成英文", "input": "", "output": "“牛奶”的英文是 milk。"},
          {"instruction": "What is 7 + 8?", "input": "", "output": "7 + 8 = 15."}]


def scripted(lines):
    lines = list(lines)

    def read(prompt):
        if not lines:
            raise EOFError
        item = lines.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return read


def prompts_seen(model):
    return [bytes(i for i in c["input_ids"][0].tolist() if i < 256).decode() for c in model.calls]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return Path(save_tiny_chat_model(tmp_path_factory.mktemp("tiny_hostile")))


@pytest.fixture
def tiny_copy(tiny_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    return folder


def no_model_load(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the model was loaded before the bad flag was refused")

    monkeypatch.setattr(loading, "load_chat_model", fail)


# ================================================================== A. the terminal demo
def test_a_message_longer_than_the_context_is_refused_and_the_history_kept(capsys):
    model = ScriptedModel("好的", max_sequence_length=512)
    long_message = "长" * 1400  # about 1,400 Chinese characters pasted at once
    read = scripted(["你好", long_message, "再见", "stop"])
    assert cli_demo.run(model, TOK, dict(max_length=2048, top_p=0.7, temperature=0.95), read=read) == 0
    out = capsys.readouterr().out
    assert "[not answered: your message is too long" in out and "tokens" in out
    assert "Traceback" not in out
    assert len(model.calls) == 2  # the long message never reached generate()
    assert prompts_seen(model)[1].startswith("[Round 0]\n问：你好\n答：好的\n[Round 1]\n问：再见")


def test_a_failing_generation_keeps_the_conversation(capsys):
    class Flaky(ScriptedModel):
        turns = 0

        def generate(self, *args, **kwargs):
            self.turns += 1
            if self.turns == 2:
                raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
            return super().generate(*args, **kwargs)

    model = Flaky("好")
    assert cli_demo.run(model, TOK, {}, read=scripted(["一", "二", "三", "stop"])) == 0
    out = capsys.readouterr().out
    assert "[not answered: the model failed on this message (RuntimeError" in out
    assert prompts_seen(model)[-1] == "[Round 0]\n问：一\n答：好\n[Round 1]\n问：三\n答："  # 二 was dropped, 一 kept


def test_invalid_utf8_on_stdin_is_one_line_and_the_chat_goes_on(monkeypatch, capsys):
    model = ScriptedModel("好")
    monkeypatch.setattr(loading, "load_chat_model", lambda *a, **k: (TOK, model))
    piped = b"\xff\xfe broken \xc3\n" + "你好\nstop\n".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(piped), encoding="utf-8"))
    assert cli_demo.main([]) == 0
    out = capsys.readouterr().out
    assert "not valid UTF-8" in out and "Traceback" not in out
    assert prompts_seen(model) == ["你好"]


def test_a_decode_error_raised_by_input_is_caught_too(capsys):
    model = ScriptedModel("好")
    bad = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert cli_demo.run(model, TOK, {}, read=scripted([bad, "你好", "stop"])) == 0
    assert "not valid UTF-8" in capsys.readouterr().out and len(model.calls) == 1


@pytest.mark.parametrize("argv, expected", [
    (["--max_length", "1"], "--max_length: 1: out of range; pass an integer in [16, "),
    (["--max_length", "-5"], "--max_length: -5: out of range"),
    (["--temperature", "nan"], "--temperature: nan: must be a finite number in (0, 2.0]"),
    (["--temperature", "inf"], "--temperature: inf: must be a finite number"),
    (["--temperature", "0"], "--temperature: 0: out of range; pass a number in (0, 2.0]"),
    (["--top_p", "5"], "--top_p: 5: out of range; pass a number in (0, 1]"),
    (["--top_p", "0"], "--top_p: 0: out of range"),
    (["--max_new_tokens", "0"], "--max_new_tokens: 0: out of range; pass an integer in [1, "),
    (["--top_p", "lots"], "--top_p: 'lots': not a number"),
])
def test_bad_demo_flags_are_refused_at_start_with_the_range(argv, expected, monkeypatch, capsys):
    no_model_load(monkeypatch)
    for module in (cli_demo, web_demo):
        if module is web_demo and argv[0] in ("--max_length", "--temperature", "--top_p"):
            continue  # the web page sets these with sliders
        with pytest.raises(SystemExit) as stop:
            module.main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and "e.g." in err


def test_run_refuses_out_of_range_settings_before_the_first_turn(capsys):
    model = ScriptedModel("好")
    for gen in (dict(max_new_tokens=0), dict(top_p=5), dict(temperature=float("nan")), dict(max_length=1)):
        assert cli_demo.run(model, TOK, gen, read=scripted(["你好"])) == 2
    assert model.calls == [] and "out of range" in capsys.readouterr().err


def test_the_welcome_line_shows_prompts_the_course_model_was_trained_on():
    records = json.loads((glmcourse.DATA_DIR / "course_chat.json").read_text(encoding="utf-8"))
    skill_of = {r["instruction"]: r.get("skill") for r in records}
    shown = [e for e in cli_demo.EXAMPLES if e in cli_demo.welcome()]
    assert 3 <= len(shown) <= 4 and "\n" not in cli_demo.welcome()
    assert all(e in skill_of for e in cli_demo.EXAMPLES), [e for e in cli_demo.EXAMPLES if e not in skill_of]
    assert len({skill_of[e] for e in shown}) == len(shown)  # one skill each: greetings, sums, facts, translation


# ================================================================== B. nothing lost without a word
def write_alpaca(path):
    path.write_text(json.dumps(ALPACA, ensure_ascii=False), encoding="utf-8")
    return path


def test_converter_never_writes_over_its_input(tmp_path, capsys):
    src = write_alpaca(tmp_path / "data.json")
    before = src.read_bytes()
    for save in (src, tmp_path / "." / "data.json"):
        assert cover_alpaca2jsonl.main(["--data_path", str(src), "--save_path", str(save)]) == 2
        err = capsys.readouterr().err
        assert "--save_path" in err and "--data_path" in err and "destroy the input" in err
    assert src.read_bytes() == before


def test_converter_output_that_is_a_folder_or_under_a_file_is_a_clear_error(tmp_path, capsys):
    src = write_alpaca(tmp_path / "data.json")
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("keep")
    assert cover_alpaca2jsonl.main(["--data_path", str(src), "--save_path", str(tmp_path / "folder")]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert cover_alpaca2jsonl.main(["--data_path", str(src), "--save_path", str(tmp_path / "a_file" / "x.jsonl")]) == 2
    assert "is a file, so nothing can be written under it" in capsys.readouterr().err
    assert cover_alpaca2jsonl.main(["--data_path", str(tmp_path / "folder"), "--save_path", str(tmp_path / "o.jsonl")]) == 2
    assert "--data_path" in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text() == "keep"


def test_converter_replaces_its_own_output_but_not_a_stranger_file(tmp_path, capsys):
    src = write_alpaca(tmp_path / "data.json")
    out = tmp_path / "rows.jsonl"
    assert cover_alpaca2jsonl.main(["--data_path", str(src), "--save_path", str(out)]) == 0
    assert cover_alpaca2jsonl.main(["--data_path", str(src), "--save_path", str(out)]) == 0  # a rerun
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert cover_alpaca2jsonl.main(["--data_path", str(src), "--save_path", str(notes)]) == 2
    err = capsys.readouterr().err
    assert "already exists and was not written by this command" in err and "--overwrite_output_dir" in err
    assert notes.read_text() == "my notes"
    assert cover_alpaca2jsonl.main(["--data_path", str(src), "--save_path", str(notes), "--overwrite_output_dir"]) == 0
    assert len(notes.read_text().splitlines()) == 2


@pytest.fixture
def rows_jsonl(tmp_path):
    out = tmp_path / "rows.jsonl"
    cover_alpaca2jsonl.convert_file(write_alpaca(tmp_path / "data.json"), out)
    return out


def test_retokenizing_into_a_folder_with_other_work_is_refused(rows_jsonl, tmp_path, capsys):
    work = tmp_path / "output"
    (work / "checkpoint-40").mkdir(parents=True)
    (work / "adapter_model.safetensors").write_bytes(b"precious")
    (work / data.PARAMS_FILE).write_text("{}")  # even beside a params file, other work is not ours
    args = ["--jsonl_path", str(rows_jsonl), "--save_path", str(work), "--max_seq_length", "30"]
    assert tokenize_dataset_rows.main(args) == 2
    err = capsys.readouterr().err
    assert "adapter_model.safetensors" in err and "checkpoint-40" in err and "--overwrite_output_dir" in err
    assert (work / "adapter_model.safetensors").read_bytes() == b"precious" and (work / "checkpoint-40").is_dir()
    assert tokenize_dataset_rows.main(args + ["--overwrite_output_dir"]) == 0  # asked for: replaced
    assert not (work / "adapter_model.safetensors").exists()
    assert data.load_tokenized(work, max_seq_length=30)[1]["max_seq_length"] == 30
    assert tokenize_dataset_rows.main(args) == 0  # its own dataset: a rerun replaces it


def test_tokenize_refuses_a_file_as_output_and_an_input_inside_the_output(rows_jsonl, tmp_path, capsys):
    base = ["--jsonl_path", str(rows_jsonl), "--max_seq_length", "30"]
    assert tokenize_dataset_rows.main(base + ["--save_path", str(rows_jsonl)]) == 2
    assert "the same as --jsonl_path" in capsys.readouterr().err
    assert tokenize_dataset_rows.main(base + ["--save_path", str(tmp_path), "--overwrite_output_dir"]) == 2
    assert "holds --jsonl_path" in capsys.readouterr().err
    assert tokenize_dataset_rows.main(base + ["--save_path", str(rows_jsonl / "tok")]) == 2
    assert "is inside --jsonl_path" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("keep")
    assert tokenize_dataset_rows.main(base + ["--save_path", str(tmp_path / "a_file" / "tok")]) == 2
    assert "is a file, so no folder can be made under it" in capsys.readouterr().err
    assert tokenize_dataset_rows.main(base + ["--save_path", str(tmp_path / "a_file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert rows_jsonl.is_file()


def test_check_replaceable_uses_the_marker_file(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "mine.txt").write_text("x")
    with pytest.raises(files.OutputError, match=r"--output_dir .*mine\.txt.*--overwrite_output_dir"):
        files.check_replaceable(folder, flag="--output_dir")
    files.check_replaceable(folder, overwrite=True)
    files.write_marker(folder, "test")
    files.check_replaceable(folder)  # the course wrote it: fine
    assert json.loads((folder / files.OUTPUT_MARKER).read_text())["written_by"] == "test"


# ================================================================== C. damaged files
def damage(folder: Path, how: str) -> Path:
    weights = folder / "model.safetensors"
    if how == "truncated safetensors":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return weights
    if how == "empty safetensors":
        weights.write_bytes(b"")
        return weights
    if how == "random safetensors":
        weights.write_bytes(os.urandom(4096))
        return weights
    if how == "broken config.json":
        (folder / "config.json").write_text('{"model_type": "chatglm", ')
        return folder / "config.json"
    if how == "broken tokenizer.json":
        text = (folder / "tokenizer.json").read_text(encoding="utf-8")
        (folder / "tokenizer.json").write_text(text[: len(text) // 3], encoding="utf-8")
        return folder / "tokenizer.json"
    raise ValueError(how)


DAMAGES = ["truncated safetensors", "empty safetensors", "random safetensors", "broken config.json",
           "broken tokenizer.json"]


@pytest.mark.parametrize("how", DAMAGES)
def test_every_loader_names_the_damaged_file(tiny_copy, how):
    broken = damage(tiny_copy, how)
    loaders = [lambda: loading.load_chat_model(tiny_copy), lambda: loading.load_course_model(str(tiny_copy))]
    if how != "broken tokenizer.json":  # the base loader reads no tokenizer
        loaders.append(lambda: loading.load_base_model(tiny_copy))
    for load in loaders:
        with pytest.raises(loading.ModelFileError) as caught:
            load()
        message = str(caught.value)
        assert str(broken) in message and "\n" not in message
        assert "build_course_model" in message or "copy the complete" in message


@pytest.mark.parametrize("how", ["truncated safetensors", "broken tokenizer.json"])
def test_both_demos_exit_with_one_line_on_a_damaged_model(tiny_copy, how, capsys):
    broken = damage(tiny_copy, how)
    assert cli_demo.main(["--model", str(tiny_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cli_demo: cannot load the model:") and str(broken) in err and err.count("\n") == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert web_demo.main(["--model", str(tiny_copy), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("web_demo: cannot load the model:") and str(broken) in err


@pytest.mark.parametrize("field, value, expected", [
    ("num_layers", -1, "'num_layers' is -1; it must be a whole number of 1 or more"),
    ("hidden_size", "abc", "'hidden_size' is 'abc'"),
    ("vocab_size", 0, "'vocab_size' is 0"),
    ("num_attention_heads", 3, "do not fit"),
    ("eos_token_id", 10**6, "'eos_token_id' is 1000000; it must be a token id from 0 to vocab_size - 1"),
    ("layernorm_epsilon", "x", "'layernorm_epsilon' is 'x'"),
    ("pre_seq_len", 0, "'pre_seq_len' is 0"),
    ("quantization_bit", 3, "'quantization_bit' is 3"),
])
def test_a_bad_value_in_config_json_is_blamed_on_config_json(tiny_copy, field, value, expected, capsys):
    """A usable JSON file with one unusable value: every loader (and the demos) name config.json, the field and
    what it must be, before any weight or the tokenizer is read; never a library traceback or the tokenizer."""
    config = json.loads((tiny_copy / "config.json").read_text())
    (tiny_copy / "config.json").write_text(json.dumps(config | {field: value}))
    for load in (lambda: loading.load_chat_model(tiny_copy), lambda: loading.load_course_model(str(tiny_copy)),
                 lambda: loading.load_base_model(tiny_copy)):
        with pytest.raises(loading.ModelFileError) as caught:
            load()
        message = str(caught.value)
        assert message.startswith(str(tiny_copy / "config.json")) and expected in message, message
        assert "tokenizer" not in message and "\n" not in message
    assert cli_demo.main(["--model", str(tiny_copy)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_an_intact_tiny_model_still_loads(tiny_copy):
    tokenizer, model = loading.load_chat_model(tiny_copy)
    assert model.config.model_type == "chatglm" and tokenizer.gmask_token_id is not None


def test_tokenizer_step_names_a_broken_tokenizer_json(tiny_copy):
    broken = damage(tiny_copy, "broken tokenizer.json")
    with pytest.raises(data.DataError, match="could not load a tokenizer") as caught:
        tokenize_dataset_rows.load_tokenizer(tiny_copy)
    assert str(broken) in str(caught.value) and "not valid JSON" in str(caught.value)


@pytest.mark.parametrize("content", ['{"max_seq_length": 30,', "", "[1, 2]"])
def test_a_broken_params_file_is_named(tmp_path, content):
    import datasets

    folder = tmp_path / "tok"
    datasets.Dataset.from_dict({"input_ids": [[1, 2]], "seq_len": [2]}).save_to_disk(str(folder))
    (folder / data.PARAMS_FILE).write_text(content)
    with pytest.raises(data.DataError, match=r"glmcourse_params\.json: damaged.*tokenize_dataset_rows"):
        data.load_tokenized(folder)


# ================================================================== D. no code from a model folder
EVIL_TOKENIZER = '''\
from pathlib import Path
Path({marker!r}).write_text("the folder's code ran")
from glmcourse.modeling.tokenization_chatglm import ChatGLMTokenizer  # noqa: F401
'''

PROBE = textwrap.dedent('''\
    import io, json, sys
    from pathlib import Path
    folder, marker, foreign = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    results = {}
    from glmcourse import cli_demo, loading, tokenize_dataset_rows
    sys.stdin = io.StringIO("stop\\n")
    results["cli_demo"] = [cli_demo.main(["--model", folder]), marker.exists()]
    loading.load_chat_model(folder)
    results["load_chat_model"] = marker.exists()
    tokenize_dataset_rows.load_tokenizer(folder)
    results["load_tokenizer"] = marker.exists()
    try:
        loading.load_chat_model(foreign)
        results["foreign"] = ["loaded", marker.exists()]
    except FileNotFoundError as err:
        results["foreign"] = [str(err), marker.exists()]
    loading.load_chat_model(folder, trust_remote_code=True)
    results["asked"] = marker.exists()
    print("\\nRESULTS " + json.dumps(results))
''')


def test_a_model_folders_python_code_runs_only_when_asked(tiny_dir, tmp_path):
    marker = tmp_path / "MARKER_the_folder_code_ran"
    folder = tmp_path / "evil"
    shutil.copytree(tiny_dir, folder)
    for shim in Path(glmcourse.COURSE_MODEL).glob("*.py"):
        shutil.copy(shim, folder)
    (folder / "tokenization_chatglm.py").write_text(EVIL_TOKENIZER.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                          "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration"}
    (folder / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    tok_config["auto_map"] = {"AutoTokenizer": [None, "tokenization_chatglm.ChatGLMTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    foreign = tmp_path / "foreign"  # a model type transformers does not know: only its own code could load it
    shutil.copytree(folder, foreign)
    (foreign / "config.json").write_text(json.dumps(config | {"model_type": "someoneglm"}))

    env = dict(os.environ, HF_HUB_OFFLINE="1", GLMCOURSE_QUIET="1", HF_MODULES_CACHE=str(tmp_path / "modules"),
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(folder), str(marker), str(foreign)], cwd=str(REPO),
                          env=env, capture_output=True, text=True, timeout=600)
    lines = [line.split("RESULTS ", 1)[1] for line in proc.stdout.splitlines() if "RESULTS " in line]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads(lines[0])
    assert results["cli_demo"] == [0, False]
    assert results["load_chat_model"] is False and results["load_tokenizer"] is False
    message, ran = results["foreign"]
    assert ran is False and "--trust_remote_code" not in message and "trust_remote_code=True" in message
    assert "it was not run" in message
    assert results["asked"] is True  # the marker does appear once the user asks: the test can fail


def test_both_demos_have_a_trust_remote_code_flag_off_by_default(rows_jsonl, tmp_path):
    for module in (cli_demo, web_demo):
        assert module.parse_args([]).trust_remote_code is False
        assert module.parse_args(["--trust_remote_code"]).trust_remote_code is True
    assert tokenize_dataset_rows.parse_args(["--jsonl_path", str(rows_jsonl), "--save_path",
                                             str(tmp_path / "b")]).trust_remote_code is False


# ================================================================== E. ranges, ports, offline
@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_out_of_range_ports_are_refused_with_the_range(port, monkeypatch, capsys):
    no_model_load(monkeypatch)
    with pytest.raises(SystemExit):
        web_demo.main(["--port", port])
    err = capsys.readouterr().err
    assert "--port" in err and "[1, 65535]" in err and "Traceback" not in err


def test_a_busy_port_is_refused_before_the_model_loads(monkeypatch, capsys):
    no_model_load(monkeypatch)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert web_demo.main(["--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: already in use" in err and "another port" in err


def test_a_host_other_than_loopback_gets_a_warning(monkeypatch, capsys):
    monkeypatch.setattr(loading, "load_chat_model", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("stop here")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert web_demo.main(["--host", "0.0.0.0", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0" in err and "other machines" in err
    assert web_demo.main(["--port", str(port)]) == 2
    assert "warning" not in capsys.readouterr().err


def test_number_helpers_name_the_flag_value_range_and_fix():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=cli.seed_arg())
    assert parser.parse_args(["--seed", "0"]).seed == 0
    for bad in ("-1", str(2**32), "1.5"):
        with pytest.raises(cli.UsageError, match=r"--seed .*\[0, 4294967295\].*e\.g\. --seed 42"):
            cli.check_int(bad, "--seed", *cli.SEED_RANGE, example=42)
    with pytest.raises(argparse.ArgumentTypeError, match=r"-1: out of range"):
        cli.seed_arg()("-1")
    with pytest.raises(cli.UsageError, match=r"--lr nan: must be a finite number > 0"):
        cli.check_float("nan", "--lr", 0, None, lo_open=True)
    assert cli.check_float("1e-4", "--lr", 0, None, lo_open=True) == 1e-4
    assert cli.check_int(100.0, "max_length", 16, None) == 100


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True),
                                            ("0", False), ("false", False), ("", False)])
def test_is_offline_reads_the_switch_like_the_hub(value, offline):
    assert cli.is_offline({"HF_HUB_OFFLINE": value}) is offline
    assert cli.is_offline({"TRANSFORMERS_OFFLINE": value}) is offline


def test_offline_true_is_recognised_by_the_loaders_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=true forbids downloading"):
        loading.load_chat_model("someone/not-cached-model-xyz")


def test_check_port_free_and_paths():
    with pytest.raises(cli.UsageError, match=r"--port 70000: out of range"):
        cli.check_port_free("127.0.0.1", 70000)
    with pytest.raises(cli.UsageError, match="--host no-such-host.invalid"):
        cli.check_port_free("no-such-host.invalid", 7860)


SHOWN_AB = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]  # the page shows history a/b


def test_web_respond_refuses_zero_new_tokens_and_top_p_5_without_generating():
    model = ScriptedModel("ok")
    for kwargs in (dict(max_new_tokens=0), dict(top_p=5)):
        settings = dict(max_length=2048, top_p=0.7, temperature=0.95) | {k: v for k, v in kwargs.items() if k != "max_new_tokens"}
        steps = list(web_demo.respond(model, TOK, "q", SHOWN_AB, [("a", "b")], settings["max_length"], settings["top_p"],
                                      settings["temperature"], max_new_tokens=kwargs.get("max_new_tokens")))
        messages, history, box = steps[-1]
        assert "not answered" in messages[-1]["content"] and "out of range" in messages[-1]["content"]
        assert history == [("a", "b")] and box == "q"  # the history and the typed text are kept
    assert model.calls == []


def test_web_respond_keeps_the_history_when_a_message_does_not_fit():
    model = ScriptedModel("ok", max_sequence_length=512)
    steps = list(web_demo.respond(model, TOK, "长" * 1400, SHOWN_AB, [("a", "b")], 2048, 0.7, 0.95))
    messages, history, _ = steps[-1]
    assert "too long" in messages[-1]["content"] and history == [("a", "b")] and model.calls == []


# ================================================================== F. the web page
@pytest.mark.parametrize("hostile", [
    "<img src=http://example.invalid/x.png>",
    "<IMG SRC='http://example.invalid/x.png' onerror=alert(1)>",
    "![tracker](http://example.invalid/x.png)",
    "text ![a][r]\n\n[r]: http://example.invalid/x.png",
    "<iframe src=http://example.invalid></iframe>",
    "`ok` <img src=http://example.invalid/x.png> `also ok`",
    "\\`<img src=http://example.invalid/x.png>`",
    "```\ncode\n```\n<img src=http://example.invalid/x.png>",
    "  ```\n<img src=http://example.invalid/x.png>\n",
])
def test_safe_markdown_leaves_no_tag_and_no_image(hostile):
    safe = web_demo.safe_markdown(hostile)
    outside_code = safe.split("```\n", 2)[-1] if safe.startswith("```") else safe
    assert "<img" not in outside_code.lower() and "<iframe" not in outside_code.lower()
    assert "![" not in safe.replace("!\\[", "")


def test_safe_markdown_keeps_the_models_markdown_and_code():
    reply = "**粗体** and *italic*\n\n1. one\n2. two\n\n```python\nif a < b:\n    print('<b>')\n```\nuse `x < y`."
    safe = web_demo.safe_markdown(reply)
    assert "**粗体** and *italic*\n\n1. one\n2. two" in safe
    assert "```python\nif a < b:\n    print('<b>')\n```" in safe and "`x < y`" in safe
    assert web_demo.safe_markdown("plain 你好") == "plain 你好"


def test_respond_shows_user_html_as_text_but_gives_the_model_the_raw_message():
    model = ScriptedModel("ok")
    hostile = "hi <img src=http://example.invalid/x.png>"
    steps = list(web_demo.respond(model, TOK, hostile, [], [], 2048, 0.7, 0.95))
    messages, history, _ = steps[-1]
    assert "<img" not in messages[0]["content"] and "&lt;img" in messages[0]["content"]
    assert history[0][0] == hostile and prompts_seen(model)[0] == hostile


def _page(tiny_dir):
    from chat_fakes import tiny_chat_model

    tok, model = tiny_chat_model()
    return web_demo.build_demo(model, tok).get_config_file()


def test_the_page_sends_on_enter_shows_examples_and_speaks_one_language(tiny_dir):
    config = _page(tiny_dir)
    components = config["components"]
    box = next(c for c in components if c["props"].get("elem_id") == "user_input")
    assert box["props"]["lines"] == 1  # gradio: Enter submits a one-line box, Shift+Enter adds a line
    assert box["props"]["max_lines"] > 1 and "Shift+Enter" in box["props"]["placeholder"]
    dataset = next(c for c in components if c["type"] == "dataset")
    samples = [s[0] for s in dataset["props"]["samples"]]
    assert samples == cli_demo.EXAMPLES
    chatbot = next(c for c in components if c["type"] == "chatbot")
    assert chatbot["props"]["sanitize_html"] is True and chatbot["props"]["allow_tags"] is False
    texts = [str(c["props"].get(k)) for c in components for k in ("label", "value", "placeholder", "info")
             if c["type"] != "dataset" and isinstance(c["props"].get(k), str)]
    texts.append(config.get("title", ""))
    cjk = [t for t in texts if any("\u4e00" <= ch <= "\u9fff" for ch in t)]
    assert cjk == [], f"page text outside the examples is not all English: {cjk}"


def test_launch_is_quiet_with_no_share_link_and_prints_its_own_address(monkeypatch, capsys):
    import gradio as gr

    seen = {}
    monkeypatch.setattr(loading, "load_chat_model", lambda *a, **k: (TOK, ScriptedModel("ok", max_sequence_length=512)))
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.update(kw))
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert web_demo.main(["--port", str(port)]) == 0
    assert seen["quiet"] is True and seen["share"] is False and seen["server_name"] == "127.0.0.1"
    out = capsys.readouterr().out
    assert f"Running on local URL:  http://127.0.0.1:{port}" in out and "share=True" not in out


# ================================================================== G. round 2: demos
def test_web_api_uses_only_the_history_the_client_sends():
    model = ScriptedModel("ok")
    hidden = [("my name is Ada", "hello Ada")]  # the page's state from an earlier chat
    steps = list(web_demo.respond(model, TOK, "what is my name?", [], hidden, 2048, 0.7, 0.95))
    assert prompts_seen(model)[-1] == "what is my name?"  # no earlier round: the client sent none
    assert [list(t) for t in steps[-1][1]] == [["what is my name?", "ok"]]
    shown = [{"role": "user", "content": "my name is Ada"}, {"role": "assistant", "content": "hello Ada"}]
    list(web_demo.respond(model, TOK, "again", shown, hidden, 2048, 0.7, 0.95))
    assert prompts_seen(model)[-1].startswith("[Round 0]\n问：my name is Ada\n答：hello Ada")


@pytest.mark.parametrize("values", [(None, 0.7, 0.95), (2048, "lots", 0.95), (2048, 0.7, float("nan")),
                                    (10**9, 0.7, 0.95), (2048, -1, 0.95)])
def test_web_out_of_range_api_values_get_one_line_in_the_chat(values):
    model = ScriptedModel("ok")
    messages, history, box = list(web_demo.respond(model, TOK, "hi", [], [], *values))[-1]
    assert "not answered" in messages[-1]["content"] and model.calls == [] and box == "hi"


def test_web_sliders_leave_range_checks_to_respond(tiny_dir):
    from chat_fakes import tiny_chat_model

    tok, model = tiny_chat_model()
    demo = web_demo.build_demo(model, tok)
    sliders = [b for b in demo.blocks.values() if type(b).__name__ == "Slider"]
    assert len(sliders) == 3 and all(s.preprocess(None) is None and s.preprocess(10**9) == 10**9 for s in sliders)


def test_web_host_ipv6_is_refused_clearly(monkeypatch, capsys):
    no_model_load(monkeypatch)
    assert web_demo.main(["--host", "::", "--port", "7861"]) == 2
    err = capsys.readouterr().err
    assert "--host ::: IPv6" in err and "0.0.0.0" in err and "Traceback" not in err


def test_cli_demo_lone_surrogate_is_answered_not_a_traceback(capsys):
    model = ScriptedModel("好")
    assert cli_demo.run(model, TOK, {}, read=scripted(["a\ud800b", "stop"])) == 0
    assert prompts_seen(model) == ["a\ufffdb"] and "Traceback" not in capsys.readouterr().out


# ================================================================== H. round 2: lost work, readers, stray lines
def test_make_data_keeps_an_edited_file_unless_asked(tmp_path, capsys):
    from glmcourse.tools import make_data

    out = tmp_path / "data"
    assert make_data.main(["--out", str(out)]) == 0
    assert make_data.main(["--out", str(out)]) == 0  # its own files: a rerun is fine
    (out / "lora_train.json").write_text("[]\n")
    with pytest.raises(SystemExit) as stop:
        make_data.main(["--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "lora_train.json differs" in err and "--overwrite_output_dir" in err
    assert (out / "lora_train.json").read_text() == "[]\n"
    assert make_data.main(["--out", str(out), "--overwrite_output_dir"]) == 0
    assert len(json.loads((out / "lora_train.json").read_text())) > 100


def test_build_course_model_keeps_a_folder_it_did_not_write(tmp_path, capsys):
    from glmcourse.tools import build_course_model

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(SystemExit) as stop:
        build_course_model.main(["--out", str(folder)])
    assert stop.value.code == 2 and "thesis.tex" in capsys.readouterr().err
    assert (folder / "thesis.tex").read_text() == "precious"
    assert build_course_model.foreign_model_entries(glmcourse.COURSE_MODEL) == []  # the shipped one is replaceable


def test_ptuning_convert_never_writes_over_its_input_or_a_stranger_file(tmp_path, capsys):
    from glmcourse import ptuning_train

    src = write_alpaca(tmp_path / "data.json")
    before = src.read_bytes()
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for save in (src, notes):
        assert ptuning_train.main(["convert", "--data_path", str(src), "--save_path", str(save)]) == 2
    err = capsys.readouterr().err
    assert "destroy the input" in err and "was not written by this command" in err
    assert src.read_bytes() == before and notes.read_text() == "mine"
    out = tmp_path / "rows.json"
    assert ptuning_train.main(["convert", "--data_path", str(src), "--save_path", str(out)]) == 0
    assert ptuning_train.main(["convert", "--data_path", str(src), "--save_path", str(out)]) == 0  # its own
    assert ptuning_train.main(["convert", "--data_path", str(src), "--save_path", str(notes),
                               "--overwrite_output_dir"]) == 0


def test_ptuning_refuses_the_course_model_folder_a_bad_seed_and_a_huge_prefix(tmp_path, capsys):
    from glmcourse import ptuning_train

    rows = tmp_path / "t.json"
    rows.write_text('{"prompt": "a", "response": "b"}\n')
    base = ["--train_file", str(rows), "--output_dir", str(tmp_path / "o")]
    for extra, expected in [(["--output_dir", glmcourse.COURSE_MODEL], "shipped course model"),
                            (["--seed", "-1"], "--seed: -1: out of range"),
                            (["--pre_seq_len", "100000"], "context of 512 tokens")]:
        assert ptuning_train.main(base + extra) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", ["conflict", "truncated", "gbk", "garbage"])
def test_a_damaged_catalog_is_one_line_naming_the_file(tmp_path, damage):
    from glmcourse.tools import catalogs

    good = sorted((REPO / "i18n" / "zh_CN").glob("0*.po"))[0].read_text(encoding="utf-8")
    po = tmp_path / "x.po"
    text = {"conflict": good.replace('msgid ""', '<<<<<<< HEAD\nmsgid ""', 1),
            "truncated": good[: len(good) // 2] + 'msgid "abc', "garbage": good + "\nthis is garbage\n"}.get(damage)
    po.write_bytes(good.encode("gb18030") if damage == "gbk" else text.encode("utf-8"))
    with pytest.raises(cli.UsageError) as caught:
        catalogs.load_catalog(po)
    message = str(caught.value)
    assert str(po) in message and "\n" not in message and ("line" in message or "UTF-8" in message)


def test_nbtools_and_site_name_a_damaged_notebook(tmp_path, capsys):
    from glmcourse.tools import nbtools, site

    bad = tmp_path / "bad.ipynb"
    bad.write_text("{ not json")
    for command in ("run", "clean"):
        assert nbtools.main([command, str(bad)]) == 2
        assert nbtools.main([command, str(tmp_path / "missing.ipynb")]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON at line 1" in err and "no such file" in err and "Traceback" not in err
    notebooks = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", notebooks)
    first = sorted(notebooks.glob("0*.ipynb"))[0]
    first.write_text(first.read_text(encoding="utf-8")[:300], encoding="utf-8")
    with pytest.raises(cli.UsageError, match=rf"notebook {re.escape(str(first))}: not valid JSON"):
        site.check_notebooks(notebooks)


def test_readers_name_utf16_deep_nesting_and_lone_surrogates(tmp_path):
    u16 = tmp_path / "u16.json"
    u16.write_bytes(json.dumps(ALPACA).encode("utf-16-le"))  # no byte-order mark
    with pytest.raises(data.DataError, match="UTF-16 text") as caught:
        data.load_alpaca(u16)
    assert "trailing comma" not in str(caught.value)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(data.DataError, match="nested too deeply"):
        data.load_alpaca(deep)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"context": "a\\ud800", "target": "b"}\n')
    with pytest.raises(data.DataError, match=r"line 1: holds \\ud800, a lone surrogate"):
        data.load_jsonl(rows)


def test_bench_only_with_a_typo_exits_2_naming_the_sections(capsys):
    from glmcourse import bench

    with pytest.raises(SystemExit) as stop:
        bench.main(["--only", "lorra"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "'lorra' matches no section" in err and "'05-06 LoRA'" in err


def test_training_runs_end_without_the_trainers_metrics_dict(capsys):
    from types import SimpleNamespace

    from glmcourse import training

    written = []
    progress = training.TqdmProgress()
    progress.training_bar = SimpleNamespace(write=written.append)
    state = SimpleNamespace(is_world_process_zero=True)
    progress.on_log(None, state, None, logs={"loss": 1.0})
    progress.on_log(None, state, None, logs={"train_runtime": 1.9, "train_loss": 5.8})
    assert len(written) == 1 and "loss" in written[0]  # the step's loss is shown; the closing dict is not
