"""sentence-transformers' files beside a Hugging Face encoder: how its token vectors become one
vector per text. modules.json lists the steps in order, e.g. all-MiniLM-L6-v2's

  Transformer (the encoder)  ->  Pooling (1_Pooling/config.json: mean over real tokens)
                             ->  Normalize (to length 1)

which we keep as ModelConfig.pooling and .normalize_embeddings (what `embed` reads), so that
a run converted from the checkpoint embeds as the original; `write` puts them back on export.
"""

from __future__ import annotations

import json
from pathlib import Path

from glassformer.atomic import write_text_atomic
from glassformer.errors import GlassformerError

MODULES, POOLING = "modules.json", "1_Pooling"
KIND = "sentence_transformers.models."
MODES = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
         "max": "pooling_mode_max_tokens"}  # ours -> theirs


def read(path: Path) -> dict:
    """The ModelConfig fields ({"pooling", "normalize_embeddings"}) that the modules.json in
    directory `path` describes; {} without one. Steps we cannot take are refused by name."""
    if not (path / MODULES).is_file():
        return {}
    try:
        modules = json.loads((path / MODULES).read_text(encoding="utf-8"))
        kinds = [m["type"].removeprefix(KIND) for m in modules]
        folder = next(path / m["path"] for m in modules if m["type"] == KIND + "Pooling")
        pooling = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as err:
        raise GlassformerError(f"cannot read the sentence-transformers steps in {path} "
                               f"({type(err).__name__}: {err}); remove {MODULES} to load the "
                               "encoder alone") from None
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise GlassformerError(f"{path / MODULES} lists {' -> '.join(kinds)}; glassformer "
                               "embeds with Transformer -> Pooling [-> Normalize] only")
    chosen = [ours for ours, theirs in MODES.items() if pooling.get(theirs)]
    others = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v
                    and k not in MODES.values())
    if len(chosen) != 1 or others:
        raise GlassformerError(f"{folder / 'config.json'} pools with "
                               f"{', '.join(chosen + others) or 'nothing'}; glassformer pools "
                               f"with exactly one of {', '.join(MODES.values())}")
    return {"pooling": chosen[0], "normalize_embeddings": kinds[-1] == "Normalize"}


def held(cfg) -> dict:
    """The ModelConfig fields that the files `write` puts beside a plain encoder's export hold
    ({} when its pooling is one they cannot describe)."""
    if cfg.pooling not in MODES:
        return {}
    return {"pooling": cfg.pooling, "normalize_embeddings": cfg.normalize_embeddings}


def write(path: Path, cfg) -> None:
    """modules.json and 1_Pooling/config.json for the plain encoder of `cfg`, as
    sentence-transformers writes them."""
    if cfg.pooling not in MODES:
        raise GlassformerError(f"sentence-transformers pools with {', '.join(MODES)}, not "
                               f"pooling={cfg.pooling!r}")
    modules = [{"idx": 0, "name": "0", "path": "", "type": KIND + "Transformer"},
               {"idx": 1, "name": "1", "path": POOLING, "type": KIND + "Pooling"}]
    if cfg.normalize_embeddings:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": KIND + "Normalize"})
    pooling = {"word_embedding_dimension": cfg.n_embd} | {
        theirs: cfg.pooling == ours for ours, theirs in MODES.items()}
    (path / POOLING).mkdir(parents=True, exist_ok=True)
    write_text_atomic(path / POOLING / "config.json", json.dumps(pooling, indent=2) + "\n")
    write_text_atomic(path / MODULES, json.dumps(modules, indent=2) + "\n")
