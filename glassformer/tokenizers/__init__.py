"""Tokenizers: text to token ids and back, saved as `tokenizer.json` with a "type" field."""

from glassformer.errors import GlassformerError
from glassformer.tokenizers.bpe import HFTokenizer
from glassformer.tokenizers.char import CharTokenizer, UnknownCharactersError, read_tokenizer_json

KINDS = {"char": CharTokenizer, "hf": HFTokenizer}

__all__ = ["CharTokenizer", "HFTokenizer", "UnknownCharactersError", "build_tokenizer",
           "load_tokenizer"]


def build_tokenizer(kind: str, text: str, bpe_vocab_size: int):
    """A new tokenizer fitted to `text`: TrainConfig.tokenizer "char" (its characters) or "bpe"
    (byte-level BPE of at most `bpe_vocab_size` tokens)."""
    if kind == "bpe":
        return HFTokenizer.train_bpe(text, bpe_vocab_size)
    return CharTokenizer.from_text(text)


def load_tokenizer(path):
    """The tokenizer saved at `path`, of whichever kind its "type" names."""
    kind = read_tokenizer_json(path)["type"]
    if kind not in KINDS:
        raise GlassformerError(
            f"tokenizer file {path} has unknown type {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind].load(path)
