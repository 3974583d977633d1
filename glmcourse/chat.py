"""Lesson 03: talking to a ChatGLM model (prompt format, history, sampling, streaming).

ChatGLM-6B's ``model.chat`` is a thin layer over ``generate``. This module is that layer, written out:

* ``build_prompt`` turns a query and the past turns into the single string the model reads;
* ``fit_history`` drops the oldest turns until the prompt leaves room for the reply;
* ``chat`` encodes, generates, decodes only the new ids and tidies the text (``process_response``);
* ``stream_chat`` does the same while the tokens arrive, and never shows half a character.

The course model's ``model.chat(tokenizer, query, history)`` and ``model.stream_chat(...)`` call
``chat`` and ``stream_chat`` here, so everything below also runs on a PEFT-wrapped model.
"""
from __future__ import annotations

import queue
import re
import threading
import time
import warnings
from typing import Iterator

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from glmcourse.exercises import call_learner as _call

REPLACEMENT_CHAR = "\ufffd"  # what a byte-level decoder shows for an incomplete UTF-8 sequence
REPLY_ROOM = 256  # tokens kept free for the reply when trimming history (unless max_new_tokens says)


class HistoryTrimmedWarning(UserWarning):
    """The oldest turns were left out of the prompt so that it fits ``max_length``."""


warnings.simplefilter("always", HistoryTrimmedWarning)  # every trim is news, not just the first one


# --------------------------------------------------------------------------------------------------
# The prompt
# --------------------------------------------------------------------------------------------------
def build_prompt(query: str, history=None) -> str:
    """The text ChatGLM-6B reads for ``query`` after the turns in ``history``.

    With no history the prompt is the query itself. Otherwise every past turn becomes
    ``"[Round i]\\n问：q\\n答：r\\n"`` (i from 0, full-width colons) and the new query is asked as the
    next round, ending in ``"答："`` so that the model's reply continues the pattern.
    """
    turns = validate_history(history)
    if not turns:
        return query
    prompt = "".join(f"[Round {i}]\n问：{q}\n答：{r}\n" for i, (q, r) in enumerate(turns))
    return prompt + f"[Round {len(turns)}]\n问：{query}\n答："


def validate_history(history) -> list[tuple[str, str]]:
    """Return ``history`` as a list of ``(query, response)`` string pairs; None means no history.

    Anything else (a flat list of strings, dicts, triples) raises TypeError showing the shape expected,
    because a wrong shape otherwise turns into a garbled prompt without any error.
    """
    if history is None:
        return []
    expected = "history must be a list of (query, response) pairs, e.g. [('你好', '你好！有什么可以帮你？')]"
    if isinstance(history, (str, bytes, dict)) or not hasattr(history, "__iter__"):
        raise TypeError(f"{expected}; got {type(history).__name__}.")
    turns = []
    for i, turn in enumerate(history):
        ok = isinstance(turn, (tuple, list)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)
        if not ok:
            raise TypeError(f"{expected}; history[{i}] is {turn!r} ({type(turn).__name__}). "
                            "Pass the history that chat() returned, or build it from 2-tuples of strings.")
        turns.append((turn[0], turn[1]))
    return turns


_CJK = "\u4e00-\u9fff"
_HALF_TO_FULL = {",": "，", "!": "！", ":": "：", ";": "；", "?": "？"}
_PUNCT_NEAR_CJK = [
    re.compile(rf"([{_CJK}])([,!:;?])"),  # punctuation right after a CJK character
    re.compile(rf"([,!:;?])([{_CJK}])"),  # punctuation right before one
]


def process_response(text: str) -> str:
    """Tidy a decoded reply: strip it, and make ASCII , ! : ; ? full-width next to a CJK character."""
    text = text.strip()
    text = _PUNCT_NEAR_CJK[0].sub(lambda m: m.group(1) + _HALF_TO_FULL[m.group(2)], text)
    text = _PUNCT_NEAR_CJK[1].sub(lambda m: _HALF_TO_FULL[m.group(1)] + m.group(2), text)
    return text


# --------------------------------------------------------------------------------------------------
# Fitting the history into the context
# --------------------------------------------------------------------------------------------------
def count_prompt_tokens(tokenizer, query: str, history=None) -> int:
    """How many ids the model reads for this prompt ([gMASK] and <sop> included)."""
    return len(tokenizer(build_prompt(query, history))["input_ids"])


