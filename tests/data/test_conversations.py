"""Conversations for SFT: the tokens learnt are exactly the assistant's turns and their end of
turn (by hand, and as transformers' `return_assistant_tokens_mask` marks them), batches pad, and
a bad file is refused naming its line."""

import json

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from glassformer.data.chat import (IGNORE, chat_batch, encode, load_examples,
                                   read_conversations)
from glassformer.errors import GlassformerError
from glassformer.tokenizers import HFTokenizer
from glassformer.tokenizers.chat_template import conversation
from tests.helpers import SONNET

END = "<|im_end|>"
SPECIALS = ["<|im_start|>", END]
# SmolLM2's template (ChatML with a default system turn)
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# The same, with transformers' {% generation %} mark around what the assistant writes
MARKED = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
          "{{ '<|im_start|>' + message['role'] + '\n' }}{% if message['role'] == 'assistant' %}"
          "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
          "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

SYSTEM = {"role": "system", "content": "Answer in one word."}
CONVERSATIONS = [
    [{"role": "user", "content": "What is red?"}, {"role": "assistant", "content": "A rose"}],
    [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"},
     {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "Hello again"}],
    [{"role": "user", "content": "spaces"}, {"role": "assistant", "content": "  lead and trail \n"}],
    [{"role": "user", "content": "Ünï 🙂"}, {"role": "assistant", "content": "日本語 — ok"}],
    [SYSTEM, {"role": "user", "content": "q"}, {"role": "assistant", "content": ""},
     {"role": "user", "content": "and?"}, {"role": "assistant", "content": "{{ not a tag }}"}],
]


def tokenizer(template=CHATML) -> HFTokenizer:
    """A byte-level BPE of the sonnet with the ChatML specials and `template`."""
    tok = HFTokenizer.train_bpe(SONNET + "Ünï🙂日本語—", 400)
    tok.tokenizer.add_special_tokens(SPECIALS)
    tok.chat = {"chat_template": template, "eos_token": END, "pad_token": END}
    return tok


def learnt_text(tok, example) -> str:
    return tok.decode([i for i, learnt in zip(example.ids, example.learnt) if learnt])


@pytest.mark.parametrize("i", range(len(CONVERSATIONS)))
def test_the_learnt_tokens_are_the_assistant_turns_and_their_end(i):
    tok, messages = tokenizer(), CONVERSATIONS[i]
    example = encode(tok, messages, block_size=256)
    want = "".join(m["content"] + END for m in messages if m["role"] == "assistant")
    assert learnt_text(tok, example) == want
    assert tok.decode(example.ids) == conversation(tok, messages, add_generation_prompt=False)


@pytest.mark.parametrize("i", range(len(CONVERSATIONS)))
def test_the_mask_is_transformers_assistant_tokens_mask(i):
    """Our mask (found from renders of the unmarked template's prefixes) equals the one
    transformers makes from the {% generation %} marks, on the same ids."""
    ours = encode(tokenizer(CHATML), CONVERSATIONS[i], block_size=256)
    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer().tokenizer, eos_token=END)
    hf.chat_template = MARKED
    theirs = hf.apply_chat_template(CONVERSATIONS[i], tokenize=True, return_dict=True,
                                    return_assistant_tokens_mask=True)
    assert ours.ids == theirs["input_ids"]
    assert [int(b) for b in ours.learnt] == theirs["assistant_masks"]
    assert encode(tokenizer(MARKED), CONVERSATIONS[i], block_size=256) == ours


def test_a_batch_pads_each_row_and_targets_the_next_assistant_token():
    tok = tokenizer()
    examples = [encode(tok, m, block_size=256) for m in CONVERSATIONS[:2]]
    batch = chat_batch(examples, tok.pad_id)
    ids, targets = batch["ids"], batch["targets"]
    longest = max(len(e.ids) for e in examples)
    assert ids.shape == targets.shape == (2, longest - 1)
    for row, e in enumerate(examples):
        n = len(e.ids) - 1
        assert ids[row, :n].tolist() == e.ids[:-1]
        assert (ids[row, n:] == tok.pad_id).all() and (targets[row, n:] == IGNORE).all()
        for t in range(n):
            assert targets[row, t] == (e.ids[t + 1] if e.learnt[t + 1] else IGNORE)
    counted = targets[0][targets[0] != IGNORE]
    assert tok.decode(counted) == "A rose" + END


