"""A tokenizer fitted to a corpus bigger than memory: `glassformer data prepare --tokenizer
char|bpe`.

  char  every character of the corpus, sorted: one pass over every document, the files' groups
        in parallel, each worker returning the characters it saw (a set, never the text), so
        that no document of the corpus fails to encode
  bpe   a byte-level BPE of `vocab_size` tokens trained on a sample: from each file in turn, its
        first documents up to an equal share of `sample_chars` characters (a text file's first characters),
        the same sample on every run and for any number of workers. A sample from every file,
        not the first megabytes of the first ones: a folder sorted by name is often sorted by
        topic or language too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glassformer.data.sources import documents, in_parallel
from glassformer.errors import GlassformerError
from glassformer.tokenizers import CharTokenizer, HFTokenizer
from glassformer.tokenizers.utf8 import check_utf8

FITS = ("char", "bpe")


def fit_settings(kind: str, vocab_size: int, sample_chars: int) -> dict:
    """What a fitted tokenizer depends on besides the files (kept in the dataset's plan)."""
    if kind == "char":
        return {"kind": "char"}
    if vocab_size < 256 or sample_chars < 1:
        raise GlassformerError(f"--tokenizer bpe needs --vocab-size >= 256 (one token per byte) "
                               f"and a positive sample, got {vocab_size} and {sample_chars}")
    return {"kind": "bpe", "vocab_size": vocab_size, "sample_chars": sample_chars}


def fit(settings: dict, files: list[tuple[Path, str]], sizes: list[int], field: str,
        groups: list[list[int]], workers: int, progress: bool):
    """The tokenizer `settings` (fit_settings) describes, fitted to `files` (cut into `groups`
    for the char pass)."""
    if settings["kind"] == "char":
        tasks = [{"files": [(str(files[i][0]), files[i][1]) for i in ids], "field": field,
                  "bytes": sum(sizes[i] for i in ids)} for ids in groups]
        seen = in_parallel(characters_of, tasks, workers, sum(sizes), sum(sizes), progress,
                           "fit chars")
        chars = sorted(set().union(*map(set, seen)))
        if not chars:
            raise GlassformerError("the corpus has no text to fit a char tokenizer to")
        return CharTokenizer(chars)
    share = max(1, settings["sample_chars"] // len(files))
    sample = [text for path, name in files for text in first_text(path, name, field, share)]
    return HFTokenizer.train_bpe("\n\n".join(sample), settings["vocab_size"])


def characters_of(task: dict) -> str:
    """The distinct characters of the documents of task["files"], sorted (a worker's task)."""
    seen = np.empty(0, dtype=np.uint32)
    for path, name in task["files"]:
        for key, text in documents(Path(path), name, task["field"]):
            try:
                points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")  # (N,) code points
            except UnicodeEncodeError:
                check_utf8(text)  # raises, naming the character
            seen = np.union1d(seen, np.unique(points))
    return "".join(map(chr, seen))


def first_text(path: Path, name: str, field: str, chars: int):
    """The file's first documents, the last one cut, up to `chars` characters in all."""
    for _, text in documents(path, name, field):
        yield text[:chars]
        chars -= len(text)
        if chars <= 0:
            return
