"""The seed's ``trust_remote_code=True`` on a THUDM ChatGLM-6B folder, answered by the course's classes.

A folder downloaded from THUDM/chatglm-6b names its own code in ``auto_map`` (configuration_chatglm.py,
modeling_chatglm.py, tokenization_chatglm.py). That code stops working after transformers 4.33, and the
course runs no folder's code anyway. So, after ``import glmcourse``, when transformers asks for one of
those classes *for such a folder* (config.json plus ice_text.model), it gets the course's class instead,
and a one-line note says so. Any other folder's code is left to transformers, as before.
"""
from __future__ import annotations

from pathlib import Path

from glmcourse.i18n import _
from glmcourse.modeling.configuration_chatglm import ChatGLMConfig
from glmcourse.modeling.modeling_chatglm import ChatGLMForConditionalGeneration
from glmcourse.modeling.tokenization_ice import IceTextTokenizer


class _NotRegistered:
    @classmethod
    def register_for_auto_class(cls, auto_class=None):
        """Nothing to register: this class stands in for a folder's code, and saving must not copy ours there."""


class THUDMFolderConfig(_NotRegistered, ChatGLMConfig):
    """ChatGLMConfig, loaded in place of a THUDM folder's configuration_chatglm.py."""


class THUDMFolderModel(_NotRegistered, ChatGLMForConditionalGeneration):
    """The course model, loaded in place of a THUDM folder's modeling_chatglm.py."""

    config_class = ChatGLMConfig


class THUDMFolderTokenizer(_NotRegistered, IceTextTokenizer):
    """IceTextTokenizer, loaded in place of a THUDM folder's tokenization_chatglm.py."""


STAND_INS = {
    "ChatGLMConfig": THUDMFolderConfig,
    "ChatGLMForConditionalGeneration": THUDMFolderModel,
    "ChatGLMModel": THUDMFolderModel,
    "ChatGLMTokenizer": THUDMFolderTokenizer,
}


def install() -> None:
    """Wrap transformers' ``get_class_from_dynamic_module`` where the Auto classes call it (idempotent)."""
    from transformers import dynamic_module_utils
    from transformers.models.auto import auto_factory, configuration_auto, tokenization_auto

    original = dynamic_module_utils.get_class_from_dynamic_module

    def course_class_or_folder_code(class_reference, pretrained_model_name_or_path, *args, **kwargs):
        name = str(class_reference).rsplit(".", 1)[-1]
        if name in STAND_INS and is_thudm_folder(pretrained_model_name_or_path):
            remote_code_wanted(pretrained_model_name_or_path, True)  # prints the one-line note, once per folder
            return STAND_INS[name]
        return original(class_reference, pretrained_model_name_or_path, *args, **kwargs)

    course_class_or_folder_code.wrapped_for_thudm = True
    for module in (auto_factory, configuration_auto, tokenization_auto):
        if not getattr(module.get_class_from_dynamic_module, "wrapped_for_thudm", False):
            module.get_class_from_dynamic_module = course_class_or_folder_code


def is_thudm_folder(path) -> bool:
    """A ChatGLM-6B folder as THUDM publishes it: config.json and ice_text.model, no course tokenizer.json."""
    folder = Path(path)
    return ((folder / "config.json").is_file() and (folder / "ice_text.model").is_file()
            and not (folder / "tokenizer.json").is_file())


_NOTED: set[str] = set()


def remote_code_wanted(path, trust_remote_code: bool) -> bool:
    """``trust_remote_code`` as given, except for a THUDM ChatGLM-6B folder: the course's own classes load it
    (its .py files are never run), and a one-line note on stderr says so."""
    if not trust_remote_code or not is_thudm_folder(path):
        return bool(trust_remote_code)
    if str(path) not in _NOTED:
        import sys

        _NOTED.add(str(path))
        print(_("note: {path} is a THUDM ChatGLM-6B folder; the course's own classes load it, so trust_remote_code "
                "is not needed and its .py files were not run.", path=path), file=sys.stderr)
    return False
