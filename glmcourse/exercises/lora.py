"""Exercise checkers of lesson 05 and 06 (``glmcourse.lora``): each raises AssertionError with a hint, or returns."""
from __future__ import annotations

import torch
from torch import nn

from glmcourse.exercises import call_learner, say
from glmcourse.lora import LoRALinear, lora_parameter_count


def _close(got, want, what: str, atol: float = 1e-5):
    assert torch.is_tensor(got), say("{what}: return a torch.Tensor, got {type}", what=what, type=type(got).__name__)
    assert got.shape == want.shape, say("{what}: expected shape {want}, got {got}",
                                        what=what, want=tuple(want.shape), got=tuple(got.shape))
    err = (got.float() - want.float()).abs().max().item()
    assert err <= atol, say("{what}: largest difference from the expected values is {err:.3g}", what=what, err=err)


def check_lora_param_count(fn) -> None:
    """fn(in_features, out_features, r) -> trainable LoRA parameters of one adapted Linear layer."""
    for n_in, n_out, r in [(256, 768, 8), (4096, 12288, 8), (10, 20, 1), (64, 64, 16)]:
        got = call_learner(fn, n_in, n_out, r)
        want = nn.Linear(n_in, r, bias=False).weight.numel() + nn.Linear(r, n_out, bias=False).weight.numel()
        assert got == want, say("fn({n_in}, {n_out}, r={r}) = {got}, expected {want}: A is r x in and B is out x r "
                                "(no biases); the frozen W ({frozen:,}) does not count",
                                n_in=n_in, n_out=n_out, r=r, got=got, want=want, frozen=n_out * n_in)


def check_lora_forward(fn) -> None:
    """fn(x, W, b, A, B, alpha, r) -> W x + b + (B A x) alpha / r, batched over x's leading dims."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 16, generator=gen)
    W, b = torch.randn(24, 16, generator=gen), torch.randn(24, generator=gen)
    A, B = torch.randn(4, 16, generator=gen), torch.randn(24, 4, generator=gen)
    base = nn.Linear(16, 24)
    with torch.no_grad():
        base.weight.copy_(W)
        base.bias.copy_(b)
    layer = LoRALinear(base, r=4, alpha=8)
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    got = call_learner(fn, x, W, b, A, B, 8, 4)
    assert torch.is_tensor(got), say("return a tensor, got {type}", type=type(got).__name__)
    if got.shape == layer(x).shape:
        plain = x @ W.T + b + x @ A.T @ B.T
        assert not torch.allclose(got, plain, atol=1e-4), say("scale the low-rank branch by alpha / r (here 8 / 4 = 2)")
    _close(got, layer(x).detach(), "W x + b + (B A x) * alpha / r", atol=1e-4)


def check_merge_weight(fn) -> None:
    """fn(W, A, B, alpha, r) -> the merged weight W + (B @ A) * alpha / r."""
    gen = torch.Generator().manual_seed(1)
    W, A, B = torch.randn(12, 6, generator=gen), torch.randn(2, 6, generator=gen), torch.randn(12, 2, generator=gen)
    got = call_learner(fn, W, A, B, 16, 2)
    assert torch.is_tensor(got), say("return a tensor, got {type}", type=type(got).__name__)
    if got.shape == (12, 12) or got.shape == (6, 6):
        raise AssertionError(say("the update is B @ A (out x r times r x in = out x in), not A @ B"))
    _close(got, W + B @ A * 8, "W + (B @ A) * alpha / r")
    assert torch.equal(W, torch.randn(12, 6, generator=torch.Generator().manual_seed(1))), say("do not modify W in place")


def check_optimizer_state_bytes(fn) -> None:
    """fn(trainable_params, bytes_per_value=4) -> AdamW's state bytes: two moments per parameter."""
    for n, width in [(32_768, 4), (3_670_016, 4), (6_173_286_400, 2), (1, 4)]:
        got = call_learner(fn, n, width)
        want = 2 * n * width
        assert got == want, say("fn({n:,}, {width}) = {got}, expected {want:,}: AdamW keeps exp_avg and exp_avg_sq, "
                                "one value each per trainable parameter", n=n, width=width, got=got, want=want)


def check_model_key(fn) -> None:
    """fn(file_key, adapter_name) -> the model parameter a saved adapter tensor loads into."""
    cases = [
        ("base_model.model.transformer.layers.0.attention.query_key_value.lora_A.weight", "default",
         "base_model.model.transformer.layers.0.attention.query_key_value.lora_A.default.weight"),
        ("base_model.model.transformer.layers.3.attention.query_key_value.lora_B.weight", "json",
         "base_model.model.transformer.layers.3.attention.query_key_value.lora_B.json.weight"),
        ("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", "default",
         "base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight"),
    ]
    for key, name, want in cases:
        got = call_learner(fn, key, name)
        assert got == want, say("fn({key!r}, {name!r}) = {got!r}, expected {want!r}", key=key, name=name, got=got, want=want)


def check_adapter_bytes(fn) -> None:
    """fn(num_layers, hidden_size, r) -> bytes of an fp32 LoRA adapter on query_key_value (h -> 3h)."""
    from glmcourse.modeling import course_config

    for layers, hidden, r in [(4, 256, 8), (28, 4096, 8), (2, 64, 4)]:
        config = course_config(num_layers=layers, hidden_size=hidden, num_attention_heads=8 if hidden >= 64 else 4,
                               inner_hidden_size=4 * hidden)
        want = 4 * lora_parameter_count(config, r=r)
        got = call_learner(fn, layers, hidden, r)
        assert got == want, say("fn({layers}, {hidden}, r={r}) = {got}, expected {want:,}: per layer A is r x h, "
                                "B is 3h x r, 4 bytes per fp32 value", layers=layers, hidden=hidden, r=r, got=got, want=want)


def check_parse_person(fn) -> None:
    """fn(reply) -> {"name", "age", "city"} for a valid one-line JSON reply, else None."""
    good = '{"name": "Anna", "age": 31, "city": "Oslo"}'
    assert call_learner(fn, good) == {"name": "Anna", "age": 31, "city": "Oslo"}, say("fn({reply!r}) should give the dict",
                                                                                       reply=good)
    assert call_learner(fn, ' ' + good + ' ') == {"name": "Anna", "age": 31, "city": "Oslo"}, say(
        "surrounding spaces are fine")
    for bad, why in [('{"name": "Anna", "age": 31', say("cut-off JSON")), ("Anna is 31", say("not JSON")),
                     ('{"name": "Anna", "age": "31", "city": "Oslo"}', say("age must be a number")),
                     ('{"name": "Anna", "age": 31}', say("city is missing")), ("[1, 2]", say("not an object"))]:
        got = call_learner(fn, bad)
        assert got is None, say("fn({reply!r}) = {got!r}: expected None ({why})", reply=bad, got=got, why=why)


