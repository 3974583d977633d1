"""Lesson 03: prompt format, response tidying, history handling and streaming (glmcourse/chat.py).

Most tests use the byte-level stand-ins in chat_fakes.py, so they need no model. The last ones run
the real course architecture (random weights, or the shipped model when it exists).
"""
import warnings

import pytest
import torch
from chat_fakes import ByteTokenizer, ScriptedModel

from glmcourse import chat as C
from glmcourse import loading
from glmcourse.bench import chat as bench_chat
from glmcourse.exercises import chat as checks

TOK = ByteTokenizer()


# ---------------------------------------------------------------- prompt format
def test_prompt_without_history_is_the_raw_query():
    assert C.build_prompt("你好", []) == "你好"
    assert C.build_prompt("你好", None) == "你好"


def test_prompt_with_one_turn():
    expected = "[Round 0]\n问：你好\n答：你好！\n[Round 1]\n问：如何提高弹跳\n答："
    assert C.build_prompt("如何提高弹跳", [("你好", "你好！")]) == expected


def test_prompt_with_two_turns_numbers_rounds_from_zero_with_full_width_colons():
    prompt = C.build_prompt("c", [("a", "A"), ("b", "B")])
    assert prompt == "[Round 0]\n问：a\n答：A\n[Round 1]\n问：b\n答：B\n[Round 2]\n问：c\n答："
    assert prompt.count("\uff1a") == 6 and ":" not in prompt


# ---------------------------------------------------------------- process_response
@pytest.mark.parametrize("raw, tidy", [
    ("  你好\n ", "你好"),                        # stripped
    ("你好,世界", "你好，世界"),                  # CJK on both sides
    ("好!", "好！"),                              # CJK before
    ("ok?是的", "ok？是的"),                      # CJK after
    ("答案:42;对", "答案：42；对"),
    ("Hello, world! a:b; c?", "Hello, world! a:b; c?"),  # no CJK next to them: unchanged
    ("你好 , 世界", "你好 , 世界"),               # a space in between: not "directly" next to CJK
    ("你好.", "你好."),                           # only , ! : ; ? are converted
])
def test_process_response_rules(raw, tidy):
    assert C.process_response(raw) == tidy


# ---------------------------------------------------------------- history shape (docs/failure-catalog.md#f20-chat-history)
def test_validate_history_accepts_pairs_and_none():
    assert C.validate_history(None) == []
    assert C.validate_history([["q", "r"], ("q2", "r2")]) == [("q", "r"), ("q2", "r2")]


@pytest.mark.parametrize("bad", [
    ["你好", "你好！"],            # a flat list of strings
    [("q", "r", "extra")],         # triples
    [{"query": "q", "response": "r"}],
    [("q", 3)],
    "你好",
    {"q": "r"},
])
def test_validate_history_rejects_other_shapes_with_the_expected_shape(bad):
    with pytest.raises(TypeError, match=r"\(query, response\) pairs"):
        C.validate_history(bad)


def test_chat_rejects_a_wrong_history_before_generating():
    model = ScriptedModel("好")
    with pytest.raises(TypeError, match="history"):
        C.chat(model, TOK, "q", history=["q", "r"])
    assert model.calls == []


# ---------------------------------------------------------------- trimming (docs/failure-catalog.md#f20-chat-history)
def _prompt_len(query, history):
    return len(C.build_prompt(query, history).encode("utf-8")) + 2  # + [gMASK] <sop>


def test_fit_history_drops_the_oldest_turns_first():
    history = [("one", "1"), ("two", "2"), ("three", "3")]
    room = 10
    # budget for exactly the two newest turns
    max_length = _prompt_len("q", history[1:]) + room
    kept, dropped = C.fit_history(TOK, "q", history, max_length, room)
    assert (kept, dropped) == (history[1:], 1)
    kept, dropped = C.fit_history(TOK, "q", history, max_length - 1, room)
    assert (kept, dropped) == (history[2:], 2)
    kept, dropped = C.fit_history(TOK, "q", history, 10_000, room)
    assert (kept, dropped) == (history, 0)