def fit_history(tokenizer, query: str, history, max_length: int, reply_room: int = REPLY_ROOM):
    """Drop the oldest turns until the prompt plus ``reply_room`` new tokens fit in ``max_length``.

    Returns ``(kept_turns, n_dropped)``. The newest turns are kept: they matter most to the next
    answer. Raises ValueError when even the query alone does not fit.
    """
    turns = validate_history(history)
    if max_length <= reply_room:
        raise ValueError(f"max_length={max_length} leaves no room for a prompt after reserving "
                         f"{reply_room} tokens for the reply; raise max_length or lower max_new_tokens.")
    dropped = 0
    while count_prompt_tokens(tokenizer, query, turns[dropped:]) + reply_room > max_length:
        if dropped == len(turns):
            n = count_prompt_tokens(tokenizer, query)
            raise ValueError(f"the query alone is {n} tokens; with {reply_room} kept for the reply it does "
                             f"not fit max_length={max_length}. Shorten the query or raise max_length.")
        dropped += 1
    return turns[dropped:], dropped


# --------------------------------------------------------------------------------------------------
# Generation helpers
# --------------------------------------------------------------------------------------------------
class InvalidScoreLogitsProcessor(LogitsProcessor):
    """Keep sampling alive when the scores contain NaN or +inf (an overflowing fp16 model, say).

    NaN becomes -inf (never pick it) and +inf becomes a large finite score. ``-inf`` is left alone: it
    is how other processors ban a token. A row with nothing finite left would make softmax NaN and
    ``torch.multinomial`` crash, so that row is handed to ``fallback_token_id`` (the end of the reply).
    """

    def __init__(self, fallback_token_id: int, large: float = 1e4):
        self.fallback_token_id = fallback_token_id
        self.large = large

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if torch.isfinite(scores).all():
            return scores
        scores = torch.nan_to_num(scores, nan=float("-inf"), posinf=self.large, neginf=float("-inf"))
        dead_rows = ~torch.isfinite(scores).any(dim=-1)
        if dead_rows.any():
            scores[dead_rows] = float("-inf")
            scores[dead_rows, self.fallback_token_id] = 0.0
        return scores


def _model_device(model) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


def ensure_cpu_float(model):
    """fp16 matmuls are missing or very slow on the CPU: cast such a model to fp32 (and say so)."""
    dtype = getattr(model, "dtype", None)
    if dtype is None:
        dtype = next(model.parameters()).dtype
    if dtype == torch.float16 and _model_device(model).type == "cpu":
        warnings.warn("chat: the model is fp16 on the CPU, which cannot run half-precision matmuls; "
                      "casting it to fp32 (use .half() only on a GPU).", stacklevel=3)
        model.float()
    return model


def _special_id(tokenizer, name: str, fallback: str) -> int:
    value = getattr(tokenizer, name, None)
    return value if value is not None else getattr(tokenizer, fallback)


