"""Wall-clock to a validation loss: nanoGPT's CPU "baby GPT" recipe with glassformer's classic
parts against glassformer's best recipe at this budget (the `shakespeare-sprint` preset), on
tinyshakespeare.

    python -m bench.time_to_loss [--text ../shared/data/tinyshakespeare.txt] [--target 1.88]
        [--budget 300] [--best shakespeare-sprint]

nanoGPT's README reports val loss 1.88 for its baby recipe on a CPU (4 layers, 4 heads, 128
wide, block 64, batch 12, lr 1e-3, warmup 100, cosine to 2000 iterations, AdamW betas (0.9,
0.99), weight decay 0.1, clip 1.0, no dropout); "classic" is that recipe with learned positions,
GELU, LayerNorm and AdamW. Both train on the first 90% of the characters and are scored on the
last 10%, every token of it (windows of each model's block size), at a fixed step interval.

The two take turns, one optimizer step each, and each one's clock counts only its own steps, so
a slow moment of the machine hits both; evaluations are not timed. A recipe stops at the target,
at its last step or when its clock passes --budget seconds. When the classic recipe ends above
the target (it may: nanoGPT's 1.88 is an estimate on random batches), the two are compared at
the classic recipe's best loss instead.
"""

import argparse
import dataclasses
import math
from pathlib import Path

import torch

from bench.common import memory, restart_peak, run_in_child, table, timed
from glassformer.config import ModelConfig, RunConfig, TrainConfig, preset
from glassformer.model import build
from glassformer.train.evaluate import evaluate_tokens
from glassformer.train.flops import flops_per_token
from glassformer.train.loop import train_step
from glassformer.train.optim import lr_at, make_optimizer
from glassformer.train.tasks import LMTask

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

CLASSIC = RunConfig(
    model=ModelConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
                      position="learned", activation="gelu", norm="layernorm", bias=True),
    train=TrainConfig(batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100, max_steps=2000,
                      beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_every=100))


class Racer:
    """One recipe's model, optimizer and clock."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.task = LMTask(cfg)
        torch.manual_seed(cfg.train.seed)
        self.model = build(dataclasses.replace(cfg.model, vocab_size=self.task.tokenizer.vocab_size))
        self.optimizer = make_optimizer(self.model, cfg.train)
        self.batches = torch.Generator().manual_seed(cfg.train.seed)
        self.step, self.seconds, self.history, self.done = 0, 0.0, [], False

    def train_one(self) -> None:
        tc = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, tc)
        self.model.train()

        def step():
            train_step(self.model, self.task, self.batches, tc, "cpu")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

        self.seconds += timed(step)
        self.step += 1

    def evaluate(self) -> float:
        loss = evaluate_tokens(self.model, self.task.val, batch_size=64)["loss"]
        self.history.append((self.step, self.seconds, loss))
        return loss


def race(recipes: dict[str, RunConfig], target: float, budget: float) -> dict:
    racers = {name: Racer(cfg) for name, cfg in recipes.items()}
    for name, r in racers.items():
        print(f"{name}: {sum(p.numel() for p in r.model.parameters()):,} parameters, "
              f"{r.cfg.train.batch_size} x {r.cfg.model.block_size} tokens per step, "
              f"up to {r.cfg.train.max_steps} steps")
    while not all(r.done for r in racers.values()):
        for name, r in racers.items():
            if r.done:
                continue
            r.train_one()
            tc = r.cfg.train
            if r.step % tc.eval_every == 0 or r.step == tc.max_steps or r.seconds > budget:
                loss = r.evaluate()
                print(f"  {name}: step {r.step}, {r.seconds:.1f} s, val loss {loss:.4f}",
                      flush=True)
                r.done = loss <= target or r.step == tc.max_steps or r.seconds > budget
    return racers


def run_alone(cfg: RunConfig, steps: int) -> dict:
    """A few steps and one evaluation of a recipe on its own, for its peak memory: data,
    model, optimizer state and activations."""
    rss = restart_peak()
    r = Racer(cfg)
    for _ in range(steps):
        r.train_one()
    r.evaluate()
    return {"rss": rss}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", default=str(TEXT), help="tinyshakespeare (1,115,394 bytes)")
    parser.add_argument("--target", type=float, default=1.88)
    parser.add_argument("--budget", type=float, default=300, help="seconds of training per recipe")
    parser.add_argument("--best", default="shakespeare-sprint", help="the preset to race")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    args = parser.parse_args()
    if not Path(args.text).is_file():
        raise SystemExit(f"{args.text} not found: pass --text PATH to tinyshakespeare.txt")

    def on_text(cfg):
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, text=args.text))

    sprint = preset(args.best)
    sprint = dataclasses.replace(sprint, train=dataclasses.replace(sprint.train, eval_every=50))
    recipes = {"classic": on_text(CLASSIC), "best": on_text(sprint)}
    racers = race(recipes, args.target, args.budget)
    rows = []
    for name, r in racers.items():
        reached = next(((s, t, l) for s, t, l in r.history if l <= args.target), None)
        step, seconds, loss = reached or r.history[-1]
        tokens = step * r.cfg.train.batch_size * r.cfg.model.block_size
        rss = None if args.no_memory else run_in_child(run_alone, recipes[name], 5)
        mfu_flops = flops_per_token(r.model, r.cfg.model.block_size) * tokens / seconds
        rows.append([name, "yes" if reached else "NO", step, f"{seconds:.1f}",
                     f"{tokens / seconds:,.0f}", f"{mfu_flops / 1e9:.0f}", f"{loss:.4f}",
                     f"{min(l for _, _, l in r.history):.4f}",
                     memory(rss)])
    print()
    print(table(["recipe", f"reached {args.target}", "step", "train s", "tokens/s", "GFLOP/s",
                 "val loss then", "best val loss", "peak RSS MiB (+ for the run)"], rows))
    goal = args.target
    if not any(l <= goal for _, _, l in racers["classic"].history):
        goal = min(l for _, _, l in racers["classic"].history)
        print(f"\nclassic ended above {args.target}; comparing at its best, {goal:.4f}")
    times = {name: next((t for _, t, l in r.history if l <= goal), math.inf)
             for name, r in racers.items()}
    print(f"to val loss {goal:.4f}: classic {times['classic']:.1f} s, best {times['best']:.1f} s, "
          f"best/classic = {times['best'] / times['classic']:.2f}")


if __name__ == "__main__":
    main()
