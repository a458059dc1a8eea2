"""Export cannot lie: every ModelConfig field, every value, every Hugging Face family.

For each export family, a model it holds is changed in one field at a time, to each value that
field can take. Either export refuses and names that field, or `transformers` loads the export
with every weight in place and computes the same outputs as ours. A field added to ModelConfig
fails `test_every_field_is_walked` until it gets values here; a word added to a Literal is walked
at once.
"""

import dataclasses
import json
import typing

import pytest
import torch
import transformers

import glassformer
from glassformer.config import ModelConfig
from glassformer.errors import GlassformerError
from glassformer.interop.hf import EXPORTS
from glassformer.model import build

V = 40
SMALL = dict(vocab_size=V, block_size=24, n_layer=2, n_head=4, n_embd=32)
BASES = {  # a model each family holds
    "gpt2": ModelConfig(**SMALL, activation="gelu_tanh"),
    "llama": ModelConfig(**SMALL, position="rope", norm="rmsnorm", activation="swiglu",
                         bias=False, tie_weights=False),
    "bert": ModelConfig(**SMALL, family="bert", norm_placement="post", embed_norm=True,
                        type_vocab_size=2, norm_eps=1e-12),
    "bart": ModelConfig(**SMALL, family="encdec", norm_placement="post", embed_norm=True),
    "t5": ModelConfig(**SMALL, family="encdec", position="t5", rel_shared=True, norm="rmsnorm",
                      bias=False, qk_scale=1.0, activation="relu", norm_eps=1e-6,
                      scale_head=True),
}
# Values other than the defaults for the fields that are not Literals or bools (those are
# walked through every choice).
OTHER_VALUES = {
    "vocab_size": [V + 3], "block_size": [12], "n_layer": [1], "n_head": [2, 8],
    "n_kv_head": [1, 2], "n_embd": [48], "dropout": [0.2], "rope_base": [500.0],
    "rel_buckets": [16], "rel_max_distance": [64], "ffn_hidden": [40], "window": [4],
    "norm_eps": [1e-3], "moe_experts": [2], "moe_top_k": [1], "moe_aux_weight": [0.5],
    "qk_scale": [1.0, 0.3], "type_vocab_size": [0, 3], "n_classes": [3],
    "labels": [("a", "b", "c")],  # names of outputs only: inert, never exported
}


def values(field: dataclasses.Field) -> list:
    kind = typing.get_type_hints(ModelConfig)[field.name]
    if typing.get_origin(kind) is typing.Literal:
        return list(typing.get_args(kind))
    if kind is bool:
        return [True, False]
    return OTHER_VALUES[field.name]


def cases():
    for model_type, base in BASES.items():
        for field in dataclasses.fields(ModelConfig):
            for value in values(field):
                if value != getattr(base, field.name):
                    yield pytest.param(model_type, field.name, value,
                                       id=f"{model_type}-{field.name}={value}")


def test_every_field_is_walked():
    for field in dataclasses.fields(ModelConfig):
        assert values(field), field.name


def test_every_family_is_walked():
    assert set(BASES) == {t for types in EXPORTS.values() for t in types}


def lively(cfg):
    torch.manual_seed(0)
    model = build(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # gains and biases off 1 and 0, so a lost one shows
            p.add_(0.1 * torch.randn_like(p)) if p.dim() == 1 else p.normal_(0, 0.2)
    return model


def outputs(model, cfg, ours: bool):
    """Ours: the first output (logits, or a plain encoder's hidden states); theirs: the same."""
    torch.manual_seed(1)
    ids = torch.randint(V, (2, 9))
    with torch.no_grad():
        if cfg.family == "encdec":
            tgt = torch.randint(V, (2, 5))
            return model(ids, tgt)[0] if ours else model(input_ids=ids, decoder_input_ids=tgt).logits
        if ours:
            return model(ids)[0]
        out = model(ids)
        return out.logits if "logits" in out else out.last_hidden_state


@pytest.mark.parametrize("model_type,name,value", list(cases()))
def test_export_holds_the_value_or_refuses_it_by_name(model_type, name, value, tmp_path):
    base = BASES[model_type]
    try:
        cfg = dataclasses.replace(base, **{name: value})
    except GlassformerError:
        return  # not a model at all: nothing to export
    model = lively(cfg)
    try:
        written = glassformer.save_pretrained(model, tmp_path, model_type=model_type)
    except GlassformerError as err:
        assert f"{name}=" in str(err), err
        assert not any(tmp_path.iterdir())  # nothing half-written
        return
    assert written == model_type
    architecture = json.loads((tmp_path / "config.json").read_text())["architectures"][0]
    theirs, info = getattr(transformers, architecture).from_pretrained(
        tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    want = outputs(model, cfg, ours=True)
    torch.testing.assert_close(outputs(theirs.float().eval(), cfg, ours=False), want,
                               atol=1e-5, rtol=0)
    again, _ = glassformer.from_pretrained(tmp_path)  # the same model, bit for bit
    assert again.cfg.architecture() == cfg.architecture()
    mine = model.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in again.state_dict().items())
