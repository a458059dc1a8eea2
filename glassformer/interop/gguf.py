"""GGUF files (llama.cpp's format) of the Llama family -> glassformer's GPT and the file's own
tokenizer.

A GGUF file holds metadata (key -> value: the architecture's settings under "llama.*", the
tokenizer under "tokenizer.*") and tensors, each stored in one of ggml's types: F32, F16, or a
block quantization such as Q8_0 (blocks of 32 weights: one scale, 32 int8) or Q4_1 (blocks of
32: a scale, a minimum, 32 four-bit ints). Reading one:

1. the metadata becomes a Hugging Face Llama config.json (hf_config), which llama.py turns into
   our ModelConfig, refusing what we cannot represent;
2. every tensor is dequantized to fp32 and renamed to its Hugging Face name (NAMES), so that
   llama.py's table stacks q, k, v into our fused qkv and ties the head as for any Llama;
3. the rows of q and k are put back in Hugging Face's order: llama.cpp reorders each head's rows
   so that RoPE rotates adjacent pairs (x0, x1), (x2, x3), ...; ours rotates halves
   (x_i, x_{i+D/2}) (unpermute);
4. the tokenizer is rebuilt from the vocabulary, merges and token types (tokenizer).

What was read ("Q4_1 (210 tensors), Q8_0 (1), F32 (61)") is said on stderr. docs/gguf.md has the
whole name map and what is checked against transformers.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from glassformer.config import ModelConfig
from glassformer.errors import GlassformerError
from glassformer.interop import llama
from glassformer.tokenizers import HFTokenizer

ARCHITECTURES = ("llama",)  # general.architecture values read here
NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
BLOCK_NAMES = {  # blk.N.<gguf> -> model.layers.N.<hf>
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj"}
BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")

CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values of special and added tokens
GPT2_SPLIT = ("default", "gpt2", "smollm")  # tokenizer.ggml.pre names split by GPT-2's regex
LLAMA3_SPLIT = Regex(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                     r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPLITS = {name: LLAMA3_SPLIT for name in ("llama-bpe", "llama3", "llama-v3", "smaug-bpe")}
SPELL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def find(path) -> Path | None:
    """The GGUF file `path` names: a path ending in .gguf, or the only .gguf in a directory;
    None for anything else (e.g. a Hugging Face directory)."""
    path = Path(path)
    if path.suffix == ".gguf":
        return path
    if not path.is_dir():
        return None
    files = sorted(path.glob("*.gguf"))
    if len(files) > 1:
        raise GlassformerError(f"{path} holds {len(files)} .gguf files "
                               f"({', '.join(f.name for f in files)}); pass the one to read")
    return files[0] if files else None


def read(path) -> tuple[ModelConfig, dict[str, torch.Tensor], HFTokenizer]:
    """Our ModelConfig, GPT state dict (fp32) and tokenizer from the GGUF file at `path`."""
    path = Path(path)
    reader = open_reader(path)
    meta = metadata(reader)
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise GlassformerError(f"{path.name} holds a {arch!r} model; glassformer reads GGUF files "
                               f"of the Llama family (general.architecture "
                               f"{' or '.join(map(repr, ARCHITECTURES))})")
    tok = tokenizer(meta, path)  # before the weights: a tokenizer we cannot read fails fast
    hf = hf_config(meta, {t.name for t in reader.tensors}, path.name)
    state, kinds = {}, Counter()
    for t in reader.tensors:
        state[hf_name(t.name)] = dequantize(t, hf, path)
        kinds[t.tensor_type.name] += 1
    print(f"read {path.name}: {summary(kinds)}, dequantized to fp32", file=sys.stderr)
    try:
        cfg, ours = llama.from_hf(hf, state)
    except GlassformerError as err:  # its words are a config.json's: say which file it is
        raise GlassformerError(f"{path.name}, read as a Llama: {err}") from None
    return cfg, ours, tok


def summary(kinds: Counter) -> str:
    """The tensor types read, most used first: "Q4_1 (210 tensors), F32 (61), Q8_0 (1)"."""
    (first, n), *rest = kinds.most_common()
    return ", ".join([f"{first} ({n} tensors)"] + [f"{kind} ({n})" for kind, n in rest])


def open_reader(path: Path):
    from gguf import GGUFReader

    if not path.is_file():
        raise GlassformerError(f"no GGUF file at {path}")
    try:
        return GGUFReader(path)
    except Exception as err:  # the reader reports damage as ValueError, KeyError, IndexError...
        raise GlassformerError(f"cannot read {path.name} as a GGUF file ({type(err).__name__}: "
                               f"{err}); download it again") from None


def metadata(reader) -> dict:
    """Every metadata key -> its value (numbers, strings, lists)."""
    try:
        return {name: field.contents() for name, field in reader.fields.items()}
    except Exception as err:  # the reader parses values lazily: damage can show only here
        raise GlassformerError(f"the metadata of this GGUF file is damaged ({err}); download "
                               "it again") from None


def hf_config(meta: dict, names: set[str], where: str) -> dict:
    """The Hugging Face Llama config.json that a Llama GGUF's metadata and tensor names say
    (`where`: the file's name, for the errors)."""
    def get(key, default=None):
        return meta.get(f"llama.{key}", default)

    n_embd, n_head = get("embedding_length"), get("attention.head_count")
    if n_embd is None or n_head is None or get("block_count") is None:
        raise GlassformerError(f"{where} lacks llama.embedding_length, "
                               "llama.attention.head_count or llama.block_count")
    rotated = get("rope.dimension_count", n_embd // n_head)
    if rotated != n_embd // n_head:
        raise GlassformerError(f"{where} rotates {rotated} of each head's {n_embd // n_head} "
                               "dimensions (llama.rope.dimension_count); glassformer's RoPE "
                               "rotates all of them")
    scaling = get("rope.scaling.type", "none")
    return {
        "model_type": "llama", "hidden_size": n_embd, "num_attention_heads": n_head,
        "num_hidden_layers": get("block_count"),
        "num_key_value_heads": get("attention.head_count_kv", n_head),
        "head_dim": get("attention.key_length", n_embd // n_head),
        "intermediate_size": get("feed_forward_length"),
        "max_position_embeddings": get("context_length", 2048),
        "vocab_size": get("vocab_size", len(meta.get("tokenizer.ggml.tokens", ()))),
        "rms_norm_eps": get("attention.layer_norm_rms_epsilon", 1e-5),
        "rope_theta": get("rope.freq_base", 10000.0),
        "rope_scaling": None if scaling == "none" else {"rope_type": scaling},
        "attention_bias": "blk.0.attn_q.bias" in names, "mlp_bias": "blk.0.ffn_up.bias" in names,
        "tie_word_embeddings": "output.weight" not in names}


def hf_name(name: str) -> str:
    """A GGUF tensor name -> its Hugging Face Llama name; a name not in the map is kept (the
    Llama table then refuses it by name)."""
    base, _, kind = name.rpartition(".")
    if base in NAMES:
        return f"{NAMES[base]}.{kind}"
    m = BLOCK.fullmatch(name)
    if m and m[2] in BLOCK_NAMES:
        return f"model.layers.{m[1]}.{BLOCK_NAMES[m[2]]}.{m[3]}"
    return name


def dequantize(t, hf: dict, path: Path) -> torch.Tensor:
    """One GGUF tensor as fp32 in PyTorch's layout (ggml lists dimensions innermost first), q and
    k rows back in Hugging Face's order."""
    from gguf import GGMLQuantizationType, quants

    shape = tuple(int(n) for n in reversed(t.shape))
    try:
        if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            w = np.array(t.data, dtype=np.float32)  # a copy: t.data maps the file read-only
        else:
            w = quants.dequantize(t.data, t.tensor_type)
        w = torch.from_numpy(w.reshape(shape))  # no copy
    except (NotImplementedError, ValueError) as err:
        raise GlassformerError(f"cannot read tensor {t.name} ({t.tensor_type.name}) of "
                               f"{path.name}: {err}") from None
    if ".attn_q." in t.name:
        return unpermute(w, hf["num_attention_heads"])
    if ".attn_k." in t.name:
        return unpermute(w, hf["num_key_value_heads"])
    return w


def unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of a q or k projection's rows (H*D, ...): within each head,
    llama.cpp stores rows 0, D/2, 1, D/2+1, ... (pairs rotated together side by side); ours
    are rows 0 .. D-1 (pairs D/2 apart)."""
    rest = w.shape[1:]
    pairs = w.reshape(heads, -1, 2, *rest)  # (H, D/2, 2, ...): llama.cpp's row d = 2*i + half
    return pairs.transpose(1, 2).reshape(w.shape).contiguous()  # (H, 2, D/2, ...): d = half*D/2 + i


def tokenizer(meta: dict, path: Path) -> HFTokenizer:
    """The file's byte-level BPE (tokenizer.ggml.model "gpt2"), as transformers builds it:
    control tokens added as special tokens, user-defined ones as plain added tokens, BOS and EOS
    added at encode (with add_special_tokens) only where the file says add_bos/add_eos_token."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GlassformerError(f"{path.name} has a {kind!r} tokenizer; glassformer reads GGUF "
                               "byte-level BPE tokenizers (tokenizer.ggml.model 'gpt2')")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in GPT2_SPLIT and pre not in SPLITS:
        raise GlassformerError(f"{path.name} splits text by pre-tokenizer {pre!r}; glassformer "
                               f"knows {', '.join(GPT2_SPLIT + tuple(SPLITS))}")
    tokens, types = meta.get("tokenizer.ggml.tokens"), meta.get("tokenizer.ggml.token_type", [])
    if not tokens:
        raise GlassformerError(f"{path.name} has no vocabulary (tokenizer.ggml.tokens)")
    spelled = byte_alphabet()
    vocab = {}
    for i, token in enumerate(tokens):  # tokens are byte-level spelled, some added ones not
        vocab.setdefault(token if set(token) <= spelled else byte_spell(token), i)
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if pre in SPLITS:  # split by its own regex first, then spell bytes
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(SPLITS[pre], behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, k in zip(tokens, types) if k == CONTROL and set(t) <= spelled])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, k in zip(tokens, types) if k == USER_DEFINED and t in vocab])

    def named(key: str) -> str | None:  # the token that tokenizer.ggml.<key>_token_id names
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        return None if i is None else tokens[i]

    chat = {"chat_template": meta.get("tokenizer.chat_template"), "bos_token": named("bos"),
            "eos_token": named("eos"), "pad_token": named("padding"), "unk_token": named("unknown")}
    tok.post_processor = template(
        tok, chat["bos_token"] if meta.get("tokenizer.ggml.add_bos_token") else None,
        chat["eos_token"] if meta.get("tokenizer.ggml.add_eos_token") else None)
    return HFTokenizer(tok, chat)


def template(tok: Tokenizer, bos: str | None, eos: str | None):
    """transformers' post-processor: [bos] $A [eos], each special token only where given; a
    pair repeats it around $B."""
    def around(seq: str, type_id: int) -> str:
        return " ".join([f"{bos}:{type_id}"] * bool(bos) + [f"${seq}:{type_id}"]
                        + [f"{eos}:{type_id}"] * bool(eos))

    specials = {t: tok.token_to_id(t) for t in (bos, eos) if t}
    return processors.TemplateProcessing(single=around("A", 0),
                                         pair=around("A", 0) + " " + around("B", 1),
                                         special_tokens=list(specials.items()))


def byte_alphabet() -> set[str]:
    """The 256 characters byte-level BPE spells bytes with (GPT-2's bytes_to_unicode)."""
    return set(pre_tokenizers.ByteLevel.alphabet())


def byte_spell(token: str) -> str:
    """A token written in plain text (e.g. "a b") in byte-level spelling ("aĠb")."""
    return "".join(piece for piece, _ in SPELL.pre_tokenize_str(token))
