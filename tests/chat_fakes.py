"""Stand-ins for a ChatGLM tokenizer and model, small enough to reason about by hand.

``ByteTokenizer`` maps every UTF-8 byte to its own id (0..255), exactly like the worst case of a
byte-level BPE: one Chinese character is three ids, so a decoded prefix can end mid-character.
``ScriptedModel.generate`` emits a fixed list of ids, one step at a time, through the same hooks
transformers' generate uses (streamer, stopping criteria, logits processors).
"""
from __future__ import annotations

import time

import torch


class ByteTokenizer:
    mask_token_id, gmask_token_id, smask_token_id = 256, 257, 258
    sop_token_id = bos_token_id = 259
    eop_token_id = eos_token_id = 260
    pad_token_id = 261
    vocab_size = 262

    def encode(self, text, add_special_tokens=True):
        ids = list(text.encode("utf-8"))
        return ids + [self.gmask_token_id, self.sop_token_id] if add_special_tokens else ids

    def __call__(self, texts, return_tensors=None, add_special_tokens=True):
        if isinstance(texts, str):
            return {"input_ids": self.encode(texts, add_special_tokens)}
        rows = [self.encode(t, add_special_tokens) for t in texts]
        assert return_tensors == "pt" and len(rows) == 1
        ids = torch.tensor(rows)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def decode(self, ids, skip_special_tokens=False):
        data = bytes(i for i in ids if i < 256)
        return data.decode("utf-8", errors="replace")


class ScriptedModel(torch.nn.Module):
    """generate() replies with ``script`` (a str, or a list of ids), one id per step."""

    def __init__(self, script, device="cpu", dtype=torch.float32, step_delay=0.0, max_sequence_length=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2, dtype=dtype))
        self.script = list(script.encode("utf-8")) if isinstance(script, str) else list(script)
        self._device = torch.device(device)
        self.step_delay = step_delay
        self.config = type("Config", (), {"max_sequence_length": max_sequence_length})()
        self.calls = []  # the keyword arguments of every generate() call
        self.steps = 0  # how many ids the last call produced

    @property
    def device(self):
        return self._device

    @property
    def dtype(self):
        return self.weight.dtype

    def generate(self, input_ids, attention_mask=None, max_new_tokens=None, streamer=None,
                 stopping_criteria=None, logits_processor=None, **kwargs):
        self.calls.append(dict(input_ids=input_ids, attention_mask=attention_mask,
                               max_new_tokens=max_new_tokens, logits_processor=logits_processor, **kwargs))
        if streamer is not None:
            streamer.put(input_ids.cpu())
        out = input_ids.cpu()
        self.steps = 0
        for token in self.script[:max_new_tokens]:
            time.sleep(self.step_delay)
            out = torch.cat([out, torch.tensor([[token]])], dim=1)
            self.steps += 1
            if streamer is not None:
                streamer.put(torch.tensor([token]))
            if stopping_criteria is not None and any(bool(c(out, None).all()) for c in stopping_criteria):
                break
            if token == kwargs.get("eos_token_id"):
                break
        if streamer is not None:
            streamer.end()
        return out


TINY_TEXTS = ["你好，我是课程模型。有什么可以帮你？", "如何提高弹跳？多练习深蹲和跳绳！",
              "Hello, world! ```python\nprint('hi')\n```", "问：答：[Round 0]\n"] * 10


def tiny_chat_model(seed: int = 0, min_new_tokens: int | None = None):
    """A random-weight ChatGLM (the course architecture, tiny) and a small trained tokenizer.

    It answers gibberish, which is what streaming tests want: random ids often split characters.
    ``min_new_tokens`` makes every answer at least that long (to have time to press Ctrl-C).
    """
    from glmcourse.modeling import ChatGLMForConditionalGeneration, course_config, train_tokenizer

    tok = train_tokenizer(TINY_TEXTS, vocab_size=400)
    config = course_config(
        vocab_size=len(tok), hidden_size=32, num_layers=2, num_attention_heads=4, inner_hidden_size=64,
        pad_token_id=tok.pad_token_id, mask_token_id=tok.mask_token_id, gmask_token_id=tok.gmask_token_id,
        smask_token_id=tok.smask_token_id, bos_token_id=tok.sop_token_id, eos_token_id=tok.eop_token_id)
    torch.manual_seed(seed)
    model = ChatGLMForConditionalGeneration(config).eval()
    if min_new_tokens:
        model.generation_config.min_new_tokens = min_new_tokens
    return tok, model


def save_tiny_chat_model(folder, **kwargs):
    tok, model = tiny_chat_model(**kwargs)
    tok.save_pretrained(folder)
    model.save_pretrained(folder)
    return str(folder)
