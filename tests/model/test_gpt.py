"""GPT behaviour: causality, KV-cache decoding, padding invariance, loss at init, overfitting,
weight tying, dropout, norm placement, the block_size limit and GPT-2's initialisation."""

import itertools
import math

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.model.gpt import GPT
from tests.helpers import KERNELS, lively_gpt
from glassformer.model.kv_cache import KVCache

VOCAB = 23


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=VOCAB, block_size=24, n_layer=2, n_head=2, n_embd=16)
    base.update(kw)
    return ModelConfig(**base)


def build(seed=0, **kw) -> GPT:
    return lively_gpt(tiny(**kw), seed)


VARIANTS = [dict(kernel=a, norm_placement=n, position=p) for a, n, p in
            itertools.product(KERNELS, ["pre", "post"], ["learned", "sinusoidal"])]


def vid(v):
    return "-".join(v.values())


# --- causality ------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_future_tokens_never_change_past_logits(variant, check_causal):
    torch.manual_seed(1)
    check_causal(build(**variant), torch.randint(VOCAB, (2, 12)))


# --- KV cache ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
@pytest.mark.parametrize("chunks", [(5, 1, 1, 1, 1, 1, 1, 1), (4, 3, 1, 2, 1, 1)],
                         ids=["prefill+steps", "prefill+chunks"])
def test_kv_cache_decoding_equals_full_forward(variant, chunks):
    model = build(**variant)
    torch.manual_seed(2)
    ids = torch.randint(VOCAB, (3, sum(chunks)))
    cache = KVCache(model.cfg, batch=3)
    with torch.no_grad():
        full, _ = model(ids)
        parts, start = [], 0
        for n in chunks:
            logits, _ = model(ids[:, start:start + n], cache=cache)
            parts.append(logits)
            start += n
            assert cache.length == start
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)


def test_kv_cache_rejects_overflow():
    model = build(block_size=8)
    cache = KVCache(model.cfg, batch=1)
    with torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="block_size"):
            model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


# --- padding -----------------------------------------------------------------------------------

def left_pad(seqs, pad_id=0):
    """Left-pad a list of 1-D id tensors: ids (B, S), key_valid (B, S), positions (B, S)."""
    S = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), S), pad_id)
    valid = torch.zeros(len(seqs), S, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, S - len(s):] = s
        valid[i, S - len(s):] = True
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)  # real tokens count from 0
    return ids, valid, positions


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_left_padding_does_not_change_real_logits(variant):
    model = build(**variant)
    torch.manual_seed(3)
    seqs = [torch.randint(1, VOCAB, (n,)) for n in (13, 9, 4)]
    ids, valid, positions = left_pad(seqs)
    with torch.no_grad():
        batched, _ = model(ids, positions=positions, key_valid=valid)
        assert not torch.isnan(batched).any()
        for i, s in enumerate(seqs):
            alone, _ = model(s[None])
            torch.testing.assert_close(batched[i, valid[i]], alone[0], atol=1e-5, rtol=0)
        # Without the mask and positions the padded rows do change: the test has teeth.
        unmasked, _ = model(ids)
        assert (unmasked[1, valid[1]] - batched[1, valid[1]]).abs().max() > 1e-3


@pytest.mark.parametrize("variant", VARIANTS, ids=vid)
def test_left_padded_kv_cache_decoding(variant):
    """A padded batch of prompts decoded with the cache, per-row positions and key_valid grown by
    one column per step gives each row the logits of its own unpadded full forward."""
    model = build(**variant)
    torch.manual_seed(4)
    prompts = [torch.randint(1, VOCAB, (n,)) for n in (7, 3)]
    extra = torch.randint(1, VOCAB, (2, 4))  # tokens fed one at a time after the prompts
    ids, valid, positions = left_pad(prompts)
    cache = KVCache(model.cfg, batch=2)
    with torch.no_grad():
        logits, _ = model(ids, positions=positions, key_valid=valid, cache=cache)
        steps = [logits[:, -1]]
        for j in range(extra.size(1)):
            valid = torch.cat([valid, torch.ones(2, 1, dtype=torch.bool)], dim=1)
            positions = positions[:, -1:] + 1  # (B, 1): each row's next position
            logits, _ = model(extra[:, j:j + 1], positions=positions, key_valid=valid, cache=cache)
            steps.append(logits[:, -1])
        for i, p in enumerate(prompts):
            alone, _ = model(torch.cat([p, extra[i]])[None])
            want = alone[0, len(p) - 1:]  # logits at the prompt's last token and each new one
            torch.testing.assert_close(torch.stack([s[i] for s in steps]), want, atol=1e-5, rtol=0)


# --- training signals ----------------------------------------------------------------------------

