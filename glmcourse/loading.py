"""Every loader of the course: the course model, a chat model, a base model for fine-tuning and
the bitsandbytes 8-bit/NF4 variants. Lessons 02, 03, 05 and 06 and the seed commands load through here.

Before anything is loaded, a local folder's files are checked (``check_model_files``): a missing file,
a broken config.json or tokenizer.json, an empty, truncated or foreign ``model.safetensors`` each get
one ``ModelFileError`` line naming the file and the fix, never a library traceback. The folder's own
Python code (``auto_map``) runs only when the caller passes ``trust_remote_code=True`` (the demos'
``--trust_remote_code``): ``import glmcourse`` registers the course model with transformers' Auto*
classes, so the course model needs none.

A ChatGLM-6B folder as THUDM publishes it (sharded fp16 ``pytorch_model-*.bin`` with their index,
``ice_text.model``, THUDM's config keys) loads through the same classes: the shards with
``torch.load(weights_only=True)``, the tokenizer with ``IceTextTokenizer``. Its .py files never run,
even with ``trust_remote_code=True`` (a note says so). Missing shards, a damaged index, an
``ice_text.model`` that is not a SentencePiece model, a config of another architecture, and weights
whose names do not fit the model are each one ModelFileError line.
"""
from __future__ import annotations

import json
import logging
import struct
import warnings
from pathlib import Path

from glmcourse.i18n import _


def _bnb_options() -> str:
    return _("Options: (1) stay on the course's own path, model.quantize(8) or model.quantize(4), which runs "
             "anywhere; (2) use the fp32 model; (3) on a machine with a CUDA GPU, `pip install -U bitsandbytes`.")


