"""A corpus bigger than memory, tokenized once into token shards: `glassformer data prepare`.

  sources   text files, folders of them, `.jsonl` files and gzip'd ones (data/sources.py)
  groups    the files, in order, cut into groups of about `group_bytes` (a larger file is a group
            alone); a group is one task for a worker process, which holds one batch of documents
            (about BATCH_CHARS) and their ids at a time
  split     a document is held back for validation when the hash of its key (its file's name,
            and its line in a JSONL file) falls below `val_fraction`: whole documents, the same
            on every run and for any number of workers
  shards    each group writes its train and its val ids (each document followed by the ids of
            `separator`) to its own shards of at most `shard_tokens`, each appearing whole (an
            atomic rename), then a record groups/GGGGG.json of what it wrote
  manifest  written last, from the records (data/shards.py describes the format)

Resumable: a rerun with the same sources and settings keeps the groups that have a record and
redoes the others. A group's shards depend only on its files and the settings, so the dataset
is the one an uninterrupted run writes, byte for byte.

The tokenizer is a run's, a tokenizer.json, a Hugging Face directory's, or one fitted to the
corpus first (`char`: every character in it; `bpe`: trained on a sample; data/fit.py), saved in
the dataset and reused by a rerun. One prepare at a time writes to a folder (a lock held until
it ends: a second one is refused, and a killed one holds nothing).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from glassformer.atomic import atomic_path, recover, write_text_atomic
from glassformer.data.shards import (FORMAT, MANIFEST, SPLITS, TOKENIZER, read_manifest,
                                     token_dtype, tokenizer_hash)
from glassformer.data.fit import FITS, fit, fit_settings
from glassformer.data.sources import documents, in_parallel, list_files
from glassformer.errors import GlassformerError
from glassformer.tokenizers import CharTokenizer, HFTokenizer, load_tokenizer

GROUPS = "groups"  # the plan and one record per finished group
PLAN = "plan.json"
LOCK = ".prepare.lock"  # held by the prepare writing the folder
BATCH_CHARS = 1 << 20  # characters of documents encoded together


def open_tokenizer(spec: str):
    """The tokenizer `--tokenizer` names: a run or Hugging Face directory (its tokenizer.json)
    or a tokenizer file."""
    path = Path(spec)
    if path.is_dir():
        path = path / TOKENIZER
    return load_tokenizer(path)


def groups_of(sizes: list[int], group_bytes: int) -> list[list[int]]:
    """Consecutive file indices cut into groups of at least `group_bytes` (the last may be
    smaller): a group is one worker task."""
    groups, current, total = [], [], 0
    for i, size in enumerate(sizes):
        current.append(i)
        total += size
        if total >= group_bytes:
            groups.append(current)
            current, total = [], 0
    return groups + ([current] if current else [])


def is_val(key: str, val_fraction: float) -> bool:
    """Whether the document `key` is held back: the first 8 bytes of its sha256, read as a
    fraction of 2**64, fall below `val_fraction`."""
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return h < val_fraction * 2**64


class Encoder:
    """A tokenizer's ids for many texts at once, as `dtype` arrays: each equals
    tokenizer.encode(text). A char tokenizer looks the code points up in a table; a Hugging Face
    one encodes the batch in its library (in parallel); any other, text by text."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.dtype = token_dtype(tokenizer.vocab_size)
        self.table = None
        if isinstance(tokenizer, CharTokenizer):
            self.table = np.full(max(map(ord, tokenizer.chars)) + 1, -1, dtype=np.int64)
            for c in tokenizer.chars:
                self.table[ord(c)] = tokenizer.ids[c]

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        if self.table is not None:
            return [self.by_table(text) for text in texts]
        if isinstance(self.tokenizer, HFTokenizer):
            return [np.array(ids, dtype=self.dtype) for ids in self.tokenizer.encode_texts(texts)]
        return [np.array(self.tokenizer.encode(text), dtype=self.dtype) for text in texts]

    def by_table(self, text: str) -> np.ndarray:
        try:
            points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")  # (N,) code points
        except UnicodeEncodeError:  # a lone surrogate: encode() names it
            return np.array(self.tokenizer.encode(text), dtype=self.dtype)
        if len(points) and points.max() >= len(self.table):
            self.tokenizer.encode(text)  # raises UnknownCharactersError, naming them
        ids = self.table[points]
        if len(ids) and ids.min() < 0:
            self.tokenizer.encode(text)
        return ids.astype(self.dtype)


