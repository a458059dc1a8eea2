"""`glassformer train`, `eval` and `info`: make a run, measure it, describe it.

  glassformer train --preset shakespeare-char [--text PATH] [--out DIR] [--resume] [--nproc N]
                    [--model.F=V ...] [--train.F=V ...]
  glassformer eval RUN [--text PATH]
  glassformer info RUN [--json]
  glassformer plot [--heads] RUN [RUN ...] [--out FILE.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from glassformer import config as C
from glassformer.cli.options import RUN_HELP, add_quantize_option, load_run_for, with_flags
from glassformer.errors import ConfigError
from glassformer.typed import field_help


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a GPT (default: Shakespeare, character level)",
                       epilog="Any config field can be set with a dotted key, e.g. "
                              "--model.n_layer=4 --train.lr=3e-4. Model fields: "
                              + ", ".join(field_help(C.ModelConfig)) + ". Train fields: "
                              + ", ".join(field_help(C.TrainConfig)) + ".")
    p.add_argument("--preset", default="shakespeare-char",
                   help=f"starting config: {', '.join(C.PRESETS)} (default: shakespeare-char)")
    p.add_argument("--text", help="UTF-8 text file to train on (default: Shakespeare's works)")
    p.add_argument("--data", help="a dataset made by `glassformer data prepare` to train on "
                                  "instead of --text (same as --train.data)")
    p.add_argument("--pairs", help="task 'pairs': a TSV file of source<TAB>target lines "
                                   "(default: numbers and their English words)")
    p.add_argument("--out", help="run directory (default: runs/PRESET)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (same as --train.max_steps)")
    p.add_argument("--save-every", type=int, help="checkpoint interval (--train.save_every)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--nproc", type=int, default=1,
                   help="processes on this machine (one per GPU, or CPU processes), started "
                        "with torchrun; the global batch stays the same (default: 1)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("eval", help="a run's held-out metrics on the whole split: loss, "
                                    "perplexity and bits per character (language models), "
                                    "masked accuracy, accuracy or exact match (the other tasks)")
    p.add_argument("run_dir", metavar="RUN", help=RUN_HELP)
    p.add_argument("--text", help="UTF-8 file to evaluate (default: the run's validation split)")
    add_quantize_option(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("info", help="a run in a few lines: model, task, steps, last evaluation")
    p.add_argument("run_dir", metavar="RUN", help=RUN_HELP)
    p.add_argument("--json", action="store_true", help="print the whole config as JSON instead")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("plot", help="draw runs' train and val loss against step and wall-clock "
                                    "time (one run: RUN/loss.png, which training also writes)")
    p.add_argument("run_dirs", metavar="RUN", nargs="+", help=RUN_HELP)
    p.add_argument("--out", help="PNG file (default: RUN/loss.png, or RUN/heads.png with "
                   "--heads; required for several runs)")
    p.add_argument("--heads", action="store_true", help="draw the head tracking of runs trained "
                   "with --train.track_heads (induction score, in-context loss) instead")
    p.set_defaults(run=cmd_plot)


def without_option(argv: list[str], option: str) -> list[str]:
    """`argv` without `option VALUE` or `option=VALUE`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept


def cmd_train(args) -> int:
    from glassformer.train.checkpoint import resume_config
    from glassformer.train.loop import train
    from glassformer.train.memory_check import out_of_memory_explained

    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1:  # torchrun starts this command again in each process, without --nproc
        from glassformer.train.distributed import launch

        return launch(args.nproc, without_option(args.argv, "--nproc"))
    overrides = with_flags({"train.text": args.text, "train.data": args.data,
                            "train.pairs": args.pairs,
                            "train.max_steps": args.max_steps,
                            "train.save_every": args.save_every}, args.overrides)
    out = Path(args.out or Path("runs") / args.preset)
    if args.resume:
        cfg = resume_config(out, overrides)
    else:
        cfg = C.apply_overrides(C.preset(args.preset), overrides)
    try:
        with out_of_memory_explained(out):
            train(cfg, out, resume=args.resume)
    except KeyboardInterrupt:
        print("\n" + interrupted(out), file=sys.stderr)
        draw_losses(out)
        return 130
    draw_losses(out)
    if cfg.train.track_heads:
        from glassformer.inspect.curves import plot_heads

        print(f"wrote {plot_heads([out])}")
    return 0


