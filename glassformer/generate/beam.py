"""Decoding an encoder-decoder: greedy and beam search, both with the decoder's KV cache (each
step feeds one new token) and the cross-attention keys/values computed once per source (the
first step stores them in the cache).

Beam search keeps, for each source, the K most likely partial targets (beams) by summed log
probability. Each step extends every beam by every token and keeps the best 2K extensions: an
extension by [EOS] among the best K is a finished hypothesis, scored score / length **
length_penalty (length_penalty > 0 favours longer outputs), and the best K others continue. A
source is done when it has K finished hypotheses and no live beam could beat the worst of them
(Hugging Face's early_stopping=False rule); the best finished one wins.
"""

from __future__ import annotations

import torch

from glassformer.data.seq2seq import pad
from glassformer.errors import GlassformerError
from glassformer.model.kv_cache import KVCache
from glassformer.tokenizers.special import BOS, EOS, PAD


def _start(model, src, src_valid, rows: int):
    """Encode the sources and set up a cache for `rows` decoder rows."""
    memory = model.encode(src, src_valid)  # (B, S, C)
    return memory, KVCache(model.cfg, rows, src.device, memory.dtype)


@torch.no_grad()
def greedy(model, src, src_valid, max_len: int | None = None, *, start: int = BOS,
           end: int | None = EOS) -> list[list[int]]:
    """src (B, S), src_valid (B, S) -> the most likely token at each step until `end`, per row
    (without `start` and `end`). The decoder starts from `start`: our [BOS], or T5's pad (0,
    with end 1, its </s>); end None: always max_len tokens."""
    max_len = min(max_len or model.cfg.block_size, model.cfg.block_size)
    B = src.size(0)
    memory, cache = _start(model, src, src_valid, B)
    step = torch.full((B, 1), start, device=src.device)  # (B, 1)
    out, done = [], torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logits = model.decode(step, memory, src_valid, cache=cache)  # (B, 1, V)
        step = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out.append(step[:, 0])
        if end is not None:
            done |= step[:, 0] == end
        if done.all() or cache.length == model.cfg.block_size:
            break
    tokens = torch.stack(out, 1).tolist()  # (B, steps)
    return [row[:row.index(end)] if end in row else row for row in tokens]


@torch.no_grad()
def beam_search(model, src, src_valid, beam: int = 4, length_penalty: float = 1.0,
                max_len: int | None = None) -> list[list[int]]:
    """src (B, S), src_valid (B, S) -> the best finished hypothesis per source (ids without
    [BOS]/[EOS]); a source with none finished within max_len gets its best beam."""
    max_len = min(max_len or model.cfg.block_size, model.cfg.block_size)
    B, K, dev = src.size(0), beam, src.device
    rows = torch.arange(B, device=dev).repeat_interleave(K)  # (B*K,) the source of each row
    memory, cache = _start(model, src[rows], src_valid[rows], B * K)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start equal: expand only the first at step one
    seqs = torch.full((B * K, 0), PAD, dtype=torch.long, device=dev)  # (B*K, steps so far)
    step = torch.full((B * K, 1), BOS, device=dev)
    finished = [[] for _ in range(B)]  # per source: the K best (normalised score, ids)
    done = [False] * B
    for t in range(1, max_len + 1):
        logits = model.decode(step, memory, src_valid[rows], cache=cache)  # (B*K, 1, V)
        logp = torch.log_softmax(logits[:, -1].float(), -1)  # (B*K, V)
        V = logp.size(-1)
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)  # (B, K*V)
        top, index = cand.topk(2 * K, dim=1)  # (B, 2K): enough to leave K that are not [EOS]
        parent, token = index // V, index % V  # (B, 2K) beam and token of each candidate
        keep_score = torch.full((B, K), float("-inf"), device=dev)
        keep_row = (torch.arange(B, device=dev) * K)[:, None].repeat(1, K)  # (B, K)
        keep_token = torch.full((B, K), PAD, dtype=torch.long, device=dev)
        for b in range(B):
            if done[b]:
                continue  # its rows keep decoding padding, unused
            kept = 0
            for rank, (score, p, tok) in enumerate(zip(top[b].tolist(), parent[b].tolist(),
                                                       token[b].tolist())):
                if score == float("-inf") or kept == K:
                    break
                if tok != EOS:
                    keep_score[b, kept], keep_row[b, kept] = score, b * K + p
                    keep_token[b, kept] = tok
                    kept += 1
                elif rank < K:  # an ending counts only if it ranks among the K best
                    hypothesis = (score / t ** length_penalty, seqs[b * K + p].tolist())
                    finished[b] = sorted(finished[b] + [hypothesis], reverse=True)[:K]
            # Done once K endings are in and no live beam, scored as if it ended now, beats
            # the worst of them (Hugging Face's early_stopping=False rule).
            done[b] = (len(finished[b]) == K and
                       keep_score[b].max().item() / t ** length_penalty <= finished[b][-1][0])
        if all(done):
            break
        order = keep_row.view(-1)  # (B*K,) the parent row of each new beam
        cache.reorder(order)
        seqs = torch.cat([seqs[order], keep_token.view(-1, 1)], dim=1)
        scores, step = keep_score, keep_token.view(-1, 1)
        if cache.length == model.cfg.block_size:
            break
    best = []
    for b in range(B):
        if finished[b]:
            best.append(finished[b][0][1])
        else:  # nothing ended within max_len: the best beam so far
            best.append(seqs[b * K + scores[b].argmax().item()].tolist())
    return best


def translate(model, tokenizer, sources: list[str], beam: int = 1, length_penalty: float = 1.0,
              batch_size: int = 256) -> list[str]:
    """Decode each source string: greedy for beam 1, else beam search."""
    device = next(model.parameters()).device
    too_long = [s for s in sources if not 0 < len(tokenizer.encode(s)) <= model.cfg.block_size]
    if too_long:
        raise GlassformerError(f"{too_long[0]!r}: a source needs 1 to {model.cfg.block_size} "
                               "tokens (the model's block_size)")
    model.eval()
    out = []
    for i in range(0, len(sources), batch_size):
        src = pad([tokenizer.encode(s) for s in sources[i:i + batch_size]], PAD).to(device)
        valid = src != PAD
        ids = (greedy(model, src, valid) if beam == 1
               else beam_search(model, src, valid, beam, length_penalty))
        out += [tokenizer.decode(row) for row in ids]
    return out