class BitsandbytesUnusable(RuntimeError):
    """bitsandbytes cannot be imported or has no working backend; ``reason`` is the message without the options."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def import_bitsandbytes():
    """Import bitsandbytes quietly, or raise a RuntimeError that lists the options (never a bare traceback).

    On CPUs without the optional ``kernels`` package, bitsandbytes logs a warning at import about a
    missing fused 4-bit kernel; it then uses its own CPU kernels, so the course silences that one logger.
    """
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # its torch.compile import trips a torch-internal deprecation
            warnings.filterwarnings("ignore", message=".*torch.jit.script_method", category=DeprecationWarning)
            import bitsandbytes
            import bitsandbytes.functional  # noqa: F401
    except Exception as err:  # ImportError, or a backend that fails to load its library
        fields = {"error_type": type(err).__name__, "error": err}
        raise BitsandbytesUnusable(
            _("bitsandbytes is not usable here ({error_type}: {error}). {options}", options=_bnb_options(), **fields),
            _("bitsandbytes is not usable here ({error_type}: {error})", **fields)) from None
    return bitsandbytes


def _bnb_config(kind: str):
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if kind == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch.float32)
    raise ValueError(_("kind={kind!r}: choose 'int8' (LLM.int8()) or 'nf4' (QLoRA's 4-bit NormalFloat).", kind=kind))


def load_bnb_model(path: str | None = None, kind: str = "int8"):
    """``AutoModel.from_pretrained(path, quantization_config=...)`` with bitsandbytes, on any device.

    ``kind`` is ``"int8"`` (``BitsAndBytesConfig(load_in_8bit=True)``) or ``"nf4"`` (4-bit NormalFloat,
    fp32 compute). Without a usable bitsandbytes backend this raises a RuntimeError listing the
    options (docs/failure-catalog.md#f02-no-bitsandbytes-backend) instead of bitsandbytes' own traceback.
    """
    from transformers import AutoModel

    import glmcourse

    config = _bnb_config(kind)
    import_bitsandbytes()
    # LLM.int8() multiplies in fp16 by design; on the CPU it says so at every call. Known, not a problem.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    path = path or glmcourse.COURSE_MODEL
    check_model_files(path)
    try:
        model = AutoModel.from_pretrained(path, quantization_config=config, trust_remote_code=False)
    except (RuntimeError, ImportError) as err:
        raise RuntimeError(_("bitsandbytes could not load {kind} weights here: {error_type}: {error}. {options}",
                               kind=kind, error_type=type(err).__name__, error=err, options=_bnb_options())) from None
    return model.eval()


class ModelFileError(FileNotFoundError):
    """A model folder lacks a file, or holds a damaged one: the message names the file and the fix.

    A FileNotFoundError (an OSError), so callers that already explain a missing folder explain this too.
    """


def rebuild_hint(sentence: bool = False) -> str:
    """How to repair a model folder: a clause after a semicolon, or (``sentence=True``) a sentence of its own."""
    if sentence:
        return _("Copy the complete model folder again (or, for the course model, restore it with "
                 "`git checkout glmcourse/course_model` or rebuild it with "
                 "`python -m glmcourse.tools.build_course_model`)")
    return _("copy the complete model folder again (or, for the course model, restore it with "
             "`git checkout glmcourse/course_model` or rebuild it with `python -m glmcourse.tools.build_course_model`)")


_SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                       "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def _where(flag) -> str:
    return f"{flag} " if flag else ""


def _file_kind(what: str) -> str:
    """check_json_file's name for a kind of file, as a whole noun phrase in the learner's language."""
    return {"file": _("the file"), "model config": _("the model config"),
            "generation config": _("the generation config"), "tokenizer file": _("the tokenizer file"),
            "tokenizer config": _("the tokenizer config"), "weights index": _("the weights index")}[what]


def check_json_file(path, what: str = "file") -> object:
    """Parse a JSON file of a model folder, or raise ModelFileError naming it, the line and the fix.

    ``what`` is one of ``_file_kind``'s kinds of file ("model config", "tokenizer file", ...)."""
    path = Path(path)
    kind = _file_kind(what)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ModelFileError(_("{path}: cannot be read ({error}); {fix}.", path=path, error=err.strerror or err,
                               fix=rebuild_hint())) from None
    if not raw.strip():
        raise ModelFileError(_("{path}: {what} is empty; {fix}.", path=path, what=kind, fix=rebuild_hint()))
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ModelFileError(_("{path}: {what} is not UTF-8 text (a binary or damaged file); {fix}.", path=path,
                               what=kind, fix=rebuild_hint())) from None
    except json.JSONDecodeError as err:
        raise ModelFileError(_("{path}: {what} is damaged, not valid JSON (line {line}, column {column}: {error}); "
                               "{fix}.", path=path, what=kind, line=err.lineno, column=err.colno, error=err.msg,
                               fix=rebuild_hint())) from None


def check_safetensors(path) -> None:
    """Check a .safetensors file's header and length without loading it (empty, truncated, foreign: a ModelFileError)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(_("{path}: the weights file is empty (0 bytes); {fix}.", path=path, fix=rebuild_hint()))
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ModelFileError(_("{path}: only {size} bytes, too short for a safetensors file (truncated); {fix}.",
                                   path=path, size=size, fix=rebuild_hint()))
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, 100_000_000):
            raise ModelFileError(_("{path}: not a safetensors file, or truncated (its first 8 bytes announce a "
                                   "{header}-byte header in a {size}-byte file); {fix}.", path=path, header=header_len,
                                   size=size, fix=rebuild_hint()))
        try:
            header = json.loads(handle.read(header_len).decode("utf-8"))
            ends = [info["data_offsets"][1] for name, info in header.items() if name != "__metadata__"]
        except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise ModelFileError(_("{path}: not a safetensors file (its header is not safetensors JSON); {fix}.",
                                   path=path, fix=rebuild_hint())) from None
    needed = 8 + header_len + max(ends, default=0)
    if size < needed:
        raise ModelFileError(_("{path}: truncated: {size} bytes where its header needs {needed} (an interrupted "
                               "download or copy); {fix}.", path=path, size=size, needed=needed, fix=rebuild_hint()))


def check_tokenizer_files(path, flag=None) -> None:
    """A local tokenizer folder: at least one tokenizer file, and every JSON one parses."""
    folder = Path(path)
    if not folder.is_dir():
        return  # a hub id, or no folder: the loaders say which
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
    present = [n for n in names[:2] if (folder / n).is_file()] + [n for n in ("tokenizer.model", "ice_text.model")
                                                                   if (folder / n).is_file()]
    if not present:
        raise ModelFileError(_("{where}{folder}: no tokenizer (tokenizer.json or tokenizer_config.json); {fix}.",
                               where=_where(flag), folder=folder, fix=rebuild_hint()))
    for name in names:
        if (folder / name).is_file():
            check_json_file(folder / name, "tokenizer file" if name != "tokenizer_config.json" else "tokenizer config")
    if not (folder / "tokenizer.json").is_file():
        settings = check_json_file(folder / "tokenizer_config.json", "tokenizer config") if (
            folder / "tokenizer_config.json").is_file() else {}
        if (folder / "ice_text.model").is_file():
            from glmcourse.modeling.tokenization_ice import IceTokenizerError, load_sentencepiece

            try:
                load_sentencepiece(folder / "ice_text.model")
            except IceTokenizerError as err:
                raise ModelFileError(str(err)) from None
        elif isinstance(settings, dict) and "num_image_tokens" in settings:
            raise ModelFileError(_("{where}{folder}: tokenizer_config.json is ChatGLM-6B's, but ice_text.model (its "
                                   "SentencePiece model) is missing; copy it from the checkpoint you downloaded.",
                                   where=_where(flag), folder=folder))


# ChatGLM2/3 and GLM-4 also say model_type "chatglm", with other keys: their weights do not fit ChatGLM-6B's blocks.
_LATER_GLM_KEYS = ("padded_vocab_size", "multi_query_attention", "kv_channels", "ffn_hidden_size", "seq_length")


def check_architecture(path, config: dict, flag=None) -> None:
    """A ChatGLM-6B folder's config.json (beside ice_text.model) must describe ChatGLM-6B, and a "chatglm"
    config must not be ChatGLM2/3's, else a ModelFileError naming the file and the fix."""
    kind = config.get("model_type")
    if flag:
        fix = _("point {flag} at a ChatGLM-6B (v1) folder, such as THUDM/chatglm-6b or one written by "
                "the course (`python -m glmcourse.thudm_format --out DIR`)", flag=flag)
    else:
        fix = _("point the path at a ChatGLM-6B (v1) folder, such as THUDM/chatglm-6b or one written by "
                "the course (`python -m glmcourse.thudm_format --out DIR`)")
    if kind != "chatglm":
        if not (Path(path).parent / "ice_text.model").is_file():
            # another architecture transformers knows (GLM-4's GlmForCausalLM trains too), or one that brings its
            # own code (the loader explains trust_remote_code): only a ChatGLM-6B folder must say "chatglm"
            return
        if kind:
            raise ModelFileError(_("{path}: describes a {kind!s} model, not ChatGLM-6B (model_type \"chatglm\"); the "
                                   "course's classes cannot load it: {fix}.", path=path, kind=kind, fix=fix))
        raise ModelFileError(_("{path}: describes a model without a model_type model, not ChatGLM-6B (model_type "
                               "\"chatglm\"); the course's classes cannot load it: {fix}.", path=path, fix=fix))
    later = [k for k in _LATER_GLM_KEYS if k in config]
    if later:
        raise ModelFileError(_("{path}: a ChatGLM2/ChatGLM3/GLM-4 config (it has {keys}), a later architecture than "
                               "ChatGLM-6B's; the course's classes cannot load it: {fix}.", path=path,
                               keys=", ".join(later), fix=fix))


def safetensors_names(path) -> list[str]:
    with open(path, "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_len).decode("utf-8"))
    return [name for name in header if name != "__metadata__"]


def some_names(names: list[str], shown: int) -> str:
    """The first ``shown`` names, comma-separated, and how many more there are: ``a, b, c and 2 more``."""
    first = ", ".join(names[:shown])
    if len(names) > shown:
        return _("{names} and {count} more", names=first, count=len(names) - shown)
    return first


def check_shard_index(folder, index_name: str) -> list[str]:
    """A sharded checkpoint's index parses, names its shards, and every shard is there (a ModelFileError if not)."""
    folder = Path(folder)
    path = folder / index_name
    index = check_json_file(path, "weights index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise ModelFileError(_("{path}: the weights index is damaged (no \"weight_map\" of tensor name -> shard "
                               "file); {fix}.", path=path, fix=rebuild_hint()))
    shards = sorted(set(weight_map.values()))
    missing = [shard for shard in shards if not (folder / shard).is_file()]
    if missing:
        raise ModelFileError(_("{folder}: {missing} of the {total} weight shards that {index} lists are missing "
                               "({shown}); download or copy them into the folder.", folder=folder,
                               missing=len(missing), total=len(shards), index=index_name, shown=some_names(missing, 3)))
    for shard in shards:
        if shard.endswith(".safetensors"):
            check_safetensors(folder / shard)
        elif (folder / shard).stat().st_size == 0:
            raise ModelFileError(_("{path}: the weights file is empty (0 bytes); {fix}.", path=folder / shard,
                                   fix=rebuild_hint()))
    return list(weight_map)


def expected_weight_names(config: dict) -> set[str]:
    """The tensor names a ChatGLM-6B model of this config stores (built on the meta device: no memory)."""
    import torch

    from glmcourse.modeling import ChatGLMConfig, ChatGLMForConditionalGeneration

    fields = {k: v for k, v in config.items() if k not in ("auto_map", "architectures", "_name_or_path",
                                                          "transformers_version", "torch_dtype", "dtype")}
    with torch.device("meta"):
        model = ChatGLMForConditionalGeneration(ChatGLMConfig(**fields))
    return set(model.state_dict())


def check_weight_names(folder, config: dict, names) -> None:
    """The stored tensors must be this model's: a file whose names match nothing (or that lacks some) is an
    error, never a model whose missing weights were silently initialised at random."""
    if config.get("quantization_bit"):
        return  # a quantized layout stores other names for the quantized layers (glmcourse.quant reads those)
    stored = set(names)
    try:
        expected = expected_weight_names(config)
    except (TypeError, ValueError) as err:
        raise ModelFileError(_("{path}: not a usable ChatGLM-6B config ({error}); {fix}.",
                               path=Path(folder) / "config.json", error=err, fix=rebuild_hint())) from None
    optional = {n for n in expected if "prefix_encoder" in n.split(".") or n == "lm_head.weight"}
    matched = stored & expected
    if not matched and stored:
        raise ModelFileError(_("{folder}: none of its {count} stored tensors is a ChatGLM-6B weight (it has "
                               "{example}; ChatGLM-6B's are transformer.word_embeddings.weight, "
                               "transformer.layers.N...); it is not a ChatGLM-6B checkpoint, or its config.json "
                               "belongs to another one. {fix}.", folder=folder, count=len(stored),
                               example=", ".join(sorted(stored)[:2]), fix=rebuild_hint(sentence=True)))
    if not matched:
        raise ModelFileError(_("{folder}: none of its 0 stored tensors is a ChatGLM-6B weight (it has none; "
                               "ChatGLM-6B's are transformer.word_embeddings.weight, transformer.layers.N...); it is "
                               "not a ChatGLM-6B checkpoint, or its config.json belongs to another one. {fix}.",
                               folder=folder, fix=rebuild_hint(sentence=True)))
    missing = sorted(expected - stored - optional)
    if missing:
        names = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise ModelFileError(_("{folder}: its weights lack {count} of the model's tensors ({names}), so they would be "
                               "initialised at random; the checkpoint is incomplete or its config.json does not match "
                               "it (num_layers?). {fix}.", folder=folder, count=len(missing), names=names,
                               fix=rebuild_hint(sentence=True)))


# config.json fields the course's classes read, and what each must be (checked before any weight is read).
_POSITIVE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_attention_heads", "inner_hidden_size",
                    "max_sequence_length")
_TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "mask_token_id", "gmask_token_id", "smask_token_id", "pad_token_id")


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def config_value_problem(config: dict) -> str | None:
    """The first field of a ChatGLM-6B config.json whose value the model cannot be built from, said in
    words (field, value, what it must be); None when every field the course reads is usable."""
    for field in _POSITIVE_FIELDS:
        if field in config and not (_is_whole(config[field]) and config[field] >= 1):
            return _("field {field!r} is {value!r}; it must be a whole number of 1 or more", field=field,
                     value=config[field])
    vocab = config.get("vocab_size")
    for field in _TOKEN_ID_FIELDS:
        value = config.get(field)
        if value is None:
            continue
        if not _is_whole(value) or value < 0 or (vocab is not None and value >= vocab):
            return _("field {field!r} is {value!r}; it must be a token id from 0 to vocab_size - 1 ({last})",
                     field=field, value=value, last=vocab - 1 if vocab else "?")
    eps = config.get("layernorm_epsilon")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1):
        return _("field 'layernorm_epsilon' is {value!r}; it must be a small positive number such as 1e-05", value=eps)
    heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
    if heads and hidden and (hidden % heads or (hidden // heads) % 4):
        return _("hidden_size {hidden} and num_attention_heads {heads} do not fit: hidden_size must be "
                 "num_attention_heads times a head size that is a multiple of 4", hidden=hidden, heads=heads)
    pre = config.get("pre_seq_len")
    if pre is not None and not (_is_whole(pre) and pre >= 1):
        return _("field 'pre_seq_len' is {value!r}; it must be null (no prefix) or a whole number of 1 or more",
                 value=pre)
    bits = config.get("quantization_bit")
    if bits not in (None, 0, 4, 8):
        return _("field 'quantization_bit' is {value!r}; it must be 4, 8, or absent for a float model", value=bits)
    return None


def _missing_files_error(folder, missing: list[str], flag) -> ModelFileError:
    """``missing_model_files``' answer as one line naming the flag (or "the path") to point elsewhere."""
    labels = {"weights (model.safetensors or pytorch_model.bin, or a sharded index)":
              _("weights (model.safetensors or pytorch_model.bin, or a sharded index)"),
              "tokenizer (tokenizer.json or tokenizer_config.json)":
              _("tokenizer (tokenizer.json or tokenizer_config.json)")}
    names = ", ".join(labels.get(what, what) for what in missing)
    if flag:
        return ModelFileError(_("model folder {folder} is missing: {names}. Point {flag} at a folder written by "
                                "save_pretrained (or the course model).", folder=folder, names=names, flag=flag))
    return ModelFileError(_("model folder {folder} is missing: {names}. Point the path at a folder written by "
                            "save_pretrained (or the course model).", folder=folder, names=names))


def check_model_files(path, flag=None, tokenizer: bool = False) -> None:
    """Everything a local model folder needs, checked cheaply before loading: config.json (valid JSON
    object), the weights (safetensors header and length, a shard index and its shards), and with
    ``tokenizer=True`` the tokenizer files. A hub id (not a folder) is left to the loader."""
    folder = Path(path)
    if not folder.is_dir():
        return
    missing = missing_model_files(folder) if tokenizer else [
        m for m in missing_model_files(folder) if not m.startswith("tokenizer")]
    if missing:
        raise _missing_files_error(folder, missing, flag)
    config = check_json_file(folder / "config.json", "model config")
    if not isinstance(config, dict):
        raise ModelFileError(_("{path}: the model config must be a JSON object; {fix}.", path=folder / "config.json",
                               fix=rebuild_hint()))
    check_architecture(folder / "config.json", config, flag)
    problem = config_value_problem(config) if config.get("model_type") == "chatglm" else None
    if problem:
        raise ModelFileError(_("{path}: {problem}; {fix}.", path=folder / "config.json", problem=problem,
                               fix=rebuild_hint()))
    if (folder / "generation_config.json").is_file():
        check_json_file(folder / "generation_config.json", "generation config")
    names = None  # the stored tensor names, where they can be read without loading the weights
    if (folder / "model.safetensors").is_file():
        check_safetensors(folder / "model.safetensors")
        names = safetensors_names(folder / "model.safetensors")
    else:
        for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            if (folder / index_name).is_file():
                names = check_shard_index(folder, index_name)
                break
        else:
            if (folder / "pytorch_model.bin").is_file() and (folder / "pytorch_model.bin").stat().st_size == 0:
                raise ModelFileError(_("{path}: the weights file is empty (0 bytes); {fix}.",
                                       path=folder / "pytorch_model.bin", fix=rebuild_hint()))
    if names is not None and config.get("model_type") == "chatglm":  # the course's classes will load these
        check_weight_names(folder, config, names)
    if tokenizer:
        check_tokenizer_files(folder, flag)


def _custom_code_hint(path, flag) -> str:
    py = sorted(p.name for p in Path(path).glob("*.py")) if Path(path).is_dir() else []
    shown = f" ({', '.join(py)})" if py else ""
    option = "--trust_remote_code" if flag else "trust_remote_code=True"
    return _("{path} asks to run the Python code in its folder{files}, which would run with your permissions; "
             "it was not run. Read that code, and if you trust it pass {option}.", path=path, files=shown,
             option=option)


def _explain(err: Exception, path, what: str, flag) -> ModelFileError:
    """Turn a library's exception while loading ``what`` from ``path`` into a one-line ModelFileError."""
    text = str(err)
    if "trust_remote_code" in text and "custom code" in text:
        return ModelFileError(_custom_code_hint(path, flag))
    if isinstance(err, ModelFileError):
        return err
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    fields = {"where": _where(flag), "path": path, "error_type": type(err).__name__, "error": first[:300],
              "fix": rebuild_hint()}
    if what == "tokenizer":
        return ModelFileError(_("could not load the tokenizer from {where}{path} ({error_type}: {error}); {fix}.",
                                **fields))
    return ModelFileError(_("could not load the model from {where}{path} ({error_type}: {error}); {fix}.", **fields))


# is_thudm_folder and remote_code_wanted live beside the stand-ins for THUDM's remote code, at the bottom of
# the import graph (glmcourse.modeling.thudm_compat), which also needs them.
from glmcourse.modeling.thudm_compat import is_thudm_folder, remote_code_wanted  # noqa: E402


def load_tokenizer(path, trust_remote_code: bool = False, flag=None):
    """``AutoTokenizer.from_pretrained(path)``, the folder's own code only with ``trust_remote_code=True``."""
    from transformers import AutoTokenizer

    import glmcourse  # noqa: F401  (registers the course tokenizer with AutoTokenizer)

    check_tokenizer_files(path, flag)
    trust_remote_code = remote_code_wanted(path, trust_remote_code)
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=bool(trust_remote_code))
    except Exception as err:  # tokenizers raises a bare Exception on a damaged tokenizer.json
        raise _explain(err, path, "tokenizer", flag) from None


def _load_model(factory, path, what: str, flag, trust_remote_code: bool, **kwargs):
    trust_remote_code = remote_code_wanted(path, trust_remote_code)
    try:
        return factory.from_pretrained(str(path), trust_remote_code=bool(trust_remote_code), **kwargs)
    except Exception as err:  # safetensors, torch and json errors all become one line naming the folder
        raise _explain(err, path, what, flag) from None


def load_course_model(path: str | None = None, trust_remote_code: bool = False):
    """The shipped course model (fp32, eval mode) and its tokenizer, with a clear error if a file is missing or damaged."""
    from transformers import AutoModel

    import glmcourse

    path = path or glmcourse.COURSE_MODEL
    if not (Path(path) / "model.safetensors").exists():
        raise ModelFileError(_("{path} has no model.safetensors: build the course model with "
                               "`python -m glmcourse.tools.build_course_model` (or restore it with git).", path=path))
    check_model_files(path, tokenizer=True)
    model = _load_model(AutoModel, path, "model", None, trust_remote_code)
    return model.eval(), load_tokenizer(path, trust_remote_code=trust_remote_code)


def bnb_options(path) -> str:
    return _("Options: (1) leave out --load_in_8bit/--load_in_4bit: LoRA on the fp32 base is what the course model "
             "needs anyway (its fp32 weights are 17 MB); (2) use a smaller model in fp32; (3) on a machine with a "
             "CUDA GPU, `pip install -U bitsandbytes` and load {path} there.", path=path)


def load_base_model(path=None, load_in_8bit: bool = False, load_in_4bit: bool = False, trust_remote_code: bool = False):
    """The base model for LoRA: fp32, or bitsandbytes 8-bit (LLM.int8()) / 4-bit (NF4), on any device.

    ``load_in_8bit=True`` is the seed's ``AutoModel.from_pretrained(..., load_in_8bit=True)``, spelled
    the transformers 5 way (``quantization_config=BitsAndBytesConfig(load_in_8bit=True)``). On a CPU,
    bitsandbytes' CPU backend runs it. Without a usable backend: a LoraError with the options. A
    missing or damaged file: a ModelFileError naming it.
    """
    import torch
    from transformers import AutoModelForCausalLM

    import glmcourse
    from glmcourse.lora import LoraError

    path = str(path or glmcourse.COURSE_MODEL)
    if load_in_8bit and load_in_4bit:
        raise LoraError(_("choose one of load_in_8bit and load_in_4bit, not both."))
    check_model_files(path)
    if not (load_in_8bit or load_in_4bit):
        return _load_model(AutoModelForCausalLM, path, "model", None, trust_remote_code, dtype=torch.float32)
    from transformers import BitsAndBytesConfig

    kind = "8-bit" if load_in_8bit else "4-bit"
    try:
        import_bitsandbytes()
    except RuntimeError as err:
        reason = err.reason if isinstance(err, BitsandbytesUnusable) else str(err).split(". Options:")[0]
        raise LoraError(_("loading {path} in {kind} needs bitsandbytes with a working backend: {reason}. {options}",
                          path=path, kind=kind, reason=reason, options=bnb_options(path))) from None
    # LLM.int8() multiplies in fp16 by design and says so at every call on the CPU: known, not a problem.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    config = (BitsAndBytesConfig(load_in_8bit=True) if load_in_8bit else
              BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32))
    try:
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, dtype=torch.float32,
                                                    trust_remote_code=remote_code_wanted(path, trust_remote_code))
    except (RuntimeError, ImportError, AttributeError) as err:
        raise LoraError(_("bitsandbytes could not load {path} in {kind} here ({error_type}: {error}). {options}",
                          path=path, kind=kind, error_type=type(err).__name__, error=err,
                          options=bnb_options(path))) from None


