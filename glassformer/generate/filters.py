"""Pure functions on next-token logits (B, V): penalties, temperature, top-k, top-p, the pick.

No model and no state: each takes logits and returns new ones (the input is never modified).
Filtered-out tokens get -inf, so the softmax gives them exactly zero probability.
"""

import torch
import torch.nn.functional as F

# A set whose probabilities sum to within this of p counts as reaching p (float32 sums drift).
TOP_P_TOLERANCE = 1e-6


def repetition_penalty(logits, context, penalty: float, context_valid=None):
    """logits (B, V); context (B, L) ids; context_valid (B, L) bool or None -> (B, V).

    The CTRL rule (as Hugging Face's RepetitionPenaltyLogitsProcessor): the logit of every id in
    a row's context is divided by `penalty` if positive, multiplied by it if negative; once per
    id, however often it occurs. Positions where context_valid is False (padding) do not count.
    """
    if penalty == 1.0:
        return logits
    valid = torch.ones_like(context, dtype=torch.bool) if context_valid is None else context_valid
    counts = torch.zeros_like(logits).scatter_add_(1, context, valid.to(logits.dtype))  # (B, V)
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)  # (B, V)
    return torch.where(counts > 0, penalized, logits)


def presence_frequency_penalty(logits, generated, presence: float, frequency: float):
    """logits (B, V); generated (B, N) ids -> (B, V), by OpenAI's rule:

        logits[j] -= frequency * count[j] + presence * (count[j] > 0)

    where count[j] is how often id j occurs among the row's GENERATED tokens (its prompt does
    not count): OpenAI's definition, "how many times the token was sampled prior to the current
    position", so a penalty steers the text away from what it has itself said. (The repetition
    penalty is the one that sees the prompt too.) Positive values discourage repeats, negative
    ones encourage them; 0 and 0 leave the logits as they are.
    """
    if presence == 0 and frequency == 0:
        return logits
    ones = torch.ones_like(generated, dtype=logits.dtype)  # (B, N)
    counts = torch.zeros_like(logits).scatter_add_(1, generated, ones)  # (B, V)
    return logits - (frequency * counts + presence * (counts > 0).to(logits.dtype))


def temperature(logits, t: float):
    """logits (B, V) / t -> (B, V): t < 1 sharpens the distribution, t > 1 flattens it.

    A tiny t (1e-45, say) takes logits / t past the float range: inf, and the softmax of a row
    with inf in it is nan. Such a row is divided after shifting it by its largest logit instead
    (the softmax does not change under a shift): its top logits become 0 and the others -inf
    or far below, the near-greedy distribution t approaches. Every other row is exactly
    logits / t, bit for bit. (-inf logits, filtered out before, stay -inf either way.)
    """
    if t <= 0:
        raise ValueError(f"temperature must be positive, got {t}; use greedy decoding for 0")
    scaled = logits / t  # (B, V)
    overflow = (torch.isinf(scaled) & torch.isfinite(logits)).any(dim=-1, keepdim=True)  # (B, 1)
    shifted = (logits - logits.max(dim=-1, keepdim=True).values) / t  # (B, V), at most 0
    return torch.where(overflow, shifted, scaled)


def top_k(logits, k: int):
    """logits (B, V) -> (B, V) with all but the k largest per row set to -inf.

    Exactly k survive: among equal logits the lower id ranks first.
    """
    if k >= logits.size(-1):
        return logits
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices  # (B, V)
    return logits.scatter(1, order[:, k:], float("-inf"))


def top_p(logits, p: float):
    """logits (B, V) -> (B, V) keeping the smallest set of top tokens whose probabilities sum
    to >= p (the nucleus); the rest -inf. The top token always stays; among equal logits the
    lower id ranks first."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)  # (B, V) each
    probs = torch.softmax(sorted_logits.float(), dim=-1)  # (B, V)
    before = probs.cumsum(dim=-1) - probs  # (B, V) probability of the better-ranked tokens
    drop = before >= p - TOP_P_TOLERANCE  # (B, V) the set already reached p without this one
    drop[:, 0] = False
    drop = torch.zeros_like(drop).scatter(1, order, drop)  # (B, V) back in id order
    return logits.masked_fill(drop, float("-inf"))


def distribution(logits, cfg):
    """logits (B, V) -> the (B, V) probabilities the next token is drawn from under `cfg` (a
    SampleConfig): temperature, then top-k, then top-p, then the softmax. The one filter chain
    of the sampler, `glassformer inspect next` and the playground. Temperature 0 is greedy
    decoding: all the mass on the top token (the first on ties)."""
    if cfg.temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()
    logits = temperature(logits, cfg.temperature)
    if cfg.top_k is not None:
        logits = top_k(logits, cfg.top_k)
    logits = top_p(logits, cfg.top_p)
    return torch.softmax(logits.float(), dim=-1)


def next_token(logits, cfg, generator=None):
    """logits (B, V) -> (B,) int64 ids: argmax for temperature 0, else a sample from
    distribution(logits, cfg) (the penalties come before)."""
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)  # the first maximum on ties
    return torch.multinomial(distribution(logits, cfg), 1, generator=generator).squeeze(1)
