"""Fine-tuning a trained run on a new text or task, through the one training loop: the new run
starts from the run's weights (train.init_from) and trains every weight (method "full") or
low-rank adapters on a frozen copy (method "lora": train.lora_rank, model/lora.py); or, as the
baseline, the same model from random weights with the run's tokenizer (method "scratch":
train.init_weights=false).

  GPT on new text      glassformer finetune runs/shakespeare --work sonnets --method lora
  BERT classifier      glassformer finetune runs/bert --task genre --method lora
  on your labels       glassformer finetune runs/minilm --task tsv --train-tsv train.tsv
                                            --val-tsv test.tsv --method lora
  instruct model SFT   glassformer finetune runs/smollm2 --conversations train.jsonl
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from glassformer.atomic import write_text_atomic
from glassformer.config import RunConfig, apply_overrides
from glassformer.errors import GlassformerError

# A short run from trained weights: fewer steps and a lower peak learning rate than from scratch.
# LoRA's small, zero-started updates take a larger learning rate than full fine-tuning (Hu et
# al. use 2e-4 for full and up to 2e-3 for LoRA); each method gets the one that suits it. From
# random weights, the rate our presets train encoders of this size with from scratch.
SETTINGS = {"train.max_steps": "200", "train.warmup_steps": "20", "train.eval_every": "50",
            "train.save_every": "0", "train.sample_tokens": "200"}
LEARNING_RATES = {"full": {"train.lr": "3e-4", "train.min_lr": "3e-5"},
                  "lora": {"train.lr": "3e-3", "train.min_lr": "3e-4"},
                  "scratch": {"train.lr": "1e-3", "train.min_lr": "1e-4"}}


def work_file(name: str) -> Path:
    """One of Shakespeare's works (e.g. "sonnets", "hamlet") as a text file in the cache."""
    from glassformer.data.corpora import cache_dir, shakespeare_works

    works = shakespeare_works()
    if name not in works:
        close = difflib.get_close_matches(name, works, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise GlassformerError(f"no work named {name!r}; {hint}choose one of: "
                               f"{', '.join(sorted(works))}")
    path = cache_dir() / "works" / f"{name}.txt"
    if not path.is_file():
        write_text_atomic(path, works[name])
    return path


def finetune_config(base_run, method: str = "lora", *, task: str | None = None,
                    text=None, tsv=None, rank: int = 8, overrides: dict | None = None,
                    conversations=None, val_conversations=None) -> RunConfig:
    """The config of a fine-tuning run of `base_run`: its model (with a classifier head for
    task "genre", and for task "tsv" one output per label of `tsv`, the pair (training file,
    held-out file) of text<TAB>label lines), `task` (default: "chat" given `conversations`,
    else the run's own) on `text` (None: the task's default data) or on the JSONL files
    `conversations` and `val_conversations` (task "chat"), SETTINGS and the method's learning
    rate, then `overrides` ({"train.lr": "1e-3", ...})."""
    if method not in LEARNING_RATES:
        raise GlassformerError(f"unknown method {method!r}; choose {', '.join(LEARNING_RATES)}")
    base = RunConfig.load(Path(base_run) / "config.json")
    task = task or ("chat" if conversations else base.train.task)
    if (task == "tsv") != (tsv is not None):
        raise GlassformerError("task tsv, and it alone, reads text<TAB>label files: give "
                               "--task tsv with --train-tsv FILE --val-tsv FILE")
    train_tsv, val_tsv = (None, None) if tsv is None else map(str, tsv)
    model = dataclasses.replace(base.model, **classifier_head(task, train_tsv))
    train = dataclasses.replace(base.train, task=task, text=_path(text),
                                train_tsv=train_tsv, val_tsv=val_tsv, init_from=str(base_run),
                                init_weights=method != "scratch",
                                lora_rank=rank if method == "lora" else 0,
                                conversations=_path(conversations),
                                val_conversations=_path(val_conversations))
    return apply_overrides(RunConfig(model, train),
                           SETTINGS | LEARNING_RATES[method] | (overrides or {}))


def classifier_head(task: str, train_tsv: str | None) -> dict:
    """The ModelConfig fields of `task`'s head: 4 outputs for the genres, one per label of the
    training file for task "tsv" (their names kept), none for the others."""
    from glassformer.data.genre import GENRES
    from glassformer.data.labelled import label_names, read_examples

    if task == "genre":
        return {"n_classes": len(GENRES), "labels": ()}
    if task == "tsv":
        labels = label_names(read_examples(train_tsv), train_tsv)
        return {"n_classes": len(labels), "labels": labels}
    return {"n_classes": 0, "labels": ()}


def _path(path) -> str | None:
    return None if path is None else str(path)


def finetune(base_run, out, method: str = "lora", *, task: str | None = None, text=None,
             tsv=None, rank: int = 8, overrides: dict | None = None, stream=None,
             conversations=None, val_conversations=None) -> dict:
    """Fine-tune `base_run` into run directory `out` (see finetune_config); return the last
    evaluation. A LoRA run's directory also holds adapters.safetensors, the adapters alone."""
    from glassformer.train.loop import train

    cfg = finetune_config(base_run, method, task=task, text=text, tsv=tsv, rank=rank,
                          overrides=overrides, conversations=conversations,
                          val_conversations=val_conversations)
    return train(cfg, out, out=stream)
