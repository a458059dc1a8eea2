"""Supervised fine-tuning teaches an instruct model a made-up fact set (glassformer/finetune/
facts.py): the share of held-out prompts (paraphrases never trained on) answered with the taught
word, before and after LoRA and full fine-tuning on the same budget, with each run's time and
peak memory.

    python -m bench.sft_facts --base runs/smollm2 --out /tmp/sft-bench [--steps 8]
        [--countries 1] [--train.F=V ...]

Each fine-tuning runs `glassformer finetune` in a child process, both at once; a child's peak
memory is its resident high-water mark (ru_maxrss: weights, gradients, optimizer state,
activations and the Python process itself), its times its wall clock and its CPU time (user +
system; loading, training, the final evaluation and the save). On a shared machine the CPU
time is the steadier figure. Replies are greedy, up to the end of turn or 32 tokens.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from glassformer.finetune.facts import answered_as_taught, fact_conversations, write_jsonl
from glassformer.train.checkpoint import load_run

# The run's settings beside --max-steps: a short warmup, one evaluation at the end on a single
# training batch (the held-out loss is over the whole held-out file), no sample.
SETTINGS = ["--train.batch_size=4", "--train.warmup_steps=2", "--train.eval_every=0",
            "--train.eval_batches=1", "--train.sample_tokens=0", "--train.log_every=1"]
# A budget of a few steps takes a higher learning rate than finetune's defaults.
METHODS = {"lora": ["--method", "lora", "--rank", "16", "--train.lora_targets=q,k,v,o,fc,up,proj",
                    "--train.lr=5e-3", "--train.min_lr=5e-4"],
           "full": ["--method", "full", "--train.lr=1e-3", "--train.min_lr=1e-4"]}


def score(run_dir, held_out) -> tuple[float, list]:
    run = load_run(run_dir)
    return answered_as_taught(run.model, run.tokenizer, held_out)


def fine_tune(base, out: Path, method: str, steps: int, data: list[str], extra: list[str]):
    """Start `glassformer finetune` in a child; return (child, its start time)."""
    command = [sys.executable, "-m", "glassformer", "finetune", str(base), *data,
               "--out", str(out / method), "--max-steps", str(steps), *SETTINGS,
               *METHODS[method], *extra]
    print("$", " ".join(command[2:]), flush=True)
    log = open(out / f"{method}.log", "w")
    return subprocess.Popen(command, stdout=log, stderr=log), time.perf_counter()


def finished(child, started: float, name: str) -> dict:
    """Wait for `child`; its wall seconds, CPU seconds and peak resident bytes."""
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"{name} failed; see its log")
    return {"seconds": time.perf_counter() - started,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_bytes": usage.ru_maxrss * 1024}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="an instruct run (glassformer pull ...)")
    p.add_argument("--out", required=True, help="a new directory for the data, runs and results")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--countries", type=int, default=1)
    args, extra = p.parse_known_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    train, held_out = fact_conversations(args.countries)
    data = ["--conversations", str(write_jsonl(train, out / "facts-train.jsonl")),
            "--val-conversations", str(write_jsonl(held_out, out / "facts-held-out.jsonl"))]
    print(f"{len(train)} training / {len(held_out)} held-out conversations", flush=True)

    children = {method: fine_tune(args.base, out, method, args.steps, data, extra)
                for method in METHODS}
    started = time.perf_counter()  # the base is scored while they train
    share, rows = score(args.base, held_out)
    results = [{"method": "before (base)", "answered": share, "rows": rows,
                "score_s": time.perf_counter() - started}]
    print(f"before: {share:.2f}", flush=True)
    for method, (child, began) in children.items():
        figures = finished(child, began, method)
        metrics = [json.loads(line) for line in (out / method / "metrics.jsonl").open()]
        started = time.perf_counter()
        share, rows = score(out / method, held_out)
        results.append({"method": method, "answered": share, "rows": rows, **figures,
                        "score_s": time.perf_counter() - started,
                        "first_loss": metrics[0]["train_loss"],
                        "val_loss": metrics[-1]["val_loss"]})
        print(f"{method}: {share:.2f} in {figures['seconds']:.0f} s "
              f"({figures['cpu_seconds']:.0f} CPU s), peak {figures['peak_bytes'] / 2**30:.2f} GiB",
              flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n| method | held-out answered as taught | steps | wall time | CPU time | peak RSS | "
          "first train loss | final held-out loss |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['method']} | {r['answered']:.2f} ({round(r['answered'] * len(held_out))}/"
              f"{len(held_out)}) | " + (
                  f"{args.steps} | {r['seconds']:.0f} s | {r['cpu_seconds']:.0f} s | "
                  f"{r['peak_bytes'] / 2**30:.2f} GiB | {r['first_loss']:.3f} | "
                  f"{r['val_loss']:.3f} |" if "seconds" in r else "- | - | - | - | - | - |"))
    for r in results:
        print(f"\n{r['method']}:")
        for question, reply, word in r["rows"]:
            print(f"  {question!r} -> {reply!r} (taught {word})")


if __name__ == "__main__":
    main()
