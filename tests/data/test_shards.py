"""Shards read as one sequence: the slices and the training batches of their concatenation."""

import numpy as np
import torch

from glassformer.data.lm import get_batch
from glassformer.data.shards import ShardedTokens


def shards(tmp_path, sizes, dtype=np.uint16):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 1000, n).astype(dtype) for n in sizes]
    paths = []
    for i, a in enumerate(arrays):
        paths.append(tmp_path / f"s{i}.bin")
        a.tofile(paths[-1])
    return ShardedTokens(paths, dtype), np.concatenate(arrays)


def test_slices_equal_those_of_the_concatenation(tmp_path):
    tokens, whole = shards(tmp_path, [7, 0, 1, 30, 5])  # an empty shard, a one-token shard
    assert len(tokens) == len(whole) == 43
    rng = np.random.default_rng(1)
    for _ in range(300):
        a, b = sorted(rng.integers(0, 44, 2))
        np.testing.assert_array_equal(tokens[a:b], whole[a:b])
    np.testing.assert_array_equal(tokens[:], whole)
    np.testing.assert_array_equal(tokens[40:100], whole[40:])


def test_batches_equal_those_drawn_from_the_concatenation(tmp_path):
    tokens, whole = shards(tmp_path, [50, 3, 80, 17])
    for seed in range(3):
        got = get_batch(tokens, 8, 16, torch.Generator().manual_seed(seed))
        expected = get_batch(whole, 8, 16, torch.Generator().manual_seed(seed))
        for g, e in zip(got, expected):
            assert torch.equal(g, e)
