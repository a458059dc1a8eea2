"""The documents of a corpus's source files, and work on them spread over worker processes:
what `glassformer data prepare` (data/prepare.py) and the tokenizers it fits (data/fit.py) read.

  sources   text files, folders of them (every file below, hidden ones aside, in sorted order),
            `.jsonl` files (a JSON object per line, one document each, its text in `field`), and
            any of these gzip'd (`NAME.gz`). A text file is one document.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
from pathlib import Path

from glassformer.errors import GlassformerError


def list_files(sources) -> list[tuple[Path, str]]:
    """(path, name) of every file the sources name, in order: a file as given, a folder's files
    (not hidden) sorted by their path below it. The name is the path from the source's parent,
    which keys the documents' split."""
    files = []
    for source in map(Path, sources):
        if source.is_file():
            files.append((source, source.name))
        elif source.is_dir():
            below = sorted(p for p in source.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(source).parts))
            files += [(p, p.relative_to(source.parent).as_posix()) for p in below]
        else:
            raise GlassformerError(f"source {source} does not exist; pass text files, "
                                   ".jsonl files (gzip'd or not) or folders of them")
    if not files:
        raise GlassformerError(f"the sources {', '.join(map(str, sources))} hold no files")
    return files


def documents(path: Path, name: str, field: str):
    """(key, text) of each document in the file: the whole text of a text file, or the `field`
    of each line of a `.jsonl` file (key NAME:LINE), gzip'd when the name ends in `.gz`."""
    opener = gzip.open if path.name.endswith(".gz") else open
    jsonl = path.name.removesuffix(".gz").endswith(".jsonl")
    try:
        with opener(path, "rb") as f:
            if not jsonl:
                yield name, decoded(f.read(), name)
                return
            for line_number, line in enumerate(f, 1):
                if line.strip():
                    yield f"{name}:{line_number}", jsonl_text(line, field, f"{name}:{line_number}")
    except (OSError, EOFError) as err:  # gzip's BadGzipFile is an OSError
        raise GlassformerError(f"cannot read {path} ({err})") from None


def decoded(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GlassformerError(f"{where} is not valid UTF-8 (byte {err.start}); convert it "
                               "to UTF-8 first, e.g. with iconv") from None


def jsonl_text(line: bytes, field: str, where: str) -> str:
    try:
        record = json.loads(decoded(line, where))
    except json.JSONDecodeError as err:
        raise GlassformerError(f"{where} is not a JSON object ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get(field), str):
        raise GlassformerError(f"{where} has no text field {field!r}; name the field that "
                               "holds the text with --field")
    return record[field]


def in_parallel(work, tasks: list[dict], workers: int, total: int, todo: int, progress: bool,
                desc: str) -> list:
    """work(task) for each task, in `workers` processes (spawned: no state shared with this
    one) unless one, with a bar of the input bytes done (each task's "bytes", of `total`, of
    which `todo` are in these tasks); return the results in the tasks' order. `work` must be a
    module-level function (a worker imports it by name)."""
    from tqdm import tqdm

    results = []
    with tqdm(total=total, initial=total - todo, unit="B", unit_scale=True, unit_divisor=1024,
              desc=desc, disable=not progress, smoothing=0.1) as bar:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                results.append(work(task))
                bar.update(task["bytes"])
            return results
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(tasks))) as pool:
            for task, result in zip(tasks, pool.imap(work, tasks)):
                results.append(result)
                bar.update(task["bytes"])
    return results
