"""Tokenizers of the Hugging Face `tokenizers` library: byte-level BPE trained here, and any
existing `tokenizer.json` (GPT-2's byte-level BPE, BERT's WordPiece) loaded from a checkpoint.

Byte-level BPE (GPT-2's scheme): text is cut into words by GPT-2's regex, each word's UTF-8
bytes start as 256 one-byte tokens, and training adds the most frequent adjacent pair as a new
token until the vocabulary is full. Every byte has a token, so any text encodes and decodes back
exactly; a prefix of the ids may end inside a character (its decode then ends in U+FFFD).

A checkpoint's file may also set padding and truncation (all-MiniLM-L6-v2's pads every text to
128 ids and cuts it there); loading switches both off, as `transformers` does unless a call
asks for them: `encode_batch` pads a batch itself, to its longest text, with a validity mask.

Saved in our run directories as {"type": "hf", "tokenizer": <the library's tokenizer.json>};
`hf_json()` is the plain Hugging Face file that goes into a Hugging Face checkpoint directory.
"""

from __future__ import annotations

import json
import re

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from glassformer.atomic import write_text_atomic
from glassformer.errors import GlassformerError
from glassformer.tokenizers.char import read_tokenizer_json
from glassformer.tokenizers.utf8 import check_utf8

CHUNK = 1 << 16  # characters per piece when a long text is encoded in parallel
LINE_START = re.compile(r"\n(?=\S)")  # a cut here never splits a byte-level pre-token
PAD_TOKENS = ("[PAD]", "<pad>", "<|padding|>")  # a padding token's usual names


