"""Small Hugging Face models with random weights (no download), and checks shared by the interop
tests: a checkpoint written by us loads in `transformers` with every weight in its place."""

import torch

from glassformer.tokenizers import CharTokenizer
from tests.helpers import SONNET

TEXT = SONNET  # a text to train tokenizers on
V = 97  # vocabulary of every test model: CHARS[i] is token id i
CHARS = CharTokenizer([chr(33 + i) for i in range(V)])
TOL = 1e-5


@torch.no_grad()
def randomize(model, std: float, seed: int = 0):
    """Every matrix N(0, std), every bias N(0, 0.2), every norm gain 1 + N(0, 0.2), so that a
    swapped, transposed or dropped weight shows in the logits (HF's init leaves them 0 and 1)."""
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, std)
        else:
            p.copy_((0.0 if name.endswith("bias") else 1.0) + 0.2 * torch.randn_like(p))
    return model.float().eval()


def hf_gpt2(std=0.1, **config):
    from transformers import GPT2Config, GPT2LMHeadModel

    fields = dict(vocab_size=V, n_positions=96, n_embd=32, n_layer=2, n_head=4,
                  bos_token_id=None, eos_token_id=None) | config
    return randomize(GPT2LMHeadModel(GPT2Config(**fields)), std)


def hf_llama(std=0.1, **config):
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=96,
                  rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=None,
                  eos_token_id=None, pad_token_id=None) | config
    return randomize(LlamaForCausalLM(LlamaConfig(**fields)), std)


def load_in_transformers(path):
    """The model `transformers` builds from directory `path`, failing on any weight that is
    missing, unexpected or of the wrong shape."""
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"] and not info["error_msgs"], info
    return model.float().eval()


def random_ids(B=2, T=20, seed=1):
    torch.manual_seed(seed)
    return torch.randint(V, (B, T))


def hf_greedy(hf, prompt: torch.Tensor, n: int) -> list[int]:
    """The `n` ids `transformers`' generate picks greedily after the 1-D `prompt`."""
    with torch.no_grad():
        out = hf.generate(prompt[None], attention_mask=torch.ones(1, len(prompt)),
                          do_sample=False, max_new_tokens=n, min_new_tokens=n)
    return out[0, len(prompt):].tolist()
