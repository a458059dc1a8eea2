"""Pictures of how each scheme gives attention a sense of order (two panels each, 10 x 4 in):

sinusoidal  the table PE (positions x channels): fast sines in the first channels, ever slower
            bands after; and four of its channels against position
rope        the angle pair i of q and k is rotated by at position p, p * base^(-2i/D) mod 2pi;
            and each pair's wavelength 2pi * base^(2i/D) in positions
alibi       the bias -m_h * distance each head adds to its scores; and one head's (T, T) bias
            with the causal mask
learned     a model's position vectors (positions x channels); and their cosine similarities
t5          the learned bias of the first layer's heads against the distance to the key
"""

import math

import torch
import torch.nn.functional as F

from glassformer.config import ACTING_POSITIONS
from glassformer.errors import GlassformerError
from glassformer.inspect.plots import new_figure, save

SCHEMES = ACTING_POSITIONS  # each has a DRAW entry


def positions_figure(scheme: str, cfg, model, path, length: int | None = None):
    """Draw `scheme` for model config `cfg` (its sizes) to `path`; learned and t5 read `model`."""
    if scheme not in SCHEMES:
        raise GlassformerError(f"unknown scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")
    T = length or cfg.block_size
    fig = new_figure(10, 4)
    left, right = fig.subplots(1, 2)
    DRAW[scheme](cfg, model, T, left, right)
    fig.tight_layout()
    return save(fig, path)


def _sinusoidal(cfg, model, T, left, right):
    from glassformer.model.position import sinusoidal_table

    table = sinusoidal_table(T, cfg.n_embd)  # (T, C)
    image = left.imshow(table.T.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    left.set(title="sinusoidal PE[pos, channel]", xlabel="position", ylabel="channel")
    left.figure.colorbar(image, ax=left)
    for c in (0, 1, cfg.n_embd // 4, cfg.n_embd // 2):
        right.plot(table[:, c].numpy(), label=f"channel {c}")
    right.set(title="a few channels", xlabel="position")
    right.legend(fontsize=7)


def _rope(cfg, model, T, left, right):
    from glassformer.model.rope import Rotary

    inv_freq = Rotary(cfg.head_dim, cfg.rope_base).inv_freq  # (D/2,)
    angles = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq  # (T, D/2)
    image = left.imshow((angles % (2 * math.pi)).T.numpy(), aspect="auto", cmap="twilight")
    left.set(title="RoPE angle of pair i at position p (mod 2pi)", xlabel="position",
             ylabel="pair i")
    left.figure.colorbar(image, ax=left)
    right.semilogy((2 * math.pi / inv_freq).numpy(), "o-")
    right.axhline(T, color="grey", linestyle="--", label=f"{T} positions")
    right.set(title="wavelength of each pair", xlabel="pair i", ylabel="positions")
    right.legend(fontsize=7)


def _alibi(cfg, model, T, left, right):
    from glassformer.model.alibi import ALiBi
    from glassformer.model.masks import causal_mask

    bias = ALiBi(cfg.n_head)(T, T)  # (H, T, S)
    for h in range(cfg.n_head):
        by_distance = bias[h, -1].flip(0)  # the last query's bias at distance 0 .. T-1
        left.plot(by_distance.numpy(), label=f"head {h}")
    left.set(title="ALiBi bias -m_h * distance", xlabel="distance to the key", ylabel="bias")
    left.legend(fontsize=6, ncol=2)
    shown = bias[0].masked_fill(~causal_mask(T, T), float("nan"))  # (T, S)
    image = right.imshow(shown.numpy(), cmap="magma")
    right.set(title="head 0: bias added to the scores", xlabel="key", ylabel="query")
    right.figure.colorbar(image, ax=right)


def _learned(cfg, model, T, left, right):
    table = getattr(getattr(model.embed, "positions", None), "table", None)
    if cfg.position != "learned" or table is None:
        raise GlassformerError(f"this model has {cfg.position!r} positions, not a learned table")
    vectors = table.weight.detach().float().cpu()[:T]  # (T, C)
    image = left.imshow(vectors.T.numpy(), aspect="auto", cmap="RdBu")
    left.set(title="learned position vectors", xlabel="position", ylabel="channel")
    left.figure.colorbar(image, ax=left)
    unit = F.normalize(vectors, dim=-1)
    image = right.imshow((unit @ unit.T).numpy(), cmap="viridis", vmin=-1, vmax=1)
    right.set(title="cosine similarity of positions", xlabel="position", ylabel="position")
    right.figure.colorbar(image, ax=right)


def _t5(cfg, model, T, left, right):
    tables = [m for name, m in model.named_modules() if name.endswith("relative")]
    if cfg.position != "t5" or not tables:
        raise GlassformerError(f"this model has {cfg.position!r} positions, not T5's bias")
    with torch.no_grad():
        bias = tables[0](T, T).float().cpu()  # (H, T, S)
    for h in range(bias.size(0)):
        left.plot(bias[h, -1].flip(0).numpy(), label=f"head {h}")
    left.set(title="T5 bias (first layer), last query", xlabel="distance to the key")
    left.legend(fontsize=6, ncol=2)
    image = right.imshow(bias[0].numpy(), cmap="magma")
    right.set(title="head 0: bias added to the scores", xlabel="key", ylabel="query")
    right.figure.colorbar(image, ax=right)


DRAW = {"sinusoidal": _sinusoidal, "rope": _rope, "alibi": _alibi, "learned": _learned,
        "t5": _t5}
