"""ChatGLM-6B's own tokenizer (``ice_text.model``), on the ``sentencepiece`` package.

A folder downloaded from THUDM/chatglm-6b carries a SentencePiece model, ``ice_text.model``, instead of
the course's ``tokenizer.json``. Its pieces come in a fixed layout: the text pieces (``<unk>`` 0,
``<s>`` 1, ``</s>`` 2, ``<pad>`` 3, ``<n>`` 4, ...), then 8 control tokens ``[MASK] [gMASK] [sMASK]
<unused_0> <sop> <eop> <ENC> <dBLOCK>``, then ``<|tab|>`` and ``<|blank_2|>`` ... ``<|blank_80|>``,
then 256 byte pieces ``<0x00>`` ... ``<0xFF>`` for byte fallback.

Before SentencePiece sees a text, ChatGLM-6B rewrites its whitespace: every ``\\n`` becomes ``<n>``,
every tab ``<|tab|>``, and every run of 2 to 80 spaces one ``<|blank_N|>`` (longest runs first, so 85
spaces are ``<|blank_80|>`` then ``<|blank_5|>``). Decoding undoes each rewrite. A character missing
from the vocabulary is spelled as its UTF-8 bytes.

Checkpoints published before 2023-04-06 put 20,000 image tokens in front of the text pieces, so all
their ids are 20,000 higher: ``num_image_tokens`` in ``tokenizer_config.json`` says which (0 for v1.1).
The ids of ``[gMASK]``, ``<sop>`` and ``<eop>`` are therefore always read from the vocabulary.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import PreTrainedTokenizer

from glmcourse.i18n import _

VOCAB_FILE = "ice_text.model"
CONTROL_TOKENS = ["[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>"]
MAX_BLANK = 80
TAB = "<|tab|>"
NEWLINE = "<n>"


def blank_token(n: int) -> str:
    """The piece for a run of ``n`` spaces (2 <= n <= 80)."""
    return f"<|blank_{n}|>"


WHITESPACE_TOKENS = [TAB] + [blank_token(n) for n in range(2, MAX_BLANK + 1)]


def encode_whitespace(text: str) -> str:
    """ChatGLM-6B's rewrite before SentencePiece: newline, tab, then space runs, longest first."""
    text = text.replace("\n", NEWLINE).replace("\t", TAB)
    for n in range(MAX_BLANK, 1, -1):
        text = text.replace(" " * n, blank_token(n))
    return text


def decode_whitespace(text: str) -> str:
    """Undo ``encode_whitespace`` (shortest blank first, as ChatGLM-6B does)."""
    text = text.replace(NEWLINE, "\n").replace(TAB, "\t")
    for n in range(2, MAX_BLANK + 1):
        text = text.replace(blank_token(n), " " * n)
    return text


class IceTokenizerError(ValueError):
    """ice_text.model is missing, not a SentencePiece model, or lacks ChatGLM-6B's pieces (names the file and the fix)."""


def load_sentencepiece(path):
    """A SentencePieceProcessor for ``path``, or an IceTokenizerError naming the file and the fix."""
    import sentencepiece as spm

    path = Path(path)
    fix = _("copy ice_text.model again from the checkpoint folder you downloaded (or write a small one with "
            "`python -m glmcourse.thudm_format --out DIR`)")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise IceTokenizerError(_("{path}: cannot be read ({reason}); {fix}.", path=path, reason=err.strerror or err,
                                  fix=fix)) from None
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(raw)
    except Exception:  # sentencepiece raises a RuntimeError or OSError with a C++ message
        raise IceTokenizerError(_("{path}: not a SentencePiece model ({n} bytes that do not parse as one); "
                                  "{fix}.", path=path, n=len(raw), fix=fix)) from None
    missing = [t for t in CONTROL_TOKENS[:6] + [NEWLINE, TAB] if processor.PieceToId(t) == processor.unk_id()]
    if missing:
        raise IceTokenizerError(_("{path}: a SentencePiece model, but not ChatGLM-6B's (it lacks {missing}); "
                                  "{fix}.", path=path, missing=", ".join(missing), fix=fix))
    return processor


