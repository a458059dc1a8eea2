"""The `glassformer` command. It parses arguments and calls library functions; torch is imported
only inside the subcommands, so `glassformer --help` answers at once.

  glassformer train --preset shakespeare-char [--text PATH] [--out DIR] [--resume] [--model.X=V ...]
  glassformer sample RUN --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] ...
  glassformer eval RUN [--text PATH]
  glassformer info RUN
  glassformer classify RUN --text TEXT              (a bert run trained on the genre task)
  glassformer translate RUN --src TEXT [--beam K]   (an encdec run)
  glassformer tokenizer train --vocab-size N [--text PATH] [--out FILE]
  glassformer convert SRC DST
  glassformer inspect params|memory|shapes|attention|positions|next SOURCE [--out DIR] ...
  glassformer compare NAME | --recipe NAME:KEY=VALUE,... [--preset P] [--max-steps N] [--out DIR]
  glassformer finetune RUN [--task T] [--text PATH | --work NAME] [--method full|lora] [--compare]
  glassformer train --nproc N ...                   (the same train, in N processes: torchrun)
  glassformer serve RUN [--host H] [--port P] [--max-tokens N] ...   (the playground in a browser)
  glassformer chat RUN [--temperature T] ...        (the same, in the terminal)

One module per command group, each with `add_commands(sub)` and its `cmd_*` handlers:
train.py (train, eval, info), generate.py (sample, chat, classify, translate), serve.py,
tokenizer.py, convert.py, finetune.py, inspect.py (inspect ..., compare). This file holds the
entry point and what they share: dotted overrides, the sampling options, the family check.
"""

from __future__ import annotations

import argparse
import sys

from glassformer import config as C
from glassformer.errors import ConfigError, GlassformerError


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        takes_overrides = args.command in ("train", "inspect", "compare", "finetune")
        args.overrides = parse_overrides(extra) if takes_overrides else _no_extra(extra)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return args.run(args)
    except GlassformerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    # imported here: each group's module imports the helpers below from this package
    from glassformer.cli import convert, finetune, generate, inspect, serve, tokenizer, train

    parser = argparse.ArgumentParser(
        prog="glassformer", description="Build, train, inspect and sample transformers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (train, generate, serve, tokenizer, convert, finetune, inspect):
        group.add_commands(sub)
    return parser


def add_sampling_options(p) -> None:
    """The options of a SampleConfig, for the commands that generate text."""
    defaults = C.SampleConfig()
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    p.add_argument("--temperature", type=float, default=defaults.temperature,
                   help="0 = greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, help="keep only the k most likely tokens")
    p.add_argument("--top-p", type=float, default=defaults.top_p, help="nucleus sampling mass")
    p.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, help="seed for reproducible samples")


def sample_config(args) -> C.SampleConfig:
    return C.SampleConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p,
                          repetition_penalty=args.repetition_penalty, stop=tuple(args.stop),
                          seed=args.seed)


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


def with_flags(flags: dict, overrides: dict[str, str]) -> dict[str, str]:
    """Dotted overrides from options that stand for config fields ({"train.max_steps": 200};
    None: not given), then the explicit --section.field ones, which win."""
    return {k: str(v) for k, v in flags.items() if v is not None} | overrides


def _no_extra(extra: list[str]) -> dict:
    if extra:
        raise ConfigError(f"unrecognised arguments: {' '.join(extra)}")
    return {}


def load_run_for(command: str, run_dir, families: tuple[str, ...]):
    """The run at `run_dir` on the best device, refused unless its model family is one of
    `families`, the ones `glassformer COMMAND` can use."""
    from glassformer.train.checkpoint import load_run
    from glassformer.train.device import pick_device

    run = load_run(run_dir, pick_device())
    if run.cfg.model.family not in families:
        raise GlassformerError(f"`glassformer {command}` needs a {' or '.join(families)} run; "
                               f"this one is a {run.cfg.model.family} model "
                               f"(task {run.cfg.train.task!r})")
    return run
