"""A tiny run directory for the playground tests (random weights, made lively; no training), and
a real server on a free loopback port, in a thread."""

import contextlib
import socket
import string
import threading
import time

import pytest
import torch

from glassformer.config import ModelConfig, RunConfig, TrainConfig, apply_overrides, preset
from glassformer.serve.limits import Limits
from glassformer.tokenizers import CharTokenizer, HFTokenizer
from glassformer.train.checkpoint import load_run, save_checkpoint, start_run
from tests.helpers import SONNET, lively_gpt

LIMITS = Limits(max_prompt_chars=200, max_tokens=100_000, max_concurrent=2, max_stops=2)
# A chat template whose turns end at a newline (chat_run's)
TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A `tiny` GPT (2 layers, 2 heads, block 32) on the characters of SONNET, as a run."""
    tokenizer = CharTokenizer.from_text(SONNET)
    cfg = apply_overrides(preset("tiny"), {"model.vocab_size": str(tokenizer.vocab_size)})
    model = lively_gpt(cfg.model)
    out = tmp_path_factory.mktemp("serve") / "tiny"
    start_run(out, cfg, tokenizer)
    save_checkpoint(out, model, torch.optim.AdamW(model.parameters()), step=0, rng={})
    return out


@pytest.fixture
def run(run_dir):
    return load_run(run_dir)


@pytest.fixture
def serve():
    """serve(app): a context manager that serves `app` on a free loopback port, in a thread, and
    yields its base URL."""
    return _served


@contextlib.contextmanager
def _served(app):
    """Serve `app` with uvicorn on a free loopback port in a thread; yield its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="session")
def chat_run(tmp_path_factory):
    """A tiny GPT whose tokenizer has a chat template whose turns end at a newline."""
    chars = CharTokenizer.from_text(SONNET + string.ascii_letters + ":?.\n").tokens
    tokenizer = HFTokenizer.from_chars(chars)
    tokenizer.chat = {"chat_template": TEMPLATE, "eos_token": "\n"}
    cfg = RunConfig(model=ModelConfig(vocab_size=tokenizer.vocab_size, block_size=128,
                                      n_layer=2, n_head=2, n_embd=32),
                    train=TrainConfig(tokenizer="bpe"))
    model = lively_gpt(cfg.model)
    out = tmp_path_factory.mktemp("chat") / "run"
    start_run(out, cfg, tokenizer)
    save_checkpoint(out, model, torch.optim.AdamW(model.parameters()), step=0, rng={})
    return load_run(out)
