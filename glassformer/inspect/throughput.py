"""Training speed as sequences grow: forward+backward tokens per second at several lengths T,
with the same number of tokens in every step (B = tokens_per_step // T sequences of length T).

Attention's work per token grows with T (each query reads T keys) but the T positions of a
sequence are computed at once; a recurrence's work per token stays the same, but its T steps
run one after another. The measurement uses a fresh model and random tokens: speed depends on
shapes, not on what the model has learned.
"""

import dataclasses
import time
from pathlib import Path

LENGTHS = (64, 128, 256, 512)
REPEATS = 3  # timed steps at each length; the fastest counts


def measure_throughput(cfg, lengths=LENGTHS, tokens_per_step: int = 4096, device="cpu",
                       repeats: int = REPEATS) -> dict[int, dict]:
    """{T: {"batch": B, "tokens_per_s": rate}} for a model built from ModelConfig `cfg` (with
    block_size T): one untimed warm-up step, then the fastest of `repeats` timed
    forward+backward steps on B random sequences of T tokens, in the training loop's precision
    (the fastest: other work on the machine only ever slows a step down)."""
    import torch

    from glassformer.model import build
    from glassformer.train.device import autocast

    def synchronize():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    results = {}
    for T in lengths:
        B = max(1, tokens_per_step // T)
        torch.manual_seed(0)
        model = build(dataclasses.replace(cfg, block_size=T)).to(device).train()
        ids = torch.randint(cfg.vocab_size, (B, T + 1), device=device)  # (B, T + 1)

        def step():
            with autocast(device):
                _, loss = model(ids[:, :-1], ids[:, 1:])  # inputs and next tokens, (B, T) each
            loss.backward()
            model.zero_grad(set_to_none=True)

        step()  # warm-up: first-call allocations and kernel choices are not timed
        fastest = float("inf")
        for _ in range(repeats):
            synchronize()
            start = time.perf_counter()
            step()
            synchronize()
            fastest = min(fastest, time.perf_counter() - start)
        results[T] = {"batch": B, "tokens_per_s": round(B * T / fastest)}
    return results


def throughput_chart(rates: dict, path, title: str = "") -> Path:
    """Tokens/s against T (both axes logarithmic), one line per model.
    rates {name: {T: tokens/s}}; 7 x 4.5 inches."""
    from glassformer.inspect.plots import new_figure, save

    fig = new_figure(7, 4.5)
    ax = fig.subplots()
    for name, by_length in rates.items():
        lengths = sorted(by_length)
        ax.plot(lengths, [by_length[T] for T in lengths], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted({T for by_length in rates.values() for T in by_length}))
    ax.xaxis.set_major_formatter("{x:.0f}")
    ax.set_xlabel("sequence length T (the same tokens per step at every T)")
    ax.set_ylabel("training tokens/s (forward + backward)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)
