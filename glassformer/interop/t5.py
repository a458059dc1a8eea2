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

transformers >= 5 always ties in memory and keeps the scaling as `scale_decoder_outputs`; older
configs say both with `tie_word_embeddings`. Import reads either; whether the head is tied is
read from the weights (an lm_head equal to the embedding, or none, is tied). The decoder starts
from the pad id (0) and ends at </s> (1): generate.beam.greedy(start=0, end=1).
"""

from __future__ import annotations

import dataclasses

import torch

from glassformer.config import ModelConfig
from glassformer.interop.keymap import (Table, UnsupportedCheckpoint, export_state, import_state,
                                        mismatches, require)

ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gated-gelu": "geglu_tanh",
               "gated-silu": "swiglu"}  # HF feed_forward_proj -> ours
EXPORT_ACTIVATIONS = {ours: theirs for theirs, ours in ACTIVATIONS.items()}
FF_NAMES = {"fc": "wi_0", "up": "wi_1", "proj": "wo"}  # gated; plain: fc is wi
SUBLAYERS = {"attn": "SelfAttention", "cross": "EncDecAttention"}
BIAS = "layer.0.SelfAttention.relative_attention_bias.weight"


def config_from_hf(c: dict) -> ModelConfig:
    """A T5 config.json -> our ModelConfig, refusing settings we cannot represent."""
    require(c, "feed_forward_proj", lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}")
    d_model, heads = c.get("d_model", 512), c.get("num_heads", 8)
    require(c, "d_kv", lambda v: v * heads == d_model,
            f"d_model / num_heads = {d_model / heads:g} (glassformer's heads split the width)")
    layers = c.get("num_layers", 6)
    require(c, "num_decoder_layers", lambda v: v in (None, layers),
            f"num_layers={layers}: glassformer's n_layer is the same for both stacks")
    return ModelConfig(
        family="encdec", vocab_size=c.get("vocab_size", 32128),
        block_size=c.get("n_positions", 512), n_layer=layers, n_head=heads, n_embd=d_model,
        ffn_hidden=c.get("d_ff", 2048), activation=ACTIVATIONS[c.get("feed_forward_proj", "relu")],
        dropout=c.get("dropout_rate", 0.1), bias=False, position="t5",
        rel_buckets=c.get("relative_attention_num_buckets", 32),
        rel_max_distance=c.get("relative_attention_max_distance", 128), rel_shared=True,
        norm="rmsnorm", norm_placement="pre", norm_eps=c.get("layer_norm_epsilon", 1e-6),
        qk_scale=1.0, scale_head=scales_head(c))


def scales_head(c: dict) -> bool:
    """Whether the decoder output is scaled by d_model^-0.5: transformers >= 5 writes
    `scale_decoder_outputs`; before, T5 scaled exactly when `tie_word_embeddings` (v1.0)."""
    if "scale_decoder_outputs" in c:
        return bool(c["scale_decoder_outputs"])
    return c.get("tie_word_embeddings", True) is not False


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
            for mine, theirs in ff.items():
                t[ours + f"mlp.{mine}.weight"] = [f"{layer}{len(norms) - 1}.DenseReluDense.{theirs}.weight"]
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
    head = state.get("lm_head.weight")
    tied = head is None or torch.equal(head, state["shared.weight"])
    cfg = dataclasses.replace(cfg, tie_weights=tied)
    ignore = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
              # transformers keeps a cross-attention bias table out of old checkpoints
              "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"]
    ours = import_state(table(cfg), state, ignore=ignore + (["lm_head.weight"] if tied else []))
    for name, source in copies(cfg).items():
        ours[name] = ours[source]
    return cfg, ours


def unsupported(cfg: ModelConfig) -> list[str]:
    """What keeps `cfg` from being a T5 (empty when it is one)."""
    problems = mismatches(cfg, "T5", family="encdec", attention="softmax", position="t5",
                          rel_shared=True, norm="rmsnorm", norm_placement="pre", bias=False,
                          qk_scale=1.0, n_kv_head=None, qk_norm=False, window=None,
                          moe_experts=0, embed_norm=False, type_vocab_size=0)
    if cfg.activation not in EXPORT_ACTIVATIONS:
        problems.append(f"activation={cfg.activation!r} (T5: one of "
                        f"{', '.join(EXPORT_ACTIVATIONS)})")
    if cfg.scale_head and not cfg.tie_weights:
        problems.append("scale_head=True with tie_weights=False (T5 scales a tied head only)")
    return problems


def to_hf(cfg: ModelConfig, state: dict) -> tuple[dict, dict]:
    """Our `encdec` config and state dict -> a `T5ForConditionalGeneration` config and state."""
    problems = unsupported(cfg)
    if problems:
        raise UnsupportedCheckpoint("not a T5: " + "; ".join(problems))
    hf_config = {
        "model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "d_model": cfg.n_embd,
        "d_kv": cfg.head_dim, "d_ff": cfg.hidden, "num_layers": cfg.n_layer,
        "num_decoder_layers": cfg.n_layer, "num_heads": cfg.n_head,
        "relative_attention_num_buckets": cfg.rel_buckets,
        "relative_attention_max_distance": cfg.rel_max_distance,
        "dropout_rate": cfg.dropout, "layer_norm_epsilon": cfg.norm_eps,
        "feed_forward_proj": EXPORT_ACTIVATIONS[cfg.activation], "is_encoder_decoder": True,
        # what both readers understand: transformers < 5 scales exactly a tied head
        "tie_word_embeddings": cfg.scale_head, "scale_decoder_outputs": cfg.scale_head,
        "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
        "torch_dtype": "float32"}
    sizes = {name: cfg.n_embd for names in table(cfg).values() if len(names) > 1 for name in names}
    skip = set(copies(cfg))
    theirs = export_state(table(cfg), {k: v for k, v in state.items() if k not in skip}, sizes)
    if cfg.tie_weights and not cfg.scale_head:
        # a tied head without the scaling (what transformers >= 5 builds for v1.1 configs):
        # written as its own lm_head, since an older reader unties it
        theirs["lm_head.weight"] = state["head.weight"].clone()
    return hf_config, theirs
