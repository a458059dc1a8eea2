"""Will it fit? Memory for training and generation, estimated from the config before training,
and the peak measured in a short real training step.

For N parameters of b bytes each (4 for fp32, 2 for bf16), batch B and block T:
  weights      N b
  gradients    N b
  AdamW state  2 N b                   the running mean and mean square of every gradient
  activations  B T b (L (8C + f F) + 3C + 2V)   what the forward saves for the backward:
               per block and token, the block input, norm outputs, q|k|v (3C), attention output,
               residual sums (8C in all) and f tensors of the feed-forward width F (ReLU 1: its
               output; squared ReLU 2: relu's output and its square; either GELU 2: its input
               and output; SwiGLU/GeGLU 4: gate, activation, up, product); at the end the final
               norm's input and output and the head's input (3C), the logits and their
               log-softmax (2V). Softmax attention on the explicit math kernel, or on torch's
               fused one given a score bias or mask (ALiBi, T5, a window), also keeps each
               layer's (B, H, T, T) attention weights: + L H T per token.
  KV cache     2 L Hkv D b per token   keys and values of every layer, for generation
The estimated training peak is the sum of the first four (the backward starts with every
activation saved while the gradients fill in). Linear attention and mixtures of experts save
more than this (running sums, routed copies), so their estimates are low.
"""

import dataclasses

from glassformer.config import FORMS_SCORES, POSITION_ACTS_ON

BYTES = {"fp32": 4, "bf16": 2}
# Tensors of width F per token that each activation's feed-forward saves (see above)
SAVED_FFN = {"relu": 1, "relu2": 2, "gelu": 2, "gelu_tanh": 2, "swiglu": 4, "geglu": 4}


def count_on_meta(model_cfg) -> int:
    """The parameter count of the model `model_cfg` describes, built without memory."""
    import torch

    from glassformer.model import count_parameters
    from glassformer.model import build

    with torch.device("meta"):
        return count_parameters(build(model_cfg))


def estimate(model_cfg, batch: int, block: int, dtype: str = "fp32") -> dict:
    """Bytes of each part of one training step, and of the KV cache per token, from formulas."""
    m, b = model_cfg, BYTES[dtype]
    n = count_on_meta(m)
    per_token = m.n_layer * (8 * m.n_embd + SAVED_FFN[m.activation] * m.hidden) \
        + 3 * m.n_embd + 2 * m.vocab_size
    masked = POSITION_ACTS_ON[m.position] == "scores" or m.window is not None
    if FORMS_SCORES[m.attention] and (m.kernel == "math" or masked):
        per_token += m.n_layer * m.n_head * block  # each query's row of weights, per head
    parts = {"weights": n * b, "gradients": n * b, "AdamW state": 2 * n * b,
             "activations": batch * block * per_token * b}
    return {"parameters": n, "parts": parts, "training_peak": sum(parts.values()),
            "kv_cache_per_token": 2 * m.n_layer * m.kv_heads * m.head_dim * b}


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
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
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
    from glassformer.inspect.params import format_bytes

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
