"""Logit filters on hand-computed examples: temperature (exactly logits / t, and finite at any
t), top-k, top-p, repetition penalty (against Hugging Face's rule), presence and frequency
penalties (OpenAI's rule), and the greedy / sampled pick."""

import math

import pytest
import torch

from glassformer.config import SampleConfig
from glassformer.generate import filters

INF = float("-inf")


def log_probs(*probs):
    """(1, V) logits whose softmax is `probs`."""
    return torch.tensor([[math.log(p) for p in probs]])


def kept(logits):
    """The ids a filter left finite, per row."""
    return [torch.isfinite(row).nonzero().flatten().tolist() for row in logits]


def hf_repetition_penalty(input_ids, scores, penalty):
    """Hugging Face's RepetitionPenaltyLogitsProcessor.__call__, transcribed."""
    score = torch.gather(scores, 1, input_ids)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return scores.scatter(1, input_ids, score)


def test_temperature_divides_logits():
    out = filters.temperature(torch.tensor([[1.0, -2.0, 4.0]]), 2.0)
    assert out.tolist() == [[0.5, -1.0, 2.0]]


@pytest.mark.parametrize("t", [0.8, 1.0, 1.3])
def test_temperature_is_bit_for_bit_the_plain_division_at_ordinary_values(t):
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(0)) * 8
    logits[0, :5] = INF  # filtered out before: stays -inf
    assert torch.equal(filters.temperature(logits, t), logits / t)


@pytest.mark.parametrize("t", [1e-45, 1e-40, 1e-30])  # 1e-45 and 1e-40: float32 subnormals
@pytest.mark.parametrize("scale", [1.0, 1e9])  # logits / 1e-30 leaves float32 past ~3e8
def test_a_tiny_temperature_gives_the_near_greedy_distribution(t, scale):
    logits = torch.tensor([[1.0, 3.0, 2.0, -5.0],
                           [3.0, 1.0, 3.0, 0.0],   # a tie for the top: shared
                           [INF, 1.0, 2.0, 0.5],   # an id filtered out before
                           [0.0, 0.0, 0.0, 0.0]]) * scale  # all equal: uniform
    scaled = filters.temperature(logits, t)
    assert not torch.isnan(scaled).any() and not torch.isposinf(scaled).any()
    probs = filters.distribution(logits, SampleConfig(temperature=t, top_k=3, top_p=0.9))
    third = torch.tensor(1 / 3).item()  # in float32
    assert probs.tolist() == [[0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0],
                              [third, third, third, 0.0]]  # top-k 3 keeps the lower ids
    assert filters.distribution(logits, SampleConfig(temperature=t)).tolist()[3] == [0.25] * 4
    ids = filters.next_token(logits[:1].repeat(20, 1), SampleConfig(temperature=t),
                             torch.Generator().manual_seed(0))
    assert ids.tolist() == [1] * 20


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        filters.temperature(torch.zeros(1, 3), 0.0)


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.5], [4.0, 0.0, -1.0, 5.0]])
    assert filters.top_k(logits, 2).tolist() == [[INF, 3.0, 2.0, INF], [4.0, INF, INF, 5.0]]
    assert filters.top_k(logits, 1).tolist() == [[INF, 3.0, INF, INF], [INF, INF, INF, 5.0]]


def test_top_k_at_or_above_vocab_keeps_all():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    assert torch.equal(filters.top_k(logits, 3), logits)
    assert torch.equal(filters.top_k(logits, 10), logits)


def test_top_k_breaks_ties_by_lower_id():
    logits = torch.tensor([[1.0, 2.0, 2.0, 2.0]])
    assert kept(filters.top_k(logits, 2)) == [[1, 2]]


@pytest.mark.parametrize("p, ids", [(0.8, [0, 1]), (0.81, [0, 1, 2]), (0.5, [0]), (0.3, [0]),
                                    (0.96, [0, 1, 2, 3]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, ids):
    logits = log_probs(0.5, 0.3, 0.15, 0.05)
    out = filters.top_p(logits, p)
    assert kept(out) == [ids]
    assert torch.equal(out[0, ids], logits[0, ids])  # survivors are untouched


def test_top_p_follows_ids_not_positions():
    logits = log_probs(0.05, 0.3, 0.15, 0.5)  # the same distribution, ids shuffled
    assert kept(filters.top_p(logits, 0.8)) == [[1, 3]]
    assert kept(filters.top_p(logits, 0.81)) == [[1, 2, 3]]


def test_top_p_always_keeps_the_top_token_and_breaks_ties_by_lower_id():
    assert kept(filters.top_p(log_probs(0.9, 0.1), 0.01)) == [[0]]
    assert kept(filters.top_p(log_probs(0.25, 0.25, 0.25, 0.25), 0.5)) == [[0, 1]]
    assert kept(filters.top_p(log_probs(0.2, 0.4, 0.4), 0.5)) == [[1, 2]]


def test_top_p_works_per_row():
    logits = torch.cat([log_probs(0.5, 0.3, 0.15, 0.05), log_probs(0.05, 0.9, 0.03, 0.02)])
    assert kept(filters.top_p(logits, 0.8)) == [[0, 1], [1]]


def test_repetition_penalty_hand_example():
    logits = torch.tensor([[2.0, -1.0, 3.0, -4.0, 0.5],
                           [2.0, -1.0, 3.0, -4.0, 0.5]])
    context = torch.tensor([[3, 0, 1, 0],   # id 3 is a pad here; 0 occurs twice
                            [2, 2, 3, 4]])
    valid = torch.tensor([[False, True, True, True],
                          [True, True, True, True]])
    before = logits.clone()
    out = filters.repetition_penalty(logits, context, 2.0, valid)
    assert out.tolist() == [[1.0, -2.0, 3.0, -4.0, 0.5],    # 2/2, -1*2; 3 (pad) and 4 unseen
                            [2.0, -1.0, 1.5, -8.0, 0.25]]  # 0, 1 unseen
    assert torch.equal(logits, before)  # the input is not modified


def test_repetition_penalty_one_is_identity():
    logits = torch.tensor([[2.0, -1.0, 3.0]])
    out = filters.repetition_penalty(logits, torch.tensor([[0, 1, 2]]), 1.0)
    assert torch.equal(out, logits)


@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.5])
def test_repetition_penalty_matches_hugging_face(penalty):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 11, generator=gen)
    input_ids = torch.randint(0, 11, (3, 9), generator=gen)  # with repeats
    out = filters.repetition_penalty(scores, input_ids, penalty)
    assert torch.equal(out, hf_repetition_penalty(input_ids, scores, penalty))


