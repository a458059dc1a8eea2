"""Model FLOPs and MFU: the 6N + 12 L H Q T count against closed forms, the peak's arithmetic,
and the MFU the progress line and metrics.jsonl report."""

import io
import math

import pytest

from glassformer.config import ModelConfig, preset
from glassformer.model import build
from glassformer.train import checkpoint as ckpt
from glassformer.train import flops
from glassformer.train.loop import train
from glassformer.train.progress import Progress


def test_gpt2_small_flops_per_token_match_nanogpts_estimate():
    model = build(preset("gpt2").model)
    N = 124_439_808 - 1024 * 768  # nanoGPT's get_num_params(): without the position table
    assert flops.flops_per_token(model, 1024) == 6 * N + 12 * 12 * 12 * 64 * 1024


@pytest.mark.parametrize("position", ["rope", "sinusoidal"])
def test_models_without_a_position_table_count_every_weight(position):
    cfg = ModelConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8,
                      position=position)
    model = build(cfg)
    N = sum(p.numel() for p in model.parameters())
    assert flops.flops_per_token(model, 16) == 6 * N + 12 * 2 * 2 * 4 * 16


def test_the_peak_is_the_fastest_matmul(monkeypatch):
    clock = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])  # matmuls of 3 s, 1 s, 2 s
    monkeypatch.setattr(flops.time, "perf_counter", lambda: next(clock))
    assert flops.matmul_peak("cpu", size=8, repeats=3) == 2 * 8**3 / 1.0


def test_progress_line_reports_mfu(monkeypatch):
    clock = iter([100.0, 102.0])  # start, then one step 2 s later
    monkeypatch.setattr("glassformer.train.progress.time.perf_counter", lambda: next(clock))
    out = io.StringIO()
    progress = Progress(10, 0, out, flops_per_token=1e6, peak=1e10)
    rate = progress.update(10, 1.5, 4000)  # 2000 tokens/s x 1e6 FLOPs = 20% of 1e10
    assert rate == 2000 and progress.mfu(rate) == pytest.approx(0.2)
    assert "2.0k tok/s | MFU 20% |" in out.getvalue()


def test_training_writes_tokens_per_second_and_mfu(tiny_cfg, tmp_path):
    cfg = tiny_cfg(train__max_steps=20)
    out = io.StringIO()
    train(cfg, tmp_path / "run", out=out)
    logged = [m for m in ckpt.read_metrics(tmp_path / "run") if "mfu" in m]
    assert len(logged) == 20 // cfg.train.log_every
    model = build(ckpt.load_run(tmp_path / "run").cfg.model)
    per_token = flops.flops_per_token(model, cfg.model.block_size)
    for m in logged:
        assert 0 < m["mfu"] < 1
        assert m["mfu"] == pytest.approx(per_token * m["tokens_per_s"] / flops.training_peak("cpu"),
                                         rel=1e-2, abs=1e-4)
    assert "MFU" in out.getvalue() and not math.isnan(logged[-1]["mfu"])


def test_measuring_the_peak_leaves_the_random_state_alone():
    """Dropout draws from torch's global generator: a resumed run restores it, then measures the
    peak; the measurement must not move it (it did: resumed runs with dropout diverged)."""
    import torch

    before = torch.get_rng_state()
    flops.matmul_peak("cpu", size=64, repeats=1)
    assert torch.equal(torch.get_rng_state(), before)
