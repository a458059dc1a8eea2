"""`glassformer compare`: every recipe trains on the same data, budget and seed, and the report's
numbers are the ones the runs logged."""

import json
import re

import matplotlib.image

from glassformer.cli import main
from glassformer.config import ModelConfig, preset
from glassformer.inspect.compare import matched_width, parse_recipe
from glassformer.train.checkpoint import read_metrics


def table_rows(report: str, header_start: str) -> dict[str, list[str]]:
    """The rows of the Markdown table whose header starts with `header_start`, by first cell."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def check_logged(rows: dict[str, list[str]], out, steps: int) -> None:
    """Each recipe's row of the main table holds its run's last logged numbers."""
    for name, cells in rows.items():
        metrics = read_metrics(out / name)
        last_eval = [m for m in metrics if "val_loss" in m][-1]
        last_train = [m for m in metrics if "tokens_per_s" in m][-1]
        assert last_eval["step"] == steps
        assert cells[2] == f"{last_eval['train_loss']:.4f}"
        assert cells[3] == f"{last_eval['val_loss']:.4f}"
        assert cells[4] == f"{last_train['tokens_per_s']:,}"
        assert cells[5] == f"{last_eval['elapsed_s']:.1f}"


def compare(name: str, text, out, steps: int = 6) -> str:
    """Run the ready comparison `name` on the tiny preset; return its report."""
    assert main(["compare", name, "--preset", "tiny", "--text", str(text), "--max-steps",
                 str(steps), "--train.device=cpu", "--train.sample_tokens=0",
                 "--out", str(out)]) == 0
    return (out / "report.md").read_text()


def test_report_holds_every_recipe_with_its_logged_numbers(tiny_run, tmp_path, capsys):
    _, text = tiny_run
    out = tmp_path / "cmp"
    assert main(["compare", "--recipe", "learned:model.position=learned",
                 "--recipe", "rope:model.position=rope,train.lr=3e-3", "--preset", "tiny",
                 "--text", str(text), "--max-steps", "12", "--longer", "2",
                 "--train.device=cpu", "--train.sample_tokens=0", "--out", str(out)]) == 0
    assert f"wrote {out / 'report.md'}" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    rows = table_rows(report, "| recipe | overrides")
    assert set(rows) == {"learned", "rope"}
    check_logged(rows, out, 12)
    for name in rows:
        config = json.loads((out / name / "config.json").read_text())
        assert config["train"]["max_steps"] == 12 and config["train"]["seed"] == 1337
    assert rows["rope"][0] == "`model.position=rope` `train.lr=3e-3`"
    evals = table_rows(report, "| step |")
    assert evals["12"] == [rows["learned"][3], rows["rope"][3]]
    longer = table_rows(report, "| recipe | 1x block")
    assert longer["learned"][1] == "n/a"  # no learned rows past block_size
    assert re.fullmatch(r"\d+\.\d{4}", longer["rope"][1])
    for png in ("loss_vs_step.png", "loss_vs_time.png"):
        assert matplotlib.image.imread(out / png).shape[:2] == (450, 700)
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results] == ["learned", "rope"]


def test_ready_comparisons_and_recipe_spelling(tmp_path, capsys):
    assert parse_recipe("a b:model.n_layer=1,train.lr=1e-3") == (
        "a b", {"model.n_layer": "1", "train.lr": "1e-3"})
    assert main(["compare", "warmup", "--recipe", "x:train.lr=1"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["compare", "--recipe", "broken:model.n_layer"]) == 2
    assert "bad recipe" in capsys.readouterr().err
    assert main(["compare", "--recipe", "only:model.n_layer=1"]) == 2
    assert "at least two" in capsys.readouterr().err


def test_scaling_report_trains_with_and_without_the_sqrt_d_scaling(tiny_run, tmp_path):
    _, text = tiny_run
    out = tmp_path / "scaling"
    rows = table_rows(compare("scaling", text, out), "| recipe | overrides")
    assert set(rows) == {"scaled", "unscaled"}
    check_logged(rows, out, 6)
    scales = {name: json.loads((out / name / "config.json").read_text())["model"]["qk_scale"]
              for name in rows}
    assert scales == {"scaled": None, "unscaled": 1.0}
    # Same seed and batches: the losses differ only because the scores were scaled differently.
    losses = {name: [m["train_loss"] for m in read_metrics(out / name) if "lr" in m]
              for name in rows}
    assert losses["scaled"] != losses["unscaled"]


def test_recurrence_report_matches_sizes_and_times_each_length(tiny_run, tmp_path):
    _, text = tiny_run
    out = tmp_path / "recurrence"
    report = compare("recurrence", text, out)
    rows = table_rows(report, "| recipe | overrides")
    assert set(rows) == {"transformer", "lstm"}
    check_logged(rows, out, 6)
    lstm = json.loads((out / "lstm" / "config.json").read_text())["model"]
    assert lstm["family"] == "lstm"
    assert rows["lstm"][0] == f"`model.family=lstm` `model.n_embd={lstm['n_embd']}`"
    counts = {name: int(cells[1].replace(",", "")) for name, cells in rows.items()}
    assert abs(counts["lstm"] - counts["transformer"]) <= 0.1 * counts["transformer"]
    speed = table_rows(report, "| T | batch")
    assert list(speed) == ["64", "128", "256", "512"]
    results = {r["name"]: r for r in json.loads((out / "results.json").read_text())}
    for T, (batch, *rates) in speed.items():
        assert int(batch) * int(T) == 512  # the same tokens per step at every length
        assert all(int(rate.replace(",", "")) > 0 for rate in rates)
        assert rates == [f"{results[name]['throughput'][T]['tokens_per_s']:,}"
                         for name in ("transformer", "lstm")]
    assert matplotlib.image.imread(out / "throughput.png").shape[:2] == (450, 700)


def test_matched_width_is_the_closest_multiple_of_the_heads():
    from glassformer.inspect.params import closed_form_count

    gpt = preset("shakespeare-char").model  # 4 layers, 4 heads, width 192, V = 65
    target = closed_form_count(gpt)
    lstm = ModelConfig(family="lstm", n_layer=4, n_head=4, vocab_size=65)
    width = matched_width(lstm, target)

    def lstm_count(C):  # embedding (tied head) + per layer 4 gates x (W_ih, W_hh, 2 biases)
        return 65 * C + 4 * 4 * (C * C + C * C + 2 * C)
    assert width % 4 == 0
    assert abs(lstm_count(width) - target) <= 0.05 * target
    assert all(abs(lstm_count(w) - target) > abs(lstm_count(width) - target)
               for w in (width - 4, width + 4))


def test_each_recipe_shows_its_progress_bar_while_it_trains(tiny_run, tmp_path):
    """`compare` used to show nothing for minutes per recipe: each one now draws a bar on the
    terminal while its lines go into its log."""
    import io

    from glassformer.config import apply_overrides
    from glassformer.inspect.compare import run_comparison

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    _, text = tiny_run
    base = apply_overrides(preset("tiny"), {"train.text": str(text), "train.device": "cpu",
                                            "train.max_steps": "6", "train.sample_tokens": "0"})
    terminal = Terminal()
    run_comparison({"a": {}, "b": {"train.lr": "3e-3"}}, base, tmp_path / "cmp", log=lambda _: None,
                   bar=terminal)
    assert terminal.getvalue().count("step 6/6") == 2  # one finished bar per recipe
    log = (tmp_path / "cmp" / "a.log").read_text()
    assert "step 6/6 | loss" in log and "\r" not in log
