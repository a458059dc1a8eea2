"""The run directory, one format for every model:

  config.json        RunConfig: model + train settings
  tokenizer.json     the tokenizer
  model.safetensors  the weights (a tied matrix stored once); metadata records the step
  trainer_state.pt   optimizer, step and RNG states; loads with torch.load(weights_only=True)
  metrics.jsonl      one JSON object per line, each with `step` and what was measured then
  adapters.safetensors  LoRA runs only: the adapters (and a classifier head) alone, a small
                     file that loads on the base run's weights (model/lora.py)

The same format whether one process trained or several: the weights and optimizer state are
gathered whole (full state dicts, optimizer state keyed by parameter name), so a run started
in N processes continues in 1, or the other way round.

A checkpoint (weights, trainer state, adapters) is written as one set (atomic.atomic_files): a
crash at any instant leaves the previous checkpoint or the new one, never a mix, once a training
process has opened the run again (`writing` finishes or undoes the interrupted save). One process
writes a run at a time: `writing` locks the directory. A write that fails (a full disk) is one
error line (train/write_failures.py).
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_model, save_file
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict,
                                                     set_optimizer_state_dict)
from torch.nn.parallel import DistributedDataParallel

from glassformer.atomic import atomic_files, recover, write_text_atomic
from glassformer.config import RunConfig, apply_overrides
from glassformer.errors import GlassformerError, writes_to
from glassformer.model import build, lora
from glassformer.tokenizers import load_tokenizer
from glassformer.train.write_failures import write_failures_explained

CONFIG, TOKENIZER, MODEL, STATE, METRICS, ADAPTERS, LOCK = (
    "config.json", "tokenizer.json", "model.safetensors", "trainer_state.pt", "metrics.jsonl",
    "adapters.safetensors", ".lock")
WHOLE = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered, on the CPU


@dataclass
class Run:
    """A loaded run: its config, tokenizer and model (in eval mode), and the step it reached."""

    cfg: RunConfig
    tokenizer: object
    model: torch.nn.Module
    step: int

    def __repr__(self) -> str:
        """The step, the model's class and size, the tokenizer and the config, on one line each
        (not the module tree, which `run.model` prints)."""
        size = sum(p.numel() for p in self.model.parameters())
        return (f"Run(step={self.step},\n    model={type(self.model).__name__} ({size:,} "
                f"parameters),\n    tokenizer={self.tokenizer!r},\n    cfg={self.cfg!r})")


@contextlib.contextmanager
def writing(run_dir):
    """Hold `run_dir` as its one writer while the block runs, and first finish or undo a save
    that a crash interrupted (atomic.recover); yields whether a save was finished. A second
    writer is refused with the holder's process id. The lock is the operating system's (flock):
    it goes with its process, so the lock of a run that crashed is free."""
    run_dir = Path(run_dir)
    with writes_to(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(run_dir / LOCK, "a+", encoding="utf-8")
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise GlassformerError(f"{run_dir} is being written by another process (pid "
                                   f"{holder}); wait for it to end, or choose another --out") \
                from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield recover(run_dir)
        finally:
            lock.truncate(0)


def start_run(run_dir, cfg: RunConfig, tokenizer) -> None:
    """Create the run directory with its config and tokenizer, and an empty log (an earlier
    attempt that died before its first checkpoint leaves nothing behind)."""
    run_dir = Path(run_dir)
    with writes_to(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / CONFIG)
        tokenizer.save(run_dir / TOKENIZER)
        for stale in (METRICS, ADAPTERS):
            (run_dir / stale).unlink(missing_ok=True)


def has_checkpoint(run_dir) -> bool:
    return (Path(run_dir) / MODEL).exists()


def resumed_config(run_dir, cfg: RunConfig) -> RunConfig:
    """`cfg` for continuing the run in `run_dir`: the run's own model, `cfg`'s train settings
    (e.g. more steps)."""
    if not has_checkpoint(run_dir):
        raise GlassformerError(f"{run_dir} has no checkpoint to resume; drop --resume to start")
    return dataclasses.replace(cfg, model=RunConfig.load(Path(run_dir) / CONFIG).model)


def resume_config(run_dir, overrides: dict[str, str]) -> RunConfig:
    """The config to continue run `run_dir` with: its own, with `overrides` of train settings
    ({"train.max_steps": "2000"}); the model cannot change."""
    models = sorted(k for k in overrides if k.startswith("model."))
    if models:
        raise GlassformerError(f"the model cannot change on --resume; drop {', '.join(models)}")
    return apply_overrides(RunConfig.load(Path(run_dir) / CONFIG), overrides)


def save_checkpoint(run_dir, model, optimizer, step: int, rng: dict) -> None:
    """Write weights and trainer state for `step`, as one set: all or none replace the previous
    ones.

    With several processes every one calls this (FSDP gathers the shards) and process 0
    writes. A LoRA model's adapters are also written alone (ADAPTERS).
    """
    weights = get_model_state_dict(model, options=WHOLE)  # FSDP: the whole, on process 0 only
    state = {"step": step, "rng": rng,
             "optimizer": get_optimizer_state_dict(model, optimizer, options=WHOLE)}
    if dist.is_initialized() and dist.get_rank() > 0:
        return
    if isinstance(model, DistributedDataParallel):
        model = model.module  # the names in `weights` are the wrapped model's
    tied = tied_aliases(model)
    weights = {name: t.contiguous() for name, t in weights.items() if name not in tied}
    run_dir = Path(run_dir)
    adapted = any(isinstance(m, lora.LoRALinear) for m in model.modules())
    with (write_failures_explained(run_dir, has_checkpoint(run_dir)),
          atomic_files([run_dir / MODEL, run_dir / STATE]
                       + ([run_dir / ADAPTERS] if adapted else [])) as temps):
        save_file(weights, str(temps[0]), metadata={"step": str(step)})
        torch.save(state, temps[1])
        if adapted:
            lora.save_adapters(model, temps[2], step)


def tied_aliases(model) -> set[str]:
    """Every name of a shared (tied) parameter but its first: the matrix is stored once."""
    seen, aliases = set(), set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            aliases.add(name)
        seen.add(id(p))
    return aliases


def get_rng_state(batches: torch.Generator) -> dict:
    """Every random state training draws on: batches, dropout (torch's global RNG), CUDA."""
    state = {"batches": batches.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_training(run_dir, model, optimizer, batches: torch.Generator, step: int) -> None:
    """Resume training where the checkpoint of `run_dir` left it: the optimizer state and every
    random state (batches, dropout, CUDA) saved with the weights of `step`, which are already
    loaded (load_weights, before the model is wrapped for several processes)."""
    state = load_trainer_state(run_dir)
    if state["step"] != step:
        raise GlassformerError(f"{run_dir}: weights are from step {step} but the trainer state "
                               f"is from step {state['step']}; the checkpoint is inconsistent")
    # the whole, name-keyed optimizer state; FSDP keeps each process's shard
    set_optimizer_state_dict(model, optimizer, state["optimizer"],
                             options=StateDictOptions(full_state_dict=True))
    rng = state["rng"]
    batches.set_state(rng["batches"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def build_run_model(cfg: RunConfig) -> torch.nn.Module:
    """The model a run's config describes, as training builds it: freshly initialised, with
    low-rank adapters on the frozen model when train.lora_rank asks (model/lora.py)."""
    model = build(cfg.model)
    tc = cfg.train
    if tc.lora_rank:
        lora.add_adapters(model, tc.lora_rank, tc.lora_alpha, tc.lora_dropout, tc.lora_targets)
    return model


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
    model = build_run_model(cfg)
    step = load_weights(model, run_dir / MODEL, device)
    if cfg.train.lora_rank:  # a LoRA run stores base and adapters: merged, a plain model again
        lora.merge(model)
    return Run(cfg, tokenizer, model.to(device).eval(), step)


def saved_step(path) -> int:
    """The step the weights in safetensors file `path` were saved at."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {}).get("step", 0))
    except Exception as err:  # safetensors reports corruption with several error types
        raise GlassformerError(f"{path} is corrupt or incomplete ({type(err).__name__}: {err}); "
                               "restore it from a backup or retrain") from None


def load_weights(model, path, device="cpu") -> int:
    """Load weights from a safetensors file into `model`; return the step they were saved at."""
    step = saved_step(path)
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
    except RuntimeError as err:  # shapes differ from the config
        raise GlassformerError(f"{path} does not fit the model in config.json: "
                               f"{str(err).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise GlassformerError(f"{path} does not fit the model in config.json: missing "
                               f"{sorted(missing)}, unexpected {sorted(unexpected)}")
    return step


def init_from(model, run_dir, device="cpu") -> str:
    """Copy into `model` every weight of run `run_dir` whose name and shape match (e.g. an
    MLM-pretrained encoder under a new classifier; a LoRA run's weights with its adapters
    merged); return what was copied and what is new."""
    if not (Path(run_dir) / MODEL).exists():
        raise GlassformerError(f"--train.init_from {run_dir}: no {MODEL} there; train that run "
                               "first")
    with torch.random.fork_rng(devices=[]):  # building it must not move this run's seed
        theirs = load_run(run_dir, device).model.state_dict()
    ours = model.state_dict()
    fits = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    if not fits:
        raise GlassformerError(f"no weight of {run_dir} fits this model (names or shapes differ); "
                               "was it trained with the same family and sizes?")
    model.load_state_dict(fits, strict=False)
    new = sorted({k.split(".")[0] for k in ours if k not in fits})
    return (f"initialised {len(fits)} of {len(ours)} tensors from {run_dir}"
            + (f"; new: {', '.join(new)}" if new else ""))


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
    """The records of metrics.jsonl. A torn last line (a process killed while appending it) is
    dropped with a warning on stderr; an unreadable line before it is an error."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise GlassformerError(f"{path}, line {i + 1}, is not JSON: {line[:60]!r}; "
                                       "remove that line or restore the file") from None
            print(f"warning: {path} ends in a torn line (a process killed while writing it?); "
                  "it is left out", file=sys.stderr)
    return records


def truncate_metrics(run_dir, step: int) -> None:
    """Drop records after `step`: on resume they are measured again."""
    kept = [r for r in read_metrics(run_dir) if r["step"] <= step]
    write_text_atomic(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in kept))
