"""The command line: the documented spellings work end to end, and every bad input is one clear
line on stderr, never a traceback."""

import errno
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from glassformer.cli import main
from glassformer.train import checkpoint as ckpt
from glassformer.train import loop
from tests.helpers import SONNET, one_error_line, run_python

TINY = ["--preset", "tiny", "--train.device=cpu"]
FRESH = [*TINY, "--text", "{text}", "--out", "{missing}"]  # a new run: test text, new directory


@pytest.fixture
def run_dir(tmp_path, text_file):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--text", str(text_file), "--out", str(out),
                 "--max-steps", "6", "--save-every", "3", "--model.n_layer=1",
                 "--train.lr", "3e-3"]) == 0
    return out


def test_help_answers_without_importing_torch():
    code = ("import sys; from glassformer.cli import main\n"
            "try: main(['--help'])\n"
            "except SystemExit as e: assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
            "print('ok')")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "sample" in result.stdout and result.stdout.endswith("ok\n")


def test_train_applies_flags_and_dotted_overrides(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["model"]["n_layer"] == 1 and cfg["train"]["lr"] == 3e-3
    assert cfg["train"]["max_steps"] == 6 and cfg["train"]["save_every"] == 3
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("step" in r for r in records)
    assert any("train_loss" in r and "val_loss" in r for r in records)


def test_sample_streams_a_continuation(run_dir, capsys):
    assert main(["sample", str(run_dir), "--prompt", "From", "--max-new-tokens", "20",
                 "--temperature", "0.9", "--top-k", "10", "--top-p", "0.95", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("From") and len(first) == len("From") + 20 + 1
    main(["sample", str(run_dir), "--prompt", "From", "--max-new-tokens", "20",
          "--temperature", "0.9", "--top-k", "10", "--top-p", "0.95", "--seed", "3"])
    assert capsys.readouterr().out == first  # the seed makes it repeatable


def test_sample_with_prompt_lookup_and_int8_weights(run_dir, capsys):
    """--prompt-lookup gives plain greedy decoding's text; --quantize int8 samples from the
    model with int8 weights (model/quantize.py)."""
    from glassformer.config import SampleConfig
    from glassformer.generate.sampler import generate
    from glassformer.model.quantize import calibration_ids, quantize
    from glassformer.train.checkpoint import load_run

    args = ["sample", str(run_dir), "--prompt", "From fair", "--max-new-tokens", "40",
            "--temperature", "0"]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main([*args, "--prompt-lookup", "5"]) == 0
    assert capsys.readouterr().out == plain
    assert main([*args, "--quantize", "int8"]) == 0
    run = load_run(run_dir)
    cfg = SampleConfig(max_new_tokens=40, temperature=0)
    int8 = quantize(run.model, "int8", calibration_ids(run.tokenizer))
    want = generate(int8, run.tokenizer, ["From fair"], cfg)[0]
    assert capsys.readouterr().out == "From fair" + want + "\n"
    assert main([*args, "--prompt-lookup", "5", "--temperature", "0.8"]) == 2
    assert "prompt_lookup" in one_error_line(capsys)


def test_sample_applies_the_presence_and_frequency_penalties(run_dir, capsys):
    from glassformer.config import SampleConfig
    from glassformer.generate.sampler import generate
    from glassformer.train.checkpoint import load_run

    args = ["sample", str(run_dir), "--prompt", "From", "--max-new-tokens", "30",
            "--temperature", "0.9", "--seed", "3"]
    assert main([*args, "--presence-penalty", "1.5", "--frequency-penalty", "-2"]) == 0
    penalized = capsys.readouterr().out
    run = load_run(run_dir)
    cfg = SampleConfig(max_new_tokens=30, temperature=0.9, seed=3, presence_penalty=1.5,
                       frequency_penalty=-2.0)
    assert penalized == "From" + generate(run.model, run.tokenizer, ["From"], cfg)[0] + "\n"
    main(args)
    assert capsys.readouterr().out != penalized


def test_eval_reports_loss_perplexity_and_bits(run_dir, text_file, capsys):
    assert main(["eval", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "validation split" in out and "perplexity" in out and "bits/char" in out
    assert main(["eval", str(run_dir), "--text", str(text_file)]) == 0
    assert str(text_file) in capsys.readouterr().out


def test_info_is_a_short_summary_and_json_on_request(run_dir, capsys):
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    last = [m for m in ckpt.read_metrics(run_dir) if "val_loss" in m][-1]
    assert len(out.splitlines()) <= 6 and "{" not in out
    assert "1 layers" in out and "checkpoint at step 6 of 6" in out
    parameters = sum(p.numel() for p in ckpt.load_run(run_dir).model.parameters())
    assert f"{parameters:,} parameters" in out
    # which val loss this is, and why `eval` differs
    assert (f"val loss {last['val_loss']:.4f} (2 batches; `glassformer eval` scores the whole "
            "split)") in out
    assert main(["info", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["n_layer"] == 1


def test_training_leaves_loss_png_and_plot_overlays_runs(run_dir, tmp_path, capsys):
    import matplotlib.image

    from glassformer.inspect.curves import read_curves

    image = matplotlib.image.imread(run_dir / "loss.png")
    assert image.shape[:2] == (450, 1200)  # two panels: against step and wall-clock
    curves = read_curves(run_dir)
    assert [s for s, _, _ in curves["train"]] == [1, 2, 3, 4, 5, 6]
    assert all(t is not None for _, t, _ in curves["train"])  # the wall-clock panel has them
    assert [s for s, _, _ in curves["val"]] == [0, 6]  # evaluated before the first step too
    assert main(["plot", str(run_dir), str(run_dir), "--out", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").exists()
    assert main(["plot", str(run_dir), str(run_dir)]) == 2
    assert "give --out FILE.png" in capsys.readouterr().err


def test_an_unknown_prompt_character_is_an_error_before_any_output(run_dir, capsys):
    assert main(["sample", str(run_dir), "--prompt", "\u03a9"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: the text has 1 unknown character(s): '\u03a9'")


def test_ctrl_c_before_the_first_checkpoint_offers_no_resume(tmp_path, text_file, monkeypatch,
                                                           capsys):
    from tests.helpers import interrupted_at

    monkeypatch.setattr(loop, "train_step", interrupted_at(loop.train_step, 2))
    out = tmp_path / "run"
    assert main(["train", *TINY, "--text", str(text_file), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "--resume" not in err


def test_resume_extends_a_run(run_dir, text_file, capsys):
    assert main(["train", "--out", str(run_dir), "--resume", "--max-steps", "8"]) == 0
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 8 and "resuming at step 6" in capsys.readouterr().err


@pytest.mark.parametrize("args, expected", [
    (["sample", "{missing}"], "no run directory"),
    (["info", "{missing}"], "no run directory"),
    (["train", *TINY, "--model.n_layers=2"], "did you mean 'n_layer'"),
    (["train", *TINY, "--model.n_embd=30", "--model.n_head=4"], "n_embd must be divisible"),
    (["train", *TINY, "--model.n_layer=0"], "n_layer must be a positive integer"),
    (["train", *TINY, "--train.lr=fast"], "train.lr must be a number"),
    (["train", "--preset", "huge"], "unknown preset 'huge'"),
    (["train", *TINY, "--text", "{missing}"], "does not exist"),
    (["train", *TINY, "--text", "{small}"], "one block needs 33"),
    (["train", *TINY, "--text", "{empty}"], "is empty"),
    (["sample", "{run}", "--temperature", "-1"], "temperature must be >= 0"),
    (["sample", "{run}", "--top-p", "1.5"], "top_p must be in (0, 1]"),
    (["sample", "{run}", "--top-k", "0"], "top_k must be >= 1"),
    (["sample", "{run}", "--presence-penalty", "3"], "presence_penalty must be in [-2, 2]"),
    (["sample", "{run}", "--prompt", "Zebra ж"], "unknown character"),
    (["train", "--out", "{run}", "--resume", "--model.n_layer=3"], "cannot change on --resume"),
    (["train", *FRESH, "--model.n_embd=65536"], "training needs about 1537.2 GiB (estimated"),
    (["train", *FRESH, "--train.batch_size=100000", "--model.block_size=512"],
     "activations of batch 100000 x block 512"),
    (["train", *TINY, "--text", "{text}", "--out", "{file}"],
     "cannot write {file}: it is a file; choose another --out"),
    (["tokenizer", "train", "--vocab-size", "300", "--text", "{text}", "--out", "{file}/t.json"],
     "cannot write {file}/t.json: {file} is a file; choose another --out"),
    (["inspect", "params", "tiny", "--out", "{file}"], "cannot write {file}: it is a file"),
    (["train", *FRESH, "--nproc", "0"], "--nproc must be >= 1, got 0"),
    (["train", *FRESH, "--nproc", "-2"], "--nproc must be >= 1, got -2"),
    (["train", *FRESH, "--train.seed=18446744073709551616"], "seed must be in [0, 2**64)"),
    (["sample", "{run}", "--seed", "18446744073709551616"], "seed must be in [0, 2**64)"),
    (["serve", "{run}", "--port", "70000"], "--port must be in 1..65535, got 70000"),
])
def test_bad_input_is_one_clear_line(args, expected, tmp_path, run_dir, text_file, capsys):
    (tmp_path / "small.txt").write_text("too short for one block")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "a-file").write_text("not a directory")
    paths = {"missing": tmp_path / "nowhere", "small": tmp_path / "small.txt",
             "empty": tmp_path / "empty.txt", "run": run_dir, "text": text_file,
             "file": tmp_path / "a-file"}
    args = [a.format(**paths) for a in args]
    capsys.readouterr()
    assert main(args) == 2
    assert expected.format(**paths) in one_error_line(capsys)


def test_out_in_a_read_only_directory_is_one_clear_line(tmp_path, text_file, monkeypatch,
                                                        capsys):
    """As root a read-only mode does not stop a write, so the refusal is what mkdir raises in a
    read-only directory."""
    out = tmp_path / "read-only" / "run"
    mkdir = pathlib.Path.mkdir

    def refused_for_out(path, *args, **kwargs):
        if path == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return mkdir(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refused_for_out)
    assert main(["train", *TINY, "--text", str(text_file), "--out", str(out)]) == 2
    assert f"cannot write {out}: permission denied; choose another --out" in one_error_line(capsys)


@pytest.mark.parametrize("failure", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                 "allocate memory: you tried to allocate 1125899906842624 bytes."),
    MemoryError(),
])
def test_running_out_of_memory_while_training_is_one_clear_line(failure, tmp_path, text_file,
                                                                monkeypatch, capsys):
    steps = []

    def fails_at_step_5(*args, **kwargs):
        steps.append(1)
        if len(steps) == 5:
            raise failure
        return real_step(*args, **kwargs)

    real_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", fails_at_step_5)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--text", str(text_file), "--out", str(out), "--max-steps", "6",
                 "--save-every", "3"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: out of memory while training")
    assert f"the last checkpoint in {out} is whole" in line and "--resume" in line
    assert ckpt.load_run(out).step == 3


def test_model_text_an_ascii_terminal_cannot_show_prints_as_question_marks(tmp_path):
    """`PYTHONIOENCODING=ascii glassformer sample` on a run whose text is not ASCII: what the
    terminal cannot show prints as "?" (stdout's errors="replace"), not UnicodeEncodeError."""
    text = tmp_path / "accents.txt"
    text.write_text(SONNET.replace("e", "é") * 20, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", *TINY, "--text", str(text), "--out", str(run), "--max-steps", "2"]) == 0
    result = subprocess.run([sys.executable, "-m", "glassformer", "sample", str(run), "--prompt",
                             "thé", "--max-new-tokens", "5", "--seed", "1"], capture_output=True,
                            env=os.environ | {"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"th?") and len(result.stdout) == len("thé") + 5 + 1


def test_corrupt_checkpoint_is_one_clear_line(run_dir, capsys):
    (run_dir / "model.safetensors").write_bytes(b"{}" * 50)
    capsys.readouterr()
    assert main(["sample", str(run_dir)]) == 2
    assert "corrupt" in one_error_line(capsys)


@pytest.mark.parametrize("words", [
    ["--model.position=rope", "--model.norm=rmsnorm", "--model.activation=swiglu",
     "--model.n_kv_head=1", "--model.bias=false", "--model.qk_norm=true"],
    ["--model.position=alibi", "--model.window=8", "--model.moe_experts=2",
     "--model.moe_top_k=1"],
    ["--model.position=t5", "--model.norm_placement=post", "--model.activation=geglu"],
    ["--model.attention=linear", "--model.position=none", "--model.tie_weights=false"],
])
def test_parts_chosen_on_the_command_line_train_save_and_sample(words, tmp_path, text_file,
                                                                capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--text", str(text_file), "--out", str(out),
                 "--max-steps", "4", *words]) == 0
    saved = json.loads((out / "config.json").read_text())["model"]
    for word in words:
        key, value = word[len("--model."):].split("=")
        assert str(saved[key]).lower() == value, key
    capsys.readouterr()
    assert main(["sample", str(out), "--prompt", "From", "--max-new-tokens", "40",
                 "--seed", "1"]) == 0  # 4 + 40 tokens: past the 32-token window, so it slides
    assert len(capsys.readouterr().out) == len("From") + 40 + 1


def test_a_misspelt_work_gets_a_did_you_mean(monkeypatch):
    from glassformer.data import corpora
    from glassformer.errors import GlassformerError
    from glassformer.finetune.run import work_file

    monkeypatch.setattr(corpora, "shakespeare_works", lambda: {"sonnets": "x", "hamlet": "y"})
    with pytest.raises(GlassformerError, match="no work named 'sonnet'; did you mean 'sonnets'"):
        work_file("sonnet")


def test_a_busy_port_is_one_clear_line(run_dir, capsys):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
    line = one_error_line(capsys)
    assert line == (f"error: port {port} on 127.0.0.1 is in use (another `glassformer serve`?); "
                    "choose another with --port")


def test_inspect_memory_prints_no_profiler_lines(tmp_path):
    result = subprocess.run([sys.executable, "-m", "glassformer", "inspect", "memory", "tiny",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "measured peak" in result.stdout
    assert "USDT" not in result.stderr + result.stdout, result.stderr


def test_files_of_presets_and_tokenizers_go_under_runs_not_the_current_directory(
        tmp_path, text_file, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["tokenizer", "train", "--vocab-size", "300", "--text", str(text_file)]) == 0
    assert main(["inspect", "params", "tiny"]) == 0
    assert set(tmp_path.iterdir()) - before == {tmp_path / "runs"}
    assert (tmp_path / "runs/tokenizers/bpe-300.json").is_file()
    assert (tmp_path / "runs/inspect/tiny/params.txt").is_file()
    assert "wrote runs/tokenizers/bpe-300.json" in capsys.readouterr().out


def test_run_files_get_the_permissions_of_any_new_file(run_dir):
    """0666 less the umask (0644 under the usual 022), so a shared group can read a run; the
    atomic writes' temporary files were mkstemp's 0600."""
    umask = os.umask(0)
    os.umask(umask)
    for path in run_dir.iterdir():
        if path.is_file() and not path.name.startswith("."):
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_every_argument_has_help_and_literal_fields_list_their_values():
    import argparse

    from glassformer.cli import build_parser

    missing = []

    def walk(parser, where):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*where, name])
            elif action.help is None:
                missing.append(" ".join([*where, action.dest]))
    walk(build_parser(), [])
    assert missing == []
    train = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    epilog = train.choices["train"].epilog
    assert "norm (layernorm|rmsnorm)" in epilog and "task (lm|mlm|genre|tsv|pairs|chat)" in epilog


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"glassformer {version('glassformer')}\n"
