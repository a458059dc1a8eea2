"""Typed configuration: model, training and sampling settings, named presets, JSON I/O and
dotted command-line overrides (`--model.n_layer=4`). How a field's value is checked, read from
JSON or parsed from a string is generic and lives in typed.py.

This module does not import torch, so that `glassformer --help` answers at once.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from glassformer.errors import ConfigError
from glassformer.typed import (changed_fields_repr, check_types, from_dict, parse_value,
                               reject_unknown, require)

Position = Literal["learned", "sinusoidal", "rope", "alibi", "t5", "none"]
# Where each position scheme acts: vectors added to the token embeddings, a rotation of the
# queries and keys, or a bias added to the attention scores. model/position.py builds the part
# that acts there; the checks below ask this table (the part that cannot import torch).
POSITION_ACTS_ON = {"learned": "embeddings", "sinusoidal": "embeddings", "rope": "qk",
                    "alibi": "scores", "t5": "scores", "none": "nowhere"}
ACTING_POSITIONS = tuple(s for s, where in POSITION_ACTS_ON.items() if where != "nowhere")
Activation = Literal["relu", "relu2", "gelu", "gelu_tanh", "swiglu", "geglu", "geglu_tanh"]
Norm = Literal["layernorm", "rmsnorm"]
NormPlacement = Literal["pre", "post"]
Attention = Literal["softmax", "linear"]
# Whether each attention algorithm forms the (T, S) scores that score biases, sliding windows
# and qk_scale act on. model/attention_kinds.py maps each algorithm to its layer and state.
FORMS_SCORES = {"softmax": True, "linear": False}
Kernel = Literal["sdpa", "math"]
Family = Literal["gpt", "bert", "encdec", "lstm"]
Pooling = Literal["cls", "mean", "max", "token"]
EncoderHead = Literal["mlm", "pooler", "none"]
Task = Literal["lm", "mlm", "genre", "tsv", "pairs", "chat"]
Device = Literal["auto", "cpu", "cuda", "mps"]
TokenizerKind = Literal["char", "bpe"]
Parallel = Literal["ddp", "fsdp"]
Quantization = Literal["none", "int8", "bf16"]  # weights for decoding: model/quantize.py
LORA_TARGETS = ("q", "k", "v", "o", "fc", "up", "proj")
SEEDS = 2**64  # torch seeds a generator with an unsigned 64-bit integer


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a model's architecture: `config.json["model"]`."""

    __repr__ = changed_fields_repr  # only the fields that differ from the defaults

    family: Family = "gpt"
    """Which assembly of the parts: a decoder-only causal LM (GPT), a bidirectional encoder with
    a masked-LM or classifier head (BERT), or an encoder and a cross-attending decoder (the
    original transformer); or, as the baseline attention is compared with, an LSTM language
    model (n_layer layers of width n_embd). model/__init__.py maps each to its class."""
    vocab_size: int = 65
    """Number of token ids; training sets it from the tokenizer."""
    block_size: int = 256
    """Longest context the model sees (positions 0 .. block_size-1)."""
    n_layer: int = 6
    """Number of transformer blocks."""
    n_head: int = 6
    """Attention heads per block; n_embd must be divisible by it."""
    n_kv_head: int | None = None
    """Key/value heads: None = n_head (multi-head), 1 = multi-query, else grouped-query (GQA).
    The code reads the resolved count, `kv_heads` (Hkv)."""
    n_embd: int = 384
    """Model width C (the residual stream)."""
    dropout: float = 0.0
    """Dropout on embeddings, attention weights and residual branches (0 disables)."""
    bias: bool = True
    """Biases in linear layers and LayerNorms (GPT-2 has them)."""
    position: Position = "learned"
    """How order enters: a learned table or fixed sinusoids added to the token embeddings,
    rotary embeddings applied to q and k in every attention layer, ALiBi's per-head linear
    distance penalty or T5's learned bucketed relative bias added to the attention scores, or
    none at all."""
    rope_base: float = 10000.0
    """RoPE's base: pair i of a head rotates by position * rope_base^(-2i/D)."""
    rel_buckets: int = 32
    """T5 relative bias: buckets of relative distance (half exact, half logarithmic)."""
    rel_max_distance: int = 128
    """T5 relative bias: distances from here on share the last bucket."""
    rel_shared: bool = False
    """T5 relative bias: one table per stack, owned by its first layer and read by every layer
    (T5's layout: rel_buckets * H parameters per stack); False: each layer its own table."""
    activation: Activation = "gelu"
    """Feed-forward non-linearity: ReLU, squared ReLU (Primer), exact GELU or GPT-2's
    tanh-approximated GELU, or the gated SwiGLU, GeGLU (exact GELU) and GeGLU with the tanh GELU
    (T5 v1.1's "gated-gelu")."""
    ffn_hidden: int | None = None
    """Feed-forward hidden width; None: 4 * n_embd, or for the gated ones 2/3 of that (rounded
    up to a multiple of 8), which keeps the parameter count about the same. The code reads the
    resolved width, `hidden` (F)."""
    norm: Norm = "layernorm"
    """LayerNorm (centre and scale) or RMSNorm (scale only)."""
    norm_placement: NormPlacement = "pre"
    """Norm before each sublayer (GPT-2, with a final norm) or after the residual add."""
    window: int | None = None
    """Sliding-window attention: each query sees only the last `window` positions (itself
    included); None: the whole context."""
    qk_norm: bool = False
    """Normalise each head's queries and keys (with `norm`, over D) before attention."""
    norm_eps: float = 1e-5
    """Norm epsilon."""
    tie_weights: bool = True
    """Share the token embedding matrix with the LM head."""
    scale_head: bool = False
    """encdec family: multiply the decoder's output by n_embd^-0.5 before the LM head (T5 v1.0,
    whose head is its tied N(0, 1) embedding matrix)."""
    attention: Attention = "softmax"
    """The attention algorithm: softmax(QK^T/sqrt(D) + mask) V, or linear attention (elu+1
    feature map, O(T), a different model)."""
    kernel: Kernel = "sdpa"
    """How softmax attention is computed: torch's fused scaled_dot_product_attention or the
    explicit math path, which also hands out the weights (the same numbers)."""
    moe_experts: int = 0
    """Experts in each feed-forward layer (mixture of experts); 0: one dense feed-forward."""
    moe_top_k: int = 2
    """Experts each token is routed to, their gate weights renormalised to sum to 1."""
    moe_aux_weight: float = 0.01
    """Weight of the load-balancing loss added to the training loss."""
    qk_scale: float | None = None
    """Multiplies the attention scores q.k; None: 1/sqrt(D), the paper's scaling, which keeps
    the softmax out of saturation as D grows; 1.0 turns it off (T5 folds it into its init)."""
    embed_norm: bool = False
    """A norm right after the embeddings are summed (BERT, BART)."""
    type_vocab_size: int = 0
    """BERT's segment (token-type) embeddings, added to the token vectors; 0: none."""
    n_classes: int = 0
    """bert family: outputs of a classifier head in place of the masked-LM head; 0: masked LM."""
    labels: tuple[str, ...] = ()
    """The names of the classifier's outputs, in order (task 'tsv': its labels, sorted), which
    `classify` prints; (): none kept (a genre run's are the genres)."""
    head: EncoderHead = "mlm"
    """bert family without a classifier (n_classes=0): what sits on the encoder. The masked-LM
    head (transformers' BertForMaskedLM), or none: a plain encoder (BertModel) whose output is
    its hidden states, with BERT's pooler (dense + tanh over [CLS], BertModel's
    `pooler_output`) or without. A classifier brings its own pooler; other families: "mlm"."""
    pooling: Pooling = "cls"
    """How the classifier reads the encoder, and how `embed` makes one vector of a text: the
    [CLS] vector, the mean or the channel-wise max over real tokens (one label or vector per
    sequence), or every position (one label per token; the classifier only)."""
    normalize_embeddings: bool = False
    """bert family: `embed` scales each text's vector to length 1 (sentence-transformers'
    Normalize module), so that dot products are cosine similarities."""

    def __post_init__(self):
        if self.attention in ("sdpa", "math"):  # the spelling from before `kernel` existed
            raise ConfigError(f"ModelConfig.attention={self.attention!r} is now "
                              f"kernel={self.attention!r} (--model.kernel={self.attention}); "
                              "attention names the algorithm: 'softmax' or 'linear'")
        check_types(self)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            require(self, name, getattr(self, name) > 0, "must be a positive integer")
        require(self, "n_kv_head", self.n_kv_head is None or
                 (self.n_kv_head > 0 and self.n_head % self.n_kv_head == 0),
                 f"must divide n_head ({self.n_head}): 1 for multi-query, or None")
        require(self, "ffn_hidden", self.ffn_hidden is None or self.ffn_hidden > 0,
                 "must be a positive integer (or None for the default)")
        require(self, "rope_base", self.rope_base > 0, "must be positive")
        require(self, "window", self.window is None or self.window > 0,
                 "must be a positive integer (or None for the whole context)")
        # T5 splits the buckets by direction, then into exact and logarithmic halves.
        require(self, "rel_buckets", self.rel_buckets >= 4, "must be at least 4")
        require(self, "rel_max_distance", self.rel_max_distance > self.rel_buckets // 2,
                 f"must be larger than rel_buckets // 2 ({self.rel_buckets // 2}), where the "
                 "exact buckets end")
        require(self, "rel_shared", not self.rel_shared or self.position == "t5",
                 "needs position='t5' (it shares T5's relative-bias table)")
        require(self, "moe_experts", self.moe_experts >= 0, "must be >= 0 (0: dense)")
        require(self, "moe_top_k", self.moe_top_k >= 1 and
                 (self.moe_experts == 0 or self.moe_top_k <= self.moe_experts),
                 f"must be in [1, moe_experts={self.moe_experts}]")
        require(self, "moe_aux_weight", self.moe_aux_weight >= 0, "must be >= 0")
        require(self, "qk_scale", self.qk_scale is None or self.qk_scale > 0,
                 "must be positive (or None for 1/sqrt(head_dim))")
        require(self, "scale_head", not self.scale_head or self.family == "encdec",
                 "is for the encdec family's LM head (T5 v1.0)")
        require(self, "type_vocab_size", self.type_vocab_size >= 0, "must be >= 0 (0: none)")
        require(self, "n_classes", self.n_classes >= 0, "must be >= 0 (0: masked-LM head)")
        require(self, "n_classes", self.n_classes == 0 or self.family == "bert",
                 "a classifier head needs family='bert'")
        require(self, "labels", not self.labels or len(self.labels) == self.n_classes,
                 f"must name each of the n_classes={self.n_classes} outputs, or be empty")
        require(self, "head", self.head == "mlm" or self.family == "bert",
                 "a plain encoder ('pooler' or 'none') needs family='bert'; other families: "
                 "'mlm'")
        require(self, "attention", self.family == "gpt" or self.attention == "softmax",
                 f"{self.attention!r} is for the causal gpt family; use 'softmax'")
        require(self, "n_embd", self.n_embd % self.n_head == 0,
                 f"must be divisible by n_head ({self.n_head}); "
                 f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}")
        require(self, "dropout", 0.0 <= self.dropout < 1.0, "must be in [0, 1)")
        require(self, "norm_eps", self.norm_eps > 0, "must be positive")
        acts_on = POSITION_ACTS_ON[self.position]
        require(self, "position", acts_on != "qk" or self.head_dim % 2 == 0,
                 f"{self.position!r} rotates pairs of channels, so the head dim n_embd/n_head "
                 f"({self.head_dim}) must be even")
        # An algorithm that never forms the (T, S) scores (linear attention) has nothing for
        # these to act on.
        scores, algorithm = FORMS_SCORES[self.attention], f"attention={self.attention!r}"
        unbiased = [name for name, where in POSITION_ACTS_ON.items() if where != "scores"]
        require(self, "position", scores or acts_on != "scores",
                 f"must be {' or '.join(map(repr, unbiased))} with {algorithm} "
                 f"({self.position!r} biases the scores, which it never forms)")
        require(self, "window", scores or self.window is None,
                 f"must be None with {algorithm} (it forms no scores to mask)")
        require(self, "qk_scale", scores or self.qk_scale is None,
                 f"must be None with {algorithm} (it forms no scores to scale)")

    @property
    def head_dim(self) -> int:
        """D = C / H."""
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Hkv, the heads of keys and values: n_kv_head with None resolved (the one name the
        modules use; a setting and its value stay two fields so that overriding n_head keeps a
        multi-head model multi-head)."""
        return self.n_kv_head or self.n_head

    @property
    def gated(self) -> bool:
        """Whether the feed-forward is a gated linear unit (SwiGLU, GeGLU)."""
        return self.activation in ("swiglu", "geglu", "geglu_tanh")

    @property
    def hidden(self) -> int:
        """F, the feed-forward hidden width: ffn_hidden with None resolved (the one name the
        modules use)."""
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        if not self.gated:
            return 4 * self.n_embd
        two_thirds = 2 * 4 * self.n_embd // 3
        return (two_thirds + 7) // 8 * 8  # rounded up to a multiple of 8

    def architecture(self) -> dict:
        """The model as a {field: value} dict of what it computes: two configs with equal
        architectures build models that give the same outputs from the same weights. Defaults
        that stand for a value are resolved (ffn_hidden, n_kv_head, qk_scale), fields that act
        on nothing in this model are left out (rope_base without RoPE, the router's settings
        without experts, pooling without a classifier or an encoder's `embed`), and so is
        `kernel`, which changes how softmax attention is computed but not its numbers."""
        arch = dataclasses.asdict(self) | {"ffn_hidden": self.hidden, "n_kv_head": self.kv_heads}
        if FORMS_SCORES[self.attention]:
            arch["qk_scale"] = self.qk_scale or self.head_dim ** -0.5
        inert = {"kernel": True, "rope_base": self.position != "rope",
                 "rel_buckets": self.position != "t5", "rel_max_distance": self.position != "t5",
                 "moe_top_k": not self.moe_experts, "moe_aux_weight": not self.moe_experts,
                 "pooling": not self.n_classes and self.head == "mlm", "labels": True,
                 "normalize_embeddings": self.n_classes > 0 or self.head == "mlm"}
        return {k: v for k, v in arch.items() if not inert.get(k, False)}


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: `config.json["train"]`."""

    __repr__ = changed_fields_repr  # only the fields that differ from the defaults

    text: str | None = None
    """UTF-8 text file to train on; None means the default corpus (Shakespeare's complete works)."""
    data: str | None = None
    """task 'lm': a prepared dataset's folder (`glassformer data prepare`) to train on instead of
    `text`: its shards read in place, its tokenizer and its validation split (val_fraction and
    tokenizer do not apply)."""
    tokenizer: TokenizerKind = "char"
    """Tokenizer kind built from the corpus: one id per character, or byte-level BPE."""
    bpe_vocab_size: int = 4096
    """tokenizer 'bpe': the vocabulary it is trained to (256 byte tokens, then merges); a small
    text may stop short of it."""
    task: Task = "lm"
    """What the model learns: next tokens of the text (gpt), masked tokens of the text (bert),
    the genre of a Shakespeare passage (bert with n_classes=4), the label of a text from
    text<TAB>label files (bert: `tsv`), target strings from source strings (encdec: `pairs`, by
    default numbers to English words), or an instruct model's replies in conversations (gpt:
    `chat`, from `conversations`)."""
    pairs: str | None = None
    """task 'pairs': a UTF-8 TSV file of source<TAB>target lines; None: numbers 0..999,999
    and their English words, generated."""
    train_tsv: str | None = None
    """task 'tsv': a UTF-8 TSV file of text<TAB>label lines to train on (data/labelled.py)."""
    val_tsv: str | None = None
    """task 'tsv': the held-out text<TAB>label lines that val_loss and val_accuracy measure."""
    conversations: str | None = None
    """task 'chat': a JSONL file of conversations, one {"messages": [{"role", "content"}, ...]}
    per line as OpenAI writes them; the model learns the assistant's turns (data/chat.py)."""
    val_conversations: str | None = None
    """task 'chat': held-out conversations (JSONL); None: the last val_fraction of
    `conversations`."""
    init_from: str | None = None
    """A run directory whose weights start this run wherever names and shapes match (e.g. an
    MLM-pretrained encoder under a new classifier head); the run's tokenizer is reused."""
    init_weights: bool = True
    """init_from: copy its weights (True); False takes its tokenizer only and starts from
    random weights: the same model trained from scratch, fine-tuning's baseline."""
    label_smoothing: float = 0.0
    """Share of each target's probability spread evenly over the vocabulary in the loss."""
    val_fraction: float = 0.1
    """Share of the corpus (its end) held out for validation."""
    batch_size: int = 32
    """Sequences per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (the update averages over all of them)."""
    max_steps: int = 2000
    """Optimizer steps; the cosine schedule ends here."""
    lr: float = 1e-3
    """Peak learning rate, reached at the end of warmup."""
    min_lr: float = 1e-4
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = 100
    """Steps of linear warmup from 0 to lr."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay, applied to matrices only (not biases, norms)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.99
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    eval_every: int = 250
    """Evaluate train/val loss (and print a sample) every this many steps, and at the end."""
    eval_batches: int = 20
    """Batches per loss estimate at evaluation (the same batches every time)."""
    save_every: int = 500
    """Write a checkpoint every this many steps (and always at the end); 0: only at the end."""
    log_every: int = 10
    """Append the training loss to metrics.jsonl every this many steps."""
    sample_tokens: int = 200
    """Tokens sampled and printed at each evaluation (0 disables)."""
    seed: int = 1337
    """Seed for initialisation, batches and dropout."""
    device: Device = "auto"
    """Where to train: auto picks cuda, then mps, then cpu."""
    parallel: Parallel = "ddp"
    """Several processes (torchrun): each holds the whole model and the gradients are averaged
    (DistributedDataParallel), or each holds 1/N of the weights, gradients and optimizer state
    (FSDP2, for models that do not fit one device). One process: no effect."""
    ignore_memory_check: bool = False
    """Train even when the estimated peak of a training step is more than the memory free on
    the device, which is refused by default before the model is built (train/memory_check.py):
    for a setup measured to fit (`glassformer inspect memory --measure`) or swap to spare."""
    compile: bool = False
    """torch.compile the training step's forward and backward (evaluation and sampling stay
    eager); one process only. Pays a compile at the start (~30 s on a CPU); measure with
    bench/train_step.py before keeping it: on a 2-core CPU it gained nothing for small models."""
    track_heads: bool = False
    """At each evaluation, also log the best head's induction score and the loss on repeated
    random tokens (`in_context_loss`, the repeats; `random_loss`, the first copy) to
    metrics.jsonl, and plot them against step (heads.png in the run): watch induction heads
    form (train/detectors.py). A softmax-attention gpt trained on language modelling only."""
    lora_rank: int = 0
    """Rank r of low-rank adapters (LoRA) on the lora_targets layers of the init_from model:
    only the adapters (and a classifier head) train, the rest is frozen. 0: every weight trains."""
    lora_alpha: float = 16.0
    """LoRA: each adapter's update B A is scaled by lora_alpha / lora_rank."""
    lora_dropout: float = 0.0
    """LoRA: dropout on the adapters' input."""
    lora_targets: tuple[str, ...] = ("q", "v")
    """LoRA: the layers adapted in each block: q, k, v (row blocks of the fused qkv), o
    (attention output), fc, up, proj (feed-forward)."""

    def __post_init__(self):
        check_types(self)
        for name in ("batch_size", "grad_accum", "max_steps", "eval_batches", "log_every"):
            require(self, name, getattr(self, name) > 0, "must be a positive integer")
        for name in ("warmup_steps", "save_every", "eval_every", "sample_tokens"):
            require(self, name, getattr(self, name) >= 0, "must be >= 0")
        require(self, "lr", self.lr > 0, "must be positive")
        require(self, "seed", 0 <= self.seed < SEEDS,
                 "must be in [0, 2**64), the seeds torch takes")
        require(self, "bpe_vocab_size", self.bpe_vocab_size >= 256,
                 "must be >= 256 (the byte tokens alone)")
        require(self, "min_lr", 0 <= self.min_lr <= self.lr, f"must be in [0, lr={self.lr}]")
        require(self, "val_fraction", 0 < self.val_fraction < 1, "must be in (0, 1)")
        require(self, "data", self.data is None or (self.text is None and self.task == "lm"),
                 "is for task 'lm' and replaces text: give --data or --text, not both")
        for name in ("train_tsv", "val_tsv"):
            require(self, name, (getattr(self, name) is not None) == (self.task == "tsv"),
                    "is a text<TAB>label file of task 'tsv', which needs both train_tsv and "
                    "val_tsv; no other task reads them")
        for name in ("conversations", "val_conversations"):
            require(self, name, getattr(self, name) is None or self.task == "chat",
                    "is for task 'chat'")
        require(self, "conversations", self.task != "chat" or self.conversations is not None,
                 "must name the JSONL file that task 'chat' learns (--conversations FILE)")
        require(self, "weight_decay", self.weight_decay >= 0, "must be >= 0")
        require(self, "grad_clip", self.grad_clip >= 0, "must be >= 0 (0 disables clipping)")
        for name in ("beta1", "beta2"):
            require(self, name, 0 <= getattr(self, name) < 1, "must be in [0, 1)")
        require(self, "label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)")
        require(self, "lora_rank", self.lora_rank >= 0, "must be >= 0 (0: no adapters)")
        require(self, "init_weights", self.init_weights or not self.lora_rank,
                 "must be true with lora_rank: LoRA adapts trained weights")
        require(self, "lora_alpha", self.lora_alpha > 0, "must be positive")
        require(self, "lora_dropout", 0 <= self.lora_dropout < 1, "must be in [0, 1)")
        require(self, "lora_targets", bool(self.lora_targets) and
                 set(self.lora_targets) <= set(LORA_TARGETS),
                 f"must be some of {', '.join(LORA_TARGETS)}")


