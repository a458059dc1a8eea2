"""The cost of hook points: the training step of a small GPT with its hook points present but
unused, and with hooks registered, against the same step in the code from before hook points
existed, in one run, as a ratio with its noise.

    python -m bench.hooks [--size small] [--steps 30] [--warmup 3] [--before REV]

"before" is glassformer's package at git revision REV (default: the parent of the commit that
added glassformer/model/hooks.py), copied into a temporary folder as the package
`glassformer_before`, so both models live in one process. All contenders hold the same weights
and take turns, one step each (round robin, the order rotated every round), so a slow moment
of the machine hits them all. Each round gives each contender a paired ratio, its step over
"before"'s step in that round; the table prints the median of those ratios, their middle half
(25th to 75th percentile) and a 95% bootstrap interval of the median (rounds resampled). The
control "before again" is the same code and weights as "before": its ratio is what the noise
alone gives. On a loaded machine the steps' noise can exceed what hook points cost, so the
script also times an unhooked hook point's call alone (a million calls) and prints the bound it
gives: points x that time, against the step. The contenders:

  before          the model without hook points
  before again    the same, a second time: the noise
  present         hook points, nothing hooked: the cost of having them
  hooked resid    a no-op hook on each block's residual-stream points (5 per block)
  hooked all      a no-op hook on every point: attention then takes the math kernel (hooked
                  scores and pattern) and the norms compute their scale; the price of what
                  it computes, not of the hooks
"""

import argparse
import importlib
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import torch

from bench.common import SIZES, gpt2_config, median_ms, table, timed
from bench.train_step import step
from glassformer.config import TrainConfig
from glassformer.model import build
from glassformer.model.hooks import HookPoint, hook_points, hooked
from glassformer.train.optim import make_optimizer

ROOT = Path(__file__).resolve().parent.parent


def before_revision() -> str:
    added = subprocess.run(["git", "log", "-n1", "--diff-filter=A", "--format=%H", "--",
                            "glassformer/model/hooks.py"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.strip()
    return f"{added}^"


def import_before(rev: str, folder: Path):
    """glassformer.model at `rev`, imported as glassformer_before.model."""
    archive = subprocess.run(["git", "archive", rev, "glassformer"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "glassformer_before"
    (folder / "glassformer").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("glassformer.", "glassformer_before."), encoding="utf-8")
    sys.path.insert(0, str(folder))
    return importlib.import_module("glassformer_before.model")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=list(SIZES), default="small")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--before", help="git revision of the code before hook points")
    args = p.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    cfg = gpt2_config(args.size)
    s = SIZES[args.size]
    rev = args.before or before_revision()
    with tempfile.TemporaryDirectory() as folder:
        old = import_before(rev, Path(folder))
        torch.manual_seed(0)
        present = build(cfg)
        models = {"before": old.build(cfg), "before again": old.build(cfg), "present": present,
                  "hooked resid": build(cfg), "hooked all": build(cfg)}
        for model in models.values():
            model.load_state_dict(present.state_dict())
            model.train()
        resid = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out",
                 "hook_resid_post")
        hooks = {"hooked resid": [(n, lambda v, _: None) for n in hook_points(
                     models["hooked resid"]) if n.endswith(resid)],
                 "hooked all": [(n, lambda v, _: None) for n in hook_points(models["hooked all"])]}
        contexts = {name: hooked(models[name], hooks[name]) for name in hooks}
        for context in contexts.values():
            context.__enter__()
        optimizers = {name: make_optimizer(m, TrainConfig()) for name, m in models.items()}
        ids = torch.randint(cfg.vocab_size, (s["batch"], s["block_size"] + 1),
                            generator=torch.Generator().manual_seed(0))  # (B, T + 1)
        times = {name: [] for name in models}
        names = list(models)
        for i in range(args.warmup + args.steps):
            for name in names[i % len(names):] + names[:i % len(names)]:  # rotated each round
                model = models[name]
                t = timed(lambda: step(lambda x, m=model: m(x)[0], optimizers[name], ids))
                if i >= args.warmup:
                    times[name].append(t)
        for context in contexts.values():
            context.__exit__(None, None, None)
    point, x = HookPoint(), torch.zeros(1)
    call_ns = min(timed(lambda: [point(x) for _ in range(10 ** 6)]) for _ in range(3)) * 1000
    rows, intervals = [], {}
    for name, t in times.items():
        ratios = [a / b for a, b in zip(t, times["before"])]  # paired, round by round
        median, (q1, q3), (low, high) = spread(ratios)
        intervals[name] = median, low, high
        rows.append([name, f"{len(hooks.get(name, []))}", f"{median_ms(t):.1f}", f"{median:.3f}",
                     f"{q1:.3f}-{q3:.3f}", f"{low:.3f}-{high:.3f}"])
    print(f"training step, GPT {args.size} ({s}), {args.steps} rounds, each contender one step "
          f"per round in rotated order; before = {rev}; {len(hook_points(present))} hook points")
    print(table(["model", "hooks", "median ms", "ratio to before", "middle half",
                 "95% interval"], rows))
    median, low, high = intervals["present"]
    verdict = "within noise" if low <= 1 <= high else "outside the noise"
    print(f"hook points present, nothing hooked: {median:.3f} x the step before them (95% "
          f"interval {low:.3f}-{high:.3f}; the control, the same code twice: "
          f"{intervals['before again'][1]:.3f}-{intervals['before again'][2]:.3f}): {verdict}")
    base = median_ms(times["before"])
    n = len(hook_points(present))
    print(f"an unhooked hook point's call: {call_ns:.0f} ns; {n} per forward = "
          f"{n * call_ns / 1000:.1f} us, {n * call_ns / 1e4 / base:.4f}% of the 'before' step")


def spread(ratios: list[float], resamples: int = 2000, seed: int = 0
           ) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """The median of `ratios`, their 25th and 75th percentiles, and the 2.5th and 97.5th
    percentiles of the median over `resamples` bootstrap resamples."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios)))
                     for _ in range(resamples))
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return (statistics.median(ratios), (q1, q3),
            (medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]))


if __name__ == "__main__":
    main()
