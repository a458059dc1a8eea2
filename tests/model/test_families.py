"""BERT and the encoder-decoder: what the encoder sees, padding, cross-attention. Decoding them:
tests/generate/test_beam.py."""

import math

import pytest
import torch

from glassformer.model import BERT, GPT, EncoderDecoder
from tests.helpers import V, tiny_model


def test_build_picks_the_family_and_shares_one_token_matrix():
    assert type(tiny_model("gpt")) is GPT and type(tiny_model("bert")) is BERT
    model = tiny_model("encdec")
    assert type(model) is EncoderDecoder
    shared = model.encoder.embed.tokens.weight
    assert model.decoder.embed.tokens.weight is shared and model.head.weight is shared
    assert model.decoder.blocks[0].cross is not None and model.encoder.blocks[0].cross is None


@pytest.mark.parametrize("pooling", ["cls", "mean", "token"])
def test_encoder_position_sees_later_tokens(pooling):
    model = tiny_model("bert", n_classes=3, pooling=pooling)
    ids = torch.randint(4, V, (1, 10))
    later = ids.clone()
    later[0, 8] = (later[0, 8] + 1 - 4) % (V - 4) + 4  # change one token near the end
    with torch.no_grad():
        a, b = model.encode(ids), model.encode(later)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4  # position 0 depends on position 8: no causal mask
    assert model(ids)[0].shape == ((1, 10, 3) if pooling == "token" else (1, 3))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_encoder_ignores_padding(pooling):
    model = tiny_model("bert", n_classes=3, pooling=pooling)
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
    model = tiny_model("bert", n_classes=2, pooling="mean")
    x = torch.randn(1, 4, 32)
    valid = torch.tensor([[True, True, False, False]])
    want = model.classifier.out(torch.tanh(model.classifier.dense(x[:, :2].mean(1))))
    torch.testing.assert_close(model.classifier(x, valid), want)


def test_losses_at_init_are_near_uniform():
    bert, encdec = tiny_model("bert"), tiny_model("encdec")
    ids = torch.randint(4, V, (8, 12))
    targets = torch.where(torch.rand(8, 12) < 0.3, ids, -1)
    assert abs(bert(ids, targets)[1].item() - math.log(V)) < 0.3
    src, tgt, nxt = (torch.randint(3, V, (8, n)) for n in (9, 7, 7))
    assert abs(encdec(src, tgt, nxt)[1].item() - math.log(V)) < 0.3


def test_decoder_reads_the_source_and_not_its_padding():
    model = tiny_model("encdec")
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
    model = tiny_model("encdec")
    src, ids = torch.randint(3, V, (1, 8)), torch.randint(3, V, (1, 6))
    later = ids.clone()
    later[0, 5] = (later[0, 5] - 3 + 1) % (V - 3) + 3
    with torch.no_grad():
        a, b = model(src, ids)[0], model(src, later)[0]
    torch.testing.assert_close(a[0, :5], b[0, :5], rtol=0, atol=1e-6)
