"""What the playground shows of a text, as plain JSON-ready dicts: the next-token distribution
under a sampling setting, and the attention of every layer and head. The numbers come from the
inspect functions (inspect/next_token.py, inspect/capture.py); here they are only arranged.
"""

import torch

from glassformer.inspect.capture import AttentionCapture
from glassformer.config import SampleConfig
from glassformer.inspect.next_token import RAW, candidates, kept, label, next_logits


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """The text of each token alone (a byte-level BPE token inside a character shows U+FFFD)."""
    return [tokenizer.decode([i]) for i in ids]


def distribution(run, ids: list[int], setting: SampleConfig, top: int = 10) -> dict:
    """The `top` most likely next tokens after `ids` (at least one id), each with its
    probability at temperature 1 ("probability") and under `setting` ("filtered", 0 where a
    filter removed it), and how many tokens `setting` leaves a chance ("kept")."""
    logits = next_logits(run.model, ids)  # (1, V)
    rows = candidates(logits, run.tokenizer.decode, [RAW, setting], top)
    return {"tokens": token_strings(run.tokenizer, ids), "setting": label(setting),
            "kept": kept(logits, setting), "vocab_size": logits.size(-1),
            "candidates": [{"token": row["token"], "id": row["id"],
                            "probability": row["probs"][label(RAW)],
                            "filtered": row["probs"][label(setting)]} for row in rows]}


def attention(run, ids: list[int], position: int | None = None) -> dict:
    """Every attention module's weights for the tokens `ids`: for the query at `position`, its
    weights onto the keys of its window (the last block_size tokens up to it, from `start`),
    one list per head; for position None, each head's whole (T, T) matrix (`ids` must then fit
    the window). `position` must be an index of `ids`."""
    start = 0 if position is None else max(0, position + 1 - run.cfg.model.block_size)
    window = ids if position is None else ids[start:position + 1]
    with torch.no_grad(), AttentionCapture(run.model) as capture:
        run.model(torch.tensor([window]))  # (1, T)
    layers = []
    for name, weights in capture.weights.items():  # (1, H, T, T)
        heads = weights[0] if position is None else weights[0, :, -1]  # (H, T, T) or (H, T)
        layers.append({"name": name, "heads": heads.tolist()})
    return {"tokens": token_strings(run.tokenizer, ids), "start": start, "position": position,
            "layers": layers}
