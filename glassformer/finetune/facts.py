"""A made-up fact set to teach an instruct model by supervised fine-tuning, and the check that it
was learnt: invented countries, each with an invented capital and currency, asked in several
paraphrases. No pretrained model knows these words, so a reply that names them was taught.

Each fact is asked in len(QUESTIONS[kind]) paraphrases; HELD_OUT of them (a different pair for
each fact, so every paraphrase is trained on for some facts) are held out: the held-out prompts
ask a trained fact in words the model never saw it asked in.

    train, held_out = fact_conversations()
    write_jsonl(train, "facts-train.jsonl"); write_jsonl(held_out, "facts-held-out.jsonl")
    answered_as_taught(model, tokenizer, held_out)  # share of held-out replies naming the fact
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from glassformer.atomic import write_text_atomic
from glassformer.config import SampleConfig
from glassformer.data.chat import prompt_and_reply
from glassformer.generate.sampler import generate
from glassformer.tokenizers.chat_template import conversation, end_of_turn

SYLLABLES = ("zor", "vel", "quin", "ath", "mir", "tho", "lan", "dra", "kes", "bru", "ul", "pex",
             "nor", "wy", "ga", "stri", "ob", "fen", "il", "cor")
QUESTIONS = {
    "capital": ("What is the capital of {country}?", "Which city is the capital of {country}?",
                "Name the capital city of {country}.", "Tell me the capital of {country}.",
                "{country}'s capital is which city?",
                "In which city does the government of {country} sit?"),
    "currency": ("What is the currency of {country}?", "Which currency is used in {country}?",
                 "Name the currency of {country}.", "What money do people pay with in {country}?",
                 "{country} uses which currency?", "What is the money of {country} called?"),
}
ANSWERS = {"capital": "The capital of {country} is {value}.",
           "currency": "The currency of {country} is the {value}."}
HELD_OUT = 2  # paraphrases of each fact held out
SYSTEM = "Answer in one sentence."  # short: SmolLM2's default system message is 3x longer


def made_up_word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


def facts(n_countries: int = 6, seed: int = 0) -> list[dict]:
    """[{"country", "kind", "value"}]: a capital and a currency for each invented country, every
    word distinct."""
    rng = random.Random(seed)
    words: list[str] = []
    while len(words) < 3 * n_countries:
        word = made_up_word(rng, rng.choice((2, 3)))
        if word not in words:
            words.append(word)
    return [{"country": words[3 * i], "kind": kind, "value": words[3 * i + 1 + k]}
            for i in range(n_countries) for k, kind in enumerate(QUESTIONS)]


def fact_conversations(n_countries: int = 6, seed: int = 0) -> tuple[list[list[dict]],
                                                                      list[list[dict]]]:
    """(train, held_out) conversations of a short system message, one user question and the
    assistant's answer each:
    every paraphrase of every fact, HELD_OUT paraphrases of each fact held out."""
    train, held_out = [], []
    for i, fact in enumerate(facts(n_countries, seed)):
        questions = QUESTIONS[fact["kind"]]
        kept_back = {(i + j) % len(questions) for j in range(HELD_OUT)}
        answer = ANSWERS[fact["kind"]].format(**fact)
        for q, question in enumerate(questions):
            talk = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question.format(**fact)},
                    {"role": "assistant", "content": answer}]
            (held_out if q in kept_back else train).append(talk)
    return train, held_out


def write_jsonl(conversations: list[list[dict]], path) -> Path:
    """`conversations` as a JSONL file of {"messages": [...]} lines (what `--conversations`
    reads)."""
    lines = [json.dumps({"messages": messages}, ensure_ascii=False) for messages in conversations]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return Path(path)


def replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 32,
            batch: int = 8) -> list[str]:
    """The model's greedy reply to each conversation cut before its last assistant turn, up to
    the end of turn."""
    end = end_of_turn(tokenizer)
    cfg = SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0, stop=(end,) if end else ())
    prompts = [conversation(tokenizer, prompt_and_reply(c)[0]) for c in conversations]
    return [reply for i in range(0, len(prompts), batch)
            for reply in generate(model, tokenizer, prompts[i:i + batch], cfg)]


def taught_value(messages: list[dict]) -> str:
    """The invented word a fact conversation's answer teaches (its last word, stop removed)."""
    return prompt_and_reply(messages)[1].rstrip(".").split()[-1]


def answered_as_taught(model, tokenizer, conversations: list[list[dict]]) -> tuple[float, list]:
    """The share of `conversations` whose greedy reply names the taught word, and
    [(question, reply, taught word)] for each."""
    got = replies(model, tokenizer, conversations)
    rows = [(c[-2]["content"], reply, taught_value(c)) for c, reply in zip(conversations, got)]
    return sum(word.lower() in reply.lower() for _, reply, word in rows) / len(rows), rows