class HFTokenizer:
    """A `tokenizers.Tokenizer` behind glassformer's tokenizer interface. `encode(text)` encodes
    corpus text as it is; `encode(text, add_special_tokens=True)` makes model input as the
    original does (BERT's [CLS] text [SEP], by the file's post-processor)."""

    def __init__(self, tokenizer: Tokenizer, chat: dict | None = None):
        """`chat`: a checkpoint's chat template and the names of its special tokens
        ({"chat_template", "bos_token", "eos_token", "pad_token", "unk_token"}), kept with
        the tokenizer for rendering conversations (tokenizers/chat_template.py); {} for none."""
        self.chat = chat or {}
        padding = tokenizer.padding
        names = ((self.chat["pad_token"],) if self.chat.get("pad_token") else ()) + PAD_TOKENS
        self.pad_id = padding["pad_id"] if padding else next(
            (i for i in map(tokenizer.token_to_id, names) if i is not None), 0)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.splits_at_lines = _splits_at_lines(json.loads(tokenizer.to_str()))

    @classmethod
    def train_bpe(cls, text: str, vocab_size: int) -> HFTokenizer:
        """A byte-level BPE with at most `vocab_size` tokens (256 bytes, then merges), trained
        on `text` with the library's parallel trainer."""
        if vocab_size < 256:
            raise GlassformerError(f"a byte-level BPE needs vocab_size >= 256 (one token per "
                                   f"byte), got {vocab_size}")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(_pieces(text), trainer)
        return cls(tokenizer)

    @classmethod
    def from_chars(cls, tokens: list[str]) -> HFTokenizer:
        """The Hugging Face form of a character tokenizer with vocabulary `tokens` (id ->
        token; specials first): the same ids for every text. Each character is a pre-token of
        its own, looked up in a WordLevel vocabulary, and decoding joins the tokens as they are;
        a special's name ("[MASK]") is an entry that no text reaches one character at a time."""
        tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)},
                                               unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def __repr__(self) -> str:
        """HFTokenizer(BPE, vocab_size=4096): the kind of model inside (BPE, WordPiece,
        WordLevel, ...) and the vocabulary size, with a chat template when there is one."""
        kind = type(self.tokenizer.model).__name__
        chat = ", chat template" if self.chat.get("chat_template") else ""
        return f"HFTokenizer({kind}, vocab_size={self.vocab_size}{chat})"

    def special(self, name: str) -> int:
        """The id of token `name` (e.g. BERT's "[MASK]", GPT-2's "<|endoftext|>")."""
        i = self.tokenizer.token_to_id(name)
        if i is None:
            raise GlassformerError(f"this tokenizer has no {name} token")
        return i

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """The ids of `text`; with add_special_tokens, wrapped in the special tokens the file's
        post-processor adds (transformers' default for model input). A long text under a
        byte-level pre-tokenizer is cut at line starts and encoded in parallel: the same ids,
        about 3x sooner on the complete works."""
        check_utf8(text)  # the library would fail on it with a TypeError
        if self.splits_at_lines and len(text) > CHUNK and not add_special_tokens:
            return [i for e in self.tokenizer.encode_batch(_pieces(text), add_special_tokens=False)
                    for i in e.ids]
        try:
            return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        except Exception as err:  # a vocabulary without [UNK] meets a character it lacks
            raise GlassformerError(f"this tokenizer cannot encode the text ({err})") from None

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """The ids of `text` (nothing added) and each one's (start, end) span of characters in
        it, as `transformers` finds a chat's assistant tokens."""
        check_utf8(text)
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return encoding.ids, encoding.offsets

    def encode_texts(self, texts: list[str]) -> list[list[int]]:
        """encode(text) of each text (corpus text, nothing added), the batch encoded in
        parallel by the library."""
        for text in texts:
            check_utf8(text)
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode_batch(self, texts: list[str], add_special_tokens: bool = True):
        """Model input for several texts: ids (B, T) int64, padded at the end with pad_id to
        the longest, and valid (B, T) bool, True at real tokens (a model's key_valid)."""
        import torch  # only here: the tokenizers load without it

        for text in texts:
            check_utf8(text)
        rows = [e.ids for e in self.tokenizer.encode_batch(texts,
                                                           add_special_tokens=add_special_tokens)]
        T = max(map(len, rows), default=0)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)  # (B, T)
        valid = torch.zeros(len(rows), T, dtype=torch.bool)  # (B, T)
        for b, row in enumerate(rows):
            ids[b, :len(row)] = torch.tensor(row, dtype=torch.long)
            valid[b, :len(row)] = True
        return ids, valid

    def decode(self, ids) -> str:
        """The text of `ids`: a list of ints or a 1-D tensor or array."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise GlassformerError(
                f"token id {bad[0]} is outside the vocabulary 0..{self.vocab_size - 1}")
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def hf_json(self) -> str:
        """The Hugging Face `tokenizer.json` (what `tokenizers` and `transformers` read)."""
        return self.tokenizer.to_str()

    def to_json(self) -> str:
        """The contents of our tokenizer.json: {"type": "hf", "tokenizer": {...}}, and
        "chat": {...} when there is a chat template."""
        data = {"type": "hf", "tokenizer": json.loads(self.hf_json())}
        if self.chat:
            data["chat"] = self.chat
        return json.dumps(data, ensure_ascii=False)

    def save(self, path) -> None:
        write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path) -> HFTokenizer:
        """Our "hf" tokenizer.json, or a plain Hugging Face one."""
        data = read_tokenizer_json(path)
        if data["type"] != "hf":
            raise GlassformerError(f"{path} holds a {data['type']!r} tokenizer, not an hf one")
        try:
            return cls(Tokenizer.from_str(json.dumps(data.get("tokenizer"))), data.get("chat"))
        except Exception as err:  # the library reports every problem as a plain Exception
            raise GlassformerError(f"{path} is not a tokenizer.json the Hugging Face tokenizers "
                                   f"library can read ({err})") from None


def _pieces(text: str) -> list[str]:
    """`text` cut into pieces of about CHUNK characters, each cut just after a newline that a
    non-space follows. GPT-2's regex keeps whitespace runs apart from the word after them, so
    no byte-level pre-token spans such a cut."""
    pieces, start = [], 0
    while start < len(text):
        cut = LINE_START.search(text, start + CHUNK)
        end = cut.end() if cut else len(text)
        pieces.append(text[start:end])
        start = end
    return pieces


def _splits_at_lines(data: dict) -> bool:
    """Whether encoding `_pieces(text)` one by one gives the ids of the whole text: true for
    a byte-level pre-tokenizer with GPT-2's regex, no prefix space and no normalizer."""
    pre = data.get("pre_tokenizer") or {}
    return (data.get("normalizer") is None and pre.get("type") == "ByteLevel"
            and pre.get("use_regex", True) and not pre.get("add_prefix_space", False))
