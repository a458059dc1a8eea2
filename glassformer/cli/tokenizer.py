"""`glassformer tokenizer train`: a byte-level BPE tokenizer trained on a text file."""

from __future__ import annotations

import time
from pathlib import Path

from glassformer.errors import writes_to


def add_commands(sub) -> None:
    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = actions.add_parser("train", help="train a byte-level BPE on a UTF-8 text file")
    t.add_argument("--vocab-size", type=int, required=True,
                   help="tokens in the vocabulary: 256 bytes, then merges (e.g. 4096)")
    t.add_argument("--text", help="UTF-8 text file (default: Shakespeare's complete works)")
    t.add_argument("--out", help="file to write (default: runs/tokenizers/bpe-VOCAB_SIZE.json, "
                                 "beside the runs `train` writes)")
    t.set_defaults(run=cmd_tokenizer_train)


def cmd_tokenizer_train(args) -> int:
    from glassformer.data.corpora import load_text
    from glassformer.tokenizers import HFTokenizer

    text = load_text(args.text)
    started = time.perf_counter()
    tokenizer = HFTokenizer.train_bpe(text, args.vocab_size)
    seconds = time.perf_counter() - started
    out = Path(args.out or f"runs/tokenizers/bpe-{args.vocab_size}.json")
    with writes_to(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.save(out)
    n_tokens = len(tokenizer.encode(text))
    print(f"trained a byte-level BPE of {tokenizer.vocab_size:,} tokens on {len(text):,} "
          f"characters in {seconds:.1f} s ({len(text) / n_tokens:.2f} characters per token); "
          f"wrote {out}")
    return 0
