"""Generation: the KV-cache decoder against a naive loop that recomputes the whole context each
step (inside and past the window), padding invariance of batches, seeds, penalties, stop strings,
streaming, and the tokens and logits behind each streamed piece."""

import dataclasses

import pytest
import torch
from torch import nn

from glassformer.config import ModelConfig, SampleConfig
from glassformer.errors import GlassformerError
from glassformer.generate import filters
from glassformer.generate.sampler import generate, stream, stream_pieces
from glassformer.model.gpt import GPT
from glassformer.tokenizers.char import CharTokenizer, UnknownCharactersError
from tests.helpers import KERNELS

TEXT = "hello world, the quick brown fox jumps over the lazy dog.\nA cat naps. Zebras run!\n"
BLOCK = 32
GREEDY = SampleConfig(max_new_tokens=20, temperature=0.0)


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.from_text(TEXT)


def make_model(tok, kernel="sdpa"):
    """A tiny GPT whose weights (std 0.3) give well-separated logits, so float noise between
    the cached and the naive path cannot flip an argmax."""
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32,
                      kernel=kernel)
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.3)
    return model.eval()


@pytest.fixture(scope="module")
def model(tok):
    return make_model(tok)


@torch.no_grad()
def naive_greedy(model, ids, n_new, penalty=1.0, presence=0.0, frequency=0.0):
    """Greedy decoding without a cache: the whole view is recomputed every step. The view
    slides like the sampler's: past block_size tokens it is cut to the last 3/4 of the window.
    The repetition penalty sees the whole context; presence and frequency the new tokens."""
    window = model.cfg.block_size
    keep = window * 3 // 4
    context = list(ids)  # everything so far, for the repetition penalty
    view = context[-keep:] if len(context) > window else list(context)
    out = []
    for _ in range(n_new):
        logits, _ = model(torch.tensor([view]))  # positions 0 .. len(view)-1
        logits = filters.repetition_penalty(logits[:, -1], torch.tensor([context]), penalty)
        logits = filters.presence_frequency_penalty(
            logits, torch.tensor([out], dtype=torch.long), presence, frequency)
        token = int(logits[0].argmax())
        out.append(token)
        context.append(token)
        view.append(token)
        if len(view) > window:
            view = view[-keep:]
    return out


