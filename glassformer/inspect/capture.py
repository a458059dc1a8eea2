"""Attention weights of every layer and head, captured without changing the model.

Every softmax attention module (self-attention, and the decoder's cross-attention) has a
`kernel` ("sdpa" or "math") and a `weights` identity submodule that the math kernel sends its
(B, H, T, S) weights through. A capture switches those modules to the math kernel (the same
numbers), hooks `weights`, and puts everything back on exit:

    with AttentionCapture(model) as capture:
        model(ids)
    capture.weights  # {"blocks.0.attn": (B, H, T, S) tensor, ...}

An encoder-decoder's modules are named encoder.blocks.i.attn, decoder.blocks.i.attn and
decoder.blocks.i.cross; `query_key_texts` says which of its two texts each one reads.
"""

import contextlib

from torch import nn

from glassformer.errors import GlassformerError


def attention_modules(model) -> dict[str, nn.Module]:
    """{name: module} of every module that exposes its attention weights (a `weights` identity
    child and a `kernel`), in the model's order."""
    return {name: module for name, module in model.named_modules()
            if isinstance(getattr(module, "weights", None), nn.Identity)
            and hasattr(module, "kernel")}


@contextlib.contextmanager
def math_attention(model):
    """Run every attention module of `model` on the explicit math kernel inside the block."""
    modules = attention_modules(model)
    saved = {name: module.kernel for name, module in modules.items()}
    try:
        for module in modules.values():
            module.kernel = "math"
        yield modules
    finally:
        for name, module in modules.items():
            module.kernel = saved[name]


class AttentionCapture:
    """A context manager: inside it, each forward pass records every attention module's weights
    (detached, on the CPU) in `weights`, keyed by module name; a later pass replaces them."""

    def __init__(self, model):
        self.model = model
        self.weights = {}
        self._handles = []
        self._math = None

    def __enter__(self):
        self._math = math_attention(self.model)
        modules = self._math.__enter__()
        if not modules:
            raise GlassformerError("this model has no softmax attention whose weights can be "
                                   "captured (linear attention never forms them)")
        for name, module in modules.items():
            self._handles.append(module.weights.register_forward_hook(self._keep(name)))
        return self

    def _keep(self, name):
        def hook(module, args, output):
            self.weights[name] = output.detach().float().cpu()  # (B, H, T, S)
        return hook

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return self._math.__exit__(*exc)


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