def test_presence_and_frequency_penalties_hand_example():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0],
                           [1.0, 2.0, 3.0, 4.0]])
    generated = torch.tensor([[1, 3, 1],    # id 1 twice, id 3 once
                              [2, 0, 2]])   # id 2 twice, id 0 once
    before = logits.clone()
    out = filters.presence_frequency_penalty(logits, generated, presence=0.5, frequency=0.25)
    assert out.tolist() == [[1.0, 2.0 - 0.5 - 0.5, 3.0, 4.0 - 0.25 - 0.5],
                            [1.0 - 0.25 - 0.5, 2.0, 3.0 - 0.5 - 0.5, 4.0]]
    assert torch.equal(logits, before)  # the input is not modified
    negative = filters.presence_frequency_penalty(logits, generated, presence=-1.0, frequency=0.0)
    assert negative.tolist() == [[1.0, 3.0, 3.0, 5.0], [2.0, 2.0, 4.0, 4.0]]  # once per id


def test_presence_and_frequency_penalties_off_or_nothing_generated_change_nothing():
    logits = torch.tensor([[1.0, -2.0, 3.0]])
    off = filters.presence_frequency_penalty(logits, torch.tensor([[0, 0, 2]]), 0.0, 0.0)
    assert off is logits
    none_yet = torch.zeros(1, 0, dtype=torch.long)  # (B, 0): the first step
    assert torch.equal(filters.presence_frequency_penalty(logits, none_yet, 2.0, 2.0), logits)


def test_next_token_greedy_is_argmax_first_on_ties():
    logits = torch.tensor([[0.1, 2.0, 2.0, -1.0], [3.0, 0.0, 1.0, 2.0]])
    ids = filters.next_token(logits, SampleConfig(temperature=0.0, top_k=1, top_p=0.1))
    assert ids.dtype == torch.int64
    assert ids.tolist() == [1, 0]


def test_next_token_top_k_one_always_picks_the_top():
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0]]).repeat(50, 1)
    ids = filters.next_token(logits, SampleConfig(temperature=1.5, top_k=1),
                             torch.Generator().manual_seed(0))
    assert ids.tolist() == [1] * 50


def test_next_token_samples_the_nucleus_in_proportion():
    logits = log_probs(0.5, 0.3, 0.15, 0.05).repeat(4000, 1)
    cfg = SampleConfig(temperature=1.0, top_p=0.8)
    ids = filters.next_token(logits, cfg, torch.Generator().manual_seed(0))
    counts = torch.bincount(ids, minlength=4).tolist()
    assert counts[2:] == [0, 0]  # outside the nucleus: never
    assert counts[0] / 4000 == pytest.approx(0.5 / 0.8, abs=0.03)  # renormalised 0.625


def test_next_token_same_seed_same_sample():
    logits = torch.randn(8, 20, generator=torch.Generator().manual_seed(1))
    cfg = SampleConfig(temperature=1.0)

    def draw(seed):
        return filters.next_token(logits, cfg, torch.Generator().manual_seed(seed)).tolist()

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_distribution_is_the_chain_temperature_then_top_k_then_top_p_by_hand():
    # probabilities 0.5, 0.2, 0.2, 0.1 at T=1; at T=0.5 they become p^2 / sum p^2
    logits = log_probs(0.5, 0.2, 0.2, 0.1)
    squared = torch.tensor([0.25, 0.04, 0.04, 0.01]) / 0.34
    cfg = SampleConfig(temperature=0.5, top_k=3, top_p=0.9)
    # top-k 3 drops id 3 (0.758, 0.121, 0.121 left); top-p 0.9: 0.758 + 0.121 < 0.9, so id 2 stays
    expected = torch.tensor([0.25, 0.04, 0.04, 0.0]) / 0.33
    assert torch.allclose(filters.distribution(logits, cfg)[0], expected, atol=1e-6)
    assert torch.allclose(filters.distribution(logits, SampleConfig(temperature=0.5))[0],
                          squared, atol=1e-6)


def test_distribution_at_temperature_0_is_all_on_the_first_top_token():
    probs = filters.distribution(torch.tensor([[1.0, 3.0, 3.0]]), SampleConfig(temperature=0.0))
    assert probs.tolist() == [[0.0, 1.0, 0.0]]
