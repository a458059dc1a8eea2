"""`glassformer train`, `eval` and `info`: make a run, measure it, describe it.

  glassformer train --preset shakespeare-char [--text PATH] [--out DIR] [--resume] [--nproc N]
                    [--model.F=V ...] [--train.F=V ...]
  glassformer eval RUN [--text PATH]
  glassformer info RUN
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from glassformer import config as C
from glassformer.cli.options import load_run_for, with_flags
from glassformer.errors import ConfigError
from glassformer.typed import field_names


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a GPT (default: Shakespeare, character level)",
                       epilog="Any config field can be set with a dotted key, e.g. "
                              "--model.n_layer=4 --train.lr=3e-4. Model fields: "
                              + ", ".join(field_names(C.ModelConfig)) + ". Train fields: "
                              + ", ".join(field_names(C.TrainConfig)) + ".")
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

    p = sub.add_parser("eval", help="loss, perplexity and bits per character on held-out text")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--text", help="UTF-8 file to evaluate (default: the run's validation split)")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("info", help="a run's config, parameter count and last metrics")
    p.add_argument("run_dir", metavar="RUN")
    p.set_defaults(run=cmd_info)


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
        print(f"\ninterrupted; the last checkpoint in {out} is whole: continue with "
              f"`glassformer train --out {out} --resume`", file=sys.stderr)
        return 130
    if cfg.train.track_heads:
        from glassformer.inspect.plots import heads_curves
        from glassformer.train.checkpoint import read_metrics

        path = heads_curves(read_metrics(out), out / "heads.png",
                            f"{out.name}: induction heads forming")
        print(f"wrote {path}")
    return 0


def cmd_eval(args) -> int:
    from glassformer.train.evaluate import evaluate_run

    run = load_run_for("eval", args.run_dir, ("gpt", "lstm"))
    result = evaluate_run(run, args.text)
    print(f"{result['text']}: {result['tokens']:,} tokens | loss {result['loss']:.4f} | "
          f"perplexity {result['perplexity']:.3f} | {result['bits_per_char']:.4f} bits/char")
    return 0


def cmd_info(args) -> int:
    from glassformer.model import count_parameters
    from glassformer.train.checkpoint import load_run, read_metrics

    run = load_run(args.run_dir)
    print(json.dumps(run.cfg.to_dict(), indent=2))
    print(f"parameters: {count_parameters(run.model):,}")
    print(f"checkpoint step: {run.step}")
    evals = [m for m in read_metrics(args.run_dir) if "val_loss" in m]
    if evals:
        last = evals[-1]
        print(f"last evaluation: step {last['step']}, train loss {last['train_loss']:.4f}, "
              f"val loss {last['val_loss']:.4f}")
    return 0
