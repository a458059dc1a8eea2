"""Renaming weights between glassformer and another library, by an explicit table.

A table maps each of our parameter names to the other side's names: one name (renamed as is)
or several (stacked along dim 0 into one of ours, as q, k and v go into our fused `qkv`).
Anything on their side that the table does not consume is an error that lists it, so a
checkpoint is never loaded with weights silently dropped.
"""

from __future__ import annotations

import torch

from glassformer.errors import GlassformerError

Table = dict[str, list[str]]  # our name -> their names, stacked in this order


class UnsupportedCheckpoint(GlassformerError):
    """A checkpoint holds weights or settings that glassformer cannot represent."""


def import_state(table: Table, theirs: dict[str, torch.Tensor], ignore=()) -> dict:
    """Their state dict -> ours. `ignore` names their keys that carry nothing of their own (tied
    copies, buffers). Missing their-side names are left out of the result (a head the checkpoint
    does not have); unconsumed ones raise UnsupportedCheckpoint."""
    ours, used = {}, set(ignore)
    for name, sources in table.items():
        if all(s in theirs for s in sources):
            ours[name] = torch.cat([theirs[s] for s in sources]) if len(sources) > 1 else theirs[sources[0]]
            used.update(sources)
    unused = sorted(set(theirs) - used)
    if unused:
        shown = ", ".join(unused[:12]) + (f" and {len(unused) - 12} more" if len(unused) > 12 else "")
        raise UnsupportedCheckpoint(f"glassformer has no place for these weights: {shown}")
    return ours


def export_state(table: Table, ours: dict[str, torch.Tensor], sizes: dict[str, int]) -> dict:
    """Our state dict -> theirs; a fused tensor is cut along dim 0 into `sizes[their_name]` rows
    each (only needed for names stacked with others)."""
    theirs = {}
    for name, targets in table.items():
        if name not in ours:
            continue
        if len(targets) == 1:
            theirs[targets[0]] = ours[name].contiguous()
        else:
            parts = ours[name].split([sizes[t] for t in targets])
            theirs.update({t: p.contiguous() for t, p in zip(targets, parts)})
    return theirs


def require(hf_config: dict, key: str, ok, allowed: str) -> None:
    """Refuse a config setting glassformer cannot represent, naming it and what would work."""
    value = hf_config.get(key)
    if not ok(value):
        raise UnsupportedCheckpoint(f"config.json has {key}={value!r}; glassformer supports "
                                    f"{allowed}")
