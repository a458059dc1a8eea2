"""Recipe comparisons: train each recipe on the same data, budget and seed, then report.

Every number in the report comes from the runs' own metrics.jsonl (losses, tokens/s, elapsed
time), except the parameter count (counted from the saved model) and the optional evaluations on
windows longer than the training block (the validation split, evaluated after training).
Wall-clock time at a logged step is step * tokens per step / the logged tokens/s (the rate since
the run began). A comparison may also ask for models of the same size (one recipe's width chosen
to match the first recipe's parameter count) and for each model's training speed as the
sequence grows (throughput.py), measured after training.
"""

import dataclasses
import json
import re
from pathlib import Path

from glassformer import config as C
from glassformer.errors import GlassformerError, writes_to


def parse_recipe(spec: str) -> tuple[str, dict[str, str]]:
    """"rope:model.position=rope,train.lr=1e-3" -> ("rope", {"model.position": "rope", ...})."""
    name, colon, rest = spec.partition(":")
    pairs = [p for p in rest.split(",") if p] if colon else []
    if not name or any("=" not in p for p in pairs):
        raise GlassformerError(f"bad recipe {spec!r}; write NAME:SECTION.FIELD=VALUE,... e.g. "
                               "rope:model.position=rope")
    return name, dict(p.split("=", 1) for p in pairs)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "recipe"


