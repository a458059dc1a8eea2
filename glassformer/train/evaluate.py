"""Loss on held-out text, every token of it: `glassformer eval` (quick estimates during training
live in train/tasks.py)."""

import math

import torch


@torch.no_grad()
def evaluate_tokens(model, tokens, batch_size: int = 16, device="cpu", n_chars=None) -> dict:
    """Loss over every token of `tokens`, predicted in consecutive windows of block_size.

    Returns loss (nats per token), perplexity (e^loss), bits per character (total nats / ln 2 /
    characters; `n_chars` defaults to the token count, right for a char tokenizer) and tokens.
    """
    model.eval()
    T = model.cfg.block_size
    ids = torch.from_numpy(tokens.astype("int64"))  # (N,)
    n_targets = len(ids) - 1
    windows = [(s, min(T, n_targets - s)) for s in range(0, n_targets, T)]
    nats = 0.0
    for i in range(0, len(windows), batch_size):
        for n in sorted({n for _, n in windows[i:i + batch_size]}):  # the last window is shorter
            starts = [s for s, m in windows[i:i + batch_size] if m == n]
            x = torch.stack([ids[s:s + n] for s in starts]).to(device)  # (B, n)
            y = torch.stack([ids[s + 1:s + 1 + n] for s in starts]).to(device)  # (B, n)
            nats += model(x, y)[1].item() * y.numel()
    n_chars = n_chars or n_targets
    return {"loss": nats / n_targets, "perplexity": math.exp(nats / n_targets),
            "bits_per_char": nats / math.log(2) / n_chars, "tokens": n_targets}
