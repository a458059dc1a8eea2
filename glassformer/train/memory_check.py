"""Will training fit this machine? Before the model is built, train() compares the estimated
peak of a training step (train/memory.py) with the memory free on the device and refuses what
cannot fit, in one line that says what to change; a run that still runs out of memory ends in
one line too (out_of_memory_explained).

Free memory: on a CUDA GPU, what the driver reports (torch.cuda.mem_get_info). On the CPU,
MemAvailable of /proc/meminfo, capped in a container by its cgroup's limit less what the cgroup
uses (v2: memory.max and memory.current; v1: memory.limit_in_bytes and memory.usage_in_bytes),
page cache it can reclaim (inactive_file) not counted as used. Elsewhere (Apple's MPS shares
the machine's memory) there is no reliable figure, and no check.
"""

import contextlib
import re
from pathlib import Path

import torch

from glassformer.errors import GlassformerError
from glassformer.train.checkpoint import has_checkpoint
from glassformer.train.device import compute_dtype
from glassformer.train.distributed import ALONE
from glassformer.train.memory import estimate, format_bytes

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")
# Each cgroup version's files, under CGROUP: limit, usage, statistics and the statistic that
# counts reclaimable page cache
CGROUP_FILES = [("memory.max", "memory.current", "memory.stat", "inactive_file"),
                ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes",
                 "memory/memory.stat", "total_inactive_file")]
CPU_ALLOCATOR_FAILED = "DefaultCPUAllocator: can't allocate memory"  # a plain RuntimeError


def check_memory(cfg, device, world=ALONE, row_tokens: int | None = None) -> None:
    """Refuse to train `cfg` (a RunConfig) on `device` when the estimated peak of a training
    step is more than the memory available there; train.ignore_memory_check skips this.
    `row_tokens`: the longest row the task's batches hold, when shorter than block_size (the
    chat task pads each batch to its longest conversation)."""
    if cfg.train.ignore_memory_check:
        return
    available = available_memory(device)
    if available is None:
        return
    needed = training_need(cfg, device, world, row_tokens)
    if needed > available:
        tc, block = cfg.train, row_tokens or cfg.model.block_size
        processes = f", in {world.size} processes" if world.size > 1 else ""
        raise GlassformerError(
            f"training needs about {format_bytes(needed)} (estimated peak of one step: weights, "
            f"gradients, AdamW state and the activations of batch {tc.batch_size} x block "
            f"{block}{processes}) but {format_bytes(available)} is available on {device}; use a "
            "smaller --train.batch_size (a larger --train.grad_accum keeps the batch), "
            "--model.block_size or model (`glassformer inspect memory` shows the parts), or try "
            "anyway with --train.ignore_memory_check=true")


def training_need(cfg, device, world=ALONE, row_tokens: int | None = None) -> int:
    """Bytes training `cfg` holds at its peak on this machine. Each process holds the weights,
    gradients and AdamW state in fp32 (1/N of them under FSDP; a LoRA run's frozen weights
    have neither gradients nor AdamW state, and its adapters are small) and the activations of
    its share of the batch in the compute precision (bf16 halves them); processes on the CPU
    share one memory. `row_tokens` as in check_memory."""
    tc, block = cfg.train, row_tokens or cfg.model.block_size
    parts = estimate(cfg.model, tc.batch_size // world.size, block, "fp32")["parts"]
    state = parts["weights"] + (0 if tc.lora_rank else parts["gradients"] + parts["AdamW state"])
    if tc.parallel == "fsdp":
        state //= world.size
    activations = parts["activations"] * torch.finfo(compute_dtype(device)).bits // 32
    return (state + activations) * (world.size if torch.device(device).type == "cpu" else 1)


def available_memory(device) -> int | None:
    """Bytes free for training on `device`, or None where there is no reliable figure."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    if device.type == "cpu":
        figures = [f for f in (meminfo_available(), cgroup_available()) if f is not None]
        return min(figures, default=None)
    return None


def meminfo_available() -> int | None:
    """MemAvailable of /proc/meminfo (Linux): what can be allocated without swapping."""
    try:
        lines = MEMINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # "MemAvailable:  8388608 kB"
    return None


def cgroup_available() -> int | None:
    """What this process's cgroup (a container) may still allocate: its limit less its usage,
    reclaimable page cache not counted; None without a cgroup limit."""
    for limit_file, usage_file, stat_file, cache in CGROUP_FILES:
        try:
            limit = (CGROUP / limit_file).read_text().strip()
            usage = int((CGROUP / usage_file).read_text())
        except (OSError, ValueError):
            continue
        if not limit.isdigit():  # v2 writes "max" for no limit
            return None
        try:
            stat = dict(line.split() for line in (CGROUP / stat_file).read_text().splitlines())
        except (OSError, ValueError):
            stat = {}
        return max(0, int(limit) - usage + int(stat.get(cache, 0)))
    return None


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is a failed allocation: torch's OutOfMemoryError (CUDA), Python's
    MemoryError, or the CPU allocator's failure, which torch raises as a plain RuntimeError."""
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and CPU_ALLOCATOR_FAILED in str(err))


@contextlib.contextmanager
def out_of_memory_explained(run_dir):
    """Inside, running out of memory while training the run in `run_dir` becomes one
    GlassformerError: what the run kept and what to change."""
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        tried = re.search(r"tried to allocate [\d.]+ ?\w+", str(err), re.IGNORECASE)
        what = tried.group(0).lower() if tried else type(err).__name__
        smaller = ("a smaller --train.batch_size (a larger --train.grad_accum keeps the batch), "
                   "--model.block_size or model")
        if has_checkpoint(run_dir):
            then = (f"the last checkpoint in {run_dir} is whole: continue with `glassformer "
                    f"train --out {run_dir} --resume --train.batch_size=N` or start again with "
                    f"{smaller}")
        else:
            then = f"no checkpoint was written yet; start again with {smaller}"
        raise GlassformerError(f"out of memory while training ({what}); {then}") from None
