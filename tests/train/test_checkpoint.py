"""Checkpoints: save -> load gives identical logits; a crash while saving loses nothing."""

import errno

import pytest
import torch
from safetensors import SafetensorError

from glassformer.errors import GlassformerError
from glassformer.train import checkpoint as ckpt
from glassformer.train.loop import train


@pytest.fixture
def run(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_cfg(train__max_steps=4, train__save_every=2), run_dir)
    return run_dir


def test_save_then_load_gives_identical_logits(run):
    loaded = ckpt.load_run(run)
    ids = torch.tensor([loaded.tokenizer.encode("From fairest creatures")])
    again = ckpt.load_run(run)
    assert torch.equal(loaded.model(ids)[0], again.model(ids)[0])
    assert loaded.step == 4
    # The tied matrix is stored once and is tied again after loading.
    assert again.model.head.weight is again.model.embed.tokens.weight


def test_model_state_round_trips_exactly(run, tmp_path):
    loaded = ckpt.load_run(run)
    optimizer = torch.optim.AdamW(loaded.model.parameters())
    ckpt.save_checkpoint(tmp_path / "copy", loaded.model, optimizer, 7, {"torch": torch.get_rng_state()})
    copy = loaded.model.__class__(loaded.cfg.model)
    assert ckpt.load_weights(copy, tmp_path / "copy" / ckpt.MODEL) == 7
    for (name, a), b in zip(loaded.model.state_dict().items(), copy.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(run, monkeypatch):
    before = {name: (run / name).read_bytes() for name in (ckpt.MODEL, ckpt.STATE)}
    loaded = ckpt.load_run(run)

    def torch_save_dies_halfway(obj, path):
        open(path, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", torch_save_dies_halfway)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(run, loaded.model, torch.optim.AdamW(loaded.model.parameters()), 99, {})
    assert {name: (run / name).read_bytes() for name in before} == before
    assert not list(run.glob(".*.tmp"))
    assert ckpt.load_run(run).step == 4


@pytest.mark.parametrize("writer, failure", [
    ("save_file", OSError(errno.ENOSPC, "No space left on device")),
    ("save_file", SafetensorError("Error while serializing: I/O error: No space left on device "
                                  "(os error 28)")),  # safetensors 0.8 on a full disk
    ("torch.save", RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                                "704 vs 598")),  # torch.save's zip writer on a full disk
])
def test_a_full_disk_while_saving_is_one_clear_error(run, monkeypatch, writer, failure):
    before = {name: (run / name).read_bytes() for name in (ckpt.MODEL, ckpt.STATE)}
    loaded = ckpt.load_run(run)

    def write_half_then_fail(obj, path, *args, **kwargs):
        open(path, "wb").write(b"half a file")
        raise failure

    module, name = (ckpt.torch, "save") if writer == "torch.save" else (ckpt, "save_file")
    monkeypatch.setattr(module, name, write_half_then_fail)
    optimizer = torch.optim.AdamW(loaded.model.parameters())
    with pytest.raises(GlassformerError) as info:
        ckpt.save_checkpoint(run, loaded.model, optimizer, 99, {})
    message = str(info.value)
    assert message.startswith(f"could not write the checkpoint in {run} (")
    assert "No space left on device" in message or "torch.save stopped" in message
    assert "free there" in message and "--resume" in message and "\n" not in message
    assert {name: (run / name).read_bytes() for name in before} == before
    assert not list(run.glob(".*.tmp"))  # the failed save's temporary files are gone
    assert ckpt.load_run(run).step == 4


def test_a_bug_in_torch_save_is_not_called_a_full_disk(run, monkeypatch):
    """Only the writer's own failures are reported as such; any other error stays itself."""
    loaded = ckpt.load_run(run)

    def fails(obj, path):
        raise RuntimeError("something else")

    monkeypatch.setattr(ckpt.torch, "save", fails)
    with pytest.raises(RuntimeError, match="something else") as info:
        ckpt.save_checkpoint(run, loaded.model, torch.optim.AdamW(loaded.model.parameters()), 9, {})
    assert not isinstance(info.value, GlassformerError)


def test_corrupt_weights_give_one_clear_error(run):
    (run / ckpt.MODEL).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(GlassformerError, match="corrupt or incomplete"):
        ckpt.load_run(run)


def test_corrupt_trainer_state_gives_one_clear_error(run):
    (run / ckpt.STATE).write_bytes(b"not a torch file")
    with pytest.raises(GlassformerError, match="cannot be resumed"):
        ckpt.load_trainer_state(run)


def test_missing_run_and_missing_files_are_named(tmp_path, run):
    with pytest.raises(GlassformerError, match="no run directory"):
        ckpt.load_run(tmp_path / "nowhere")
    (run / ckpt.MODEL).unlink()
    with pytest.raises(GlassformerError, match="has no model.safetensors"):
        ckpt.load_run(run)


def test_resume_after_the_last_checkpoint_continues_the_metrics(run, tiny_cfg):
    train(tiny_cfg(train__max_steps=6, train__save_every=2), run, resume=True)
    steps = [m["step"] for m in ckpt.read_metrics(run) if "lr" in m]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_with_no_steps_left_is_refused_and_keeps_the_config(run, tiny_cfg):
    config = (run / ckpt.CONFIG).read_text()
    with pytest.raises(GlassformerError, match="at step 4 already: --max-steps 3"):
        train(tiny_cfg(train__max_steps=3), run, resume=True)
    assert (run / ckpt.CONFIG).read_text() == config  # max_steps is not rewritten


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(run, tiny_cfg, capsys):
    whole = ckpt.read_metrics(run)
    with open(run / ckpt.METRICS, "a", encoding="utf-8") as f:
        f.write('{"step": 5, "train_lo')  # a process killed while appending
    assert ckpt.read_metrics(run) == whole
    assert "torn line" in capsys.readouterr().err
    train(tiny_cfg(train__max_steps=6, train__save_every=2), run, resume=True)
    assert [m["step"] for m in ckpt.read_metrics(run) if "lr" in m] == [1, 2, 3, 4, 5, 6]


def test_an_unreadable_metrics_line_before_the_last_is_an_error(run):
    lines = (run / ckpt.METRICS).read_text().splitlines()
    (run / ckpt.METRICS).write_text("\n".join(["{oops"] + lines) + "\n")
    with pytest.raises(GlassformerError, match="line 1, is not JSON"):
        ckpt.read_metrics(run)


def test_a_fresh_run_where_an_attempt_died_before_its_first_checkpoint_starts_a_clean_log(
        tiny_cfg, tmp_path, monkeypatch):
    from glassformer.train import loop
    from tests.helpers import interrupted_at

    real_step = loop.train_step
    cfg = tiny_cfg(train__max_steps=4, train__save_every=4)
    monkeypatch.setattr(loop, "train_step", interrupted_at(real_step, 3))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run")
    assert not ckpt.has_checkpoint(tmp_path / "run") and ckpt.read_metrics(tmp_path / "run")
    monkeypatch.setattr(loop, "train_step", real_step)
    train(cfg, tmp_path / "run")
    assert [m["step"] for m in ckpt.read_metrics(tmp_path / "run") if "lr" in m] == [1, 2, 3, 4]
