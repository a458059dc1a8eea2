"""Attention weights of every layer and head, captured without changing the model.

Every softmax attention module (self-attention, and the decoder's cross-attention) sends its
(B, H, T, S) weights through its hook point `hook_pattern` (model/hooks.py); a module whose
pattern is hooked computes it by the math kernel (the same numbers). A capture hooks every
`hook_pattern` and removes the hooks on exit:

    with AttentionCapture(model) as capture:
        model(ids)
    capture.weights  # {"blocks.0.attn": (B, H, T, S) tensor, ...}

An encoder-decoder's modules are named encoder.blocks.i.attn, decoder.blocks.i.attn and
decoder.blocks.i.cross; `query_key_texts` says which of its two texts each one reads.
"""

from torch import nn

from glassformer.errors import GlassformerError
from glassformer.model.hooks import HookPoint, hooked


def attention_modules(model) -> dict[str, nn.Module]:
    """{name: module} of every module that exposes its attention weights (a `hook_pattern` and
    a `kernel`), in the model's order."""
    return {name: module for name, module in model.named_modules()
            if isinstance(getattr(module, "hook_pattern", None), HookPoint)
            and hasattr(module, "kernel")}


class AttentionCapture:
    """A context manager: inside it, each forward pass records every attention module's weights
    (detached, on the CPU) in `weights`, keyed by module name; a later pass replaces them."""

    def __init__(self, model):
        self.model = model
        self.weights = {}
        self._hooked = None

    def __enter__(self):
        modules = attention_modules(self.model)
        if not modules:
            raise GlassformerError("this model has no softmax attention whose weights can be "
                                   "captured (linear attention never forms them)")
        self._hooked = hooked(self.model, [(name + ".hook_pattern", self._keep)
                                           for name in modules])
        self._hooked.__enter__()
        return self

    def _keep(self, weights, name):
        module = name.removesuffix(".hook_pattern")
        self.weights[module] = weights.detach().float().cpu()  # (B, H, T, S)

    def __exit__(self, *exc):
        return self._hooked.__exit__(*exc)


def query_key_texts(names, source, target) -> dict:
    """{name: (queries' text, keys' text)} for captured attention module names: which text each
    module reads. In an encoder-decoder the decoder's queries read the target, and so do its
    self-attention's keys; the encoder's queries and keys, and cross-attention's keys, read the
    source. A model of one stack reads one text: pass it as both `source` and `target`.
    The texts can be anything (ids, tokens, or both as `Source.tokens` gives them)."""
    reads = {}
    for name in names:
        decoder, cross = name.startswith("decoder."), name.endswith(".cross")
        reads[name] = (target if decoder else source, source if cross or not decoder else target)
    return reads
