"""A checkpoint's tokenizer.json makes model input as `transformers` does: special tokens added
by the file's post-processor ([CLS] text [SEP] for BERT), no padding or truncation that the file
sets but the caller did not ask for, and batches padded to their longest text with a mask."""

import pytest
import torch
from tokenizers import BertWordPieceTokenizer, processors
from transformers import BertTokenizerFast

from glassformer.tokenizers import HFTokenizer, load_tokenizer
from tests.helpers import SONNET

CUT = 8  # the file truncates at 8 tokens and pads to 64, as all-MiniLM-L6-v2's does at 128

TEXTS = [line for line in SONNET.splitlines() if line] + [
    "Ünïcödé: ça va? Crème brûlée, naïve façade, Ångström.",
    "In 1609, 154 sonnets were printed; 3.14159 and 2,718 are numbers.",
    "self-substantial fuel, light's flame -- and (beauty's) rose!",
    "a",
    "",
    "   spaces   around   ",
    "Thy tender heir " * 12,
    "日本語 and Greek αβγ between words",
    "MIXED Case WORDS Are Lowered",
    "unknownwordsthatwordpiececannotsplitwell xyzzy",
    "tab\tand\nnewline",
    "Feed'st thy light's flame with self-substantial fuel, making a famine where abundance lies",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A BERT WordPiece tokenizer.json that sets padding and truncation and wraps model input
    as [CLS] A [SEP] (pairs: [CLS] A [SEP] B [SEP]), and transformers' tokenizer of it."""
    wordpiece = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    wordpiece.train_from_iterator([SONNET, TEXTS[8]], vocab_size=300)
    cls, sep = (("[CLS]", wordpiece.token_to_id("[CLS]")), ("[SEP]", wordpiece.token_to_id("[SEP]")))
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[cls, sep])
    wordpiece.enable_padding(length=64, pad_id=wordpiece.token_to_id("[PAD]"))
    wordpiece.enable_truncation(CUT)
    path = tmp_path_factory.mktemp("wp") / "tokenizer.json"
    wordpiece.save(str(path))
    return load_tokenizer(path), BertTokenizerFast(tokenizer_file=str(path))


def test_model_input_ids_equal_transformers(files):
    ours, theirs = files
    assert len(TEXTS) >= 20
    for text in TEXTS:
        assert ours.encode(text, add_special_tokens=True) == theirs(text)["input_ids"], text
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], text


def test_the_files_padding_and_truncation_are_off(files):
    ours, _ = files
    ids = ours.encode(TEXTS[-1], add_special_tokens=True)
    assert len(ids) > CUT and ours.pad_id not in ids  # not cut at 8, not padded to 64
    assert ids[0] == ours.special("[CLS]") and ids[-1] == ours.special("[SEP]")
    assert ours.encode("a") == [ours.tokenizer.token_to_id("a")]


def test_a_batch_is_padded_to_its_longest_with_a_mask(files):
    ours, theirs = files
    ids, valid = ours.encode_batch(TEXTS)
    want = theirs(TEXTS, padding=True, return_tensors="pt")
    assert ids.dtype == torch.long and valid.dtype == torch.bool
    assert torch.equal(ids, want["input_ids"])
    assert torch.equal(valid, want["attention_mask"].bool())
    assert (ids[~valid] == ours.special("[PAD]")).all() and ours.pad_id == ours.special("[PAD]")
    rows = [ids[b][valid[b]].tolist() for b in range(len(TEXTS))]
    assert rows == [ours.encode(t, add_special_tokens=True) for t in TEXTS]


def test_saved_in_a_run_it_behaves_the_same(files, tmp_path):
    ours, _ = files
    ours.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert isinstance(again, HFTokenizer) and again.pad_id == ours.pad_id
    assert torch.equal(again.encode_batch(TEXTS)[0], ours.encode_batch(TEXTS)[0])
