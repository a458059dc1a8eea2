"""Training on a prepared dataset (--data): the losses of --text on the same tokens and split,
on two "nodes" (two torchrun launchers meeting at a rendezvous on 127.0.0.1) the losses of one
process, and a memory that does not grow with the corpus."""

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassformer.config import ConfigError, apply_overrides, preset
from glassformer.data.prepare import is_val, prepare
from glassformer.errors import GlassformerError
from glassformer.tokenizers import CharTokenizer
from glassformer.train import checkpoint as ckpt
from glassformer.train.loop import train
from tests.data.corpus import document
from tests.train.test_distributed import SETTINGS, assert_same_losses, losses

ROOT = Path(__file__).resolve().parents[2]


def tiny(**pairs):
    """The `tiny` preset on the CPU with the distributed tests' settings and `pairs`."""
    return apply_overrides(preset("tiny"), SETTINGS | {k: str(v) for k, v in pairs.items()})


def two_documents(tmp_path, val_fraction=0.5) -> tuple[Path, Path, str, str]:
    """A train document of 3,000 characters and a val one of 1,000, in files whose names put
    them in those splits; and a char tokenizer of both, saved."""
    rng = random.Random(0)
    train_text, val_text = document(rng, 3000), document(rng, 1000)
    names = [f"doc{i}.txt" for i in range(100)]
    train_name = next(n for n in names if not is_val(n, val_fraction))
    val_name = next(n for n in names if is_val(n, val_fraction))
    (tmp_path / "src").mkdir()
    files = [tmp_path / "src" / train_name, tmp_path / "src" / val_name]
    for path, text in zip(files, (train_text, val_text)):
        path.write_text(text, encoding="utf-8")
    tok = tmp_path / "tokenizer.json"
    CharTokenizer.from_text(train_text + val_text).save(tok)
    return files, tok, train_text, val_text


def test_data_gives_the_losses_of_text_on_the_same_tokens_and_split(tmp_path):
    # --text: the two documents in one file, its last quarter (1000 of 4000 characters, exactly)
    # held out; its tokenizer is fitted on that text, the one prepare was given. --data: the
    # same ids, train and val by document, the train split cut into 6 shards (windows that
    # cross them). Same seed, same batches, same model: the same losses, bit for bit.
    files, tok, train_text, val_text = two_documents(tmp_path)
    prepare(files, str(tok), tmp_path / "ds", val_fraction=0.5, separator="",
            shard_tokens=500, progress=False)
    (tmp_path / "all.txt").write_text(train_text + val_text, encoding="utf-8")
    steps = {"train.max_steps": 12, "train.eval_every": 6}
    train(tiny(**steps, **{"train.text": tmp_path / "all.txt", "train.val_fraction": 0.25}),
          tmp_path / "text")
    train(tiny(**steps, **{"train.data": tmp_path / "ds"}), tmp_path / "data")
    by_text, by_data = ckpt.read_metrics(tmp_path / "text"), ckpt.read_metrics(tmp_path / "data")
    assert len(by_text) == len(by_data) == 15  # 12 training steps, 3 evaluations (one at 0)
    for a, b in zip(by_text, by_data):
        assert {k: v for k, v in a.items() if k not in ("tokens_per_s", "mfu", "elapsed_s")} == \
               {k: v for k, v in b.items() if k not in ("tokens_per_s", "mfu", "elapsed_s")}
    assert ckpt.load_run(tmp_path / "data").tokenizer.to_json() == \
        CharTokenizer.load(tok).to_json()


def test_data_is_for_language_modelling_in_place_of_text(tmp_path):
    with pytest.raises(ConfigError, match="give --data or --text, not both"):
        tiny(**{"train.data": "ds", "train.text": "a.txt"})
    with pytest.raises(ConfigError, match="task 'lm'"):
        apply_overrides(preset("bert-shakespeare"), {"train.data": "ds"})
    with pytest.raises(GlassformerError, match="is not a prepared dataset"):
        train(tiny(**{"train.data": tmp_path}), tmp_path / "run")


