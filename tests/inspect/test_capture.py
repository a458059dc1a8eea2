"""Captured attention: real probability rows, causal zeros, the model unchanged afterwards, and
the per-head summary on heads built by hand."""

import pytest
import torch

from glassformer.config import apply_overrides, preset
from glassformer.inspect.capture import AttentionCapture, attention_modules
from glassformer.inspect.heads import head_kinds, summarise
from glassformer.model import build


@pytest.mark.parametrize("overrides", [{}, {"model.position": "alibi", "model.n_kv_head": "1"},
                                       {"model.position": "rope", "model.window": "4"}])
def test_rows_sum_to_one_and_the_future_gets_zero(overrides):
    cfg = apply_overrides(preset("tiny"), overrides).model
    torch.manual_seed(0)
    model = build(cfg).eval()
    ids = torch.randint(cfg.vocab_size, (2, 12))  # (B, T)
    with torch.no_grad(), AttentionCapture(model) as capture:
        model(ids)
    assert list(capture.weights) == [f"blocks.{i}.attn" for i in range(cfg.n_layer)]
    for w in capture.weights.values():
        assert w.shape == (2, cfg.n_head, 12, 12)  # (B, H, T, S)
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(2, cfg.n_head, 12))
        future = torch.triu(torch.ones(12, 12, dtype=torch.bool), diagonal=1)
        assert (w[..., future] == 0).all()
        assert (w[..., ~future] > 0).any()


def test_capture_leaves_the_model_as_it_was():
    cfg = preset("tiny").model
    torch.manual_seed(0)
    model = build(cfg).eval()
    ids = torch.randint(cfg.vocab_size, (1, 10))
    with torch.no_grad():
        before = model(ids)[0]
        with AttentionCapture(model):
            during = model(ids)[0]
        after = model(ids)[0]
    torch.testing.assert_close(during, before, atol=1e-5, rtol=0)  # the math path: same numbers
    assert torch.equal(after, before)
    assert all(m.kernel == "sdpa" and not m.hook_pattern.active
               for m in attention_modules(model).values())


def test_linear_attention_has_nothing_to_capture():
    from glassformer.errors import GlassformerError

    model = build(apply_overrides(preset("tiny"), {"model.attention": "linear"}).model)
    with pytest.raises(GlassformerError, match="linear attention"):
        with AttentionCapture(model):
            pass


def test_hand_built_heads_are_named_by_what_they_favour():
    T = 6
    previous = torch.zeros(T, T)
    previous[0, 0] = 1
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1  # each query reads the token before
    first = torch.zeros(T, T)
    first[:, 0] = 1
    ids = [5, 1, 2, 5, 3, 4]
    assert head_kinds(previous, ids)["previous token"] == pytest.approx(1.0)
    assert head_kinds(first, ids)["first token"] == pytest.approx(1.0)
    weights = {"blocks.0.attn": torch.stack([previous, first])[None]}  # (1, H, T, S)
    lines = summarise(weights, {"blocks.0.attn": (ids, list("abcadb"))})
    assert lines[0].startswith("blocks.0.attn head 0: previous token (previous token 1.00")
    assert lines[1].startswith("blocks.0.attn head 1: first token (first token 1.00")
    assert "top key 'a' at 0 (1.00)" in lines[1]
    assert head_kinds(previous, ids)["last 4 tokens"] == pytest.approx(1.0)


def causal_head(T: int, keys_of) -> torch.Tensor:
    """(T, T) causal weights: query t spreads its weight evenly over keys_of(t) (those >= 0),
    or over all its keys when there are none."""
    w = torch.zeros(T, T)
    for t in range(T):
        keys = [k for k in keys_of(t) if 0 <= k <= t] or list(range(t + 1))
        w[t, keys] = 1 / len(keys)
    return w