def test_fit_history_raises_when_the_query_alone_is_too_long():
    with pytest.raises(ValueError, match="Shorten the query or raise max_length"):
        C.fit_history(TOK, "x" * 100, [], 50, 10)


def test_chat_warns_how_many_turns_were_dropped_but_returns_the_whole_history():
    history = [("one", "1"), ("two", "2"), ("three", "3")]
    model = ScriptedModel("ok")
    room = 10  # max_new_tokens is what chat() keeps free for the reply
    max_length = _prompt_len("q", history[1:]) + room  # fits all but the oldest turn
    with pytest.warns(C.HistoryTrimmedWarning, match="dropped the 1 oldest of 3 turns"):
        response, new_history = C.chat(model, TOK, "q", history, max_length=max_length, max_new_tokens=room)
    seen = bytes(model.calls[0]["input_ids"][0, :-2].tolist()).decode()
    assert seen == C.build_prompt("q", history[1:])
    assert new_history == history + [("q", "ok")]


# ---------------------------------------------------------------- the NaN-safe processor
def test_invalid_score_processor_keeps_sampling_alive():
    scores = torch.tensor([[1.0, float("nan"), float("inf"), float("-inf")],
                           [float("nan")] * 4,
                           [0.5, 1.0, 2.0, 3.0]])
    fixed = C.InvalidScoreLogitsProcessor(fallback_token_id=0)(None, scores.clone())
    assert torch.isfinite(fixed[0, [0, 2]]).all() and fixed[0, 1] == float("-inf")
    assert fixed[0, 3] == float("-inf")               # a banned token stays banned
    assert fixed[0].argmax() == 2                      # +inf was the favourite and still is
    assert fixed[1].argmax() == 0 and torch.isinf(fixed[1, 1:]).all()  # dead row -> fallback id
    assert torch.equal(fixed[2], scores[2])            # healthy rows untouched
    probs = torch.softmax(fixed, dim=-1)
    assert not probs.isnan().any()
    torch.multinomial(probs, 1)  # would raise on NaN probabilities


# ---------------------------------------------------------------- chat with the stand-ins
def test_chat_decodes_only_the_new_ids_and_appends_the_turn():
    model = ScriptedModel("  你好,我是助手 ")
    response, history = C.chat(model, TOK, "你好", [("a", "b")])
    assert response == "你好，我是助手"
    assert history == [("a", "b"), ("你好", "你好，我是助手")]
    call = model.calls[0]
    ids = call["input_ids"][0].tolist()
    assert ids[-2:] == [TOK.gmask_token_id, TOK.sop_token_id]
    assert any(isinstance(p, C.InvalidScoreLogitsProcessor) for p in call["logits_processor"])
    assert call["do_sample"] is True and call["top_p"] == 0.7 and call["temperature"] == 0.95


def test_chat_greedy_passes_no_sampling_knobs_and_stops_at_eop():
    model = ScriptedModel(list("是".encode()) + [TOK.eop_token_id] + list(b"junk"))
    response, _ = C.chat(model, TOK, "q", do_sample=False)
    assert response == "是"
    assert "top_p" not in model.calls[0] and "temperature" not in model.calls[0]


def test_chat_caps_the_reply_by_max_length():
    model = ScriptedModel("x" * 500)
    C.chat(model, TOK, "q", max_length=40)
    assert model.calls[0]["max_new_tokens"] == 40 - _prompt_len("q", [])


def test_inputs_are_moved_to_the_model_device():  # docs/failure-catalog.md#f24-inputs-on-another-device
    model = ScriptedModel("ok", device="meta")
    try:
        C.chat(model, TOK, "q")
    except Exception:
        pass  # the scripted model cannot build its output on 'meta'; the inputs are what we check
    assert model.calls[0]["input_ids"].device.type == "meta"
    assert model.calls[0]["attention_mask"].device.type == "meta"


