"""Tokenizers: text to token ids and back, saved as `tokenizer.json` with a "type" field."""

from glassformer.errors import GlassformerError
from glassformer.tokenizers.char import CharTokenizer, UnknownCharactersError, read_tokenizer_json

KINDS = {"char": CharTokenizer}

__all__ = ["CharTokenizer", "UnknownCharactersError", "load_tokenizer"]


def load_tokenizer(path):
    """The tokenizer saved at `path`, of whichever kind its "type" names."""
    kind = read_tokenizer_json(path)["type"]
    if kind not in KINDS:
        raise GlassformerError(
            f"tokenizer file {path} has unknown type {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind].load(path)
