"""Model FLOPs utilisation (MFU): the share of the hardware's matmul peak that training's
arithmetic uses. The peak is measured, not looked up: one large matmul on this device, in the
precision training computes in.

Training FLOPs per token (PaLM, appendix B; nanoGPT's estimate_mfu):

    6 N + 12 L H Q T

6N: each weight is used in one multiply-add (2 FLOPs) going forward and two going backward
(the gradients of the input and of the weight); N counts the weights a token multiplies by, so
without position tables (a lookup, no arithmetic). 12 L H Q T: in each of L layers, each of H
heads scores T keys and sums T values of width Q, 2 x 2 x H Q T forward, 3x that with backward.
MFU = FLOPs per token x tokens/s / peak FLOP/s.
"""

import functools
import time

import torch

from glassformer.model import count_parameters
from glassformer.train.device import compute_dtype


def flops_per_token(model, T: int) -> float:
    """Training FLOPs per token of `model` (any family) on sequences of length T."""
    cfg = model.cfg
    n = count_parameters(model)
    positions = getattr(getattr(model, "embed", None), "positions", None)
    if positions is not None:
        n -= sum(p.numel() for p in positions.parameters())
    attention = 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * T if cfg.family != "lstm" else 0
    return 6 * n + attention


@functools.lru_cache
def training_peak(device: str) -> float:
    """The matmul peak of `device` ("cpu", "cuda:0") in the precision training computes in,
    measured once per process."""
    return matmul_peak(device, compute_dtype(device))


def matmul_peak(device, dtype=torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` (size x size) @ (size x size) matmuls on `device`.

    Other work on the machine only slows a matmul down, so the fastest is the best estimate of
    the peak; on a busy machine it is still low, and MFU reads high. The operands come from a
    generator of their own: training's random state (dropout) must not depend on whether, or
    when, the peak was measured in this process."""
    own = torch.Generator(device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=own).to(dtype)
    b = torch.randn(size, size, device=device, generator=own).to(dtype)
    fastest = float("inf")
    for _ in range(repeats):  # the first is slow (allocations), and the minimum drops it
        _synchronize(device)
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * size**3 / fastest


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
