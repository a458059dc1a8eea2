"""`glassformer inspect ...` and `glassformer compare ...`: see inside a model, and train recipes
alike, with the library functions of glassformer/inspect.

  glassformer inspect params|memory|shapes|attention|positions|next SOURCE [--out DIR] ...
  glassformer inspect lens|attribution|patch|detect SOURCE [--out DIR] ...   (docs/hooks.md)
  glassformer compare NAME | --recipe NAME:KEY=VALUE,... [--preset P] [--max-steps N]
                      [--longer F ...] [--lengths T ...] [--out DIR]

SOURCE is a run directory or a preset name; a preset also takes --model.FIELD=VALUE options.
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from glassformer import config as C
from glassformer.cli.options import with_flags
from glassformer.errors import GlassformerError
from glassformer.inspect.recipes import COMPARISONS
from glassformer.inspect.source import input_ids, load_source
from glassformer.train.memory import BYTES

SCHEMES = C.ACTING_POSITIONS  # the schemes inspect/positions.py draws, without torch


def add_commands(sub) -> None:
    """Add `inspect` (with its own subcommands) and `compare` to the CLI's subparsers."""
    inspect = sub.add_parser("inspect", help="see inside a model: parameters, memory, shapes, "
                             "attention maps, positions, next-token choices")
    what = inspect.add_subparsers(dest="what", required=True, metavar="WHAT")

    def command(name, help, handler, text=False, source_default=None):
        p = what.add_parser(name, help=help, description=help)
        p.add_argument("source", metavar="SOURCE", nargs="?" if source_default else None,
                       default=source_default, help="a run directory or a preset name ("
                       + ", ".join(C.PRESETS) + ")")
        p.add_argument("--out", help="folder for the files it writes (default: SOURCE/inspect "
                       "for a run, runs/inspect/PRESET for a preset)")
        if text:
            p.add_argument("--text", required=True, help="the text to run through the model")
        p.set_defaults(run=handler)
        return p

    command("params", "parameters per part with their closed forms, sizes and shares",
            cmd_params)
    p = command("memory", "memory of a training step and the KV cache, estimated and measured",
                cmd_memory)
    p.add_argument("--batch", type=int, help="sequences per batch (default: the config's)")
    p.add_argument("--block", type=int, help="tokens per sequence (default: block_size)")
    p.add_argument("--dtype", choices=list(BYTES), default="fp32",
                   help="precision of weights and activations (default: %(default)s)")
    p.add_argument("--measure", action=argparse.BooleanOptionalAction, default=None,
                   help="run a real step to measure the peak (default: when the estimate is "
                   "under 2 GiB)")
    p = command("shapes", "every module's input and output shapes in B/T/C/H/V letters",
                cmd_shapes, text=True)
    p.add_argument("--target", help="encoder-decoder models: the decoder's input (--text is "
                   "the source)")
    p = command("attention", "attention maps of every layer and head, and what each head "
                "favours", cmd_attention, text=True)
    p.add_argument("--target", help="encoder-decoder models: the decoder's input (--text is "
                   "the source)")
    p = command("positions", "plots of a position scheme (default: the model's own)",
                cmd_positions, source_default="shakespeare-char")
    p.add_argument("--scheme", choices=SCHEMES,
                   help="the position scheme to draw (default: the model's)")
    p.add_argument("--length", type=int, help="positions to draw (default: block_size)")
    p = command("next", "next-token candidates, and how temperature, top-k and top-p reshape "
                "them", cmd_next, text=True)
    p.add_argument("--temperature", type=float, nargs="+", default=[0.5, 1.5],
                   help="temperatures to compare with the raw distribution (default: 0.5 1.5)")
    p.add_argument("--top-k", type=int, nargs="+", default=[5],
                   help="top-k values to compare (default: 5)")
    p.add_argument("--top-p", type=float, nargs="+", default=[0.9],
                   help="top-p (nucleus) masses to compare (default: 0.9)")
    p.add_argument("--top", type=int, default=10, help="candidates shown (default: 10)")

    p = command("lens", "the logit lens: each layer's residual stream read through the final "
                "norm and the unembedding", cmd_lens, text=True)
    p.add_argument("--target", help="encoder-decoder models: the decoder's input (--text is "
                   "the source)")
    p.add_argument("--token", help="a token whose rank and probability to follow (at the last "
                   "position)")
    p.add_argument("--top", type=int, default=5, help="top tokens per layer (default: 5)")
    p = command("attribution", "direct logit attribution of a token's logit (or a logit "
                "difference) to each head and MLP", cmd_attribution, text=True)
    p.add_argument("--target", help="encoder-decoder models: the decoder's input")
    p.add_argument("--token", required=True, help="the token whose logit is attributed")
    p.add_argument("--other", help="attribute the difference logit[token] - logit[other]")
    p = command("patch", "activation patching from a clean to a corrupted prompt, per layer x "
                "position and per head", cmd_patch, text=True)
    p.add_argument("--corrupted", required=True, help="the corrupted prompt (as many tokens "
                   "as --text, the clean one)")
    p.add_argument("--token", required=True, help="the clean answer's token")
    p.add_argument("--other", required=True, help="the corrupted answer's token")
    p = command("detect", "head detectors (previous-token, duplicate-token, induction) and the "
                "loss on repeated random tokens", cmd_detect)
    p.add_argument("--text", help="also score the heads on this text")
    p.add_argument("--repeat", type=int, help="random tokens per copy (default: half the "
                   "block)")

    p = sub.add_parser("compare", help="train recipes on the same data and budget; report",
                       description="Train each recipe (dotted overrides on --preset) with the "
                       "same data, steps and seed; write a Markdown report and loss curves. "
                       "Options --model.F=V / --train.F=V apply to every recipe.")
    p.add_argument("comparison", nargs="?", choices=sorted(COMPARISONS),
                   help="a ready comparison")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="a recipe of your own, e.g. rope:model.position=rope (repeatable)")
    p.add_argument("--preset", default="shakespeare-char",
                   help="the config every recipe starts from (default: %(default)s)")
    p.add_argument("--text", help="UTF-8 text file (default: the preset's corpus)")
    p.add_argument("--max-steps", type=int, help="the budget: optimizer steps per recipe")
    p.add_argument("--longer", type=int, nargs="*", help="also evaluate on windows this many "
                   "times the training block (default: the comparison's own)")
    p.add_argument("--lengths", type=int, nargs="*", metavar="T", help="also time training "
                   "(forward+backward tokens/s) at these sequence lengths (default: the "
                   "comparison's own)")
    p.add_argument("--out", help="folder for the runs and the report (default: runs/compare-NAME)")
    p.set_defaults(run=cmd_compare)