def test_loss_at_init_is_log_vocab():
    torch.manual_seed(5)
    model = GPT(ModelConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64)).eval()
    ids = torch.randint(65, (8, 32))
    targets = torch.randint(65, (8, 32))
    with torch.no_grad():
        logits, loss = model(ids, targets)
    assert logits.shape == (8, 32, 65)
    assert abs(loss.item() - math.log(65)) < 0.1
    # targets of -1 are ignored
    targets[:, 16:] = -1
    with torch.no_grad():
        _, half = model(ids, targets)
        _, first = model(ids[:, :16], targets[:, :16])
    torch.testing.assert_close(half, first, atol=1e-6, rtol=0)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(6)
    model = GPT(ModelConfig(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=64))
    data = torch.randint(65, (2, 17))
    x, y = data[:, :-1], data[:, 1:]  # (2, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses time to thread hand-offs
    try:
        for _ in range(200):
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        _, loss = model(x, y)
    assert loss.item() < 0.1


# --- structure -----------------------------------------------------------------------------------

def test_weight_tying():
    tied = GPT(tiny(tie_weights=True))
    assert tied.head.weight is tied.embed.tokens.weight
    untied = GPT(tiny(tie_weights=False))
    assert untied.head.weight is not untied.embed.tokens.weight
    assert untied.head.weight.data_ptr() != untied.embed.tokens.weight.data_ptr()
    # one matrix: changing the embeddings changes the head
    with torch.no_grad():
        tied.embed.tokens.weight.add_(1.0)
    assert torch.equal(tied.head.weight, tied.embed.tokens.weight)
    assert "head.weight" not in dict(tied.named_parameters())
    assert "head.weight" in dict(untied.named_parameters())


@pytest.mark.parametrize("kernel", KERNELS)
def test_dropout_train_vs_eval(kernel):
    model = build(dropout=0.2, kernel=kernel)
    ids = torch.randint(VOCAB, (2, 10))
    model.eval()
    with torch.no_grad():
        a, _ = model(ids)
        b, _ = model(ids)
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(7)
    with torch.no_grad():
        c, _ = model(ids)
        d, _ = model(ids)
    assert (c - d).abs().max() > 1e-3
    assert (c - a).abs().max() > 1e-3


def test_no_dropout_train_equals_eval():
    model = build(dropout=0.0)
    ids = torch.randint(VOCAB, (2, 10))
    with torch.no_grad():
        a, _ = model.eval()(ids)
        b, _ = model.train()(ids)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_final_norm_only_with_pre_norm():
    pre = GPT(tiny(norm_placement="pre"))
    post = GPT(tiny(norm_placement="post"))
    assert isinstance(pre.norm, torch.nn.LayerNorm)
    assert isinstance(post.norm, torch.nn.Identity)
    assert not any(k.startswith("norm.") for k in post.state_dict())
    assert "norm.weight" in pre.state_dict()


@pytest.mark.parametrize("variant", VARIANTS[:4], ids=vid)
def test_post_norm_block_output_is_normalised(variant):
    """Post-norm ends each block in a LayerNorm: with unit gains and zero biases the last
    block's output has zero mean and unit (biased) variance per position."""
    torch.manual_seed(8)
    model = GPT(tiny(**variant)).eval()
    seen = []
    model.blocks[-1].register_forward_hook(lambda m, i, out: seen.append(out))
    with torch.no_grad():
        model(torch.randint(VOCAB, (2, 7)))
    out = seen[0]
    if variant["norm_placement"] == "post":
        torch.testing.assert_close(out.mean(-1), torch.zeros(2, 7), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 7), atol=1e-3, rtol=0)
    else:
        assert (out.var(-1, unbiased=False) - 1).abs().max() > 0.1


def test_forward_rejects_sequences_beyond_block_size():
    model = build(block_size=8)
    with torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long))  # exactly block_size is fine
        with pytest.raises(ValueError, match="block_size"):
            model(torch.zeros(1, 9, dtype=torch.long))


def test_init_std():
    L = 6
    torch.manual_seed(9)
    model = GPT(ModelConfig(vocab_size=2000, block_size=256, n_layer=L, n_head=8, n_embd=256))
    params = dict(model.named_parameters())
    assert abs(params["embed.tokens.weight"].std().item() - 0.02) < 0.0005
    assert abs(params["embed.positions.table.weight"].std().item() - 0.02) < 0.001
    residual = 0.02 / math.sqrt(2 * L)
    for i in range(L):
        for name in (f"blocks.{i}.attn.proj.weight", f"blocks.{i}.mlp.proj.weight"):
            assert abs(params[name].std().item() - residual) / residual < 0.03, name
        for name in (f"blocks.{i}.attn.qkv.weight", f"blocks.{i}.mlp.fc.weight"):
            assert abs(params[name].std().item() - 0.02) / 0.02 < 0.03, name
        assert torch.equal(params[f"blocks.{i}.attn.qkv.bias"], torch.zeros(3 * 256))
        assert torch.equal(params[f"blocks.{i}.norm1.weight"], torch.ones(256))
        assert torch.equal(params[f"blocks.{i}.norm1.bias"], torch.zeros(256))
    for p in params.values():
        assert abs(p.mean().item()) < 2e-3 or p.dim() == 1
