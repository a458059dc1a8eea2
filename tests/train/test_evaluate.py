"""`glassformer eval` from Python: a run's validation split rebuilt as training cut it, and the
loss on it or on a file equal to evaluate_tokens on the same tokens counted by hand."""

import io
import math

import numpy as np
import pytest

from glassformer.train.checkpoint import load_run
from glassformer.train.evaluate import evaluate_run, evaluate_tokens, validation_tokens
from glassformer.train.loop import train
from glassformer.train.tasks import LMTask


@pytest.fixture
def run(tiny_cfg, tmp_path):
    cfg = tiny_cfg(model__n_layer=1, train__max_steps=2, train__sample_tokens=0)
    train(cfg, tmp_path / "run", out=io.StringIO())
    return load_run(tmp_path / "run")


def test_the_validation_split_is_the_one_training_held_out(run, text_file):
    val = validation_tokens(run)
    held_out = LMTask(run.cfg, run.tokenizer).val
    assert np.array_equal(val, held_out)
    n = len(text_file.read_text(encoding="utf-8"))  # a char tokenizer: one token per character
    assert len(val) == int(n * run.cfg.train.val_fraction)


def test_evaluate_run_on_the_validation_split_equals_evaluate_tokens(run):
    val = validation_tokens(run)
    result = evaluate_run(run)
    by_hand = evaluate_tokens(run.model, val, n_chars=len(val) - 1)  # a char per predicted token
    assert result == {"text": "the validation split"} | by_hand
    assert result["tokens"] == len(val) - 1
    assert result["bits_per_char"] == pytest.approx(result["loss"] / math.log(2))
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))


def test_evaluate_run_on_a_file(run, tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("But thou contracted to thine own bright eyes,\n", encoding="utf-8")
    tokens = np.array(run.tokenizer.encode(path.read_text(encoding="utf-8")), dtype=np.int64)
    result = evaluate_run(run, path)
    assert result == {"text": str(path)} | evaluate_tokens(run.model, tokens, n_chars=45)
    assert result["tokens"] == 45
