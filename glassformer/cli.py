"""The `glassformer` command. It parses arguments and calls library functions; torch is imported
only inside the subcommands, so `glassformer --help` answers at once.

  glassformer train --preset shakespeare-char [--text PATH] [--out DIR] [--resume] [--model.X=V ...]
  glassformer sample RUN --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] ...
  glassformer eval RUN [--text PATH]
  glassformer info RUN
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from glassformer import config as C
from glassformer.errors import ConfigError, GlassformerError


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        args.overrides = parse_overrides(extra) if args.command == "train" else _no_extra(extra)
        return args.run(args)
    except GlassformerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassformer", description="Build, train, inspect and sample transformers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a GPT (default: Shakespeare, character level)",
                       epilog="Any config field can be set with a dotted key, e.g. "
                              "--model.n_layer=4 --train.lr=3e-4. Model fields: "
                              + ", ".join(C.field_names(C.ModelConfig)) + ". Train fields: "
                              + ", ".join(C.field_names(C.TrainConfig)) + ".")
    p.add_argument("--preset", default="shakespeare-char",
                   help=f"starting config: {', '.join(C.PRESETS)} (default: shakespeare-char)")
    p.add_argument("--text", help="UTF-8 text file to train on (default: Shakespeare's works)")
    p.add_argument("--out", help="run directory (default: runs/PRESET)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (same as --train.max_steps)")
    p.add_argument("--save-every", type=int, help="checkpoint interval (--train.save_every)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("sample", help="generate text from a trained run")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    defaults = C.SampleConfig()
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    p.add_argument("--temperature", type=float, default=defaults.temperature,
                   help="0 = greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, help="keep only the k most likely tokens")
    p.add_argument("--top-p", type=float, default=defaults.top_p, help="nucleus sampling mass")
    p.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, help="seed for reproducible samples")
    p.set_defaults(run=cmd_sample)

    p = sub.add_parser("eval", help="loss, perplexity and bits per character on held-out text")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--text", help="UTF-8 file to evaluate (default: the run's validation split)")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("info", help="a run's config, parameter count and last metrics")
    p.add_argument("run_dir", metavar="RUN")
    p.set_defaults(run=cmd_info)
    return parser


def parse_overrides(extra: list[str]) -> dict[str, str]:
    """`--model.n_layer=4` or `--model.n_layer 4` pairs -> {"model.n_layer": "4"}."""
    overrides, i = {}, 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or "." not in arg.split("=")[0]:
            raise ConfigError(f"unrecognised argument {arg!r}; see `glassformer train --help`")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise ConfigError(f"--{key} needs a value, e.g. --{key}=VALUE")
            value, i = extra[i + 1], i + 1
        overrides[key] = value
        i += 1
    return overrides


def _no_extra(extra: list[str]) -> dict:
    if extra:
        raise ConfigError(f"unrecognised arguments: {' '.join(extra)}")
    return {}


def cmd_train(args) -> int:
    from glassformer.train.loop import train

    flags = {"train.text": args.text, "train.max_steps": args.max_steps,
             "train.save_every": args.save_every}
    overrides = {k: str(v) for k, v in flags.items() if v is not None} | args.overrides
    out = Path(args.out or Path("runs") / args.preset)
    if args.resume:
        if any(k.startswith("model.") for k in overrides):
            raise ConfigError("the model cannot change on --resume; drop the --model.* options")
        cfg = C.RunConfig.load(out / "config.json")
    else:
        cfg = C.preset(args.preset)
    try:
        train(C.apply_overrides(cfg, overrides), out, resume=args.resume)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last checkpoint in {out} is whole: continue with "
              f"`glassformer train --out {out} --resume`", file=sys.stderr)
        return 130
    return 0


def cmd_sample(args) -> int:
    from glassformer.generate.sampler import stream
    from glassformer.train.checkpoint import load_run
    from glassformer.train.device import pick_device

    cfg = C.SampleConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p,
                         repetition_penalty=args.repetition_penalty, stop=tuple(args.stop),
                         seed=args.seed)
    run = load_run(args.run_dir, pick_device())
    sys.stdout.write(args.prompt)
    for piece in stream(run.model, run.tokenizer, args.prompt, cfg):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from glassformer.data.corpora import load_text
    from glassformer.data.lm import check_enough, split, token_file
    from glassformer.train.checkpoint import load_run
    from glassformer.train.device import pick_device
    from glassformer.train.evaluate import evaluate_tokens

    device = pick_device()
    run = load_run(args.run_dir, device)
    if args.text:
        tokens = np.array(run.tokenizer.encode(load_text(args.text)), dtype=np.int64)
        where = args.text
    else:
        tc = run.cfg.train
        tokens = split(token_file(load_text(tc.text), run.tokenizer), tc.val_fraction)[1]
        where = "the validation split"
    check_enough(tokens, 1, "evaluation")
    result = evaluate_tokens(run.model, tokens, device=device)
    print(f"{where}: {result['tokens']:,} tokens | loss {result['loss']:.4f} | "
          f"perplexity {result['perplexity']:.3f} | {result['bits_per_char']:.4f} bits/char")
    return 0


def cmd_info(args) -> int:
    from glassformer.inspect.params import count_parameters
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
