"""Parameter counts: measured from a model, and the closed form from its config.

Per block (C = n_embd, with biases):
  attention  q,k,v: 3C^2 + 3C   output: C^2 + C
  feed-forward  C -> 4C -> C: 8C^2 + 5C
  two norms: 4C (2C without biases)
Embeddings V*C, learned positions block_size*C, final norm 2C (pre-norm only),
LM head V*C unless tied to the embeddings. GPT-2 small: 124,439,808.
"""


def count_parameters(model) -> int:
    """All parameters, counting a tied matrix once."""
    return sum(p.numel() for p in model.parameters())


def closed_form_count(cfg) -> int:
    """The parameter count of a GPT with config `cfg`, from the formulas above."""
    C, V, b = cfg.n_embd, cfg.vocab_size, int(cfg.bias)
    norm = C + b * C
    attention = 4 * C * C + b * 4 * C
    feed_forward = 8 * C * C + b * (4 * C + C)
    block = attention + feed_forward + 2 * norm
    embeddings = V * C + (cfg.block_size * C if cfg.position == "learned" else 0)
    final_norm = norm if cfg.norm_placement == "pre" else 0
    head = 0 if cfg.tie_weights else V * C
    return embeddings + cfg.n_layer * block + final_norm + head
