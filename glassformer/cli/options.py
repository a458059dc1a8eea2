"""What the command groups share: dotted config overrides, the sampling options, loading a run
of the families a command can use, and an output that can print any text."""

from __future__ import annotations

import io
from typing import get_args

from glassformer import config as C
from glassformer.errors import ConfigError, GlassformerError, article


RUN_HELP = "a run directory, as `glassformer train --out DIR` writes it"


def add_sampling_options(p) -> None:
    """The options of a SampleConfig, for the commands that generate text."""
    defaults = C.SampleConfig()
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                   help="tokens to generate (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=defaults.temperature,
                   help="0 = greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, help="keep only the k most likely tokens")
    p.add_argument("--top-p", type=float, default=defaults.top_p, help="nucleus sampling mass")
    p.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty,
                   help="divides the logits of tokens already in the text (>1 repeats less; "
                        "default: %(default)s)")
    p.add_argument("--presence-penalty", type=float, default=defaults.presence_penalty,
                   help="subtracted from each generated token's logit, in [-2, 2] (OpenAI's)")
    p.add_argument("--frequency-penalty", type=float, default=defaults.frequency_penalty,
                   help="subtracted per occurrence of each generated token, in [-2, 2]")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, help="seed for reproducible samples")
    p.add_argument("--prompt-lookup", type=int, default=defaults.prompt_lookup, metavar="K",
                   help="greedy only (--temperature 0): draft up to K tokens per step by copying "
                        "from the context, checked in one pass; the same text, sooner where "
                        "text repeats (0: off)")
    add_quantize_option(p)


def add_quantize_option(p) -> None:
    p.add_argument("--quantize", choices=get_args(C.Quantization), default="none",
                   help="weights for decoding: int8 (CPU: weights per output channel, activations "
                        "per token, outlier channels smoothed into the weights first and the 8 "
                        "largest input channels of each layer kept in fp32; ~4x fewer bytes per "
                        "token; `glassformer eval RUN --quantize int8` measures what it "
                        "costs), bf16, or none (default)")


def sample_config(args) -> C.SampleConfig:
    return C.SampleConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p,
                          repetition_penalty=args.repetition_penalty,
                          presence_penalty=args.presence_penalty,
                          frequency_penalty=args.frequency_penalty, stop=tuple(args.stop),
                          seed=args.seed, prompt_lookup=args.prompt_lookup)


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


def no_extra(extra: list[str]) -> dict:
    if extra:
        raise ConfigError(f"unrecognised arguments: {' '.join(extra)}")
    return {}


def load_run_for(command: str, run_dir, families: tuple[str, ...], quantization: str = "none"):
    """The run at `run_dir` on the best device (the CPU for int8 weights), refused unless its
    model family is one of `families`, the ones `glassformer COMMAND` can use; its weights
    quantized as `quantization` says (model/quantize.py)."""
    from glassformer.model.quantize import calibration_ids, quantize
    from glassformer.train.checkpoint import load_run
    from glassformer.train.device import pick_device

    run = load_run(run_dir, "cpu" if quantization == "int8" else pick_device())
    if run.cfg.model.family not in families:
        family = run.cfg.model.family
        raise GlassformerError(f"`glassformer {command}` needs a {' or '.join(families)} run; "
                               f"this one is {article(family)} {family} model "
                               f"(task {run.cfg.train.task!r})")
    quantize(run.model, quantization, calibration_ids(run.tokenizer))
    return run


def shows_any_text(stream) -> None:
    """Let `stream` (stdout) print any text: a character its encoding cannot show (an ASCII or
    Latin-1 terminal, PYTHONIOENCODING=ascii) prints as "?" instead of ending the command with
    UnicodeEncodeError. Model text can hold any character the training text held, and a sample
    with a few "?" reads better than none; "\\u0436"-style escapes (errors="backslashreplace",
    Python's choice for stderr) would turn a whole Cyrillic or Chinese sample into escapes."""
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="replace")
