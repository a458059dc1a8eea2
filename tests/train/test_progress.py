"""The progress display as a user sees it: `glassformer train` in an 80-column terminal, in a
Jupyter notebook cell, and into a log file."""

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios

import pytest

CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen_lines(raw: str) -> list[str]:
    """What a terminal shows for `raw`: '\\r' moves back to the line's start and later text
    overwrites; escape sequences (erase, cursor moves) take no room."""
    lines = []
    for line in CSI.sub("", raw).split("\n"):
        cells: list[str] = []
        col = 0
        for ch in line:
            if ch == "\r":
                col = 0
                continue
            cells[col:col + 1] = [ch]
            col += 1
        lines.append("".join(cells))
    return lines


def train_command(text_file, out, *flags):
    return [sys.executable, "-m", "glassformer", "train", "--preset", "tiny", "--text",
            str(text_file), "--out", str(out), "--train.device=cpu", "--max-steps", "40", *flags]


def test_training_in_an_80_column_terminal_draws_no_line_wider_than_80(text_file, tmp_path):
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    # a short --out, as a user types it: a long path printed whole may wrap, as in any program
    proc = subprocess.Popen(train_command(text_file, "runs/tiny"), stdin=child, stdout=child,
                            stderr=child, env=env, close_fds=True, cwd=tmp_path)
    os.close(child)
    raw = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    os.close(main)
    assert proc.wait(timeout=600) == 0, raw.decode(errors="replace")
    text = raw.decode()
    assert text.count("\r") > 5  # the bar was redrawn in place, many times
    lines = screen_lines(text)
    widest = max(lines, key=len)
    assert len(widest) <= 80, widest
    assert any("step 0:" in line for line in lines)  # evaluated before the first step
    assert any("done: step 40" in line for line in lines)


def test_into_a_log_file_training_prints_plain_lines(text_file, tmp_path):
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        subprocess.run(train_command(text_file, tmp_path / "run"), stdout=out, stderr=out,
                       check=True, timeout=600)
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    progress = [line for line in text.splitlines() if line.startswith("step ") and "/40 |" in line]
    assert len(progress) == 20 and "elapsed" in progress[-1]  # every 2 steps of 40, not each
    assert re.search(r"^step 0: train loss \d\.\d{4}, val loss", text, re.M)
    assert re.search(r"^step 40: train loss \d\.\d{4}, val loss", text, re.M)


@pytest.mark.slow
def test_in_a_notebook_cell_the_bar_is_redrawn_not_repeated(text_file, tmp_path):
    """Training in a real Jupyter kernel (nbclient): the cell's output is a handful of lines
    once its carriage returns are applied, as the notebook shows it, not a line per step."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = ("from glassformer.config import apply_overrides, preset\n"
            "from glassformer.train.loop import train\n"
            f"cfg = apply_overrides(preset('tiny'), {{'train.text': {str(text_file)!r}, "
            "'train.device': 'cpu', 'train.max_steps': '200', 'train.eval_every': '100'})\n"
            f"train(cfg, {str(tmp_path / 'run')!r})\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": os.getcwd()}}).execute()
    raw = "".join(o.get("text", "") for o in notebook.cells[0].outputs if o.output_type == "stream")
    assert raw.count("\r") > 5, raw  # redrawn in place
    lines = [line for line in screen_lines(raw) if line.strip()]
    assert sum("step" in line and "/200" in line for line in lines) <= 1, lines
    assert len(lines) < 40, lines  # description, 3 evaluations with samples, the last line


def test_the_bar_reads_step_bar_then_numbers_without_a_stray_comma():
    import io

    from glassformer.train.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(10, 0, stream)
    progress.update(10, 1.5, 1000)
    last = screen_lines(stream.getvalue())[-1]  # before close() clears the bar
    progress.close()
    assert re.match(r"step 10/10 \S+ loss 1\.5000 \| [\d.]+k tok/s \[", last), last
