"""Where to run and in which precision: cuda, then mps, then cpu."""

import contextlib

import torch

from glassformer.errors import GlassformerError


def pick_device(name: str = "auto") -> torch.device:
    """The device `name` asks for; "auto" takes cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available[name]:
        raise GlassformerError(f"device {name!r} is not available here; use --train.device=auto")
    return torch.device(name)


def compute_dtype(device) -> torch.dtype:
    """The precision training's matmuls run in: bf16 on CUDA GPUs that support it; fp32
    elsewhere (fp16 would need loss scaling; CPU bf16 matmuls are slower without AMX)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def autocast(device):
    """Mixed precision where it is safe and fast (compute_dtype), else nothing."""
    if compute_dtype(device) != torch.float32:
        return torch.autocast(torch.device(device).type, dtype=compute_dtype(device))
    return contextlib.nullcontext()
