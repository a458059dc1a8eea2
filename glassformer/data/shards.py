"""A prepared dataset (`glassformer data prepare`, data/prepare.py) read for training: its
manifest, its tokenizer, and each split's token shards seen as one sequence.

A split is the concatenation of its shards in the manifest's order. `ShardedTokens` answers
`len()` and slices `[a:b]` of that concatenation without building it, so the samplers that take a
flat token array (data/lm.py `get_batch`, data/mlm.py `mlm_batch`) draw from a prepared dataset
unchanged: the same seeded offsets, the same windows; a window that crosses from one shard into
the next is read from both.

A window is read with a positional read (np.fromfile at an offset), not through np.memmap:
the pages of a mapped file that a process touches count in its resident memory and stay mapped
(the kernel maps up to 64 KB around each, and reads ahead), so over a long run a memory map's
RSS creeps towards the size of the corpus. Read this way, the process holds only its batch; the
operating system's page cache still keeps the hot parts of the files, and gives them back when
memory is short.

The format (version 1), in the dataset's folder:
  manifest.json     written last: settings, sources, counts, the tokenizer's hash, and for each
                    split its shards in order ({"file", "tokens", "sha256"})
  tokenizer.json    the tokenizer the ids belong to
  SPLIT-GGGGG-PPPP.bin  raw ids, `dtype` (uint16 where the vocabulary fits, else uint32), no
                    header: part PPPP of the SPLIT (train or val) tokens of source group GGGGG

This module does not import torch, so that the prepare workers start quickly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from glassformer.errors import GlassformerError
from glassformer.tokenizers import load_tokenizer

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
FORMAT = 1
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids 0 .. vocab_size-1."""
    return np.dtype(np.uint16 if vocab_size - 1 <= np.iinfo(np.uint16).max else np.uint32)


def tokenizer_hash(tokenizer) -> str:
    """sha256 of the tokenizer's JSON: two datasets with the same hash hold the same ids."""
    return hashlib.sha256(tokenizer.to_json().encode()).hexdigest()


class ShardedTokens:
    """The shards of one split as one read-only token sequence: len() and [a:b] slices, each
    slice read from the files when asked (positional reads: no file is held in memory)."""

    def __init__(self, paths: list[Path], dtype):
        self.dtype = np.dtype(dtype)
        sizes = [p.stat().st_size // self.dtype.itemsize for p in paths]
        self.paths = [p for p, n in zip(paths, sizes) if n]
        self.starts = np.cumsum([0] + [n for n in sizes if n])  # shard i: starts[i] .. [i+1]-1

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("ShardedTokens takes contiguous slices [a:b]")
        a, b, _ = index.indices(len(self))
        pieces = []
        i = int(np.searchsorted(self.starts, a, side="right")) - 1  # the shard holding a
        while a < b:
            start, end = int(self.starts[i]), int(self.starts[i + 1])
            take = min(b, end)
            pieces.append(np.fromfile(self.paths[i], dtype=self.dtype, count=take - a,
                                      offset=(a - start) * self.dtype.itemsize))
            a, i = take, i + 1
        return np.concatenate(pieces) if pieces else np.empty(0, self.dtype)


class PreparedData:
    """A prepared dataset's manifest, tokenizer and splits (`train`, `val`: ShardedTokens)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.tokenizer = load_tokenizer(self.folder / TOKENIZER)
        if tokenizer_hash(self.tokenizer) != self.manifest["tokenizer_sha256"]:
            raise GlassformerError(f"{self.folder / TOKENIZER} is not the tokenizer its "
                                   f"{MANIFEST} names; prepare the dataset again")
        dtype = np.dtype(self.manifest["dtype"])
        for name in SPLITS:
            paths = [self.folder / s["file"] for s in self.manifest["splits"][name]["shards"]]
            missing = [p.name for p in paths if not p.is_file()]
            if missing:
                raise GlassformerError(f"{self.folder} lacks shard {missing[0]} that its "
                                       f"{MANIFEST} lists; prepare the dataset again")
            setattr(self, name, ShardedTokens(paths, dtype))


def read_manifest(folder: Path) -> dict:
    """The manifest of the prepared dataset in `folder`, refused unless it is whole and known."""
    path = folder / MANIFEST
    if not path.is_file():
        why = "it is not a folder" if not folder.is_dir() else f"it has no {MANIFEST}"
        raise GlassformerError(f"{folder} is not a prepared dataset ({why}); make one with "
                               f"`glassformer data prepare SRC... --tokenizer T --out {folder}` "
                               "(a prepare that was interrupted writes its manifest when rerun)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GlassformerError(f"cannot read {path} ({err}); prepare the dataset again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GlassformerError(f"{path} is not a version-{FORMAT} glassformer dataset manifest; "
                               "prepare the dataset again with this version")
    return manifest
