"""The training loop: warmup and cosine decay, gradient accumulation and clipping, periodic
evaluation with a printed sample, metrics, checkpoints and resume. One linear function to read."""

import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

from glassformer.config import RunConfig, SampleConfig
from glassformer.data.corpora import load_text
from glassformer.data.lm import check_enough, get_batch, split, token_file
from glassformer.errors import GlassformerError
from glassformer.generate.sampler import generate
from glassformer.inspect.params import count_parameters
from glassformer.model.gpt import GPT
from glassformer.tokenizers import CharTokenizer, load_tokenizer
from glassformer.train import checkpoint as ckpt
from glassformer.train.device import autocast, pick_device
from glassformer.train.evaluate import estimate_loss
from glassformer.train.optim import lr_at, make_optimizer
from glassformer.train.progress import Progress, format_duration


class TrainingDiverged(GlassformerError):
    """The loss or gradient became NaN or infinite."""


def train(cfg: RunConfig, run_dir, resume: bool = False, out=None) -> dict:
    """Train a GPT as `cfg` says, writing the run to `run_dir`; return the last evaluation.

    With `resume`, continue the run in `run_dir` from its last checkpoint, with the run's own
    model config and `cfg.train`: on the same machine and settings the losses are the same as
    those of an uninterrupted run.
    """
    run_dir = Path(run_dir)
    text = load_text(cfg.train.text)
    if resume:
        if not ckpt.has_checkpoint(run_dir):
            raise GlassformerError(f"{run_dir} has no checkpoint to resume; drop --resume to start")
        tokenizer = load_tokenizer(run_dir / ckpt.TOKENIZER)
        # The model is the run's own; the train settings may change (e.g. more steps).
        cfg = dataclasses.replace(cfg, model=RunConfig.load(run_dir / ckpt.CONFIG).model)
        cfg.save(run_dir / ckpt.CONFIG)
    else:
        if ckpt.has_checkpoint(run_dir):
            raise GlassformerError(f"{run_dir} already holds a run; continue it with --resume "
                                   "or choose another --out")
        tokenizer = CharTokenizer.from_text(text)
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size))
        ckpt.start_run(run_dir, cfg, tokenizer)
    tc, mc = cfg.train, cfg.model

    train_tokens, val_tokens = split(token_file(text, tokenizer), tc.val_fraction)
    check_enough(train_tokens, mc.block_size, "training")
    check_enough(val_tokens, mc.block_size, "validation")

    device = pick_device(tc.device)
    torch.manual_seed(tc.seed)
    model = GPT(mc).to(device)
    optimizer = make_optimizer(model, tc)
    batches = torch.Generator().manual_seed(tc.seed)  # draws the training batches
    step = saved_step = 0
    if resume:
        step = saved_step = ckpt.load_weights(model, run_dir / ckpt.MODEL, device)
        state = ckpt.load_trainer_state(run_dir)
        if state["step"] != step:
            raise GlassformerError(f"{run_dir}: weights are from step {step} but the trainer state "
                                   f"is from step {state['step']}; the checkpoint is inconsistent")
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], batches)
        ckpt.truncate_metrics(run_dir, step)

    progress = Progress(tc.max_steps, step, out or sys.stderr)
    progress.print(f"{count_parameters(model):,} parameters | {mc.n_layer} layers, {mc.n_head} heads, "
                   f"width {mc.n_embd}, block {mc.block_size} | vocab {tokenizer.vocab_size} | "
                   f"{len(train_tokens):,} train / {len(val_tokens):,} val tokens | {device}"
                   + (f" | resuming at step {step}" if resume else ""))
    tokens_per_step = tc.batch_size * tc.grad_accum * mc.block_size
    sample_prompt = "\n" if "\n" in text else text[0]  # samples start at a line break
    started = time.perf_counter()
    last_eval = {}
    model.train()
    while step < tc.max_steps:
        lr = lr_at(step, tc)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, grad_norm = train_step(model, train_tokens, batches, tc, device)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            where = f"step {saved_step}" if saved_step else "none was written yet"
            raise TrainingDiverged(
                f"training diverged at step {step + 1}: loss {loss}, grad norm {grad_norm}, "
                f"lr {lr:.3g}. Last good checkpoint: {where} (in {run_dir}). Try a lower "
                "--train.lr or a longer --train.warmup_steps")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        rate = progress.update(step, loss, tokens_per_step)

        if step % tc.log_every == 0:
            ckpt.append_metrics(run_dir, {"step": step, "train_loss": loss, "lr": lr,
                                          "grad_norm": grad_norm, "tokens_per_s": round(rate)})
        if (tc.eval_every and step % tc.eval_every == 0) or step == tc.max_steps:
            last_eval = evaluate(model, train_tokens, val_tokens, tc, device)
            last_eval |= {"step": step, "elapsed_s": round(time.perf_counter() - started, 1)}
            ckpt.append_metrics(run_dir, last_eval)
            progress.print(f"step {step}: train loss {last_eval['train_loss']:.4f}, "
                           f"val loss {last_eval['val_loss']:.4f}")
            if tc.sample_tokens:
                progress.print(show_sample(model, tokenizer, sample_prompt, tc))
            model.train()
        if (tc.save_every and step % tc.save_every == 0) or step == tc.max_steps:
            ckpt.save_checkpoint(run_dir, model, optimizer, step, get_rng_state(batches))
            saved_step = step
    if last_eval:
        progress.print(f"done: step {step}, val loss {last_eval['val_loss']:.4f} "
                       f"({last_eval['val_loss'] / math.log(2):.3f} bits/token) in "
                       f"{format_duration(time.perf_counter() - started)}; run saved in {run_dir}")
    return last_eval


def train_step(model, tokens, batches, tc, device) -> tuple[float, float]:
    """Forward and backward over `grad_accum` micro-batches; return (mean loss, grad norm).

    Each micro-batch loss is divided by grad_accum, so (batch 8, accum 1) and (batch 2, accum 4)
    give the same gradient. The norm is measured before clipping.
    """
    total = 0.0
    for _ in range(tc.grad_accum):
        x, y = get_batch(tokens, tc.batch_size, model.cfg.block_size, batches, device)  # (B, T)
        with autocast(device):
            _, loss = model(x, y)
        (loss / tc.grad_accum).backward()
        total += loss.item() / tc.grad_accum
    max_norm = tc.grad_clip if tc.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return total, grad_norm.item()


def evaluate(model, train_tokens, val_tokens, tc, device) -> dict:
    """Train and val loss over fixed batches (the same at every evaluation)."""
    with autocast(device):
        return {name: estimate_loss(model, tokens, tc.eval_batches, tc.batch_size, tc.seed, device)
                for name, tokens in (("train_loss", train_tokens), ("val_loss", val_tokens))}


def show_sample(model, tokenizer, prompt: str, tc) -> str:
    """A few lines sampled from the model, framed, so the user watches it learn."""
    cfg = SampleConfig(max_new_tokens=tc.sample_tokens, temperature=0.8, seed=tc.seed)
    text = generate(model, tokenizer, [prompt], cfg)[0]
    return "---- sample ----\n" + text.strip("\n") + "\n----------------"


def get_rng_state(batches: torch.Generator) -> dict:
    """Every random state training draws on: batches, dropout (torch's global RNG), CUDA."""
    state = {"batches": batches.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, batches: torch.Generator) -> None:
    batches.set_state(state["batches"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
