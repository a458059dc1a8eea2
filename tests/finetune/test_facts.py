"""The made-up fact set: held-out prompts ask trained facts in words never trained on."""

from glassformer.data.chat import read_conversations
from glassformer.finetune.facts import (HELD_OUT, QUESTIONS, fact_conversations, facts,
                                        taught_value, write_jsonl)


def test_held_out_prompts_are_new_wordings_of_trained_facts():
    train, held_out = fact_conversations(n_countries=3)
    n_facts = len(facts(3))
    assert len(held_out) == n_facts * HELD_OUT
    assert len(train) == n_facts * (len(QUESTIONS["capital"]) - HELD_OUT)
    asked = {c[-2]["content"] for c in train}
    trained_answers = {c[-1]["content"] for c in train}
    for c in held_out:
        assert c[-2]["content"] not in asked  # a wording never trained for this fact...
        assert c[-1]["content"] in trained_answers  # ...of a fact that was trained
    for kind, wordings in QUESTIONS.items():  # ...and every wording is trained on other facts
        for wording in wordings:
            stem = wording.split("{country}")[0]
            assert any(c[-2]["content"].startswith(stem) and kind in c[-1]["content"]
                       for c in train)


def test_the_words_are_invented_and_distinct():
    words = [f["country"] for f in facts(6)] + [f["value"] for f in facts(6)]
    assert len(set(words)) == len(set(f["country"] for f in facts(6))) + 12
    assert all(w.isalpha() and w[0].isupper() for w in words)


def test_the_files_are_what_the_chat_task_reads(tmp_path):
    train, _ = fact_conversations(n_countries=2)
    path = write_jsonl(train, tmp_path / "t.jsonl")
    assert [m for _, m in read_conversations(path)] == train
    assert taught_value(train[0]) == facts(2)[0]["value"]
