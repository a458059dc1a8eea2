"""BERT import/export against Hugging Face `transformers` models built from small configs."""

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

from glassformer.interop import bert
from glassformer.interop.keymap import UnsupportedCheckpoint
from glassformer.model import BERT

SMALL = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=24, type_vocab_size=2)


def hf_config(**kw):
    return BertConfig(**SMALL | kw).to_dict()


def imported(hf_model):
    cfg, state = bert.from_hf(hf_model.config.to_dict(), hf_model.state_dict())
    model = BERT(cfg).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    return model, missing, unexpected


@pytest.fixture
def batch():
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (3, 11))
    valid = torch.ones(3, 11, dtype=torch.bool)
    valid[1, 7:] = False  # padded rows, the padding at the end as BERT's tokenizer puts it
    valid[2, 4:] = False
    types = torch.zeros(3, 11, dtype=torch.long)
    types[0, 5:] = 1
    return ids, valid, types


def test_encoder_equals_bert_model(batch):
    ids, valid, types = batch
    torch.manual_seed(1)
    hf = BertModel(BertConfig(**SMALL)).eval()
    model, missing, unexpected = imported(hf)
    assert not unexpected and all(k.startswith("mlm.") for k in missing)  # BertModel has no head
    with torch.no_grad():
        want = hf(ids, attention_mask=valid.long(), token_type_ids=types).last_hidden_state
        got = model.encode(ids, valid, types)
    assert (got - want)[valid].abs().max() < 1e-5  # padded positions are nobody's output


def test_masked_lm_logits_equal_and_export_round_trips(batch):
    ids, valid, types = batch
    torch.manual_seed(2)
    hf = BertForMaskedLM(BertConfig(**SMALL)).eval()
    model, missing, unexpected = imported(hf)
    assert not missing and not unexpected
    with torch.no_grad():
        want = hf(ids, attention_mask=valid.long(), token_type_ids=types).logits
        got, _ = model(ids, key_valid=valid, token_types=types)
    assert (got - want)[valid].abs().max() < 1e-5
    hf_cfg, state = bert.to_hf(model.cfg, model.state_dict())
    again = BertForMaskedLM(BertConfig(**hf_cfg)).eval()
    result = again.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and not result.missing_keys
    with torch.no_grad():
        assert torch.equal(again(ids, attention_mask=valid.long(), token_type_ids=types).logits,
                           want)


def test_sequence_classifier_equals_hf(batch):
    ids, valid, types = batch
    torch.manual_seed(3)
    hf = BertForSequenceClassification(BertConfig(**SMALL, num_labels=4)).eval()
    model, missing, unexpected = imported(hf)
    assert model.cfg.n_classes == 4 and not missing and not unexpected
    with torch.no_grad():
        want = hf(ids, attention_mask=valid.long(), token_type_ids=types).logits  # (B, 4)
        got, _ = model(ids, key_valid=valid, token_types=types)
    assert got.shape == (3, 4) and (got - want).abs().max() < 1e-5


def test_unsupported_settings_are_refused_by_name():
    with pytest.raises(UnsupportedCheckpoint, match="position_embedding_type='relative_key'"):
        bert.from_hf(hf_config(position_embedding_type="relative_key"), {})
    with pytest.raises(UnsupportedCheckpoint, match="hidden_act='silu'"):
        bert.from_hf(hf_config(hidden_act="silu"), {})


def test_unknown_weights_are_listed_not_dropped():
    torch.manual_seed(4)
    state = BertForMaskedLM(BertConfig(**SMALL)).state_dict()
    state["bert.encoder.layer.0.attention.self.distance_embedding.weight"] = torch.zeros(3, 32)
    with pytest.raises(UnsupportedCheckpoint, match="distance_embedding"):
        bert.from_hf(hf_config(), state)


def test_export_refuses_what_bert_cannot_hold():
    from glassformer.config import ModelConfig
    from glassformer.interop.hf import exported

    cfg = ModelConfig(family="bert", vocab_size=50, block_size=24, n_layer=1, n_head=4,
                      n_embd=32, norm="rmsnorm", activation="swiglu")
    with pytest.raises(UnsupportedCheckpoint, match="activation='swiglu'.*norm='rmsnorm'"):
        exported("bert", cfg, BERT(cfg).state_dict())
