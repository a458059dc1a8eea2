"""GPT-2 (Hugging Face `GPT2LMHeadModel`, `GPT2Model`) <-> glassformer's GPT.

GPT-2 is our default layout: learned positions, pre-norm LayerNorm blocks with biases, a final
LayerNorm, a fused qkv projection whose rows are [W_Q; W_K; W_V], and an LM head tied to the
token embeddings. Two things differ on the way:

- GPT-2's `Conv1D` stores a linear map as (in, out), the transpose of `nn.Linear`'s (out, in):
  c_attn (C, 3C), c_proj (C, C), c_fc (C, F), mlp.c_proj (F, C) are transposed both ways.
- `activation_function="gelu_new"` (GPT-2's default) is GELU's tanh approximation: our
  "gelu_tanh"; HF's "gelu" is the exact one, our "gelu".

Dropout (resid/embd/attn_pdrop) only acts in training; ours is one value, resid_pdrop's.
"""

from __future__ import annotations

from glassformer.config import ModelConfig
from glassformer.interop.keymap import Table, export_state, import_state, require

ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
               "relu": "relu"}  # HF activation_function -> ours
EXPORT_ACTIVATIONS = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
BUFFERS = ("attn.bias", "attn.masked_bias")  # causal-mask buffers in older checkpoints
PREFIX = "transformer."


def config_from_hf(c: dict) -> ModelConfig:
    """A GPT-2 config.json -> our ModelConfig, refusing settings we cannot represent."""
    require(c, "activation_function", lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}")
    require(c, "scale_attn_by_inverse_layer_idx", lambda v: not v,
            "False (the same score scale in every layer)")
    require(c, "add_cross_attention", lambda v: not v, "False (a decoder-only GPT)")
    n_embd = c.get("n_embd", 768)
    return ModelConfig(
        vocab_size=c.get("vocab_size", 50257), block_size=c.get("n_positions", 1024),
        n_layer=c.get("n_layer", 12), n_head=c.get("n_head", 12), n_embd=n_embd,
        ffn_hidden=c.get("n_inner") or 4 * n_embd,
        activation=ACTIVATIONS[c.get("activation_function", "gelu_new")],
        dropout=c.get("resid_pdrop", 0.1), bias=True, position="learned", norm="layernorm",
        norm_placement="pre", norm_eps=c.get("layer_norm_epsilon", 1e-5),
        tie_weights=c.get("tie_word_embeddings", True),
        qk_scale=None if c.get("scale_attn_weights", True) else 1.0)


def table(cfg: ModelConfig) -> Table:
    """Our parameter names -> GPT-2's (without the "transformer." prefix of GPT2LMHeadModel)."""
    t = {"embed.tokens.weight": ["wte.weight"], "embed.positions.table.weight": ["wpe.weight"],
         "norm.weight": ["ln_f.weight"], "norm.bias": ["ln_f.bias"]}
    for i in range(cfg.n_layer):
        ours, hf = f"blocks.{i}.", f"h.{i}."
        for kind in ("weight", "bias"):
            t[ours + f"norm1.{kind}"] = [hf + f"ln_1.{kind}"]
            t[ours + f"attn.qkv.{kind}"] = [hf + f"attn.c_attn.{kind}"]  # already [Q; K; V]
            t[ours + f"attn.proj.{kind}"] = [hf + f"attn.c_proj.{kind}"]
            t[ours + f"norm2.{kind}"] = [hf + f"ln_2.{kind}"]
            t[ours + f"mlp.fc.{kind}"] = [hf + f"mlp.c_fc.{kind}"]
            t[ours + f"mlp.proj.{kind}"] = [hf + f"mlp.c_proj.{kind}"]
    return t


def transpose_conv1d(state: dict) -> dict:
    """Conv1D (in, out) <-> nn.Linear (out, in): the same operation both ways."""
    return {k: v.t() if k.endswith(CONV1D) else v for k, v in state.items()}


def from_hf(hf_config: dict, state: dict) -> tuple[ModelConfig, dict]:
    """A Hugging Face GPT-2 config and state dict -> our ModelConfig and GPT state dict."""
    cfg = config_from_hf(hf_config)
    # GPT2LMHeadModel's names start with "transformer."; GPT2Model's (old checkpoints) do not.
    theirs = {k.removeprefix(PREFIX): v for k, v in state.items()}
    t = table(cfg)
    ignore = [k for k in theirs if k.endswith(BUFFERS)]
    if cfg.tie_weights:
        ignore.append("lm_head.weight")  # a copy of wte when present
    else:
        t["head.weight"] = ["lm_head.weight"]
    ours = import_state(t, transpose_conv1d(theirs), ignore=ignore)
    if cfg.tie_weights:
        ours["head.weight"] = ours["embed.tokens.weight"]  # one (V, C) matrix, two names
    return cfg, ours


def config_to_hf(cfg: ModelConfig) -> dict:
    """The `GPT2LMHeadModel` config.json nearest to `cfg`."""
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer, "n_head": cfg.n_head,
        "n_inner": None if cfg.hidden == 4 * cfg.n_embd else cfg.hidden,
        "activation_function": EXPORT_ACTIVATIONS.get(cfg.activation, "gelu_new"),
        "scale_attn_weights": cfg.architecture()["qk_scale"] != 1.0,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": cfg.norm_eps, "tie_word_embeddings": cfg.tie_weights,
        "bos_token_id": None, "eos_token_id": None, "torch_dtype": "float32"}


def to_hf(cfg: ModelConfig, state: dict) -> tuple[dict, dict]:
    """Our ModelConfig and GPT state dict -> a `GPT2LMHeadModel` config and state dict: what
    a GPT-2 can hold of them (`interop.hf.exported` refuses a model it cannot hold whole)."""
    hf_config = config_to_hf(cfg)
    ours = {k: v for k, v in state.items() if k != "head.weight"}
    theirs = transpose_conv1d(export_state(table(cfg), ours, sizes={}))
    theirs = {PREFIX + k: v.contiguous() for k, v in theirs.items()}
    if not cfg.tie_weights:
        theirs["lm_head.weight"] = state["head.weight"].contiguous()
    return hf_config, theirs
