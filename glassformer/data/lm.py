"""Language-model data: the text encoded once into a flat token file, split, and cut into batches.

Shapes: B batch, T block length (block_size).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from glassformer.atomic import atomic_path
from glassformer.data.corpora import cache_dir
from glassformer.data.shards import token_dtype
from glassformer.errors import GlassformerError


def encode_to_file(text: str, tokenizer, path) -> None:
    """Encode `text` and write its ids to `path` as raw `token_dtype` values (no header)."""
    ids = np.array(tokenizer.encode(text), dtype=token_dtype(tokenizer.vocab_size))  # (N,)
    with atomic_path(path) as tmp:
        ids.tofile(tmp)


def token_file(text: str, tokenizer) -> np.memmap:
    """The ids of `text`, memory-mapped from a cache file that is encoded only when missing."""
    if not text:
        raise GlassformerError("the text is empty; there is nothing to encode")
    digest = hashlib.sha256(tokenizer.to_json().encode() + b"\0" + text.encode()).hexdigest()
    path = cache_dir() / "tokens" / f"{digest[:16]}.bin"
    if not path.is_file():
        encode_to_file(text, tokenizer, path)
    return np.memmap(path, dtype=token_dtype(tokenizer.vocab_size), mode="r")  # (N,)


def split(tokens, val_fraction: float):
    """(train, val): the last `val_fraction` of the tokens is val, the same every run."""
    if not 0 <= val_fraction < 1:
        raise GlassformerError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_train = len(tokens) - int(len(tokens) * val_fraction)
    return tokens[:n_train], tokens[n_train:]


def check_enough(tokens, block_size: int, what: str) -> None:
    """Raise unless `tokens` is long enough for one input block and its shifted target."""
    if len(tokens) <= block_size:
        raise GlassformerError(
            f"the {what} split has {len(tokens)} tokens but one block needs {block_size + 1}; "
            "use a longer text or a smaller --model.block_size")


def get_batch(tokens, batch_size: int, block_size: int, generator: torch.Generator,
              device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random contiguous blocks x and their next tokens y = x shifted left by one, int64 (B, T).

    Callers check `check_enough(tokens, block_size, ...)` once first.
    """
    T = block_size
    offsets = torch.randint(len(tokens) - T, (batch_size,), generator=generator)  # (B,)
    rows = [np.array(tokens[o:o + T + 1], dtype=np.int64) for o in offsets.tolist()]  # B of (T+1,)
    xy = torch.from_numpy(np.stack(rows))  # (B, T+1)
    x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()  # (B, T) each; y[b, t] follows x[b, t]
    if torch.device(device).type == "cuda":  # pinned host memory lets the copy overlap compute
        x, y = x.pin_memory(), y.pin_memory()
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return x.to(device), y.to(device)
