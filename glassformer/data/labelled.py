"""Text classification data: a training file and a held-out file of text<TAB>label lines
(data/tsv.py), made into an encoder's input.

Labels are any strings, numbered in sorted order (the run keeps their names as
ModelConfig.labels). A text becomes [CLS] text [SEP] in the run's tokenizer (as BERT's
tokenizer makes model input), its text cut to block_size - 2 tokens; a batch is padded at the
end to its longest row, with the validity mask (key_valid, B x T) that attention and pooling
read.
"""

from __future__ import annotations

import torch

from glassformer.data.seq2seq import pad
from glassformer.data.tsv import read_tsv
from glassformer.errors import GlassformerError


def read_examples(path) -> list[tuple[int, str, str]]:
    """(line number, text, label) of each line of a UTF-8 TSV file."""
    return read_tsv(path, ("text", "label"), "labelled")


def label_names(examples: list[tuple[int, str, str]], path) -> tuple[str, ...]:
    """The labels of `examples` (read from `path`), sorted: the classifier's outputs, in order."""
    names = tuple(sorted({label for _, _, label in examples}))
    if len(names) < 2:
        raise GlassformerError(f"{path} has one label ({names[0]!r}); a classifier needs at "
                               "least two")
    return names


def encode(tokenizer, text: str, block_size: int) -> list[int]:
    """[CLS] text [SEP] as ids, the text cut to block_size - 2 tokens."""
    return ([tokenizer.special("[CLS]")] + tokenizer.encode(text)[:block_size - 2]
            + [tokenizer.special("[SEP]")])


def model_input(rows: list[list[int]], pad_id: int, device="cpu") -> dict:
    """Rows of ids -> {"ids": (B, T) padded with pad_id, "key_valid": (B, T) True at real
    tokens}, T the longest row."""
    ids = pad(rows, pad_id)  # (B, T)
    lengths = torch.tensor([len(r) for r in rows])  # (B,)
    valid = torch.arange(ids.size(1))[None, :] < lengths[:, None]  # (B, T)
    return {"ids": ids.to(device), "key_valid": valid.to(device)}


class LabelledData:
    """The examples of `train_path` and `val_path`, encoded: training batches are random
    examples; the held-out set is every line of val_path, in order."""

    def __init__(self, train_path, val_path, tokenizer, block_size: int):
        train, val = read_examples(train_path), read_examples(val_path)
        self.labels = label_names(train, train_path)
        index = {name: i for i, name in enumerate(self.labels)}
        for number, _, label in val:
            if label not in index:
                raise GlassformerError(
                    f"{val_path}:{number}: label {label!r} never occurs in "
                    f"{train_path}, so the classifier cannot answer it; its labels are "
                    f"{', '.join(self.labels)}. Add examples of it to the training file or "
                    "drop it from the held-out one")
        self.pad_id = tokenizer.special("[PAD]")
        self.train = [encode(tokenizer, text, block_size) for _, text, _ in train]
        self.train_labels = torch.tensor([index[label] for _, _, label in train])  # (N,)
        self.val = [encode(tokenizer, text, block_size) for _, text, _ in val]
        self.val_labels = torch.tensor([index[label] for _, _, label in val])  # (M,)

    def batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> dict:
        """Random training examples: BERT.forward's keyword arguments."""
        rows = torch.randint(len(self.train), (batch_size,), generator=generator)  # (B,)
        return model_input([self.train[i] for i in rows], self.pad_id, device) | {
            "targets": self.train_labels[rows].to(device)}

    def val_batches(self, batch_size: int, device="cpu") -> list[dict]:
        """Every held-out example, in batches of batch_size."""
        return [model_input(self.val[i:i + batch_size], self.pad_id, device) | {
                    "targets": self.val_labels[i:i + batch_size].to(device)}
                for i in range(0, len(self.val), batch_size)]
