"""Full fine-tuning against LoRA at several ranks, on the same task, budget and seed, and
optionally against the same model trained from random weights ("scratch", the baseline that
shows what the pretrained weights bring): trainable parameters, peak training memory, time,
tokens/s and final quality, in one Markdown table.

Quality is the last evaluation of each run (validation loss; accuracy for a classifier). Time
is each run's wall clock from its start to its last evaluation, evaluations included; tokens/s
is its rate since its start, as its progress line shows.
Peak memory is measured apart from training, on the CPU, over two steps of the run's own
model, optimizer and batches: the weights (all of them: LoRA keeps the frozen base), plus the
peak of what the steps allocate (gradients, AdamW state and activations, for the trained
weights only), counted by the profiler's record of every tensor allocation and free.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from glassformer.config import RunConfig
from glassformer.errors import GlassformerError, writes_to
from glassformer.finetune.run import finetune_config


def compare_methods(base_run, out_dir, *, task: str | None = None, text=None, tsv=None,
                    ranks=(4, 8, 16), scratch: bool = False, overrides: dict | None = None,
                    log=print, conversations=None, val_conversations=None) -> Path:
    """Fine-tune `base_run` in full and with LoRA of each rank in `ranks` (and, with `scratch`,
    train its model from random weights first) into out_dir/NAME (logs beside), then write
    out_dir/report.md and results.json; return the report's path."""
    from glassformer.train.checkpoint import has_checkpoint, read_metrics
    from glassformer.train.loop import train

    out_dir = Path(out_dir)
    with writes_to(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    config = partial(finetune_config, base_run, task=task, text=text, tsv=tsv,
                     overrides=overrides, conversations=conversations,
                     val_conversations=val_conversations)
    cfgs = {m: config(m) for m in (["scratch"] if scratch else []) + ["full"]}
    cfgs |= {f"lora-r{r}": config("lora", rank=r) for r in ranks}
    results = []
    for name, cfg in cfgs.items():
        run_dir = out_dir / name
        if has_checkpoint(run_dir):
            raise GlassformerError(f"{run_dir} already holds a run; choose another --out")
        log(f"{name}: training into {run_dir} (log: {run_dir}.log)")
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{run_dir}.log", "w", encoding="utf-8") as stream:
            last = train(cfg, run_dir, out=stream)
        records = read_metrics(run_dir)
        results.append({
            "name": name, "lr": cfg.train.lr, "trainable": trainable_parameters(cfg),
            "peak_bytes": peak_training_memory(cfg),
            "tokens_per_s": next(r["tokens_per_s"] for r in reversed(records)
                                 if "tokens_per_s" in r),
            "elapsed_s": last["elapsed_s"], "val_loss": last["val_loss"],
            "val_accuracy": last.get("val_accuracy"),
            "majority_baseline": last.get("majority_baseline"),
            "val_curve": [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]})
        log(f"  val loss {last['val_loss']:.4f}"
            + (f", accuracy {last['val_accuracy']:.3f}" if "val_accuracy" in last else "")
            + f" in {last['elapsed_s']:.0f} s")
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    path = out_dir / "report.md"
    path.write_text(report(results, cfgs["full"], base_run), encoding="utf-8")
    return path


def trainable_parameters(cfg: RunConfig) -> int:
    """Parameters the run trains, counted on a model built without memory."""
    import torch

    from glassformer.train.checkpoint import build_run_model

    with torch.device("meta"):
        model = build_run_model(cfg)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def peak_training_memory(cfg: RunConfig, steps: int = 2) -> int:
    """Bytes of the weights plus the peak of what `steps` training steps allocate on the CPU
    (see the module docstring)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from glassformer.inspect.memory import profiled_peak
    from glassformer.tokenizers import load_tokenizer
    from glassformer.train.checkpoint import build_run_model
    from glassformer.train.optim import make_optimizer
    from glassformer.train.tasks import TASKS

    tc = cfg.train
    task = TASKS[tc.task](cfg, load_tokenizer(Path(tc.init_from) / "tokenizer.json"))
    torch.manual_seed(tc.seed)
    model = build_run_model(cfg).train()
    optimizer = make_optimizer(model, tc)
    generator = torch.Generator().manual_seed(tc.seed)
    batches = [task.batch(generator, "cpu") for _ in range(steps)]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for batch in batches:
            model(**batch)[1].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return weights + profiled_peak(prof)


def report(results: list[dict], cfg: RunConfig, base_run) -> str:
    from glassformer.train.memory import format_bytes

    tc, m = cfg.train, cfg.model
    accuracy = any(r["val_accuracy"] is not None for r in results)
    data = (f"{tc.train_tsv} (held out: {tc.val_tsv})" if tc.task == "tsv"
            else tc.text or tc.conversations or "its default data")
    scratch = results[0]["name"] == "scratch"
    title = "From scratch vs full fine-tuning vs LoRA" if scratch else "Full fine-tuning vs LoRA"
    lines = [f"# {title}", "",
             f"Base run {base_run}; task {tc.task!r} on {data}; every "
             f"method {tc.max_steps} steps of batch {tc.batch_size} x block {m.block_size}, "
             f"warmup {tc.warmup_steps}, seed {tc.seed}. LoRA adapts "
             f"{', '.join(cfg.train.lora_targets)} with alpha {tc.lora_alpha:g}"
             + ("; scratch is the same model from random weights, with the base run's "
                "tokenizer" if scratch else "") + ". Peak memory: weights + the peak that two "
             "training steps allocate, on the CPU. Time (each run's wall clock to its last "
             "evaluation) and tokens/s include evaluations and depend on what else the machine "
             "was running.", "",
             "| method | lr | trainable parameters | peak memory | time | tokens/s | "
             "final val loss |" + (" val accuracy |" if accuracy else ""),
             "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if accuracy else "")]
    for r in results:
        lines.append(f"| {r['name']} | {r['lr']:g} | {r['trainable']:,} | "
                     f"{format_bytes(r['peak_bytes'])} | {r['elapsed_s']:,.0f} s | "
                     f"{r['tokens_per_s']:,} | {r['val_loss']:.4f} |"
                     + (f" {r['val_accuracy']:.3f} |" if accuracy else ""))
    if results[0]["majority_baseline"] is not None:
        lines += ["", f"Always answering the most common held-out label scores "
                      f"{results[0]['majority_baseline']:.3f}."]
    lines += ["", "Validation loss at each evaluation:", "",
              "| step | " + " | ".join(r["name"] for r in results) + " |",
              "|---:|" + "---:|" * len(results)]
    for step in sorted({s for r in results for s, _ in r["val_curve"]}):
        cells = [next((f"{v:.4f}" for s, v in r["val_curve"] if s == step), "-") for r in results]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
