"""Decoding an encoder-decoder: cached greedy decoding equals recomputing the prefix, beam search
of width 1 is greedy, wider beams find likelier outputs, a padded batch decodes as its sources
one at a time, and the search waits for the likeliest ending."""


import pytest
import torch

from glassformer.generate.beam import beam_search, greedy
from glassformer.tokenizers.special import BOS, EOS
from tests.helpers import V, tiny_model


@pytest.fixture
def seq2seq_model():
    """An untied encoder-decoder with large random weights: its greedy outputs depend on the
    source and end ([EOS]) at different lengths, as a trained model's do."""
    model = tiny_model("encdec", norm_placement="pre", tie_weights=False)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2)
    return model


def uncached_greedy(model, src, valid, max_len):
    """The reference: recompute the whole decoder over the prefix at every step."""
    memory = model.encode(src, valid)
    rows = []
    for b in range(src.size(0)):
        ids = [BOS]
        for _ in range(max_len):
            logits = model.decode(torch.tensor([ids]), memory[b:b + 1], valid[b:b + 1])
            ids.append(logits[0, -1].argmax().item())
            if ids[-1] == EOS:
                break
        rows.append(ids[1:-1] if ids[-1] == EOS else ids[1:])
    return rows


def test_cached_greedy_equals_recomputing_the_prefix(seq2seq_model):
    src = torch.randint(3, V, (4, 7))
    valid = torch.ones(4, 7, dtype=torch.bool)
    valid[2, 4:] = False
    with torch.no_grad():
        want = uncached_greedy(seq2seq_model, src, valid, 15)
    got = greedy(seq2seq_model, src, valid, 15)
    assert got == want
    assert len({len(r) for r in got}) > 1  # rows ended at different lengths


def test_beam_of_one_is_greedy(seq2seq_model):
    src = torch.randint(3, V, (5, 7))
    valid = torch.ones(5, 7, dtype=torch.bool)
    assert beam_search(seq2seq_model, src, valid, beam=1, max_len=15) == greedy(
        seq2seq_model, src, valid, 15)


def sequence_logprob(model, src, valid, ids):
    with torch.no_grad():
        x = torch.tensor([[BOS] + ids])
        y = torch.tensor([ids + [EOS]])
        logp = torch.log_softmax(model.decode(x, model.encode(src, valid), valid), -1)
    return logp[0].gather(-1, y[0][:, None]).sum().item()


def test_wider_beams_find_likelier_outputs(seq2seq_model):
    src = torch.randint(3, V, (6, 7))
    valid = torch.ones(6, 7, dtype=torch.bool)
    narrow = greedy(seq2seq_model, src, valid, 15)
    wide = beam_search(seq2seq_model, src, valid, beam=4, length_penalty=0.0, max_len=15)
    better = 0
    for b in range(6):
        g = sequence_logprob(seq2seq_model, src[b:b + 1], valid[b:b + 1], narrow[b])
        w = sequence_logprob(seq2seq_model, src[b:b + 1], valid[b:b + 1], wide[b])
        assert w >= g - 1e-5  # beam search never returns a less likely finished output
        better += w > g + 1e-5
    assert better >= 1  # and here it finds a likelier one at least once


def test_beam_search_of_a_padded_batch_equals_one_source_at_a_time(seq2seq_model):
    src = torch.randint(3, V, (3, 7))
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[1, 3:] = False
    batched = beam_search(seq2seq_model, src, valid, beam=3, max_len=15)
    alone = [beam_search(seq2seq_model, src[b:b + 1, :valid[b].sum()],
                         valid[b:b + 1, :valid[b].sum()], beam=3, max_len=15)[0] for b in range(3)]
    assert batched == alone


def test_beam_search_waits_for_the_likeliest_ending():
    """Short unlikely endings come first; the search must not stop on them. A decoder whose
    next-token probabilities depend only on the last token: the best target is a d e (0.51);
    b, c and an immediate [EOS] end sooner but are far less likely."""
    model = tiny_model("encdec")
    a, b, c, d, e = 3, 4, 5, 6, 7
    probs = torch.full((V, V), 1e-6)  # row: the last token; column: the next
    probs[BOS, [a, b, c, EOS]] = torch.tensor([0.6, 0.15, 0.15, 0.05])
    probs[a, [d, EOS]] = torch.tensor([0.95, 0.05])
    probs[b, [EOS, d]] = torch.tensor([0.5, 0.5])
    probs[c, [EOS, e]] = torch.tensor([0.5, 0.5])
    probs[d, [e, EOS]] = torch.tensor([0.95, 0.05])
    probs[e, EOS] = 0.95
    logits = probs.log()
    model.decode = lambda step, memory, src_valid, cache=None: logits[step[:, 0]][:, None, :]
    src, valid = torch.tensor([[a, b]]), torch.ones(1, 2, dtype=torch.bool)
    assert greedy(model, src, valid, 10) == [[a, d, e]]
    assert beam_search(model, src, valid, beam=3, max_len=10) == [[a, d, e]]