@dataclass(frozen=True)
class SampleConfig:
    """How text is generated from a trained model."""

    __repr__ = changed_fields_repr  # only the fields that differ from the defaults

    max_new_tokens: int = 500
    """Tokens to generate after the prompt."""
    temperature: float = 0.8
    """Divides the logits: <1 sharper, >1 flatter; 0 means greedy (always the top token)."""
    top_k: int | None = None
    """Keep only the k most likely tokens (None: all)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability sums to at least p (1: all)."""
    repetition_penalty: float = 1.0
    """Divide positive logits (multiply negative ones) of tokens already in the context; 1: off."""
    presence_penalty: float = 0.0
    """Subtract this from the logit of every token generated so far (OpenAI's); 0: off."""
    frequency_penalty: float = 0.0
    """Subtract this times its count from the logit of each token generated so far; 0: off."""
    stop: tuple[str, ...] = ()
    """Strings that end generation; the output stops before them."""
    seed: int | None = None
    """Seed for sampling (None: a fresh random seed)."""
    prompt_lookup: int = 0
    """Greedy decoding of one prompt only: guess up to this many tokens per step by copying
    what followed the context's last words earlier in it, and check them in one forward pass
    (generate/lookup.py): the same tokens, sooner where text repeats; 0: off."""

    def __post_init__(self):
        check_types(self)
        require(self, "max_new_tokens", self.max_new_tokens >= 0, "must be >= 0")
        require(self, "temperature", self.temperature >= 0,
                 "must be >= 0 (0 means greedy decoding)")
        require(self, "top_k", self.top_k is None or self.top_k >= 1,
                 "must be >= 1 (or None to keep every token)")
        require(self, "top_p", 0 < self.top_p <= 1, "must be in (0, 1]")
        require(self, "repetition_penalty", self.repetition_penalty > 0,
                 "must be positive (1 disables it)")
        for name in ("presence_penalty", "frequency_penalty"):
            require(self, name, -2 <= getattr(self, name) <= 2,
                    "must be in [-2, 2] (0 disables it)")
        require(self, "stop", all(s for s in self.stop), "must not contain empty strings")
        require(self, "prompt_lookup", self.prompt_lookup >= 0, "must be >= 0 (0: off)")
        require(self, "prompt_lookup", not self.prompt_lookup or (
            self.temperature == 0 and self.repetition_penalty == 1 and
            self.presence_penalty == 0 and self.frequency_penalty == 0),
            "needs plain greedy decoding: temperature 0 and no penalties")
        require(self, "seed", self.seed is None or 0 <= self.seed < SEEDS,
                 "must be in [0, 2**64) (or None for a fresh one), the seeds torch takes")


