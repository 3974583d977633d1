"""Exercise checkers of lesson 00 (``glmcourse.sizes``): each raises AssertionError with a hint, or returns."""
from __future__ import annotations

from glmcourse.exercises import call_learner, say
from glmcourse.sizes import count_parameters, meta_model, weight_gib


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
        expected, got = _layer_count(h, inner), call_learner(fn, h, inner)
        weights_only = 4 * h * h + 2 * h * inner
        assert got == expected, say(
            "for hidden_size={h}, inner_hidden_size={inner} you returned {got:,}, a block holds {expected:,}. {hint}",
            h=h, inner=inner, got=got, expected=expected,
            hint=say("Add the biases (every Linear has one) and the two LayerNorms (a weight and a bias each).")
            if got == weights_only else
            say("Count query_key_value (h -> 3h), dense (h -> h), dense_h_to_4h (h -> inner), "
                "dense_4h_to_h (inner -> h), each with a bias, plus two LayerNorms of 2*h."))
    print(say("one ChatGLM block: formula matches the model for three sizes"))


def check_total_params(fn) -> None:
    """``fn(config)`` must return the model's total parameter count (lm_head tied: counted once)."""
    from glmcourse.modeling import chatglm_6b_config, course_config

    for name, cfg in [(say("course model"), course_config()), ("ChatGLM-6B", chatglm_6b_config()),
                      (say("a 2-layer toy"), course_config(num_layers=2, hidden_size=64, inner_hidden_size=200,
                                                      num_attention_heads=4, vocab_size=1000))]:
        expected, got = count_parameters(meta_model(cfg)), call_learner(fn, cfg)
        embed = cfg.vocab_size * cfg.hidden_size
        hint = (say("lm_head shares the embedding's weight: count it once.") if got == expected + embed else
                say("Did you forget the final LayerNorm (2*hidden_size)?") if got == expected - 2 * cfg.hidden_size else
                say("total = vocab_size*hidden_size + num_layers*(one block) + final LayerNorm (2*hidden_size)."))
        assert got == expected, say("{name}: you returned {got:,}, the model holds {expected:,}. {hint}",
                                    name=name, got=got, expected=expected, hint=hint)
    print(say("total parameters: formula matches the course model, ChatGLM-6B and a toy config"))


def check_weight_gib(fn) -> None:
    """``fn(n_params, bits)`` must return the weights' memory in GiB."""
    n = 6_173_286_400
    for bits in (32, 16, 8, 4):
        expected, got = weight_gib(n, bits), call_learner(fn, n, bits)
        if abs(got - expected) <= 1e-6 * expected:
            continue
        if abs(got - n * bits / 8 / 1e9) <= 1e-6 * expected:
            hint = say("that is GB (10**9 bytes); GiB is 2**30 bytes.")
        elif abs(got - expected * 8) <= 1e-6 * expected * 8:
            hint = say("bits, not bytes: divide by 8.")
        else:
            hint = say("bytes = n_params * bits / 8, GiB = bytes / 2**30.")
        raise AssertionError(say("{bits}-bit weights of ChatGLM-6B: you returned {got:.3f}, expected {expected:.3f} GiB; "
                                 "{hint}", bits=bits, got=got, expected=expected, hint=hint))
    print(say("weight memory: right for 32, 16, 8 and 4 bits"))


