"""A tiny trained run shared by the inspect tests (trained once per session, on a text written
here; no network)."""

import io
import os

import pytest

from glassformer.config import apply_overrides, preset

TEXT = """ROMEO. But soft, what light through yonder window breaks?
It is the east, and Juliet is the sun.
JULIET. O Romeo, Romeo, wherefore art thou Romeo?
Deny thy father and refuse thy name.
""" * 40


@pytest.fixture(scope="session")
def play_text() -> str:
    """About 6,000 characters of Romeo and Juliet (repeated lines)."""
    return TEXT


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A `tiny` run trained for 60 steps: (run directory, text file)."""
    from glassformer.train.loop import train

    root = tmp_path_factory.mktemp("tiny_run")
    text = root / "play.txt"
    text.write_text(TEXT, encoding="utf-8")
    cfg = apply_overrides(preset("tiny"), {"train.text": str(text), "train.device": "cpu",
                                           "train.max_steps": "60", "train.lr": "3e-3",
                                           "train.sample_tokens": "0"})
    saved = os.environ.get("GLASSFORMER_CACHE")
    os.environ["GLASSFORMER_CACHE"] = str(root / "cache")
    try:
        train(cfg, root / "run", out=io.StringIO())
    finally:
        if saved is None:
            del os.environ["GLASSFORMER_CACHE"]
        else:
            os.environ["GLASSFORMER_CACHE"] = saved
    return root / "run", text
