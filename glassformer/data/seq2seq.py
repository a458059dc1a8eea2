"""Source -> target pairs for the encoder-decoder: numbers and their English words, generated
("40017" -> "forty thousand seventeen"), or any TSV file of source<TAB>target lines.

A batch, with the target wrapped as [BOS] y [EOS] and split for teacher forcing:
  src      (B, S)  source ids, padded with [PAD]        src_valid (B, S) True for real tokens
  ids      (B, T)  [BOS] y_1 .. y_n  (decoder input)    key_valid (B, T)
  targets  (B, T)  y_1 .. y_n [EOS]  (shifted left), -1 on padding
"""

from __future__ import annotations

import random

import torch

from glassformer.data.tsv import read_tsv
from glassformer.errors import GlassformerError
from glassformer.tokenizers.special import BOS, EOS, PAD

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
LIMIT = 1_000_000
TEST_NUMBERS = 2000  # held out, drawn once from 1000..999,999 with a fixed seed


def number_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000, e.g. 40017 -> "forty thousand seventeen"."""
    if not 0 <= n < LIMIT:
        raise ValueError(f"{n} is outside 0..{LIMIT - 1}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return ONES[n // 100] + " hundred" + (" " + number_words(n % 100) if n % 100 else "")
    return number_words(n // 1000) + " thousand" + (" " + number_words(n % 1000) if n % 1000 else "")


class NumberPairs:
    """Training numbers have 1 to 6 digits with equal chance (small numbers would be rare
    otherwise); the test numbers are never drawn for training."""

    def __init__(self):
        self.test_numbers = set(random.Random(0).sample(range(1000, LIMIT), TEST_NUMBERS))

    def sample(self, n: int, generator: torch.Generator) -> list[tuple[str, str]]:
        out = []
        while len(out) < n:
            digits = torch.randint(1, 7, (1,), generator=generator).item()
            low = 0 if digits == 1 else 10 ** (digits - 1)
            x = torch.randint(low, 10 ** digits, (1,), generator=generator).item()
            if x not in self.test_numbers:
                out.append((str(x), number_words(x)))
        return out

    def test(self) -> list[tuple[str, str]]:
        return [(str(x), number_words(x)) for x in sorted(self.test_numbers)]

    def text(self) -> str:
        """Every character either side can hold (for the tokenizer)."""
        return "0123456789" + "".join(ONES + TENS) + " -hundred thousand"


class FilePairs:
    """Pairs from a TSV file; the last `test_fraction` of its lines (after a seeded shuffle) are
    held out."""

    def __init__(self, path, test_fraction: float, seed: int):
        self.pairs = read_pairs(path)
        random.Random(seed).shuffle(self.pairs)
        n_test = max(1, int(len(self.pairs) * test_fraction))
        if len(self.pairs) - n_test < 1:
            raise GlassformerError(f"{path} has {len(self.pairs)} pair(s); it needs at least 2")
        self.train, self.held_out = self.pairs[:-n_test], self.pairs[-n_test:]

    def sample(self, n: int, generator: torch.Generator) -> list[tuple[str, str]]:
        return [self.train[i] for i in torch.randint(len(self.train), (n,), generator=generator)]

    def test(self) -> list[tuple[str, str]]:
        return self.held_out

    def text(self) -> str:
        return "".join(s + t for s, t in self.pairs)


def read_pairs(path) -> list[tuple[str, str]]:
    """source<TAB>target lines of a UTF-8 file (data/tsv.py); blank lines are skipped."""
    return [(source, target) for _, source, target in read_tsv(path, ("source", "target"),
                                                               "pairs")]


def pad(rows: list[list[int]], value: int) -> torch.Tensor:
    """Right-pad lists of ids to one length: (B, max length)."""
    width = max(map(len, rows))
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def pairs_batch(pairs, tokenizer, block_size: int, device="cpu") -> dict:
    """Encode and pad (source, target) pairs: EncoderDecoder.forward's keyword arguments."""
    src = [tokenizer.encode(s) for s, _ in pairs]
    tgt = [tokenizer.encode(t) for _, t in pairs]
    longest = max(max(map(len, src)), max(map(len, tgt)) + 1)
    if longest > block_size:
        raise GlassformerError(f"a pair needs {longest} positions but block_size is "
                               f"{block_size}; raise --model.block_size")
    src_ids = pad(src, PAD)  # (B, S)
    ids = pad([[BOS] + t for t in tgt], PAD)  # (B, T)
    targets = pad([t + [EOS] for t in tgt], -1)  # (B, T)
    # text never encodes to a special token, so [PAD] marks exactly the padding
    return {"src": src_ids.to(device), "src_valid": (src_ids != PAD).to(device),
            "ids": ids.to(device), "key_valid": (targets != -1).to(device),
            "targets": targets.to(device)}