def _encode_prompt(model, tokenizer, prompt: str) -> dict:
    """Tokenize, check the prompt ends in [gMASK] <sop>, and move it to the model's device."""
    inputs = tokenizer([prompt], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    gmask = _special_id(tokenizer, "gmask_token_id", "mask_token_id")
    sop = _special_id(tokenizer, "sop_token_id", "bos_token_id")
    if ids[-2:] != [gmask, sop]:
        raise ValueError(f"the encoded prompt must end in [gMASK] <sop> (ids {gmask}, {sop}) but ends in "
                         f"{ids[-2:]}; load the ChatGLM tokenizer that belongs to this model.")
    device = _model_device(model)
    return {k: v.to(device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}


def _generation_kwargs(tokenizer, prompt_len: int, max_length: int, num_beams: int, do_sample: bool,
                       top_p: float, temperature: float, logits_processor, kwargs: dict) -> dict:
    eop = _special_id(tokenizer, "eop_token_id", "eos_token_id")
    processors = LogitsProcessorList(logits_processor or [])
    processors.append(InvalidScoreLogitsProcessor(eop))
    room = max_length - prompt_len
    max_new = min(kwargs.pop("max_new_tokens", room) or room, room)
    gen = dict(max_new_tokens=max_new, num_beams=num_beams, do_sample=do_sample,
               logits_processor=processors, eos_token_id=eop, pad_token_id=tokenizer.pad_token_id)
    if do_sample:  # top_p / temperature mean nothing for greedy search (transformers warns about them)
        gen.update(top_p=top_p, temperature=temperature)
    gen.update(kwargs)
    return gen


def _prepare(model, tokenizer, query, history, max_length, kwargs):
    """Shared by chat and stream_chat: validate, trim, encode. Returns (turns, inputs, max_length)."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}.")
    turns = validate_history(history)
    ensure_cpu_float(model)
    limit = getattr(getattr(model, "config", None), "max_sequence_length", None)
    if isinstance(limit, int) and limit < max_length:
        max_length = limit  # the model was never trained on longer sequences
    room = min(kwargs.get("max_new_tokens") or REPLY_ROOM, max(1, max_length // 4))
    kept, dropped = fit_history(tokenizer, query, turns, max_length, room)
    if dropped:
        warnings.warn(f"chat: dropped the {dropped} oldest of {len(turns)} turns so the prompt fits "
                      f"max_length={max_length} with {room} tokens left for the reply.",
                      HistoryTrimmedWarning, stacklevel=3)
    inputs = _encode_prompt(model, tokenizer, build_prompt(query, kept))
    return turns, inputs, max_length


def decode_reply(tokenizer, new_ids, final: bool = True) -> str:
    """Text of the generated ids, cut at the first <eop>, with only whole characters.

    A byte-level tokenizer can stop in the middle of a multi-byte character; its decoder then shows
    U+FFFD at the end. While streaming (``final=False``) that tail is held back until the next token
    completes it. Bytes that can never form a character (a stray byte from an untrained model) are
    dropped, so U+FFFD never reaches the user.
    """
    ids = list(new_ids)
    eop = _special_id(tokenizer, "eop_token_id", "eos_token_id")
    if eop in ids:
        ids = ids[: ids.index(eop)]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if not final:
        text = text.rstrip(REPLACEMENT_CHAR)  # possibly a character still arriving
    return text.replace(REPLACEMENT_CHAR, "")


# --------------------------------------------------------------------------------------------------
# chat and stream_chat
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def chat(model, tokenizer, query: str, history=None, max_length: int = 2048, num_beams: int = 1,
         do_sample: bool = True, top_p: float = 0.7, temperature: float = 0.95, logits_processor=None,
         **kwargs):
    """One turn: returns ``(response, history + [(query, response)])``, as ChatGLM-6B's ``model.chat``.

    ``max_length`` counts prompt and reply together. When the history does not fit, its oldest turns
    are left out of the prompt (with a warning); the returned history still holds every turn.
    """
    turns, inputs, max_length = _prepare(model, tokenizer, query, history, max_length, kwargs)
    prompt_len = inputs["input_ids"].shape[1]
    gen = _generation_kwargs(tokenizer, prompt_len, max_length, num_beams, do_sample, top_p,
                             temperature, logits_processor, kwargs)
    output = model.generate(**inputs, **gen)
    response = process_response(decode_reply(tokenizer, output[0, prompt_len:].tolist()))
    return response, turns + [(query, response)]


class _TokenQueue(BaseStreamer):
    """A streamer that hands each generated id to another thread (the prompt's ids are skipped)."""

    def __init__(self):
        self.items: queue.Queue = queue.Queue()
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:  # generate() first puts the whole prompt
            self.prompt_seen = True
            return
        self.items.put(("ids", value.reshape(-1).tolist()))

    def end(self):
        self.items.put(("end", None))


class _StopWhenSet(StoppingCriteria):
    """Stops generate() as soon as the consumer of a stream goes away (Ctrl-C, closed generator)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


def stream_ids(model, inputs: dict, gen: dict) -> Iterator[list[int]]:
    """Run ``model.generate`` in a worker thread and yield the list of new ids after every token.

    Closing the generator (or an exception in the consumer, such as Ctrl-C) stops the generation at
    the next token. An exception inside generate() is re-raised here.
    """
    tokens = _TokenQueue()
    stop = threading.Event()
    criteria = StoppingCriteriaList(gen.pop("stopping_criteria", None) or [])
    criteria.append(_StopWhenSet(stop))

    def work():
        try:
            with torch.no_grad():
                model.generate(**inputs, **gen, streamer=tokens, stopping_criteria=criteria)
        except BaseException as exc:  # handed to the consumer thread
            tokens.items.put(("error", exc))
        finally:
            tokens.items.put(("end", None))

    worker = threading.Thread(target=work, name="glmcourse-stream", daemon=True)
    worker.start()
    new_ids: list[int] = []
    try:
        while True:
            try:  # a timeout keeps the wait interruptible by Ctrl-C
                kind, value = tokens.items.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "error":
                raise value
            if kind == "end":
                break
            new_ids.extend(value)
            yield list(new_ids)
    finally:
        stop.set()
        worker.join()


_UNSETTLED_TAIL = tuple(_HALF_TO_FULL)  # may still turn full-width when the next character arrives


@torch.no_grad()
def stream_chat(model, tokenizer, query: str, history=None, max_length: int = 2048,
                do_sample: bool = True, top_p: float = 0.7, temperature: float = 0.95,
                logits_processor=None, **kwargs):
    """Like ``chat``, but yields ``(response_so_far, history + [(query, response_so_far)])``.

    Every yielded response is a prefix of the next one and of the final reply: incomplete characters
    and a trailing , ! : ; ? (which may still become full-width) are held back until settled. The
    last item yielded is the finished turn.
    """
    if kwargs.get("num_beams", 1) != 1:
        raise ValueError("stream_chat samples or decodes greedily one token at a time; num_beams must be 1 "
                         "(use chat() for beam search).")
    kwargs.pop("num_beams", None)
    turns, inputs, max_length = _prepare(model, tokenizer, query, history, max_length, kwargs)
    prompt_len = inputs["input_ids"].shape[1]
    gen = _generation_kwargs(tokenizer, prompt_len, max_length, 1, do_sample, top_p, temperature,
                             logits_processor, kwargs)
    shown = None
    new_ids: list[int] = []
    for new_ids in stream_ids(model, inputs, gen):
        text = process_response(decode_reply(tokenizer, new_ids, final=False))
        if text.endswith(_UNSETTLED_TAIL):
            text = text[:-1].rstrip()
        if text != shown and text:
            shown = text
            yield text, turns + [(query, text)]
    final = process_response(decode_reply(tokenizer, new_ids, final=True))
    if final != shown:
        yield final, turns + [(query, final)]


# --------------------------------------------------------------------------------------------------
# The in-notebook chat (ipywidgets)
# --------------------------------------------------------------------------------------------------
def transcript_markdown(turns) -> str:
    """The conversation as markdown: the notebook renders it, code blocks included."""
    blocks = [f"**用户：** {q}\n\n**ChatGLM：** {r}" for q, r in turns]
    return "\n\n---\n\n".join(blocks) if blocks else "*(no messages yet)*"


def chat_widget(model, tokenizer, max_length: int = 2048, top_p: float = 0.7, temperature: float = 0.95):
    """A chat box for the notebook: text box, Submit, Clear History, three sliders, streamed replies.

    The returned VBox keeps the conversation in ``.history``; ``.transcript`` is the Output widget
    that shows it, ``.text``, ``.submit``, ``.clear`` and ``.sliders`` are the controls (so a cell can
    also drive it: set ``box.text.value`` and call ``box.submit.click()``).
    """
    import ipywidgets as widgets
    from IPython.display import Markdown, display

    text = widgets.Textarea(placeholder="输入消息 / type a message", layout=widgets.Layout(width="100%"))
    submit = widgets.Button(description="Submit", button_style="primary")
    clear = widgets.Button(description="Clear History")
    sliders = {
        "max_length": widgets.IntSlider(value=max_length, min=16, max=4096, step=1, description="Maximum length"),
        "top_p": widgets.FloatSlider(value=top_p, min=0.01, max=1.0, step=0.01, description="Top P"),
        "temperature": widgets.FloatSlider(value=temperature, min=0.01, max=1.5, step=0.01,
                                           description="Temperature"),
    }
    for slider in sliders.values():
        slider.style.description_width = "initial"
    transcript = widgets.Output(layout=widgets.Layout(border="1px solid #ddd", padding="4px", min_height="80px"))
    box = widgets.VBox([transcript, text, widgets.HBox([submit, clear]), *sliders.values()])
    box.history, box.transcript, box.text, box.submit, box.clear, box.sliders = [], transcript, text, submit, clear, sliders
    box.markdown = transcript_markdown([])

    def show(turns):
        box.markdown = transcript_markdown(turns)
        transcript.clear_output(wait=True)
        with transcript:
            display(Markdown(box.markdown))

    def on_submit(_button=None):
        query = text.value.strip()
        if not query:
            return
        text.value, submit.disabled = "", True
        try:
            options = {name: slider.value for name, slider in sliders.items()}
            turns = box.history
            for _, turns in stream_chat(model, tokenizer, query, box.history, **options):
                show(turns)
            box.history = turns
        except Exception as err:  # shown in the chat box instead of a log the learner never opens
            with transcript:
                display(Markdown(f"**error:** `{type(err).__name__}: {err}`"))
        finally:
            submit.disabled = False

    def on_clear(_button=None):
        box.history = []
        show([])

    submit.on_click(on_submit)
    clear.on_click(on_clear)
    show([])
    return box


# --------------------------------------------------------------------------------------------------
# Loading (shared by the CLI, the web demo and the benchmark)
# --------------------------------------------------------------------------------------------------
def missing_model_files(path) -> list[str]:
    """What a local model folder lacks for from_pretrained (empty when it looks complete)."""
    from pathlib import Path

    folder = Path(path)
    needs = {
        "config.json": ["config.json"],
        "weights (model.safetensors or pytorch_model.bin, or a sharded index)": [
            "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
            "pytorch_model.bin.index.json"],
        "tokenizer (tokenizer.json or tokenizer_config.json)": ["tokenizer.json", "tokenizer_config.json"],
    }
    return [what for what, names in needs.items() if not any((folder / n).exists() for n in names)]


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an invalid repo id, say
        return False


def load_chat_model(path: str | None = None, device: str | None = None):
    """``(tokenizer, model)`` ready to chat: the seed's AutoTokenizer / AutoModel calls, in eval mode.

    The device defaults to the best available one, in fp16 on a GPU and fp32 on the CPU. A local
    folder is checked first, so a missing file is named instead of becoming a download attempt.
    """
    import os
    from pathlib import Path

    from transformers import AutoModel, AutoTokenizer

    import glmcourse
    from glmcourse.settings import pick_device, pick_dtype

    path = str(path or glmcourse.COURSE_MODEL)
    if Path(path).is_dir():
        missing = missing_model_files(path)
        if missing:
            raise FileNotFoundError(f"model folder {path} is missing: {', '.join(missing)}. Point --model "
                                    "at a folder written by save_pretrained (or the course model).")
    elif Path(path).exists() or path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"no model folder at {path}. Pass the folder that holds config.json, the "
                                "weights and the tokenizer.")
    elif os.environ.get("HF_HUB_OFFLINE") == "1" and not _in_hub_cache(path):
        raise FileNotFoundError(f"{path} is neither a local folder nor in the Hugging Face cache, and "
                                "HF_HUB_OFFLINE=1 forbids downloading it. Download it once online, or pass "
                                "a local folder.")
    device = pick_device(device)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    model = AutoModel.from_pretrained(path, trust_remote_code=True, dtype=pick_dtype(device))
    return tokenizer, model.to(device).eval()


# --------------------------------------------------------------------------------------------------
# Benchmark (make bench)
# --------------------------------------------------------------------------------------------------
def bench_chat(model_path: str | None = None, new_tokens: int = 64, query: str = "你好", repeats: int = 3) -> dict:
    """Time a one-turn reply (at most ``new_tokens`` new tokens) and the streamed tokens per second.

    Returns ``reply_latency_s`` (one ``chat`` call, ChatGLM's sampling defaults), ``reply_tokens``
    (the reply re-encoded), ``stream_tokens``, ``stream_time_s``, ``stream_tokens_per_s`` and
    ``stream_first_token_s`` (a ``stream_ids`` run forced to exactly ``new_tokens`` tokens, so the
    rate is measured over a fixed length), plus text notes ``device`` and ``setup``. Times are the
    best of ``repeats`` runs.
    """
    from glmcourse.settings import seed_everything

    tokenizer, model = load_chat_model(model_path)
    seed_everything(0)
    chat(model, tokenizer, query, max_new_tokens=4)  # warm-up: first-call allocations are not the rate

    latency = float("inf")
    for _ in range(repeats):  # best of a few: a shared CPU adds noise, never speed
        seed_everything(0)
        start = time.perf_counter()
        response, _ = chat(model, tokenizer, query, max_new_tokens=new_tokens)
        latency = min(latency, time.perf_counter() - start)
    reply_tokens = len(tokenizer(response, add_special_tokens=False)["input_ids"])

    inputs = _encode_prompt(model, tokenizer, build_prompt(query))
    gen = _generation_kwargs(tokenizer, inputs["input_ids"].shape[1], 10**9, 1, True, 0.7, 0.95, None,
                             {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens})
    elapsed = first = float("inf")
    for _ in range(repeats):
        seed_everything(0)
        start, first_now, count = time.perf_counter(), None, 0
        for ids in stream_ids(model, inputs, dict(gen)):
            first_now = first_now if first_now is not None else time.perf_counter() - start
            count = len(ids)
        elapsed, first = min(elapsed, time.perf_counter() - start), min(first, first_now)
    return {
        "reply_latency_s": latency,
        "reply_tokens": reply_tokens,
        "stream_tokens": count,
        "stream_time_s": elapsed,
        "stream_tokens_per_s": count / elapsed if elapsed else float("nan"),
        "stream_first_token_s": first,
        "device": str(_model_device(model)),
        "setup": f"query {query!r}, top_p 0.7, temperature 0.95, reply <= {new_tokens} new tokens, "
                 f"stream forced to {new_tokens}, best of {repeats}, {torch.get_num_threads()} torch threads",
    }


# --------------------------------------------------------------------------------------------------
# Exercise checkers (notebook 03)
# --------------------------------------------------------------------------------------------------

def check_build_prompt(fn) -> None:
    """Exercise: ``fn(query, history)`` returns ChatGLM-6B's prompt string."""
    cases = [
        ("你好", []),
        ("如何提高弹跳", [("你好", "你好！")]),
        ("还有呢？", [("a", "A"), ("b", "B\n第二行")]),
        ("q", [("", "")]),
    ]
    for query, history in cases:
        got, want = _call(fn, query, list(history)), build_prompt(query, history)
        if got == want:
            continue
        if not history:
            raise AssertionError(f"with an empty history the prompt is the query itself: {want!r}, got {got!r}")
        if isinstance(got, str) and ":" in got:
            raise AssertionError("the colons after 问 and 答 are full-width '：' (U+FF1A), not ASCII ':'")
        raise AssertionError(f"for query={query!r}, history={history!r} expected\n{want!r}\ngot\n{got!r}\n"
                             "Each past turn is '[Round i]\\n问：q\\n答：r\\n' (i from 0), then the new query as "
                             "'[Round n]\\n问：query\\n答：'.")
    print("Correct: empty history gives the raw query; every turn is a numbered round with full-width colons.")


def check_process_response(fn) -> None:
    """Exercise: ``fn(text)`` strips the reply and makes , ! : ; ? full-width next to a CJK character."""
    cases = ["  你好 \n", "你好,世界", "对!", "是吗?", "ok;好", "time: 12:30", "Hi, 你好!", "你好 , 世界",
             "你好.", "中,文,标,点", "a,b!c:d;e?"]
    for text in cases:
        got, want = _call(fn, text), process_response(text)
        if got != want:
            raise AssertionError(f"process_response({text!r}) should be {want!r}, got {got!r}. Rules: strip; then "
                                 "turn ASCII , ! : ; ? into ，！：；？ only when a character in U+4E00..U+9FFF stands "
                                 "directly before or after it.")
    print("Correct: stripped, and only punctuation touching a CJK character became full-width.")


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
        got = _call(fn, tok, "q", list(history), max_length, 10)
        want = fit_history(tok, "q", history, max_length, 10)
        try:
            kept, dropped = got
            kept = [tuple(t) for t in kept]
        except Exception:  # noqa: BLE001
            raise AssertionError("return a pair (kept_turns, number_dropped)") from None
        if (kept, dropped) != want:
            raise AssertionError(f"max_length={max_length}, 10 tokens kept for the reply: expected to keep "
                                 f"{want[0]} (dropped {want[1]}), got {kept} (dropped {dropped}). Drop the OLDEST "
                                 "turns one at a time until len(prompt ids) + reply_room <= max_length.")
    try:
        fn(tok, "x" * 100, [], 50, 10)
    except ValueError:
        pass
    except (NotImplementedError, AssertionError):
        raise
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"a query that can never fit should raise ValueError, not {type(err).__name__}") from None
    else:
        raise AssertionError("when even the query alone does not fit, raise ValueError (nothing to drop)")
    print("Correct: the oldest turns go first, the newest stay, and an impossible fit is an error.")


def check_whole_chars(fn) -> None:
    """Exercise: ``fn(data: bytes)`` returns the text of the complete UTF-8 characters at the start of
    ``data``, holding back a character whose bytes have not all arrived yet."""
    text = "你好, GLM 😀!"
    data = text.encode("utf-8")
    for cut in range(len(data) + 1):
        want = data[:cut].decode("utf-8", errors="ignore")
        got = _call(fn, data[:cut])
        if got != want:
            raise AssertionError(f"for the first {cut} bytes of {text!r} expected {want!r}, got {got!r}. A UTF-8 "
                                 "character is 1-4 bytes; keep the longest prefix that decodes, never show '\\ufffd'.")
    print("Correct: a character is shown only once all its bytes have arrived.")
