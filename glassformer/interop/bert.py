"""BERT (Hugging Face `BertModel`, `BertForMaskedLM`, `BertForSequenceClassification`) <->
glassformer's `bert` family.

Layout: post-norm blocks; separate query/key/value (fused into our qkv); embeddings = words +
positions + token types, then LayerNorm. The head is whatever the checkpoint holds:

  BertForMaskedLM                 cls.predictions.*    our `mlm` (decoder tied to the words)
  BertForSequenceClassification   pooler + classifier  our `classifier` (n_classes > 0)
  BertModel                       pooler.* or nothing  a plain encoder: head "pooler" / "none"

A BertModel's names have no "bert." prefix (sentence-transformers' layout), or have it when the
model was saved inside a task model; both load. A masked-LM checkpoint that also holds a pooler
or the next-sentence head (BertForPreTraining) loads as BertForMaskedLM does: without them.
"""

from __future__ import annotations

from glassformer.config import ModelConfig
from glassformer.interop.keymap import Table, export_state, import_state, require

ACTIVATIONS = {"gelu": "gelu", "relu": "relu"}  # HF hidden_act -> ours (exact GELU both sides)
ARCHITECTURES = {"mlm": "BertForMaskedLM", "classifier": "BertForSequenceClassification",
                 "pooler": "BertModel", "none": "BertModel"}


def head(cfg: ModelConfig) -> str:
    """Which head the model has: "mlm", "classifier", "pooler" or "none"."""
    return "classifier" if cfg.n_classes else cfg.head


def config_from_hf(c: dict, n_classes: int | None = None, head: str | None = None
                   ) -> ModelConfig:
    """A BERT config.json -> our ModelConfig, with the head the weights hold (`n_classes`,
    `head`) or, without them, the head its "architectures" names (a BertModel as transformers
    builds it: with a pooler)."""
    architecture = (c.get("architectures") or ["BertForMaskedLM"])[0]
    if n_classes is None:
        classify = architecture == ARCHITECTURES["classifier"]
        n_classes = len(c.get("id2label") or {}) if classify else 0
    if head is None:
        head = "pooler" if architecture == ARCHITECTURES["pooler"] else "mlm"
    require(c, "hidden_act", lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}")
    require(c, "position_embedding_type", lambda v: v in (None, "absolute"), "'absolute'")
    return ModelConfig(
        family="bert", vocab_size=c["vocab_size"], block_size=c["max_position_embeddings"],
        n_layer=c["num_hidden_layers"], n_head=c["num_attention_heads"], n_embd=c["hidden_size"],
        ffn_hidden=c["intermediate_size"], activation=ACTIVATIONS[c["hidden_act"]],
        dropout=c.get("hidden_dropout_prob", 0.1), norm_placement="post",
        norm_eps=c.get("layer_norm_eps", 1e-12), embed_norm=True,
        type_vocab_size=c.get("type_vocab_size", 2), n_classes=n_classes, head=head,
        pooling="cls")


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
    kind_of_head = head(cfg)
    for kind in ("weight", "bias"):
        if kind_of_head == "classifier":
            t[f"classifier.dense.{kind}"] = [f"{prefix}pooler.dense.{kind}"]
            t[f"classifier.out.{kind}"] = [f"classifier.{kind}"]
        elif kind_of_head == "pooler":
            t[f"pooler.dense.{kind}"] = [f"{prefix}pooler.dense.{kind}"]
        elif kind_of_head == "mlm":
            t[f"mlm.dense.{kind}"] = [f"cls.predictions.transform.dense.{kind}"]
            t[f"mlm.norm.{kind}"] = [f"cls.predictions.transform.LayerNorm.{kind}"]
    if kind_of_head == "mlm":
        t["mlm.out.bias"] = ["cls.predictions.bias"]
    return t


def from_hf(hf_config: dict, state: dict) -> tuple[ModelConfig, dict]:
    """A Hugging Face BERT config and state dict -> our ModelConfig and state dict, with the
    head the weights hold."""
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    pooler = [f"{prefix}pooler.dense.{k}" for k in ("weight", "bias")]
    classifier = state.get("classifier.weight")  # (n_classes, C): BertForSequenceClassification
    if classifier is not None:
        cfg = config_from_hf(hf_config, n_classes=classifier.size(0))
    elif "cls.predictions.transform.dense.weight" in state:
        cfg = config_from_hf(hf_config, head="mlm")
    else:
        cfg = config_from_hf(hf_config, head="pooler" if pooler[0] in state else "none")
    ignored = ["cls.predictions.decoder.weight", "cls.predictions.decoder.bias",  # tied copies
               prefix + "embeddings.position_ids", prefix + "embeddings.token_type_ids",
               # BertForPreTraining's next-sentence head: a second task glassformer does not
               # train; BertForMaskedLM leaves it and the pooler under it out, and so do we
               "cls.seq_relationship.weight", "cls.seq_relationship.bias"]
    if cfg.head == "mlm" and not cfg.n_classes:
        ignored += pooler
    ours = import_state(table(cfg, prefix), state, ignore=ignored)
    if cfg.head == "mlm" and not cfg.n_classes:
        ours["mlm.out.weight"] = ours["embed.tokens.weight"]  # tied, as in BERT
    return cfg, ours


def config_to_hf(cfg: ModelConfig) -> dict:
    """The config.json of the transformers class that holds `cfg`'s head (ARCHITECTURES),
    nearest to `cfg`."""
    kind_of_head = head(cfg)
    hf_config = {
        "model_type": "bert", "architectures": [ARCHITECTURES[kind_of_head]],
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.block_size,
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
        "hidden_size": cfg.n_embd, "intermediate_size": cfg.hidden,
        "hidden_act": cfg.activation if cfg.activation in ACTIVATIONS else "gelu",
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout,
        "layer_norm_eps": cfg.norm_eps,
        "type_vocab_size": max(cfg.type_vocab_size, 1),  # a BERT always has one
        "position_embedding_type": "absolute"}
    if kind_of_head == "classifier":
        hf_config["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.n_classes)}
    return hf_config


def to_hf(cfg: ModelConfig, state: dict) -> tuple[dict, dict]:
    """Our `bert` config and state dict -> the config and state dict of the transformers class
    that holds the same head (ARCHITECTURES), and nothing more (`interop.hf.exported` refuses
    a model it cannot hold whole)."""
    hf_config, kind_of_head = config_to_hf(cfg), head(cfg)
    # BertModel's own names have no prefix; the task models keep theirs under "bert."
    prefix = "" if ARCHITECTURES[kind_of_head] == "BertModel" else "bert."
    names = table(cfg, prefix)
    ours = {k: v for k, v in state.items() if k != "mlm.out.weight"}  # the tied words
    sizes = {f"{prefix}encoder.layer.{i}.attention.self.{n}.{k}": cfg.n_embd
             for i in range(cfg.n_layer) for n in ("query", "key", "value") for k in ("weight", "bias")}
    theirs = export_state(names, ours, sizes)
    if kind_of_head == "mlm":
        theirs["cls.predictions.decoder.weight"] = theirs["bert.embeddings.word_embeddings.weight"]
        theirs["cls.predictions.decoder.bias"] = theirs["cls.predictions.bias"]
    return hf_config, theirs
