"""POST /v1/lens: the logit lens (inspect/lens.py) at one token of a text, for the playground's
panel beside the attention heatmap: per layer, the tokens the residual stream would predict
next if the model stopped there, and the rank and probability of the token that does come next.
"""

import torch
from pydantic import Field
from starlette.responses import JSONResponse
from starlette.routing import Route

from glassformer.inspect.lens import lens_table, logit_lens
from glassformer.serve import protocol
from glassformer.serve.protocol import ApiError
from glassformer.serve.views import token_strings


class LensRequest(protocol.Strict):
    """POST /v1/lens: the logit lens of `text` at the token `position`."""

    text: str = Field(min_length=1)
    position: int = Field(ge=0)
    """The token whose residual stream is read: what each layer predicts comes after it."""
    top: int = Field(5, ge=1, le=50)
    """Tokens listed per layer, the most likely first."""


def lens_view(run, ids: list[int], position: int, top: int = 5) -> dict:
    """The logit lens of the tokens `ids` at `position` (an index of `ids`), read in its window
    (the last block_size tokens up to it, from `start`): one entry per layer ("embed", then
    "layer 0" ..), each with its `top` tokens and probabilities and, where the text goes on,
    the next token's rank (0 = the top one) and probability."""
    start = max(0, position + 1 - run.cfg.model.block_size)
    window = torch.tensor([ids[start:position + 1]])  # (1, T)
    following = ids[position + 1] if position + 1 < len(ids) else None
    rows = lens_table(logit_lens(run.model, window), -1, following, top)
    decode = run.tokenizer.decode
    return {"tokens": token_strings(run.tokenizer, ids), "start": start, "position": position,
            "next": None if following is None else {"token": decode([following]),
                                                    "id": following},
            "layers": [{"layer": row.layer,
                        "top": [{"token": decode([i]), "id": i, "probability": p}
                                for i, p in row.top],
                        "next_rank": row.target_rank, "next_probability": row.target_prob}
                       for row in rows]}


def route(playground) -> Route:
    """The /v1/lens route of a Playground (serve/api.py): its limits, encoding and model lock."""

    async def lens(request):
        req = protocol.parse(LensRequest, await playground._body(request))
        ids = playground._encode(req.text, "text")
        if req.position >= len(ids):
            raise ApiError(400, f"position: the text has {len(ids)} tokens (positions 0 to "
                                f"{len(ids) - 1}), got {req.position}", "position")
        view = await playground._on_model(lens_view, playground.run, ids, req.position, req.top)
        return JSONResponse({"model": playground.name} | view)

    return Route("/v1/lens", lens, methods=["POST"])
