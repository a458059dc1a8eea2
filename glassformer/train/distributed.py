"""Training in several processes (torchrun): one per GPU, or several on a CPU, on one or more
machines. What the training loop needs, and nothing else:

  setup          join the process group torchrun describes (NCCL on CUDA, Gloo on the CPU)
  wrap           DistributedDataParallel (every process holds the whole model, gradients are
                 averaged) or FSDP2 (`fully_shard`: each holds 1/N of the weights, gradients and
                 optimizer state, gathered layer by layer when needed)
  shard          this process's rows of the global batch
  gradient_sync  average gradients only on the last micro-batch of a step (`no_sync` before)
  mean           the mean of a number over the processes (the logged loss)

The global batch does not depend on N: every process draws the same batch from the shared
seeded generator and trains on its own 1/N of the rows, so N processes see exactly the samples
one process sees, and each a different part of them.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from glassformer.errors import GlassformerError
from glassformer.model.block import Block
from glassformer.train.device import pick_device


@dataclass(frozen=True)
class World:
    """This process's place among `size` processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Process 0 prints, writes metrics and checkpoints."""
        return self.rank == 0


ALONE = World()


def setup(device_name: str) -> tuple[World, torch.device]:
    """Join the process group that torchrun's environment variables describe (WORLD_SIZE, RANK,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT); without them, one process on `device_name`."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if size == 1:
        return ALONE, device
    if device.type == "cuda":  # one GPU per process on each machine
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise GlassformerError(f"several processes train on CUDA GPUs or the CPU, not "
                               f"{device.type}; add --train.device=cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return World(dist.get_rank(), size), device


def wait_for_all(world: World) -> None:
    """Return when every process has come here (one process: at once)."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()


def teardown(world: World) -> None:
    """Leave the process group together: no process tears down while another still talks to it
    (a Gloo process destroyed mid-exchange aborts its peer)."""
    wait_for_all(world)
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model, parallel: str, world: World):
    """The model as the processes share it: itself alone, DDP, or sharded in place (FSDP2:
    each block is one unit gathered for its forward and backward, the rest another)."""
    if world.size == 1:
        return model
    if parallel == "ddp":
        return DistributedDataParallel(model)
    if model.cfg.rel_shared:  # a block's parameter read by other blocks: no unit of its own
        raise GlassformerError("--train.parallel=fsdp shards each block on its own, and "
                               "rel_shared=True lends the first block's relative-bias table to "
                               "the others; train this model with --train.parallel=ddp")
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        fully_shard(block)
    return fully_shard(model)


def unwrapped(model):
    """The model under torch.compile's and DDP's wrappers (FSDP2 shards it in place)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, DistributedDataParallel) else model


def shard(batch: dict, world: World) -> dict:
    """This process's rows of every (B, ...) tensor of the global batch: B/N of them."""
    if world.size == 1:
        return batch
    B = next(iter(batch.values())).size(0)
    if B % world.size:
        raise GlassformerError(f"train.batch_size={B} does not split evenly over {world.size} "
                               f"processes; choose a multiple of {world.size}")
    rows = slice(world.rank * B // world.size, (world.rank + 1) * B // world.size)
    return {name: value[rows] for name, value in batch.items()}


@contextlib.contextmanager
def gradient_sync(model, sync: bool):
    """Inside, backward averages gradients over the processes only if `sync`; otherwise each
    process accumulates its own (the micro-batches before the last of a step)."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)
        yield
    elif isinstance(model, DistributedDataParallel) and not sync:
        with model.no_sync():
            yield
    else:
        yield


def clip_grad_norm(model, max_norm: float) -> float:
    """Clip the global gradient norm (0: no clipping); return the norm before clipping. Under
    FSDP each process holds a shard of the gradients, and the norm is computed over all."""
    limit = max_norm if max_norm > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), limit)
    return (norm.full_tensor() if isinstance(norm, DTensor) else norm).item()


def mean(value: float, world: World) -> float:
    """The mean of `value` over the processes (each process's loss -> the global batch's)."""
    if world.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64,
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.item() / world.size


def launch(nproc: int, argv: list[str]) -> int:
    """Run `glassformer ARGV` in `nproc` processes on this machine with torchrun (a free port
    is picked, so runs do not collide); return its exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "glassformer", *argv]
    return subprocess.run(command).returncode
