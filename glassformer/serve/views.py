"""What the playground shows of a text, as plain JSON-ready dicts: the next-token distribution
under a sampling setting, the attention of every layer and head, and a completion's log
probabilities. The numbers come from the inspect functions (inspect/next_token.py,
inspect/capture.py) and the sampler; here they are only arranged.
"""

from itertools import accumulate

import torch

from glassformer.config import SampleConfig
from glassformer.generate.sampler import Piece
from glassformer.inspect.capture import AttentionCapture
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


def logprobs(tokenizer, piece: Piece, top: int, offset: int) -> dict:
    """OpenAI's logprobs of the tokens behind a piece of a completion: each token's text
    ("tokens"), its log probability ("token_logprobs"), the `top` likeliest tokens at its place
    and the token itself with theirs ("top_logprobs", token text -> log probability), and where
    its text begins in the choice's text ("text_offset"; `offset` is where the piece's does).

    The probabilities are the model's own: the log-softmax of its logits at the token's place,
    before the penalties, temperature, top-k and top-p it was drawn through. That is what OpenAI
    reports (its logprobs do not change with temperature or top_p; vLLM's default too), so they
    are finite under any setting, and compare across settings: a token that a filter made sure
    of still shows how likely the model found it.
    """
    if not piece.ids:  # its text was made by a token of the piece before
        return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    tokens = token_strings(tokenizer, piece.ids)
    starts = list(accumulate((len(t) for t in tokens[:-1]), initial=offset))
    logp = torch.log_softmax(torch.stack(piece.logits).float(), dim=-1)  # (N, V)
    chosen = logp[torch.arange(len(tokens)), piece.ids].tolist()  # (N,)
    best = logp.topk(min(top, logp.size(-1)), dim=-1)  # (N, top) values and ids
    tops = [{tokenizer.decode([i]): p for i, p in zip(ids, values)} | {token: p}
            for ids, values, token, p in zip(best.indices.tolist(), best.values.tolist(),
                                             tokens, chosen)]
    return {"tokens": tokens, "token_logprobs": chosen, "top_logprobs": tops, "text_offset": starts}


def joined_logprobs(parts: list[dict]) -> dict:
    """The logprobs of consecutive pieces (logprobs(...) dicts) as one."""
    return {key: [value for part in parts for value in part[key]]
            for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}
