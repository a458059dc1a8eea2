"""`glassformer sample`, `chat`, `classify` and `translate`: a trained run put to its use.

  glassformer sample RUN --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] ...
  glassformer chat RUN [--temperature T] ...        (prompts typed in the terminal)
  glassformer classify RUN --text TEXT              (a bert classifier: genre or tsv task)
  glassformer translate RUN --src TEXT [--beam K]   (an encdec run)
"""

from __future__ import annotations

import io
import sys

from glassformer.cli.options import RUN_HELP, add_sampling_options, load_run_for, sample_config
from glassformer.errors import ConfigError


def add_commands(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a trained run")
    p.add_argument("run_dir", metavar="RUN", help=RUN_HELP)
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    add_sampling_options(p)
    p.set_defaults(run=cmd_sample)

    p = sub.add_parser("chat", help="talk to an instruct model (a run with a chat template), "
                                    "or type prompts and watch their continuations stream in, "
                                    "in the terminal (until end of input or /quit)")
    p.add_argument("run_dir", metavar="RUN", help=RUN_HELP)
    add_sampling_options(p)
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("classify", help="the label of texts (e.g. the genre of passages), by a "
                                        "trained classifier run")
    p.add_argument("run_dir", metavar="RUN", help=RUN_HELP)
    p.add_argument("--text", action="append", required=True, help="a passage (repeatable)")
    p.set_defaults(run=cmd_classify)

    p = sub.add_parser("translate", help="decode sources with a trained encoder-decoder run")
    p.add_argument("run_dir", metavar="RUN", help=RUN_HELP)
    p.add_argument("--src", action="append", required=True, help="a source string (repeatable)")
    p.add_argument("--beam", type=int, default=1, help="beam size; 1 = greedy (default)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search ranks by score / length ** this (default: %(default)s)")
    p.set_defaults(run=cmd_translate)


def cmd_sample(args) -> int:
    from glassformer.generate.sampler import stream

    cfg = sample_config(args)
    run = load_run_for("sample", args.run_dir, ("gpt",), args.quantize)
    run.tokenizer.encode(args.prompt)  # an unknown character: its error before any output
    sys.stdout.write(args.prompt)
    for piece in stream(run.model, run.tokenizer, args.prompt, cfg):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_chat(args) -> int:
    from glassformer.serve.chat import chat, typed_prompts
    from glassformer.tokenizers.chat_template import has_chat_template

    cfg = sample_config(args)
    run = load_run_for("chat", args.run_dir, ("gpt",), args.quantize)
    if isinstance(sys.stdin, io.TextIOWrapper):  # a line that is not UTF-8 arrives as surrogate
        sys.stdin.reconfigure(errors="surrogateescape")  # escapes: one error line, not the end
    if has_chat_template(run.tokenizer):
        print(f"{args.run_dir}: a conversation; type a message and press Enter. /system TEXT "
              "sets the system message, /reset forgets the turns, /quit or Ctrl-D ends, Ctrl-C "
              "stops a reply")
    else:
        print(f"{args.run_dir}: type a prompt and press Enter; /quit or Ctrl-D to end, Ctrl-C "
              "to stop a continuation")
    chat(run.model, run.tokenizer, typed_prompts(), cfg, sys.stdout)
    return 0


def cmd_classify(args) -> int:
    from glassformer.classify import classify

    run = load_run_for("classify", args.run_dir, ("bert",))
    for text, probs in zip(args.text, classify(run.model, run.tokenizer, args.text)):
        label = next(iter(probs))
        print(f"{label}  ({', '.join(f'{g} {p:.2f}' for g, p in probs.items())})  "
              f"{text[:60]!r}")
    return 0


def cmd_translate(args) -> int:
    from glassformer.generate.beam import translate

    if args.beam < 1:
        raise ConfigError("--beam must be at least 1 (1 = greedy)")
    run = load_run_for("translate", args.run_dir, ("encdec",))
    for src, out in zip(args.src, translate(run.model, run.tokenizer, args.src, args.beam,
                                            args.length_penalty)):
        print(f"{src}\t{out}")
    return 0
