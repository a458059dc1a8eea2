"""Prompt-lookup decoding: the tokens of plain greedy decoding, in fewer forward passes."""

import pytest
import torch

from glassformer.config import ModelConfig, SampleConfig
from glassformer.errors import ConfigError, GlassformerError
from glassformer.generate.lookup import draft
from glassformer.generate.sampler import generate, stream
from glassformer.tokenizers import CharTokenizer
from tests.helpers import lively_gpt

CHARS = CharTokenizer(list("abcdefghij klmnop\n"))
PROMPTS = ["abc abc abc ab", "hello hello hel", "a\nb\na\nb\na", "ponmlk ponmlk pon",
           "dig dag dig dag d", "jj"]


def test_draft_copies_what_followed_the_latest_earlier_tail():
    assert draft([1, 2, 3, 9, 1, 2, 3, 7, 1, 2, 3], 2) == [7, 1]  # the latest "1 2 3"
    assert draft([5, 1, 2, 8, 8, 6, 1, 2], 3) == [8, 8, 6]
    assert draft([4, 9, 9, 7, 4], 5) == [9, 9, 7, 4]  # one-token tail; the draft may reach the end
    assert draft([1, 2, 3], 4) == []  # nothing repeats
    assert draft([1], 4) == []


def passes(model):
    """A counter of the model's forward passes."""
    count = [0]
    model.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


@pytest.mark.parametrize("block_size", [64, 24])  # 24: the window slides while decoding
def test_same_tokens_as_plain_greedy_in_fewer_passes(block_size):
    cfg = ModelConfig(vocab_size=CHARS.vocab_size, block_size=block_size, n_layer=2, n_head=4,
                      n_embd=32)
    model = lively_gpt(cfg)
    with torch.no_grad():  # sharper logits: no near-ties for float rounding to flip
        model.head.weight.mul_(4)
    plain = SampleConfig(max_new_tokens=60, temperature=0)
    count = passes(model)
    want = generate(model, CHARS, PROMPTS[:1], plain) + [
        generate(model, CHARS, [p], plain)[0] for p in PROMPTS[1:]]
    plain_passes, count[0] = count[0], 0
    fast = SampleConfig(max_new_tokens=60, temperature=0, prompt_lookup=6)
    got = [generate(model, CHARS, [p], fast)[0] for p in PROMPTS]
    assert got == want
    assert count[0] < plain_passes * 0.7  # drafts were taken, not just tried
    assert [''.join(stream(model, CHARS, p, fast)) for p in PROMPTS] == want


def test_prompt_lookup_is_greedy_only():
    with pytest.raises(ConfigError, match="prompt_lookup.*plain greedy decoding"):
        SampleConfig(prompt_lookup=4, temperature=0.8)
    with pytest.raises(ConfigError, match="prompt_lookup.*plain greedy decoding"):
        SampleConfig(prompt_lookup=4, temperature=0, repetition_penalty=1.2)


def test_linear_attention_cannot_forget_drafts():
    cfg = ModelConfig(vocab_size=CHARS.vocab_size, block_size=64, n_layer=1, n_head=2,
                      n_embd=16, attention="linear", position="rope")
    with pytest.raises(GlassformerError, match="cannot forget positions"):
        generate(lively_gpt(cfg), CHARS, ["abcdefg abcdefg abc"],
                 SampleConfig(max_new_tokens=40, temperature=0, prompt_lookup=4))
