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
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from glassformer import config as C
from glassformer.errors import ConfigError, GlassformerError
from glassformer.finetune import commands as finetune_commands
from glassformer.inspect.commands import add_commands as add_inspect_commands
from glassformer.interop import commands as interop_commands
from glassformer.serve.limits import Limits
from glassformer.tokenizers import commands as tokenizer_commands


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

    p = sub.add_parser("sample", help="generate text from a trained run")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    add_sampling_options(p)
    p.set_defaults(run=cmd_sample)

    p = sub.add_parser("chat", help="type prompts and watch their continuations stream in the "
                                    "terminal (until end of input or /quit)")
    p.add_argument("run_dir", metavar="RUN")
    add_sampling_options(p)
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("serve", help="the playground: a local web page to sample, watch the "
                                     "next-token distribution and attention; an OpenAI-style API")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    limits = Limits()
    p.add_argument("--max-prompt-chars", type=int, default=limits.max_prompt_chars,
                   help="longest prompt or inspected text, in characters (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=limits.max_tokens,
                   help="most tokens one completion may ask for (default: %(default)s)")
    p.add_argument("--max-concurrent", type=int, default=limits.max_concurrent,
                   help="completions generating at once; more get 429 (default: %(default)s)")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("eval", help="loss, perplexity and bits per character on held-out text")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--text", help="UTF-8 file to evaluate (default: the run's validation split)")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("info", help="a run's config, parameter count and last metrics")
    p.add_argument("run_dir", metavar="RUN")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("classify", help="the genre of passages, by a trained classifier run")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--text", action="append", required=True, help="a passage (repeatable)")
    p.set_defaults(run=cmd_classify)

    p = sub.add_parser("translate", help="decode sources with a trained encoder-decoder run")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--src", action="append", required=True, help="a source string (repeatable)")
    p.add_argument("--beam", type=int, default=1, help="beam size; 1 = greedy (default)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search ranks by score / length ** this (default: %(default)s)")
    p.set_defaults(run=cmd_translate)

    tokenizer_commands.add_commands(sub)
    interop_commands.add_commands(sub)
    finetune_commands.add_commands(sub)
    add_inspect_commands(sub)
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


def _no_extra(extra: list[str]) -> dict:
    if extra:
        raise ConfigError(f"unrecognised arguments: {' '.join(extra)}")
    return {}


def cmd_train(args) -> int:
    from glassformer.train.checkpoint import resume_config
    from glassformer.train.loop import train

    if args.nproc > 1:  # torchrun starts this command again in each process, without --nproc
        from glassformer.train.distributed import launch

        return launch(args.nproc, without_option(args.argv, "--nproc"))
    flags = {"train.text": args.text, "train.pairs": args.pairs, "train.max_steps": args.max_steps,
             "train.save_every": args.save_every}
    overrides = {k: str(v) for k, v in flags.items() if v is not None} | args.overrides
    out = Path(args.out or Path("runs") / args.preset)
    if args.resume:
        cfg = resume_config(out, overrides)
    else:
        cfg = C.apply_overrides(C.preset(args.preset), overrides)
    try:
        train(cfg, out, resume=args.resume)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last checkpoint in {out} is whole: continue with "
              f"`glassformer train --out {out} --resume`", file=sys.stderr)
        return 130
    return 0


def cmd_sample(args) -> int:
    from glassformer.generate.sampler import stream
    from glassformer.train.checkpoint import load_run
    from glassformer.train.device import pick_device

    cfg = sample_config(args)
    run = load_run(args.run_dir, pick_device())
    _require_family(run, ("gpt",), "sample")
    sys.stdout.write(args.prompt)
    for piece in stream(run.model, run.tokenizer, args.prompt, cfg):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_chat(args) -> int:
    from glassformer.serve.chat import chat, typed_prompts
    from glassformer.train.checkpoint import load_run
    from glassformer.train.device import pick_device

    cfg = sample_config(args)
    run = load_run(args.run_dir, pick_device())
    _require_family(run, ("gpt",), "chat")
    print(f"{args.run_dir}: type a prompt and press Enter; /quit or Ctrl-D to end, Ctrl-C to "
          "stop a continuation")
    chat(run.model, run.tokenizer, typed_prompts(), cfg, sys.stdout)
    return 0


def cmd_serve(args) -> int:
    from glassformer.serve.api import serve

    limits = Limits(max_prompt_chars=args.max_prompt_chars, max_tokens=args.max_tokens,
                    max_concurrent=args.max_concurrent)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use "
              "the playground and its API", file=sys.stderr)
    serve(args.run_dir, args.host, args.port, limits)
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
    _require_family(run, ("gpt", "lstm"), "eval")
    if args.text:
        tokens = np.array(run.tokenizer.encode(load_text(args.text)), dtype=np.int64)
        where = args.text
    else:
        tc = run.cfg.train
        tokens = split(token_file(load_text(tc.text), run.tokenizer), tc.val_fraction)[1]
        where = "the validation split"
    check_enough(tokens, 1, "evaluation")
    # bits per character need the characters: one per token only for a char tokenizer
    n_chars = len(run.tokenizer.decode(tokens[1:]))  # the predicted tokens' text
    result = evaluate_tokens(run.model, tokens, device=device, n_chars=n_chars)
    print(f"{where}: {result['tokens']:,} tokens | loss {result['loss']:.4f} | "
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


def cmd_classify(args) -> int:
    from glassformer.classify import classify
    from glassformer.train.checkpoint import load_run
    from glassformer.train.device import pick_device

    run = load_run(args.run_dir, pick_device())
    _require_family(run, ("bert",), "classify")
    for text, probs in zip(args.text, classify(run.model, run.tokenizer, args.text)):
        label = next(iter(probs))
        print(f"{label}  ({', '.join(f'{g} {p:.2f}' for g, p in probs.items())})  "
              f"{text[:60]!r}")
    return 0


def cmd_translate(args) -> int:
    from glassformer.generate.beam import translate
    from glassformer.train.checkpoint import load_run
    from glassformer.train.device import pick_device

    if args.beam < 1:
        raise ConfigError("--beam must be at least 1 (1 = greedy)")
    run = load_run(args.run_dir, pick_device())
    _require_family(run, ("encdec",), "translate")
    for src, out in zip(args.src, translate(run.model, run.tokenizer, args.src, args.beam,
                                            args.length_penalty)):
        print(f"{src}\t{out}")
    return 0


def _require_family(run, families: tuple[str, ...], command: str) -> None:
    if run.cfg.model.family not in families:
        raise GlassformerError(f"`glassformer {command}` needs a {' or '.join(families)} run; "
                               f"this one is a {run.cfg.model.family} model "
                               f"(task {run.cfg.train.task!r})")