class IceTextTokenizer(PreTrainedTokenizer):
    """ChatGLM-6B's tokenizer for ``ice_text.model``: THUDM's ids and decodes, on today's transformers.

    ``encode(text)`` gives the text's pieces, then ``[gMASK] <sop>``; ``encode(a, b)`` adds ``b`` and
    ``<eop>``. Batches are padded on the left with ``<pad>``. ``decode`` drops ``<pad>``, turns the
    pieces back into text, undoes the whitespace rewrite, and (like THUDM's tokenizer under
    transformers 4.33, ``clean_up_tokenization_spaces=True``) removes the space before ``. , ! ?`` and
    English contractions.

    One deliberate difference from THUDM's class: special-token strings typed by a user (``<sop>``,
    ``[gMASK]``, ``<eop>``, ``<pad>`` ...) stay text, as everywhere in the course. THUDM's class turns a
    typed ``<sop>`` into the real control token, so a query could end the prompt early. The whitespace
    pieces ``<n>``, ``<|tab|>`` and ``<|blank_N|>`` are ordinary vocabulary, so a typed ``<n>`` is still a
    newline, exactly as in THUDM's tokenizer.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"

    def __init__(self, vocab_file, num_image_tokens: int = 0, bos_token="<sop>", eos_token="<eop>",
                 end_token="</s>", mask_token="[MASK]", gmask_token="[gMASK]", pad_token="<pad>", unk_token="<unk>",
                 padding_side="left", do_lower_case=False, remove_space=False, **kwargs):
        if isinstance(num_image_tokens, bool) or not isinstance(num_image_tokens, int) or num_image_tokens < 0:
            raise IceTokenizerError(_("num_image_tokens must be 0 (ChatGLM-6B v1.1) or 20000 (older checkpoints), "
                                      "got {value!r}; fix tokenizer_config.json.", value=num_image_tokens))
        self.vocab_file = str(vocab_file)
        self.sp = load_sentencepiece(vocab_file)  # before super().__init__, which looks up the special tokens
        self.num_image_tokens = num_image_tokens
        self.end_token = end_token
        self.gmask_token = gmask_token
        self.do_lower_case = bool(do_lower_case)
        self.remove_space = bool(remove_space)
        for name in ("tokenizer_class", "auto_map", "name_or_path", "eop_token"):
            kwargs.pop(name, None)  # THUDM's config keys that describe its own class, not ours
        kwargs.setdefault("clean_up_tokenization_spaces", True)
        kwargs["split_special_tokens"] = True  # user text never becomes a control token
        super().__init__(bos_token=bos_token, eos_token=eos_token, mask_token=mask_token, pad_token=pad_token,
                         unk_token=unk_token, padding_side=padding_side, num_image_tokens=num_image_tokens,
                         do_lower_case=do_lower_case, remove_space=remove_space, end_token=end_token,
                         gmask_token=gmask_token, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Read ``num_image_tokens`` and the special tokens from the folder's tokenizer_config.json."""
        folder = Path(pretrained_model_name_or_path)
        vocab = folder / VOCAB_FILE
        if not vocab.is_file():
            raise IceTokenizerError(_("{folder}: no {file}; copy the complete checkpoint folder again.", folder=folder,
                                      file=VOCAB_FILE))
        settings = {}
        config_path = folder / "tokenizer_config.json"
        if config_path.is_file():
            settings = read_tokenizer_config(config_path)
            if not isinstance(settings, dict):
                raise IceTokenizerError(_("{path}: must be a JSON object; copy the checkpoint folder again.",
                                          path=config_path))
        keep = ("num_image_tokens", "bos_token", "eos_token", "end_token", "mask_token", "gmask_token", "pad_token",
                "unk_token", "do_lower_case", "remove_space", "clean_up_tokenization_spaces")
        options = {k: settings[k] for k in keep if k in settings and isinstance(settings[k], (str, int, bool))}
        options.update({k: v for k, v in kwargs.items() if k in keep or k == "padding_side"})
        tokenizer = cls(str(vocab), **options)
        tokenizer.name_or_path = str(pretrained_model_name_or_path)
        return tokenizer

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return self.num_image_tokens + self.sp.GetPieceSize()

    def get_vocab(self) -> dict:
        vocab = {self.sp.IdToPiece(i): i + self.num_image_tokens for i in range(self.sp.GetPieceSize())}
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _convert_token_to_id(self, token: str) -> int:
        return self.sp.PieceToId(token) + self.num_image_tokens

    def _convert_id_to_token(self, index: int) -> str:
        if index < self.num_image_tokens:
            return f"<image_{index}>"
        return self.sp.IdToPiece(index - self.num_image_tokens)

    @property
    def gmask_token_id(self) -> int:
        return self._convert_token_to_id("[gMASK]")

    @property
    def smask_token_id(self) -> int:
        return self._convert_token_to_id("[sMASK]")

    @property
    def sop_token_id(self) -> int:
        return self._convert_token_to_id("<sop>")

    @property
    def eop_token_id(self) -> int:
        return self._convert_token_to_id("<eop>")

    # ------------------------------------------------------------------ text <-> pieces
    def _tokenize(self, text: str, **kwargs) -> list[str]:
        if self.remove_space:
            text = " ".join(text.strip().split())
        if self.do_lower_case:
            text = text.lower()
        return self.sp.EncodeAsPieces(encode_whitespace(text))

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        # an id below num_image_tokens has no text: "<image_N>" is not a piece and would decode as " ⁇ "
        return decode_whitespace(self.sp.DecodePieces([t for t in tokens if not t.startswith("<image_")]))

    def _decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None, **kwargs) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        token_ids = [int(i) for i in token_ids if int(i) != self.pad_token_id]
        if not token_ids:
            return ""
        return super()._decode(token_ids, skip_special_tokens=skip_special_tokens,
                               clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        """``a + [gMASK, <sop>]``, then ``b + [<eop>]`` when a second sequence is given (as ChatGLM-6B v1.1)."""
        ids = list(token_ids_0) + [self.gmask_token_id, self.sop_token_id]
        if token_ids_1 is not None:
            ids += list(token_ids_1) + [self.eop_token_id]
        return ids

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            specials = set(self.all_special_ids) | {self.gmask_token_id, self.sop_token_id, self.eop_token_id}
            return [1 if i in specials else 0 for i in token_ids_0]
        mask = [0] * len(token_ids_0) + [1, 1]
        return mask + ([0] * len(token_ids_1) + [1] if token_ids_1 is not None else [])

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None):
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    # ------------------------------------------------------------------ saving
    def save_vocabulary(self, save_directory, filename_prefix=None):
        target = Path(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE)
        if os.path.abspath(self.vocab_file) != os.path.abspath(target):
            target.write_bytes(Path(self.vocab_file).read_bytes())
        return (str(target),)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As transformers', with THUDM's keys kept in tokenizer_config.json (and no auto_map: no code runs)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        path = Path(save_directory, "tokenizer_config.json")
        config = json.loads(path.read_text(encoding="utf-8"))
        config.update(num_image_tokens=self.num_image_tokens, tokenizer_class="ChatGLMTokenizer")
        config.pop("auto_map", None)
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return result


def read_tokenizer_config(path: Path) -> object:
    """``tokenizer_config.json`` parsed, or an IceTokenizerError naming the file, the line and the fix (read here
    rather than through glmcourse.loading, which imports the tokenizers: the model package stays at the bottom)."""
    fix = _("copy the checkpoint folder again")
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as err:
        raise IceTokenizerError(_("{path}: cannot be read ({reason}); {fix}.", path=path, reason=err.strerror or err,
                                  fix=fix)) from None
    except UnicodeDecodeError:
        raise IceTokenizerError(_("{path}: the tokenizer config is not UTF-8 text; {fix}.", path=path,
                                  fix=fix)) from None
    except json.JSONDecodeError as err:
        raise IceTokenizerError(_("{path}: the tokenizer config is damaged, not valid JSON (line {line}, "
                                  "column {column}: {reason}); {fix}.", path=path, line=err.lineno, column=err.colno,
                                  reason=err.msg, fix=fix)) from None
