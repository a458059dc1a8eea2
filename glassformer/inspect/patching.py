"""Activation patching: which activations carry the difference between a clean and a corrupted
prompt (Meng et al. 2022, "Locating and editing factual associations in GPT"; Wang et al. 2022).

Run the corrupted prompt, but with one activation replaced by its value on the clean prompt, and
measure how much of the clean behaviour comes back, as the share of the logit difference
d = logit[target] - logit[other] at the last position:

    recovered = (d_patched - d_corrupted) / (d_clean - d_corrupted)    1: all of it, 0: none

by residual stream (blocks.i.hook_resid_pre) per layer and position, and by head output
(blocks.i.attn.hook_z, one head at all positions) per layer and head. The two prompts must
have the same number of tokens. Each layer's positions (or heads) run as one batch, from that
layer on (the corrupted run's input to it cached once), read out at the last position only.
"""

import torch

from glassformer.errors import GlassformerError
from glassformer.inspect.lens import readout
from glassformer.model.hooks import hooked, run_with_cache


def logit_difference(logits: torch.Tensor, target: int, other: int) -> torch.Tensor:
    """logits (B, T, V) -> (B,) logit[target] - logit[other] at the last position."""
    return logits[:, -1, target] - logits[:, -1, other]


def _check(model, clean: torch.Tensor, corrupted: torch.Tensor):
    if model.cfg.family != "gpt":
        raise GlassformerError("activation patching runs on decoder-only (gpt) models")
    if clean.shape != corrupted.shape or clean.size(0) != 1:
        raise GlassformerError(f"the clean and corrupted prompts must be one sequence each of "
                               f"the same length (got {list(clean.shape)} and "
                               f"{list(corrupted.shape)} token ids); reword one of them")


def _finish(model, layer: int, x: torch.Tensor) -> torch.Tensor:
    """The logits (B, 1, V) at the last position of hidden states x (B, T, C) entering block
    `layer`, run through the blocks from there on, the final norm and the head."""
    positions = torch.arange(x.size(1), device=x.device)  # (T,)
    for block in model.blocks[layer:]:
        x = block(x, None, None, positions)
    return readout(model).logits(x[:, -1:])


@torch.no_grad()
def _sweep(model, clean, corrupted, target, other, point, batch, patch) -> torch.Tensor:
    """(L, batch) recovered shares: for each layer, `batch` copies of the corrupted prompt, row
    r with patch(value, clean value, r) at hook point point(layer). The layers before the
    patched one see the same corrupted prompt in every row, so each row starts from the
    corrupted run's input to that layer (cached once) and reads out the last position only."""
    _check(model, clean, corrupted)
    L = model.cfg.n_layer
    names = [point(i) for i in range(L)]
    inputs = [f"blocks.{i}.hook_resid_pre" for i in range(L)]
    (clean_logits, _), cache = run_with_cache(model, clean, names=names)
    (corrupt_logits, _), start = run_with_cache(model, corrupted, names=inputs)
    d_clean = logit_difference(clean_logits, target, other)  # (1,)
    d_corrupt = logit_difference(corrupt_logits, target, other)  # (1,)
    out = torch.zeros(L, batch)
    for i, name in enumerate(names):
        def hook(value, _, source=cache[name]):
            value = value.clone()
            for r in range(batch):
                patch(value, source, r)
            return value
        with hooked(model, [(name, hook)]):
            patched = _finish(model, i, start[inputs[i]].expand(batch, -1, -1))  # (batch, 1, V)
        out[i] = (logit_difference(patched, target, other) - d_corrupt) / (d_clean - d_corrupt)
    return out


def patch_residual(model, clean: torch.Tensor, corrupted: torch.Tensor, target: int,
                   other: int) -> torch.Tensor:
    """(L, T) share of the logit difference recovered by patching the clean residual stream
    into the corrupted run at layer l's input (blocks.l.hook_resid_pre), position t.
    clean, corrupted (1, T) ids."""
    def patch(value, source, t):  # value (T, T, C): row t takes the clean stream at position t
        value[t, t] = source[0, t]
    return _sweep(model, clean, corrupted, target, other,
                  lambda i: f"blocks.{i}.hook_resid_pre", clean.size(1), patch)


def patch_heads(model, clean: torch.Tensor, corrupted: torch.Tensor, target: int,
                other: int) -> torch.Tensor:
    """(L, H) share recovered by patching head h's clean output (blocks.l.attn.hook_z, every
    position) into the corrupted run."""
    def patch(value, source, h):  # value (H, H, T, D): row h takes head h's clean z
        value[h, h] = source[0, h]
    return _sweep(model, clean, corrupted, target, other,
                  lambda i: f"blocks.{i}.attn.hook_z", model.cfg.n_head, patch)