def _source(args, device="cpu"):
    """The Source that SOURCE names, and the folder for its files."""
    source = load_source(args.source, args.overrides, device)
    return source, source.output_dir(args.out)


def _texts(args):
    """The Source, its folder, and the texts its model reads: [--text], or for an
    encoder-decoder [--text (the source), --target], each (ids, tokens)."""
    source, out = _source(args)
    return source, out, source.texts(args.text, args.target)


def _write(path: Path, text: str) -> None:
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path}")


def cmd_params(args) -> int:
    from glassformer.inspect.params import format_table, parameter_table, symbols

    source, out = _source(args, "meta")  # counting needs shapes only
    m = source.cfg.model
    text = f"{source.name}: {symbols(m)}\n\n" + format_table(parameter_table(source.model, m))
    print(text)
    _write(out / "params.txt", text)
    return 0


def cmd_memory(args) -> int:
    from glassformer.inspect.memory import measure_peak, report
    from glassformer.train.memory import estimate

    source, out = _source(args, "meta")  # the estimate needs the config only
    batch = args.batch or source.cfg.train.batch_size
    block = args.block or source.cfg.model.block_size
    measure = args.measure
    if measure is None:
        measure = estimate(source.cfg.model, batch, block, args.dtype)["training_peak"] < 2 ** 31
    measured = measure_peak(source.cfg, batch, block, args.dtype) if measure else None
    text = f"{source.name}: " + report(source.cfg, batch, block, args.dtype, measured)
    if not measure:
        text += "\n(not measured: the estimate is over 2 GiB; pass --measure to run a step)"
    print(text)
    _write(out / "memory.txt", text)
    return 0


