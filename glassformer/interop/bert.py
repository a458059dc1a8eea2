"""BERT (Hugging Face `BertModel`, `BertForMaskedLM`, `BertForSequenceClassification`) <->
glassformer's `bert` family.

Layout: post-norm blocks; separate query/key/value (fused into our qkv); embeddings = words +
positions + token types, then LayerNorm; the MLM head's decoder is tied to the word embeddings;
the pooler (dense + tanh on [CLS]) is our classifier's `dense`.
"""

from __future__ import annotations

from glassformer.config import ModelConfig
from glassformer.interop.keymap import Table, export_state, import_state, require

ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}  # HF hidden_act -> ours (exact GELU both sides)


def config_from_hf(c: dict, n_classes: int | None = None) -> ModelConfig:
    """A BERT config.json -> our ModelConfig; `n_classes` from the classifier's weights, else
    from the labels of a `BertForSequenceClassification` config."""
    if n_classes is None:
        classify = "BertForSequenceClassification" in (c.get("architectures") or ())
        n_classes = len(c.get("id2label") or {}) if classify else 0
    require(c, "hidden_act", lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}")
    require(c, "position_embedding_type", lambda v: v in (None, "absolute"), "'absolute'")
    return ModelConfig(
        family="bert", vocab_size=c["vocab_size"], block_size=c["max_position_embeddings"],
        n_layer=c["num_hidden_layers"], n_head=c["num_attention_heads"], n_embd=c["hidden_size"],
        ffn_hidden=c["intermediate_size"], activation=ACTIVATIONS[c["hidden_act"]],
        dropout=c.get("hidden_dropout_prob", 0.1), norm_placement="post",
        norm_eps=c.get("layer_norm_eps", 1e-12), embed_norm=True,
        type_vocab_size=c.get("type_vocab_size", 2), n_classes=n_classes, pooling="cls")


def table(cfg: ModelConfig, prefix: str = "bert.") -> Table:
    e = prefix + "embeddings."
    t = {"embed.tokens.weight": [e + "word_embeddings.weight"],
         "embed.positions.table.weight": [e + "position_embeddings.weight"],
         "embed.types.weight": [e + "token_type_embeddings.weight"],
         "embed.norm.weight": [e + "LayerNorm.weight"], "embed.norm.bias": [e + "LayerNorm.bias"]}
    for i in range(cfg.n_layer):
        ours, hf = f"blocks.{i}.", f"{prefix}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            t[ours + f"attn.qkv.{kind}"] = [hf + f"attention.self.{n}.{kind}"
                                            for n in ("query", "key", "value")]
            t[ours + f"attn.proj.{kind}"] = [hf + f"attention.output.dense.{kind}"]
            t[ours + f"norm1.{kind}"] = [hf + f"attention.output.LayerNorm.{kind}"]
            t[ours + f"mlp.fc.{kind}"] = [hf + f"intermediate.dense.{kind}"]
            t[ours + f"mlp.proj.{kind}"] = [hf + f"output.dense.{kind}"]
            t[ours + f"norm2.{kind}"] = [hf + f"output.LayerNorm.{kind}"]
    for kind in ("weight", "bias"):
        if cfg.n_classes:
            t[f"classifier.dense.{kind}"] = [f"{prefix}pooler.dense.{kind}"]
            t[f"classifier.out.{kind}"] = [f"classifier.{kind}"]
        else:
            t[f"mlm.dense.{kind}"] = [f"cls.predictions.transform.dense.{kind}"]
            t[f"mlm.norm.{kind}"] = [f"cls.predictions.transform.LayerNorm.{kind}"]
    if not cfg.n_classes:
        t["mlm.out.bias"] = ["cls.predictions.bias"]
    return t


def from_hf(hf_config: dict, state: dict) -> tuple[ModelConfig, dict]:
    """A Hugging Face BERT config and state dict -> our ModelConfig and state dict."""
    classifier = state.get("classifier.weight")  # (n_classes, C): BertForSequenceClassification
    cfg = config_from_hf(hf_config, 0 if classifier is None else classifier.size(0))
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    tied = ["cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
            prefix + "embeddings.position_ids", prefix + "embeddings.token_type_ids",
            # BertForPreTraining's next-sentence head: a second task glassformer does not
            # train; leaving it out changes no masked-LM output
            "cls.seq_relationship.weight", "cls.seq_relationship.bias"]
    if cfg.n_classes == 0:
        tied += [f"{prefix}pooler.dense.{k}" for k in ("weight", "bias")]  # BertModel's pooler
    ours = import_state(table(cfg, prefix), state, ignore=tied)
    if not cfg.n_classes:
        ours["mlm.out.weight"] = ours["embed.tokens.weight"]  # tied, as in BERT
    return cfg, ours


def config_to_hf(cfg: ModelConfig) -> dict:
    """The `BertForMaskedLM` or `BertForSequenceClassification` config.json nearest to `cfg`."""
    classify = cfg.n_classes > 0
    hf_config = {
        "model_type": "bert", "architectures": [
            "BertForSequenceClassification" if classify else "BertForMaskedLM"],
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.block_size,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "hidden_size": cfg.n_embd, "intermediate_size": cfg.hidden,
        "hidden_act": cfg.activation if cfg.activation in ACTIVATIONS else "gelu",
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout,
        "layer_norm_eps": cfg.norm_eps, "type_vocab_size": max(cfg.type_vocab_size, 1),  # BERT always has one
        "position_embedding_type": "absolute"}
    if classify:
        hf_config["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.n_classes)}
    return hf_config


def to_hf(cfg: ModelConfig, state: dict) -> tuple[dict, dict]:
    """Our `bert` config and state dict -> a `BertForMaskedLM` or
    `BertForSequenceClassification` config and state dict: what a BERT can hold of them
    (`interop.hf.exported` refuses a model it cannot hold whole)."""
    hf_config, classify = config_to_hf(cfg), cfg.n_classes > 0
    sizes = {f"bert.encoder.layer.{i}.attention.self.{n}.{k}": cfg.n_embd
             for i in range(cfg.n_layer) for n in ("query", "key", "value") for k in ("weight", "bias")}
    theirs = export_state(table(cfg), {k: v for k, v in state.items() if k != "mlm.out.weight"},
                          sizes)
    if not classify:
        theirs["cls.predictions.decoder.weight"] = theirs["bert.embeddings.word_embeddings.weight"]
        theirs["cls.predictions.decoder.bias"] = theirs["cls.predictions.bias"]
    return hf_config, theirs
