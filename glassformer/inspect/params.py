"""Parameter counts: measured from a model, and the closed form from its config.

Per block, with C = n_embd, D = head dim, Hkv = kv heads, F = feed-forward hidden width, and the
bias terms only with cfg.bias:
  attention     q and output: 2C^2 + 2C      k and v: 2 * C * Hkv*D + 2 * Hkv*D
  feed-forward  C -> F -> C: 2CF + F + C     gated (SwiGLU, GeGLU): 3CF + 2F + C
                with E experts: router C*E + E * (one feed-forward)
  norms         LayerNorm C (+ C), RMSNorm C; two per block, plus 2 * D with QK-norm
  T5 bias       rel_buckets * H: each layer's own table of relative-position biases
Embeddings V*C, learned positions block_size*C, final norm (pre-norm only), LM head V*C unless
tied to the embeddings. GPT-2 small: 124,439,808.
"""


def count_parameters(model) -> int:
    """All parameters, counting a tied matrix once."""
    return sum(p.numel() for p in model.parameters())


def closed_form_count(cfg) -> int:
    """The parameter count of a GPT with config `cfg`, from the formulas above."""
    C, V, F, b = cfg.n_embd, cfg.vocab_size, cfg.hidden, int(cfg.bias)
    kv = cfg.kv_heads * cfg.head_dim

    def norm(dim):
        return dim + (b * dim if cfg.norm == "layernorm" else 0)

    attention = 2 * C * C + 2 * C * kv + b * (2 * C + 2 * kv)
    attention += 2 * norm(cfg.head_dim) if cfg.qk_norm else 0
    attention += cfg.rel_buckets * cfg.n_head if cfg.position == "t5" else 0
    feed_forward = (3 if cfg.gated else 2) * C * F + b * ((2 if cfg.gated else 1) * F + C)
    if cfg.moe_experts:
        feed_forward = C * cfg.moe_experts + cfg.moe_experts * feed_forward  # router + experts
    block = attention + feed_forward + 2 * norm(C)
    embeddings = V * C + (cfg.block_size * C if cfg.position == "learned" else 0)
    final_norm = norm(C) if cfg.norm_placement == "pre" else 0
    head = 0 if cfg.tie_weights else V * C
    return embeddings + cfg.n_layer * block + final_norm + head
