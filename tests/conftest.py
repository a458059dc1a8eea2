"""Shared fixtures: a private cache and a small text the tests make themselves (no network)."""

import pytest
import torch

from glassformer.config import apply_overrides, preset

# Tiny models run fastest on one thread, and the suite stays steady on a busy 2-core machine.
torch.set_num_threads(1)

SONNET = """From fairest creatures we desire increase,
That thereby beauty's rose might never die,
But as the riper should by time decease,
His tender heir might bear his memory:
But thou contracted to thine own bright eyes,
Feed'st thy light's flame with self-substantial fuel,
Making a famine where abundance lies,
Thy self thy foe, to thy sweet self too cruel:
"""


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
