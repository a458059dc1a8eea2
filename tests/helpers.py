"""Plain helpers shared by test modules (fixtures live in conftest.py)."""

import typing

import torch

from glassformer.config import Kernel, ModelConfig
from glassformer.model import build
from glassformer.model.gpt import GPT

KERNELS = typing.get_args(Kernel)  # the ways softmax attention is computed: the same numbers

SONNET = """From fairest creatures we desire increase,
That thereby beauty's rose might never die,
But as the riper should by time decease,
His tender heir might bear his memory:
But thou contracted to thine own bright eyes,
Feed'st thy light's flame with self-substantial fuel,
Making a famine where abundance lies,
Thy self thy foe, to thy sweet self too cruel:
"""
"""The first eight lines of Sonnet 1: a small text the tests make their files from."""


def lively_gpt(cfg, seed: int = 0) -> GPT:
    """GPT(cfg) in eval mode with its biases and norm gains moved off 0 and 1, so that every
    parameter matters to the output (a wrongly copied or ignored one then shows)."""
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


V = 24
"""The vocabulary of tiny_model's models."""


def tiny_model(family: str, **fields):
    """A seeded model of `family` (2 layers, 2 heads, width 32, block 16, V tokens) in eval mode."""
    torch.manual_seed(0)
    cfg = ModelConfig(family=family, vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32,
                      **fields)
    return build(cfg).eval()


def one_error_line(capsys) -> str:
    """The CLI's error output: exactly one `error: ...` line and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def interrupted_at(step_fn, n: int):
    """`step_fn` that raises KeyboardInterrupt (Ctrl-C) instead of its n-th call."""
    calls = []

    def step(*args):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return step_fn(*args)
    return step


def run_python(code: str):
    """`code` run by this Python in a fresh process (nothing imported yet): its CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
