"""`glassformer embed RUN TEXT...`: sentence vectors of texts by an encoder run (e.g. one made
by `glassformer pull minilm-l6`), pooled as the run's config says; shown as the cosine
similarity of every pair of texts, or as the vectors themselves (--vectors, or one text).
"""

from __future__ import annotations

import json

from glassformer.cli.options import RUN_HELP


def add_commands(sub) -> None:
    p = sub.add_parser("embed", help="sentence vectors of texts, and how similar they are, by "
                                     "an encoder run")
    p.add_argument("run_dir", metavar="RUN", help=RUN_HELP)
    p.add_argument("texts", metavar="TEXT", nargs="+", help="a text (several: compared)")
    p.add_argument("--vectors", action="store_true",
                   help="print each text's vector as a JSON list, one per line")
    p.set_defaults(run=cmd_embed)


def cmd_embed(args) -> int:
    from glassformer.cli.options import load_run_for
    from glassformer.embed import cosine, embed

    run = load_run_for("embed", args.run_dir, ("bert",))
    vectors = embed(run.model, run.tokenizer, args.texts)  # (B, C)
    if args.vectors or len(args.texts) == 1:
        for v in vectors.tolist():
            print(json.dumps([round(x, 6) for x in v]))
        return 0
    for i, text in enumerate(args.texts, 1):
        print(f"{i:>3}  {text[:70]!r}")
    print("cosine " + "".join(f"{j:>7}" for j in range(1, len(args.texts) + 1)))
    for i, row in enumerate(cosine(vectors).tolist(), 1):
        print(f"{i:>6} " + "".join(f"{s:7.3f}" for s in row))
    return 0
