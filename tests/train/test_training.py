"""The training loop: resume reproduces the losses, accumulation is normalised, divergence stops
the run with a diagnostic and keeps the last good checkpoint."""

import math

import pytest
import torch

from glassformer.model import GPT
from glassformer.train import checkpoint as ckpt
from glassformer.train import loop
from glassformer.train.flops import flops_per_token
from glassformer.train.loop import TrainingDiverged, train
from tests.helpers import interrupted_at


def step_losses(run_dir):
    return [(m["step"], m["train_loss"]) for m in ckpt.read_metrics(run_dir) if "lr" in m]


def test_training_lowers_the_loss_and_writes_the_run(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_cfg(train__max_steps=60, train__lr=3e-3), run)
    losses = [loss for _, loss in step_losses(run)]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5
    assert result["step"] == 60 and result["val_loss"] < losses[0]
    for name in (ckpt.CONFIG, ckpt.TOKENIZER, ckpt.MODEL, ckpt.STATE, ckpt.METRICS):
        assert (run / name).is_file()
    state = torch.load(run / ckpt.STATE, weights_only=True)
    assert state["step"] == 60 and set(state["rng"]) >= {"batches", "torch"}


def test_resume_after_a_stop_repeats_the_uninterrupted_losses(tiny_cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg(train__max_steps=12, train__save_every=4, train__eval_every=6,
                   model__dropout=0.1)  # dropout: the global RNG must be restored too
    train(cfg, tmp_path / "whole")

    real_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", interrupted_at(real_step, 7))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "parts")
    monkeypatch.setattr(loop, "train_step", real_step)
    assert ckpt.load_trainer_state(tmp_path / "parts")["step"] == 4
    train(cfg, tmp_path / "parts", resume=True)

    whole, parts = step_losses(tmp_path / "whole"), step_losses(tmp_path / "parts")
    assert [s for s, _ in parts] == list(range(1, 13))
    assert parts == whole  # exactly, not approximately
    evals = [m for m in ckpt.read_metrics(tmp_path / "parts") if "val_loss" in m]
    assert [m["step"] for m in evals] == [0, 6, 12]


def test_accumulation_gives_the_same_update_as_one_big_batch(tiny_cfg):
    torch.manual_seed(0)
    rows = torch.randint(0, 20, (8, 33))  # 8 sequences of block 32 + 1

    class FixedBatches:  # a task whose batches are the rows above, batch_size at a time
        def __init__(self, batch_size):
            self.chunks = iter(rows.split(batch_size))

        def batch(self, generator, device):
            chunk = next(self.chunks)
            return {"ids": chunk[:, :-1], "targets": chunk[:, 1:]}

    updated = []
    for batch_size, accum in ((8, 1), (2, 4)):
        cfg = tiny_cfg(train__batch_size=batch_size, train__grad_accum=accum,
                       train__grad_clip=0, model__vocab_size=20)
        torch.manual_seed(1)
        model = GPT(cfg.model)
        loss, norm, tokens, flops = loop.train_step(model, FixedBatches(batch_size), None,
                                                    cfg.train, "cpu")
        assert tokens == 8 * 32 and flops == tokens * flops_per_token(model, 32)
        updated.append((loss, norm, [p.grad.clone() for p in model.parameters()]))
    (loss_a, norm_a, grads_a), (loss_b, norm_b, grads_b) = updated
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    assert norm_a == pytest.approx(norm_b, rel=1e-5)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_non_finite_loss_stops_with_a_diagnostic_and_keeps_the_checkpoint(
        tiny_cfg, tmp_path, monkeypatch):
    real_step, calls = loop.train_step, []

    def nan_at_five(*args):
        calls.append(1)
        loss, norm, tokens, flops = real_step(*args)
        return (math.nan if len(calls) == 5 else loss), norm, tokens, flops

    monkeypatch.setattr(loop, "train_step", nan_at_five)
    with pytest.raises(TrainingDiverged) as err:
        train(tiny_cfg(train__max_steps=10, train__save_every=2), tmp_path / "run")
    message = str(err.value)
    assert "step 5" in message and "grad norm" in message and "lr" in message
    assert "step 4" in message  # the last good checkpoint
    assert ckpt.load_run(tmp_path / "run").step == 4


def test_an_existing_run_is_not_overwritten(tiny_cfg, tmp_path):
    train(tiny_cfg(train__max_steps=2), tmp_path / "run")
    with pytest.raises(ckpt.GlassformerError, match="--resume"):
        train(tiny_cfg(train__max_steps=2), tmp_path / "run")
