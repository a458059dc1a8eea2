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

An encoder-decoder's source and target tokens take different paths: a source token goes
through the encoder and the decoder's cross-attention keys and values, a target token through
the rest of the decoder and the head; so `batch_flops` counts each side with its own weights,
its own length and, for the target, cross-attention onto the S source positions:

    source  6 (N_enc + N_kv) + 12 L H Q S            per source token
    target  6 (N_dec - N_kv + N_head) + 12 L H Q (T + S)   per target token

(Counting 6N for every source and target token, as for one stack, doubles the count and read
107-131% MFU while training numbers-seq2seq.)
"""

import functools
import time

import torch

from glassformer.model import count_parameters
from glassformer.train.device import compute_dtype


def flops_per_token(model, T: int) -> float:
    """Training FLOPs per token of a one-stack `model` (GPT, BERT, LSTM) on sequences of length T."""
    cfg = model.cfg
    n = count_parameters(model) - _numel(_position_table(model))
    return 6 * n + _attention(cfg, T)


def batch_flops(model, batch: dict) -> float:
    """Training FLOPs (forward and backward) of `model` on `batch`, its forward's keyword
    arguments: ids (B, T), and src (B, S) for an encoder-decoder (padding included: it is
    computed)."""
    B, T = batch["ids"].shape
    if "src" not in batch:
        return flops_per_token(model, T) * B * T
    S = batch["src"].size(1)
    cfg, C = model.cfg, model.cfg.n_embd
    kv = sum(_numel(block.cross.qkv, rows=slice(C, None)) for block in model.decoder.blocks)
    table = _numel(model.encoder.embed.tokens)  # a lookup (shared by both stacks)
    encoder = count_parameters(model.encoder) - table - _numel(_position_table(model.encoder))
    decoder = count_parameters(model.decoder) - table - _numel(_position_table(model.decoder))
    source = 6 * (encoder + kv) + _attention(cfg, S)
    target = 6 * (decoder - kv + model.head.weight.numel()) + _attention(cfg, T + S)
    return B * S * source + B * T * target


def _attention(cfg, keys: int) -> int:
    """12 L H Q x keys: scores and weighted values over `keys` positions, with backward."""
    return 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * keys if cfg.family != "lstm" else 0


def _position_table(model):
    return getattr(getattr(model, "embed", None), "positions", None)


def _numel(module, rows=slice(None)) -> int:
    """Parameters of `module` (None: 0), or of the given output rows of a Linear."""
    if module is None:
        return 0
    return sum(p[rows].numel() for p in module.parameters())


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
