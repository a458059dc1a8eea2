"""BERT import/export against Hugging Face `transformers` models built from small configs: each
head (BertModel's pooler or none, masked LM, classifier) comes in as itself and goes out as the
transformers class that holds it, with every weight in its place."""

import json

import pytest
import torch
from hf_pairs import randomize
from transformers import (BertConfig, BertForMaskedLM, BertForSequenceClassification,
                          BertModel)

import glassformer
from glassformer.errors import GlassformerError
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


@pytest.mark.parametrize("prefixed", [False, True])
def test_plain_encoder_keeps_its_pooler(batch, prefixed):
    """A BertModel (names as sentence-transformers saves them, or under "bert.") is a plain
    encoder: its hidden states come out of forward and encode, its pooler gives pooler_output."""
    ids, valid, types = batch
    hf = randomize(BertModel(BertConfig(**SMALL)), std=0.1, seed=1)
    state = {("bert." if prefixed else "") + k: v for k, v in hf.state_dict().items()}
    cfg, ours = bert.from_hf(hf.config.to_dict(), state)
    assert cfg.head == "pooler" and cfg.n_classes == 0
    model = BERT(cfg).eval()
    model.load_state_dict(ours, strict=True)
    assert model.mlm is None and model.classifier is None
    with torch.no_grad():
        want = hf(ids, attention_mask=valid.long(), token_type_ids=types)
        got = model.encode(ids, valid, types)
        out, loss = model(ids, key_valid=valid, token_types=types)
        pooled = model.pooler(got)  # (B, C)
    assert (got - want.last_hidden_state)[valid].abs().max() < 1e-5  # padding is nobody's output
    assert torch.equal(out, got) and loss is None
    assert (pooled - want.pooler_output).abs().max() < 1e-5
    with pytest.raises(GlassformerError, match="no head to train"):
        model(ids, targets=ids)


def test_encoder_without_pooler_has_no_head():
    hf = BertModel(BertConfig(**SMALL), add_pooling_layer=False)
    cfg, ours = bert.from_hf(hf.config.to_dict(), hf.state_dict())
    assert cfg.head == "none"
    model = BERT(cfg)
    model.load_state_dict(ours, strict=True)  # no weight left over, none invented
    assert model.pooler is None and model.mlm is None


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


def hf_pair(tmp_path, hf_model):
    """`hf_model` saved by transformers, read by glassformer.from_pretrained, written back by
    glassformer.save_pretrained, and loaded again by transformers' AutoModel class of the
    architecture written (whose loading info must be clean)."""
    import transformers

    hf_model.save_pretrained(tmp_path / "theirs")
    model, _ = glassformer.from_pretrained(tmp_path / "theirs")
    glassformer.save_pretrained(model, tmp_path / "ours")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    cls = getattr(transformers, written["architectures"][0])
    again, info = cls.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"] and not info["error_msgs"], info
    return model, written, again.eval()


@pytest.mark.parametrize("kind", [BertModel, BertForMaskedLM, BertForSequenceClassification])
def test_export_is_the_class_that_holds_the_head(tmp_path, batch, kind):
    ids, valid, types = batch
    hf = randomize(kind(BertConfig(**SMALL, num_labels=3)), std=0.1, seed=5)
    model, written, again = hf_pair(tmp_path, hf)
    assert written["architectures"] == [kind.__name__]
    with torch.no_grad():
        want = hf(ids, attention_mask=valid.long(), token_type_ids=types)
        got = again(ids, attention_mask=valid.long(), token_type_ids=types)
    if kind is BertModel:  # the pooler went out and back: the same pooler_output
        assert torch.equal(got.pooler_output, want.pooler_output)
        assert model.cfg.head == "pooler" and (tmp_path / "ours" / "modules.json").is_file()
    else:
        assert torch.equal(got.logits, want.logits)


def test_an_encoder_without_pooler_is_not_exported_with_an_invented_one(tmp_path):
    """transformers' BertModel always has a pooler: it would make up one for an encoder that
    has none, so export refuses and says so."""
    hf = BertModel(BertConfig(**SMALL), add_pooling_layer=False)
    hf.save_pretrained(tmp_path / "theirs")
    model, _ = glassformer.from_pretrained(tmp_path / "theirs")
    assert model.cfg.head == "none"
    with pytest.raises(GlassformerError, match="head='none' \\(it would load as 'pooler'\\)"):
        glassformer.save_pretrained(model, tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


def test_masked_lm_checkpoint_with_pooler_loads_as_masked_lm_does():
    """BertForPreTraining's checkpoints (bert-base-uncased) hold the MLM head, the pooler and the
    next-sentence head: they load as transformers' BertForMaskedLM, without the last two."""
    from transformers import BertForPreTraining

    hf = BertForPreTraining(BertConfig(**SMALL))
    cfg, ours = bert.from_hf(hf.config.to_dict(), hf.state_dict())
    assert cfg.head == "mlm"
    assert not any(k.startswith("pooler") for k in ours)


def test_sentence_transformers_pooling_is_read_and_written_back(tmp_path):
    hf = BertModel(BertConfig(**SMALL))
    hf.save_pretrained(tmp_path / "st")
    (tmp_path / "st" / "1_Pooling").mkdir()
    (tmp_path / "st" / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
         "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}))
    modules = [{"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
               for i, (path, kind) in enumerate([("", "Transformer"), ("1_Pooling", "Pooling"),
                                                 ("2_Normalize", "Normalize")])]
    (tmp_path / "st" / "modules.json").write_text(json.dumps(modules))
    model, _ = glassformer.from_pretrained(tmp_path / "st")
    assert (model.cfg.pooling, model.cfg.normalize_embeddings) == ("max", True)
    glassformer.save_pretrained(model, tmp_path / "out")
    assert glassformer.from_pretrained(tmp_path / "out")[0].cfg == model.cfg
    assert [m["type"].split(".")[-1] for m in json.loads(
        (tmp_path / "out" / "modules.json").read_text())] == ["Transformer", "Pooling", "Normalize"]

    modules[2]["type"] = "sentence_transformers.models.Dense"
    (tmp_path / "st" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(GlassformerError, match="Transformer -> Pooling -> Dense"):
        glassformer.from_pretrained(tmp_path / "st")
