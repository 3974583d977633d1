"""Lesson 03: talking to a ChatGLM model (prompt format, history, sampling, streaming).

ChatGLM-6B's ``model.chat`` is a thin layer over ``generate``. This module is that layer, written out:

* ``build_prompt`` turns a query and the past turns into the single string the model reads;
* ``fit_history`` drops the oldest turns until the prompt leaves room for the reply;
* ``chat`` encodes, generates, decodes only the new ids and tidies the text (``process_response``);
* ``stream_chat`` does the same while the tokens arrive, and never shows half a character;
* ``chat_widget`` is the notebook's chat box (ipywidgets) over them.

The course model's ``model.chat(tokenizer, query, history)`` and ``model.stream_chat(...)`` call
``chat`` and ``stream_chat`` here, so everything below also runs on a PEFT-wrapped model.
"""
from __future__ import annotations

import queue
import re
import threading
import warnings
from typing import Iterator

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from glmcourse.i18n import _

REPLACEMENT_CHAR = "\ufffd"  # what a byte-level decoder shows for an incomplete UTF-8 sequence
REPLY_ROOM = 256  # tokens kept free for the reply when trimming history (unless max_new_tokens says)


class QueryTooLong(ValueError):
    """Even the query alone does not fit max_length (the demos turn it into their own one-line note)."""


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
    example = "[('你好', '你好！有什么可以帮你？')]"
    if isinstance(history, (str, bytes, dict)) or not hasattr(history, "__iter__"):
        raise TypeError(_("history must be a list of (query, response) pairs, e.g. {example}; got {kind}.",
                          example=example, kind=type(history).__name__))
    turns = []
    for i, turn in enumerate(history):
        ok = isinstance(turn, (tuple, list)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)
        if not ok:
            raise TypeError(_("history must be a list of (query, response) pairs, e.g. {example}; history[{i}] is "
                              "{turn!r} ({kind}). Pass the history that chat() returned, or build it from 2-tuples "
                              "of strings.", example=example, i=i, turn=turn, kind=type(turn).__name__))
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
        raise ValueError(_("max_length={max_length} leaves no room for a prompt after reserving "
                           "{reply_room} tokens for the reply; raise max_length or lower max_new_tokens.",
                           max_length=max_length, reply_room=reply_room))
    dropped = 0
    while count_prompt_tokens(tokenizer, query, turns[dropped:]) + reply_room > max_length:
        if dropped == len(turns):
            n = count_prompt_tokens(tokenizer, query)
            raise QueryTooLong(_("the query alone is {n} tokens; with {reply_room} kept for the reply it does "
                                 "not fit max_length={max_length}. Shorten the query or raise max_length.",
                                 n=n, reply_room=reply_room, max_length=max_length))
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
        warnings.warn(_("chat: the model is fp16 on the CPU, which cannot run half-precision matmuls; "
                        "casting it to fp32 (use .half() only on a GPU)."), stacklevel=3)
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
        raise ValueError(_("the encoded prompt must end in [gMASK] <sop> (ids {gmask}, {sop}) but ends in "
                           "{ends}; load the ChatGLM tokenizer that belongs to this model.", gmask=gmask, sop=sop,
                           ends=ids[-2:]))
    device = _model_device(model)
    return {k: v.to(device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}


def _generation_kwargs(tokenizer, prompt_len: int, max_length: int, num_beams: int, do_sample: bool,
                       top_p: float, temperature: float, logits_processor, kwargs: dict) -> dict:
    eop = _special_id(tokenizer, "eop_token_id", "eos_token_id")
    processors = LogitsProcessorList(logits_processor or [])
    processors.append(InvalidScoreLogitsProcessor(eop))
    room = max_length - prompt_len
    max_new = kwargs.pop("max_new_tokens", None)
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1):
        raise ValueError(_("max_new_tokens={value!r}: pass a whole number of at least 1 (or leave it out).",
                           value=max_new))
    if not 0 < top_p <= 1:
        raise ValueError(_("top_p={value!r}: pass a number in (0, 1], e.g. 0.7.", value=top_p))
    if not 0 < temperature < float("inf"):
        raise ValueError(_("temperature={value!r}: pass a positive number, e.g. 0.95.", value=temperature))
    max_new = min(max_new or room, room)
    gen = dict(max_new_tokens=max_new, num_beams=num_beams, do_sample=do_sample,
               logits_processor=processors, eos_token_id=eop, pad_token_id=tokenizer.pad_token_id)
    if do_sample:  # top_p / temperature mean nothing for greedy search (transformers warns about them)
        gen.update(top_p=top_p, temperature=temperature)
    gen.update(kwargs)
    return gen


def _prepare(model, tokenizer, query, history, max_length, kwargs):
    """Shared by chat and stream_chat: validate, trim, encode. Returns (turns, inputs, max_length)."""
    if not isinstance(query, str):
        raise TypeError(_("query must be a str, got {kind}.", kind=type(query).__name__))
    turns = validate_history(history)
    ensure_cpu_float(model)
    limit = getattr(getattr(model, "config", None), "max_sequence_length", None)
    if isinstance(limit, int) and limit < max_length:
        max_length = limit  # the model was never trained on longer sequences
    room = min(kwargs.get("max_new_tokens") or REPLY_ROOM, max(1, max_length // 4))
    kept, dropped = fit_history(tokenizer, query, turns, max_length, room)
    if dropped:
        warnings.warn(_("chat: dropped the {dropped} oldest of {turns} turns so the prompt fits "
                        "max_length={max_length} with {room} tokens left for the reply.",
                        dropped=dropped, turns=len(turns), max_length=max_length, room=room),
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
        raise ValueError(_("stream_chat samples or decodes greedily one token at a time; num_beams must be 1 "
                           "(use chat() for beam search)."))
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
    submit = widgets.Button(description=_("Submit"), button_style="primary")
    clear = widgets.Button(description=_("Clear History"))
    sliders = {
        "max_length": widgets.IntSlider(value=max_length, min=16, max=4096, step=1, description=_("Maximum length")),
        "top_p": widgets.FloatSlider(value=top_p, min=0.01, max=1.0, step=0.01, description=_("Top P")),
        "temperature": widgets.FloatSlider(value=temperature, min=0.01, max=1.5, step=0.01,
                                           description=_("Temperature")),
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
            for _reply, turns in stream_chat(model, tokenizer, query, box.history, **options):
                show(turns)
            box.history = turns
        except Exception as err:  # shown in the chat box instead of a log the learner never opens
            with transcript:
                display(Markdown(_("**error:** `{error}: {message}`", error=type(err).__name__, message=err)))
        finally:
            submit.disabled = False

    def on_clear(_button=None):
        box.history = []
        show([])

    submit.on_click(on_submit)
    clear.on_click(on_clear)
    show([])
    return box