def cmd_shapes(args) -> int:
    from glassformer.inspect.shapes import dimensions, format_trace, pick_batch, trace_shapes

    source, out, texts = _texts(args)
    ids, tokens = texts[-1]
    S = len(texts[0][0]) if len(texts) == 2 else None
    B = pick_batch(source.cfg.model, len(ids), S)
    records = trace_shapes(source.model, *input_ids(texts, B))  # (B, S) and/or (B, T)
    text = (f"{source.name}: {len(ids)} tokens {tokens}\nids {ids}\n"
            + format_trace(records, dimensions(source.cfg.model, B, len(ids), S)))
    print(text)
    _write(out / "shapes.txt", text)
    return 0


def cmd_attention(args) -> int:
    import torch

    from glassformer.inspect.capture import AttentionCapture, query_key_texts
    from glassformer.inspect.heads import summarise
    from glassformer.inspect.plots import attention_grid

    source, out, texts = _texts(args)
    with torch.no_grad(), AttentionCapture(source.model) as capture:
        source.model(*input_ids(texts))  # (1, S) and/or (1, T)
    reads = query_key_texts(capture.weights, texts[0], texts[-1])  # {name: (queries, keys)}
    keys = {name: k for name, (_, k) in reads.items()}  # (ids, tokens) of each module's keys
    labels = {name: (q[1], k[1]) for name, (q, k) in reads.items()}  # their tokens, for axes
    text = "\n".join(summarise(capture.weights, keys))
    print(text)
    _write(out / "heads.txt", text)
    state = "trained" if source.trained else "untrained"
    path = attention_grid(capture.weights, labels, out / "attention.png",
                          f"{source.name} ({state}): attention weights, queries down, keys across")
    print(f"wrote {path}")
    return 0


def cmd_positions(args) -> int:
    from glassformer.inspect.positions import positions_figure

    if args.scheme and args.source in C.PRESETS:  # a preset takes the scheme asked for
        args.overrides = {"model.position": args.scheme} | args.overrides
    source, out = _source(args)
    scheme = args.scheme or source.cfg.model.position
    path = positions_figure(scheme, source.cfg.model, source.model, out / f"positions-{scheme}.png",
                            args.length)
    print(f"{source.name}: {scheme} positions")
    print(f"wrote {path}")
    return 0


def cmd_next(args) -> int:
    from glassformer.inspect.next_token import (RAW, candidates, format_candidates, label,
                                                next_logits)
    from glassformer.inspect.plots import next_token_chart

    source, out = _source(args)
    ids, _ = source.tokens(args.text)
    settings = [RAW] + [replace(RAW, temperature=t) for t in args.temperature]
    settings += [replace(RAW, top_k=k) for k in args.top_k]
    settings += [replace(RAW, top_p=p) for p in args.top_p]
    logits = next_logits(source.model, ids)  # (1, V)
    rows = candidates(logits, source.tokenizer_for(args.text).decode, settings, args.top)
    text = f"{source.name}: after {args.text!r}\n" + format_candidates(rows, settings, logits)
    print(text)
    _write(out / "next.txt", text)
    path = next_token_chart(rows, [label(s) for s in settings], out / "next.png",
                            f"next token after {args.text[-30:]!r}")
    print(f"wrote {path}")
    return 0


def _token_id(source, text: str, token: str) -> int:
    """The id of `token`, which must be one token of the tokenizer that reads `text`."""
    ids = source.tokenizer_for(text).encode(token)
    if len(ids) != 1:
        raise GlassformerError(f"{token!r} is {len(ids)} tokens for this tokenizer; name a "
                               "single token")
    return ids[0]


