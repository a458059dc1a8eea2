"""Genre data: the table covers the corpus, whole works are held out, batches are balanced."""

import torch

from glassformer.data import genre
from glassformer.tokenizers import CharTokenizer, special


def fake_works():
    """Each work's text is its genre's letter repeated, so a label can be checked by eye."""
    return {name: g[0] * (300 + 7 * i) for i, (name, g) in enumerate(genre.WORKS.items())}


def test_table_has_42_works_and_every_genre_is_held_out_somewhere():
    assert len(genre.WORKS) == 42 and set(genre.WORKS.values()) == set(genre.GENRES)
    assert genre.HELD_OUT <= genre.WORKS.keys()
    assert {genre.WORKS[w] for w in genre.HELD_OUT} == set(genre.GENRES)


def test_batches_and_test_set_keep_labels_and_splits():
    works = fake_works()
    tok = CharTokenizer.from_text("".join(works.values()), special.ENCODER)
    data = genre.GenreData(works, tok, block_size=66)
    batch = data.batch(64, torch.Generator().manual_seed(0))
    ids, labels = batch["ids"], batch["targets"]
    assert ids.shape == (64, 66) and (ids[:, 0] == special.CLS).all() and (ids[:, -1] == special.SEP).all()
    for row, label in zip(ids, labels):  # every character of a passage is its genre's letter
        assert set(tok.decode(row[1:-1])) == {genre.GENRES[label][0]}
    assert len(set(labels.tolist())) == 4  # balanced: every genre in a batch of 64
    test_ids, test_labels = data.test_set()
    n_expected = sum(len(works[w]) // 64 for w in genre.HELD_OUT)  # non-overlapping passages
    assert test_ids.shape == (n_expected, 66) and len(test_labels) == n_expected
