"""Autoregressive generation with a KV cache: prefill the prompts once, then one position per token.

A batch of prompts is LEFT-padded into one (B, S) block, so every row's next token sits in the
last column. key_valid (B, S) hides the pads from attention and each row's positions start at 0
at its first real token, so a prompt gives the same tokens in a batch as alone (exactly when
greedy; a sample also depends on the other rows, which share one random generator).

Sliding window: a row whose view would pass block_size tokens is cut to its last
block_size * 3 // 4 tokens; the cache is then rebuilt by prefilling every row's view again
(positions restart at 0). A prompt longer than the window is cut the same way.
"""

from bisect import bisect_left
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from typing import Literal

import torch

from glassformer.errors import GlassformerError
from glassformer.generate import filters
from glassformer.generate.lookup import lookup_steps
from glassformer.model.kv_cache import KVCache


def generate(model, tokenizer, prompts: list[str], cfg) -> list[str]:
    """The continuation of each prompt (without the prompt), all prompts in one batch.

    A row ends at its first stop string (cut before it) or after cfg.max_new_tokens tokens.
    """
    rows = [_encode(tokenizer, prompt) for prompt in prompts]
    if not rows:
        return []
    new = [[] for _ in rows]  # generated ids per row
    done = [False] * len(rows)
    # closing(): the model gets its training mode back as soon as we stop, not at garbage collection
    with closing(_steps(model, rows, cfg)) as steps:
        for next_ids, _ in islice(steps, cfg.max_new_tokens):
            for row, token in enumerate(next_ids.tolist()):
                if not done[row]:
                    new[row].append(token)
                    if cfg.stop:  # decoding the row's text each step only when it can stop early
                        done[row] = _stop_index(tokenizer.decode(new[row]), cfg.stop) is not None
            if all(done):
                break
    texts = [tokenizer.decode(ids) for ids in new]
    return [text[:_stop_index(text, cfg.stop)] for text in texts]  # [:None] keeps all


@dataclass(frozen=True)
class Finish:
    """How a stream ended: at a stop string ("stop") or after max_new_tokens ("length")."""

    reason: Literal["stop", "length"]
    tokens: int
    """Tokens generated (a stop string's own tokens included)."""


@dataclass(frozen=True)
class Piece:
    """A piece of a streamed text, and the tokens that first complete it."""

    text: str
    ids: list[int]
    """The tokens, not in an earlier piece, that the text up to this piece's end needs (text
    held back as the start of a possible stop string comes later with its tokens; a stop
    string's own tokens come in no piece). May be empty: one token can make two pieces' text."""
    logits: list[torch.Tensor]
    """(V,) each: the model's logits that each of `ids` was drawn from, before the penalties
    and the sampling filters."""


def stream(model, tokenizer, prompt: str, cfg) -> Generator[str, None, Finish]:
    """Yield the continuation of `prompt` piece by piece as tokens come; the pieces joined equal
    generate(...)[0] for the same seed. Text that might begin a stop string is held back until
    it does not, so a stop string is never yielded. The generator returns a Finish (the value
    of its StopIteration; a for loop ignores it). The texts of stream_pieces(...).
    """
    with closing(stream_pieces(model, tokenizer, prompt, cfg)) as pieces:
        while True:
            try:
                piece = next(pieces)
            except StopIteration as done:
                return done.value
            yield piece.text


def stream_pieces(model, tokenizer, prompt: str, cfg) -> Generator[Piece, None, Finish]:
    """stream(...), each piece a Piece: its text with the tokens behind it and their logits.

    Each step decodes only the newest tokens, after the few before them for context (a tokenizer
    may join or space tokens differently at the start of a text). Only whole characters are
    shown: a byte-level BPE token can end inside a character, whose decode ends in U+FFFD until
    the tokens with its other bytes come.
    """
    rows = [_encode(tokenizer, prompt)]
    new, text = [], ""  # generated ids; their text so far
    chars = [0]  # chars[n]: the length of the text the first n generated tokens made
    shown = given = 0  # characters of the text, and tokens, in the pieces so far
    logits = []  # the logits (V,) before each of new[given:] (a piece takes its tokens' away)
    start = read = 0  # new[start:read] was decoded last step (the context); new[read:] was not

    def piece(end: int, tokens: int | None = None) -> Piece:
        """text[shown:end], with the tokens after the given ones up to `tokens` (default: the
        fewest whose text reaches `end` characters)."""
        nonlocal shown, given
        tokens = bisect_left(chars, end) if tokens is None else tokens
        out = Piece(text[shown:end], new[given:tokens], logits[:tokens - given])
        del logits[:tokens - given]
        shown, given = end, tokens
        return out

    with closing(_steps(model, rows, cfg)) as steps:
        for next_ids, next_logits in islice(steps, cfg.max_new_tokens):
            new.append(next_ids.item())
            logits.append(next_logits[0])
            context = tokenizer.decode(new[start:read])
            fresh = tokenizer.decode(new[start:])
            if fresh.endswith("\ufffd"):  # a character's remaining bytes are still to come
                continue
            text += fresh[len(context):]
            start, read = read, len(new)
            chars += [chars[-1]] * (len(new) - len(chars)) + [len(text)]
            stop = _stop_index(text, cfg.stop)
            safe = len(text) - _partial_stop(text, cfg.stop) if stop is None else stop
            if safe > shown:
                yield piece(safe)
            if stop is not None:
                return Finish("stop", len(new))
    text = tokenizer.decode(new)  # no stop string came: release what was held back
    chars += [len(text)] * (len(new) + 1 - len(chars))  # tokens of a cut-off last character
    stop = _stop_index(text, cfg.stop)  # (text held back as a cut-off character may hold one)
    end = len(text) if stop is None else stop
    if end > shown:
        yield piece(end, len(new) if stop is None else None)
    return Finish("length" if stop is None else "stop", len(new))


