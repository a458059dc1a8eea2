"""BERT and the encoder-decoder: what the encoder sees, padding, cross-attention, decoding."""

import math

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.tokenizers.special import BOS, EOS
from glassformer.generate.beam import beam_search, greedy
from glassformer.model import BERT, GPT, EncoderDecoder, build

V = 24


def make(family, **fields):
    torch.manual_seed(0)
    cfg = ModelConfig(family=family, vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32,
                      **fields)
    return build(cfg).eval()


def test_build_picks_the_family_and_shares_one_token_matrix():
    assert type(make("gpt")) is GPT and type(make("bert")) is BERT
    model = make("encdec")
    assert type(model) is EncoderDecoder
    shared = model.encoder.embed.tokens.weight
    assert model.decoder.embed.tokens.weight is shared and model.head.weight is shared
    assert model.decoder.blocks[0].cross is not None and model.encoder.blocks[0].cross is None


@pytest.mark.parametrize("pooling", ["cls", "mean", "token"])
def test_encoder_position_sees_later_tokens(pooling):
    model = make("bert", n_classes=3, pooling=pooling)
    ids = torch.randint(4, V, (1, 10))
    later = ids.clone()
    later[0, 8] = (later[0, 8] + 1 - 4) % (V - 4) + 4  # change one token near the end
    with torch.no_grad():
        a, b = model.encode(ids), model.encode(later)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4  # position 0 depends on position 8: no causal mask
    assert model(ids)[0].shape == ((1, 10, 3) if pooling == "token" else (1, 3))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_encoder_ignores_padding(pooling):
    model = make("bert", n_classes=3, pooling=pooling)
    ids = torch.randint(4, V, (2, 10))
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 6:] = False
    other = ids.clone()
    other[1, 6:] = torch.randint(0, V, (4,))  # different tokens in the padding
    with torch.no_grad():
        h1, h2 = model.encode(ids, valid), model.encode(other, valid)
        logits1, logits2 = model(ids, key_valid=valid)[0], model(other, key_valid=valid)[0]
    torch.testing.assert_close(h1[valid], h2[valid], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits1, logits2, rtol=0, atol=1e-6)
    short = model(ids[1:, :6])[0]  # the same sequence without padding at all
    torch.testing.assert_close(logits1[1:], short, rtol=0, atol=1e-5)


def test_mean_pooling_averages_only_real_tokens():
    model = make("bert", n_classes=2, pooling="mean")
    x = torch.randn(1, 4, 32)
    valid = torch.tensor([[True, True, False, False]])
    want = model.classifier.out(torch.tanh(model.classifier.dense(x[:, :2].mean(1))))
    torch.testing.assert_close(model.classifier(x, valid), want)


def test_losses_at_init_are_near_uniform():
    bert, encdec = make("bert"), make("encdec")
    ids = torch.randint(4, V, (8, 12))
    targets = torch.where(torch.rand(8, 12) < 0.3, ids, -1)
    assert abs(bert(ids, targets)[1].item() - math.log(V)) < 0.3
    src, tgt, nxt = (torch.randint(3, V, (8, n)) for n in (9, 7, 7))
    assert abs(encdec(src, tgt, nxt)[1].item() - math.log(V)) < 0.3


def test_decoder_reads_the_source_and_not_its_padding():
    model = make("encdec")
    src, ids = torch.randint(3, V, (2, 8)), torch.randint(3, V, (2, 5))
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[1, 5:] = False
    changed = src.clone()
    changed[0, 2] = (changed[0, 2] - 3 + 1) % (V - 3) + 3
    changed[1, 6] = (changed[1, 6] - 3 + 1) % (V - 3) + 3  # inside row 1's padding
    with torch.no_grad():
        a = model(src, ids, src_valid=valid)[0]
        b = model(changed, ids, src_valid=valid)[0]
    assert (a[0] - b[0]).abs().max() > 1e-4  # a different source, a different output
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-6)  # padding changes nothing


def test_decoder_is_causal():
    model = make("encdec")
    src, ids = torch.randint(3, V, (1, 8)), torch.randint(3, V, (1, 6))
    later = ids.clone()
    later[0, 5] = (later[0, 5] - 3 + 1) % (V - 3) + 3
    with torch.no_grad():
        a, b = model(src, ids)[0], model(src, later)[0]
    torch.testing.assert_close(a[0, :5], b[0, :5], rtol=0, atol=1e-6)


@pytest.fixture
def seq2seq_model():
    """An untied encoder-decoder with large random weights: its greedy outputs depend on the
    source and end ([EOS]) at different lengths, as a trained model's do."""
    model = make("encdec", norm_placement="pre", tie_weights=False)
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
    model = make("encdec")
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
