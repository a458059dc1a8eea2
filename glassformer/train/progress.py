"""The training run's progress: a bar redrawn in place (tqdm) with step, loss, tokens/s, model
FLOPs utilisation (MFU, see train/flops.py), elapsed time and time left, fitted to the
terminal's width or drawn in a notebook cell; in a log file (stdout not a terminal), 20 plain
lines instead. Evaluations and the run's last line are printed above the bar."""

import math
import os
import textwrap
import time

from tqdm import tqdm

from glassformer.model import count_parameters


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def in_notebook(stream) -> bool:
    """Whether `stream` is a Jupyter kernel's output (its cell redraws a line after '\\r')."""
    return type(stream).__module__.startswith("ipykernel")


class Progress:
    """Call `update(step, loss, tokens, flops)` after each step; `print()` keeps the bar intact.

    The training FLOPs each step did and the hardware's `peak` FLOP/s (0: unknown) give the MFU."""

    def __init__(self, total_steps: int, start_step: int, stream, peak: float = 0.0,
                 bar_stream=None):
        """Lines go to `stream`; the bar to `bar_stream` (default: `stream`) when that is a
        terminal or a notebook. With a bar stream of its own (compare: lines into a recipe's
        log, the bar on the terminal), `stream` gets the plain lines a log gets."""
        self.total, self.start_step, self.stream, self.peak = total_steps, start_step, stream, peak
        self.t0 = time.perf_counter()
        self.tokens = self.flops = self.elapsed = 0
        bar_stream = bar_stream or stream
        self.bar = None
        if bar_stream.isatty() or in_notebook(bar_stream):
            self.bar = tqdm(total=total_steps, initial=start_step, file=bar_stream,
                            dynamic_ncols=True, leave=False, unit="step", smoothing=0.1,
                            # the numbers go in {desc}: tqdm writes {postfix} after a ", "
                            bar_format="step {n_fmt}/{total_fmt} {bar} {desc} "
                                       "[{elapsed}<{remaining}]")
        self.plain = self.bar is None or bar_stream is not stream

    def start_timing(self) -> None:
        """Measure tokens/s and MFU from now (after the evaluation before the first step)."""
        self.t0 = time.perf_counter()

    def update(self, step: int, loss: float, tokens: int, flops: float = 0.0) -> float:
        """Redraw the bar; return the tokens/s since the start."""
        self.tokens += tokens
        self.flops += flops
        self.elapsed = elapsed = time.perf_counter() - self.t0
        rate = self.tokens / max(elapsed, 1e-9)
        mfu = self.mfu()
        numbers = (f"loss {loss:.4f} | {rate / 1000:.1f}k tok/s"
                   + (f" | MFU {mfu:.0%}" if self.peak else ""))
        if self.bar is not None:
            self.bar.set_description_str(numbers, refresh=False)
            self.bar.update(step - self.bar.n)
            if step == self.total:
                self.bar.refresh()  # the last step is drawn, however fast it came
        if self.plain and (step % max(1, self.total // 20) == 0 or step == self.total):
            eta = elapsed / max(step - self.start_step, 1) * (self.total - step)
            self.stream.write(f"step {step}/{self.total} | {numbers} | {format_duration(elapsed)}"
                              f" elapsed, {format_duration(eta)} left\n")  # 20 lines, not 1000s
            self.stream.flush()
        return rate

    def mfu(self) -> float:
        """The share of the peak that the steps up to the last update used (0: peak unknown)."""
        return self.flops / max(self.elapsed, 1e-9) / self.peak if self.peak else 0.0

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
        """Print `text` on its own lines (above the bar, which is redrawn below), wrapped to a
        terminal's width."""
        if not self.plain:
            if self.stream.isatty():
                width = os.get_terminal_size(self.stream.fileno()).columns
                text = "\n".join(wrapped for line in text.split("\n")
                                 for wrapped in textwrap.wrap(line, width, subsequent_indent="  ")
                                 or [""])
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Take the bar away (the printed lines stay)."""
        if self.bar is not None:
            self.bar.close()


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