def test_a_run_refuses_a_dataset_of_another_tokenizer(tmp_path):
    files, tok, train_text, val_text = two_documents(tmp_path)
    prepare(files, str(tok), tmp_path / "ds", val_fraction=0.5, progress=False)
    train(tiny(**{"train.data": tmp_path / "ds", "train.max_steps": 2}), tmp_path / "run")
    CharTokenizer.from_text(train_text + val_text + "¤").save(tok)
    prepare(files, str(tok), tmp_path / "other", val_fraction=0.5, progress=False)
    with pytest.raises(GlassformerError, match="prepared with another tokenizer"):
        train(tiny(**{"train.data": tmp_path / "other", "train.max_steps": 4}), tmp_path / "run",
              resume=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_on_two_nodes(data, run_dir, steps: int):
    """Two torchrun launchers of one process each, as two machines would start them, meeting
    at a c10d rendezvous on 127.0.0.1."""
    settings = SETTINGS | {"train.max_steps": str(steps), "train.data": str(data)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
               "--nproc-per-node=1", "--rdzv-backend=c10d",
               f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--rdzv-id=two-nodes",
               "-m", "glassformer", "train", "--preset", "tiny", "--out", str(run_dir),
               *(f"--{key}={value}" for key, value in settings.items())]
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-3000:]
    return "".join(outputs)


@pytest.mark.slow
def test_two_nodes_train_like_one_process_and_resume_in_one(tmp_path):
    files, tok, _, _ = two_documents(tmp_path)
    prepare(files, str(tok), tmp_path / "ds", val_fraction=0.5, progress=False)
    train(tiny(**{"train.data": tmp_path / "ds", "train.max_steps": 20}), tmp_path / "one")
    expected = losses(tmp_path / "one")

    log = train_on_two_nodes(tmp_path / "ds", tmp_path / "two", 10)
    assert "x 2 processes (ddp)" in log
    assert_same_losses(losses(tmp_path / "two"), expected[:10])

    # The checkpoint of 2 processes on 2 nodes continues in 1 process on 1 node.
    train(tiny(**{"train.data": tmp_path / "ds", "train.max_steps": 20}), tmp_path / "two",
          resume=True)
    assert_same_losses(losses(tmp_path / "two"), expected)


def peak_rss_of_training(data, run_dir) -> float:
    """MiB: the peak resident memory of a short training run on `data`, in a fresh process.
    Read from VmHWM, the high-water mark of the process's own memory map: getrusage's
    ru_maxrss would also count the parent's memory at fork (Linux keeps it across exec), which
    is pytest's, gigabytes once other tests have loaded real checkpoints."""
    code = ("import re\n"
            "from glassformer.config import apply_overrides, preset\n"
            "from glassformer.train.loop import train\n"
            f"cfg = apply_overrides(preset('tiny'), {{'train.data': {str(data)!r}, "
            "'train.device': 'cpu', 'train.max_steps': '20', 'train.eval_every': '10', "
            "'train.eval_batches': '20', 'train.batch_size': '16'})\n"
            f"train(cfg, {str(run_dir)!r})\n"
            "status = open('/proc/self/status').read()\n"
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return int(result.stdout.split()[-1]) / 1024


@pytest.mark.slow
def test_training_memory_does_not_grow_with_the_corpus(tmp_path):
    # Corpora of 50 and 200 MB of text (as many uint16 tokens: 100 and 400 MB of shards),
    # written in 4 MB files of random letters; the peak RSS of the same short training run
    # on each differs by far less than the 300 MB of extra shards. (The peak of one run on
    # one dataset varies by ~50 MB from run to run on a busy machine, hence the margin; a
    # reader through np.memmap differed by 187 MB here, the pages its windows touched.)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz \n", dtype=np.uint8)
    tok = tmp_path / "tokenizer.json"
    CharTokenizer.from_text(alphabet.tobytes().decode()).save(tok)
    rng = np.random.default_rng(0)
    peaks = {}
    for mb in (50, 200):
        src = tmp_path / f"src{mb}"
        src.mkdir()
        for i in range(mb // 4):
            (src / f"{i:03d}.txt").write_bytes(alphabet[rng.integers(0, 27, 4 << 20)].tobytes())
        prepare([src], str(tok), tmp_path / f"ds{mb}", val_fraction=0.05, workers=2,
                progress=False)
        for path in src.iterdir():
            path.unlink()
        peaks[mb] = peak_rss_of_training(tmp_path / f"ds{mb}", tmp_path / f"run{mb}")
    print(f"peak RSS of training: {peaks}")
    assert peaks[200] - peaks[50] < 100, peaks
    assert peaks[200] < 1024
