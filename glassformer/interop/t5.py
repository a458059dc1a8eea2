"""T5 (Hugging Face `T5ForConditionalGeneration`, `T5Model`) <-> glassformer's `encdec`.

T5 is our encoder-decoder with these parts (docs/t5.md):
- positions: T5's relative bias (position="t5"), one table per stack in the first layer's
  self-attention, read by every layer (rel_shared); bidirectional in the encoder, past-only in
  the decoder; cross-attention has none;
- norms: RMSNorm without bias (T5LayerNorm: no mean subtracted), pre-norm, a final norm per stack;
- attention: separate q/k/v (fused into our qkv), no biases, scores not scaled (qk_scale=1.0);
- feed-forward: v1.0 ReLU (wi, wo); v1.1 "gated-gelu" with the tanh GELU (wi_0 the gate, wi_1
  the up projection): our "geglu_tanh";
- head: v1.0 ties it to the shared embedding and scales the decoder output by d_model^-0.5
  (scale_head); v1.1 has its own lm_head and no scaling.

transformers >= 5 keeps the scaling as `scale_decoder_outputs` and unties a head saved apart
from the embedding; older configs say both with `tie_word_embeddings`. Import reads either: a
head is tied when the checkpoint has none, or when the config ties it and it equals the
embedding. The decoder starts from the pad id (0) and ends at </s> (1):
generate.beam.greedy(start=0, end=1).
"""

from __future__ import annotations

import dataclasses

import torch

from glassformer.config import ModelConfig
from glassformer.interop.keymap import (Table, UnsupportedCheckpoint, export_state, import_state,
                                        require)

ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh", "relu2": "relu2",
               "gated-gelu": "geglu_tanh", "gated-silu": "swiglu"}  # HF feed_forward_proj -> ours
EXPORT_ACTIVATIONS = {ours: theirs for theirs, ours in ACTIVATIONS.items()}
FF_NAMES = {"fc": "wi_0", "up": "wi_1", "proj": "wo"}  # gated; plain: fc is wi
SUBLAYERS = {"attn": "SelfAttention", "cross": "EncDecAttention"}
BIAS = "layer.0.SelfAttention.relative_attention_bias.weight"


def config_from_hf(c: dict) -> ModelConfig:
    """A T5 config.json -> our ModelConfig, refusing settings we cannot represent. Whether the
    head is tied is what the config says; from_hf then reads it from the weights."""
    require(c, "feed_forward_proj", lambda v: v in ACTIVATIONS,
            f"one of {', '.join(ACTIVATIONS)}")
    d_model, heads = c.get("d_model", 512), c.get("num_heads", 8)
    require(c, "d_kv", lambda v: v * heads == d_model,
            f"d_model / num_heads = {d_model / heads:g} (glassformer's heads split the width)")
    layers = c.get("num_layers", 6)
    require(c, "num_decoder_layers", lambda v: v in (None, layers),
            f"num_layers={layers}: glassformer's n_layer is the same for both stacks")
    tied = c.get("tie_word_embeddings", True) is not False
    return ModelConfig(
        family="encdec", vocab_size=c.get("vocab_size", 32128),
        block_size=c.get("n_positions", 512), n_layer=layers, n_head=heads, n_embd=d_model,
        ffn_hidden=c.get("d_ff", 2048), activation=ACTIVATIONS[c.get("feed_forward_proj", "relu")],
        dropout=c.get("dropout_rate", 0.1), bias=False, position="t5",
        rel_buckets=c.get("relative_attention_num_buckets", 32),
        rel_max_distance=c.get("relative_attention_max_distance", 128), rel_shared=True,
        norm="rmsnorm", norm_placement="pre", norm_eps=c.get("layer_norm_epsilon", 1e-6),
        qk_scale=1.0, tie_weights=tied, scale_head=c.get("scale_decoder_outputs", tied))