def cmd_lens(args) -> int:
    import torch

    from glassformer.inspect.lens import format_lens, lens_table, logit_lens
    from glassformer.inspect.plots import heatmap

    source, out, texts = _texts(args)
    decode = source.tokenizer_for(args.text).decode
    target = _token_id(source, args.text, args.token) if args.token else None
    logits = logit_lens(source.model, *input_ids(texts))  # (L + 1, T, V)
    text = (f"{source.name}: the logit lens at the last position of {args.text!r}\n"
            + format_lens(lens_table(logits, -1, target, args.top), decode, target))
    print(text)
    _write(out / "lens.txt", text)
    probs = logits.softmax(dim=-1)  # (L + 1, T, V)
    top_p, top_id = probs.max(dim=-1)  # (L + 1, T) each
    notes = [[decode([i]) for i in row] for row in top_id.tolist()]
    columns = list(texts[-1][1])
    if target is not None:  # one more column: the target's probability (and rank) at the end
        p = probs[:, -1, target]  # (L + 1,)
        ranks = (probs[:, -1] > p[:, None]).sum(dim=-1)  # (L + 1,)
        top_p = torch.cat([top_p, p[:, None]], dim=1)  # (L + 1, T + 1)
        notes = [row + [f"#{r}"] for row, r in zip(notes, ranks.tolist())]
        columns.append(f"p({args.token!r})")
    rows = ["embed"] + [f"layer {i}" for i in range(len(logits) - 1)]
    path = heatmap(top_p, rows, columns, out / "lens.png", f"{source.name}: the logit lens\n"
                   "top token and its probability per layer"
                   + ("\nlast column: the target's (#rank)" if target is not None else ""),
                   cmap="viridis", centred=False, notes=notes)
    print(f"wrote {path}")
    return 0


def cmd_attribution(args) -> int:
    import torch

    from glassformer.inspect.attribution import direct_logit_attribution
    from glassformer.inspect.plots import heatmap

    source, out, texts = _texts(args)
    target = _token_id(source, args.text, args.token)
    other = _token_id(source, args.text, args.other) if args.other else None
    parts = direct_logit_attribution(source.model, *input_ids(texts), target=target, other=other)
    what = f"logit[{args.token!r}]" + (f" - logit[{args.other!r}]" if args.other else "")
    lines = [f"{name:>14}: {value:+.4f}" for name, value in parts.items()]
    text = (f"{source.name}: direct logit attribution of {what} at the last position of "
            f"{args.text!r}\n" + "\n".join(lines) + f"\n{'sum':>14}: {sum(parts.values()):+.4f}")
    print(text)
    _write(out / "attribution.txt", text)
    m = source.model.cfg
    letters = ["H"] + (["X"] if m.family == "encdec" else [])
    columns = [f"{x}{h}" for x in letters for h in range(m.n_head)] + ["mlp"]
    grid = torch.tensor([[parts[f"L{i}{c}" if c != "mlp" else f"L{i} mlp"] for c in columns]
                         for i in range(m.n_layer)])
    path = heatmap(grid, [f"layer {i}" for i in range(m.n_layer)], columns,
                   out / "attribution.png", f"{source.name}: direct attribution of {what}")
    print(f"wrote {path}")
    return 0


def cmd_patch(args) -> int:
    import torch

    from glassformer.inspect.patching import patch_heads, patch_residual
    from glassformer.inspect.plots import heatmap

    source, out = _source(args)
    both = args.text + args.corrupted  # a preset's tokenizer must know both prompts
    tokenizer = source.tokenizer_for(both)
    clean, corrupted = (torch.tensor([tokenizer.encode(t)]) for t in (args.text, args.corrupted))
    target, other = (_token_id(source, both, t) for t in (args.token, args.other))
    residual = patch_residual(source.model, clean, corrupted, target, other)  # (L, T)
    heads = patch_heads(source.model, clean, corrupted, target, other)  # (L, H)
    rows = [f"layer {i}" for i in range(len(residual))]
    text = (f"{source.name}: share of logit[{args.token!r}] - logit[{args.other!r}] recovered "
            f"by patching {args.text!r} into {args.corrupted!r}\nresidual stream (layer x "
            f"position):\n{residual.numpy().round(3)}\nheads (layer x head):\n"
            f"{heads.numpy().round(3)}")
    print(text)
    _write(out / "patch.txt", text)
    tokens = [tokenizer.decode([i]) for i in clean[0].tolist()]
    for name, grid, columns, what in [
            ("residual", residual, tokens, "each layer's input, per position"),
            ("heads", heads, [f"H{h}" for h in range(heads.size(1))], "each head's output")]:
        path = heatmap(grid, rows, columns, out / f"patch-{name}.png", f"{source.name}: "
                       f"activation patching\n{what}\nshare of the logit difference recovered")
        print(f"wrote {path}")
    return 0


