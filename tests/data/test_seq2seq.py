"""Numbers to words, TSV pairs, and batches with shifted targets."""

import pytest
import torch

from glassformer.data import seq2seq
from glassformer.tokenizers import special
from glassformer.errors import GlassformerError
from glassformer.tokenizers import CharTokenizer


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (21, "twenty-one"),
    (100, "one hundred"), (101, "one hundred one"), (1000, "one thousand"),
    (40017, "forty thousand seventeen"), (110010, "one hundred ten thousand ten"),
    (999999, "nine hundred ninety-nine thousand nine hundred ninety-nine")])
def test_number_words(n, words):
    assert seq2seq.number_words(n) == words


def test_held_out_numbers_are_never_drawn_for_training():
    pairs = seq2seq.NumberPairs()
    test = {int(s) for s, _ in pairs.test()}
    assert len(test) == seq2seq.TEST_NUMBERS and min(test) >= 1000
    drawn = pairs.sample(5000, torch.Generator().manual_seed(0))
    numbers = [int(s) for s, _ in drawn]
    assert not test & set(numbers)
    lengths = [len(s) for s, _ in drawn]
    assert all(abs(lengths.count(d) / 5000 - 1 / 6) < 0.03 for d in range(1, 7))
    tok = CharTokenizer.from_text(pairs.text(), special.SEQ2SEQ)
    tok.encode("".join(s + t for s, t in drawn))  # the tokenizer knows every character


def test_batch_shifts_targets_for_teacher_forcing():
    tok = CharTokenizer.from_text("abc", special.SEQ2SEQ)
    batch = seq2seq.pairs_batch([("ab", "c"), ("a", "bca")], tok, 8)
    a, b, c = tok.encode("abc")
    BOS, EOS, PAD = special.BOS, special.EOS, special.PAD
    assert batch["src"].tolist() == [[a, b], [a, PAD]]
    assert batch["src_valid"].tolist() == [[True, True], [True, False]]
    assert batch["ids"].tolist() == [[BOS, c, PAD, PAD], [BOS, b, c, a]]
    assert batch["targets"].tolist() == [[c, EOS, -1, -1], [b, c, a, EOS]]
    assert batch["key_valid"].tolist() == [[True, True, False, False], [True] * 4]
    with pytest.raises(GlassformerError, match="block_size"):
        seq2seq.pairs_batch([("ab", "cabcab")], tok, 6)


def test_pairs_file_errors_name_the_line(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("one\t1\ntwo 2\n", encoding="utf-8")
    with pytest.raises(GlassformerError, match=r"p.tsv:2: expected 'source<TAB>target'"):
        seq2seq.read_pairs(path)
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(GlassformerError, match="no source<TAB>target lines"):
        seq2seq.read_pairs(path)
    with pytest.raises(GlassformerError, match="does not exist"):
        seq2seq.read_pairs(tmp_path / "missing.tsv")