def interrupted(out: Path) -> str:
    """What Ctrl-C leaves: a checkpoint to continue from, or none yet."""
    from glassformer.train.checkpoint import MODEL, has_checkpoint, saved_step

    if has_checkpoint(out):
        return (f"interrupted; the last checkpoint in {out} (step {saved_step(out / MODEL)}) is "
                f"whole: continue with `glassformer train --out {out} --resume`")
    return (f"interrupted before the first checkpoint: there is nothing to resume in {out}; "
            "start again with the same command")


def draw_losses(out: Path) -> None:
    """RUN/loss.png from whatever the run logged (nothing before its first losses)."""
    from glassformer.inspect.curves import plot_runs, read_curves

    if (out / "metrics.jsonl").exists() and any(read_curves(out).values()):
        print(f"loss curves: {plot_runs([out])}", file=sys.stderr)


def cmd_eval(args) -> int:
    from glassformer.train.evaluate import evaluate_run

    run = load_run_for("eval", args.run_dir, ("gpt", "lstm", "bert", "encdec"))
    result = evaluate_run(run, args.text)
    if args.quantize != "none":  # what the quantization costs, on the same tokens
        exact = result
        run = load_run_for("eval", args.run_dir, ("gpt",), args.quantize)
        result = evaluate_run(run, args.text)
        print(f"{exact['text']}: unquantized perplexity {exact['perplexity']:.3f}; "
              f"{args.quantize}: {result['perplexity']:.3f} "
              f"({result['perplexity'] / exact['perplexity'] - 1:+.2%})")
    if "loss" in result:
        print(f"{result['text']}: {result['tokens']:,} tokens | loss {result['loss']:.4f} | "
              f"perplexity {result['perplexity']:.3f} | {result['bits_per_char']:.4f} bits/char")
    else:
        print(f"{result['text']}: " + " | ".join(
            f"{k.removeprefix('val_').replace('_', ' ')} {v:.2%}" if k != "val_loss"
            else f"loss {v:.4f}" for k, v in result.items() if k != "text"))
    return 0


def cmd_info(args) -> int:
    from glassformer.train.checkpoint import load_run

    run = load_run(args.run_dir)
    if args.json:
        print(json.dumps(run.cfg.to_dict(), indent=2))
        return 0
    print(describe(run, args.run_dir))
    return 0


def describe(run, run_dir) -> str:
    """`glassformer info`: a run in a few lines."""
    from glassformer.model import count_parameters
    from glassformer.train.checkpoint import read_metrics
    from glassformer.train.tasks import TASKS, val_scope

    mc, tc = run.cfg.model, run.cfg.train
    lines = [f"{run_dir}: {mc.family}, {count_parameters(run.model):,} parameters "
             f"({mc.n_layer} layers, {mc.n_head} heads, width {mc.n_embd}, block "
             f"{mc.block_size}, vocab {mc.vocab_size})",
             f"task {tc.task} on {tc.pairs or tc.text or 'the default data'}; "
             f"checkpoint at step {run.step} of {tc.max_steps}",
             f"position {mc.position}, norm {mc.norm} ({mc.norm_placement}), activation "
             f"{mc.activation}, lr {tc.lr:g}, batch {tc.batch_size} x {tc.grad_accum}"]
    evals = [m for m in read_metrics(run_dir) if "val_loss" in m]
    if evals:
        last, metric = evals[-1], TASKS[tc.task].METRIC
        lines.append(f"last evaluation (step {last['step']}): train loss {last['train_loss']:.4f}"
                     f", val loss {last['val_loss']:.4f} ({val_scope(tc)}"
                     + ("; `glassformer eval` scores the whole split)" if not
                        TASKS[tc.task].WHOLE_VAL else ")")
                     + (f", {metric.removeprefix('val_').replace('_', ' ')} {last[metric]:.2%}"
                        if metric and metric in last else ""))
    lines.append(f"the whole config: glassformer info {run_dir} --json")
    return "\n".join(lines)


def cmd_plot(args) -> int:
    from glassformer.inspect.curves import plot_heads, plot_runs

    plot = plot_heads if args.heads else plot_runs
    print(f"wrote {plot(args.run_dirs, args.out)}")
    return 0
