"""Hugging Face checkpoint directories in and out, and conversion to and from our run directories.

A Hugging Face directory holds config.json (with "model_type"), the weights (model.safetensors,
shards listed in model.safetensors.index.json, or pytorch_model.bin) and often tokenizer.json.
Each family module (gpt2, llama, bert, bart, t5) maps one model_type's names and layouts:

    from_hf(hf_config, state) -> (ModelConfig, our state dict)
    to_hf(cfg, our state dict) -> (hf_config, their state dict)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from glassformer.atomic import atomic_path, write_text_atomic
from glassformer.errors import GlassformerError
from glassformer.interop import sentence
from glassformer.interop.keymap import UnsupportedCheckpoint
from glassformer.tokenizers import CharTokenizer, HFTokenizer, load_tokenizer

FAMILIES = {"gpt2": "glassformer.interop.gpt2", "llama": "glassformer.interop.llama",
            "bert": "glassformer.interop.bert", "bart": "glassformer.interop.bart",
            "t5": "glassformer.interop.t5"}
EXPORTS = {"gpt": ("gpt2", "llama"), "bert": ("bert",), "encdec": ("bart", "t5")}  # ours -> theirs
TASKS = {"gpt": "lm", "bert": "mlm", "encdec": "pairs"}  # a converted run's train.task
CONFIG, SAFETENSORS, INDEX, BIN, TOKENIZER = (
    "config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
    "tokenizer.json")


def family(model_type: str):
    """The module that maps `model_type`, imported on first use."""
    if model_type not in FAMILIES:
        raise GlassformerError(f"model_type {model_type!r} is not supported; glassformer reads "
                               f"{', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[model_type])


def from_pretrained(path):
    """(model, tokenizer) from a Hugging Face checkpoint directory; the model in eval mode on
    the CPU in fp32, the tokenizer None when the directory has no tokenizer.json. An encoder's
    sentence-transformers steps (modules.json) become its config's pooling for `embed`. A GGUF
    file, or a directory holding one, is read by interop/gguf.py."""
    from glassformer.interop import gguf

    path = Path(path)
    if gguf.find(path):
        cfg, state, tokenizer = gguf.read(gguf.find(path))
        return built(cfg, state, path), tokenizer
    hf_config = read_config(path)
    cfg, state = family(hf_config.get("model_type")).from_hf(hf_config, read_weights(path))
    if cfg.family == "bert" and not cfg.n_classes:
        cfg = dataclasses.replace(cfg, **sentence.read(path))
    tokenizer = load_tokenizer(path / TOKENIZER) if (path / TOKENIZER).is_file() else None
    return built(cfg, state, path), tokenizer


def built(cfg, state: dict, path: Path):
    """The model of `cfg` holding `state` (the weights read from `path`), in eval mode."""
    from glassformer.model import build

    model = build(cfg)
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise GlassformerError(f"{path} lacks weights the model needs: {', '.join(missing[:12])}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # shapes that differ from the config
        raise GlassformerError(f"the weights in {path} do not fit its config: "
                               f"{str(err).splitlines()[-1].strip()}") from None
    return model.eval()


def save_pretrained(model, path, tokenizer=None, model_type: str | None = None) -> str:
    """Write `model` as a Hugging Face directory (config.json + model.safetensors, and
    tokenizer.json for a tokenizer: a character tokenizer in a form with the same ids) that
    `transformers` loads; return the model_type written. A GPT becomes a GPT-2 or a Llama,
    whichever can hold it, unless `model_type` names one. Nothing is written for a model that
    no family can hold whole."""
    cfg = model.cfg
    choices = (model_type,) if model_type else EXPORTS[cfg.family]
    refusals = []
    for name in choices:
        try:
            hf_config, state = exported(name, cfg, model.state_dict())
            break
        except GlassformerError as err:
            refusals.append(str(err))
    else:
        raise GlassformerError(f"this model has no Hugging Face form: {' | '.join(refusals)}")
    if isinstance(tokenizer, CharTokenizer):  # the same ids, in the Hugging Face format
        tokenizer = HFTokenizer.from_chars(tokenizer.tokens)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = without_copies({k: v.detach().to("cpu", torch.float32).contiguous()
                            for k, v in state.items()})
    with atomic_path(path / SAFETENSORS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_text_atomic(path / CONFIG, json.dumps(hf_config, indent=2) + "\n")
    if cfg.family == "bert" and hf_config["architectures"] == ["BertModel"]:
        sentence.write(path, cfg)  # how `embed` pools it, for sentence-transformers
    if tokenizer is not None:
        write_text_atomic(path / TOKENIZER, tokenizer.hf_json())
    return hf_config["model_type"]


def exported(model_type: str, cfg, state: dict) -> tuple[dict, dict]:
    """`cfg` and `state` as a `model_type` config and state dict, proven whole: read back, they
    give the same architecture (every field, see ModelConfig.architecture) and the same
    weights, or UnsupportedCheckpoint names each field the family cannot hold. A family's
    `config_to_hf` writes the nearest config it can and its `config_from_hf` reads it back;
    this comparison is the one check that refuses, so a field added to ModelConfig later is
    refused by every family until it learns to write that field."""
    mapping = family(model_type)
    if model_type not in EXPORTS.get(cfg.family, ()):
        holds = [k for k, types in EXPORTS.items() if model_type in types]
        raise UnsupportedCheckpoint(f"a {model_type} checkpoint cannot hold family="
                                    f"{cfg.family!r} (it holds {', '.join(map(repr, holds))})")
    hf_config = mapping.config_to_hf(cfg)
    try:
        back_cfg = mapping.config_from_hf(hf_config)
    except GlassformerError as err:
        raise UnsupportedCheckpoint(f"a {model_type} checkpoint cannot hold this model ({err})"
                                    ) from None
    if hf_config["architectures"] == ["BertModel"]:  # its pooling is in files beside it
        back_cfg = dataclasses.replace(back_cfg, **sentence.held(cfg))
    held = back_cfg.architecture()
    ours = cfg.architecture()
    lost = [f"{k}={ours[k]!r} (it would load as {held.get(k)!r})" for k in ours
            if held.get(k) != ours[k]]
    if lost:
        raise UnsupportedCheckpoint(f"a {model_type} checkpoint cannot hold "
                                    + ", ".join(lost))
    hf_config, theirs = mapping.to_hf(cfg, state)
    _, back = mapping.from_hf(hf_config, theirs)
    changed = [k for k, v in state.items() if k not in back or not torch.equal(back[k], v)]
    if changed:  # a mapping bug, not a user's setting: say which weights
        raise UnsupportedCheckpoint(f"the {model_type} export does not read back weights "
                                    + ", ".join(changed[:12]))
    return hf_config, theirs


def without_copies(state: dict) -> dict:
    """Each tied tensor once, under its first name: safetensors refuses shared storage, and
    `transformers` re-ties the other names (an LM head to the embeddings) when it loads."""
    kept, seen = {}, set()
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tensor.shape)
        if key not in seen:
            kept[name] = tensor
            seen.add(key)
    return kept


def convert(src, dst) -> str:
    """A Hugging Face directory `src` -> our run directory `dst` (config.json, tokenizer.json,
    model.safetensors), or a run directory -> a Hugging Face one, as `src`'s config.json says.
    Returns a line that says what was written."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise GlassformerError(f"{dst} exists and is not an empty directory; choose a new one")
    try:
        is_run = "model" in json.loads((src / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        is_run = False  # read_config below says what is wrong
    if is_run:
        return run_to_hf(src, dst)
    return hf_to_run(src, dst)


def hf_to_run(src: Path, dst: Path) -> str:
    from safetensors.torch import save_model

    from glassformer.config import RunConfig, TrainConfig
    from glassformer.train.checkpoint import MODEL, start_run

    model, tokenizer = from_pretrained(src)
    if tokenizer is None:
        raise GlassformerError(f"{src} has no {TOKENIZER}, and a run directory needs one; add "
                               "the checkpoint's tokenizer.json to it")
    task = TASKS[model.cfg.family] if not model.cfg.n_classes else "genre"
    train = TrainConfig(tokenizer="bpe", task=task)
    start_run(dst, RunConfig(model=model.cfg, train=train), tokenizer)
    with atomic_path(dst / MODEL) as tmp:
        save_model(model, str(tmp), metadata={"step": "0"})
    return f"wrote run directory {dst}: {model.cfg.n_layer} layers, vocab {model.cfg.vocab_size}"


def run_to_hf(src: Path, dst: Path) -> str:
    from glassformer.train.checkpoint import load_run

    run = load_run(src)
    model_type = save_pretrained(run.model, dst, run.tokenizer)
    return f"wrote Hugging Face {model_type} directory {dst}"


def read_config(path: Path) -> dict:
    """A Hugging Face config.json, which must name its model_type."""
    try:
        data = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GlassformerError(f"{path} has no {CONFIG}: it is not a Hugging Face checkpoint "
                               "directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GlassformerError(f"cannot read {path / CONFIG} ({err})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise GlassformerError(f"{path / CONFIG} has no \"model_type\"; is it a Hugging Face "
                               "config?")
    return data


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint: from model.safetensors, its shards, or pytorch_model.bin
    (unpickled with weights_only=True: tensors only, no code)."""
    try:
        if (path / SAFETENSORS).is_file():
            return load_file(str(path / SAFETENSORS))
        if (path / INDEX).is_file():
            shards = sorted(set(json.loads((path / INDEX).read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(str(path / shard)).items()}
        if (path / BIN).is_file():
            return torch.load(path / BIN, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors and torch.load report damage with many error types
        raise GlassformerError(f"cannot read the weights in {path} ({type(err).__name__}: "
                               f"{err})") from None
    raise GlassformerError(f"{path} has none of {SAFETENSORS}, {INDEX}, {BIN}")
