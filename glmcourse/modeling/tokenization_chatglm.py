"""The course tokenizer: byte-level BPE with ChatGLM-6B's special tokens and input layout.

Byte-level BPE maps every byte to a symbol, so any text, including newlines, tabs, runs of spaces
and Chinese, round-trips exactly. The price is that one Chinese character can span several tokens,
so a stream of decoded tokens may stop in the middle of a character (lesson 03 deals with that).
"""
from __future__ import annotations

from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<unk>", "<pad>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>"]
# pre-token pieces: whitespace runs, one Chinese character, digit runs, other letter runs, punctuation runs
PIECES = r"\s+|\p{Han}|\p{N}+|[^\s\p{N}\p{P}\p{S}\p{Han}]+|[\p{P}\p{S}]+"


class ChatGLMTokenizer(PreTrainedTokenizerFast):
    """ChatGLM-6B's tokenizer interface on top of a `tokenizers` BPE model.

    ``encode(text)`` appends ``[gMASK] <sop>``, exactly like ChatGLM-6B, so the model knows where the
    prompt ends and generation starts. Padding is on the left, so a batch of prompts ends together.
    """

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """The course tokenizer (tokenizer.json), or ChatGLM-6B's own (``IceTextTokenizer``) for a folder
        downloaded from THUDM, which holds ice_text.model instead."""
        import os

        from glmcourse.modeling.modeling_chatglm import check_model_folder
        from glmcourse.modeling.tokenization_ice import VOCAB_FILE, IceTextTokenizer

        folder = os.fspath(pretrained_model_name_or_path)
        if (os.path.isfile(os.path.join(folder, VOCAB_FILE))
                and not os.path.isfile(os.path.join(folder, "tokenizer.json"))):
            kwargs.pop("trust_remote_code", None)
            return IceTextTokenizer.from_pretrained(folder, **kwargs)
        check_model_folder(pretrained_model_name_or_path, ("tokenizer.json",), "the tokenizer",
                           required=("tokenizer_config.json",))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As transformers', plus the auto_map shim, so the saved folder loads with trust_remote_code=True."""
        from glmcourse.modeling.shims import add_tokenizer_auto_map, write_shims

        result = super().save_pretrained(save_directory, *args, **kwargs)
        add_tokenizer_auto_map(save_directory)
        write_shims(save_directory)
        return result

    # ids are read from the vocabulary, never hard-coded (old ChatGLM checkpoints shifted them by 20000)
    @property
    def gmask_token_id(self) -> int:
        return self.convert_tokens_to_ids("[gMASK]")

    @property
    def mask_token_id(self) -> int:  # noqa: D401 - mirrors the transformers attribute
        return self.convert_tokens_to_ids("[MASK]")

    @property
    def smask_token_id(self) -> int:
        return self.convert_tokens_to_ids("[sMASK]")

    @property
    def sop_token_id(self) -> int:
        return self.convert_tokens_to_ids("<sop>")

    @property
    def eop_token_id(self) -> int:
        return self.convert_tokens_to_ids("<eop>")

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        """``a + [gMASK, <sop>]``, then ``b + [<eop>]`` when a second sequence is given."""
        ids = list(token_ids_0) + [self.gmask_token_id, self.sop_token_id]
        if token_ids_1 is not None:
            ids += list(token_ids_1) + [self.eop_token_id]
        return ids


def train_tokenizer(texts, vocab_size: int = 4096):
    """Train the byte-level BPE on ``texts`` and return a ChatGLMTokenizer (deterministic)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    # Words never carry a leading space, and each Chinese character stands alone, so a name, a city or a
    # number is the same tokens wherever it appears: in a sentence, after a quote, inside JSON. That is
    # what lets the model copy text from its prompt token for token.
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PIECES), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    ids = {tok: backend.token_to_id(tok) for tok in SPECIAL_TOKENS}
    backend.post_processor = processors.TemplateProcessing(
        single="$A [gMASK] <sop>",
        pair="$A [gMASK] <sop> $B:1 <eop>:1",
        special_tokens=[(t, ids[t]) for t in ("[gMASK]", "<sop>", "<eop>")],
    )
    return ChatGLMTokenizer(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="[MASK]",
        bos_token="<sop>",
        eos_token="<eop>",
        additional_special_tokens=["[gMASK]", "[sMASK]"],
        padding_side="left",
        # User text never becomes a control token: a literal "[gMASK]" or "<sop>" in a query or an Alpaca
        # record is spelled as ordinary text (the tokenizer still appends [gMASK] <sop> itself). Saved in
        # tokenizer_config.json; lesson 01 opts in per call with tokenizer(text, split_special_tokens=False).
        split_special_tokens=True,
        clean_up_tokenization_spaces=False,
    )
