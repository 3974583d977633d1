"""Write a small checkpoint folder in THUDM's ChatGLM-6B format, from the course model.

    python -m glmcourse.thudm_format --out DIR [--layers N] [--base_vocab N] [--seed S]
                                     [--num_image_tokens {0,20000}] [--quantization_bit {4,8}]

The folder has the file names and the layout of THUDM/chatglm-6b as published, so every step of the
course can be tried on "the real thing" offline, and THUDM's own code can read it too:

* ``config.json`` with THUDM's key set, ``auto_map`` included, and ``torch_dtype`` float16;
* fp16 ``pytorch_model-0000N-of-0000M.bin`` shards and ``pytorch_model.bin.index.json``, holding the
  ``rotary_emb.inv_freq`` buffers and a separate copy of ``lm_head.weight``, as THUDM's do;
* ``ice_text.model``: a SentencePiece model trained here on the course data (deterministic), in ChatGLM-6B's
  piece layout (text pieces, the 8 control tokens, ``<|tab|>`` and ``<|blank_2|>``..``<|blank_80|>``,
  then 256 byte pieces), and ``tokenizer_config.json`` with ``num_image_tokens``;
* THUDM's four ``.py`` file names, each of which raises when imported: the course never runs a
  folder's code, and these prove it.

The weights are the course model's (its first ``--layers`` blocks). Its vocabulary is not the ice
tokenizer's, so each ice piece's embedding starts as the mean of the course-token embeddings of the
piece's text: the folder's model is small and says little, but every number in it is the course's.
"""
from __future__ import annotations

import argparse
import struct
from pathlib import Path

from glmcourse.i18n import _

