"""Parameter counts: measured from a model, and the closed form from its config.

Per block, with C = n_embd, D = head dim, Hkv = kv heads, F = feed-forward hidden width, and the
bias terms only with cfg.bias:
  attention     q and output: 2C^2 + 2C      k and v: 2 * C * Hkv*D + 2 * Hkv*D
  feed-forward  C -> F -> C: 2CF + F + C     gated (SwiGLU, GeGLU): 3CF + 2F + C
                with E experts: router C*E + E * (one feed-forward)
  norms         LayerNorm C (+ C), RMSNorm C; two per block, plus 2 * D with QK-norm
  T5 bias       rel_buckets * H: each layer's own table of relative-position biases, or with
                rel_shared one table per stack, owned by its first layer
Embeddings V*C, learned positions block_size*C, final norm (pre-norm only), LM head V*C unless
tied to the embeddings. GPT-2 small: 124,439,808.
"""

from glassformer.train.memory import format_bytes


def closed_form_count(cfg) -> int:
    """The parameter count of a GPT with config `cfg`, from the formulas above."""
    C, V, F, b = cfg.n_embd, cfg.vocab_size, cfg.hidden, int(cfg.bias)
    kv = cfg.kv_heads * cfg.head_dim

    def norm(dim):
        return dim + (b * dim if cfg.norm == "layernorm" else 0)

    attention = 2 * C * C + 2 * C * kv + b * (2 * C + 2 * kv)
    attention += 2 * norm(cfg.head_dim) if cfg.qk_norm else 0
    table = cfg.rel_buckets * cfg.n_head if cfg.position == "t5" else 0
    attention += 0 if cfg.rel_shared else table
    feed_forward = (3 if cfg.gated else 2) * C * F + b * ((2 if cfg.gated else 1) * F + C)
    if cfg.moe_experts:
        feed_forward = C * cfg.moe_experts + cfg.moe_experts * feed_forward  # router + experts
    block = attention + feed_forward + 2 * norm(C)
    embeddings = V * C + (cfg.block_size * C if cfg.position == "learned" else 0)
    final_norm = norm(C) if cfg.norm_placement == "pre" else 0
    head = 0 if cfg.tie_weights else V * C
    shared = table if cfg.rel_shared else 0
    return embeddings + cfg.n_layer * block + shared + final_norm + head


# ---- The table: one row per part, with its measured count and its closed form ----------------
#
# Parameters are grouped by name with the layer (and expert) index replaced by "*": the row
# "blocks.*.mlp.fc" holds every layer's first feed-forward matrix and bias, L of them. The fused
# [W_Q; W_K; W_V] matrix is shown as three rows, q, k and v, cut along its output rows.


def parameter_table(model, cfg) -> list[dict]:
    """Rows {part, count, formula, closed_form, share} for `model` (built from ModelConfig
    `cfg`); counts are measured from the tensors, a tied matrix once, so they sum to
    count_parameters(model). `formula`/`closed_form` are None for a part with no formula here."""
    counts, layers = {}, {}
    for name, p in model.named_parameters():  # a tied matrix appears once
        key, indices = _group(name.rsplit(".", 1)[0])
        for star, index in enumerate(indices):
            layers.setdefault((key, star), set()).add(index)
        if key.endswith(".qkv"):  # rows [C | Hkv*D | Hkv*D] of the fused projection
            kv = (p.shape[0] - cfg.n_embd) // 2
            for part, n in zip("qkv", (cfg.n_embd, kv, kv)):
                counts[f"{key}[{part}]"] = counts.get(f"{key}[{part}]", 0) + n * p[0].numel()
        else:
            counts[key] = counts.get(key, 0) + p.numel()
    total = sum(counts.values())
    rows = []
    for key, count in counts.items():
        base = key.split("[")[0]
        copies = [len(layers[(base, star)]) for star in range(base.count("*"))]
        text, value = _formula(key, cfg) or (None, None)
        if text is not None:
            names = (_copies_symbol(base, star, n, cfg) for star, n in enumerate(copies))
            multiplier = "·".join(name for name in names if name != "1")
            if multiplier:
                text = f"{multiplier}·({text})" if " + " in text else f"{multiplier}·{text}"
            for n in copies:
                value *= n
        rows.append({"part": key, "count": count, "formula": text, "closed_form": value,
                     "share": count / total})
    return rows