def test_a_conversation_past_the_window_is_cut_or_refused(tmp_path):
    tok = tokenizer()
    long = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "From " * 40}]
    whole = encode(tok, long, block_size=1024)
    assert not whole.truncated
    window = whole.learnt.index(True) + 8  # the reply's first 8 tokens fit
    example = encode(tok, long, block_size=window)
    assert example.truncated and example.ids == whole.ids[:window + 1]
    assert example.learnt == whole.learnt[:window + 1]
    path = tmp_path / "long.jsonl"
    late = [{"role": "user", "content": "From " * 40}, {"role": "assistant", "content": "x"}]
    path.write_text(json.dumps({"messages": long}) + "\n" + json.dumps({"messages": late}) + "\n")
    with pytest.raises(GlassformerError, match=rf"line 2: its assistant turns start past the "
                                               rf"window of {window} tokens.*--model.block_size"):
        load_examples(path, tok, window)
    assert len(load_examples(path, tok, 1024)) == 2


@pytest.mark.parametrize("line,message", [
    ("{not json", r"line 2 is not JSON \(.*column 2\); each line is one conversation"),
    ('{"conversation": []}', r"line 2 has no \"messages\" list"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', r"line 2: message 0 needs a \"role\""),
    ('{"messages": [{"role": "user", "content": null}]}', r"line 2: message 0 needs a text"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', r"line 2 has no assistant message"),
    ('{"messages": [{"role": "assistant", "content": "hi"}]}', r"line 2 starts with an assistant"),
])
def test_a_bad_line_is_named_with_what_to_do(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": CONVERSATIONS[0]})
    path.write_text(good + "\n" + line + "\n\n" + good + "\n", encoding="utf-8")
    with pytest.raises(GlassformerError, match=message):
        read_conversations(path)


def test_blank_lines_are_skipped_and_lines_keep_their_numbers(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text("\n" + json.dumps({"messages": CONVERSATIONS[1]}) + "\n\n", encoding="utf-8")
    assert read_conversations(path) == [(2, CONVERSATIONS[1])]


@pytest.mark.parametrize("text,message", [("", "holds no conversations"),
                                          (None, "no conversations file")])
def test_an_empty_or_missing_file_is_refused(tmp_path, text, message):
    path = tmp_path / "c.jsonl"
    if text is not None:
        path.write_text(text)
    with pytest.raises(GlassformerError, match=message):
        read_conversations(path)


def test_a_template_that_rewrites_earlier_turns_is_refused():
    tok = tokenizer("{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}"
                    "{% endfor %}")
    with pytest.raises(GlassformerError, match="renders a turn differently"):
        encode(tok, CONVERSATIONS[1], block_size=256)


def test_rows_of_a_batch_score_as_they_do_alone():
    """Padding at the end changes nothing a causal model computes at the real tokens."""
    from glassformer.config import ModelConfig
    from glassformer.model import build

    tok = tokenizer()
    torch.manual_seed(0)
    model = build(ModelConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=2, n_head=2,
                              n_embd=32, position="rope", norm="rmsnorm",
                              activation="swiglu")).eval()
    examples = [encode(tok, m, block_size=256) for m in CONVERSATIONS[:3]]
    together = model(**chat_batch(examples, tok.pad_id))[0]  # (B, T, V)
    for row, e in enumerate(examples):
        alone = model(**chat_batch([e], tok.pad_id))[0][0]  # (n, V)
        torch.testing.assert_close(together[row, :len(alone)], alone, atol=1e-5, rtol=0)
