"""Will it fit? The memory of a training step and the KV cache as estimated from the config
(train/memory.py, where the formulas are written down), beside the peak measured in a short real
training step.
"""

import contextlib
import dataclasses
import os
import sys

from glassformer.train.memory import BYTES, estimate, format_bytes


def measure_peak(run_cfg, batch: int, block: int, dtype: str = "fp32", steps: int = 2) -> int:
    """The peak bytes of live CPU tensors from building the model through `steps` training
    steps on random tokens (forward, backward, gradient clipping and AdamW, as the training loop
    does them), counted by the profiler's record of every tensor allocation and free. The second
    step is the steady state: the AdamW state exists and the gradients are rebuilt."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from glassformer.model import build
    from glassformer.train.optim import make_optimizer

    m = dataclasses.replace(run_cfg.model, block_size=block)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(m.vocab_size, (batch, block + 1), generator=generator)  # (B, T+1)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()  # (B, T) each
    with native_stderr_silenced(), \
            profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        torch.manual_seed(run_cfg.train.seed)
        model = build(m).to({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]).train()
        optimizer = make_optimizer(model, run_cfg.train)
        for _ in range(steps):
            _, loss = model(ids=x, targets=y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return profiled_peak(prof)


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 sent to /dev/null inside: the profiler's C++ library (Kineto) writes
    "USDT: ... profiler_start/stop" lines there, and only an environment variable set before
    the process started (KINETO_LOG_LEVEL=6) would quiet it otherwise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profiled_peak(prof) -> int:
    """The most bytes held at once by tensors made while `prof` (a torch profiler run with
    profile_memory=True) recorded. Each "[memory]" event is one allocation (+bytes) or free
    (-bytes); in time order, their running sum is what is held."""
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak


def report(run_cfg, batch: int, block: int, dtype: str, measured: int | None) -> str:
    """The estimate as text, with the measured peak beside it when there is one."""
    est = estimate(run_cfg.model, batch, block, dtype)
    m = run_cfg.model
    lines = [f"{est['parameters']:,} parameters | batch {batch} x block {block} | {dtype}", "",
             "training step (estimated):"]
    lines += [f"  {name:<12} {format_bytes(n):>12}" for name, n in est["parts"].items()]
    lines.append(f"  {'peak':<12} {format_bytes(est['training_peak']):>12}")
    if measured is not None:
        ratio = est["training_peak"] / measured
        lines.append(f"  measured peak of a real step: {format_bytes(measured)} "
                     f"(estimate / measured = {ratio:.2f})")
    kv = est["kv_cache_per_token"]
    lines += ["", "generation:",
              f"  KV cache per token  {format_bytes(kv):>12}  (2 x {m.n_layer} layers x "
              f"{m.kv_heads} kv heads x {m.head_dim} dims x {BYTES[dtype]} bytes)",
              f"  full window         {format_bytes(kv * batch * block):>12}  "
              f"({batch} sequences x {block} tokens)"]
    return "\n".join(lines)
