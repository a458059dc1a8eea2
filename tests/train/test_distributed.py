"""Training in 2 processes on the CPU (Gloo), started with `glassformer train --nproc 2` (torchrun):
the same losses as 1 process with the same global batch and seed, and checkpoints that 1
process loads and continues, for DDP and FSDP2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glassformer.config import ModelConfig
from glassformer.errors import GlassformerError
from glassformer.model import build
from glassformer.train import checkpoint as ckpt
from glassformer.train.distributed import World, shard, wrap
from glassformer.train.loop import train

ROOT = Path(__file__).resolve().parents[2]
# A constant learning rate (no warmup, min_lr = lr), so that a run's first steps do not depend
# on its length, and two micro-batches per step, so that `no_sync` is used.
SETTINGS = {"train.lr": "3e-3", "train.min_lr": "3e-3", "train.warmup_steps": "0",
            "train.grad_accum": "2", "train.batch_size": "4", "train.save_every": "10",
            "train.eval_every": "0", "train.sample_tokens": "0", "train.device": "cpu"}


def losses(run_dir) -> list[tuple[int, float]]:
    return [(m["step"], m["train_loss"]) for m in ckpt.read_metrics(run_dir) if "lr" in m]


def train_in_two_processes(text_file, run_dir, steps: int, **more):
    settings = SETTINGS | {"train.max_steps": str(steps)} | more
    command = [sys.executable, "-m", "glassformer", "train", "--nproc", "2", "--preset", "tiny",
               "--text", str(text_file), "--out", str(run_dir),
               *(f"--{key}={value}" for key, value in settings.items())]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stderr


def one_process(tiny_cfg, run_dir, steps: int, resume=False, **more):
    overrides = {k.replace(".", "__"): v for k, v in (SETTINGS | more).items()}
    return train(tiny_cfg(train__max_steps=steps, **overrides), run_dir, resume=resume)


def assert_same_losses(got, expected):
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (step, a), (_, b) in zip(got, expected):
        assert a == pytest.approx(b, abs=1e-5), f"step {step}: {a} vs {b}"


def test_ddp_matches_one_process_and_its_checkpoint_continues_in_one(tiny_cfg, text_file,
                                                                       tmp_path):
    one_process(tiny_cfg, tmp_path / "one", 30)
    expected = losses(tmp_path / "one")

    log = train_in_two_processes(text_file, tmp_path / "two", 20)
    assert "x 2 processes (ddp)" in log
    assert_same_losses(losses(tmp_path / "two"), expected[:20])  # process 0 alone wrote them
    assert ckpt.load_run(tmp_path / "two").step == 20

    one_process(tiny_cfg, tmp_path / "two", 30, resume=True)  # weights, optimizer, RNG
    assert_same_losses(losses(tmp_path / "two"), expected)


def test_fsdp_trains_like_one_process_and_its_checkpoint_loads_in_one(tiny_cfg, text_file,
                                                                        tmp_path):
    one_process(tiny_cfg, tmp_path / "one", 20)
    log = train_in_two_processes(text_file, tmp_path / "fsdp", 20, **{"train.parallel": "fsdp"})
    assert "x 2 processes (fsdp)" in log
    assert_same_losses(losses(tmp_path / "fsdp"), losses(tmp_path / "one"))

    # The gathered checkpoint is a whole model (the tied matrix once): the 1-process weights.
    sharded, whole = ckpt.load_run(tmp_path / "fsdp"), ckpt.load_run(tmp_path / "one")
    assert sharded.model.head.weight is sharded.model.embed.tokens.weight
    ids = torch.tensor([whole.tokenizer.encode("From fairest creatures")])
    torch.testing.assert_close(sharded.model(ids)[0], whole.model(ids)[0], atol=1e-4, rtol=0)
    for run in ("one", "fsdp"):  # the optimizer state continues in 1 process too
        one_process(tiny_cfg, tmp_path / run, 24, resume=True)
    assert_same_losses(losses(tmp_path / "fsdp"), losses(tmp_path / "one"))


def test_each_process_takes_its_own_rows_of_the_global_batch():
    batch = {"ids": torch.arange(12).view(6, 2), "targets": torch.arange(6)}
    parts = [shard(batch, World(rank, 3)) for rank in range(3)]
    assert torch.equal(torch.cat([p["ids"] for p in parts]), batch["ids"])
    assert torch.equal(torch.cat([p["targets"] for p in parts]), batch["targets"])
    with pytest.raises(Exception, match="batch_size=6 does not split evenly over 4 processes"):
        shard(batch, World(0, 4))


def test_fsdp_refuses_a_bias_table_shared_across_blocks():
    """FSDP gathers each block's parameters for that block alone; T5's shared table is read by
    every block, so such a model is refused before any sharding (DDP holds it whole)."""
    cfg = ModelConfig(family="encdec", vocab_size=11, block_size=8, n_layer=2, n_head=2,
                      n_embd=16, position="t5", rel_shared=True)
    with pytest.raises(GlassformerError, match="rel_shared=True.*--train.parallel=ddp"):
        wrap(build(cfg), "fsdp", World(rank=0, size=2))
