"""The sampling lesson in one picture: the model's next-token distribution after a text, and how
temperature, top-k and top-p reshape it (the filters of glassformer/generate/filters.py, applied
in the sampler's order: temperature, then top-k, then top-p).
"""

from dataclasses import dataclass

import torch

from glassformer.generate import filters


@dataclass(frozen=True)
class Setting:
    """One way of sampling: temperature t, and optionally top-k and top-p."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0

    @property
    def label(self) -> str:
        parts = [f"T={self.temperature:g}"]
        if self.top_k is not None:
            parts.append(f"top-k {self.top_k}")
        if self.top_p < 1.0:
            parts.append(f"top-p {self.top_p:g}")
        return ", ".join(parts)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, V) -> the (B, V) distribution this setting samples from. Temperature 0 is
        greedy decoding: all the mass on the top token (the first on ties, as the sampler's)."""
        if self.temperature == 0:
            return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()
        logits = filters.temperature(logits, self.temperature)
        if self.top_k is not None:
            logits = filters.top_k(logits, self.top_k)
        logits = filters.top_p(logits, self.top_p)
        return torch.softmax(logits.float(), dim=-1)


@torch.no_grad()
def next_logits(model, ids: list[int]) -> torch.Tensor:
    """The model's logits (1, V) for the token after `ids` (the last block_size of them)."""
    context = torch.tensor([ids[-model.cfg.block_size:]])  # (1, T)
    logits, _ = model(context)  # (1, T, V)
    return logits[:, -1, :]  # (1, V)


def candidates(logits: torch.Tensor, decode, settings: list[Setting], top: int = 10) -> list[dict]:
    """The `top` most likely tokens at temperature 1, each {token, id, probs: {label: p}} with its
    probability under every setting (0 where a filter removed it)."""
    dists = {s.label: s.probabilities(logits)[0] for s in settings}  # label -> (V,)
    base = torch.softmax(logits.float(), dim=-1)[0]  # (V,)
    best = base.topk(min(top, base.numel())).indices.tolist()
    return [{"token": decode([i]), "id": i, "probs": {k: d[i].item() for k, d in dists.items()}}
            for i in best]


def kept(logits: torch.Tensor, setting: Setting) -> int:
    """How many tokens a setting leaves a chance."""
    return int((setting.probabilities(logits)[0] > 0).sum())


def format_candidates(rows: list[dict], settings: list[Setting], logits) -> str:
    labels = [s.label for s in settings]
    width = max(len(label) for label in labels) + 2
    lines = ["token     id" + "".join(f"{label:>{width}}" for label in labels)]
    for row in rows:
        token = repr(row["token"])
        lines.append(f"{token:<8}{row['id']:>4}" + "".join(f"{row['probs'][label]:>{width}.3f}"
                                                           for label in labels))
    lines.append("kept    " + "    " + "".join(f"{kept(logits, s):>{width}}" for s in settings))
    return "\n".join(lines)
