"""BERT and BART through the Hugging Face directory format: save_pretrained -> transformers'
Auto classes load it with no missing or unexpected weights and the same outputs ->
glassformer.from_pretrained reads it back."""

import torch
from transformers import (AutoModelForMaskedLM, AutoModelForSeq2SeqLM, BertConfig,
                          BertForPreTraining)

import glassformer
from glassformer.config import ModelConfig
from glassformer.interop import bert
from glassformer.model import build


def lively(cfg):
    torch.manual_seed(0)
    model = build(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))  # biases and gains off 0 and 1
    return model


def loaded(auto, path):
    model, info = auto.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    return model.eval()


def test_bert_round_trip_through_transformers(tmp_path):
    cfg = ModelConfig(family="bert", vocab_size=40, block_size=24, n_layer=2, n_head=4, n_embd=32,
                      norm_placement="post", embed_norm=True, type_vocab_size=2, norm_eps=1e-12)
    ours = lively(cfg)
    glassformer.save_pretrained(ours, tmp_path / "bert")
    theirs = loaded(AutoModelForMaskedLM, tmp_path / "bert")
    ids = torch.randint(4, 40, (2, 9))
    with torch.no_grad():
        want = ours(ids)[0]
        torch.testing.assert_close(theirs(ids).logits, want, atol=1e-5, rtol=0)
        again, tokenizer = glassformer.from_pretrained(tmp_path / "bert")
        assert tokenizer is None
        torch.testing.assert_close(again(ids)[0], want, atol=0, rtol=0)


def test_bart_round_trip_through_transformers(tmp_path):
    cfg = ModelConfig(family="encdec", vocab_size=40, block_size=24, n_layer=2, n_head=4,
                      n_embd=32, norm_placement="post", embed_norm=True)
    ours = lively(cfg)
    glassformer.save_pretrained(ours, tmp_path / "bart")
    theirs = loaded(AutoModelForSeq2SeqLM, tmp_path / "bart")
    src, tgt = torch.randint(3, 40, (2, 7)), torch.randint(3, 40, (2, 5))
    with torch.no_grad():
        want = ours(src, tgt)[0]
        got = theirs(input_ids=src, decoder_input_ids=tgt).logits
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        again, _ = glassformer.from_pretrained(tmp_path / "bart")
        torch.testing.assert_close(again(src, tgt)[0], want, atol=0, rtol=0)


def test_pretraining_checkpoints_load_without_their_next_sentence_head():
    torch.manual_seed(1)
    hf = BertForPreTraining(BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=4, intermediate_size=64,
                                       max_position_embeddings=24)).eval()
    cfg, state = bert.from_hf(hf.config.to_dict(), hf.state_dict())
    model = build(cfg).eval()
    model.load_state_dict(state, strict=True)
    ids = torch.randint(4, 40, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[0], hf(ids).prediction_logits, atol=1e-5, rtol=0)
