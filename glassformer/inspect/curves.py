"""A run's loss curves: read from its metrics.jsonl, drawn as loss.png in the run directory
(train and val loss against step and against wall-clock time), or several runs overlaid
(`glassformer plot RUN...`); and the same for the head tracking of `--train.track_heads`
(heads.png, `glassformer plot --heads RUN...`)."""

from pathlib import Path

from glassformer.errors import GlassformerError
from glassformer.inspect.plots import heads_curves, loss_panels

LOSS_PNG = "loss.png"
HEADS_PNG = "heads.png"


def read_curves(run_dir) -> dict:
    """{"train": [(step, seconds, loss)], "val": [(step, seconds, loss)]} from a run's metrics:
    train losses of the steps logged, val losses of the evaluations (seconds None where a line
    has no elapsed_s: runs from before it was logged)."""
    from glassformer.train.checkpoint import read_metrics

    records = read_metrics(run_dir)
    return {"train": [(r["step"], r.get("elapsed_s"), r["train_loss"])
                      for r in records if "tokens_per_s" in r],
            "val": [(r["step"], r.get("elapsed_s"), r["val_loss"])
                    for r in records if "val_loss" in r]}


def plot_runs(run_dirs, path=None) -> Path:
    """Draw the loss curves of `run_dirs` into `path` (default: the one run's loss.png);
    return the path."""
    from glassformer.config import RunConfig
    from glassformer.train.checkpoint import CONFIG
    from glassformer.train.tasks import val_scope

    run_dirs = [Path(d) for d in run_dirs]
    if path is None and len(run_dirs) != 1:
        raise GlassformerError("several runs are drawn into one file: give --out FILE.png")
    curves = {}
    for run_dir in run_dirs:
        curve = read_curves(run_dir)
        if not curve["train"] and not curve["val"]:
            raise GlassformerError(f"{run_dir} has no losses in metrics.jsonl yet: train it first")
        curves[str(run_dir)] = curve
    scopes = {val_scope(RunConfig.load(d / CONFIG).train) for d in run_dirs}
    val_label = f"val, {scopes.pop()}" if len(scopes) == 1 else "val"
    return loss_panels(curves, path or run_dirs[0] / LOSS_PNG, "loss", val_label)


def plot_heads(run_dirs, path=None) -> Path:
    """Draw the head tracking (induction score, loss on repeated random tokens) of `run_dirs`,
    trained with --train.track_heads, into `path` (default: the one run's heads.png); return
    the path."""
    from glassformer.train.checkpoint import read_metrics

    run_dirs = [Path(d) for d in run_dirs]
    if path is None and len(run_dirs) != 1:
        raise GlassformerError("several runs are drawn into one file: give --out FILE.png")
    names = [d.name for d in run_dirs]
    runs = {}
    for run_dir in run_dirs:
        records = read_metrics(run_dir)
        if not any("induction_score" in r for r in records):
            raise GlassformerError(f"{run_dir} has no head tracking in metrics.jsonl: train it "
                                   "with --train.track_heads=true")
        runs[run_dir.name if names.count(run_dir.name) == 1 else str(run_dir)] = records
    title = ("induction heads forming: " + ", ".join(runs))
    return heads_curves(runs, path or run_dirs[0] / HEADS_PNG, title)