def table(cfg: ModelConfig) -> Table:
    """Our parameter names -> T5's, without the copies (the decoder's token table, a tied head,
    the shared bias table under layers 1..L-1)."""
    t = {"encoder.embed.tokens.weight": ["shared.weight"]}
    ff = FF_NAMES if cfg.gated else {"fc": "wi", "proj": "wo"}
    for stack in ("encoder", "decoder"):
        sublayers = ("attn", "cross") if stack == "decoder" else ("attn",)
        norms = ("norm1", "norm_cross", "norm2") if stack == "decoder" else ("norm1", "norm2")
        t[f"{stack}.blocks.0.attn.relative.table.weight"] = [f"{stack}.block.0.{BIAS}"]
        t[f"{stack}.norm.weight"] = [f"{stack}.final_layer_norm.weight"]
        for i in range(cfg.n_layer):
            ours, layer = f"{stack}.blocks.{i}.", f"{stack}.block.{i}.layer."
            for n, mine in enumerate(sublayers):
                theirs = f"{layer}{n}.{SUBLAYERS[mine]}."
                t[ours + f"{mine}.qkv.weight"] = [theirs + f"{p}.weight" for p in "qkv"]
                t[ours + f"{mine}.proj.weight"] = [theirs + "o.weight"]
            for n, norm in enumerate(norms):  # each sublayer's pre-norm, in order
                t[ours + f"{norm}.weight"] = [f"{layer}{n}.layer_norm.weight"]
            dense = f"{layer}{len(norms) - 1}.DenseReluDense."  # the last sublayer
            for mine, theirs in ff.items():
                t[ours + f"mlp.{mine}.weight"] = [f"{dense}{theirs}.weight"]
    if not cfg.tie_weights:
        t["head.weight"] = ["lm_head.weight"]
    return t


def copies(cfg: ModelConfig) -> dict[str, str]:
    """Our names that hold another name's tensor -> that name: the decoder's token table and a
    tied head (the encoder's token table), layers 1..L-1's view of their stack's bias table."""
    tokens = "encoder.embed.tokens.weight"
    names = {"decoder.embed.tokens.weight": tokens} | ({"head.weight": tokens}
                                                       if cfg.tie_weights else {})
    return names | {f"{stack}.blocks.{i}.attn.relative.table.weight":
                    f"{stack}.blocks.0.attn.relative.table.weight"
                    for stack in ("encoder", "decoder") for i in range(1, cfg.n_layer)}


def from_hf(hf_config: dict, state: dict) -> tuple[ModelConfig, dict]:
    """A Hugging Face T5 config and state dict (T5ForConditionalGeneration, or T5Model, whose
    missing head is tied as transformers ties it) -> our ModelConfig and state dict."""
    cfg = config_from_hf(hf_config)
    if not any(k.startswith("decoder.") for k in state):
        raise UnsupportedCheckpoint(
            "this T5 checkpoint has no decoder (a T5EncoderModel); glassformer reads T5Model and "
            "T5ForConditionalGeneration checkpoints, whose encode() gives the encoder's states")
    # transformers >= 5 says tie_word_embeddings=True even for a v1.1 checkpoint with its own
    # lm_head: a head is tied when it is missing, or when the config ties it and it is equal
    head = state.get("lm_head.weight")
    tied = head is None or (cfg.tie_weights and torch.equal(head, state["shared.weight"]))
    cfg = dataclasses.replace(cfg, tie_weights=tied)
    ignore = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
              # transformers keeps a cross-attention bias table out of old checkpoints
              "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"]
    ours = import_state(table(cfg), state, ignore=ignore + (["lm_head.weight"] if tied else []))
    for name, source in copies(cfg).items():
        ours[name] = ours[source]
    return cfg, ours


def config_to_hf(cfg: ModelConfig) -> dict:
    """The `T5ForConditionalGeneration` config.json nearest to `cfg`. transformers >= 5 reads
    the head's scaling from scale_decoder_outputs and unties a head saved apart from `shared`;
    older versions read both from tie_word_embeddings, so they load v1.0 (tied, scaled) and
    v1.1 (untied, unscaled) alike, but not the two mixed forms (docs/t5.md)."""
    return {
        "model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "d_model": cfg.n_embd,
        "d_kv": cfg.head_dim, "d_ff": cfg.hidden, "num_layers": cfg.n_layer,
        "num_decoder_layers": cfg.n_layer, "num_heads": cfg.n_head,
        "relative_attention_num_buckets": cfg.rel_buckets,
        "relative_attention_max_distance": cfg.rel_max_distance,
        "dropout_rate": cfg.dropout, "layer_norm_epsilon": cfg.norm_eps,
        "feed_forward_proj": EXPORT_ACTIVATIONS.get(cfg.activation, "relu"),
        "is_encoder_decoder": True, "tie_word_embeddings": cfg.tie_weights,
        "scale_decoder_outputs": cfg.scale_head,
        "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}


def to_hf(cfg: ModelConfig, state: dict) -> tuple[dict, dict]:
    """Our `encdec` config and state dict -> a `T5ForConditionalGeneration` config and state
    dict: what a T5 can hold of them (`interop.hf.exported` refuses a model it cannot hold
    whole)."""
    hf_config = config_to_hf(cfg)
    sizes = {name: cfg.n_embd for names in table(cfg).values() if len(names) > 1 for name in names}
    skip = set(copies(cfg))
    theirs = export_state(table(cfg), {k: v for k, v in state.items() if k not in skip}, sizes)
    return hf_config, theirs
