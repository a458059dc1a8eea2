"""What the benchmarks share: glassformer's GPT and Hugging Face's GPT2LMHeadModel with the same
weights, the sizes the issue names, medians, peak memory measured in a child process, and a
plain-text table."""

import multiprocessing
import re
import statistics
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from glassformer.config import ModelConfig
from glassformer.interop.gpt2 import to_hf
from glassformer.model import build

# GPT-2's layout at two sizes; `batch` is the training batch in sequences.
SIZES = {
    "small": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch": 12},
    "medium": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "batch": 16},
}
VOCAB = 65  # tinyshakespeare's characters
HF_ACTIVATIONS = {"hf gelu_new": "gelu_new", "hf fast gelu": "gelu_pytorch_tanh"}


def gpt2_config(size: str, block_size: int | None = None) -> ModelConfig:
    """The GPT-2 layout (learned positions, LayerNorm, biases, tanh GELU, tied head) at `size`."""
    s = SIZES[size]
    return ModelConfig(vocab_size=VOCAB, block_size=block_size or s["block_size"],
                       n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                       dropout=0.0, activation="gelu_tanh")


def ours_and_hf(cfg: ModelConfig, activation: str = "gelu_pytorch_tanh", seed: int = 0):
    """Our GPT (seeded init) and a GPT2LMHeadModel holding the same weights."""
    torch.manual_seed(seed)
    ours = build(cfg)
    fields, state = to_hf(cfg, ours.state_dict())
    fields = {k: v for k, v in fields.items() if k not in ("model_type", "architectures")}
    hf = GPT2LMHeadModel(GPT2Config(**fields | {"activation_function": activation}))
    hf.load_state_dict(state, strict=False)  # the causal-mask buffers are not weights
    return ours, hf


def median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_in_child(target, *args) -> dict:
    """target(*args) in a fresh process, so that each contender's memory is its own: target
    returns a dict holding "rss" from restart_peak(), called where its measurement starts, and
    gets "peak_rss" added, the most it was resident (MiB) since."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_with_peak, (target, args))


def restart_peak() -> float:
    """The MiB resident now; the peak (Linux's VmHWM) restarts from here."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def _with_peak(target, args) -> dict:
    return target(*args) | {"peak_rss": _status_mib("VmHWM")}


def _status_mib(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


def memory(result: dict | None) -> str:
    """A run_in_child result's peak RSS, and how much of it came after restart_peak()."""
    if result is None:
        return "-"
    return f"{result['peak_rss']:.0f} (+{result['peak_rss'] - result['rss']:.0f})"


def table(header: list[str], rows: list[list]) -> str:
    """Columns right-aligned under their headers."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
