"""Run by tests/test_environment.py in a subprocess: import the course and use bitsandbytes' 8-bit and NF4
layers on the CPU, with bitsandbytes' AVX512-BF16 check forced true while it is imported.

bitsandbytes 0.49 and later ask the `kernels` package for a compiled kernel from a hub when that check
is true (on recent Intel and AMD CPUs). Forcing it makes that code path run on every CPU, so the test
sees what a learner with such a CPU would get. The real check is put back before any layer runs, since
this CPU may lack the instructions. Prints one line: ``forced=<yes|no-such-check> bnb=<version>``.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

forced = {"done": False}


class ForceAvx512Bf16(importlib.abc.MetaPathFinder):
    """After ``bitsandbytes.functional`` runs, its ``has_avx512bf16`` answers True (until restored)."""

    def find_spec(self, name, path=None, target=None):
        if name != "bitsandbytes.functional":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            if hasattr(module, "has_avx512bf16"):
                forced["real"] = module.has_avx512bf16
                module.has_avx512bf16 = lambda: True
                forced["done"] = True

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, ForceAvx512Bf16())

import glmcourse  # noqa: E402,F401  (the course's start-up, as in every lesson)
import torch  # noqa: E402

import bitsandbytes as bnb  # noqa: E402

if forced["done"]:
    bnb.functional.has_avx512bf16 = forced["real"]

torch.manual_seed(0)
x = torch.randn(2, 64)
int8_layer = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False, threshold=6.0)
int8_layer.load_state_dict(torch.nn.Linear(64, 32).state_dict())
int8_layer = int8_layer.to("cpu")
nf4_layer = bnb.nn.Linear4bit(64, 32, quant_type="nf4", compute_dtype=torch.float32)
nf4_layer.load_state_dict(torch.nn.Linear(64, 32).state_dict())
nf4_layer = nf4_layer.to("cpu")
with torch.no_grad():
    assert torch.isfinite(int8_layer(x)).all() and torch.isfinite(nf4_layer(x)).all()
print(f"forced={'yes' if forced['done'] else 'no-such-check'} bnb={bnb.__version__}")
