"""BERT's masking: 15% of real tokens chosen, of those 80% [MASK], 10% random, 10% kept."""

import numpy as np
import torch

from glassformer.data import mlm
from glassformer.tokenizers import special


def test_masking_statistics_over_a_large_sample():
    g = torch.Generator().manual_seed(0)
    V = 60
    ids = mlm.wrap(torch.randint(len(special.ENCODER), V, (400, 254), generator=g))  # (B, 256)
    inputs, targets = mlm.mask_tokens(ids, V, g)
    chosen = targets != -1
    real = ids >= len(special.ENCODER)
    assert not chosen[~real].any()  # [CLS] and [SEP] are never chosen
    assert torch.equal(targets[chosen], ids[chosen])  # targets are the original ids
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    n = chosen.sum().item()
    assert abs(n / real.sum().item() - 0.15) < 0.005  # ~101,600 real tokens
    masked = (inputs[chosen] == special.MASK).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    randomised = 1 - masked - kept
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1 - 1 / (V - 4) * 0.1) < 0.01
    assert abs(randomised - 0.1) < 0.01
    assert (inputs[chosen] >= len(special.ENCODER)).logical_or(inputs[chosen] == special.MASK).all()


def test_mlm_batch_wraps_passages_of_the_text():
    tokens = np.arange(4, 104, dtype=np.uint16)  # ids 4..103 in order
    batch = mlm.mlm_batch(tokens, 3, 12, 104, torch.Generator().manual_seed(1))
    ids, targets = batch["ids"], batch["targets"]
    assert ids.shape == targets.shape == (3, 12)
    assert (ids[:, 0] == special.CLS).all() and (ids[:, -1] == special.SEP).all()
    original = torch.where(targets != -1, targets, ids)[:, 1:-1]
    diffs = original[:, 1:] - original[:, :-1]
    unchanged = (targets[:, 1:-1] == -1)[:, 1:] & (targets[:, 1:-1] == -1)[:, :-1]
    assert (diffs[unchanged] == 1).all()  # contiguous runs of the text
