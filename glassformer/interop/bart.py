"""BART (Hugging Face `BartModel`, `BartForConditionalGeneration`) <-> glassformer's `encdec`.

Layout: post-norm encoder and decoder blocks; separate q/k/v projections (fused into our qkv,
for self- and cross-attention alike); embeddings = tokens + learned positions, then LayerNorm;
one token matrix shared by encoder, decoder and LM head. BART's position table has two extra
rows in front (position p reads row p + 2), which import drops and export puts back as zeros.
"""

from __future__ import annotations

import torch

from glassformer.config import ModelConfig
from glassformer.interop.keymap import (Table, UnsupportedCheckpoint, export_state, import_state,
                                        require)

OFFSET = 2  # BartLearnedPositionalEmbedding's offset
ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}
SUBLAYERS = {"attn": "self_attn", "cross": "encoder_attn"}


def config_from_hf(c: dict) -> ModelConfig:
    require(c, "activation_function", lambda v: v in ACTIVATIONS,
            f"one of {', '.join(ACTIVATIONS)}")
    require(c, "scale_embedding", lambda v: not v, "False (unscaled token embeddings)")
    for ours, enc, dec in (("n_layer", "encoder_layers", "decoder_layers"),
                           ("n_head", "encoder_attention_heads", "decoder_attention_heads"),
                           ("ffn_hidden", "encoder_ffn_dim", "decoder_ffn_dim")):
        if c[enc] != c[dec]:
            raise UnsupportedCheckpoint(f"config.json has {enc}={c[enc]} but {dec}={c[dec]}; "
                                        f"glassformer's {ours} is the same for both stacks")
    return ModelConfig(
        family="encdec", vocab_size=c["vocab_size"], block_size=c["max_position_embeddings"],
        n_layer=c["encoder_layers"], n_head=c["encoder_attention_heads"], n_embd=c["d_model"],
        ffn_hidden=c["encoder_ffn_dim"], activation=ACTIVATIONS[c["activation_function"]],
        dropout=c.get("dropout", 0.1), norm_placement="post", embed_norm=True,
        tie_weights=c.get("tie_word_embeddings", True))


def table(cfg: ModelConfig, prefix: str = "model.") -> Table:
    t = {"encoder.embed.tokens.weight": [prefix + "shared.weight"]}
    for stack in ("encoder", "decoder"):
        hf = f"{prefix}{stack}."
        t[f"{stack}.embed.positions.table.weight"] = [hf + "embed_positions.weight"]
        for kind in ("weight", "bias"):
            t[f"{stack}.embed.norm.{kind}"] = [hf + f"layernorm_embedding.{kind}"]
        for i in range(cfg.n_layer):
            ours, layer = f"{stack}.blocks.{i}.", f"{hf}layers.{i}."
            sublayers = SUBLAYERS if stack == "decoder" else {"attn": "self_attn"}
            for kind in ("weight", "bias"):
                for mine, theirs in sublayers.items():
                    t[ours + f"{mine}.qkv.{kind}"] = [layer + f"{theirs}.{n}_proj.{kind}"
                                                      for n in ("q", "k", "v")]
                    t[ours + f"{mine}.proj.{kind}"] = [layer + f"{theirs}.out_proj.{kind}"]
                t[ours + f"norm1.{kind}"] = [layer + f"self_attn_layer_norm.{kind}"]
                if stack == "decoder":
                    t[ours + f"norm_cross.{kind}"] = [layer + f"encoder_attn_layer_norm.{kind}"]
                t[ours + f"mlp.fc.{kind}"] = [layer + f"fc1.{kind}"]
                t[ours + f"mlp.proj.{kind}"] = [layer + f"fc2.{kind}"]
                t[ours + f"norm2.{kind}"] = [layer + f"final_layer_norm.{kind}"]
    if not cfg.tie_weights:
        t["head.weight"] = ["lm_head.weight"]
    return t


def from_hf(hf_config: dict, state: dict) -> tuple[ModelConfig, dict]:
    """A Hugging Face BART config and state dict -> our ModelConfig and state dict."""
    cfg = config_from_hf(hf_config)
    prefix = "model." if any(k.startswith("model.") for k in state) else ""
    bias = state.get("final_logits_bias")
    if bias is not None and bias.abs().max() > 0:
        raise UnsupportedCheckpoint("final_logits_bias is not zero; glassformer's LM head has "
                                    "no bias")
    tied = ["final_logits_bias", f"{prefix}encoder.embed_tokens.weight",
            f"{prefix}decoder.embed_tokens.weight"] + (["lm_head.weight"] if cfg.tie_weights else [])
    state = {k: (v[OFFSET:] if k.endswith("embed_positions.weight") else v) for k, v in state.items()}
    ours = import_state(table(cfg, prefix), state, ignore=tied)
    ours["decoder.embed.tokens.weight"] = ours["encoder.embed.tokens.weight"]
    if cfg.tie_weights:
        ours["head.weight"] = ours["encoder.embed.tokens.weight"]
    return cfg, ours


def config_to_hf(cfg: ModelConfig) -> dict:
    """The `BartForConditionalGeneration` config.json nearest to `cfg`."""
    return {
        "model_type": "bart", "architectures": ["BartForConditionalGeneration"],
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.block_size,
        "d_model": cfg.n_embd, "encoder_layers": cfg.n_layer, "decoder_layers": cfg.n_layer,
        "encoder_attention_heads": cfg.n_head, "decoder_attention_heads": cfg.n_head,
        "encoder_ffn_dim": cfg.hidden, "decoder_ffn_dim": cfg.hidden,
        "activation_function": cfg.activation if cfg.activation in ACTIVATIONS else "gelu",
        "dropout": cfg.dropout, "scale_embedding": False,
        "tie_word_embeddings": cfg.tie_weights}


def to_hf(cfg: ModelConfig, state: dict) -> tuple[dict, dict]:
    """Our `encdec` config and state dict -> a `BartForConditionalGeneration` config and state
    dict: what a BART can hold of them (`interop.hf.exported` refuses a model it cannot hold
    whole)."""
    hf_config = config_to_hf(cfg)
    sizes = {name: cfg.n_embd for names in table(cfg).values() if len(names) > 1 for name in names}
    copies = ("decoder.embed.tokens.weight",) + (("head.weight",) if cfg.tie_weights else ())
    theirs = export_state(table(cfg), {k: v for k, v in state.items() if k not in copies}, sizes)
    for k, v in theirs.items():
        if k.endswith("embed_positions.weight"):
            theirs[k] = torch.cat([v.new_zeros(OFFSET, v.size(1)), v])
    shared = theirs["model.shared.weight"]
    # transformers ties the stacks' tables to `shared` only with a tied head: untied, each is
    # saved whole (a copy, not a view, which would be written once)
    copy = (lambda t: t) if cfg.tie_weights else torch.clone
    theirs |= {"model.encoder.embed_tokens.weight": copy(shared),
               "model.decoder.embed_tokens.weight": copy(shared),
               "final_logits_bias": shared.new_zeros(1, cfg.vocab_size)}
    if cfg.tie_weights:
        theirs["lm_head.weight"] = shared
    return hf_config, theirs
