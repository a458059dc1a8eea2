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


def test_encoder_decoder_flops_count_each_side_with_its_own_weights():
    """By hand: a source token goes through the encoder and the cross-attention's K and V; a
    target token through the rest of the decoder and the head (not 6N for every token: that
    read 107-131% MFU for numbers-seq2seq)."""
    import torch

    V, C, L, H, S, T, B = 11, 8, 2, 2, 5, 7, 3
    cfg = ModelConfig(family="encdec", vocab_size=V, block_size=16, n_layer=L, n_head=H,
                      n_embd=C, position="rope", norm="rmsnorm", bias=False)
    model = build(cfg)
    encoder = L * (2 * C + 4 * C * C + 8 * C * C) + C  # norms, attention, MLP; final norm
    decoder = L * (3 * C + 8 * C * C + 8 * C * C) + C  # norms, self- and cross-attention, MLP
    kv = L * 2 * C * C  # cross-attention's W_K, W_V: applied to the source
    per_source = 6 * (encoder + kv) + 12 * L * H * (C // H) * S
    per_target = 6 * (decoder - kv + V * C) + 12 * L * H * (C // H) * (T + S)
    batch = {"src": torch.zeros(B, S, dtype=torch.long), "ids": torch.zeros(B, T, dtype=torch.long)}
    assert flops.batch_flops(model, batch) == B * S * per_source + B * T * per_target


def test_one_stack_batch_flops_are_per_token_flops_times_tokens():
    import torch

    model = build(ModelConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8))
    batch = {"ids": torch.zeros(3, 10, dtype=torch.long)}
    assert flops.batch_flops(model, batch) == 30 * flops.flops_per_token(model, 10)


def test_the_peak_is_the_fastest_matmul(monkeypatch):
    clock = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])  # matmuls of 3 s, 1 s, 2 s
    monkeypatch.setattr(flops.time, "perf_counter", lambda: next(clock))
    assert flops.matmul_peak("cpu", size=8, repeats=3) == 2 * 8**3 / 1.0


def test_progress_line_reports_mfu(monkeypatch):
    clock = iter([100.0, 102.0])  # start, then one step 2 s later
    monkeypatch.setattr("glassformer.train.progress.time.perf_counter", lambda: next(clock))
    out = io.StringIO()
    progress = Progress(10, 0, out, peak=1e10)
    rate = progress.update(10, 1.5, 4000, 4e9)  # 2000 tokens/s, 2e9 FLOP/s = 20% of 1e10
    assert rate == 2000 and progress.mfu() == pytest.approx(0.2)
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
