"""Head detectors: a score per head for three kinds of head that in-context learning is built from
(Olsson et al. 2022, "In-context learning and induction heads"), and the induction loss.

For a query at position t of token ids x, each score is the attention weight the head puts on
the keys j < t of one kind, averaged over the queries that have such a key:

  previous token   j = t - 1
  duplicate token  x_j = x_t                (an earlier copy of the current token)
  induction        x_{j-1} = x_t            (the token after an earlier copy: what came next
                                             last time, which an induction head copies)

1 means the head puts all its weight there. On a sequence of n random tokens repeated twice the
second half is predictable only by looking back, so a model with induction heads gets a low
loss there (the in-context loss) while the first half stays high (near ln K for K tokens).

The random tokens are drawn from those the training text uses often (common_tokens): a
character corpus holds ids seen a handful of times ('/' twice in Shakespeare), whose untrained
embeddings no head can be expected to match or copy.
"""

import numpy as np
import torch

from glassformer.model.hooks import run_with_cache
from glassformer.model.stack import cross_entropy

DETECTORS = ("previous token", "duplicate token", "induction")


def kind_masks(ids: torch.Tensor, causal: bool = True) -> dict[str, torch.Tensor]:
    """ids (B, T) -> {detector: (B, T, T) bool}, True at (query t, key j) of that kind. A
    bidirectional head (causal False) may also find duplicates and induction keys at j > t."""
    B, T = ids.shape
    eye = torch.eye(T, dtype=torch.bool)
    others = torch.ones(T, T, dtype=torch.bool).tril(-1) if causal else ~eye  # j < t, or j != t
    same = ids[:, :, None] == ids[:, None, :]  # (B, T, T): x_t == x_j
    after_same = torch.zeros_like(same)
    after_same[:, :, 1:] = same[:, :, :-1]  # x_t == x_{j-1}
    previous = torch.zeros(T, T, dtype=torch.bool)
    previous[torch.arange(1, T), torch.arange(T - 1)] = True
    return {"previous token": previous.expand(B, T, T),
            "duplicate token": same & others,
            "induction": after_same & others}


def head_scores(pattern: torch.Tensor, ids: torch.Tensor, causal: bool = True
                ) -> dict[str, torch.Tensor]:
    """pattern (B, H, T, T) one layer's attention weights on ids (B, T) -> {detector: (H,)}."""
    scores = {}
    for kind, mask in kind_masks(ids, causal).items():
        on_kind = (pattern * mask[:, None]).sum(dim=-1)  # (B, H, T) weight on keys of the kind
        has = mask.any(dim=-1)[:, None].expand_as(on_kind)  # (B, H, T) queries that have one
        scores[kind] = (on_kind * has).sum(dim=(0, 2)) / has.sum(dim=(0, 2)).clamp_min(1)
    return scores


@torch.no_grad()
def detect(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """{detector: (L, H) scores} of a GPT's heads on ids (B, T)."""
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(model.cfg.n_layer)]
    _, cache = run_with_cache(model, ids, names=names)
    per_layer = [head_scores(cache[name], ids) for name in names]
    return {kind: torch.stack([s[kind] for s in per_layer]) for kind in DETECTORS}


MIN_SHARE = 1e-4  # common_tokens: an id at least once in 10,000 tokens


def common_tokens(tokens: np.ndarray, min_share: float = MIN_SHARE) -> torch.Tensor:
    """The ids (K,) that make up at least `min_share` of `tokens` (N,), a text's ids."""
    counts = np.bincount(tokens)
    return torch.from_numpy(np.flatnonzero(counts >= min_share * len(tokens)))


def repeated_tokens(pool: torch.Tensor, n: int, batch: int, seed: int = 0) -> torch.Tensor:
    """(batch, 2n) ids: n tokens drawn uniformly from the ids `pool` (K,), then the same n
    again."""
    g = torch.Generator().manual_seed(seed)
    half = pool[torch.randint(len(pool), (batch, n), generator=g)]  # (batch, n)
    return torch.cat([half, half], dim=1)


@torch.no_grad()
def induction_loss(model, ids: torch.Tensor) -> tuple[float, float]:
    """(first half, second half) mean next-token loss of a GPT on repeated_tokens ids (B, 2n):
    each half's predictions of its own tokens (the first token of each half excluded)."""
    n = ids.size(1) // 2
    logits, _ = model(ids)  # (B, 2n, V)
    targets = ids[:, 1:].clone()  # position t predicts t + 1
    first, second = targets.clone(), targets.clone()
    first[:, n - 1:] = -1  # targets 1 .. n-1
    second[:, :n] = -1  # targets n+1 .. 2n-1
    return (cross_entropy(logits[:, :-1], first).item(),
            cross_entropy(logits[:, :-1], second).item())


def track(model, pool: torch.Tensor, n: int, batch: int = 8, seed: int = 0) -> dict[str, float]:
    """What `--train.track_heads` logs at each evaluation, on `batch` sequences of n tokens
    drawn from `pool` (K,) and repeated: the best head's induction score, and the loss of each
    half."""
    was_training = model.training
    model.eval()
    try:
        ids = repeated_tokens(pool, n, batch, seed).to(next(model.parameters()).device)
        first, second = induction_loss(model, ids)
        score = detect(model, ids)["induction"].max().item()
    finally:
        model.train(was_training)
    return {"induction_score": score, "random_loss": first, "in_context_loss": second}
