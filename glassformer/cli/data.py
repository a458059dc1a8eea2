"""`glassformer data prepare`: a corpus bigger than memory tokenized into token shards that
`glassformer train --data DIR` reads (data/prepare.py, data/shards.py).

  glassformer data prepare SRC... --tokenizer RUN|FILE|HF-DIR|char|bpe --out DIR
                           [--field text] [--val-fraction F] [--workers N] [--separator TEXT]
                           [--vocab-size N] [--bpe-sample CHARS]
"""

from __future__ import annotations


def add_commands(sub) -> None:
    p = sub.add_parser("data", help="prepare a corpus bigger than memory for training")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = actions.add_parser(
        "prepare", help="tokenize text, JSONL and gzip'd files into token shards",
        epilog="Rerun the same command after an interruption: finished shards are kept. "
               "Train on the result with `glassformer train --data DIR`.")
    t.add_argument("sources", nargs="+", metavar="SRC",
                   help="text files (one document each), .jsonl files (one document per line), "
                        "either gzip'd (.gz), or folders of them")
    t.add_argument("--tokenizer", required=True,
                   help="a run directory, a tokenizer.json, a Hugging Face model directory, or "
                        "one to fit to the corpus first: char (every character in it) or bpe "
                        "(a byte-level BPE trained on a sample from every file)")
    t.add_argument("--out", required=True, help="folder of the prepared dataset")
    t.add_argument("--field", default="text", help="JSONL: the field holding the text "
                                                   "(default: %(default)s)")
    t.add_argument("--val-fraction", type=float, default=0.01,
                   help="share of the documents held back for validation (default: %(default)s)")
    t.add_argument("--workers", type=int, help="tokenizing processes (default: one per core)")
    t.add_argument("--separator", default="\n\n",
                   help="text whose ids follow each document, e.g. '<|endoftext|>' for GPT-2's "
                        "tokenizer; '' for none (default: a blank line)")
    t.add_argument("--vocab-size", type=int, default=4096,
                   help="--tokenizer bpe: tokens in the vocabulary (default: %(default)s)")
    t.add_argument("--bpe-sample", type=int, default=32_000_000, metavar="CHARS",
                   help="--tokenizer bpe: characters of the sample it is trained on, an equal "
                        "share from each file (default: %(default)s)")
    t.add_argument("--shard-tokens", type=int, default=1 << 26,
                   help="most tokens in one shard file (default: %(default)s)")
    t.set_defaults(run=cmd_prepare)


def cmd_prepare(args) -> int:
    from glassformer.data.prepare import prepare
    from glassformer.errors import writes_to

    with writes_to(args.out):
        manifest = prepare(args.sources, args.tokenizer, args.out, args.val_fraction, args.field,
                           args.workers, args.separator, args.shard_tokens,
                           vocab_size=args.vocab_size, bpe_sample=args.bpe_sample)
    splits = manifest["splits"]
    print(f"{args.out}: {len(manifest['sources']):,} files, {manifest['bytes'] / 2**20:,.1f} MiB"
          + "".join(f" | {name} {s['documents']:,} documents, {s['tokens']:,} tokens in "
                    f"{len(s['shards'])} shards" for name, s in splits.items())
          + f" ({manifest['dtype']})")
    return 0
