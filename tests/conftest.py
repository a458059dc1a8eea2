"""Shared fixtures: a private cache and a small text the tests make themselves (no network)."""

import pytest
import torch

from glassformer.config import apply_overrides, preset
from tests.helpers import SONNET

# Tiny models run fastest on one thread, and the suite stays steady on a busy 2-core machine.
torch.set_num_threads(1)



@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Token files and corpora go to a fresh directory, never the user's cache."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GLASSFORMER_CACHE", str(cache))
    return cache


@pytest.fixture
def text_file(tmp_path):
    """A UTF-8 file of about 9,000 characters."""
    path = tmp_path / "sonnet.txt"
    path.write_text(SONNET * 20, encoding="utf-8")
    return path


@pytest.fixture
def tiny_cfg(text_file):
    """The `tiny` preset on `text_file`, on the CPU."""
    def make(**overrides):
        pairs = {"train.text": str(text_file), "train.device": "cpu"}
        pairs |= {k.replace("__", "."): str(v) for k, v in overrides.items()}
        return apply_overrides(preset("tiny"), pairs)
    return make


@pytest.fixture
def check_learns_from_context(text_file):
    """A check that a model of the given config learns from its context: 60 AdamW steps at lr
    1e-2 (batch 16, block 16) on `text_file` take the loss from ln V (uniform) to below the
    unigram entropy minus 0.1, which no model that ignores the context can reach."""
    import math
    from collections import Counter

    import numpy as np

    from glassformer.config import ModelConfig
    from glassformer.data.lm import get_batch
    from glassformer.model.gpt import GPT
    from glassformer.tokenizers import CharTokenizer

    text = text_file.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    tokens = np.array(tok.encode(text), dtype=np.int64)
    counts = np.array(list(Counter(text).values()), dtype=np.float64)
    unigram_entropy = float(-(counts / counts.sum() * np.log(counts / counts.sum())).sum())

    def check(**model_fields):
        cfg = ModelConfig(**{"vocab_size": tok.vocab_size, "block_size": 16, "n_layer": 2,
                             "n_head": 2, "n_embd": 16, **model_fields})
        torch.manual_seed(0)
        model = GPT(cfg)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        generator = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(60):
            x, y = get_batch(tokens, 16, cfg.block_size, generator)  # (B, T) each
            _, loss = model(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(math.log(tok.vocab_size), abs=0.15)  # uniform at init
        final = sum(losses[-5:]) / 5
        assert final < losses[0] - 0.3
        assert final < unigram_entropy - 0.1, (final, unigram_entropy)
    return check


@pytest.fixture
def check_causal():
    """A check that changing every token after t never changes a model's logits at <= t, and
    does change them after t, for t near the start, in the middle and near the end of `ids`."""
    def check(model, ids):
        B, T = ids.shape
        V = model.cfg.vocab_size
        with torch.no_grad():
            base, _ = model(ids)  # (B, T, V)
            for t in (0, T // 2, T - 2):
                shift = 1 + torch.randint(V - 1, (B, T - 1 - t))  # never 0 mod V
                changed = ids.clone()
                changed[:, t + 1:] = (ids[:, t + 1:] + shift) % V
                logits, _ = model(changed)
                torch.testing.assert_close(logits[:, :t + 1], base[:, :t + 1], atol=1e-6, rtol=0)
                assert (logits[:, t + 1:] - base[:, t + 1:]).abs().max() > 1e-4
    return check


@pytest.fixture
def check_cached_decoding():
    """A check that prefilling the first `prefill` tokens of `ids` into a KV cache and then
    feeding the rest one at a time gives the logits of one full forward (1e-5)."""
    from glassformer.model.kv_cache import KVCache

    def check(model, ids, prefill=5):
        with torch.no_grad():
            full, _ = model(ids)  # (B, T, V)
            cache = KVCache(model.cfg, batch=ids.size(0))
            parts = [model(ids[:, :prefill], cache=cache)[0]]
            parts += [model(ids[:, t:t + 1], cache=cache)[0] for t in range(prefill, ids.size(1))]
        assert cache.length == ids.size(1)
        torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)
    return check
