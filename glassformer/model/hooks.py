"""Hook points: named places in a model where a value flows, to read it or replace it.

A HookPoint is an identity module placed where an intermediate value flows (`x = self.hook_q(x)`),
so that its name in `model.named_modules()` (e.g. "blocks.0.attn.hook_q") names the value. A
hook registered on it sees the value and may return a replacement, which then flows on instead:
ablation, patching, steering. Unhooked, a hook point costs one attribute test.

    logits, cache = run_with_cache(model, ids, names=["blocks.0.hook_resid_post"])
    logits = run_with_hooks(model, ids, hooks=[("blocks.0.attn.hook_z", zero_head_1)])
    with hooked(model, [("blocks.1.hook_resid_post", steer)]):  # e.g. around generate(...)
        ...

A hook is fn(value, name) -> a replacement tensor, or None to let the value flow on unchanged.
The names and the shapes are listed in docs/hooks.md. Two hook points are special: hooking
`attn.hook_attn_scores` or `attn.hook_pattern` makes that layer compute its attention by the
math kernel (the fused kernel never forms the (T, S) weights), and hooking a norm's `hook_scale`
makes it compute its scale explicitly beside the fused norm.
"""

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import nn

from glassformer.errors import GlassformerError

Hook = Callable[[torch.Tensor, str], torch.Tensor | None]


class HookPoint(nn.Module):
    """The identity, at a named place where a value flows."""

    def forward(self, x):
        return x

    def __call__(self, x):
        # Unhooked (the usual case), skip nn.Module's call machinery: one dict test.
        return super().__call__(x) if self._forward_hooks else x

    @property
    def active(self) -> bool:
        """Whether a hook is registered (layers that compute a value only for a hook ask)."""
        return bool(self._forward_hooks)


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """{name: hook point} of every hook point in `model`, in the model's order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, HookPoint)}


def select(model: nn.Module, names: Iterable[str] | Callable[[str], bool] | None = None
           ) -> dict[str, HookPoint]:
    """The hook points that `names` picks: a list of names, a predicate on the name, or None
    (all). An unknown name is an error that lists a few of the model's."""
    points = hook_points(model)
    if names is None:
        return points
    if callable(names):
        return {name: point for name, point in points.items() if names(name)}
    unknown = [name for name in names if name not in points]
    if unknown:
        known = ", ".join(list(points)[:8])
        raise GlassformerError(f"no hook point named {', '.join(unknown)} in this model "
                               f"({len(points)} hook points, e.g. {known}; "
                               "glassformer.model.hooks.hook_points(model) lists them all)")
    return {name: points[name] for name in names}


@contextlib.contextmanager
def hooked(model: nn.Module, hooks: list[tuple[str, Hook]]):
    """Inside the block, every forward of `model` (training, evaluation, generation with the KV
    cache) calls each hook fn(value, name) at its hook point; a returned tensor replaces the
    value. Several hooks on one point run in the order given. Removed on exit."""
    points = select(model, [name for name, _ in hooks])
    handles = []
    try:
        for name, fn in hooks:
            handles.append(points[name].register_forward_hook(
                lambda module, args, output, fn=fn, name=name: fn(output, name)))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def run_with_hooks(model: nn.Module, *inputs, hooks: list[tuple[str, Hook]], **kwargs):
    """model(*inputs, **kwargs) with `hooks` (name, fn) in place for this one call."""
    with hooked(model, hooks):
        return model(*inputs, **kwargs)


def run_with_cache(model: nn.Module, *inputs, names=None, **kwargs):
    """model(*inputs, **kwargs) and the cache {name: value (detached)} of the hook points that
    `names` picks (a list, a predicate on the name, or None for all), in the order they ran.
    A point hit twice in the call (none is, in one forward) keeps its last value."""
    cache = {}

    def keep(value, name):
        cache[name] = value.detach()

    with hooked(model, [(name, keep) for name in select(model, names)]):
        output = model(*inputs, **kwargs)
    return output, cache
