"""What each attention head looks at, in words: for every head, the mean weight its queries put
on a few kinds of key, and the kind it favours.

Self-attention (S = T) kinds, each averaged over the queries where it exists:
  itself           key t for query t
  next token       key t+1 (bidirectional models)
  first token      key 0 (queries t >= 2, where it is neither itself nor the previous one)
  last 4 tokens    keys t-3 .. t together (queries t >= 4): a local head
  previous token, duplicate token, induction: the head detectors of train/detectors.py (a
                   bidirectional head's duplicates and induction keys may also lie after t)
Each line also names the key that gets the most weight averaged over all queries (a head that
parks its attention on one token, such as a newline, shows there), and cross-attention (S != T)
is described by that key alone.
"last 4 tokens" contains itself and the previous token, so it would name nearly every causal
head (it did, a 0.86 previous-token head included). A head is named by the one other kind that
gets the most weight if that holds at least MOST of it; else by "last 4 tokens" (a local head)
if they hold MOST; else by its best kind if that holds SPREAD. A head that none of
them describe is "spread out"; the entropy of its rows (in nats; ln S for uniform weights)
says how far.
"""

import math

import torch

from glassformer.train.detectors import head_scores, kind_masks

SPREAD = 0.3
MOST = 0.5


def head_kinds(w: torch.Tensor, ids: list[int]) -> dict[str, float]:
    """w (T, S) one head's weights for one sequence of token ids -> {kind: mean weight}."""
    T, S = w.shape
    t = torch.arange(T)
    causal = torch.triu(w, diagonal=1).abs().sum() == 0
    x = torch.tensor([ids])  # (1, T)
    scores = head_scores(w[None, None], x, bool(causal))  # {detector: (1,)}
    found = {kind: scores[kind].item() for kind, mask in kind_masks(x, bool(causal)).items()
             if mask.any()}  # the detectors whose kind of key some query has
    kinds = {"itself": w[t, t].mean().item()}
    if "previous token" in found:
        kinds["previous token"] = found.pop("previous token")
    if T > 1 and not causal:
        kinds["next token"] = w[t[:-1], t[:-1] + 1].mean().item()
    if T > 2:
        kinds["first token"] = w[2:, 0].mean().item()
    if T > 4:
        recent = torch.stack([w[t[4:], t[4:] - back] for back in range(4)])  # (4, T-4)
        kinds["last 4 tokens"] = recent.sum(dim=0).mean().item()
    return kinds | found  # duplicate token, induction: where they occur


def name_head(kinds: dict[str, float]) -> str:
    """The kind that names a head, from head_kinds (see the module's docstring)."""
    single = {k: v for k, v in kinds.items() if k != "last 4 tokens"}
    best = max(single, key=single.get)
    if single[best] >= MOST:
        return best
    if kinds.get("last 4 tokens", 0.0) >= MOST:
        return "last 4 tokens"
    return best if single[best] >= SPREAD else "spread out"


def entropy(w: torch.Tensor) -> float:
    """Mean entropy (nats) of the rows of w (T, S)."""
    return -(w * torch.log(w.clamp_min(1e-12))).sum(dim=-1).mean().item()


def summarise(weights: dict[str, torch.Tensor], keys: dict[str, tuple[list[int], list[str]]]
              ) -> list[str]:
    """One line per head for {module name: (B, H, T, S) weights} (batch element 0); keys
    {module name: (ids, tokens)} of its S keys (for self-attention, also its queries)."""
    lines = []
    for name, w in weights.items():
        ids, key_tokens = keys[name]
        for h in range(w.size(1)):
            head = w[0, h]  # (T, S)
            T, S = head.shape
            j = head.mean(dim=0).argmax().item()
            top = (f"top key {key_tokens[j]!r} at {j} ({head[:, j].mean():.2f}); entropy "
                   f"{entropy(head):.2f} of ln S = {math.log(S):.2f}")
            if T != S:  # cross-attention: keys come from another sequence
                lines.append(f"{name} head {h}: {top}")
                continue
            kinds = head_kinds(head, ids)
            verdict = name_head(kinds)
            detail = ", ".join(f"{k} {v:.2f}" for k, v in sorted(kinds.items(),
                                                                  key=lambda kv: -kv[1]))
            lines.append(f"{name} head {h}: {verdict} ({detail}); {top}")
    return lines
