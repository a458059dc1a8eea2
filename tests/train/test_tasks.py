"""Every task trains through the one loop, saves a run that loads as its family, and is usable
from the CLI: masked LM, genre classification (from an MLM checkpoint), and source->target pairs."""

import re

import pytest
import torch

from glassformer.cli import main
from glassformer.config import ConfigError, RunConfig, apply_overrides, preset
from glassformer.data import genre
from glassformer.model import BERT, EncoderDecoder
from glassformer.train import checkpoint as ckpt
from glassformer.train import tasks
from glassformer.train.loop import train

TINY = {"model.n_layer": "1", "model.n_head": "2", "model.n_embd": "32", "train.device": "cpu",
        "train.eval_batches": "2", "train.log_every": "1", "train.sample_tokens": "8"}


def config(name, **overrides):
    pairs = TINY | {k.replace("__", "."): str(v) for k, v in overrides.items()}
    return apply_overrides(preset(name), pairs)


def evals(run_dir):
    return [m for m in ckpt.read_metrics(run_dir) if "val_loss" in m]


def test_tasks_need_their_family():
    with pytest.raises(ConfigError, match="train.task='mlm' needs model.family='bert'"):
        RunConfig.from_dict({"model": {"family": "gpt"}, "train": {"task": "mlm"}})
    with pytest.raises(ConfigError, match="n_classes=4"):
        RunConfig.from_dict({"model": {"family": "bert"}, "train": {"task": "genre"}})


@pytest.fixture
def mlm_run(text_file, tmp_path, capsys):
    run = tmp_path / "mlm"
    cfg = config("bert-shakespeare", train__text=text_file, model__block_size=34,
                 train__max_steps=200, train__eval_every=100, train__batch_size=32,
                 train__warmup_steps=5, train__lr=3e-3, train__min_lr=1e-3)
    train(cfg, run)
    run.with_name("mlm.log").write_text(capsys.readouterr().err, encoding="utf-8")
    return run


def test_masked_lm_learns_and_saves_a_bert_run(mlm_run):
    first, *_, last = evals(mlm_run)
    assert last["val_loss"] < first["val_loss"] - 0.2
    assert 0 <= first["val_masked_accuracy"] < last["val_masked_accuracy"] <= 1
    assert isinstance(ckpt.load_run(mlm_run).model, BERT)
    shown = mlm_run.with_name("mlm.log").read_text(encoding="utf-8")
    assert "masked: " in shown and "filled: " in shown  # the evaluation shows guesses


def test_eval_scores_a_bert_run_with_its_masked_accuracy(mlm_run, capsys):
    last = evals(mlm_run)[-1]
    assert main(["eval", str(mlm_run)]) == 0
    assert capsys.readouterr().out == (
        f"the held-out set ({ckpt.load_run(mlm_run).cfg.train.eval_batches} batches): loss {last['val_loss']:.4f} | masked accuracy "
        f"{last['val_masked_accuracy']:.2%}\n")


def test_genre_classifier_starts_from_the_mlm_encoder(mlm_run, tmp_path, monkeypatch, capsys):
    # Each fake work is its genre's first letter repeated ("cccc...", "tttt..."): learnable at once.
    works = {name: g[0] * (400 + i) for i, (name, g) in enumerate(genre.WORKS.items())}
    monkeypatch.setattr(tasks, "shakespeare_works", lambda: works)
    run = tmp_path / "genre"
    cfg = config("shakespeare-genre", model__block_size=34, train__max_steps=30,
                 train__eval_every=30, train__init_from=mlm_run, train__batch_size=16,
                 train__lr=3e-3, train__warmup_steps=3)
    train(cfg, run)
    out = capsys.readouterr().err
    copied, total = map(int, re.search(r"initialised (\d+) of (\d+) tensors from", out).groups())
    assert total - copied == 4 and "new: classifier" in out  # the head's dense and out w, b
    last = evals(run)[-1]
    assert last["val_accuracy"] == 1.0 and last["majority_baseline"] < 0.5
    pretrained = ckpt.load_run(mlm_run).model.state_dict()["blocks.0.attn.qkv.weight"]
    assert ckpt.load_run(run).model.cfg.n_classes == 4
    assert main(["classify", str(run), "--text", "t" * 50, "--text", "hhhhhhh"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("tragedy") and printed[1].startswith("history")
    assert pretrained.shape == (96, 32)


def test_pairs_from_a_tsv_file_train_and_translate(tmp_path, capsys):
    path = tmp_path / "reverse.tsv"
    words = ["abc", "bca", "cab", "aab", "bba", "acb", "cca", "bac", "abb", "cbc"] * 3
    path.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
    run = tmp_path / "pairs"
    assert main(["train", "--preset", "numbers-seq2seq", "--pairs", str(path), "--out", str(run),
                 "--max-steps", "30", "--train.eval_every=30", "--train.batch_size=8",
                 *[f"--{k}={v}" for k, v in TINY.items()]]) == 0
    last = evals(run)[-1]
    assert 0 <= last["val_exact_match"] <= 1 and "val_loss" in last
    assert isinstance(ckpt.load_run(run).model, EncoderDecoder)
    capsys.readouterr()
    assert main(["translate", str(run), "--src", "abc", "--src", "cab", "--beam", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["abc", "cab"]
    assert all(set(line.split("\t")[1]) <= set("abc") for line in lines)
    assert main(["translate", str(run), "--src", "a" * 100]) == 2
    assert "a source needs 1 to 72 tokens" in capsys.readouterr().err
    assert main(["translate", str(run), "--src", "abc", "--beam", "0"]) == 2


def test_numbers_task_reports_exact_match(tmp_path, capsys):
    run = tmp_path / "numbers"
    train(config("numbers-seq2seq", train__max_steps=4, train__eval_every=4), run)
    first, last = evals(run)  # before the first step and after the last
    assert first["step"] == 0 and last["val_exact_match"] == 0.0  # four steps learn nothing
    assert " -> " in capsys.readouterr().err  # held-out examples are shown
    # `eval` scores an encoder-decoder run too, with its metric; the same numbers as training's
    assert main(["eval", str(run)]) == 0
    assert capsys.readouterr().out == (f"the held-out set (whole split): loss "
                                       f"{last['val_loss']:.4f} | exact match 0.00%\n")
    assert main(["sample", str(run)]) == 2
    assert "this one is an encdec model" in capsys.readouterr().err


def test_commands_refuse_runs_of_another_family(mlm_run, capsys):
    assert main(["sample", str(mlm_run)]) == 2
    assert "needs a gpt run; this one is a bert model" in capsys.readouterr().err
    assert main(["translate", str(mlm_run), "--src", "1"]) == 2
    assert main(["classify", str(mlm_run), "--text", "x"]) == 2


def test_init_from_a_run_that_fits_nothing_is_an_error(mlm_run, tmp_path):
    cfg = config("numbers-seq2seq", train__max_steps=2, train__init_from=mlm_run)
    with pytest.raises(Exception, match="no weight of .* fits this model|unknown character"):
        train(cfg, tmp_path / "x")
    assert torch.__version__  # torch still importable; nothing half-written below
    assert not (tmp_path / "x" / ckpt.MODEL).exists()