def cmd_detect(args) -> int:
    import math

    import torch

    from glassformer.inspect.plots import heatmap
    from glassformer.train.detectors import (DETECTORS, common_tokens, detect, induction_loss,
                                             repeated_tokens)
    from glassformer.train.evaluate import validation_tokens

    source, out = _source(args)
    m = source.cfg.model
    n = args.repeat or m.block_size // 2
    # a trained language model's random tokens: those its validation text uses often
    trained_lm = source.trained and source.cfg.train.task == "lm"
    pool = common_tokens(validation_tokens(source)) if trained_lm else torch.arange(m.vocab_size)
    repeated = repeated_tokens(pool, n, 8)  # (8, 2n)
    first, second = induction_loss(source.model, repeated)
    runs = [("repeated random tokens", repeated)]
    if args.text:
        runs.append((repr(args.text), torch.tensor([source.tokens(args.text)[0]])))
    lines = [f"{source.name}: loss on {n} random tokens (of {len(pool)}) {first:.3f}, on their "
             f"repeat {second:.3f} (ln {len(pool)} = {math.log(len(pool)):.3f})"]
    for label, ids in runs:
        scores = detect(source.model, ids)  # {detector: (L, H)}
        lines.append(f"head scores on {label} (layer x head):")
        lines += [f"  {kind}:\n{scores[kind].numpy().round(3)}" for kind in DETECTORS]
        slug = "repeated" if ids is repeated else "text"
        grid = torch.cat([scores[kind] for kind in DETECTORS])  # (3L, H)
        rows = [f"L{i} {kind}" for kind in DETECTORS for i in range(m.n_layer)]
        path = heatmap(grid, rows, [f"H{h}" for h in range(m.n_head)], out / f"detect-{slug}.png",
                       f"{source.name}: head scores on {label}", cmap="viridis", centred=False)
        lines.append(f"wrote {path}")
    text = "\n".join(lines)
    print(text)
    _write(out / "detect.txt", text)
    return 0


def cmd_compare(args) -> int:
    from glassformer.inspect.compare import parse_recipe, run_comparison

    if bool(args.comparison) == bool(args.recipe):
        raise GlassformerError("name a ready comparison (" + ", ".join(COMPARISONS) + ") or give "
                               "--recipe options, not both")
    ready = COMPARISONS.get(args.comparison, {})
    recipes = ready.get("recipes") or dict(parse_recipe(spec) for spec in args.recipe)
    if len(recipes) < 2 and not ready:
        raise GlassformerError("a comparison needs at least two --recipe options")
    overrides = with_flags({"train.text": args.text, "train.max_steps": args.max_steps},
                           args.overrides)
    base = C.apply_overrides(C.preset(args.preset), overrides)
    out = Path(args.out or f"runs/compare-{args.comparison or 'recipes'}")
    longer = args.longer if args.longer is not None else ready.get("longer", [])
    lengths = args.lengths if args.lengths is not None else ready.get("lengths", [])
    report = run_comparison(recipes, base, out, title=ready.get("title", ""),
                            about=ready.get("about", ""), longer=longer,
                            match_size=ready.get("match_size"), lengths=lengths, bar=sys.stderr)
    print(report.read_text(encoding="utf-8"))
    pngs = ["loss_vs_step.png", "loss_vs_time.png"] + (["throughput.png"] if lengths else [])
    print(f"wrote {report}, {out / 'results.json'}, " + ", ".join(str(out / p) for p in pngs))
    return 0
