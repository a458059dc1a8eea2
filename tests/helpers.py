"""Plain helpers shared by test modules (fixtures live in conftest.py)."""

import torch

from glassformer.model.gpt import GPT


def lively_gpt(cfg, seed: int = 0) -> GPT:
    """GPT(cfg) in eval mode with its biases and norm gains moved off 0 and 1, so that every
    parameter matters to the output (a wrongly copied or ignored one then shows)."""
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model
