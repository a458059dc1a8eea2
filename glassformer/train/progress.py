"""A one-line progress display: step, loss, tokens/s, model FLOPs utilisation (MFU, see
train/flops.py) and ETA, redrawn in place on a terminal."""

import math
import time

from glassformer.model import count_parameters


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Call `update(step, loss, tokens)` after each step; `print()` keeps the bar intact.

    `flops_per_token` and the hardware's `peak` FLOP/s (0: unknown) give the MFU."""

    def __init__(self, total_steps: int, start_step: int, stream, flops_per_token: float = 0.0,
                 peak: float = 0.0):
        self.total, self.start_step, self.stream = total_steps, start_step, stream
        self.flops_per_token, self.peak = flops_per_token, peak
        self.tty = stream.isatty()
        self.t0 = time.perf_counter()
        self.tokens = 0
        self.last_line = ""

    def update(self, step: int, loss: float, tokens: int) -> float:
        """Redraw the line; return the tokens/s since the start."""
        self.tokens += tokens
        elapsed = time.perf_counter() - self.t0
        rate = self.tokens / max(elapsed, 1e-9)
        eta = elapsed / max(step - self.start_step, 1) * (self.total - step)
        width = 24
        filled = width * step // self.total
        self.last_line = (f"[{'#' * filled}{'.' * (width - filled)}] step {step}/{self.total} "
                          f"| loss {loss:.4f} | {rate / 1000:.1f}k tok/s"
                          + (f" | MFU {self.mfu(rate):.0%}" if self.peak else "")
                          + f" | ETA {format_duration(eta)}")
        if self.tty:
            self.stream.write("\r" + self.last_line + "\033[K")
            self.stream.flush()
        elif step % max(1, self.total // 20) == 0 or step == self.total:
            self.stream.write(self.last_line + "\n")  # a log or CI gets 20 lines, not thousands
            self.stream.flush()
        return rate

    def mfu(self, rate: float) -> float:
        """The share of the peak that `rate` tokens/s use (0 when the peak is unknown)."""
        return self.flops_per_token * rate / self.peak if self.peak else 0.0

    def evaluation(self, metrics: dict, sample: str) -> None:
        """An evaluation's line (its metrics but the step and time) and the sample it wrote."""
        self.print(f"step {metrics['step']}: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.4f}" for k, v in metrics.items()
            if k not in ("step", "elapsed_s")))
        if sample:
            self.print("---- sample ----\n" + sample + "\n----------------")

    def done(self, last_eval: dict, seconds: float, run_dir) -> None:
        """The last line of a run: its final validation loss, time and directory."""
        val = last_eval["val_loss"]
        self.print(f"done: step {last_eval['step']}, val loss {val:.4f} ({val / math.log(2):.3f} "
                   f"bits/token) in {format_duration(seconds)}; run saved in {run_dir}")

    def print(self, text: str) -> None:
        """Print `text` on its own lines (clearing the bar on a terminal)."""
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def describe_run(cfg, model, task, device, world, resumed_at: int | None) -> str:
    """The line a training run starts with: parameters (trainable ones with LoRA), the model's
    shape, the data, the device and processes, and the step a resumed run continues from."""
    mc, tc = cfg.model, cfg.train
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return (f"{count_parameters(model):,} parameters"
            + (f" ({trainable:,} trainable: LoRA rank {tc.lora_rank})" if tc.lora_rank else "")
            + f" | {mc.family}, {mc.n_layer} layers, {mc.n_head} heads, width {mc.n_embd}, "
            f"block {mc.block_size} | vocab {task.tokenizer.vocab_size} | "
            f"{task.describe()} | {device}"
            + (f" x {world.size} processes ({tc.parallel})" if world.size > 1 else "")
            + (f" | resuming at step {resumed_at}" if resumed_at is not None else ""))
