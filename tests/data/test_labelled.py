"""text<TAB>label files: parsing and its errors (file, line, what to do), labels in sorted order,
encoding as the checkpoint's tokenizer makes model input, padding with the validity mask; and
the genre passages written as such files, whole works held out."""

import pytest
import torch

from glassformer.data import genre
from glassformer.data.labelled import LabelledData, read_examples
from glassformer.errors import GlassformerError
from glassformer.interop.hf import from_pretrained
from tests.interop.hf_pairs import sentence_bert_dir


@pytest.fixture
def wordpiece(tmp_path):
    """A BERT WordPiece tokenizer (a sentence-transformers directory's, as MiniLM's)."""
    sentence_bert_dir(tmp_path / "hf")
    return from_pretrained(tmp_path / "hf")[1]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text,message", [
    ("rose\tbeauty\ndie grave\n", r"t.tsv:2: expected 'text<TAB>label' \(one tab\), got 0 tabs "
                                  r"in 'die grave'; separate the two columns with a tab"),
    ("rose\tbeauty\n\nsweet\trose\tbeauty\n", r"t.tsv:3: .* got 2 tabs .*; replace the tabs "
                                              r"inside it by spaces"),
    ("rose\t \n", r"t.tsv:1: expected 'text<TAB>label', but the label is empty in 'rose\\t '; "
                  "fill it in or remove the line"),
    ("\tbeauty\n", r"t.tsv:1: .*the text is empty"),
    ("\n \n", r"t.tsv holds no text<TAB>label lines"),
])
def test_malformed_lines_are_one_error_naming_the_line(tmp_path, text, message):
    with pytest.raises(GlassformerError, match=message):
        read_examples(write(tmp_path / "t.tsv", text))


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"rose\tbeauty\nd\xefe\tdeath\n")
    with pytest.raises(GlassformerError, match=r"t.tsv:2: not UTF-8 .*save the file as UTF-8"):
        read_examples(path)
    with pytest.raises(GlassformerError, match="labelled file .*missing.tsv does not exist"):
        read_examples(tmp_path / "missing.tsv")


def test_lines_keep_their_numbers_and_crlf_ends(tmp_path):
    path = write(tmp_path / "t.tsv", "rose\tbeauty\r\n\r\ndie\tdeath\r\n")
    assert read_examples(path) == [(1, "rose", "beauty"), (3, "die", "death")]


def test_labels_are_sorted_and_the_held_out_file_may_use_only_known_ones(tmp_path, wordpiece):
    train = write(tmp_path / "train.tsv", "rose\tz-beauty\ndie\tdeath\ntomb\tdeath\n")
    test = write(tmp_path / "test.tsv", "grave\tdeath\nfairest\tz-beauty\n")
    data = LabelledData(train, test, wordpiece, 16)
    assert data.labels == ("death", "z-beauty")
    assert data.train_labels.tolist() == [1, 0, 0] and data.val_labels.tolist() == [0, 1]
    write(test, "grave\tdeath\n\nfairest\tbeauty\n")
    with pytest.raises(GlassformerError, match=r"test.tsv:3: label 'beauty' never occurs in "
                                               r".*train.tsv.*its labels are death, z-beauty"):
        LabelledData(train, test, wordpiece, 16)
    write(train, "rose\tbeauty\ndie\tbeauty\n")
    with pytest.raises(GlassformerError, match="one label .*needs at least two"):
        LabelledData(train, test, wordpiece, 16)


def test_texts_are_model_input_as_the_tokenizer_makes_it(tmp_path, wordpiece):
    """[CLS] text [SEP] as the checkpoint's post-processor adds them, cut to block_size,
    padded with [PAD] and a validity mask: the same as the tokenizer's own batch encoding."""
    texts = ["From fairest creatures we desire increase", "rose", "thy " * 30]
    train = write(tmp_path / "train.tsv", "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts)))
    data = LabelledData(train, train, wordpiece, 12)
    batch = data.val_batches(3)[0]
    ids, valid = wordpiece.encode_batch(texts)  # (3, T) each, [CLS] ... [SEP]
    lengths = valid.sum(1).tolist()
    assert batch["key_valid"].sum(1).tolist() == [min(n, 12) for n in lengths]
    assert batch["ids"].shape == (3, 12)
    for b, n in enumerate(lengths):
        row = ids[b, :n].tolist()
        want = row if n <= 12 else row[:11] + row[-1:]  # the text cut, [SEP] kept
        assert batch["ids"][b, :len(want)].tolist() == want
        assert (batch["ids"][b, len(want):] == wordpiece.special("[PAD]")).all()
    assert torch.equal(batch["targets"], torch.tensor([0, 1, 0]))


def test_genre_files_hold_whole_works_out(tmp_path):
    works = {name: " ".join(f"{name}:{i}" for i in range(50)) for name in genre.WORKS}
    written = genre.write_tsv(works, tmp_path, words=10, per_work=2)
    assert written == {"train.tsv": 2 * (len(genre.WORKS) - len(genre.HELD_OUT)),
                       "test.tsv": 2 * len(genre.HELD_OUT)}
    assert genre.write_tsv(works, tmp_path, words=10)["train.tsv"] == 5 * (
        len(genre.WORKS) - len(genre.HELD_OUT))  # every passage
    genre.write_tsv(works, tmp_path, words=10, per_work=2)
    train = read_examples(tmp_path / "train.tsv")
    test = read_examples(tmp_path / "test.tsv")
    for rows, works_in in ((train, set(genre.WORKS) - genre.HELD_OUT), (test, genre.HELD_OUT)):
        for _, text, label in rows:
            name = text.split()[0].split(":")[0]
            assert name in works_in and genre.WORKS[name] == label and len(text.split()) == 10
    assert [t.split()[0] for _, t, _ in test[:2]] == ["as_you_like_it:0", "as_you_like_it:20"]
