"""Time byte-level BPE training on the default corpus (Shakespeare's complete works, ~5 MB).

    python bench/tokenizer_train.py [--vocab-size 4096] [--repeat 3]

Prints the seconds to train (best of --repeat), then the seconds to encode the whole corpus and
its characters per token. The issue asks for training under 10 s at 4k on 2 cores.
"""

import argparse
import os
import time

from glassformer.data.corpora import load_text
from glassformer.tokenizers import HFTokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    text = load_text(None)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        tokenizer = HFTokenizer.train_bpe(text, args.vocab_size)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    ids = tokenizer.encode(text)
    encode_s = time.perf_counter() - start
    print(f"{len(text):,} characters, {os.cpu_count()} CPUs, vocab {tokenizer.vocab_size}")
    print(f"train: {min(times):.2f} s (best of {args.repeat}; all: "
          f"{', '.join(f'{t:.2f}' for t in times)})")
    print(f"encode: {encode_s:.2f} s, {len(ids):,} tokens, {len(text) / len(ids):.2f} characters "
          "per token")


if __name__ == "__main__":
    main()