class ShardWriter:
    """The ids of one split of one group, written to shards of at most `max_tokens`; each
    shard appears under its name only when whole."""

    def __init__(self, out: Path, stem: str, dtype, max_tokens: int):
        self.out, self.stem, self.dtype, self.max_tokens = out, stem, dtype, max_tokens
        self.shards = []  # {"file", "tokens", "sha256"} of each finished shard
        self.stack = self.file = None

    def add(self, ids: np.ndarray) -> None:
        while len(ids):
            if self.file is None:
                self.open()
            room = self.max_tokens - self.tokens
            part, ids = ids[:room], ids[room:]
            data = part.astype(self.dtype).tobytes()
            self.file.write(data)
            self.hash.update(data)
            self.tokens += len(part)
            if self.tokens == self.max_tokens:
                self.close()

    def open(self) -> None:
        self.name = f"{self.stem}-{len(self.shards):04d}.bin"
        self.stack = contextlib.ExitStack()
        tmp = self.stack.enter_context(atomic_path(self.out / self.name))
        self.file = self.stack.enter_context(open(tmp, "wb"))
        self.tokens, self.hash = 0, hashlib.sha256()

    def close(self) -> list[dict]:
        """Finish the shard being written (if any); return every shard's entry."""
        if self.file is not None:
            self.stack.close()  # closes the file, syncs it, renames it into place
            self.shards.append({"file": self.name, "tokens": self.tokens,
                                "sha256": self.hash.hexdigest()})
            self.stack = self.file = None
        return self.shards


def prepare_group(task: dict) -> dict:
    """Tokenize one group's files into its shards and write its record; return the record.
    Runs in a worker process: everything it needs is in `task`."""
    out, group = Path(task["out"]), task["group"]
    tokenizer = load_tokenizer(out / TOKENIZER)
    encode = Encoder(tokenizer)
    separator = encode([task["separator"]])[0] if task["separator"] else np.empty(0, encode.dtype)
    writers = {split: ShardWriter(out, f"{split}-{group:05d}", encode.dtype, task["shard_tokens"])
               for split in SPLITS}
    counts = {split: 0 for split in SPLITS}
    batch, chars = [], 0

    def flush():
        for (split, _), ids in zip(batch, encode([text for _, text in batch])):
            writers[split].add(np.concatenate([ids, separator]))
            counts[split] += 1
        batch.clear()

    for path, name in task["files"]:
        try:
            for key, text in documents(Path(path), name, task["field"]):
                batch.append(("val" if is_val(key, task["val_fraction"]) else "train", text))
                chars += len(text)
                if chars >= BATCH_CHARS:
                    flush()
                    chars = 0
            flush()
        except GlassformerError as err:  # a plain error, so that it crosses the process pipe
            raise GlassformerError(str(err) if name in str(err) else f"{name}: {err}") from None
    record = {"group": group, "bytes": task["bytes"]}
    for split in SPLITS:
        shards = writers[split].close()
        record[split] = {"documents": counts[split], "tokens": sum(s["tokens"] for s in shards),
                         "shards": shards}
    write_text_atomic(out / GROUPS / f"{group:05d}.json", json.dumps(record))
    return record


