"""Will it fit? train() compares the estimated peak of a training step with the memory available
before it builds the model, and refuses in one line what cannot fit."""

import time

import pytest
import torch

from glassformer.errors import GlassformerError
from glassformer.train import checkpoint as ckpt
from glassformer.train import memory_check as memory
from glassformer.train.distributed import World
from glassformer.train.loop import train
from glassformer.train.memory import estimate

GiB = 1 << 30


def test_a_model_far_too_large_is_refused_before_it_is_built(tiny_cfg, tmp_path, monkeypatch):
    def never(cfg):
        raise AssertionError("the model was built")

    monkeypatch.setattr(ckpt, "build_run_model", never)
    started = time.perf_counter()
    with pytest.raises(GlassformerError, match=r"training needs about [\d.]+ GiB \(estimated") \
            as info:
        train(tiny_cfg(model__n_embd=65536), tmp_path / "run")  # 103 billion parameters
    assert time.perf_counter() - started < 2  # the check is arithmetic on a meta-device model
    assert "--train.batch_size" in str(info.value) and "\n" not in str(info.value)


def test_a_tiny_model_is_refused_when_little_memory_is_available(tiny_cfg, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 1 << 16)
    with pytest.raises(GlassformerError, match=r"but 64.0 KiB is available on cpu") as info:
        train(tiny_cfg(), tmp_path / "run")
    assert "--train.ignore_memory_check=true" in str(info.value)
    assert not ckpt.has_checkpoint(tmp_path / "run")


def test_ignore_memory_check_trains_anyway(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 1 << 16)
    train(tiny_cfg(train__ignore_memory_check="true", train__max_steps=2), tmp_path / "run")
    assert ckpt.load_run(tmp_path / "run").step == 2


def test_no_figure_for_the_device_means_no_check(tiny_cfg, monkeypatch):
    """An MPS GPU shares the machine's memory and says nothing reliable about it."""
    monkeypatch.setattr(memory, "available_memory", lambda device: None)
    memory.check_memory(tiny_cfg(model__n_embd=65536), torch.device("cpu"))  # no error


def test_the_need_is_the_estimated_peak_per_process_and_processes_share_the_cpu(tiny_cfg):
    cfg = tiny_cfg()
    one = estimate(cfg.model, cfg.train.batch_size, cfg.model.block_size)
    assert memory.training_need(cfg, torch.device("cpu")) == one["training_peak"]
    half = estimate(cfg.model, cfg.train.batch_size // 2, cfg.model.block_size)
    state = one["training_peak"] - one["parts"]["activations"]
    two = World(rank=0, size=2)
    assert memory.training_need(cfg, torch.device("cpu"), two) == \
        2 * (state + half["parts"]["activations"])  # DDP: each holds the whole model
    fsdp = tiny_cfg(train__parallel="fsdp")
    assert memory.training_need(fsdp, torch.device("cpu"), two) == \
        2 * (state // 2 + half["parts"]["activations"])  # FSDP: each holds half


def test_bf16_halves_the_activations_and_lora_trains_no_state_for_frozen_weights(tiny_cfg,
                                                                                monkeypatch):
    cfg = tiny_cfg()
    est = estimate(cfg.model, cfg.train.batch_size, cfg.model.block_size)
    parts = est["parts"]
    lora = tiny_cfg(train__lora_rank=4)
    assert memory.training_need(lora, torch.device("cpu")) == \
        parts["weights"] + parts["activations"]
    monkeypatch.setattr(memory, "compute_dtype", lambda device: torch.bfloat16)  # a CUDA GPU's
    assert memory.training_need(cfg, torch.device("cpu")) == \
        est["training_peak"] - parts["activations"] // 2


def test_cpu_memory_is_the_least_of_meminfo_and_the_cgroup_limit(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:    8388608 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    monkeypatch.setattr(memory, "CGROUP", cgroup)
    assert memory.available_memory(torch.device("cpu")) == 8 * GiB  # no cgroup files

    (cgroup / "memory.max").write_text("max\n")  # v2, no limit
    (cgroup / "memory.current").write_text(f"{GiB}\n")
    (cgroup / "memory.stat").write_text("anon 1000\ninactive_file 0\n")
    assert memory.available_memory(torch.device("cpu")) == 8 * GiB

    (cgroup / "memory.max").write_text(f"{2 * GiB}\n")  # a 2 GiB container, 1 GiB in use of
    (cgroup / "memory.stat").write_text(f"anon 1000\ninactive_file {GiB // 4}\n")  # which a
    assert memory.available_memory(torch.device("cpu")) == GiB + GiB // 4  # quarter is cache

    for name in ("memory.max", "memory.current", "memory.stat"):  # v1
        (cgroup / name).unlink()
    (cgroup / "memory").mkdir()
    (cgroup / "memory" / "memory.limit_in_bytes").write_text(f"{3 * GiB}\n")
    (cgroup / "memory" / "memory.usage_in_bytes").write_text(f"{GiB}\n")
    (cgroup / "memory" / "memory.stat").write_text("total_inactive_file 0\n")
    assert memory.available_memory(torch.device("cpu")) == 2 * GiB


def test_cuda_memory_is_what_the_driver_says_is_free(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (5 * GiB, 80 * GiB))
    assert memory.available_memory(torch.device("cuda", 0)) == 5 * GiB


@pytest.mark.parametrize("failure, out_of_memory", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 1125899906842624 bytes."), True),
    (MemoryError(), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
])
def test_out_of_memory_is_told_from_other_errors(failure, out_of_memory):
    assert memory.is_out_of_memory(failure) == out_of_memory
