"""The benchmarks' premise: glassformer and Hugging Face run the same model with the same
weights (bench/common.py), so their speeds compare like with like."""

import torch

from bench.common import SIZES, gpt2_config, ours_and_hf
from bench.time_to_loss import CLASSIC


def test_the_contenders_hold_the_same_weights():
    ours, hf = ours_and_hf(gpt2_config("small"))
    ids = torch.randint(65, (2, SIZES["small"]["block_size"]))
    with torch.no_grad():
        assert torch.allclose(ours(ids)[0], hf(input_ids=ids).logits, atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_the_classic_recipe_is_nanogpts_baby_gpt():
    m, t = CLASSIC.model, CLASSIC.train
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == (4, 4, 128, 64, 0.0)
    assert (t.batch_size, t.lr, t.warmup_steps, t.max_steps) == (12, 1e-3, 100, 2000)
    assert (t.beta1, t.beta2, t.weight_decay, t.grad_clip) == (0.9, 0.99, 0.1, 1.0)
