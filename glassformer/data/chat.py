"""Conversations for supervised fine-tuning (SFT): a JSONL file of {"messages": [...]} lines, as
OpenAI writes them, each rendered with the run's chat template and tokenized as transformers'
`apply_chat_template(..., tokenize=True)` does; the model learns the assistant's turns only.

One conversation, SmolLM2's template ("|" marks tokens, ^ those whose next-token loss counts):

    <|im_start|>|user|\\n|Hi|<|im_end|>|\\n|<|im_start|>|assistant|\\n|Hello|!|<|im_end|>|\\n
                                                                  ^^^^^ ^ ^^^^^^^^^^

The assistant's text of turn i is what rendering messages[:i + 1] adds to rendering messages[:i]
with the generation prompt (the template's own words for "the assistant speaks now"), up to and
including the end-of-turn token (the checkpoint's EOS) where the template closes the turn with
it: what the model must write, and where it must stop. The tokens marked are those whose
characters overlap that text (transformers' rule for `return_assistant_tokens_mask`).

A batch is the rows padded at the end to the longest: ids (B, T) and targets (B, T), the next
token where it is an assistant's, else -1 (ignored by the loss, as padding is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from glassformer.errors import GlassformerError
from glassformer.tokenizers.chat_template import check_messages, conversation, end_of_turn

IGNORE = -1  # a target the loss skips (model/stack.py cross_entropy)
LINE = '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'


@dataclass(frozen=True)
class Example:
    """One conversation, tokenized: `ids` and, per id, whether it is the assistant's."""

    line: int
    """Its line in the file (1-based), for messages about it."""
    messages: list[dict]
    ids: list[int]
    learnt: list[bool]
    truncated: bool
    """Whether it was cut to the window (block_size + 1 ids)."""


def read_conversations(path) -> list[tuple[int, list[dict]]]:
    """The (line number, messages) of each non-blank line of the JSONL file `path`; a line that
    is not a conversation with an assistant turn is an error naming it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise GlassformerError(f"no conversations file {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise GlassformerError(f"cannot read {path} as UTF-8 text ({err})") from None
    out = []
    for n, text in enumerate(lines, 1):
        if text.strip():
            out.append((n, parse_line(text, f"{path} line {n}")))
    if not out:
        raise GlassformerError(f"{path} holds no conversations; write one per line: {LINE}")
    return out


def parse_line(text: str, where: str) -> list[dict]:
    """The messages of one JSONL line, or an error saying what is wrong at `where`."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise GlassformerError(f"{where} is not JSON ({err.msg} at column {err.colno}); each "
                               f"line is one conversation: {LINE}") from None
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
        raise GlassformerError(f"{where} has no \"messages\" list; each line is one "
                               f"conversation: {LINE}")
    messages = record["messages"]
    try:
        check_messages(messages)
    except GlassformerError as err:
        raise GlassformerError(f"{where}: {err}") from None
    if not any(m["role"] == "assistant" for m in messages):
        raise GlassformerError(f"{where} has no assistant message: nothing to learn from it; "
                               "end it with the reply the model should give")
    if messages[0]["role"] == "assistant":
        raise GlassformerError(f"{where} starts with an assistant message; start it with the "
                               "system or user message that the reply answers")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The conversation's text under the tokenizer's chat template (no generation prompt), and
    the (start, end) character span of each assistant turn's text in it (module docstring)."""
    def text(upto, prompt):
        return conversation(tokenizer, messages[:upto], add_generation_prompt=prompt)

    whole = text(len(messages), False)
    end_token = end_of_turn(tokenizer)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = text(i, True)
        through = text(i + 1, False)
        if not (through.startswith(before) and whole.startswith(through)):
            raise GlassformerError("this chat template renders a turn differently once more "
                                   "turns follow it, so the assistant's text cannot be found in "
                                   "the conversation; fine-tune on conversations that end with "
                                   "their only assistant turn")
        said = through[len(before):]
        if end_token and end_token in said:  # up to the end of turn, not what follows it
            said = said[:said.rindex(end_token) + len(end_token)]
        spans.append((len(before), len(before) + len(said)))
    return whole, spans


def encode(tokenizer, messages: list[dict], block_size: int, line: int = 0) -> Example:
    """The conversation's ids (cut to block_size + 1) and which of them are the assistant's."""
    text, spans = assistant_spans(tokenizer, messages)
    ids, offsets = tokenizer.encode_offsets(text)
    learnt = [any(end > a and start < b for a, b in spans) for start, end in offsets]
    keep = block_size + 1  # inputs are ids[:-1], targets ids[1:]
    return Example(line, messages, ids[:keep], learnt[:keep], len(ids) > keep)


def load_examples(path, tokenizer, block_size: int) -> list[Example]:
    """Every conversation of the JSONL file `path`, encoded; one whose assistant turns all lie
    past the window is an error (it would teach nothing)."""
    examples = []
    for line, messages in read_conversations(path):
        example = encode(tokenizer, messages, block_size, line)
        if not any(example.learnt[1:]):
            raise GlassformerError(
                f"{path} line {line}: its assistant turns start past the window of "
                f"{block_size} tokens, so there is nothing to learn from it; shorten it or raise "
                f"--model.block_size")
        examples.append(example)
    return examples


def chat_batch(examples: list[Example], pad_id: int, device="cpu") -> dict:
    """{"ids": (B, T), "targets": (B, T)}: each example's ids but the last, padded at the end
    with pad_id to the longest, and the next id where it is the assistant's, else IGNORE."""
    T = max(len(e.ids) for e in examples) - 1
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)  # (B, T)
    targets = torch.full((len(examples), T), IGNORE, dtype=torch.long)  # (B, T)
    for b, e in enumerate(examples):
        row = torch.tensor(e.ids, dtype=torch.long)  # (n,)
        learnt = torch.tensor(e.learnt[1:])  # (n - 1,): is the next token the assistant's?
        ids[b, :len(row) - 1] = row[:-1]
        targets[b, :len(row) - 1] = torch.where(learnt, row[1:], IGNORE)
    return {"ids": ids.to(device), "targets": targets.to(device)}


def prompt_and_reply(messages: list[dict]) -> tuple[list[dict], str]:
    """A conversation cut before its last assistant turn, and that turn's text: what a held-out
    conversation asks, and what it was taught to answer."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]["content"]
