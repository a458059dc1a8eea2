"""Loss on held-out text, every token of it: `glassformer eval` (quick estimates during training
live in train/tasks.py)."""

import math

import numpy as np
import torch

from glassformer.data.corpora import load_text
from glassformer.errors import GlassformerError
from glassformer.data.lm import check_enough, split, token_file
from glassformer.data.shards import PreparedData


@torch.no_grad()
def evaluate_tokens(model, tokens, batch_size: int = 16, device="cpu", n_chars=None) -> dict:
    """Loss over every token of `tokens`, predicted in consecutive windows of block_size.

    Returns loss (nats per token), perplexity (e^loss), bits per character (total nats / ln 2 /
    characters; `n_chars` defaults to the token count, right for a char tokenizer) and tokens.
    """
    model.eval()
    T = model.cfg.block_size
    ids = torch.from_numpy(tokens.astype("int64"))  # (N,)
    n_targets = len(ids) - 1
    windows = [(s, min(T, n_targets - s)) for s in range(0, n_targets, T)]
    nats = 0.0
    for i in range(0, len(windows), batch_size):
        for n in sorted({n for _, n in windows[i:i + batch_size]}):  # the last window is shorter
            starts = [s for s, m in windows[i:i + batch_size] if m == n]
            x = torch.stack([ids[s:s + n] for s in starts]).to(device)  # (B, n)
            y = torch.stack([ids[s + 1:s + 1 + n] for s in starts]).to(device)  # (B, n)
            nats += model(x, y)[1].item() * y.numel()
    n_chars = n_chars or n_targets
    return {"loss": nats / n_targets, "perplexity": math.exp(nats / n_targets),
            "bits_per_char": nats / math.log(2) / n_chars, "tokens": n_targets}


def validation_tokens(run) -> np.ndarray:
    """The ids of a loaded run's validation split, as its training cut them: the last
    `val_fraction` of its text (train.text, or the default corpus) in its tokenizer's ids, or
    the validation split of its prepared dataset (train.data)."""
    tc = run.cfg.train
    if tc.data:  # a prepared dataset's own split, read whole
        return PreparedData(tc.data).val[:]  # (N,)
    return split(token_file(load_text(tc.text), run.tokenizer), tc.val_fraction)[1]  # (N,)


def evaluate_run(run, text_path=None) -> dict:
    """What `glassformer eval` prints: evaluate_tokens of a loaded language-model run (gpt or
    lstm) on every token of the UTF-8 file `text_path`, or (None) of its validation split, on
    the device its model is on; for the other tasks, evaluate_task.

    Returns "text" (the file, or "the validation split") beside evaluate_tokens's loss,
    perplexity, bits_per_char and tokens. Bits per character count the characters of the
    predicted tokens (all but the first), so they hold for any tokenizer.
    """
    if run.cfg.train.task != "lm":
        if text_path:
            raise GlassformerError(f"--text scores a language model; this run's task is "
                                   f"{run.cfg.train.task!r}: drop --text to score its held-out set")
        return evaluate_task(run)
    if text_path:
        tokens = np.array(run.tokenizer.encode(load_text(text_path)), dtype=np.int64)  # (N,)
    else:
        tokens = validation_tokens(run)
    check_enough(tokens, 1, "evaluation")
    n_chars = len(run.tokenizer.decode(tokens[1:]))  # the predicted tokens' text
    device = next(run.model.parameters()).device
    result = evaluate_tokens(run.model, tokens, device=device, n_chars=n_chars)
    return {"text": str(text_path) if text_path else "the validation split"} | result


def evaluate_task(run) -> dict:
    """A masked-LM, genre or pairs run's held-out metrics as its training evaluations measure
    them (val loss, and masked accuracy, accuracy or exact match), "text" naming what was
    scored."""
    from glassformer.train.tasks import TASKS, val_scope

    task = TASKS[run.cfg.train.task](run.cfg, run.tokenizer)
    metrics = task.evaluate(run.model, next(run.model.parameters()).device)
    held_out = {k: v for k, v in metrics.items() if k.startswith("val_")}
    return {"text": f"the held-out set ({val_scope(run.cfg.train)})"} | held_out