def _steps(model, rows: list[list[int]], cfg) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The next ids (B,) and their logits (B, V), step after step: by prompt lookup for one
    prompt when cfg.prompt_lookup asks for it, else one token per forward pass."""
    if cfg.prompt_lookup and len(rows) == 1:
        return lookup_steps(model, rows[0], cfg.prompt_lookup)
    return _decode_steps(model, rows, cfg, _generator(cfg.seed, model))


@torch.inference_mode()
def _decode_steps(model, rows: list[list[int]], cfg,
                  generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield, step after step without end, the (B,) next ids of the prompts `rows` and the
    model's logits (B, V) they were drawn from, before the penalties and the filters.

    The repetition penalty sees each row's whole context (prompt + generated, pads excluded);
    the presence and frequency penalties see the generated tokens only.
    """
    window = model.cfg.block_size
    keep = max(1, window * 3 // 4)
    device = next(model.parameters()).device
    lengths = [_fit(len(row), window, keep) for row in rows]  # tokens the model sees, per row
    context, context_valid = _left_pad([torch.tensor(row) for row in rows], device)  # (B, L)
    prompt_width = context.size(1)  # context[:, prompt_width:] is what was generated
    training = model.training
    model.eval()
    try:
        logits, cache, valid = _prefill(model, context, lengths)  # (B, V), cache, (B, S) or None
        while True:
            scores = filters.repetition_penalty(logits, context, cfg.repetition_penalty,
                                                context_valid)  # (B, V)
            scores = filters.presence_frequency_penalty(
                scores, context[:, prompt_width:], cfg.presence_penalty, cfg.frequency_penalty)
            next_ids = filters.next_token(scores, cfg, generator)  # (B,)
            yield next_ids, logits
            context = torch.cat([context, next_ids[:, None]], dim=1)  # (B, L + 1)
            context_valid = _append_true(context_valid)  # (B, L + 1)
            lengths = [_fit(n + 1, window, keep) for n in lengths]
            if cache.length == window:  # no room for the new token: slide the window
                logits, cache, valid = _prefill(model, context, lengths)
                continue
            positions = None  # without pads: the default, cache.length
            if valid is not None:
                valid = _append_true(valid)  # (B, S + 1)
                positions = valid.sum(dim=1, keepdim=True) - 1  # (B, 1) real tokens before it
            logits, _ = model(next_ids[:, None], positions=positions, key_valid=valid, cache=cache)
            logits = logits[:, -1].float()  # (B, V)
    finally:
        model.train(training)


def _prefill(model, context, lengths: list[int]):
    """Run the last lengths[b] tokens of each context row (B, L) through a fresh KV cache.

    Returns the next-token logits (B, V), the cache, and key_valid (B, S) (None without pads).
    """
    param = next(model.parameters())
    S = max(lengths)
    valid = positions = None  # no pads: default positions, no mask (attention's fast path)
    if min(lengths) < S:
        starts = torch.tensor([S - n for n in lengths], device=context.device)  # (B,) pads
        valid = torch.arange(S, device=context.device)[None, :] >= starts[:, None]  # (B, S)
        positions = (valid.cumsum(dim=1) - 1).clamp(min=0)  # (B, S), 0 at each first real token
    cache = KVCache(model.cfg, context.size(0), param.device, param.dtype)
    logits, _ = model(context[:, -S:], positions=positions, key_valid=valid, cache=cache)
    return logits[:, -1].float(), cache, valid


def _left_pad(rows: list[torch.Tensor], device):
    """Rows of ids of different lengths -> ids (B, L) padded on the left with 0, valid (B, L)."""
    L = max(len(row) for row in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long, device=device)
    valid = torch.zeros(len(rows), L, dtype=torch.bool, device=device)
    for b, row in enumerate(rows):
        ids[b, L - len(row):] = row
        valid[b, L - len(row):] = True
    return ids, valid


def _append_true(valid):
    """(B, S) -> (B, S + 1) with a True column on the right."""
    return torch.cat([valid, valid.new_ones(valid.size(0), 1)], dim=1)


def _fit(n: int, window: int, keep: int) -> int:
    """Tokens of a row the model sees when it has n: all of them, or `keep` past the window."""
    return keep if n > window else n


def _encode(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids; an empty prompt is an error (there would be nothing to predict from)."""
    ids = tokenizer.encode(prompt)  # unknown characters: the tokenizer's own error
    if not ids:
        raise GlassformerError("the prompt is empty; give at least one token, e.g. a newline")
    return ids


def _generator(seed: int | None, model) -> torch.Generator:
    """A generator on the model's device, seeded with `seed` or, for None, a fresh random seed."""
    generator = torch.Generator(next(model.parameters()).device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _stop_index(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the first stop string in `text` begins, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is the start of a stop string."""
    return max((n for s in stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