class ForwardCounter:
    """Counts calls of model.forward while in a `with` block."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_pre_hook(lambda *_: self._count())
        return self

    def _count(self):
        self.calls += 1

    def __exit__(self, *_):
        self.handle.remove()


def test_greedy_first_token_is_the_argmax(model, tok):
    prompt = "the lazy"
    with torch.no_grad():
        logits, _ = model(torch.tensor([tok.encode(prompt)]))
    out = generate(model, tok, [prompt], dataclasses.replace(GREEDY, max_new_tokens=1))
    assert out == [tok.decode([int(logits[0, -1].argmax())])]


def test_greedy_is_deterministic(model, tok):
    first = generate(model, tok, ["hello"], GREEDY)
    assert len(first[0]) == 20
    assert generate(model, tok, ["hello"], GREEDY) == first
    assert generate(model, tok, ["hello"], dataclasses.replace(GREEDY, seed=5)) == first


@pytest.mark.parametrize("kernel", KERNELS)
def test_cached_greedy_equals_naive_recompute(tok, kernel):
    model = make_model(tok, kernel)
    prompt = "quick"  # 5 tokens + 20 new: inside the 32-token window
    out = generate(model, tok, [prompt], GREEDY)
    assert out == [tok.decode(naive_greedy(model, tok.encode(prompt), 20))]


@pytest.mark.parametrize("prompt", ["hello", "the quick brown fox jumps over the lazy dog."])
def test_generation_past_the_window_slides_like_the_naive_loop(model, tok, prompt):
    # 80 new tokens in a 32-token window; the second prompt (44 tokens) is itself too long.
    cfg = dataclasses.replace(GREEDY, max_new_tokens=80)
    out = generate(model, tok, [prompt], cfg)
    assert len(out[0]) == 80
    assert out == [tok.decode(naive_greedy(model, tok.encode(prompt), 80))]


def test_model_dtype_is_used(tok):
    model = make_model(tok).double()
    out = generate(model, tok, ["fox"], GREEDY)
    assert out == [tok.decode(naive_greedy(model, tok.encode("fox"), 20))]


def test_batch_of_different_lengths_equals_one_at_a_time(model, tok):
    # Rows of 1, 5 and 19 tokens; 40 new tokens take each past the window at its own step.
    prompts = ["A", "hello", "the quick brown fox"]
    cfg = dataclasses.replace(GREEDY, max_new_tokens=40)
    batch = generate(model, tok, prompts, cfg)
    alone = [generate(model, tok, [p], cfg)[0] for p in prompts]
    assert batch == alone
    assert alone == [tok.decode(naive_greedy(model, tok.encode(p), 40)) for p in prompts]
    assert len(set(batch)) == 3  # the rows really differ


def test_repetition_penalty_uses_each_rows_whole_context_without_pads(model, tok):
    # "cat" sits behind 16 pads of id 0 ("\n"), a token its output holds: a penalty that
    # counted the pads would change it.
    prompts = ["cat", "the quick brown fox"]
    cfg = dataclasses.replace(GREEDY, max_new_tokens=50, repetition_penalty=3.0)
    out = generate(model, tok, prompts, cfg)
    assert tok.decode([0]) in out[0]
    assert out == [tok.decode(naive_greedy(model, tok.encode(p), 50, penalty=3.0))
                   for p in prompts]
    assert out != generate(model, tok, prompts, dataclasses.replace(cfg, repetition_penalty=1.0))


def test_presence_and_frequency_penalties_count_each_rows_generated_tokens(model, tok):
    # Rows of different lengths (one padded) past the window; the naive loop counts out only.
    prompts = ["cat", "the quick brown fox"]
    cfg = dataclasses.replace(GREEDY, max_new_tokens=50, presence_penalty=0.5,
                              frequency_penalty=1.5)
    out = generate(model, tok, prompts, cfg)
    assert out == [tok.decode(naive_greedy(model, tok.encode(p), 50, presence=0.5,
                                           frequency=1.5)) for p in prompts]
    assert out != generate(model, tok, prompts, dataclasses.replace(GREEDY, max_new_tokens=50))


def test_the_prompt_does_not_count_for_presence_and_frequency_penalties(model, tok):
    prompt = "jumps"
    first = generate(model, tok, [prompt], dataclasses.replace(GREEDY, max_new_tokens=1))[0]
    with torch.no_grad():
        logits, _ = model(torch.tensor([tok.encode(prompt)]))  # (1, T, V)
    counted = filters.presence_frequency_penalty(logits[:, -1], torch.tensor([tok.encode(prompt)]),
                                                 2.0, 2.0)
    assert tok.decode([int(counted.argmax())]) != first  # counting the prompt would change it
    cfg = dataclasses.replace(GREEDY, max_new_tokens=1, presence_penalty=2.0,
                              frequency_penalty=2.0)
    assert generate(model, tok, [prompt], cfg)[0] == first


def test_same_seed_same_sample_different_seed_different(model, tok):
    cfg = SampleConfig(max_new_tokens=30, temperature=1.0, seed=7)
    first = generate(model, tok, ["hello", "fox"], cfg)
    assert generate(model, tok, ["hello", "fox"], cfg) == first
    assert generate(model, tok, ["hello", "fox"], dataclasses.replace(cfg, seed=8)) != first
    unseeded = dataclasses.replace(cfg, seed=None)
    assert generate(model, tok, ["hello"], unseeded) != generate(model, tok, ["hello"], unseeded)


def test_sampling_filters_reach_the_sampler(model, tok):
    greedy = generate(model, tok, ["hello"], GREEDY)
    top1 = SampleConfig(max_new_tokens=20, temperature=1.5, top_k=1, seed=3)
    assert generate(model, tok, ["hello"], top1) == greedy


def test_stop_string_cuts_the_output_and_stops_early(model, tok):
    full = generate(model, tok, ["hello"], dataclasses.replace(GREEDY, max_new_tokens=40))[0]
    stop = full[12:14]
    end = full.find(stop)  # where the output is cut (maybe before 12)
    cfg = dataclasses.replace(GREEDY, max_new_tokens=40, stop=("#never#", stop))
    with ForwardCounter(model) as counter:
        out = generate(model, tok, ["hello"], cfg)
    assert out == [full[:end]]
    # one token per character: the stop string is complete after end + 2 tokens, each token
    # after the first costs one forward, plus the prefill
    assert counter.calls == end + 2


def test_rows_stop_independently(model, tok):
    prompts = ["hello", "the quick brown fox"]
    full = generate(model, tok, prompts, dataclasses.replace(GREEDY, max_new_tokens=30))
    stop = next(full[0][i:i + 3] for i in range(5, 27) if full[0][i:i + 3] not in full[1])
    out = generate(model, tok, prompts, dataclasses.replace(GREEDY, max_new_tokens=30,
                                                            stop=(stop,)))
    assert out == [full[0][:full[0].find(stop)], full[1]]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stream_pieces_join_to_generate(model, tok, temperature):
    cfg = SampleConfig(max_new_tokens=40, temperature=temperature, seed=11)
    pieces = list(stream(model, tok, "hello", cfg))
    assert len(pieces) == 40  # no stop strings: one piece per token, nothing held back
    assert "".join(pieces) == generate(model, tok, ["hello"], cfg)[0]


def test_stream_never_shows_a_stop_string(model, tok):
    full = generate(model, tok, ["hello"], dataclasses.replace(GREEDY, max_new_tokens=40))[0]
    stop = full[20:23]
    cfg = dataclasses.replace(GREEDY, max_new_tokens=40, stop=(stop,))
    shown = ""
    for piece in stream(model, tok, "hello", cfg):
        shown += piece
        assert stop not in shown
    assert shown == full[:full.find(stop)] == generate(model, tok, ["hello"], cfg)[0]


def test_stream_releases_held_back_text_that_was_not_a_stop(model, tok):
    full = generate(model, tok, ["hello"], dataclasses.replace(GREEDY, max_new_tokens=40))[0]
    near_miss = full[-1] + "\x00"  # its first character ends the output; the whole never comes
    cfg = dataclasses.replace(GREEDY, max_new_tokens=40, stop=(near_miss,))
    pieces = list(stream(model, tok, "hello", cfg))
    assert "".join(pieces) == full
    assert len(pieces) < 40  # some characters were held back, then released together


def drained(generator) -> tuple[list, object]:
    """The items of a generator, and its return value."""
    items = []
    while True:
        try:
            items.append(next(generator))
        except StopIteration as done:
            return items, done.value


def test_stream_pieces_carry_their_tokens_and_the_logits_they_were_drawn_from(model, tok):
    cfg = SampleConfig(max_new_tokens=20, temperature=1.0, seed=2, repetition_penalty=2.0)
    pieces, finish = drained(stream_pieces(model, tok, "hello", cfg))
    assert [p.text for p in pieces] == list(stream(model, tok, "hello", cfg))
    assert all(tok.decode(p.ids) == p.text for p in pieces)  # one character a token
    ids = [i for p in pieces for i in p.ids]
    assert len(ids) == finish.tokens == 20
    context = tok.encode("hello")  # 5 + 20 tokens: inside the window
    for token, logits in zip(ids, [row for p in pieces for row in p.logits]):
        with torch.no_grad():
            expected, _ = model(torch.tensor([context]))  # (1, T, V)
        assert torch.allclose(logits, expected[0, -1], atol=1e-5)  # before the penalty
        context.append(token)


def test_stream_pieces_give_the_tokens_of_the_text_shown(model, tok):
    full = generate(model, tok, ["hello"], dataclasses.replace(GREEDY, max_new_tokens=40))[0]
    stop, near_miss = full[20:23], full[-1] + "\x00"
    for stops, shown, made, reason in [((stop,), full[:full.find(stop)], full.find(stop) + 3,
                                        "stop"), ((near_miss,), full, 40, "length")]:
        cfg = dataclasses.replace(GREEDY, max_new_tokens=40, stop=stops)
        pieces, finish = drained(stream_pieces(model, tok, "hello", cfg))
        assert "".join(p.text for p in pieces) == shown and finish.reason == reason
        assert len(pieces) < len(shown)  # some text was held back ...
        assert all(tok.decode(p.ids) == p.text for p in pieces)  # ... and came with its tokens
        assert sum(len(p.ids) for p in pieces) == len(shown)  # the stop string's in no piece
        assert finish.tokens == made


def test_empty_prompt_is_an_error(model, tok):
    with pytest.raises(GlassformerError, match="the prompt is empty"):
        generate(model, tok, ["hello", ""], GREEDY)
    with pytest.raises(GlassformerError, match="the prompt is empty"):
        list(stream(model, tok, "", GREEDY))


def test_unknown_characters_raise_the_tokenizers_error(model, tok):
    with pytest.raises(UnknownCharactersError):
        generate(model, tok, ["héllo"], GREEDY)


def test_zero_new_tokens_gives_empty_strings_without_running_the_model(model, tok):
    cfg = dataclasses.replace(GREEDY, max_new_tokens=0)
    with ForwardCounter(model) as counter:
        assert generate(model, tok, ["hello", "fox"], cfg) == ["", ""]
        assert list(stream(model, tok, "hello", cfg)) == []
    assert counter.calls == 0


def test_no_prompts_no_outputs(model, tok):
    assert generate(model, tok, [], GREEDY) == []


def test_training_mode_is_restored_and_gradients_are_off(tok):
    model = make_model(tok).train()
    seen = []
    model.register_forward_pre_hook(lambda m, _: seen.append((m.training, torch.is_grad_enabled())))
    generate(model, tok, ["hello"], GREEDY)
    assert model.training
    pieces = stream(model, tok, "hello", GREEDY)
    next(pieces)
    assert torch.is_grad_enabled()  # the paused stream does not leak no-grad to its caller
    pieces.close()  # the caller stopped early
    assert model.training
    assert seen and all(s == (False, False) for s in seen)