def prepare(sources, tokenizer: str, out, val_fraction: float = 0.01, field: str = "text",
            workers: int | None = None, separator: str = "\n\n", shard_tokens: int = 1 << 26,
            group_bytes: int = 16 << 20, progress: bool = True, vocab_size: int = 4096,
            bpe_sample: int = 32_000_000) -> dict:
    """Tokenize the files `sources` name into a prepared dataset in folder `out` (see the
    module's docstring) with `workers` processes (default: one per core), showing a progress
    bar (bytes/s, ETA) on stderr; return its manifest. `tokenizer` "char" or "bpe" fits one
    first (a BPE of `vocab_size` tokens on about `bpe_sample` characters). A rerun on an
    unfinished `out` with the same arguments continues it; on a finished one it returns the
    manifest."""
    if not 0 <= val_fraction < 1:
        raise GlassformerError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if shard_tokens < 1 or group_bytes < 1:
        raise GlassformerError("--shard-tokens and the group size must be positive")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise GlassformerError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    fitting = fit_settings(tokenizer, vocab_size, bpe_sample) if tokenizer in FITS else None
    files = list_files(sources)
    sizes = [p.stat().st_size for p, _ in files]
    groups = groups_of(sizes, group_bytes)
    with locked(out):
        begun = read_plan(out)
        if fitting is None:
            tok = open_tokenizer(tokenizer)
        elif begun is None:
            tok = fit(fitting, files, sizes, field, groups, workers, progress)
        elif begun.get("fit") == fitting:
            tok = load_tokenizer(out / TOKENIZER)  # fitted by the run this one continues
        else:
            raise other_dataset(out)
        plan = {"format": FORMAT, "tokenizer_sha256": tokenizer_hash(tok), "fit": fitting,
                "dtype": token_dtype(tok.vocab_size).name, "vocab_size": tok.vocab_size,
                "val_fraction": val_fraction, "field": field, "separator": separator,
                "shard_tokens": shard_tokens, "group_bytes": group_bytes,
                "sources": [{"file": str(p), "name": name, "bytes": size}
                            for (p, name), size in zip(files, sizes)]}
        start(out, plan, tok, begun)
        if (out / MANIFEST).is_file():
            return read_manifest(out)
        return tokenized(out, plan, groups, workers, progress)


def tokenized(out: Path, plan: dict, groups: list[list[int]], workers: int,
              progress: bool) -> dict:
    """Run the groups of `plan` that have no record yet, then write the manifest; return it."""
    sources = plan["sources"]
    done = {int(p.stem) for p in (out / GROUPS).glob("[0-9]*.json")}
    tasks = [{"out": str(out), "group": g,
              "files": [(sources[i]["file"], sources[i]["name"]) for i in ids],
              "bytes": sum(sources[i]["bytes"] for i in ids), "field": plan["field"],
              "separator": plan["separator"], "val_fraction": plan["val_fraction"],
              "shard_tokens": plan["shard_tokens"]}
             for g, ids in enumerate(groups) if g not in done]
    total = sum(s["bytes"] for s in sources)
    in_parallel(prepare_group, tasks, workers, total, sum(t["bytes"] for t in tasks), progress,
                "prepare")
    records = [json.loads((out / GROUPS / f"{g:05d}.json").read_text(encoding="utf-8"))
               for g in range(len(groups))]
    manifest = plan | {"bytes": total, "splits": {
        split: {"documents": sum(r[split]["documents"] for r in records),
                "tokens": sum(r[split]["tokens"] for r in records),
                "shards": [s for r in records for s in r[split]["shards"]]}
        for split in SPLITS}}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


@contextlib.contextmanager
def locked(out: Path):
    """Hold the folder's lock (an flock, which the system drops when the holder dies), or
    refuse: another prepare is writing there."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GlassformerError(f"another `glassformer data prepare` is writing {out}; wait "
                                   "for it to end, or choose another --out") from None
        yield


def read_plan(out: Path) -> dict | None:
    path = out / GROUPS / PLAN
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def other_dataset(out: Path) -> GlassformerError:
    return GlassformerError(f"{out} holds a dataset prepared from other sources or settings; "
                           "choose another --out, or delete it to start over")


def start(out: Path, plan: dict, tokenizer, begun: dict | None) -> None:
    """Begin `out`, or check that it was begun (plan `begun`) with the same plan; remove the
    temporary files of shards a kill interrupted."""
    if begun is not None:
        if begun != plan:
            raise other_dataset(out)
        recover(out)
        recover(out / GROUPS)
        return
    if any(p.name not in (TOKENIZER, LOCK) for p in out.iterdir()):
        raise GlassformerError(f"{out} is not empty and not a dataset being prepared; choose "
                               "another --out")
    tokenizer.save(out / TOKENIZER)
    write_text_atomic(out / GROUPS / PLAN, json.dumps(plan, ensure_ascii=False))
