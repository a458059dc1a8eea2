"""Low-rank adapters (LoRA, Hu et al. 2021): fine-tune a trained model by learning, for chosen
linear layers W (out, in), a low-rank update while W itself stays frozen:

  W' = W + (alpha / r) B A        A (r, in), B (out, r), r much smaller than in and out
  y  = x W^T + b + (alpha / r) dropout(x) A^T B^T

B starts at zero, so training starts from the model itself. Targets, named after the parts:

  q, k, v        the query, key and value rows of self-attention's fused qkv projection
                 (attention.py): each adapter updates its own row block only
  o              self-attention's output projection W_O (`proj`)
  fc, up, proj   the feed-forward's layers (mlp.py; `up` exists in gated ones; every expert)

Everything else is frozen, except a classifier head (bert with n_classes): a new task's head
has nothing to adapt from, so it trains in full (peft's `modules_to_save`). Cross-attention
layers of the encoder-decoder are left as they are.
"""

import math

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from glassformer.config import LORA_TARGETS
from glassformer.errors import GlassformerError
from glassformer.model.block import Block
from glassformer.model.moe import MoE


class LowRank(nn.Module):
    """One adapter: adds (alpha / r) B A x to rows [start, stop) of its layer's output."""

    def __init__(self, in_features: int, start: int, stop: int, rank: int, alpha: float,
                 dropout: float):
        super().__init__()
        self.start, self.stop, self.scale = start, stop, alpha / rank
        self.A = nn.Parameter(torch.empty(rank, in_features))  # (r, in)
        self.B = nn.Parameter(torch.zeros(stop - start, rank))  # (rows, r): zero, so W' = W
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise A
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.scale * (self.dropout(x) @ self.A.T @ self.B.T)  # (..., in) -> (..., rows)

    def delta(self) -> torch.Tensor:
        """The update of the layer's weight rows: (alpha / r) B A, (rows, in)."""
        return self.scale * (self.B @ self.A)


class LoRALinear(nn.Module):
    """A linear layer with adapters on row blocks of its output. Its `weight` and `bias` keep
    their names, so a plain checkpoint's weights load into it (init_from)."""

    def __init__(self, linear: nn.Linear, adapters: dict[str, LowRank]):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias  # (out, in), (out,) or None
        self.adapters = nn.ModuleDict(adapters)

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)  # (..., in) -> (..., out)
        for a in self.adapters.values():
            y = y + F.pad(a(x), (a.start, self.out_features - a.stop))  # zero outside its rows
        return y

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain linear layer whose weight is W + every adapter's update."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        weight = self.weight.clone()  # (out, in)
        for a in self.adapters.values():
            weight[a.start:a.stop] += a.delta()
        linear.weight.copy_(weight)
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        return linear


def add_adapters(model, rank: int, alpha: float, dropout: float, targets) -> None:
    """Freeze `model` and give the `targets` layers of each of its blocks adapters of rank
    `rank`, in place; a classifier head stays trainable."""
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown:
        raise GlassformerError(f"unknown LoRA targets {unknown}; choose from "
                               f"{', '.join(LORA_TARGETS)}")

    def adapt(linear, rows: dict[str, tuple[int, int]]):
        return LoRALinear(linear, {name: LowRank(linear.in_features, start, stop, rank, alpha,
                                                 dropout).to(linear.weight)  # its device, dtype
                                   for name, (start, stop) in rows.items()})

    model.requires_grad_(False)
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        attn = block.attn
        C, kv = attn.n_head * attn.head_dim, attn.kv_heads * attn.head_dim
        qkv_rows = {"q": (0, C), "k": (C, C + kv), "v": (C + kv, C + 2 * kv)}  # [W_Q; W_K; W_V]
        chosen = {name: rows for name, rows in qkv_rows.items() if name in targets}
        if chosen:
            attn.qkv = adapt(attn.qkv, chosen)
        if "o" in targets:
            attn.proj = adapt(attn.proj, {"o": (0, attn.proj.out_features)})
        for mlp in block.mlp.experts if isinstance(block.mlp, MoE) else [block.mlp]:
            for name in ("fc", "up", "proj"):
                layer = getattr(mlp, name)
                if name in targets and layer is not None:
                    setattr(mlp, name, adapt(layer, {name: (0, layer.out_features)}))
    if getattr(model, "classifier", None) is not None:
        model.classifier.requires_grad_(True)


def merge(model) -> None:
    """Fold every adapter into its layer's weight, in place: a plain model again (the same
    outputs, no adapters, every weight trainable), as any run's."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged())
    model.requires_grad_(True)


def trained_weights(model) -> dict[str, torch.Tensor]:
    """What fine-tuning changed: the adapters (and a classifier head), by name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_adapters(model, path, step: int = 0) -> None:
    """Write the adapters (and a classifier head) alone to a safetensors file."""
    tensors = {name: p.detach().cpu().contiguous() for name, p in trained_weights(model).items()}
    save_file(tensors, str(path), metadata={"step": str(step)})


def load_adapters(model, path) -> int:
    """Load an adapter file into `model`, which has adapters of the same targets and rank
    (add_adapters) on the base weights; return the step it was saved at."""
    try:
        tensors = load_file(str(path), device=str(next(model.parameters()).device))
        with safe_open(str(path), framework="pt") as f:
            step = int((f.metadata() or {}).get("step", 0))
    except Exception as err:  # safetensors reports a bad file with several error types
        raise GlassformerError(f"{path} is not a readable adapter file ({type(err).__name__}: "
                               f"{err})") from None
    expected = {name: p.shape for name, p in trained_weights(model).items()}
    if {name: t.shape for name, t in tensors.items()} != expected:
        raise GlassformerError(f"{path} does not fit this model's adapters: it has "
                               f"{len(tensors)} tensors, the model {len(expected)}; were they "
                               "trained with the same lora_rank and lora_targets?")
    model.load_state_dict(tensors, strict=False)
    return step
