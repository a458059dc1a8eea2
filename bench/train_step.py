"""Training speed: tokens/s of one optimizer step (zero_grad + forward + loss + backward +
AdamW step) of glassformer's GPT and Hugging Face's GPT2LMHeadModel, same config and weights.

    python -m bench.train_step [--sizes small medium] [--steps 15] [--warmup 3]
                               [--device cuda] [--bf16] [--compile]

The contenders take turns, one step each (round robin, in one process), so a slow moment of the
machine hits them all; each one's median step counts. Hugging Face runs with its default
activation (gelu_new, a Python tanh formula) and with its fast setting (gelu_pytorch_tanh, the
same function in one kernel). All use the same AdamW construction and the same loss (logits ->
cross-entropy): the difference is the model. MFU is model FLOPs (6N + 12 L H Q T per token,
glassformer/train/flops.py) x tokens/s over the matmul peak measured in the same run (fp32, or
bf16 with --bf16, which autocasts every contender's forward; --compile compiles each forward).
"""

import argparse

import torch
import torch.nn.functional as F

from bench.common import (HF_ACTIVATIONS, SIZES, gpt2_config, median_ms, ours_and_hf,
                          memory, restart_peak, run_in_child, table, timed)
from glassformer.config import TrainConfig
from glassformer.model import build
from glassformer.train.flops import flops_per_token, matmul_peak
from glassformer.train.optim import make_optimizer


def contenders(size: str, names=("glassformer", *HF_ACTIVATIONS), device: str = "cpu",
               compile: bool = False) -> dict:
    """name -> (forward returning logits, model, optimizer), the same weights in all, on
    `device`, each forward torch.compile'd if `compile`."""
    cfg = gpt2_config(size)
    found = {}
    for name in names:
        ours, hf = ours_and_hf(cfg, HF_ACTIVATIONS.get(name, "gelu_pytorch_tanh"))
        model = (ours if name == "glassformer" else hf).to(device)
        forward = ((lambda ids, m=model: m(ids)[0]) if name == "glassformer" else
                   (lambda ids, m=model: m(input_ids=ids).logits))
        found[name] = (torch.compile(forward) if compile else forward, model)
    return {name: (forward, model.train(), make_optimizer(model, TrainConfig()))
            for name, (forward, model) in found.items()}


def step(forward, optimizer, ids, bf16: bool = False) -> float:
    """One optimizer step; its loss (reading it waits for the device to finish)."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = forward(ids[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                               ids[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()
    return loss.item()


def batch(size: str, seed: int = 0):
    s = SIZES[size]
    return torch.randint(65, (s["batch"], s["block_size"] + 1),
                         generator=torch.Generator().manual_seed(seed))  # (B, T + 1)


def run_alone(size: str, name: str, steps: int) -> dict:
    """One contender's steps on its own, for its peak memory: model, gradients, optimizer
    state and activations."""
    rss = restart_peak()
    forward, _, optimizer = contenders(size, [name])[name]
    for _ in range(steps):
        step(forward, optimizer, batch(size))
    return {"rss": rss}


def measure(size: str, steps: int, warmup: int, device: str = "cpu", bf16: bool = False,
            compile: bool = False) -> dict[str, list[float]]:
    """name -> step seconds, the contenders taking turns."""
    found = contenders(size, device=device, compile=compile)
    ids = batch(size).to(device)
    first = {name: step(f, o, ids, bf16) for name, (f, _, o) in found.items()}
    spread = max(first.values()) - min(first.values())
    print(f"{size}: first-step losses agree to {spread:.1e} (same weights, same batch)")
    times = {name: [] for name in found}
    for i in range(warmup + steps):
        for name, (forward, _, optimizer) in found.items():
            t = timed(lambda: step(forward, optimizer, ids, bf16))
            if i >= warmup:
                times[name].append(t)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=15, help="timed steps per contender (>= 10)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: no peak-RSS runs (the memory is the GPU's)")
    parser.add_argument("--bf16", action="store_true", help="autocast the forward to bfloat16")
    parser.add_argument("--compile", action="store_true", help="torch.compile each forward")
    args = parser.parse_args()
    args.no_memory |= args.device == "cuda"

    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = matmul_peak(args.device, dtype)
    print(f"{args.device}, {torch.get_num_threads()} threads; {str(dtype)[6:]} matmul peak "
          f"{peak / 1e9:,.0f} GFLOP/s (2048 x 2048, fastest of 5)"
          + (", forwards compiled" if args.compile else ""))
    rows = []
    for size in args.sizes:
        s = SIZES[size]
        tokens = s["batch"] * s["block_size"]
        cfg = gpt2_config(size)
        flops = flops_per_token(build(cfg), s["block_size"])
        times = measure(size, args.steps, args.warmup, args.device, args.bf16, args.compile)
        rate = {name: tokens / (median_ms(t) / 1000) for name, t in times.items()}
        for name, t in times.items():
            rss = (None if args.no_memory
                   else run_in_child(run_alone, size, name, args.warmup + 2))
            rows.append([size, name, f"{median_ms(t):.1f}", f"{rate[name]:,.0f}",
                         f"{rate['glassformer'] / rate[name]:.2f}",
                         f"{100 * flops * rate[name] / peak:.0f}%",
                         memory(rss)])
    print()
    print(table(["size", "model", "ms/step", "tokens/s", "glassformer is x", "MFU",
                 "peak RSS MiB (+ for the model)"], rows))


if __name__ == "__main__":
    main()
