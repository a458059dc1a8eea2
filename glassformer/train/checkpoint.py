"""The run directory, one format for every model:

  config.json        RunConfig: model + train settings
  tokenizer.json     the tokenizer
  model.safetensors  the weights (a tied matrix stored once); metadata records the step
  trainer_state.pt   optimizer, step and RNG states; loads with torch.load(weights_only=True)
  metrics.jsonl      one JSON object per line, each with `step` and what was measured then

Writes are atomic. The weights and the trainer state are both written to temporary files before
either is renamed into place, so a crash while saving leaves the previous checkpoint whole.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from glassformer.atomic import atomic_path, write_text_atomic
from glassformer.config import RunConfig
from glassformer.errors import GlassformerError
from glassformer.model.gpt import GPT
from glassformer.tokenizers import load_tokenizer

CONFIG, TOKENIZER, MODEL, STATE, METRICS = (
    "config.json", "tokenizer.json", "model.safetensors", "trainer_state.pt", "metrics.jsonl")


@dataclass
class Run:
    """A loaded run: its config, tokenizer and model (in eval mode), and the step it reached."""

    cfg: RunConfig
    tokenizer: object
    model: GPT
    step: int


def start_run(run_dir, cfg: RunConfig, tokenizer) -> None:
    """Create the run directory with its config and tokenizer."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / CONFIG)
    tokenizer.save(run_dir / TOKENIZER)


def has_checkpoint(run_dir) -> bool:
    return (Path(run_dir) / MODEL).exists()


def save_checkpoint(run_dir, model, optimizer, step: int, rng: dict) -> None:
    """Write weights and trainer state for `step`; both or neither replace the previous ones."""
    run_dir = Path(run_dir)
    state = {"step": step, "optimizer": optimizer.state_dict(), "rng": rng}
    with atomic_path(run_dir / MODEL) as model_tmp, atomic_path(run_dir / STATE) as state_tmp:
        save_model(model, str(model_tmp), metadata={"step": str(step)})
        torch.save(state, state_tmp)


def load_run(run_dir, device="cpu") -> Run:
    """Load a run directory for sampling or evaluation, with one clear error for each problem."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GlassformerError(f"no run directory at {run_dir}; train one with "
                               f"`glassformer train --out {run_dir}`")
    for name in (CONFIG, TOKENIZER, MODEL):
        if not (run_dir / name).exists():
            raise GlassformerError(f"{run_dir} has no {name}: it is not a finished run "
                                   f"(train it, or resume with `glassformer train --out {run_dir} --resume`)")
    cfg = RunConfig.load(run_dir / CONFIG)
    tokenizer = load_tokenizer(run_dir / TOKENIZER)
    model = GPT(cfg.model)
    step = load_weights(model, run_dir / MODEL, device)
    return Run(cfg, tokenizer, model.to(device).eval(), step)


def load_weights(model, path, device="cpu") -> int:
    """Load weights from a safetensors file into `model`; return the step they were saved at."""
    try:
        with safe_open(str(path), framework="pt") as f:
            step = int((f.metadata() or {}).get("step", 0))
    except Exception as err:  # safetensors reports corruption with several error types
        raise GlassformerError(f"{path} is corrupt or incomplete ({type(err).__name__}: {err}); "
                               "restore it from a backup or retrain") from None
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
    except RuntimeError as err:  # shapes differ from the config
        raise GlassformerError(f"{path} does not fit the model in config.json: "
                               f"{str(err).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise GlassformerError(f"{path} does not fit the model in config.json: missing "
                               f"{sorted(missing)}, unexpected {sorted(unexpected)}")
    return step


def load_trainer_state(run_dir) -> dict:
    """The optimizer, step and RNG states saved beside the weights."""
    path = Path(run_dir) / STATE
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise GlassformerError(f"{path} is missing: the run cannot be resumed") from None
    except Exception as err:
        raise GlassformerError(f"{path} is corrupt ({type(err).__name__}); the run cannot be "
                               f"resumed, but its weights can still be sampled") from None


def append_metrics(run_dir, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def truncate_metrics(run_dir, step: int) -> None:
    """Drop records after `step`: on resume they are measured again."""
    kept = [r for r in read_metrics(run_dir) if r["step"] <= step]
    write_text_atomic(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in kept))