def run_comparison(recipes: dict[str, dict], base: C.RunConfig, out_dir, *, title: str = "",
                   about: str = "", longer=(), match_size: str | None = None, lengths=(),
                   log=print, bar=None) -> Path:
    """Train every recipe {name: overrides} from `base` into out_dir/NAME, then write
    out_dir/report.md, results.json and the PNGs; return the report's path.

    match_size: a recipe (not the first) whose model.n_embd is chosen, once the first recipe
    has trained, so that its parameter count is closest to the first's; the report lists the
    width among its overrides. lengths: sequence lengths at which to time each recipe's model
    (forward+backward tokens/s, the same tokens per step at every length). bar: where each
    recipe's progress bar is drawn (a terminal or a notebook; None: nowhere)."""
    from glassformer.train.loop import train

    out_dir = Path(out_dir)
    if len({slug(n) for n in recipes}) != len(recipes):
        raise GlassformerError("recipe names must differ (after replacing odd characters)")
    if match_size is not None and match_size not in list(recipes)[1:]:
        raise GlassformerError(f"match_size={match_size!r} must name a recipe after the first "
                               f"(the size to match): one of {list(recipes)[1:]}")
    recipes = {name: dict(overrides) for name, overrides in recipes.items()}  # ours to extend
    cfgs = {name: C.apply_overrides(base, overrides) for name, overrides in recipes.items()}
    for name in recipes:  # fail before any training, not after the first recipe
        if (out_dir / slug(name) / "model.safetensors").exists():
            raise GlassformerError(f"{out_dir / slug(name)} already holds a run; choose another "
                                   "--out for a new comparison")
    with writes_to(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name, cfg in cfgs.items():
        if name == match_size:
            reference = results[0]
            model = dataclasses.replace(cfg.model, vocab_size=reference["vocab_size"])
            width = matched_width(model, reference["parameters"])
            recipes[name]["model.n_embd"] = str(width)
            cfg = C.apply_overrides(base, recipes[name])
            log(f"{name!r}: width {width} matches the {reference['parameters']:,} parameters "
                f"of {reference['name']!r}")
        run_dir = out_dir / slug(name)
        log(f"training {name!r} into {run_dir} (log: {run_dir}.log)")
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{run_dir}.log", "w", encoding="utf-8") as stream:
            train(cfg, run_dir, resume=False, out=stream, bar=bar)
        results.append(summarise_run(name, recipes[name], run_dir, longer))
    if lengths:
        tokens = timed_tokens(base, lengths)
        for r in results:
            log(f"timing {r['name']!r} at T = {', '.join(map(str, lengths))}")
            r["throughput"] = measure_run_throughput(r["run_dir"], lengths, tokens)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return write_report(results, out_dir, title, about, base)


def matched_width(cfg: C.ModelConfig, target: int) -> int:
    """The n_embd (a multiple of n_head) whose model, built from `cfg` with that width, has the
    parameter count closest to `target`; counted from models built on the meta device (shapes
    only, no memory)."""
    import torch

    from glassformer.model import count_parameters
    from glassformer.model import build

    def count(width: int) -> int:
        with torch.device("meta"):
            return count_parameters(build(dataclasses.replace(cfg, n_embd=width)))

    step = width = cfg.n_head
    while count(width + step) <= target:  # counts grow with the width
        width += step
    return min(width, width + step, key=lambda w: abs(count(w) - target))


def timed_tokens(base: C.RunConfig, lengths) -> int:
    """Tokens in each timed step: the training step's, or the longest length if that is more."""
    tc = base.train
    return max(tc.batch_size * tc.grad_accum * base.model.block_size, max(lengths))


def measure_run_throughput(run_dir, lengths, tokens: int) -> dict[str, dict]:
    """measure_throughput of a run's model config on its training device; keys are str(T), as
    in results.json."""
    from glassformer.inspect.throughput import measure_throughput
    from glassformer.train.device import pick_device

    cfg = C.RunConfig.load(Path(run_dir) / "config.json")
    rates = measure_throughput(cfg.model, lengths, tokens, pick_device(cfg.train.device))
    return {str(T): row for T, row in rates.items()}


def summarise_run(name: str, overrides: dict, run_dir, longer=()) -> dict:
    """The numbers of one trained run, read from its metrics.jsonl (and model, for counts)."""
    from glassformer.inspect.curves import read_curves
    from glassformer.model import count_parameters
    from glassformer.train.checkpoint import load_run, read_metrics

    run = load_run(run_dir)
    mc = run.cfg.model
    records = read_metrics(run_dir)
    evals = [r for r in records if "val_loss" in r]
    if not evals:
        raise GlassformerError(f"{run_dir}/metrics.jsonl has no evaluation")
    result = {
        "name": name, "overrides": overrides, "run_dir": str(run_dir),
        "parameters": count_parameters(run.model), "block_size": mc.block_size,
        "vocab_size": mc.vocab_size,
        **read_curves(run_dir),
        "final_step": evals[-1]["step"], "final_train_loss": evals[-1]["train_loss"],
        "final_val_loss": evals[-1]["val_loss"], "elapsed_s": evals[-1]["elapsed_s"],
        "tokens_per_s": next(r["tokens_per_s"] for r in reversed(records) if "tokens_per_s" in r),
    }
    if longer:
        result["longer"] = evaluate_longer(run, run_dir, longer)
    return result


def evaluate_longer(run, run_dir, factors, max_tokens: int = 32768) -> dict:
    """Validation loss on windows of 1x and each factor x the training block ({"1": loss, ...};
    None where the model cannot read that far: a learned table has no rows past block_size).
    The first `max_tokens` validation tokens, the same ones at every length."""
    from glassformer.model import build
    from glassformer.train.checkpoint import MODEL, load_weights
    from glassformer.train.evaluate import evaluate_tokens, validation_tokens

    mc = run.cfg.model
    val = validation_tokens(run)[:max_tokens]
    losses = {}
    for factor in (1, *factors):
        model = build(dataclasses.replace(mc, block_size=factor * mc.block_size))
        try:
            load_weights(model, Path(run_dir) / MODEL)
        except GlassformerError:  # the learned table's shape is fixed by block_size
            losses[str(factor)] = None
            continue
        losses[str(factor)] = evaluate_tokens(model, val)["loss"]
    return losses


def write_report(results: list[dict], out_dir, title: str, about: str, base) -> Path:
    from glassformer.inspect.plots import loss_curves

    out_dir = Path(out_dir)
    curves = {r["name"]: {"train": r["train"], "val": r["val"]} for r in results}
    loss_curves(curves, out_dir / "loss_vs_step.png", "step", "step", title)
    loss_curves(curves, out_dir / "loss_vs_time.png", "seconds", "wall-clock seconds", title)
    tc, m = base.train, base.model
    lines = [f"# {title or 'Comparison'}", ""]
    if about:
        lines += [about, ""]
    lines += [f"Every recipe: the same text ({tc.text or 'the default corpus'}), "
              f"{tc.max_steps} steps of batch {tc.batch_size} x block {m.block_size}, "
              f"seed {tc.seed}; unless the recipe says otherwise {m.n_layer} layers, "
              f"{m.n_head} heads, width {m.n_embd}, lr {tc.lr:g}, warmup {tc.warmup_steps}. "
              "Numbers from each run's metrics.jsonl; wall-clock times also depend on what "
              "else the machine was running.", "",
              "| recipe | overrides | parameters | final train loss | final val loss | "
              "tokens/s | wall time (s) |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        overrides = " ".join(f"`{k}={v}`" for k, v in r["overrides"].items()) or "-"
        lines.append(f"| {r['name']} | {overrides} | {r['parameters']:,} | "
                     f"{r['final_train_loss']:.4f} | {r['final_val_loss']:.4f} | "
                     f"{r['tokens_per_s']:,} | {r['elapsed_s']:.1f} |")
    lines += ["", "Validation loss at each evaluation:", "",
              "| step | " + " | ".join(r["name"] for r in results) + " |",
              "|---:|" + "---:|" * len(results)]
    steps = sorted({s for r in results for s, _, _ in r["val"]})
    for step in steps:
        cells = [next((f"{v:.4f}" for s, _, v in r["val"] if s == step), "-") for r in results]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    if any("longer" in r for r in results):
        factors = list(results[0]["longer"])
        lines += ["", "Validation loss on windows longer than training (the extrapolation "
                  "question; n/a: the model has no positions there):", "",
                  "| recipe | " + " | ".join(f"{f}x block" for f in factors) + " |",
                  "|---|" + "---:|" * len(factors)]
        for r in results:
            cells = ["n/a" if r["longer"][f] is None else f"{r['longer'][f]:.4f}" for f in factors]
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    if any("throughput" in r for r in results):
        lines += ["", *throughput_table(results, out_dir, title, base)]
    lines += ["", "![loss vs step](loss_vs_step.png)", "",
              "![loss vs wall-clock time](loss_vs_time.png)", ""]
    if any("throughput" in r for r in results):
        lines += ["![training tokens/s vs sequence length](throughput.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def throughput_table(results: list[dict], out_dir, title: str, base) -> list[str]:
    """The report's lines on speed against sequence length; draws out_dir/throughput.png."""
    from glassformer.inspect.throughput import REPEATS, throughput_chart

    rates = {r["name"]: {int(T): row["tokens_per_s"] for T, row in r["throughput"].items()}
             for r in results}
    throughput_chart(rates, Path(out_dir) / "throughput.png", title)
    first = results[0]["throughput"]
    tokens = timed_tokens(base, [int(T) for T in first])
    lines = ["Training speed as the sequence grows: forward+backward tokens/s of each recipe's "
             f"model (fresh weights, random tokens, the fastest of {REPEATS} steps after a "
             f"warm-up) with {tokens:,} tokens per step at every length T (batch = tokens / T):",
             "",
             "| T | batch | " + " | ".join(r["name"] for r in results) + " |",
             "|---:|---:|" + "---:|" * len(results)]
    for T, row in first.items():
        cells = [f"{r['throughput'][T]['tokens_per_s']:,}" for r in results]
        lines.append(f"| {T} | {row['batch']} | " + " | ".join(cells) + " |")
    return lines
