"""Llama (Hugging Face `LlamaForCausalLM`, `LlamaModel`) <-> glassformer's GPT.

A Llama is our GPT with other words chosen: position="rope" (rotate-half layout, base
rope_theta), norm="rmsnorm", activation="swiglu" (gate_proj is our fc, up_proj our up,
down_proj our proj), grouped-query attention (n_kv_head = num_key_value_heads), no biases by
default and an untied LM head by default. Its separate q, k, v projections are stacked into our
fused qkv rows: [W_Q (C); W_K (Hkv*D); W_V (Hkv*D)].

Refused: scaled RoPE (rope_scaling / rope_parameters other than "default"), a head_dim other
than hidden_size / num_attention_heads, an activation other than SiLU, and biases in attention
but not in the MLP (or the reverse): our `bias` is one switch for every linear layer.
"""

from __future__ import annotations

from glassformer.config import ModelConfig
from glassformer.interop.keymap import (Table, UnsupportedCheckpoint, export_state, import_state,
                                        require)

PREFIX = "model."
BUFFERS = ("rotary_emb.inv_freq",)  # saved by older versions; recomputed from the config


def rope_base(c: dict) -> float:
    """RoPE's base from either config layout: transformers 5's rope_parameters, or the older
    rope_theta + rope_scaling."""
    params = c.get("rope_parameters") or c.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise UnsupportedCheckpoint(f"config.json has RoPE type {kind!r}; glassformer supports "
                                    "only 'default' (unscaled) rotary embeddings")
    return float(params.get("rope_theta", c.get("rope_theta", 10000.0)))


def config_from_hf(c: dict) -> ModelConfig:
    """A Llama config.json -> our ModelConfig, refusing settings we cannot represent."""
    n_embd, n_head = c.get("hidden_size", 4096), c.get("num_attention_heads", 32)
    require(c, "hidden_act", lambda v: v in (None, "silu"), "'silu' (SwiGLU)")
    require(c, "head_dim", lambda v: v in (None, n_embd // n_head),
            f"hidden_size / num_attention_heads = {n_embd // n_head}")
    bias = bool(c.get("attention_bias", False))
    require(c, "mlp_bias", lambda v: bool(v) == bias,
            f"mlp_bias={bias} with attention_bias={bias} (one bias switch for every layer)")
    return ModelConfig(
        vocab_size=c.get("vocab_size", 32000), block_size=c.get("max_position_embeddings", 2048),
        n_layer=c.get("num_hidden_layers", 32), n_head=n_head,
        n_kv_head=c.get("num_key_value_heads") or n_head, n_embd=n_embd,
        ffn_hidden=c.get("intermediate_size", 11008), dropout=c.get("attention_dropout", 0.0),
        bias=bias, position="rope", rope_base=rope_base(c), activation="swiglu", norm="rmsnorm",
        norm_placement="pre", norm_eps=c.get("rms_norm_eps", 1e-6),
        tie_weights=c.get("tie_word_embeddings", False))


def table(cfg: ModelConfig) -> Table:
    """Our parameter names -> Llama's (without LlamaForCausalLM's "model." prefix)."""
    t = {"embed.tokens.weight": ["embed_tokens.weight"], "norm.weight": ["norm.weight"]}
    kinds = ("weight", "bias") if cfg.bias else ("weight",)
    for i in range(cfg.n_layer):
        ours, hf = f"blocks.{i}.", f"layers.{i}."
        t[ours + "norm1.weight"] = [hf + "input_layernorm.weight"]
        t[ours + "norm2.weight"] = [hf + "post_attention_layernorm.weight"]
        for kind in kinds:
            t[ours + f"attn.qkv.{kind}"] = [hf + f"self_attn.{n}_proj.{kind}" for n in "qkv"]
            t[ours + f"attn.proj.{kind}"] = [hf + f"self_attn.o_proj.{kind}"]
            t[ours + f"mlp.fc.{kind}"] = [hf + f"mlp.gate_proj.{kind}"]
            t[ours + f"mlp.up.{kind}"] = [hf + f"mlp.up_proj.{kind}"]
            t[ours + f"mlp.proj.{kind}"] = [hf + f"mlp.down_proj.{kind}"]
    return t


def from_hf(hf_config: dict, state: dict) -> tuple[ModelConfig, dict]:
    """A Hugging Face Llama config and state dict -> our ModelConfig and GPT state dict."""
    cfg = config_from_hf(hf_config)
    theirs = {k.removeprefix(PREFIX): v for k, v in state.items()}
    t = table(cfg)
    ignore = [k for k in theirs if k.endswith(BUFFERS)]
    if cfg.tie_weights:
        ignore.append("lm_head.weight")  # a copy of embed_tokens when present
    else:
        t["head.weight"] = ["lm_head.weight"]
    ours = import_state(t, theirs, ignore=ignore)
    if cfg.tie_weights:
        ours["head.weight"] = ours["embed.tokens.weight"]
    return cfg, ours


def config_to_hf(cfg: ModelConfig) -> dict:
    """The `LlamaForCausalLM` config.json nearest to `cfg`."""
    return {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.block_size,
        "hidden_size": cfg.n_embd, "intermediate_size": cfg.hidden,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps, "attention_bias": cfg.bias, "mlp_bias": cfg.bias,
        "attention_dropout": cfg.dropout, "tie_word_embeddings": cfg.tie_weights,
        # both layouts, so that transformers 4 and 5 read the same base
        "rope_theta": cfg.rope_base, "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
        "torch_dtype": "float32"}


def to_hf(cfg: ModelConfig, state: dict) -> tuple[dict, dict]:
    """Our ModelConfig and GPT state dict -> a `LlamaForCausalLM` config and state dict: what a
    Llama can hold of them (`interop.hf.exported` refuses a model it cannot hold whole)."""
    hf_config = config_to_hf(cfg)
    kv = cfg.kv_heads * cfg.head_dim
    sizes = {f"layers.{i}.self_attn.{n}_proj.{kind}": rows
             for i in range(cfg.n_layer) for n, rows in (("q", cfg.n_embd), ("k", kv), ("v", kv))
             for kind in ("weight", "bias")}
    ours = {k: v for k, v in state.items() if k != "head.weight"}
    theirs = {PREFIX + k: v for k, v in export_state(table(cfg), ours, sizes).items()}
    if not cfg.tie_weights:
        theirs["lm_head.weight"] = state["head.weight"].contiguous()
    return hf_config, theirs