@dataclass(frozen=True)
class RunConfig:
    """A run's model and training settings, as stored in `config.json`."""

    __repr__ = changed_fields_repr  # only the fields that differ from the defaults

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        family, task = self.model.family, self.train.task
        if family not in TASK_FAMILY[task]:
            raise ConfigError(f"train.task={task!r} needs model.family="
                              + " or ".join(map(repr, TASK_FAMILY[task])) + f", not {family!r}")
        if self.train.track_heads and (family != "gpt" or self.model.attention != "softmax"):
            raise ConfigError("train.track_heads watches the attention of a gpt with softmax "
                              "attention (model.family='gpt', model.attention='softmax')")
        if (task in ("genre", "tsv")) != (self.model.n_classes > 0):
            raise ConfigError(f"train.task={task!r} needs a classifier (model.n_classes=4 for "
                              "'genre', one per label for 'tsv'), and model.n_classes > 0 needs "
                              "train.task='genre' or 'tsv'")

    def to_dict(self) -> dict:
        return {"model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        reject_unknown(cls, data, "config")
        return cls(model=from_dict(ModelConfig, upgrade_model(data.get("model", {}))),
                   train=from_dict(TrainConfig, data.get("train", {})))

    def save(self, path) -> None:
        from glassformer.atomic import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> RunConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no config file at {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path} is not valid JSON ({err}); restore it or start a new run") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object with 'model' and 'train'")
        return cls.from_dict(data)


