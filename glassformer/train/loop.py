"""The training loop: warmup and cosine decay, gradient accumulation and clipping, periodic
evaluation with a printed sample, metrics, checkpoints and resume, in one process or several
(torchrun; train/distributed.py), for every weight or for LoRA adapters (model/lora.py). One
linear function to read; what differs between tasks (data, batches, metrics) lives in
train/tasks.py."""

import contextlib
import dataclasses
import io
import math
import sys
import time
from pathlib import Path

import torch

from glassformer.config import RunConfig
from glassformer.errors import GlassformerError
from glassformer.tokenizers import load_tokenizer
from glassformer.train import checkpoint as ckpt
from glassformer.train import distributed
from glassformer.train.detectors import common_tokens, track
from glassformer.train.device import autocast
from glassformer.train.flops import batch_flops, training_peak
from glassformer.train.memory_check import check_memory
from glassformer.train.optim import lr_at, make_optimizer
from glassformer.train.progress import Progress, describe_run
from glassformer.train.tasks import TASKS


class TrainingDiverged(GlassformerError):
    """The loss or gradient became NaN or infinite."""


def train(cfg: RunConfig, run_dir, resume: bool = False, out=None, bar=None) -> dict:
    """Train the model `cfg` describes on its task (train.task), writing the run to `run_dir`;
    return the last evaluation.

    With `resume`, continue the run in `run_dir` from its last checkpoint, with the run's own
    model config and `cfg.train`: on the same machine and settings the losses are the same as
    those of an uninterrupted run.

    Lines go to `out` (default: stderr), and the progress bar too, or to `bar` if given.

    Started by torchrun, every process runs this: each trains on its share of every batch,
    and process 0 alone prints and writes the run.
    """
    run_dir = Path(run_dir)
    tc = cfg.train
    world, device = distributed.setup(tc.device)
    check_settings(tc, world)
    # Process 0 writes the run: it holds the directory, and finishes or undoes a save that a
    # crash interrupted before anything is read.
    with ckpt.writing(run_dir) if world.main else contextlib.nullcontext() as recovered:
        distributed.wait_for_all(world)  # the others read the run once it is whole
        cfg, task = open_run(cfg, run_dir, resume, world)
        # before the model is built: refuse what cannot fit
        check_memory(cfg, device, world, getattr(task, "row_tokens", None))
        torch.manual_seed(tc.seed)  # the same initial weights in every process
        model = ckpt.build_run_model(cfg)
        started_from = ""
        if tc.init_from and not resume:
            started_from = (ckpt.init_from(model, tc.init_from) if tc.init_weights else
                            f"random weights (init_weights=false); tokenizer of {tc.init_from}")
        step = saved_step = ckpt.load_weights(model, run_dir / ckpt.MODEL) if resume else 0
        core = model.to(device)  # evaluated and sampled; `model` is what the processes share
        model = distributed.wrap(core, tc.parallel, world)
        stepped = torch.compile(model) if tc.compile else model  # evaluation and sampling: eager
        optimizer = make_optimizer(model, tc)
        batches = torch.Generator().manual_seed(tc.seed)  # draws the training batches
        if resume:
            ckpt.restore_training(run_dir, model, optimizer, batches, step)
            if world.main:
                ckpt.truncate_metrics(run_dir, step)

        # MFU against this device's measured matmul peak, summed over the processes
        progress = Progress(tc.max_steps, step,
                            (out or sys.stderr) if world.main else io.StringIO(),
                            training_peak(str(device)) * world.size, bar if world.main else None)
        progress.print(describe_run(cfg, core, task, device, world, step if resume else None))
        if recovered:
            progress.print(f"a crash had interrupted the save of step {step}; it was completed")
        if started_from:
            progress.print(started_from)
        # elapsed_s counts on from where a resumed run's metrics stopped (its wall-clock curve)
        before = max((m.get("elapsed_s", 0) for m in ckpt.read_metrics(run_dir)), default=0) \
            if resume and world.main else 0
        started = time.perf_counter() - before
        # --train.track_heads draws its random tokens from those the text uses (first 1M tokens)
        pool = common_tokens(task.train[:1_000_000]) if tc.track_heads else None

        def evaluate(step: int) -> dict:
            # Every process evaluates the same fixed batches (an FSDP forward needs them all).
            with autocast(device):
                metrics = task.evaluate(core, device)
                if tc.track_heads:
                    metrics |= track(core, pool, cfg.model.block_size // 2)
            metrics |= {"step": step, "elapsed_s": round(time.perf_counter() - started, 1)}
            if world.main:
                ckpt.append_metrics(run_dir, metrics)
            progress.evaluation(metrics, task.show(core) if tc.sample_tokens else "")
            model.train()
            return metrics

        # A new run is evaluated before its first step: the loss to beat, and a sample of noise.
        last_eval = evaluate(0) if tc.eval_every and not resume else {}
        progress.start_timing()
        model.train()
        while step < tc.max_steps:
            lr = lr_at(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, grad_norm, tokens, flops = train_step(stepped, task, batches, tc, device, world)
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                where = f"step {saved_step}" if saved_step else "none was written yet"
                raise TrainingDiverged(
                    f"training diverged at step {step + 1}: loss {loss}, grad norm {grad_norm}, "
                    f"lr {lr:.3g}. Last good checkpoint: {where} (in {run_dir}). Try a lower "
                    "--train.lr or a longer --train.warmup_steps")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            rate = progress.update(step, loss, tokens, flops)

            if step % tc.log_every == 0 and world.main:
                ckpt.append_metrics(run_dir, {"step": step, "train_loss": loss, "lr": lr,
                                              "grad_norm": grad_norm, "tokens_per_s": round(rate),
                                              "elapsed_s": round(time.perf_counter() - started, 2),
                                              "mfu": round(progress.mfu(), 4)})
            if (tc.eval_every and step % tc.eval_every == 0) or step == tc.max_steps:
                last_eval = evaluate(step)
            if (tc.save_every and step % tc.save_every == 0) or step == tc.max_steps:
                ckpt.save_checkpoint(run_dir, model, optimizer, step, ckpt.get_rng_state(batches))
                saved_step = step
        progress.close()
        if last_eval:
            progress.done(last_eval, time.perf_counter() - started, run_dir)
    distributed.teardown(world)
    return last_eval


def check_settings(tc, world) -> None:
    """Refuse train settings that cannot work together, before anything is built."""
    if tc.lora_rank and not tc.init_from:
        raise GlassformerError("train.lora_rank adapts a trained model: name it with "
                               "--train.init_from=RUN")
    if tc.lora_rank and tc.parallel == "fsdp" and world.size > 1:
        raise GlassformerError("LoRA adapters on FSDP-sharded weights are not supported; use "
                               "--train.parallel=ddp")
    if tc.compile and world.size > 1:
        raise GlassformerError("train.compile works in one process; drop --train.compile or "
                               "--nproc")


def open_run(cfg: RunConfig, run_dir: Path, resume: bool, world) -> tuple[RunConfig, object]:
    """The run's config and task. A new run builds its tokenizer from the data (or takes
    init_from's), sets the model's vocab_size from it, and writes config.json and
    tokenizer.json; a resumed one keeps its own model and tokenizer (ckpt.resumed_config)."""
    tc = cfg.train
    if resume:
        cfg = ckpt.resumed_config(run_dir, cfg)
        step = ckpt.saved_step(run_dir / ckpt.MODEL)
        if tc.max_steps <= step:
            raise GlassformerError(f"{run_dir} is at step {step} already: --max-steps "
                                   f"{tc.max_steps} leaves nothing to train; give more steps")
        task = TASKS[tc.task](cfg, load_tokenizer(run_dir / ckpt.TOKENIZER))
        if world.main:
            cfg.save(run_dir / ckpt.CONFIG)  # the train settings may have changed
        return cfg, task
    if ckpt.has_checkpoint(run_dir):
        raise GlassformerError(f"{run_dir} already holds a run; continue it with --resume "
                               "or choose another --out")
    start = load_tokenizer(Path(tc.init_from) / ckpt.TOKENIZER) if tc.init_from else None
    task = TASKS[tc.task](cfg, start)
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, vocab_size=task.tokenizer.vocab_size))
    if world.main:
        ckpt.start_run(run_dir, cfg, task.tokenizer)
    return cfg, task