def test_fp16_model_on_cpu_is_cast_to_fp32_with_a_warning():  # docs/failure-catalog.md#f03-fp16-on-cpu
    model = ScriptedModel("ok", dtype=torch.float16)
    with pytest.warns(UserWarning, match="fp16 on the CPU"):
        C.chat(model, TOK, "q")
    assert model.weight.dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.chat(model, TOK, "q")  # already fp32: no second warning


def test_a_prompt_without_gmask_sop_is_a_clear_error():
    class NoSpecials(ByteTokenizer):
        def encode(self, text, add_special_tokens=True):
            return list(text.encode())

    with pytest.raises(ValueError, match=r"\[gMASK\] <sop>"):
        C.chat(ScriptedModel("ok"), NoSpecials(), "q")


# ---------------------------------------------------------------- streaming (docs/failure-catalog.md#f22-half-a-character)
def test_decode_reply_holds_back_a_character_still_arriving():
    ids = list("你好".encode())
    assert C.decode_reply(TOK, ids[:4], final=False) == "你"  # 4 of 6 bytes: 好 is incomplete
    assert C.decode_reply(TOK, ids, final=False) == "你好"
    stray = [0xE4] + list(b"ok")  # a lead byte that never completes
    assert C.decode_reply(TOK, stray) == "ok"


def test_stream_never_shows_half_a_character_and_ends_with_the_chat_reply():
    text = "你好,世界!ok? 😀 end"
    model = ScriptedModel(text)
    outputs = list(C.stream_chat(model, TOK, "q", [("a", "b")]))
    responses = [r for r, _ in outputs]
    assert len(responses) > 5  # it really streamed, byte after byte
    assert all(C.REPLACEMENT_CHAR not in r for r in responses)
    assert all(a == b[: len(a)] for a, b in zip(responses, responses[1:]))  # each a prefix of the next
    expected, history = C.chat(ScriptedModel(text), TOK, "q", [("a", "b")])
    assert responses[-1] == expected == "你好，世界！ok? 😀 end"
    assert outputs[-1][1] == history == [("a", "b"), ("q", expected)]


def test_stream_drops_bytes_that_never_form_a_character():
    model = ScriptedModel([0xE4] + list("好".encode()) + [0xFF] + list(b"!"))
    responses = [r for r, _ in C.stream_chat(model, TOK, "q")]
    assert responses[-1] == "好！" and all(C.REPLACEMENT_CHAR not in r for r in responses)


def test_stream_yields_once_for_an_empty_reply():
    outputs = list(C.stream_chat(ScriptedModel([TOK.eop_token_id]), TOK, "q"))
    assert outputs == [("", [("q", "")])]


def test_closing_the_stream_stops_generation():  # what Ctrl-C does in the CLI
    model = ScriptedModel("a" * 1000, step_delay=0.002)
    stream = C.stream_chat(model, TOK, "q", max_length=5000)
    next(stream), next(stream)
    stream.close()
    assert 2 <= model.steps < 1000


def test_an_error_inside_generate_reaches_the_consumer():
    class Broken(ScriptedModel):
        def generate(self, *args, **kwargs):
            raise RuntimeError("out of memory (simulated)")

    with pytest.raises(RuntimeError, match="simulated"):
        list(C.stream_chat(Broken("x"), TOK, "q"))


def test_stream_refuses_beam_search():
    with pytest.raises(ValueError, match="num_beams"):
        next(C.stream_chat(ScriptedModel("x"), TOK, "q", num_beams=2))


# ---------------------------------------------------------------- the real architecture
@pytest.fixture(scope="module")
def tiny():
    from chat_fakes import tiny_chat_model

    return tiny_chat_model()