TASK_FAMILY = {"lm": ("gpt", "lstm"), "mlm": ("bert",), "genre": ("bert",), "tsv": ("bert",),
               "pairs": ("encdec",), "chat": ("gpt",)}

# Presets are data: a name maps to the fields that differ from the defaults.
PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {  # for tests: trains in a second
        "model": {"block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32},
        "train": {"batch_size": 4, "max_steps": 20, "warmup_steps": 2, "eval_every": 10,
                  "eval_batches": 2, "save_every": 10, "log_every": 1, "sample_tokens": 32},
    },
    "shakespeare-char": {  # nanoGPT's shakespeare_char, scaled to ~7 minutes on 2 CPU cores
        "model": {"block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 192},
        "train": {"batch_size": 32, "max_steps": 900, "lr": 3e-3, "min_lr": 3e-4,
                  "warmup_steps": 30, "eval_every": 300, "eval_batches": 10, "save_every": 300},
    },
    # The best recipe we measured on 2 CPU cores (bench/time_to_loss.py), at two budgets: RoPE,
    # RMSNorm, ReLU, no biases, a high learning rate with a short warmup, batches of 16-32.
    # `shakespeare-sprint` is sized to reach nanoGPT's CPU "baby GPT" figure (val loss 1.88 on
    # tinyshakespeare) soonest; `shakespeare-fast` to do best in 10 minutes.
    "shakespeare-sprint": {
        "model": {"block_size": 64, "n_layer": 2, "n_head": 4, "n_embd": 128, "position": "rope",
                  "norm": "rmsnorm", "activation": "relu", "bias": False},
        "train": {"batch_size": 32, "max_steps": 400, "lr": 3e-3, "min_lr": 3e-4,
                  "warmup_steps": 30, "eval_every": 100, "eval_batches": 10, "save_every": 400},
    },
    "shakespeare-fast": {
        "model": {"block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 192, "position": "rope",
                  "norm": "rmsnorm", "activation": "relu", "bias": False},
        "train": {"batch_size": 32, "max_steps": 1150, "lr": 3e-3, "min_lr": 3e-4,
                  "warmup_steps": 50, "eval_every": 200, "eval_batches": 10, "save_every": 200},
    },
    "shakespeare-bpe": {  # the same model on byte-level BPE tokens (~3 characters each)
        "model": {"block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 192},
        "train": {"tokenizer": "bpe", "bpe_vocab_size": 4096, "batch_size": 32,
                  "max_steps": 500, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 30,
                  "eval_every": 250, "eval_batches": 10, "save_every": 250},
    },
    # nanoGPT's shakespeare_char recipe as it runs on a GPU (6 layers of 384, block 256, batch
    # 64, dropout 0.2, no biases, lr 1e-3 to 1e-4 over 5,000 steps; it reports val 1.4697 on
    # tinyshakespeare): `--text tinyshakespeare.txt --train.device=cuda --train.compile=true`
    # (bench/device_check.sh). Hours on a CPU.
    "shakespeare-gpu": {
        "model": {"block_size": 256, "n_layer": 6, "n_head": 6, "n_embd": 384, "dropout": 0.2,
                  "bias": False},
        "train": {"batch_size": 64, "max_steps": 5000, "lr": 1e-3, "min_lr": 1e-4,
                  "warmup_steps": 100, "eval_every": 250, "eval_batches": 200,
                  "save_every": 1000},
    },
    # BERT-style encoder: masked-LM pretraining on the complete works, then genre classification
    # of passages (254 characters) with whole works held out; `--train.init_from RUN` starts
    # the classifier from the pretrained encoder. RoPE, not BERT's learned positions: a
    # bidirectional model has no causal mask to hint at order, and learned positions take
    # thousands of steps to find it (as ModernBERT, we rotate instead). The classifier pools the
    # mean over the passage: masked-LM pretraining never trains the [CLS] vector (there is no
    # next-sentence task), so [CLS] pooling would start from an untrained summary.
    "bert-shakespeare": {
        "model": {"family": "bert", "block_size": 256, "n_layer": 4, "n_head": 4, "n_embd": 128,
                  "position": "rope", "embed_norm": True},
        "train": {"task": "mlm", "batch_size": 32, "max_steps": 600, "lr": 2e-3, "min_lr": 2e-4,
                  "warmup_steps": 40, "eval_every": 200, "eval_batches": 10, "save_every": 200},
    },
    "shakespeare-genre": {
        "model": {"family": "bert", "block_size": 256, "n_layer": 4, "n_head": 4, "n_embd": 128,
                  "position": "rope", "embed_norm": True, "n_classes": 4, "pooling": "mean",
                  "dropout": 0.1},
        "train": {"task": "genre", "batch_size": 32, "max_steps": 300, "lr": 5e-4, "min_lr": 5e-5,
                  "warmup_steps": 30, "eval_every": 100, "eval_batches": 10, "save_every": 100},
    },
    # The original transformer's shape: numbers to English words ("40017" -> "forty thousand
    # seventeen"), character level, 2,000 held-out numbers.
    "numbers-seq2seq": {
        "model": {"family": "encdec", "block_size": 72, "n_layer": 3, "n_head": 4, "n_embd": 128},
        "train": {"task": "pairs", "batch_size": 64, "max_steps": 800, "lr": 2e-3, "min_lr": 1e-4,
                  "warmup_steps": 80, "eval_every": 200, "eval_batches": 5, "save_every": 200},
    },
    "gpt2": {"model": {"vocab_size": 50257, "block_size": 1024, "n_layer": 12, "n_head": 12,
                       "n_embd": 768}},
    "gpt2-medium": {"model": {"vocab_size": 50257, "block_size": 1024, "n_layer": 24,
                              "n_head": 16, "n_embd": 1024}},
    "gpt2-large": {"model": {"vocab_size": 50257, "block_size": 1024, "n_layer": 36,
                             "n_head": 20, "n_embd": 1280}},
    "gpt2-xl": {"model": {"vocab_size": 50257, "block_size": 1024, "n_layer": 48,
                          "n_head": 25, "n_embd": 1600}},
}


def preset(name: str) -> RunConfig:
    """The RunConfig of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return RunConfig.from_dict(PRESETS[name])


def upgrade_model(model: dict) -> dict:
    """A `model` section as written before the attention algorithm and its kernel were two
    fields, read as now: there, attention "sdpa" or "math" meant softmax attention computed that
    way. Run directories saved then keep loading."""
    if isinstance(model, dict) and model.get("attention") in ("sdpa", "math"):
        return {**model, "attention": "softmax", "kernel": model["attention"]}
    return model


def apply_overrides(run: RunConfig, overrides: dict[str, str]) -> RunConfig:
    """Apply dotted command-line overrides such as {"model.n_layer": "4", "train.lr": "3e-4"}.

    Values are parsed by the field's type; unknown sections or fields are errors. All of a
    section's values are applied at once, so checks between fields (min_lr <= lr) see them all.
    """
    sections = {"model": run.model, "train": run.train}
    changes = {"model": {}, "train": {}}
    for key, raw in overrides.items():
        section, _, name = key.partition(".")
        if section not in sections or not name:
            raise ConfigError(f"unknown option --{key}; options look like --model.FIELD=VALUE "
                              f"or --train.FIELD=VALUE")
        cls = type(sections[section])
        reject_unknown(cls, {name: raw}, f"--{section} options")
        changes[section][name] = parse_value(typing.get_type_hints(cls)[name], raw,
                                             f"{section}.{name}")
    return RunConfig(**{k: dataclasses.replace(cfg, **changes[k]) for k, cfg in sections.items()})
