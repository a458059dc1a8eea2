"""The sampling lesson in one picture: the model's next-token distribution after a text, and how
temperature, top-k and top-p reshape it (the sampler's own filter chain,
glassformer/generate/filters.py `distribution`: temperature, then top-k, then top-p).

A setting is a SampleConfig; RAW is the model's own distribution (temperature 1, no filter).
"""

import torch

from glassformer.config import SampleConfig
from glassformer.errors import GlassformerError
from glassformer.generate import filters

RAW = SampleConfig(temperature=1.0)


def label(setting: SampleConfig) -> str:
    """A setting's sampling filters in a few words, e.g. "T=0.7, top-k 5"."""
    parts = [f"T={setting.temperature:g}"]
    if setting.top_k is not None:
        parts.append(f"top-k {setting.top_k}")
    if setting.top_p < 1.0:
        parts.append(f"top-p {setting.top_p:g}")
    return ", ".join(parts)


@torch.no_grad()
def next_logits(model, ids: list[int]) -> torch.Tensor:
    """The model's logits (1, V) for the token after `ids` (the last block_size of them)."""
    context = torch.tensor([ids[-model.cfg.block_size:]])  # (1, T)
    logits, _ = model(context)  # (1, T, V)
    if logits.dim() != 3 or logits.size(-1) != model.cfg.vocab_size:
        raise GlassformerError(f"this {model.cfg.family} model has no head over its vocabulary "
                               "(a classifier or a plain encoder) to rank next tokens with")
    return logits[:, -1, :]  # (1, V)


def candidates(logits: torch.Tensor, decode, settings: list[SampleConfig],
               top: int = 10) -> list[dict]:
    """The `top` most likely tokens at temperature 1, each {token, id, probs: {label: p}} with its
    probability under every setting (0 where a filter removed it)."""
    dists = {label(s): filters.distribution(logits, s)[0] for s in settings}  # label -> (V,)
    base = torch.softmax(logits.float(), dim=-1)[0]  # (V,)
    best = base.topk(min(top, base.numel())).indices.tolist()
    return [{"token": decode([i]), "id": i, "probs": {k: d[i].item() for k, d in dists.items()}}
            for i in best]


def kept(logits: torch.Tensor, setting: SampleConfig) -> int:
    """How many tokens a setting leaves a chance."""
    return int((filters.distribution(logits, setting)[0] > 0).sum())


def format_candidates(rows: list[dict], settings: list[SampleConfig], logits) -> str:
    names = [label(s) for s in settings]
    width = max(len(name) for name in names) + 2
    lines = ["token     id" + "".join(f"{name:>{width}}" for name in names)]
    for row in rows:
        token = repr(row["token"])
        lines.append(f"{token:<8}{row['id']:>4}" + "".join(f"{row['probs'][name]:>{width}.3f}"
                                                           for name in names))
    lines.append("kept    " + "    " + "".join(f"{kept(logits, s):>{width}}" for s in settings))
    return "\n".join(lines)
