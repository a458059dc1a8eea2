"""Prompt-lookup decoding (Saxena, 2023): greedy decoding that guesses several tokens at once by
copying from its own context, and checks the guesses in one forward pass.

Text repeats itself: a name, a line of code, a phrase of the prompt. After each token t, the
context's last n tokens (n = NGRAM, then shorter) are looked up earlier in the context; the
tokens that followed their latest earlier occurrence are the draft d_1 .. d_k. One forward pass
over [t, d_1, .., d_k] gives the model's greedy choice after each of them: d_i is kept while it
equals the choice after d_{i-1} (after t for d_1), and the first choice that differs comes free.
A pass costs about as much as one token (decoding reads the weights once either way) and yields
from 1 to k + 1 tokens, each the one plain greedy decoding picks; the KV cache forgets the
rejected drafts. Nothing to train, no second model.

Greedy only, one prompt at a time: sampler.py uses it when SampleConfig.prompt_lookup > 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from glassformer.model.kv_cache import KVCache

NGRAM = 3  # longest context tail looked up


def draft(context: list[int], k: int) -> list[int]:
    """Up to `k` tokens that followed the latest earlier occurrence of the context's last n
    tokens, for the longest n <= NGRAM that occurs; [] when none does."""
    for n in range(min(NGRAM, len(context) - 1), 0, -1):
        tail = context[-n:]
        for start in range(len(context) - n - 1, -1, -1):  # latest first, before the tail
            if context[start:start + n] == tail:
                return context[start + n:start + n + k]
    return []


@torch.inference_mode()
def lookup_steps(model, prompt: list[int], k: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield, without end, each next greedy id (1,) after `prompt` and the logits (1, V) it was
    picked from, drafting up to `k` tokens per forward pass. The window slides as in
    sampler._decode_steps: a context past block_size is cut to its last 3/4 and prefilled."""
    window = model.cfg.block_size
    keep = max(1, window * 3 // 4)
    param = next(model.parameters())
    context = list(prompt)

    def prefill():
        cache = KVCache(model.cfg, 1, param.device, param.dtype)
        seen = context[-keep:] if len(context) > window else context
        logits, _ = model(torch.tensor([seen], device=param.device), cache=cache)
        return logits[:, -1].float(), cache  # (1, V)

    training = model.training
    model.eval()
    try:
        logits, cache = prefill()
        while True:
            token = logits.argmax(dim=-1)  # (1,)
            yield token, logits
            context.append(token.item())
            if cache.length == window:  # no room for the new token: slide the window
                logits, cache = prefill()
                continue
            start = cache.length
            guess = draft(context, min(k, window - start - 1))  # [t, guess] must fit
            ids = torch.tensor([[context[-1], *guess]], device=param.device)  # (1, 1 + g)
            out = model(ids, cache=cache)[0][0].float()  # (1 + g, V): the choice after each
            choices = out.argmax(dim=-1).tolist()
            kept = 0
            while kept < len(guess) and guess[kept] == choices[kept]:
                yield out[kept].argmax(dim=-1, keepdim=True), out[kept:kept + 1]
                context.append(guess[kept])
                kept += 1
            cache.truncate(start + 1 + kept)  # t and the kept drafts; the rest is forgotten
            logits = out[kept:kept + 1]  # (1, V): the choice after the last kept token
    finally:
        model.train(training)
