"""Rotary position embeddings: scores depend only on distance, position 0 is the identity, the
rotate-half layout, and the same rotation as Hugging Face Llama's."""

import pytest
import torch

from glassformer.model.rope import Rotary, rotate_half

transformers = pytest.importorskip("transformers")
from transformers.models.llama.modeling_llama import (  # noqa: E402
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

C, H, D, WINDOW = 64, 4, 16, 64


def rotated(rotary, x, position: int):
    """x (1, 1, 1, D) rotated to `position`."""
    return rotary(x, x, torch.tensor([position]))[0]


def test_rope_scores_depend_only_on_distance():
    rotary = Rotary(16, 10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m, n):
        return (rotated(rotary, q, m) * rotated(rotary, k, n)).sum().item()

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-5)
    assert score(5, 2) == pytest.approx(score(3, 0), abs=1e-5)
    assert abs(score(5, 2) - score(5, 3)) > 1e-2  # and it does depend on the distance
    assert abs(score(5, 2) - (q * k).sum().item()) > 1e-2


def test_rope_position_zero_is_identity_and_norms_are_kept():
    rotary = Rotary(16, 10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 7, 16), torch.randn(2, 2, 7, 16)
    rq, rk = rotary(q, k, torch.zeros(7, dtype=torch.long))
    assert torch.equal(rq, q) and torch.equal(rk, k)
    rq, rk = rotary(q, k, torch.arange(7))
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))  # a rotation
    torch.testing.assert_close(rq[:, :, 0], q[:, :, 0])  # position 0 again
    assert (rq[:, :, 1:] - q[:, :, 1:]).abs().max() > 1e-2


def test_rotate_half_layout():
    x = torch.arange(8.0)
    assert rotate_half(x).tolist() == [-4.0, -5.0, -6.0, -7.0, 0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per-row"])


def test_rope_matches_hf(per_row):
    from transformers import LlamaConfig

    base = 500.0
    config = LlamaConfig(hidden_size=C, num_attention_heads=H, max_position_embeddings=WINDOW,
                         rope_parameters={"rope_type": "default", "rope_theta": base})
    hf_rotary = LlamaRotaryEmbedding(config)
    ours = Rotary(D, base)
    # The same expression as HF's, so the frequencies are equal to the last bit.
    torch.testing.assert_close(ours.inv_freq, hf_rotary.inv_freq, atol=0, rtol=0)
    torch.manual_seed(0)
    q, k = torch.randn(2, H, 9, D), torch.randn(2, 2, 9, D)
    if per_row:
        positions = torch.stack([torch.arange(9) + 40, torch.arange(9).flip(0)])  # (B, T)
        position_ids = positions
    else:
        positions = torch.arange(9) + 30  # (T,)
        position_ids = positions[None].expand(2, 9)
    cos, sin = hf_rotary(q, position_ids)  # (B, T, D) each
    expected_q, expected_k = apply_rotary_pos_emb(q, k, cos, sin)
    got_q, got_k = ours(q, k, positions)
    torch.testing.assert_close(got_q, expected_q, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_k, expected_k, atol=1e-6, rtol=0)
