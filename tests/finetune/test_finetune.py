"""Fine-tuning through the training loop: LoRA runs freeze the base, write a small adapter file
and load as a plain (merged) model; full runs start from the base; the comparison report."""

import json

import pytest
import torch
from safetensors.torch import load_file

from glassformer.cli import main
from glassformer.errors import GlassformerError
from glassformer.finetune.compare import compare_methods, trainable_parameters
from glassformer.finetune.run import finetune, finetune_config
from glassformer.model import lora
from glassformer.train import checkpoint as ckpt
from glassformer.train.loop import train
from tests.conftest import SONNET

QUICK = {"train.max_steps": "6", "train.eval_every": "3", "train.warmup_steps": "1",
         "train.sample_tokens": "0", "train.save_every": "3"}


@pytest.fixture
def base(tiny_cfg, tmp_path):
    run = tmp_path / "base"
    train(tiny_cfg(train__max_steps=10, train__sample_tokens=0), run)
    return run


@pytest.fixture
def new_text(tmp_path):
    path = tmp_path / "new.txt"
    words = SONNET.split(" ")  # new text in the base's characters: the sonnet's words reversed
    path.write_text(" ".join(reversed(words)) * 10, encoding="utf-8")
    return path


def test_lora_run_freezes_the_base_and_writes_a_small_adapter_file(base, new_text, tmp_path):
    run = tmp_path / "lora"
    finetune(base, run, "lora", text=new_text, rank=2, overrides=QUICK)
    saved = load_file(str(run / ckpt.MODEL))  # base weights and adapters, unmerged
    before = load_file(str(base / ckpt.MODEL))
    for name, tensor in before.items():
        assert torch.equal(saved[name], tensor), f"{name} changed; the base is frozen"
    adapters = load_file(str(run / ckpt.ADAPTERS))
    assert set(adapters) == {n for n in saved if ".adapters." in n}
    assert (run / ckpt.ADAPTERS).stat().st_size < (run / ckpt.MODEL).stat().st_size / 4

    # load_run merges: a plain model with the adapters' outputs, on the base's tokenizer
    loaded = ckpt.load_run(run)
    assert not any(isinstance(m, lora.LoRALinear) for m in loaded.model.modules())
    cfg = loaded.cfg
    again = ckpt.load_run(base).model
    lora.add_adapters(again, 2, cfg.train.lora_alpha, 0.0, cfg.train.lora_targets)
    lora.load_adapters(again, run / ckpt.ADAPTERS)  # the adapter file on the base checkpoint
    ids = torch.tensor([loaded.tokenizer.encode("From fairest")])
    torch.testing.assert_close(again.eval()(ids)[0], loaded.model(ids)[0], atol=1e-5, rtol=0)
    assert (loaded.model(ids)[0] - ckpt.load_run(base).model(ids)[0]).abs().max() > 1e-3


def test_a_lora_run_resumes(base, new_text, tmp_path):
    run = tmp_path / "lora"
    finetune(base, run, "lora", text=new_text, rank=2, overrides=QUICK)
    cfg = finetune_config(base, "lora", text=new_text, rank=2, overrides=QUICK | {
        "train.max_steps": "9"})
    train(cfg, run, resume=True)
    assert ckpt.load_run(run).step == 9


def test_full_finetuning_starts_from_the_base_and_learns_the_new_text(base, new_text, tmp_path):
    result = finetune(base, tmp_path / "full", "full", text=new_text,
                      overrides=QUICK | {"train.max_steps": "30", "train.lr": "3e-3"})
    metrics = ckpt.read_metrics(tmp_path / "full")
    first = next(m for m in metrics if "val_loss" in m)
    assert result["val_loss"] < first["val_loss"]
    cfg = finetune_config(base, "full", text=new_text)
    assert cfg.train.init_from == str(base) and cfg.train.lora_rank == 0
    assert trainable_parameters(cfg) > 10 * trainable_parameters(
        finetune_config(base, "lora", text=new_text, rank=2))


def test_lora_needs_a_run_to_adapt(tiny_cfg, tmp_path):
    with pytest.raises(GlassformerError, match="init_from"):
        train(tiny_cfg(train__lora_rank=4), tmp_path / "run")


def test_the_comparison_reports_each_method(base, new_text, tmp_path):
    report = compare_methods(base, tmp_path / "cmp", text=new_text, ranks=(2, 4),
                             overrides=QUICK, log=lambda _: None).read_text()
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert [r["name"] for r in results] == ["full", "lora-r2", "lora-r4"]
    full, r2, r4 = results
    assert full["trainable"] > r4["trainable"] > r2["trainable"]
    assert full["peak_bytes"] > r2["peak_bytes"]  # gradients and AdamW state of every weight
    for r in results:
        assert f"| {r['name']} |" in report and r["tokens_per_s"] > 0


def test_the_command_fine_tunes_a_run(base, new_text, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["finetune", str(base), "--text", str(new_text), "--method", "lora", "--rank",
                 "2", "--out", str(out), "--max-steps", "4", "--train.eval_every=0",
                 "--train.sample_tokens=0"]) == 0
    assert ckpt.load_run(out).cfg.train.lora_rank == 2
    assert "trainable: LoRA rank 2" in capsys.readouterr().err


def test_lora_turns_an_mlm_run_into_a_genre_classifier(text_file, tmp_path, monkeypatch):
    from glassformer.config import apply_overrides, preset
    from glassformer.data import genre
    from glassformer.train import tasks

    mlm = tmp_path / "mlm"
    train(apply_overrides(preset("bert-shakespeare"), {
        "model.n_layer": "1", "model.n_head": "2", "model.n_embd": "32", "model.block_size": "34",
        "train.text": str(text_file), "train.device": "cpu", "train.max_steps": "4",
        "train.eval_batches": "1", "train.sample_tokens": "0"}), mlm)
    # Each fake work is its genre's first letter repeated ("cccc...", "tttt..."): learnable.
    works = {name: g[0] * (400 + i) for i, (name, g) in enumerate(genre.WORKS.items())}
    monkeypatch.setattr(tasks, "shakespeare_works", lambda: works)
    run = tmp_path / "genre"
    result = finetune(mlm, run, "lora", task="genre", rank=2, overrides=QUICK | {
        "train.max_steps": "40", "train.eval_every": "0", "train.eval_batches": "1",
        "train.lr": "2e-2", "train.lora_targets": "q,k,v,o"})
    assert result["val_accuracy"] > result["majority_baseline"]
    adapters = load_file(str(run / ckpt.ADAPTERS))  # the new head trains in full, beside them
    assert {n.split(".")[0] for n in adapters} == {"blocks", "classifier"}
    assert ckpt.load_run(run).cfg.model.n_classes == len(genre.GENRES)
