"""Character tokenizer: round trips, unknown characters, and tokenizer.json I/O."""

import json

import pytest
import torch

from glassformer.errors import GlassformerError
from glassformer.tokenizers import CharTokenizer, UnknownCharactersError, load_tokenizer


def test_vocab_is_sorted_set_of_characters():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.vocab_size == 8
    assert tok.encode("hold") == [3, 5, 4, 1]


def test_encode_decode_round_trip():
    text = "To be, or not to be:\nthat is the question. Ça va?"
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text  # a 1-D tensor decodes too


def test_unknown_characters_are_listed():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UnknownCharactersError) as info:
        tok.encode("abé\tcé")
    message = str(info.value)
    assert "2 unknown character(s): '\\t', 'é'" in message
    assert "only knows the 3 characters" in message
    assert "retrain" in message
    assert info.value.unknown == ["\t", "é"]
    assert isinstance(info.value, GlassformerError)


def test_unknown_characters_list_is_capped():
    tok = CharTokenizer.from_text("a")
    with pytest.raises(UnknownCharactersError, match="25 unknown .* and 5 more;"):
        tok.encode("bcdefghijklmnopqrstuvwxyz")


def test_decode_rejects_ids_outside_vocabulary():
    with pytest.raises(GlassformerError, match="token id 3 is outside the vocabulary 0..2"):
        CharTokenizer.from_text("abc").decode([0, 3])


def test_save_load_round_trip(tmp_path):
    tok = CharTokenizer.from_text("Hamlet: \"Who's there?\"\n\té€")
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"type": "char", "chars": tok.chars}
    for loaded in (CharTokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, CharTokenizer)
        assert loaded.chars == tok.chars
        assert loaded.encode("Who") == tok.encode("Who")


@pytest.mark.parametrize("content, match", [
    (None, "does not exist"),
    ('{"type": "char", "chars": ["a"', "cannot read tokenizer file"),
    ('["a", "b"]', 'not a JSON object with a "type"'),
    ('{"type": "wordpiece", "chars": []}', "unknown type 'wordpiece'; known: char"),
    ('{"type": "char", "chars": ["a", "a"]}', "distinct single characters"),
    ('{"type": "char", "chars": ["ab"]}', "distinct single characters"),
])
def test_bad_tokenizer_files_give_one_clear_error(tmp_path, content, match):
    path = tmp_path / "tokenizer.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(GlassformerError, match=match) as info:
        load_tokenizer(path)
    assert "\n" not in str(info.value)


def test_char_load_rejects_other_kinds(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"type": "bpe"}', encoding="utf-8")
    with pytest.raises(GlassformerError, match="holds a 'bpe' tokenizer, not a char one"):
        CharTokenizer.load(path)


@pytest.mark.parametrize("text, named", [("ok \udce0\udca6", "byte 0xe0 at character 4"),
                                         ("\ud800", "lone surrogate U+D800 at character 1")])
def test_text_that_is_not_valid_unicode_is_refused(text, named):
    """Bytes that are not UTF-8 reach Python as surrogate escapes (a command-line argument, a
    line read with errors="surrogateescape"); a JSON "\\ud800" is a lone surrogate."""
    tok = CharTokenizer.from_text("ok ")
    with pytest.raises(GlassformerError, match="is not valid UTF-8") as info:
        tok.encode(text)
    assert named in str(info.value)
