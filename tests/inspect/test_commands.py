"""`glassformer inspect ...` on a trained run and on presets: each writes its files into --out and
says where; bad input is one error line."""

import re

import matplotlib.image
import pytest

from glassformer.cli import main
from glassformer.inspect.plots import DPI, panel_inches


def wrote(capsys) -> list[str]:
    out = capsys.readouterr().out
    return re.findall(r"^wrote (.+)$", out, re.M), out


def test_every_inspect_command_on_a_run(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    out = tmp_path / "out"
    commands = {
        "params": ["params.txt"], "memory": ["memory.txt"],
        "shapes": ["shapes.txt"], "attention": ["heads.txt", "attention.png"],
        "positions": ["positions-learned.png"], "next": ["next.txt", "next.png"],
    }
    for command, files in commands.items():
        text = ["--text", "ROMEO. But"] if command in ("shapes", "attention", "next") else []
        assert main(["inspect", command, str(run), "--out", str(out), *text]) == 0
        paths, printed = wrote(capsys)
        assert paths == [str(out / f) for f in files], printed
        for path in paths:
            assert (out / path.split("/")[-1]).stat().st_size > 0
    heads = (out / "heads.txt").read_text().splitlines()
    assert len(heads) == 2 * 2  # tiny: 2 layers x 2 heads
    assert matplotlib.image.imread(out / "attention.png").shape[:2] == (2 * panel_inches(10) * DPI,) * 2
    memory = (out / "memory.txt").read_text()
    assert "measured peak of a real step" in memory
    nxt = (out / "next.txt").read_text().splitlines()
    assert all(label in nxt[1] for label in ("T=1", "T=0.5", "T=1.5", "top-k 5", "top-p 0.9"))
    kept = nxt[-1].split()[1:]
    assert kept[3] == "5"  # top-k 5 keeps five tokens


def test_presets_take_model_options(tmp_path, capsys):
    assert main(["inspect", "params", "tiny", "--model.n_layer=3", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "params.txt").read_text()
    assert "L=3" in table.splitlines()[0]
    assert main(["inspect", "positions", "--scheme", "alibi", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "positions-alibi.png").exists()


def test_bad_input_is_one_error_line(tiny_run, capsys):
    run, _ = tiny_run
    assert main(["inspect", "params", "no-such-thing"]) == 2
    assert "neither a run directory nor a preset" in capsys.readouterr().err
    assert main(["inspect", "shapes", str(run), "--text", "e" * 40]) == 2
    assert "at most 32" in capsys.readouterr().err
    assert main(["inspect", "attention", str(run), "--text", "ROMEO~"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unknown character" in err
    with pytest.raises(SystemExit):
        main(["inspect", "positions", "--scheme", "spiral"])


def test_encoder_decoder_attention_labels_source_and_target(tmp_path, capsys):
    args = ["inspect", "attention", "tiny", "--model.family=encdec", "--train.task=pairs",
            "--text", "twelve", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "--target" in capsys.readouterr().err
    assert main(args + ["--target", "12"]) == 0
    heads = (tmp_path / "heads.txt").read_text().splitlines()
    assert len(heads) == 3 * 2 * 2  # encoder self, decoder self, cross: 2 layers x 2 heads
    cross = [line for line in heads if ".cross head" in line]
    assert len(cross) == 4 and all("top key" in line and "ln S = 1.79" in line for line in cross)
    assert matplotlib.image.imread(tmp_path / "attention.png").shape[:2] == (
        6 * panel_inches(6) * DPI, 2 * panel_inches(6) * DPI)


def test_encoder_decoder_shapes_name_the_source_length(tmp_path, capsys):
    assert main(["inspect", "shapes", "tiny", "--model.family=encdec", "--train.task=pairs",
                 "--text", "twelve", "--target", "12.", "--out", str(tmp_path)]) == 0
    trace = (tmp_path / "shapes.txt").read_text()
    assert "(B, S), (B, T) -> (B, T, V)" in trace  # the whole model
    assert re.search(r"decoder\.blocks\.0\.cross\.hook_pattern +HookPoint +\(B, H, T, S\)", trace)