THUDM_PY_FILES = ("configuration_chatglm.py", "modeling_chatglm.py", "tokenization_chatglm.py", "quantization.py")
AUTO_MAP = {
    "AutoConfig": "configuration_chatglm.ChatGLMConfig",
    "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
}
TOKENIZER_AUTO_MAP = {"AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]}
RAISING_PY = ('raise ImportError("{name} of a glmcourse test folder was imported: the course loads this folder with '
              'its own classes and must never run its .py files.")\n')


# ----------------------------------------------------------------------------- ice_text.model
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _piece_record(piece: str, kind: int) -> bytes:
    """One ``ModelProto.pieces`` entry (protobuf field 1): piece string, score 0.0, type."""
    text = piece.encode("utf-8")
    body = b"\x0a" + _varint(len(text)) + text + b"\x15" + struct.pack("<f", 0.0) + b"\x18" + _varint(kind)
    return b"\x0a" + _varint(len(body)) + body


CONTROL, USER_DEFINED, BYTE = 3, 4, 6  # SentencePiece piece types


def chatglm_piece_layout(base_model: bytes) -> bytes:
    """Append ChatGLM-6B's pieces to a trained SentencePiece model, in its order, and switch on byte fallback.

    A protobuf repeated field may continue anywhere in the message, so appending encoded pieces adds
    them after the trained ones; a second ``trainer_spec`` (field 2) with only ``byte_fallback`` (field 35)
    is merged into the first.
    """
    from glmcourse.modeling.tokenization_ice import CONTROL_TOKENS, WHITESPACE_TOKENS

    extra = b"".join(_piece_record(t, CONTROL) for t in CONTROL_TOKENS)
    extra += b"".join(_piece_record(t, USER_DEFINED) for t in WHITESPACE_TOKENS)
    extra += b"".join(_piece_record(f"<0x{i:02X}>", BYTE) for i in range(256))
    byte_fallback = _varint(35 << 3) + _varint(1)
    extra += b"\x12" + _varint(len(byte_fallback)) + byte_fallback
    return base_model + extra


def train_ice_model(texts, base_vocab: int = 1000, seed: int = 0) -> bytes:
    """A SentencePiece unigram model of ``base_vocab`` text pieces (``<unk> <s> </s> <pad> <n>`` first),
    trained on ``texts``, in ChatGLM-6B's layout. Deterministic: one thread, no sampling, fixed seed."""
    import io

    import sentencepiece as spm

    from glmcourse.modeling.tokenization_ice import encode_whitespace

    spm.set_random_generator_seed(seed)
    lines = [line for text in texts for line in encode_whitespace(text).split("<n>") if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=base_vocab, model_type="unigram",
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, user_defined_symbols=["<n>"], character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2,
        max_sentence_length=1 << 16,
    )
    return chatglm_piece_layout(model.getvalue())


# ----------------------------------------------------------------------------- weights
def thudm_state_dict(model, course_tokenizer, ice, layers: int, vocab_size: int, num_image_tokens: int = 0) -> dict:
    """The course model's weights under THUDM's names, for an ice vocabulary of ``vocab_size`` rows (fp16).

    Row ``id`` of the new embedding is the mean course embedding of the text of piece ``id``; control
    tokens take their course namesakes; rows past the pieces (THUDM pads its vocabulary) are zero.
    """
    import torch

    from glmcourse.modeling.modeling_chatglm import rotary_inv_freq
    from glmcourse.modeling.tokenization_ice import decode_whitespace

    source = model.state_dict()
    old = source["transformer.word_embeddings.weight"].float()
    new = torch.zeros(vocab_size, old.shape[1])
    course_vocab = course_tokenizer.get_vocab()
    mean = old.mean(0)
    for piece_id in range(ice.GetPieceSize()):
        piece = ice.IdToPiece(piece_id)
        if piece in course_vocab:  # [gMASK], <sop>, <eop>, <pad>, <unk>, [MASK], [sMASK]
            rows = [course_vocab[piece]]
        elif ice.IsByte(piece_id) or ice.IsControl(piece_id) or ice.IsUnknown(piece_id):
            rows = []
        else:
            text = decode_whitespace(piece.replace("\u2581", " "))
            rows = course_tokenizer.encode(text, add_special_tokens=False)
        new[piece_id + num_image_tokens] = old[rows].mean(0) if rows else mean
    state = {"transformer.word_embeddings.weight": new}
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    inv_freq = rotary_inv_freq(head_dim // 2).half()
    for i in range(layers):
        prefix = f"transformer.layers.{i}."
        for name, tensor in source.items():
            if name.startswith(prefix):
                state[name] = tensor
            if name == prefix + "attention.query_key_value.weight":
                state[prefix + "attention.rotary_emb.inv_freq"] = inv_freq.clone()
    for name in ("weight", "bias"):
        state[f"transformer.final_layernorm.{name}"] = source[f"transformer.final_layernorm.{name}"]
    state["lm_head.weight"] = new.clone()  # THUDM stores the tied head as its own tensor
    return {name: tensor.detach().to(torch.float16).contiguous() for name, tensor in state.items()}


def shard(state: dict, shards: int) -> list[dict]:
    """Split a state dict into ``shards`` parts of about equal size, keeping the tensors' order."""
    total = sum(t.numel() * t.element_size() for t in state.values())
    parts, current, size = [], {}, 0
    for name, tensor in state.items():
        current[name] = tensor
        size += tensor.numel() * tensor.element_size()
        if size >= total * (len(parts) + 1) / shards and len(parts) < shards - 1:
            parts.append(current)
            current = {}
    parts.append(current)
    return [p for p in parts if p]


# ----------------------------------------------------------------------------- the folder
def thudm_config(course_config, layers: int, vocab_size: int, ids: dict) -> dict:
    """THUDM/chatglm-6b's config.json key set, with this folder's sizes and ids."""
    return {
        "_name_or_path": "THUDM/chatglm-6b",
        "architectures": ["ChatGLMModel"],
        "auto_map": dict(AUTO_MAP),
        "bos_token_id": ids["<sop>"],
        "eos_token_id": ids["<eop>"],
        "mask_token_id": ids["[MASK]"],
        "gmask_token_id": ids["[gMASK]"],
        "pad_token_id": ids["<pad>"],
        "hidden_size": course_config.hidden_size,
        "inner_hidden_size": course_config.inner_hidden_size,
        "layernorm_epsilon": course_config.layernorm_epsilon,
        "max_sequence_length": course_config.max_sequence_length,
        "model_type": "chatglm",
        "num_attention_heads": course_config.num_attention_heads,
        "num_layers": layers,
        "position_encoding_2d": True,
        "torch_dtype": "float16",
        "transformers_version": "4.27.1",
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def tokenizer_config(num_image_tokens: int) -> dict:
    """THUDM/chatglm-6b's tokenizer_config.json."""
    return {
        "name_or_path": "THUDM/chatglm-6b",
        "bos_token": "<sop>",
        "eos_token": "<eop>",
        "end_token": "</s>",
        "gmask_token": "[gMASK]",
        "mask_token": "[MASK]",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "remove_space": False,
        "do_lower_case": False,
        "tokenizer_class": "ChatGLMTokenizer",
        "num_image_tokens": num_image_tokens,
        "auto_map": dict(TOKENIZER_AUTO_MAP),
    }


def write_thudm_folder(out, layers: int = 4, base_vocab: int = 1000, seed: int = 0, num_image_tokens: int = 0,
                       shards: int = 2, quantization_bit: int | None = None, overwrite: bool = False,
                       model_path=None) -> Path:
    """Write the folder (see the module docstring) and return its path."""
    import json
    import os
    import shutil
    import tempfile

    import torch

    import glmcourse
    from glmcourse.files import check_replaceable, write_marker
    from glmcourse.loading import load_course_model
    from glmcourse.modeling.tokenization_ice import load_sentencepiece
    from glmcourse.course_data import base_training_texts

    out = Path(out)
    check_replaceable(out, overwrite, flag="--out")
    from glmcourse.quant import thudm_quantized_state_dict as convert
    torch.manual_seed(seed)
    model, course_tokenizer = load_course_model(model_path or glmcourse.COURSE_MODEL)
    if not 1 <= layers <= model.config.num_layers:
        raise ValueError(_("--layers {layers}: choose 1 to {most} (the course model's blocks).", layers=layers,
                           most=model.config.num_layers))
    ice_bytes = train_ice_model(base_training_texts(), base_vocab=base_vocab, seed=seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # same file system: the rename is atomic
    try:
        (tmp / "ice_text.model").write_bytes(ice_bytes)
        ice = load_sentencepiece(tmp / "ice_text.model")
        pieces = ice.GetPieceSize() + num_image_tokens
        vocab_size = -(-pieces // 128) * 128  # THUDM pads the vocabulary too (130344 pieces, 130528 rows)
        ids = {t: ice.PieceToId(t) + num_image_tokens for t in ("<sop>", "<eop>", "[MASK]", "[gMASK]")}
        ids["<pad>"] = ice.PieceToId("<pad>") + num_image_tokens
        state = thudm_state_dict(model, course_tokenizer, ice, layers, vocab_size, num_image_tokens)
        config = thudm_config(model.config, layers, vocab_size, ids)
        if quantization_bit is not None:  # THUDM's int8/int4 layout, from the same fp16 weights
            from glmcourse.modeling import ChatGLMConfig, ChatGLMForConditionalGeneration

            fp16 = ChatGLMForConditionalGeneration(ChatGLMConfig(**{k: v for k, v in config.items() if k not in (
                "_name_or_path", "architectures", "auto_map", "torch_dtype", "transformers_version")}))
            fp16.load_state_dict({k: v.float() for k, v in state.items() if "inv_freq" not in k})
            buffers = {k: v for k, v in state.items() if k.endswith("rotary_emb.inv_freq")}
            state = {**convert(fp16.eval(), quantization_bit), **buffers}  # THUDM's int4/int8 folders store them too
            config["quantization_bit"] = quantization_bit
        parts = shard(state, shards)
        weight_map, total = {}, 0
        for i, part in enumerate(parts, 1):
            name = f"pytorch_model-{i:05d}-of-{len(parts):05d}.bin"
            torch.save(part, tmp / name)
            weight_map.update({key: name for key in part})
            total += sum(t.numel() * t.element_size() for t in part.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        dump = lambda obj: json.dumps(obj, indent=2, ensure_ascii=False) + "\n"  # noqa: E731
        (tmp / "pytorch_model.bin.index.json").write_text(dump(index), encoding="utf-8")
        (tmp / "config.json").write_text(dump(config), encoding="utf-8")
        (tmp / "tokenizer_config.json").write_text(dump(tokenizer_config(num_image_tokens)), encoding="utf-8")
        for name in THUDM_PY_FILES:
            (tmp / name).write_text(RAISING_PY.format(name=name), encoding="utf-8")
        write_marker(tmp, "glmcourse.thudm_format")
        for path in tmp.iterdir():
            path.chmod(0o644)
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def build_parser() -> argparse.ArgumentParser:
    from glmcourse.cli import OUTPUT_DIR, CourseParser, int_arg, seed_arg

    parser = CourseParser(prog="python -m glmcourse.thudm_format",
                          description=_("Write a small checkpoint folder in THUDM's ChatGLM-6B format, from the course "
                                        "model."))
    parser.add_argument("--out", required=True, kind=OUTPUT_DIR, overwrite_flag="--overwrite_output_dir",
                        help=_("the folder to write (refused if it holds files not written by this command, unless "
                               "--overwrite_output_dir)"))
    parser.add_argument("--layers", type=int_arg("--layers", 1, 4, example=4), default=4,
                        help=_("how many of the course model's blocks to keep (1-4)"))
    parser.add_argument("--base_vocab", type=int_arg("--base_vocab", 100, 20000, example=1000), default=1000,
                        help=_("text pieces of ice_text.model (before the 344 ChatGLM-6B pieces)"))
    parser.add_argument("--num_image_tokens", type=int_arg("--num_image_tokens", 0, 20000, example=0),
                        choices=(0, 20000), default=0,
                        help=_("0 as ChatGLM-6B v1.1; 20000 as checkpoints before 2023-04-06 (all ids 20000 higher)"))
    parser.add_argument("--shards", type=int_arg("--shards", 1, 16, example=2), default=2,
                        help=_("number of pytorch_model-*.bin shards"))
    parser.add_argument("--quantization_bit", type=int_arg("--quantization_bit", 4, 8, example=4), choices=(4, 8),
                        default=None,
                        help=_("store THUDM's quantized layout (as chatglm-6b-int4/int8)"))
    parser.add_argument("--seed", type=seed_arg(), default=0,
                        help=_("seed for SentencePiece's trainer (default 0); the trainer samples nothing on the "
                               "course data and the weights are the course model's, so every seed writes the same "
                               "folder: vary --base_vocab, --layers or --shards for another one"))
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help=_("replace --out even if it holds files this command did not write"))
    return parser


def main(argv=None) -> int:
    from glmcourse.cli import GuardExit, UsageError, run_cli

    try:
        args = build_parser().parse_args(argv)  # the shared guard: one line and exit 2 on a bad flag
    except GuardExit as stop:
        return stop.code

    def body():
        try:
            out = write_thudm_folder(args.out, layers=args.layers, base_vocab=args.base_vocab, seed=args.seed,
                                     num_image_tokens=args.num_image_tokens, shards=args.shards,
                                     quantization_bit=args.quantization_bit, overwrite=args.overwrite_output_dir)
        except ValueError as err:
            raise UsageError(str(err)) from None
        print(_("wrote {out} (ChatGLM-6B format; load it with AutoModel/AutoTokenizer.from_pretrained after "
                "`import glmcourse`)", out=out))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
