"""Attention masks. Convention everywhere: a bool tensor, True where a query MAY attend a key
(the same as torch's scaled_dot_product_attention). Masked scores become -inf before the softmax,
so masked keys get exactly zero weight.
"""

import torch


def causal_mask(T: int, S: int, device=None, window: int | None = None) -> torch.Tensor:
    """(T, S): query i, the last T of S positions, sees keys up to and including itself, and
    with a sliding `window` only the last `window` of those.

    With a KV cache the T new queries sit at absolute positions S-T .. S-1.
    """
    q_pos = torch.arange(S - T, S, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
    if window is None:
        return k_pos <= q_pos  # (T, S)
    return (k_pos <= q_pos) & (k_pos > q_pos - window)  # (T, S)


def padding_mask(key_valid: torch.Tensor) -> torch.Tensor:
    """(B, S) True for real tokens -> (B, 1, 1, S), broadcast over heads and queries."""
    return key_valid[:, None, None, :]


def combine(T: int, S: int, causal: bool, pad: torch.Tensor | None, device=None,
            window: int | None = None):
    """The full mask for T queries over S keys (causal, within `window` if given), or None
    when nothing is masked.

    With padding, every query also sees itself: a padding query (left padding in a batch of
    prompts) would otherwise see no key at all and its softmax would be NaN. Real queries already
    see themselves, so their outputs do not change.
    """
    mask = causal_mask(T, S, device, window) if causal else None  # (T, S)
    if pad is None:
        return mask
    mask = pad if mask is None else pad & mask  # (B, 1, T, S) or (B, 1, 1, S)
    own = torch.arange(S, device=device)[None, :] == torch.arange(S - T, S, device=device)[:, None]
    return mask | own  # (B, 1, T, S)
