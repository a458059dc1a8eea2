"""The parameter table: every row's count is measured from the tensors, its closed form agrees,
and the rows add up to sum(p.numel())."""

import pytest
import torch

from glassformer.config import ModelConfig, apply_overrides, preset
from glassformer.inspect.params import closed_form_count, format_table, parameter_table
from glassformer.model import build, count_parameters

VARIANTS = [
    {},
    {"model.bias": "false", "model.norm": "rmsnorm", "model.activation": "swiglu"},
    {"model.n_kv_head": "1", "model.qk_norm": "true", "model.position": "rope"},
    {"model.position": "t5", "model.tie_weights": "false", "model.norm_placement": "post"},
    {"model.position": "t5", "model.rel_shared": "true", "model.n_layer": "3"},
    {"model.moe_experts": "3", "model.activation": "relu", "model.position": "sinusoidal"},
]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_rows_match_their_closed_forms_and_sum_to_the_total(overrides):
    cfg = apply_overrides(preset("tiny"), overrides).model
    model = build(cfg)
    rows = parameter_table(model, cfg)
    assert sum(r["count"] for r in rows) == sum(p.numel() for p in model.parameters())
    assert sum(r["count"] for r in rows) == closed_form_count(cfg)
    for row in rows:
        assert row["closed_form"] == row["count"], row
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


def test_gpt2_small_has_its_known_rows():
    cfg = ModelConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    with torch.device("meta"):  # no memory for 124M parameters
        model = build(cfg)
    rows = {r["part"]: r for r in parameter_table(model, cfg)}
    assert sum(r["count"] for r in rows.values()) == count_parameters(model) == 124_439_808
    assert rows["embed.tokens"]["count"] == 50257 * 768
    assert rows["blocks.*.attn.qkv[q]"]["count"] == 12 * (768 * 768 + 768)
    assert rows["blocks.*.attn.qkv[q]"]["formula"] == "L·(C·C + C)"
    assert rows["blocks.*.mlp.fc"]["count"] == 12 * (768 * 3072 + 3072)
    assert "head" not in rows  # tied to the embedding: counted once


def test_a_shared_bias_table_is_one_row_of_one_table():
    cfg = apply_overrides(preset("tiny"), {"model.position": "t5", "model.rel_shared": "true",
                                           "model.n_layer": "3"}).model
    rows = {r["part"]: r for r in parameter_table(build(cfg), cfg)}
    table = rows["blocks.*.attn.relative.table"]
    assert table["count"] == table["closed_form"] == cfg.rel_buckets * cfg.n_head
    assert table["formula"] == "rel_buckets·H"  # one table, not L of them
    assert rows["blocks.*.norm1"]["formula"] == "L·2C"  # the other parts: one per layer


def test_the_text_table_ends_with_the_total():
    cfg = preset("tiny").model
    text = format_table(parameter_table(build(cfg), cfg))
    last = text.splitlines()[-1].split()
    assert last[:2] == ["total", f"{closed_form_count(cfg):,}"]
    assert "100.0%" in last
    assert all(" ok " in line for line in text.splitlines()[1:-1])
