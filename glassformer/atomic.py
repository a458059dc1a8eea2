"""Atomic file writes: a crash at any instant leaves the previous file, or the previous set of
files, whole.

One file: written to a temporary file beside it, synced, renamed over it (one rename is atomic).

A set of files (a checkpoint's weights and trainer state): each is written to a temporary file and
synced; then a journal listing the renames is written (itself atomically), the renames are done,
and the journal is removed. A crash before the journal exists leaves the old set; after it, the
new one, once `recover` has finished the renames the journal lists. `recover` also removes the
temporary files a crash left behind.
"""

import contextlib
import json
import os
import secrets
from pathlib import Path

JOURNAL = ".commit.json"  # the renames of a set being committed: [[temporary, final], ...]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    On any exception the temporary file is removed and `path` is untouched.
    """
    with atomic_files([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_files(paths):
    """Yield a temporary path beside each of `paths` (files of one folder); when the block ends,
    they replace those files as one set. On an exception inside the block the temporary files
    are removed and the files are untouched; an interrupt during the renames finishes them."""
    paths = [Path(p) for p in paths]
    folder = paths[0].parent
    if any(p.parent != folder for p in paths):
        raise ValueError(f"atomic_files: {paths} are not all in one folder")
    folder.mkdir(parents=True, exist_ok=True)
    temps = [_temporary(p) for p in paths]
    mode = temps[0].stat().st_mode & 0o777  # a new file's: 0666 less the umask
    try:
        yield temps
        for tmp in temps:
            os.chmod(tmp, mode)  # a writer may have made its own file (safetensors: 0600)
            _sync(tmp)
        if len(paths) == 1:
            os.replace(temps[0], paths[0])
            return
        _write_journal(folder, [[t.name, p.name] for t, p in zip(temps, paths)])
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    try:
        _finish(folder)
    except KeyboardInterrupt:
        _finish(folder)  # a few renames: complete them, so that the set on disk is whole
        raise


def recover(folder) -> bool:
    """Finish a commit a crash interrupted (the journal's renames) and remove the temporary files
    of writes that never reached one; return whether a commit was finished. Call it before
    reading a set of files that a crashed writer may have left, with no writer running."""
    folder = Path(folder)
    finished = (folder / JOURNAL).exists()
    if finished:
        _finish(folder)
    for stray in folder.glob(".*.tmp"):
        stray.unlink()
    return finished


def write_text_atomic(path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _temporary(path: Path) -> Path:
    """A new empty file beside `path`, named .NAME.XXXX.tmp (what `recover` removes), with the
    permissions any new file gets (0666 less the umask: 0644 usually), not mkstemp's 0600, so
    that a run's files are as readable as the directory they are in."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def _sync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _write_journal(folder: Path, renames: list[list[str]]) -> None:
    tmp = _temporary(folder / JOURNAL)
    tmp.write_text(json.dumps(renames), encoding="utf-8")
    _sync(tmp)
    os.replace(tmp, folder / JOURNAL)  # from here on, the new set is the one that counts


def _finish(folder: Path) -> None:
    """Do the journal's renames that are not done yet, then remove the journal."""
    for tmp, final in json.loads((folder / JOURNAL).read_text(encoding="utf-8")):
        if (folder / tmp).exists():
            os.replace(folder / tmp, folder / final)
    fd = os.open(folder, os.O_RDONLY)  # the renames reach the disk before the journal goes
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    (folder / JOURNAL).unlink()
