"""Crash safety: training killed at any instant (a real os._exit, so no cleanup code runs),
inside every window of a checkpoint write included, then resumed (or, killed before its first
checkpoint, started again), ends with the weights of an uninterrupted run, byte for byte, and
leaves no temporary file; a second writer on the same run is refused.

The windows are reached by fault injection, not luck: the killed process counts its renames
(os.replace) and its weight writes, and exits before or after the N-th one.
"""

import subprocess
import sys
import textwrap

import pytest

from glassformer.atomic import JOURNAL
from glassformer.train import checkpoint as ckpt
from glassformer.train.loop import train

# max_steps 6, save_every 2: renames 1-2 write config.json and tokenizer.json; each checkpoint
# (steps 2, 4, 6) is three: the journal, then model.safetensors, then trainer_state.pt.
SETTINGS = {"train__max_steps": 6, "train__save_every": 2, "train__eval_every": 3,
            "model__dropout": 0.1}  # dropout: the restored RNG state matters too
RENAMES = 11
CHECKPOINT_AT_4 = (6, 7, 8)  # its journal, weights, trainer state

KILLED = 137
DIES = textwrap.dedent("""
    import os, sys
    import torch
    torch.set_num_threads(1)  # as the test process: the same floating-point sums
    from glassformer.config import RunConfig
    from glassformer.train import checkpoint
    from glassformer.train.loop import train

    config, run_dir, when, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    count = {"replace": 0, "write": 0}
    real_replace, real_save_file = os.replace, checkpoint.save_file

    def replace(src, dst):
        count["replace"] += 1
        hit = count["replace"] == n
        if hit and when == "before-rename":
            os._exit(137)
        real_replace(src, dst)
        if hit and when == "after-rename":
            os._exit(137)

    def save_file(tensors, path, metadata=None):  # dies with the weights half written
        count["write"] += 1
        real_save_file(tensors, path, metadata=metadata)
        if count["write"] == n and when == "writing-weights":
            with open(path, "r+b") as f:
                f.truncate(f.seek(0, 2) // 2)
            os._exit(137)

    os.replace, checkpoint.save_file = replace, save_file
    train(RunConfig.load(config), run_dir)
""")


@pytest.fixture
def uninterrupted(tiny_cfg, tmp_path):
    cfg = tiny_cfg(**SETTINGS)
    cfg.save(tmp_path / "config.json")
    train(cfg, tmp_path / "whole")
    return cfg, tmp_path / "config.json", (tmp_path / "whole" / ckpt.MODEL).read_bytes()


def killed_then_finished(uninterrupted, run_dir, when, n):
    """Train in a process that dies at the chosen instant, then finish the run here, as a user
    would: open the run (which finishes or undoes the interrupted save), then resume it, start it
    again if it died before its first checkpoint, or leave it if its last one was written."""
    cfg, config, _ = uninterrupted
    died = subprocess.run([sys.executable, "-c", DIES, str(config), str(run_dir), when, str(n)],
                          capture_output=True, text=True)
    assert died.returncode == KILLED, died.stderr[-2000:]  # the window was reached
    with ckpt.writing(run_dir):
        pass
    saved = ckpt.saved_step(run_dir / ckpt.MODEL) if ckpt.has_checkpoint(run_dir) else 0
    if saved < cfg.train.max_steps:
        train(cfg, run_dir, resume=saved > 0)
    return (run_dir / ckpt.MODEL).read_bytes()


def leftovers(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.glob(".*") if p.name != ckpt.LOCK)


WINDOWS = [("before-rename", n) for n in CHECKPOINT_AT_4] + \
          [("after-rename", n) for n in CHECKPOINT_AT_4] + [("writing-weights", 2)]


@pytest.mark.parametrize("when,n", WINDOWS, ids=[f"{w}-{n}" for w, n in WINDOWS])
def test_a_kill_inside_a_checkpoint_write_resumes_to_the_same_weights(uninterrupted, tmp_path,
                                                                       when, n):
    run_dir = tmp_path / "killed"
    assert killed_then_finished(uninterrupted, run_dir, when, n) == uninterrupted[2]
    assert leftovers(run_dir) == []
    whole = [m for m in ckpt.read_metrics(tmp_path / "whole")]
    assert [m["step"] for m in ckpt.read_metrics(run_dir)] == [m["step"] for m in whole]


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before-rename", "after-rename"])
@pytest.mark.parametrize("n", range(1, RENAMES + 1))
def test_a_kill_at_every_rename_of_a_run_resumes_to_the_same_weights(uninterrupted, tmp_path,
                                                                      when, n):
    run_dir = tmp_path / "killed"
    assert killed_then_finished(uninterrupted, run_dir, when, n) == uninterrupted[2]
    assert leftovers(run_dir) == []


def test_a_kill_between_the_two_renames_leaves_a_set_the_next_start_completes(uninterrupted,
                                                                               tmp_path):
    """The window of the old bug: new weights beside the old trainer state on disk."""
    cfg, config, _ = uninterrupted
    run_dir = tmp_path / "killed"
    subprocess.run([sys.executable, "-c", DIES, str(config), str(run_dir), "after-rename", "7"],
                   capture_output=True)
    assert (run_dir / JOURNAL).exists()
    assert ckpt.saved_step(run_dir / ckpt.MODEL) == 4
    assert ckpt.load_trainer_state(run_dir)["step"] == 2  # mixed until the journal is replayed
    with ckpt.writing(run_dir) as finished:
        assert finished and ckpt.load_trainer_state(run_dir)["step"] == 4
    assert leftovers(run_dir) == []


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    import os

    from glassformer.errors import GlassformerError

    with ckpt.writing(tmp_path / "run"):
        with pytest.raises(GlassformerError, match=f"another process \\(pid {os.getpid()}\\)"):
            with ckpt.writing(tmp_path / "run"):
                pass
    with ckpt.writing(tmp_path / "run") as finished:  # free again once the holder is done
        assert not finished


def test_a_second_train_process_is_refused_and_a_dead_holders_lock_is_taken_over(tiny_cfg,
                                                                                  tmp_path):
    """Two processes: the holder's pid is in the refusal; once the holder is killed (kill -9,
    no cleanup), the next train takes the run over."""
    import signal

    from glassformer.errors import GlassformerError

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from glassformer.train.checkpoint import writing\n"
         "with writing(sys.argv[1]):\n    print('holding', flush=True)\n    time.sleep(60)\n",
         str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(GlassformerError, match=f"another process \\(pid {holder.pid}\\)"):
            train(tiny_cfg(train__max_steps=2), tmp_path / "run")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    train(tiny_cfg(train__max_steps=2), tmp_path / "run")
    assert ckpt.load_run(tmp_path / "run").step == 2