def missing_model_files(path) -> list[str]:
    """What a local model folder lacks for from_pretrained (empty when it looks complete)."""
    folder = Path(path)
    needs = {
        "config.json": ["config.json"],
        "weights (model.safetensors or pytorch_model.bin, or a sharded index)": [
            "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
            "pytorch_model.bin.index.json"],
        "tokenizer (tokenizer.json or tokenizer_config.json)": ["tokenizer.json", "tokenizer_config.json",
                                                               "ice_text.model"],
    }
    return [what for what, names in needs.items() if not any((folder / n).exists() for n in names)]


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an invalid repo id, say
        return False


def check_model_path(path, flag=None) -> str:
    """A local model folder with every file intact, or a hub id that is cached when offline (else a ModelFileError)."""
    from glmcourse.cli import is_offline, offline_variable

    path = str(path)
    if Path(path).is_dir():
        missing = missing_model_files(path)
        if missing:
            raise _missing_files_error(path, missing, flag or "--model")
        check_model_files(path, flag, tokenizer=True)
    elif Path(path).exists() or path.startswith((".", "/", "~")):
        if flag:
            raise ModelFileError(_("no model folder at {path}. Pass {flag} as the folder that holds config.json, the "
                                   "weights and the tokenizer.", path=path, flag=flag))
        raise ModelFileError(_("no model folder at {path}. Pass the model path as the folder that holds config.json, "
                               "the weights and the tokenizer.", path=path))
    elif is_offline() and not _in_hub_cache(path):
        raise ModelFileError(_("{path} is neither a local folder nor in the Hugging Face cache, and {variable} "
                               "forbids downloading it (HF_HUB_OFFLINE=1 mode). Download it once online, or pass a "
                               "local folder.", path=path, variable=offline_variable()))
    return path


def load_chat_model(path: str | None = None, device: str | None = None, trust_remote_code: bool = False, flag=None):
    """``(tokenizer, model)`` ready to chat: the seed's AutoTokenizer / AutoModel calls, in eval mode.

    The device defaults to the best available one, in fp16 on a GPU and fp32 on the CPU. A local
    folder is checked first, so a missing or damaged file is named instead of becoming a download
    attempt or a traceback. The folder's Python code runs only with ``trust_remote_code=True``.
    """
    from transformers import AutoModel

    import glmcourse
    from glmcourse.settings import pick_device, pick_dtype

    path = check_model_path(str(path or glmcourse.COURSE_MODEL), flag)
    device = pick_device(device)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, flag=flag)
    model = _load_model(AutoModel, path, "model", flag, trust_remote_code, dtype=pick_dtype(device))
    return tokenizer, model.to(device).eval()
