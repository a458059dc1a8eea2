"""The logit lens (nostalgebraist, 2020): read the residual stream after each layer through the
final norm and the unembedding, as if the model stopped there.

    stream 0 (the embeddings, blocks.0.hook_resid_pre), 1 .. L (blocks.i.hook_resid_post)
    logits_l = head(final_norm(stream_l))        (1, T, V) each; logits_L are the model's own

A language model's readout is GPT's head after the final norm, the encoder-decoder's after its
decoder's final norm, and BERT's masked-LM head (a post-norm BERT has no final norm).
"""

from dataclasses import dataclass

import torch

from glassformer.errors import GlassformerError
from glassformer.model.hooks import run_with_cache


@dataclass(frozen=True)
class Readout:
    """Where a model's residual stream lives and how it becomes logits."""

    prefix: str
    """The stack's hook-point prefix: "" (GPT, BERT) or "decoder." (encoder-decoder)."""
    n_layer: int
    norm: torch.nn.Module
    """The final norm (an identity for post-norm stacks)."""
    unembed: torch.nn.Module
    """hidden states (..., C) -> logits (..., V)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.unembed(self.norm(x))

    def stream_names(self) -> list[str]:
        """The L + 1 residual stream hook points: the embeddings, then each block's output."""
        return [f"{self.prefix}blocks.0.hook_resid_pre"] + [
            f"{self.prefix}blocks.{i}.hook_resid_post" for i in range(self.n_layer)]


def readout(model) -> Readout:
    """The Readout of a GPT, a masked-LM BERT or an encoder-decoder."""
    family = model.cfg.family
    if family == "gpt":
        return Readout("", model.cfg.n_layer, model.norm, model.head)
    if family == "encdec":
        return Readout("decoder.", model.cfg.n_layer, model.decoder.norm, model.head)
    if family == "bert" and model.mlm is not None:
        return Readout("", model.cfg.n_layer, model.norm, model.mlm)
    raise GlassformerError(f"a {family} model with a classifier head has no vocabulary to read "
                           "its residual stream into; use a language model (gpt, a masked-LM "
                           "bert, or encdec)")


@torch.no_grad()
def logit_lens(model, *inputs) -> torch.Tensor:
    """Logits (L + 1, T, V) of batch element 0, read from the embeddings and after each of the
    L layers; inputs as model(*inputs) takes them (ids (1, T), or src and ids)."""
    out = readout(model)
    _, cache = run_with_cache(model, *inputs, names=out.stream_names())
    stream = torch.stack([cache[name][0] for name in out.stream_names()])  # (L + 1, T, C)
    return out.logits(stream)  # (L + 1, T, V)


@dataclass(frozen=True)
class LensRow:
    layer: str
    top: list[tuple[int, float]]
    """The most probable (token id, probability) pairs."""
    target_rank: int | None
    """0 = the top token; None without a target."""
    target_prob: float | None


def lens_table(logits: torch.Tensor, position: int = -1, target: int | None = None,
               top: int = 5) -> list[LensRow]:
    """One row per layer of logits (L + 1, T, V) at `position`: its top tokens, and the
    target token's rank and probability."""
    rows = []
    for layer, row in enumerate(logits[:, position]):  # (V,)
        probs = torch.softmax(row.float(), dim=-1)
        p, ids = probs.topk(min(top, probs.numel()))
        rank = prob = None
        if target is not None:
            rank = int((probs > probs[target]).sum())
            prob = probs[target].item()
        rows.append(LensRow("embed" if layer == 0 else f"layer {layer - 1}",
                            list(zip(ids.tolist(), p.tolist())), rank, prob))
    return rows


def format_lens(rows: list[LensRow], decode, target: int | None = None) -> str:
    """The table as text: each layer's top tokens (and the target's rank and probability)."""
    lines = []
    for row in rows:
        tops = "  ".join(f"{decode([i])!r} {p:.2f}" for i, p in row.top)
        extra = (f"   target {decode([target])!r}: rank {row.target_rank}, p {row.target_prob:.2g}"
                 if target is not None else "")
        lines.append(f"{row.layer:>9}: {tops}{extra}")
    return "\n".join(lines)
