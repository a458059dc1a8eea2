"""Reduced precision and compilation: bf16 autocast (the GPU training path; also checked on
the CPU, where every part must run in it) and torch.compile'd training, each against fp32 eager.
Skipped with the reason where the machine lacks what they need."""

import shutil

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.model import build
from glassformer.train import checkpoint as ckpt
from glassformer.train.device import autocast, compute_dtype
from glassformer.train.loop import train

PARTS = [{}, {"position": "rope", "norm": "rmsnorm", "activation": "swiglu", "bias": False,
              "qk_norm": True, "n_kv_head": 1},
         {"position": "alibi", "window": 5}, {"norm_placement": "post", "position": "sinusoidal"}]


@pytest.mark.parametrize("parts", PARTS, ids=lambda p: "-".join(map(str, p.values())) or "gpt2")
def test_bf16_autocast_stays_close_to_fp32(parts):
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=31, block_size=16, n_layer=2, n_head=4, n_embd=32,
                              **parts))
    ids = torch.randint(31, (3, 16))
    logits32, loss32 = model(ids, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits16, loss16 = model(ids, ids)
    loss16.backward()
    assert logits16.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: logits of size ~1 agree to a few hundredths
    assert (logits16.float() - logits32).abs().max() < 0.05
    assert abs(loss16.item() - loss32.item()) < 0.01
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine: the "
                    "bf16 training path runs only on one")
def test_training_on_a_gpu_computes_in_bf16(tiny_cfg, tmp_path):
    assert compute_dtype("cuda") == torch.bfloat16
    with autocast("cuda"):
        logits, _ = build(tiny_cfg().model).cuda()(torch.zeros(1, 4, dtype=torch.long).cuda())
    assert logits.dtype == torch.bfloat16
    result = train(tiny_cfg(train__max_steps=20, train__device="cuda"), tmp_path / "run")
    assert result["val_loss"] < 3.5


def test_the_cpu_trains_in_fp32():
    assert compute_dtype("cpu") == torch.float32  # bf16 matmuls are slower here without AMX


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None,
                    reason="torch.compile on a CPU needs a C++ compiler (g++), none found")
def test_compiled_training_gives_the_eager_losses(tiny_cfg, tmp_path):
    losses = {}
    for compiled in (False, True):
        run = tmp_path / f"compile-{compiled}"
        train(tiny_cfg(train__max_steps=6, train__log_every=1, train__compile=compiled), run)
        losses[compiled] = [m["train_loss"] for m in ckpt.read_metrics(run) if "lr" in m]
    assert len(losses[True]) == 6
    assert losses[True] == pytest.approx(losses[False], abs=1e-4)
    assert losses[True][-1] < losses[True][0]  # the compiled step trains