def test_random_model_stream_matches_chat_and_shows_whole_characters_only(tiny):
    tok, model = tiny
    history = [("你好", "你好！")]
    torch.manual_seed(3)
    outputs = list(model.stream_chat(tok, "如何提高弹跳", history, max_new_tokens=40))
    torch.manual_seed(3)
    response, new_history = model.chat(tok, "如何提高弹跳", history, max_new_tokens=40)
    responses = [r for r, _ in outputs]
    assert all(C.REPLACEMENT_CHAR not in r for r in responses)
    assert all(a == b[: len(a)] for a, b in zip(responses, responses[1:]))
    assert outputs[-1] == (response, new_history)
    assert new_history == history + [("如何提高弹跳", response)]


def test_random_model_greedy_is_repeatable_and_sampling_follows_the_seed(tiny):
    tok, model = tiny
    greedy = [model.chat(tok, "你好", do_sample=False, max_new_tokens=12)[0] for _ in range(2)]
    assert greedy[0] == greedy[1]
    torch.manual_seed(0)
    first = model.chat(tok, "你好", max_new_tokens=12)[0]
    torch.manual_seed(0)
    assert model.chat(tok, "你好", max_new_tokens=12)[0] == first


def test_stream_chat_through_a_peft_model(tiny):
    from peft import LoraConfig, get_peft_model

    tok, model = tiny
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["query_key_value"]))
    try:
        torch.manual_seed(0)
        streamed = list(C.stream_chat(peft_model, tok, "你好", max_new_tokens=8))[-1][0]
        torch.manual_seed(0)
        assert C.chat(peft_model, tok, "你好", max_new_tokens=8)[0] == streamed
    finally:
        peft_model.unload()  # give the module-scoped model back without LoRA layers


def _course_model_ready():
    from pathlib import Path

    import glmcourse

    return (Path(glmcourse.COURSE_MODEL) / "model.safetensors").exists()


@pytest.mark.skipif(not _course_model_ready(), reason="the course model is not built yet")
def test_course_model_streams_whole_characters_and_uses_history():
    tok, model = loading.load_chat_model()
    torch.manual_seed(0)
    response, history = model.chat(tok, "你好", max_new_tokens=48)
    assert response and history == [("你好", response)]
    torch.manual_seed(0)
    outputs = list(model.stream_chat(tok, "如何提高弹跳", history, max_new_tokens=48))
    assert outputs[-1][0] and all(C.REPLACEMENT_CHAR not in r for r, _ in outputs)
    assert outputs[-1][1][:1] == history


# ---------------------------------------------------------------- the notebook chat widget
def test_chat_widget_streams_keeps_history_and_clears():
    model = ScriptedModel("见下:\n```python\nprint(1)\n```")
    box = C.chat_widget(model, TOK)
    labels = {getattr(w, "description", None) for w in box.children[2].children} | {
        s.description for s in box.sliders.values()}
    assert {"Submit", "Clear History", "Maximum length", "Top P", "Temperature"} <= labels
    assert [s.value for s in box.sliders.values()] == [2048, 0.7, 0.95]
    box.text.value = "   "
    box.submit.click()
    assert model.calls == []  # empty input: nothing sent
    box.sliders["top_p"].value = 0.5
    box.text.value = "代码"
    box.submit.click()
    assert box.text.value == "" and not box.submit.disabled
    assert box.history == [("代码", "见下：\n```python\nprint(1)\n```")]
    assert model.calls[0]["top_p"] == 0.5
    assert "**用户：** 代码" in box.markdown and "```python\nprint(1)\n```" in box.markdown
    box.text.value = "再来"
    box.submit.click()
    assert len(box.history) == 2
    box.clear.click()
    assert box.history == [] and "no messages" in box.markdown


