"""Model sizes (notebook 00): parameter counts, where they live, and what the weights weigh.

Counting on the ``meta`` device builds the module tree without allocating any weights, so the real
ChatGLM-6B (6.2 B parameters, 24.7 GB in fp32) can be counted on a laptop in a second.
"""
from __future__ import annotations

# Which part of a ChatGLM block each parameter belongs to, by a piece of its module name.
COMPONENTS = {
    "word_embeddings": "word embeddings (tied with lm_head)",
    "query_key_value": "attention: query_key_value",
    "attention.dense": "attention: dense (output)",
    "dense_h_to_4h": "MLP: dense_h_to_4h",
    "dense_4h_to_h": "MLP: dense_4h_to_h",
    "layernorm": "LayerNorms",
}


def component_label(label: str) -> str:
    """A COMPONENTS label as the learner reads it (Chinese under ``GLMCOURSE_LANG=zh``)."""
    from glmcourse.i18n import _

    return {
        "word embeddings (tied with lm_head)": _("word embeddings (tied with lm_head)"),
        "attention: query_key_value": _("attention: query_key_value"),
        "attention: dense (output)": _("attention: dense (output)"),
        "MLP: dense_h_to_4h": _("MLP: dense_h_to_4h"),
        "MLP: dense_4h_to_h": _("MLP: dense_4h_to_h"),
        "LayerNorms": _("LayerNorms"),
    }[label]


def meta_model(config):
    """The model for ``config`` with every tensor on the meta device (no memory used)."""
    import torch

    from glmcourse.modeling import ChatGLMForConditionalGeneration

    with torch.device("meta"):
        return ChatGLMForConditionalGeneration(config)


def count_parameters(model) -> int:
    """Distinct parameters (the tied lm_head counts once, as in the ChatGLM-6B figure)."""
    return sum(p.numel() for p in model.parameters())


def parameter_breakdown(model) -> dict[str, int]:
    """Parameter count per component of COMPONENTS, in that order."""
    counts = {label: 0 for label in COMPONENTS.values()}
    for name, param in model.named_parameters():
        label = next((lab for key, lab in COMPONENTS.items() if key in name), None)
        if label is None:
            raise ValueError(f"parameter {name!r} matches none of {list(COMPONENTS)}; extend sizes.COMPONENTS")
        counts[label] += param.numel()
    return counts


def weight_gib(n_params: int, bits: int) -> float:
    """Memory of ``n_params`` weights stored with ``bits`` bits each, in GiB (2**30 bytes)."""
    return n_params * bits / 8 / 2**30
