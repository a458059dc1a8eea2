"""`glassformer inspect lens|attribution|patch|detect` on a trained run write what the library
functions compute; `glassformer train --train.track_heads` logs and draws the head tracking."""

import io
import json
import re

import matplotlib.image
import torch

from glassformer.cli import main
from glassformer.inspect.attribution import direct_logit_attribution
from glassformer.inspect.lens import logit_lens
from glassformer.train.checkpoint import load_run
from tests.helpers import one_error_line


def wrote(capsys):
    out = capsys.readouterr().out
    return re.findall(r"^wrote (.+)$", out, re.M), out


def test_the_hook_commands_on_a_run(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    out = tmp_path / "out"
    text = ["--text", "ROMEO. But"]
    commands = {
        "lens": (text + ["--token", "s"], ["lens.txt", "lens.png"]),
        "attribution": (text + ["--token", "s", "--other", "t"],
                        ["attribution.txt", "attribution.png"]),
        "patch": (["--text", "ROMEO. But", "--corrupted", "JULIE. But", "--token", "s",
                   "--other", "t"], ["patch.txt", "patch-residual.png", "patch-heads.png"]),
        "detect": (["--repeat", "8"], ["detect-repeated.png", "detect.txt"]),
    }
    for command, (options, files) in commands.items():
        assert main(["inspect", command, str(run), "--out", str(out), *options]) == 0
        paths, printed = wrote(capsys)
        assert paths == [str(out / f) for f in files], printed
        for path in paths:
            assert (out / path.split("/")[-1]).stat().st_size > 0
    loaded = load_run(run)
    ids = torch.tensor([loaded.tokenizer.encode("ROMEO. But")])
    s, t = loaded.tokenizer.encode("st")
    lens = (out / "lens.txt").read_text().splitlines()
    probs = logit_lens(loaded.model, ids)[:, -1].softmax(-1)  # (L + 1, V)
    assert len(lens) == 1 + 3 and lens[1].lstrip().startswith("embed:")
    assert lens[-1].endswith(f"p {probs[-1, s]:.3f}")
    parts = direct_logit_attribution(loaded.model, ids, target=s, other=t)
    attribution = (out / "attribution.txt").read_text()
    assert f"L1H0: {parts['L1H0']:+.4f}" in attribution
    with torch.no_grad():
        logits = loaded.model(ids)[0][0, -1]
    assert f"sum: {logits[s] - logits[t]:+.4f}" in attribution
    assert matplotlib.image.imread(out / "patch-heads.png").shape[2] in (3, 4)


def test_patching_prompts_of_two_lengths_is_one_error_line(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    code = main(["inspect", "patch", str(run), "--text", "ROMEO.", "--corrupted", "JULIET.",
                 "--token", "s", "--other", "t", "--out", str(tmp_path)])
    assert code != 0 and "same length" in one_error_line(capsys)


def test_track_heads_logs_at_each_evaluation_and_draws_them(play_text, tiny_run, tmp_path,
                                                            capsys):
    text = tmp_path / "play.txt"
    text.write_text(play_text, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--text", str(text), "--out", str(run),
                 "--train.track_heads=true", "--train.sample_tokens=0",
                 "--train.device=cpu"]) == 0
    paths, _ = wrote(capsys)
    assert paths == [str(run / "heads.png")]
    evals = [r for r in map(json.loads, io.StringIO((run / "metrics.jsonl").read_text()))
             if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 10, 20]  # before training, then every 10 steps
    assert all(0 <= r["induction_score"] <= 1 and r["in_context_loss"] > 0 for r in evals)
    both = tmp_path / "both.png"
    assert main(["plot", "--heads", str(run), str(tiny_run[0]), "--out", str(both)]) != 0
    assert "has no head tracking" in one_error_line(capsys)  # tiny_run trained without it
    assert main(["plot", "--heads", str(run), "--out", str(both)]) == 0
    assert wrote(capsys)[0] == [str(both)]
    assert matplotlib.image.imread(both).shape[:2] == (600, 700)  # 7 x 6 inches at 100 dpi
