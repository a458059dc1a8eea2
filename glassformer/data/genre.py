"""Genre classification data: passages of Shakespeare's works labelled comedy, tragedy, history
or poem, with whole works held out for testing (a passage of a held-out play never trains).
The same split as text<TAB>label files (`write_tsv`), for the `tsv` task and any tokenizer.

Genres follow the First Folio's catalogue (The Tempest and The Winter's Tale among the comedies,
Cymbeline and Troilus and Cressida among the tragedies); Pericles, not in the Folio, is listed
with the comedies, and the non-dramatic poems form the fourth class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from glassformer.atomic import write_text_atomic
from glassformer.data.mlm import wrap

GENRES = ["comedy", "tragedy", "history", "poem"]
WORKS = {  # file stem in the `shakespeare` package -> genre
    **dict.fromkeys([
        "alls_well_that_ends_well", "as_you_like_it", "comedy_of_errors", "loves_labours_lost",
        "measure_for_measure", "merchant_of_venice", "merry_wives_of_windsor",
        "midsummer_nights_dream", "much_ado_about_nothing", "pericles", "taming_of_the_shrew",
        "tempest", "twelfth_night", "two_gentlemen_of_verona", "winters_tale"], "comedy"),
    **dict.fromkeys([
        "antony_and_cleopatra", "coriolanus", "cymbeline", "hamlet", "julius_caesar", "lear",
        "macbeth", "othello", "romeo_and_juliet", "timon_of_athens", "tragedy_of_titus_andronicus",
        "troilus_and_cressida"], "tragedy"),
    **dict.fromkeys([
        "john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
        "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii"], "history"),
    **dict.fromkeys([
        "sonnets", "rape_of_lucrece", "lovers_complaint", "passionate_pilgrim",
        "phoenix_and_the_turtle"], "poem"),
}
HELD_OUT = {"as_you_like_it", "twelfth_night", "tempest", "hamlet", "othello", "henry_v",
            "richard_iii", "rape_of_lucrece"}  # the test split: about a sixth of each genre


class GenreData:
    """Encoded works, split by work. Training batches pick a genre uniformly, then a random
    passage of that genre (so no class dominates); the test split is every non-overlapping
    passage of the held-out works."""

    def __init__(self, works: dict[str, str], tokenizer, block_size: int):
        self.length = block_size - 2  # tokens per passage, inside [CLS] ... [SEP]
        self.ends = tokenizer.special("[CLS]"), tokenizer.special("[SEP]")  # their ids
        self.train = {g: [] for g in range(len(GENRES))}
        self.test = []  # (token array, genre) for each held-out work
        for name, genre in WORKS.items():
            ids = np.array(tokenizer.encode(works[name]), dtype=np.int64)
            label = GENRES.index(genre)
            (self.test.append((ids, label)) if name in HELD_OUT else self.train[label].append(ids))
        # passage starts per training work, by genre: a work is drawn in proportion to them
        self.starts = {g: torch.tensor([len(w) - self.length + 1 for w in works], dtype=torch.float)
                       for g, works in self.train.items()}

    def batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> dict:
        """Random training passages and their genres: BERT.forward's keyword arguments."""
        labels = torch.randint(len(GENRES), (batch_size,), generator=generator)  # (B,)
        rows = []
        for g in labels.tolist():
            works = self.train[g]
            w = works[torch.multinomial(self.starts[g], 1, generator=generator).item()]  # by length
            o = torch.randint(len(w) - self.length + 1, (1,), generator=generator).item()
            rows.append(torch.from_numpy(w[o:o + self.length]))
        return {"ids": wrap(torch.stack(rows), *self.ends).to(device), "targets": labels.to(device)}

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every non-overlapping passage of the held-out works: ids (N, T) and genres (N,)."""
        rows, labels = [], []
        for ids, label in self.test:
            for o in range(0, len(ids) - self.length + 1, self.length):
                rows.append(torch.from_numpy(ids[o:o + self.length]))
                labels.append(label)
        return wrap(torch.stack(rows), *self.ends), torch.tensor(labels)


def passages(text: str, words: int) -> list[str]:
    """The text's consecutive passages of `words` words, each on one line (its whitespace made
    single spaces); a shorter end is left out."""
    w = text.split()
    return [" ".join(w[i:i + words]) for i in range(0, len(w) - words + 1, words)]


def write_tsv(works: dict[str, str], out_dir, words: int = 40,
              per_work: int | None = None) -> dict[str, int]:
    """Write out_dir/train.tsv (passages of the training works) and out_dir/test.tsv (of the
    HELD_OUT works) as passage<TAB>genre lines of `words` words, at most `per_work` of each
    work, evenly spaced through it (None: all); return the lines written to each."""
    lines = {"train.tsv": [], "test.tsv": []}
    for name, genre in WORKS.items():
        cut = passages(works[name], words)
        if per_work is not None and len(cut) > per_work:
            cut = [cut[i * len(cut) // per_work] for i in range(per_work)]
        lines["test.tsv" if name in HELD_OUT else "train.tsv"] += [f"{p}\t{genre}" for p in cut]
    for file, rows in lines.items():
        write_text_atomic(Path(out_dir) / file, "".join(row + "\n" for row in rows))
    return {file: len(rows) for file, rows in lines.items()}