def test_a_previous_token_head_is_not_called_a_local_one():
    """heads.txt called nearly every head "last 4 tokens" (which contains the previous token),
    a clear previous-token head (0.86) included."""
    T = 24
    uniform = causal_head(T, lambda t: [])
    previous = 0.86 * causal_head(T, lambda t: [t - 1]) + 0.14 * uniform
    local = causal_head(T, lambda t: [t, t - 1, t - 2, t - 3])
    ids = list(range(T))
    weights = {"blocks.0.attn": torch.stack([previous, local, uniform])[None]}  # (1, 3, T, T)
    lines = summarise(weights, {"blocks.0.attn": (ids, [str(i) for i in ids])})
    assert head_kinds(previous, ids)["last 4 tokens"] > head_kinds(previous, ids)["previous token"]
    assert lines[0].startswith("blocks.0.attn head 0: previous token (")
    assert lines[1].startswith("blocks.0.attn head 1: last 4 tokens (")
    assert lines[2].startswith("blocks.0.attn head 2: spread out (")


def test_bert_and_the_encoder_decoder_are_captured_too():
    """BERT's rows see the future; the decoder's cross-attention rows (T queries over S source
    keys) sum to 1, and its self-attention stays causal."""
    torch.manual_seed(0)
    bert_cfg = apply_overrides(preset("tiny"), {"model.family": "bert", "train.task": "mlm"}).model
    bert = build(bert_cfg).eval()
    with torch.no_grad(), AttentionCapture(bert) as capture:
        bert(torch.randint(bert_cfg.vocab_size, (1, 7)))
    for w in capture.weights.values():
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(1, 2, 7))
        assert (torch.triu(w[0, 0], diagonal=1) > 0).any()  # bidirectional
    cfg = apply_overrides(preset("tiny"), {"model.family": "encdec", "train.task": "pairs"}).model
    model = build(cfg).eval()
    src, ids = torch.randint(cfg.vocab_size, (1, 7)), torch.randint(cfg.vocab_size, (1, 5))
    with torch.no_grad(), AttentionCapture(model) as capture:
        model(src, ids)
    w = capture.weights
    assert w["encoder.blocks.0.attn"].shape == (1, 2, 7, 7)
    assert w["decoder.blocks.1.cross"].shape == (1, 2, 5, 7)  # (B, H, T, S)
    torch.testing.assert_close(w["decoder.blocks.1.cross"].sum(dim=-1), torch.ones(1, 2, 5))
    assert (torch.triu(w["decoder.blocks.0.attn"][0, 0], diagonal=1) == 0).all()


def test_each_module_is_mapped_to_the_texts_it_reads():
    from glassformer.inspect.capture import query_key_texts

    cfg = apply_overrides(preset("tiny"), {"model.family": "encdec", "train.task": "pairs"}).model
    torch.manual_seed(0)
    model = build(cfg).eval()
    src, tgt = torch.randint(cfg.vocab_size, (1, 7)), torch.randint(cfg.vocab_size, (1, 3))
    with torch.no_grad(), AttentionCapture(model) as capture:
        model(src, tgt)  # (1, S), (1, T)
    reads = query_key_texts(capture.weights, "source", "target")
    assert reads == {
        "encoder.blocks.0.attn": ("source", "source"), "encoder.blocks.1.attn": ("source", "source"),
        "decoder.blocks.0.attn": ("target", "target"), "decoder.blocks.0.cross": ("target", "source"),
        "decoder.blocks.1.attn": ("target", "target"), "decoder.blocks.1.cross": ("target", "source")}
    lengths = {"source": 7, "target": 3}
    for name, w in capture.weights.items():  # (B, H, T, S): queries down, keys across
        queries, keys = reads[name]
        assert w.shape[2:] == (lengths[queries], lengths[keys]), name
    gpt = ["blocks.0.attn", "blocks.1.attn"]
    assert query_key_texts(gpt, "text", "text") == {name: ("text", "text") for name in gpt}
