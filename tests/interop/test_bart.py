"""The encoder-decoder against Hugging Face BART built from a small config, weights copied."""

import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, BartModel

from glassformer.interop import bart
from glassformer.interop.keymap import UnsupportedCheckpoint
from glassformer.model import EncoderDecoder

SMALL = dict(vocab_size=40, d_model=32, encoder_layers=2, decoder_layers=2,
             encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
             decoder_ffn_dim=64, max_position_embeddings=24)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    src, tgt = torch.randint(3, 40, (3, 9)), torch.randint(3, 40, (3, 7))
    src_valid = torch.ones(3, 9, dtype=torch.bool)
    src_valid[1, 5:] = False
    tgt_valid = torch.ones(3, 7, dtype=torch.bool)
    tgt_valid[2, 4:] = False
    return src, src_valid, tgt, tgt_valid


def imported(hf):
    cfg, state = bart.from_hf(hf.config.to_dict(), hf.state_dict())
    model = EncoderDecoder(cfg).eval()
    model.load_state_dict(state, strict=True)
    return model


def test_equals_bart_model(batch):
    src, src_valid, tgt, tgt_valid = batch
    torch.manual_seed(1)
    hf = BartModel(BartConfig(**SMALL)).eval()
    model = imported(hf)
    with torch.no_grad():
        out = hf(input_ids=src, attention_mask=src_valid.long(), decoder_input_ids=tgt,
                 decoder_attention_mask=tgt_valid.long())
        memory = model.encode(src, src_valid)
        hidden = model.decoder(tgt, key_valid=tgt_valid, memory=memory, memory_valid=src_valid)
    assert (memory - out.encoder_last_hidden_state)[src_valid].abs().max() < 1e-5
    assert (hidden - out.last_hidden_state)[tgt_valid].abs().max() < 1e-5


def test_logits_equal_and_export_loads_cleanly(batch):
    src, src_valid, tgt, tgt_valid = batch
    torch.manual_seed(2)
    hf = BartForConditionalGeneration(BartConfig(**SMALL)).eval()
    model = imported(hf)
    with torch.no_grad():
        want = hf(input_ids=src, attention_mask=src_valid.long(), decoder_input_ids=tgt,
                  decoder_attention_mask=tgt_valid.long()).logits
        got, _ = model(src, tgt, src_valid=src_valid, key_valid=tgt_valid)
    assert (got - want)[tgt_valid].abs().max() < 1e-5
    hf_cfg, state = bart.to_hf(model.cfg, model.state_dict())
    again = BartForConditionalGeneration(BartConfig(**hf_cfg)).eval()
    result = again.load_state_dict(state, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        back = again(input_ids=src, attention_mask=src_valid.long(), decoder_input_ids=tgt,
                     decoder_attention_mask=tgt_valid.long()).logits
    assert (back - want)[tgt_valid].abs().max() < 1e-6


def test_unsupported_settings_are_refused_by_name():
    with pytest.raises(UnsupportedCheckpoint, match="scale_embedding=True"):
        bart.from_hf(BartConfig(**SMALL, scale_embedding=True).to_dict(), {})
    with pytest.raises(UnsupportedCheckpoint, match="decoder_layers=3"):
        bart.from_hf(BartConfig(**SMALL | {"decoder_layers": 3}).to_dict(), {})
    torch.manual_seed(3)
    hf = BartForConditionalGeneration(BartConfig(**SMALL))
    hf.final_logits_bias.fill_(0.5)
    with pytest.raises(UnsupportedCheckpoint, match="final_logits_bias"):
        bart.from_hf(hf.config.to_dict(), hf.state_dict())


def test_export_refuses_what_bart_cannot_hold():
    from glassformer.config import ModelConfig
    from glassformer.interop.hf import exported

    cfg = ModelConfig(family="encdec", vocab_size=40, block_size=24, n_layer=1, n_head=4,
                      n_embd=32, position="rope", norm_placement="pre")
    with pytest.raises(UnsupportedCheckpoint, match="position='rope'.*norm_placement='pre'"):
        exported("bart", cfg, EncoderDecoder(cfg).state_dict())