# ---------------------------------------------------------------- exercise checkers
def _solutions():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / "03_chat_solutions.py"
    spec = importlib.util.spec_from_file_location("chat_solutions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_build_prompt_accepts_the_solution_and_rejects_ascii_colons(capsys):
    checks.check_build_prompt(_solutions().build_prompt)
    assert "Correct" in capsys.readouterr().out

    def ascii_colons(query, history):
        return _solutions().build_prompt(query, history).replace("：", ":")

    def rounds_from_one(query, history):
        if not history:
            return query
        body = "".join(f"[Round {i + 1}]\n问：{q}\n答：{r}\n" for i, (q, r) in enumerate(history))
        return body + f"[Round {len(history) + 1}]\n问：{query}\n答："

    with pytest.raises(AssertionError, match="full-width"):
        checks.check_build_prompt(ascii_colons)
    with pytest.raises(AssertionError, match="i from 0"):
        checks.check_build_prompt(rounds_from_one)


def test_check_process_response_accepts_the_solution_and_rejects_converting_everything():
    checks.check_process_response(_solutions().process_response)

    def everywhere(text):
        return text.strip().replace(",", "，").replace("!", "！").replace(":", "：").replace(";", "；").replace("?", "？")

    with pytest.raises(AssertionError, match="directly before or after"):
        checks.check_process_response(everywhere)
    with pytest.raises(AssertionError):
        checks.check_process_response(lambda text: text)  # forgets to strip


def test_check_fit_history_accepts_the_solution_and_rejects_dropping_the_newest():
    checks.check_fit_history(_solutions().fit_history)

    def drops_newest(tokenizer, query, history, max_length, reply_room):
        kept, dropped = _solutions().fit_history(tokenizer, query, history[::-1], max_length, reply_room)
        return kept[::-1], dropped

    with pytest.raises(AssertionError, match="OLDEST"):
        checks.check_fit_history(drops_newest)

    def never_raises(tokenizer, query, history, max_length, reply_room):
        try:
            return _solutions().fit_history(tokenizer, query, history, max_length, reply_room)
        except ValueError:
            return [], len(history)

    with pytest.raises(AssertionError, match="ValueError"):
        checks.check_fit_history(never_raises)


def test_check_whole_chars_accepts_the_solution_and_rejects_replacement_chars():
    checks.check_whole_chars(_solutions().whole_chars)
    with pytest.raises(AssertionError, match="ufffd"):
        checks.check_whole_chars(lambda data: data.decode("utf-8", errors="replace"))


def test_a_crash_or_todo_in_the_learner_function_is_reported_not_raised():
    from glmcourse.exercises import attempt

    def todo(query, history):
        raise NotImplementedError

    assert attempt(checks.check_build_prompt, todo) is False
    with pytest.raises(AssertionError, match="raised KeyError"):
        checks.check_build_prompt(lambda q, h: {}[q])


# ---------------------------------------------------------------- loading (docs/failure-catalog.md#f23-missing-model-files)
def test_load_names_missing_files_and_never_downloads_offline(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="weights .*tokenizer"):
        loading.load_chat_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model folder"):
        loading.load_chat_model(tmp_path / "nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1"):
        loading.load_chat_model("someone/not-cached-model-xyz")


def test_bench_chat_reports_a_forced_length_stream(tmp_path):
    from chat_fakes import save_tiny_chat_model

    result = bench_chat.bench_chat(save_tiny_chat_model(tmp_path / "tiny"), new_tokens=8, repeats=1)
    assert result["stream_tokens"] == 8  # forced to exactly new_tokens
    assert result["stream_tokens_per_s"] == pytest.approx(8 / result["stream_time_s"])
    assert 0 < result["stream_first_token_s"] <= result["stream_time_s"]
    assert result["reply_latency_s"] > 0 and result["device"] == "cpu"


@pytest.mark.parametrize("kwargs,message", [
    ({"max_new_tokens": 0}, "max_new_tokens=0"), ({"top_p": 5}, "top_p=5"), ({"temperature": float("nan")}, "temperature=nan"),
])
def test_chat_refuses_out_of_range_settings_before_generating(tiny, kwargs, message):
    tok, model = tiny
    with pytest.raises(ValueError, match=message):
        C.chat(model, tok, "你好", [], do_sample=True, **kwargs)
