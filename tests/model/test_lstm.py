"""The LSTM baseline: a language model on the same task, loop and run directory as the GPT."""

import math
import re

import torch

from glassformer.cli import main
from glassformer.config import ModelConfig
from glassformer.model import LSTMLM, build
from glassformer.train import checkpoint as ckpt
from glassformer.train.loop import train


def test_lstm_is_causal_and_ties_its_head():
    torch.manual_seed(0)
    model = build(ModelConfig(family="lstm", vocab_size=20, n_layer=2, n_head=1, n_embd=16)).eval()
    assert isinstance(model, LSTMLM) and model.head.weight is model.embed.weight
    ids = torch.randint(0, 20, (2, 10))
    later = ids.clone()
    later[:, 7] = (later[:, 7] + 1) % 20
    a, b = model(ids)[0], model(later)[0]
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=0)  # recurrence only looks back
    assert (a[:, 7] - b[:, 7]).abs().max() > 1e-4
    loss = model(ids, ids)[1].item()
    assert abs(loss - math.log(20)) < 0.2  # near uniform at init


def test_lstm_trains_evaluates_and_is_refused_by_the_sampler(tiny_cfg, tmp_path, capsys):
    run = tmp_path / "lstm"
    train(tiny_cfg(model__family="lstm", train__max_steps=60, train__eval_every=30,
                   train__lr=1e-2), run)
    _, first, last = [m for m in ckpt.read_metrics(run) if "val_loss" in m]  # steps 0, 30, 60
    assert last["val_loss"] < first["val_loss"] < math.log(ckpt.load_run(run).tokenizer.vocab_size)
    assert isinstance(ckpt.load_run(run).model, LSTMLM)
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    full = float(re.search(r"\| loss ([\d.]+)", capsys.readouterr().out).group(1))
    assert full < first["val_loss"]  # the whole validation split, window by window
    assert main(["sample", str(run)]) == 2
    assert "needs a gpt run" in capsys.readouterr().err
