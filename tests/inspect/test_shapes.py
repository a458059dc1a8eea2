"""The shape trace of the tiny preset, against the shapes written out by hand."""

import torch

from glassformer.inspect.shapes import (dimensions, format_trace, name_shape, pick_batch,
                                        trace_shapes)
from glassformer.inspect.source import load_source

# name: (inputs, outputs), in call order; the tiny preset has 2 layers, C=32, H=2, D=16, F=128.
# A hook point (an identity) shows its value's shape as input and output alike.
BTC, BT1, BTF, BHTD, BHTT = ["(B, T, C)"], ["(B, T, 1)"], ["(B, T, F)"], ["(B, H, T, D)"], \
    ["(B, H, T, T)"]
NORM = [("{n}", BTC, BTC), ("{n}.hook_scale", BT1, BT1), ("{n}.hook_normalized", BTC, BTC)]
BLOCK = [
    ("blocks.{i}", ["(B, T, C)", "(T)"], BTC),
    ("blocks.{i}.hook_resid_pre", BTC, BTC),
    *[(name.format(n="blocks.{i}.norm1"), ins, outs) for name, ins, outs in NORM],
    ("blocks.{i}.attn", ["(B, T, C)", "(T)"], BTC),
    ("blocks.{i}.attn.qkv", BTC, ["(B, T, 3C)"]),
    ("blocks.{i}.attn.hook_q", BHTD, BHTD),
    ("blocks.{i}.attn.hook_k", BHTD, BHTD),
    ("blocks.{i}.attn.hook_v", BHTD, BHTD),
    ("blocks.{i}.attn.hook_attn_scores", BHTT, BHTT),
    ("blocks.{i}.attn.hook_pattern", BHTT, BHTT),
    ("blocks.{i}.attn.hook_z", BHTD, BHTD),
    ("blocks.{i}.attn.proj", BTC, BTC),
    ("blocks.{i}.hook_attn_out", BTC, BTC),
    ("blocks.{i}.dropout", BTC, BTC),
    ("blocks.{i}.hook_resid_mid", BTC, BTC),
    *[(name.format(n="blocks.{i}.norm2"), ins, outs) for name, ins, outs in NORM],
    ("blocks.{i}.mlp", BTC, BTC),
    ("blocks.{i}.mlp.fc", BTC, BTF),
    ("blocks.{i}.mlp.hook_pre", BTF, BTF),
    ("blocks.{i}.mlp.act", BTF, BTF),
    ("blocks.{i}.mlp.hook_post", BTF, BTF),
    ("blocks.{i}.mlp.proj", BTF, BTC),
    ("blocks.{i}.hook_mlp_out", BTC, BTC),
    ("blocks.{i}.dropout", BTC, BTC),
    ("blocks.{i}.hook_resid_post", BTC, BTC),
]
EXPECTED = [
    ("GPT", ["(B, T)"], ["(B, T, V)"]),
    ("embed", ["(B, T)", "(T)"], ["(B, T, C)"]),
    ("embed.tokens", ["(B, T)"], ["(B, T, C)"]),
    ("embed.hook_embed", BTC, BTC),
    ("embed.positions", ["(T)"], ["(T, C)"]),
    ("embed.positions.table", ["(T)"], ["(T, C)"]),
    ("embed.hook_pos_embed", ["(T, C)"], ["(T, C)"]),
    ("embed.dropout", ["(B, T, C)"], ["(B, T, C)"]),
    *[(name.format(i=i), ins, outs) for i in range(2) for name, ins, outs in BLOCK],
    *[(name.format(n="norm"), ins, outs) for name, ins, outs in NORM],
    ("head", ["(B, T, C)"], ["(B, T, V)"]),
]


def trace(text="To be, or not"):
    source = load_source("tiny")
    ids = source.encode(text)
    B = pick_batch(source.cfg.model, len(ids))
    records = trace_shapes(source.model, torch.tensor([ids] * B))  # (B, T)
    return records, dimensions(source.cfg.model, B, len(ids))


def test_tiny_trace_matches_the_hand_written_shapes():
    records, dims = trace()
    assert dims == {"B": 3, "T": 13, "C": 32, "F": 128, "V": 65, "H": 2, "Hkv": 2, "D": 16}
    got = [(r["name"], [name_shape(s, dims) for s in r["inputs"]],
            [name_shape(s, dims) for s in r["outputs"]]) for r in records]
    assert got == EXPECTED


def test_depth_follows_the_calls_and_the_model_is_left_unchanged():
    source = load_source("tiny")
    records, dims = trace()
    depth = {r["name"]: r["depth"] for r in records}
    assert depth["GPT"] == 0 and depth["blocks.0"] == 1 and depth["blocks.0.attn.qkv"] == 3
    assert all(not m._forward_hooks and not m._forward_pre_hooks
               for m in source.model.modules())
    text = format_trace(records, dims)
    assert "blocks.1.attn.hook_pattern" in text and "(B, H, T, T) -> (B, H, T, T)" in text


def test_sizes_that_are_no_letter_stay_numbers():
    dims = {"B": 3, "T": 13, "C": 32, "F": 128, "V": 65, "H": 2, "Hkv": 2, "D": 16}
    assert name_shape((3, 13, 96), dims) == "(B, T, 3C)"
    assert name_shape((7, 26), dims) == "(7, 2T)"


def test_a_size_shared_by_two_letters_is_pointed_out():
    records, dims = trace("To")  # T = 2 = H
    text = format_trace(records, dims)
    assert "note: T = H = 2; such a size is written T" in text.splitlines()[1]
