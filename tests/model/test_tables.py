"""Each config word's variants are listed in one table, which must name every word the config's
Literal allows: positions (model/position.py), attention algorithms (model/attention_kinds.py) and
activations (model/mlp.py). A word added to a Literal without its row fails here."""

import typing

import pytest
import torch

from glassformer.config import POSITION_ACTS_ON, Activation, Attention, ModelConfig, Position
from glassformer.model import build
from glassformer.model.attention_kinds import ATTENTION
from glassformer.model.kv_cache import KVCache
from glassformer.model.mlp import ACTIVATIONS
from glassformer.model.position import PARTS, make_positions, rotary, score_bias

TINY = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)


def test_every_position_scheme_that_acts_somewhere_builds_its_part():
    assert set(PARTS) == {s for s in typing.get_args(Position) if POSITION_ACTS_ON[s] != "nowhere"}


@pytest.mark.parametrize("position", typing.get_args(Position))
@pytest.mark.parametrize("causal", [True, False])
def test_a_scheme_builds_exactly_one_part_where_it_acts(position, causal):
    cfg = ModelConfig(**TINY, position=position)
    built = {"embeddings": make_positions(cfg), "qk": rotary(cfg),
             "scores": score_bias(cfg, causal)}
    assert {where for where, part in built.items() if part is not None} == \
        ({POSITION_ACTS_ON[position]} - {"nowhere"})


def test_every_attention_algorithm_has_a_layer_and_a_decoding_state():
    assert set(ATTENTION) == set(typing.get_args(Attention))


@pytest.mark.parametrize("attention", typing.get_args(Attention))
def test_blocks_and_the_cache_take_the_algorithm_s_layer_and_state(attention):
    cfg = ModelConfig(**TINY, attention=attention)
    model = build(cfg)
    kind = ATTENTION[attention]
    assert all(type(block.attn) is kind.layer for block in model.blocks)
    cache = KVCache(cfg, batch=2)
    assert len(cache.layers) == cfg.n_layer and cache.length == 0
    assert all(type(state) is kind.state for state in cache.layers)
    model.eval()(torch.zeros(2, 3, dtype=torch.long), cache=cache)
    assert cache.length == 3


def test_every_activation_has_its_non_linearity():
    assert set(ACTIVATIONS) == set(typing.get_args(Activation))
