"""The course model: ChatGLM-6B's architecture, config presets and tokenizer.

Importing this registers ``model_type="chatglm"`` with transformers' Auto* classes, so the shipped
folder (``glmcourse.COURSE_MODEL``) loads with ``AutoModel``/``AutoTokenizer`` without remote code.
"""
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from glmcourse.modeling.configuration_chatglm import ChatGLMConfig, chatglm_6b_config, course_config
from glmcourse.modeling.modeling_chatglm import (
    ChatGLMForConditionalGeneration,
    ChatGLMModel,
    PrefixEncoder,
    positions_and_mask,
)
from glmcourse.modeling.tokenization_chatglm import ChatGLMTokenizer, train_tokenizer
from glmcourse.modeling.tokenization_ice import IceTextTokenizer

AutoConfig.register("chatglm", ChatGLMConfig, exist_ok=True)
AutoModel.register(ChatGLMConfig, ChatGLMForConditionalGeneration, exist_ok=True)
AutoModelForCausalLM.register(ChatGLMConfig, ChatGLMForConditionalGeneration, exist_ok=True)
AutoTokenizer.register(ChatGLMConfig, fast_tokenizer_class=ChatGLMTokenizer, exist_ok=True)

# trust_remote_code=True on a THUDM ChatGLM-6B folder: the course's classes, never the folder's code
from glmcourse.modeling import thudm_compat  # noqa: E402

thudm_compat.install()

__all__ = [
    "ChatGLMConfig", "ChatGLMForConditionalGeneration", "ChatGLMModel", "ChatGLMTokenizer", "IceTextTokenizer", "PrefixEncoder",
    "chatglm_6b_config", "course_config", "positions_and_mask", "train_tokenizer",
]
