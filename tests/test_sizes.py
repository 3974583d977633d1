"""Model sizes for notebook 00, and its three exercise checkers (right answers pass, wrong ones fail)."""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from glmcourse import sizes
from glmcourse.exercises import sizes as checks
from glmcourse.modeling import chatglm_6b_config, course_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
solutions = importlib.import_module("solutions.00_start_here_solutions")


def test_chatglm_6b_has_its_published_parameter_count():
    assert sizes.count_parameters(sizes.meta_model(chatglm_6b_config())) == 6_173_286_400


def test_breakdown_covers_every_parameter_once():
    model = sizes.meta_model(course_config())
    breakdown = sizes.parameter_breakdown(model)
    assert sum(breakdown.values()) == sizes.count_parameters(model)
    cfg = course_config()
    assert breakdown["word embeddings (tied with lm_head)"] == cfg.vocab_size * cfg.hidden_size
    assert breakdown["LayerNorms"] == (2 * cfg.num_layers + 1) * 2 * cfg.hidden_size


def test_weight_gib_uses_binary_gigabytes():
    assert sizes.weight_gib(2**30, 8) == 1.0
    assert sizes.weight_gib(2**31, 4) == 1.0


@pytest.mark.parametrize("checker, right", [
    (checks.check_params_per_layer, solutions.params_per_layer),
    (checks.check_total_params, solutions.total_params),
    (checks.check_weight_gib, solutions.weight_gib),
])
def test_checkers_accept_the_solutions(checker, right, capsys):
    checker(right)
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("checker, wrong, hint", [
    (checks.check_params_per_layer, lambda h, i: 4 * h * h + 2 * h * i, "biases"),
    (checks.check_total_params, lambda c: solutions.total_params(c) + c.vocab_size * c.hidden_size, "count it once"),
    (checks.check_total_params, lambda c: solutions.total_params(c) - 2 * c.hidden_size, "final LayerNorm"),
    (checks.check_weight_gib, lambda n, b: n * b / 8 / 1e9, "GiB is 2**30"),
    (checks.check_weight_gib, lambda n, b: n * b / 2**30, "divide by 8"),
])
def test_checkers_reject_wrong_answers_with_a_hint(checker, wrong, hint):
    with pytest.raises(AssertionError, match=re.escape(hint)):
        checker(wrong)


def test_unknown_parameter_names_are_reported():
    import torch

    with pytest.raises(ValueError, match="extend sizes.COMPONENTS"):
        sizes.parameter_breakdown(torch.nn.Linear(2, 2))
