"""Checks shared by the TransformerLens parity tests (GPT-2-shaped and SmolLM2): the name map
of docs/hooks.md, an activation-by-activation comparison of two caches, and the logit lens and
direct logit attribution computed from a TransformerBridge's cache."""

import torch

# TransformerLens names of a block's activations (blocks.{i}. omitted) that are ours as well.
SAME = ["hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post",
        "mlp.hook_pre", "mlp.hook_post", "attn.hook_attn_scores", "attn.hook_pattern",
        "attn.hook_v", "attn.hook_z"]
NORMS = {f"{ln}.{h}": f"{norm}.{ours}" for ln, norm in [("ln1", "norm1"), ("ln2", "norm2")]
         for h, ours in [("hook_scale", "hook_scale"), ("hook_out", "hook_normalized")]}
HEADS = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_rot_q", "hook_rot_k")
"""Per-head activations: (B, T, H, D) there, (B, H, T, D) here."""


def name_map(n_layer: int, top: dict[str, str | None], block: dict[str, str]
             ) -> dict[str, str | None]:
    """{TransformerLens name: ours} for a model of n_layer blocks: `top` (outside the blocks;
    None stands for the logits), SAME, the norms and `block` (more per-block pairs)."""
    names = {"hook_embed": "embed.hook_embed", "ln_final.hook_scale": "norm.hook_scale",
             "ln_final.hook_out": "norm.hook_normalized", "hook_unembed": None} | top
    for i in range(n_layer):
        pairs = {n: n for n in SAME} | NORMS | block
        names |= {f"blocks.{i}.{theirs}": f"blocks.{i}.{ours}" for theirs, ours in pairs.items()}
    return names


def assert_same_activations(names, logits, ours, theirs, atol=1e-5):
    """Every pair of `names` equal within atol (max abs): ours (our cache, our logits) against
    theirs (the bridge's cache); masked attention scores are -inf here and the dtype's minimum
    there, so both are set to 0 where masked."""
    for name, mine in names.items():
        a, b = theirs[name], logits.detach() if mine is None else ours[mine]
        if name.endswith(HEADS):
            b = b.transpose(1, 2)  # (B, H, T, D) -> (B, T, H, D)
        if name.endswith("attn_scores"):
            a, b = a.masked_fill(b == float("-inf"), 0), b.masked_fill(b == float("-inf"), 0)
        torch.testing.assert_close(b.expand_as(a), a, atol=atol, rtol=0, msg=name)


def their_logit_lens(bridge, ids) -> torch.Tensor:
    """(L + 1, T, V): the bridge's accumulated residual stream of batch element 0 through its
    final norm (recomputed at each layer) and its unembedding."""
    _, cache = bridge.run_with_cache(ids)
    stream = cache.accumulated_resid(apply_ln=False)  # (L + 1, 1, T, C)
    return (cache.apply_ln_to_stack(stream, recompute_ln=True) @ bridge.W_U + bridge.b_U)[:, 0]


def their_attribution(bridge, ids, target: int, other: int, n_layer: int, centre: bool):
    """(labels "L{i}H{h}", per-head shares, per-MLP shares) of logit[target] - logit[other] at
    the last position, from the bridge's cache with its final norm folded into W_U and its
    scale frozen at the cached ln_final.hook_scale; `centre` for layernorm (not rmsnorm)."""
    bridge.enable_compatibility_mode(disable_warnings=True, center_writing_weights=False,
                                     center_unembed=False, fold_value_biases=False)
    _, cache = bridge.run_with_cache(ids)
    u = bridge.W_U[:, target] - bridge.W_U[:, other]  # (C,) norm gain folded in
    scale = cache["ln_final.hook_scale"][0, -1]  # (1,)

    def read(stack):  # (n, 1, C) parts at the last position -> (n,) their shares
        return ((stack - stack.mean(-1, keepdim=True) if centre else stack) / scale @ u).flatten()

    heads, labels = cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    mlps = torch.stack([cache[f"blocks.{i}.hook_mlp_out"][:, -1] for i in range(n_layer)])
    return labels, read(heads), read(mlps)
