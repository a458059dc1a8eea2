"""Language-model data: token files, the train/val split and random block batches."""

import numpy as np
import pytest
import torch

from glassformer.data import lm
from glassformer.data.lm import (check_enough, encode_to_file, get_batch, split, token_dtype,
                                 token_file)
from glassformer.errors import GlassformerError
from glassformer.tokenizers import CharTokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 3


def test_token_dtype_fits_the_vocabulary():
    assert token_dtype(65) == np.uint16
    assert token_dtype(65536) == np.uint16  # ids 0..65535
    assert token_dtype(65537) == np.uint32


def test_encode_to_file_writes_raw_ids(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    encode_to_file(TEXT, tok, tmp_path / "t.bin")
    ids = np.fromfile(tmp_path / "t.bin", dtype=np.uint16)
    assert ids.tolist() == tok.encode(TEXT)
    assert (tmp_path / "t.bin").stat().st_size == 2 * len(TEXT)


def test_token_file_encodes_once(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path))
    tok = CharTokenizer.from_text(TEXT)
    calls = []
    real = lm.encode_to_file
    monkeypatch.setattr(lm, "encode_to_file", lambda *a: calls.append(a) or real(*a))
    first = token_file(TEXT, tok)
    second = token_file(TEXT, tok)
    assert len(calls) == 1
    assert isinstance(second, np.memmap) and second.dtype == np.uint16
    assert second.tolist() == first.tolist() == tok.encode(TEXT)
    assert [p.parent.name for p in tmp_path.rglob("*.bin")] == ["tokens"]
    token_file(TEXT + "!", CharTokenizer.from_text(TEXT + "!"))  # another text: another file
    assert len(calls) == 2 and len(list(tmp_path.rglob("*.bin"))) == 2


def test_split_holds_out_the_end():
    tokens = np.arange(100, dtype=np.uint16)
    train, val = split(tokens, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    train, val = split(np.arange(7), 0.25)
    assert (len(train), len(val)) == (6, 1)
    with pytest.raises(GlassformerError, match="val_fraction"):
        split(tokens, 1.0)


def test_check_enough():
    check_enough(np.arange(9), 8, "val")
    message = r"the val split has 8 tokens but one block needs 9; .*--model.block_size"
    with pytest.raises(GlassformerError, match=message):
        check_enough(np.arange(8), 8, "val")


def test_get_batch_blocks_are_contiguous_and_shifted():
    tokens = np.arange(1000, 1050, dtype=np.uint16)  # value = 1000 + position
    x, y = get_batch(tokens, 4, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        start = row_x[0] - 1000
        assert row_x == list(range(1000 + start, 1000 + start + 8))
        assert row_y == list(range(1000 + start + 1, 1000 + start + 9))


def test_get_batch_is_deterministic_per_seed():
    tokens = np.random.default_rng(0).integers(0, 65, 500).astype(np.uint16)
    x1, y1 = get_batch(tokens, 3, 16, torch.Generator().manual_seed(42))
    x2, y2 = get_batch(tokens, 3, 16, torch.Generator().manual_seed(42))
    x3, _ = get_batch(tokens, 3, 16, torch.Generator().manual_seed(43))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)


def test_get_batch_reaches_the_last_token():
    tokens = np.arange(10, dtype=np.uint16)
    x, y = get_batch(tokens, 200, 9, torch.Generator().manual_seed(0))  # only offset 0 fits
    assert x[0].tolist() == list(range(9)) and y[0].tolist() == list(range(1, 10))
    assert torch.equal(x, x[:1].expand(200, 9))


def test_get_batch_reads_a_token_file(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path))
    tok = CharTokenizer.from_text(TEXT)
    train, val = split(token_file(TEXT, tok), 0.1)
    x, y = get_batch(train, 2, 5, torch.Generator().manual_seed(1))
    assert x.shape == (2, 5)
    for row_x, row_y in zip(x, y):
        assert tok.decode(row_x) + tok.decode(row_y)[-1] in TEXT[: len(train)]
