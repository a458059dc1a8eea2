"""Sentence embeddings: a sentence-transformers directory's vectors, made by glassformer's
public path (from_pretrained, its tokenizer, embed), equal sentence-transformers' recipe on
transformers' outputs, for each pooling; a padded batch gives each text its own vector."""

import pytest
import torch

import glassformer
from glassformer.embed import cosine, embed
from glassformer.errors import GlassformerError
from glassformer.model import build
from glassformer.tokenizers import CharTokenizer
from tests.helpers import SONNET
from tests.interop.hf_pairs import sentence_bert_dir, sentence_reference

TEXTS = [line for line in SONNET.splitlines() if line] + [
    "Crème brûlée, naïve façade!", "154 sonnets, 1609", "a",
    "From fairest creatures we desire increase, that thereby beauty's rose might never die",
]


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("cls", False), ("max", True)])
def test_vectors_equal_sentence_transformers_recipe(tmp_path, pooling, normalize):
    hf = sentence_bert_dir(tmp_path, pooling, normalize)
    model, tokenizer = glassformer.from_pretrained(tmp_path)
    assert (model.cfg.pooling, model.cfg.normalize_embeddings) == (pooling, normalize)
    got = embed(model, tokenizer, TEXTS)  # (B, C)
    want = sentence_reference(hf, tmp_path, TEXTS, pooling, normalize)
    assert got.shape == (len(TEXTS), 32)
    assert (got - want).abs().max() < 1e-5
    alone = torch.cat([embed(model, tokenizer, [t]) for t in TEXTS])  # no padding at all
    assert (alone - got).abs().max() < 1e-5
    if normalize:
        assert torch.allclose(got.norm(dim=-1), torch.ones(len(TEXTS)))


def test_cosine_of_every_pair():
    v = torch.tensor([[3.0, 4.0], [4.0, 3.0], [-3.0, -4.0]])
    want = torch.tensor([[1.0, 24 / 25, -1.0], [24 / 25, 1.0, -24 / 25], [-1.0, -24 / 25, 1.0]])
    assert torch.allclose(cosine(v), want)


def test_what_cannot_be_embedded_is_refused(tmp_path):
    sentence_bert_dir(tmp_path)
    model, tokenizer = glassformer.from_pretrained(tmp_path)
    with pytest.raises(GlassformerError, match="more than the model's 96"):
        embed(model, tokenizer, ["word " * 120])
    with pytest.raises(GlassformerError, match="CharTokenizer cannot make an encoder's input"):
        embed(model, CharTokenizer.from_text("abc"), ["abc"])
    gpt = build(glassformer.config.ModelConfig(n_layer=1, n_head=2, n_embd=8, block_size=8))
    with pytest.raises(GlassformerError, match="embed needs a bert encoder"):
        embed(gpt, tokenizer, ["abc"])