def symbols(cfg) -> str:
    """The values of the letters the formulas use."""
    return (f"V={cfg.vocab_size} C={cfg.n_embd} L={cfg.n_layer} H={cfg.n_head} "
            f"Hkv={cfg.kv_heads} D={cfg.head_dim} F={cfg.hidden} block_size={cfg.block_size}"
            + (f" E={cfg.moe_experts}" if cfg.moe_experts else ""))


def format_table(rows: list[dict]) -> str:
    """The table as aligned text, with fp32/bf16 sizes and the total."""
    total = sum(r["count"] for r in rows)
    header = ("part", "parameters", "closed form", "", "fp32", "bf16", "share")
    lines = [header]
    for r in rows:
        check = "" if r["closed_form"] is None else ("ok" if r["closed_form"] == r["count"]
                                                     else f"!= {r['closed_form']:,}")
        lines.append((r["part"], f"{r['count']:,}", r["formula"] or "-", check,
                      format_bytes(4 * r["count"]), format_bytes(2 * r["count"]),
                      f"{100 * r['share']:.1f}%"))
    lines.append(("total", f"{total:,}", "sum(p.numel())", "", format_bytes(4 * total),
                  format_bytes(2 * total), "100.0%"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {1, 4, 5, 6}
    return "\n".join("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def _group(module_name: str) -> tuple[str, list[int]]:
    """"blocks.3.mlp.experts.1.fc" -> ("blocks.*.mlp.experts.*.fc", [3, 1])."""
    parts, indices = [], []
    for part in module_name.split("."):
        if part.isdigit():
            indices.append(int(part))
            part = "*"
        parts.append(part)
    return ".".join(parts), indices


def _copies_symbol(key: str, star: int, n: int, cfg) -> str:
    """How the formula names the copies behind the star-th "*": L layers, E experts; a part
    that only some layers own (the first, with rel_shared), their number."""
    before = key.split("*")[star]
    if before.endswith("experts."):
        return "E"
    return "L" if before.endswith("blocks.") and n == cfg.n_layer else str(n)


def _formula(key: str, cfg):
    """(text, value) of one copy of part `key`, or None when the part has no formula here."""
    C, V, F, H, D = cfg.n_embd, cfg.vocab_size, cfg.hidden, cfg.n_head, cfg.head_dim
    kv, b = cfg.kv_heads * D, int(cfg.bias)

    def affine(n_in, n_out, text_in, text_out):  # a Linear's weight and bias
        return (f"{text_in}·{text_out}" + (f" + {text_out}" if b else ""), n_in * n_out + b * n_out)

    def norm(dim, text):
        with_beta = b and cfg.norm == "layernorm"
        return (f"2{text}" if with_beta else text, (1 + with_beta) * dim)

    leaf = key.rsplit(".", 1)[-1]
    parent = key.rsplit(".", 2)[-2] if key.count(".") else ""
    if key == "head":
        return "V·C", V * C
    if key.endswith("embed.tokens"):
        return "V·C", V * C
    if key.endswith("embed.positions.table"):
        return "block_size·C", cfg.block_size * C
    if leaf == "qkv[q]":
        return affine(C, C, "C", "C")
    if leaf in ("qkv[k]", "qkv[v]"):
        return affine(C, kv, "C", "Hkv·D")
    if leaf == "proj" and parent in ("attn", "cross"):
        return affine(C, C, "C", "C")
    if leaf in ("q_norm", "k_norm"):
        return norm(D, "D")
    if leaf == "table" and parent == "relative":
        return "rel_buckets·H", cfg.rel_buckets * H
    if leaf == "router":
        return "C·E", C * cfg.moe_experts
    if leaf in ("fc", "up"):
        return affine(C, F, "C", "F")
    if leaf == "proj":
        return affine(F, C, "F", "C")
    if leaf.startswith("norm"):
        return norm(C, "C")
    return None