def train_step(model, task, batches, tc, device,
               world=distributed.ALONE) -> tuple[float, float, int, float]:
    """Forward and backward over `grad_accum` micro-batches; return (mean loss, grad norm,
    tokens processed, their training FLOPs), over every process's share of the global batch.

    Each micro-batch loss is divided by grad_accum, so (batch 8, accum 1) and (batch 2, accum 4)
    give the same gradient. Gradients are averaged over the processes once per step, in the
    last micro-batch's backward. The norm is measured before clipping.
    """
    total, tokens, flops = 0.0, 0, 0.0
    for i in range(tc.grad_accum):
        batch = task.batch(batches, device)  # the model's forward arguments, the same everywhere
        tokens += batch["ids"].numel() + (batch["src"].numel() if "src" in batch else 0)
        flops += batch_flops(distributed.unwrapped(model), batch)
        with distributed.gradient_sync(model, sync=i == tc.grad_accum - 1):
            with autocast(device):
                _, loss = model(**distributed.shard(batch, world),
                                label_smoothing=tc.label_smoothing)
            (loss / tc.grad_accum).backward()
        total += loss.item() / tc.grad_accum
    grad_norm = distributed.clip_grad_norm(model, tc.grad_clip)
    return distributed.mean(total, world), grad_norm, tokens, flops
