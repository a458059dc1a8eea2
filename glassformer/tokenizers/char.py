"""Character-level tokenizer: one id per distinct character of the training text."""

from __future__ import annotations

import json
from pathlib import Path

from glassformer.atomic import write_text_atomic
from glassformer.errors import GlassformerError
from glassformer.tokenizers.utf8 import check_utf8

SHOWN = 20  # unknown characters listed in an error message


class UnknownCharactersError(GlassformerError):
    """The text holds characters that were not in the tokenizer's training text."""

    def __init__(self, unknown: list[str], vocab_size: int):
        self.unknown = unknown
        shown = ", ".join(map(repr, unknown[:SHOWN]))
        more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        super().__init__(
            f"the text has {len(unknown)} unknown character(s): {shown}{more}; the tokenizer only "
            f"knows the {vocab_size} characters of its training text; remove them or retrain on "
            "text that has them")


class CharTokenizer:
    """Maps each character to its position in a sorted vocabulary. Special tokens such as
    [PAD] or [MASK], if any, come first (ids 0 .. k-1); text never encodes to them."""

    def __init__(self, chars: list[str], specials: list[str] = ()):
        if (not isinstance(chars, list) or len(set(chars)) != len(chars)
                or not all(isinstance(c, str) and len(c) == 1 for c in chars)):
            raise GlassformerError("a char tokenizer needs a list of distinct single characters")
        if not all(isinstance(s, str) and len(s) > 1 for s in specials):
            raise GlassformerError("special tokens are names longer than one character, "
                                   "such as '[PAD]'")
        self.chars, self.specials = chars, list(specials)
        self.tokens = self.specials + chars  # id -> token
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_text(cls, text: str, specials: list[str] = ()) -> CharTokenizer:
        """A tokenizer whose vocabulary is the sorted set of characters in `text`."""
        return cls(sorted(set(text)), specials)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        """CharTokenizer(vocab_size=68, chars='\\n !&...', specials=[...]): the characters, the
        first 40 of them in id order."""
        shown = "".join(self.chars[:40]) + ("..." if len(self.chars) > 40 else "")
        specials = f", specials={self.specials}" if self.specials else ""
        return f"CharTokenizer(vocab_size={self.vocab_size}, chars={shown!r}{specials})"

    def special(self, name: str) -> int:
        """The id of special token `name` (e.g. "[MASK]")."""
        if name not in self.specials:
            raise GlassformerError(f"this tokenizer has no {name} token (it has: "
                                   f"{', '.join(self.specials) or 'none'}); was the run trained "
                                   "for another task?")
        return self.ids[name]

    def encode(self, text: str) -> list[int]:
        """One id per character; UnknownCharactersError if any is not in the vocabulary."""
        check_utf8(text)
        try:
            return [self.ids[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - set(self.chars))
            raise UnknownCharactersError(unknown, len(self.chars)) from None

    def decode(self, ids) -> str:
        """The text of `ids` (a list of ints, or a 1-D tensor or array); specials by name."""
        out = []
        for i in map(int, ids):
            if not 0 <= i < self.vocab_size:
                raise GlassformerError(
                    f"token id {i} is outside the vocabulary 0..{self.vocab_size - 1}")
            out.append(self.tokens[i])
        return "".join(out)

    def to_json(self) -> str:
        """The contents of tokenizer.json: {"type": "char", "chars": [...], "specials": [...]}."""
        data = {"type": "char", "chars": self.chars} | (
            {"specials": self.specials} if self.specials else {})
        return json.dumps(data, ensure_ascii=False)

    def save(self, path) -> None:
        write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path) -> CharTokenizer:
        data = read_tokenizer_json(path)
        if data["type"] != "char":
            raise GlassformerError(f"{path} holds a {data['type']!r} tokenizer, not a char one")
        return cls(data.get("chars"), data.get("specials", []))


def read_tokenizer_json(path) -> dict:
    """The JSON object in a tokenizer file; its "type" names the tokenizer kind. A plain Hugging
    Face tokenizer.json (no "type", a "model") comes back as {"type": "hf", "tokenizer": ...}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GlassformerError(f"tokenizer file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        message = f"cannot read tokenizer file {path} ({err}); save it again"
        raise GlassformerError(message) from None
    if isinstance(data, dict) and "type" not in data and isinstance(data.get("model"), dict):
        data = {"type": "hf", "tokenizer": data}
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise GlassformerError(f'tokenizer file {path} is not a JSON object with a "type"')
    return data
