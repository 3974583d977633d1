"""The three one-line ``auto_map`` shims every saved course model carries.

A folder saved from the course model (the shipped one, a merged LoRA model, any ``save_pretrained``)
names these files in its config's ``auto_map``, so the seed's own call,
``AutoModel.from_pretrained(path, trust_remote_code=True)``, works in a process that never imported
glmcourse. Each shim only imports the real class from this package.
"""
from __future__ import annotations

import json
from pathlib import Path

SHIMS = {
    "configuration_chatglm.py": "from glmcourse.modeling.configuration_chatglm import ChatGLMConfig  # noqa: F401\n",
    "modeling_chatglm.py": "from glmcourse.modeling.modeling_chatglm import ChatGLMForConditionalGeneration  # noqa: F401\n",
    "tokenization_chatglm.py": "from glmcourse.modeling.tokenization_chatglm import ChatGLMTokenizer  # noqa: F401\n",
}
MODEL_AUTO_MAP = {
    "AutoConfig": "configuration_chatglm.ChatGLMConfig",
    "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
}
TOKENIZER_AUTO_MAP = {"AutoTokenizer": [None, "tokenization_chatglm.ChatGLMTokenizer"]}


def write_shims(folder) -> None:
    """Write the shim files into ``folder`` (readable by everyone, like checked-out files)."""
    for name, text in SHIMS.items():
        path = Path(folder, name)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)


def add_tokenizer_auto_map(folder) -> None:
    """Point a saved tokenizer_config.json at the tokenizer shim (transformers does not write it)."""
    path = Path(folder, "tokenizer_config.json")
    config = json.loads(path.read_text(encoding="utf-8"))
    config["auto_map"] = TOKENIZER_AUTO_MAP
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
