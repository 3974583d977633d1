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


# ---------------------------------------------------------------------------- exercise checkers
def _layer_count(hidden_size: int, inner_hidden_size: int) -> int:
    """Measured, not computed: the parameters of layer 0 of a one-layer model of these sizes."""
    from glmcourse.modeling import course_config

    heads = 4 if hidden_size % 4 == 0 else 1
    model = meta_model(course_config(hidden_size=hidden_size, inner_hidden_size=inner_hidden_size,
                                     num_layers=1, num_attention_heads=heads, vocab_size=64))
    return count_parameters(model.transformer.layers[0])


def check_params_per_layer(fn) -> None:
    """``fn(hidden_size, inner_hidden_size)`` must return the parameter count of one ChatGLM block."""
    for h, inner in [(256, 1024), (64, 96), (4096, 16384)]:
        expected, got = _layer_count(h, inner), fn(h, inner)
        weights_only = 4 * h * h + 2 * h * inner
        assert got == expected, (
            f"for hidden_size={h}, inner_hidden_size={inner} you returned {got:,}, a block holds {expected:,}. "
            + ("Add the biases (every Linear has one) and the two LayerNorms (a weight and a bias each)."
               if got == weights_only else
               "Count query_key_value (h -> 3h), dense (h -> h), dense_h_to_4h (h -> inner), "
               "dense_4h_to_h (inner -> h), each with a bias, plus two LayerNorms of 2*h.")
        )
    print("one ChatGLM block: formula matches the model for three sizes")


def check_total_params(fn) -> None:
    """``fn(config)`` must return the model's total parameter count (lm_head tied: counted once)."""
    from glmcourse.modeling import chatglm_6b_config, course_config

    for name, cfg in [("course model", course_config()), ("ChatGLM-6B", chatglm_6b_config()),
                      ("a 2-layer toy", course_config(num_layers=2, hidden_size=64, inner_hidden_size=200,
                                                      num_attention_heads=4, vocab_size=1000))]:
        expected, got = count_parameters(meta_model(cfg)), fn(cfg)
        embed = cfg.vocab_size * cfg.hidden_size
        hint = ("lm_head shares the embedding's weight: count it once." if got == expected + embed else
                "Did you forget the final LayerNorm (2*hidden_size)?" if got == expected - 2 * cfg.hidden_size else
                "total = vocab_size*hidden_size + num_layers*(one block) + final LayerNorm (2*hidden_size).")
        assert got == expected, f"{name}: you returned {got:,}, the model holds {expected:,}. {hint}"
    print("total parameters: formula matches the course model, ChatGLM-6B and a toy config")


def check_weight_gib(fn) -> None:
    """``fn(n_params, bits)`` must return the weights' memory in GiB."""
    n = 6_173_286_400
    for bits in (32, 16, 8, 4):
        expected, got = weight_gib(n, bits), fn(n, bits)
        if abs(got - expected) <= 1e-6 * expected:
            continue
        if abs(got - n * bits / 8 / 1e9) <= 1e-6 * expected:
            hint = "that is GB (10**9 bytes); GiB is 2**30 bytes."
        elif abs(got - expected * 8) <= 1e-6 * expected * 8:
            hint = "bits, not bytes: divide by 8."
        else:
            hint = "bytes = n_params * bits / 8, GiB = bytes / 2**30."
        raise AssertionError(f"{bits}-bit weights of ChatGLM-6B: you returned {got:.3f}, expected {expected:.3f} GiB; {hint}")
    print("weight memory: right for 32, 16, 8 and 4 bits")
