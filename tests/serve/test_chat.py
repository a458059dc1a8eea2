"""`glassformer chat` and `glassformer serve` from the command line, and the chat loop itself."""

import io

import pytest
import torch

from glassformer.cli import main
from glassformer.config import ModelConfig, SampleConfig
from glassformer.generate.sampler import generate
from glassformer.model.gpt import GPT
from glassformer.serve import api
from glassformer.serve.chat import chat
from glassformer.tokenizers import HFTokenizer
from tests.helpers import SONNET

CFG = SampleConfig(max_new_tokens=12, temperature=0.9, seed=2)


def test_chat_streams_each_continuation_until_quit(run):
    out = io.StringIO()
    chat(run.model, run.tokenizer, ["From", "", "Zebra", "fair", " /quit ", "never read"], CFG, out)
    expected = [generate(run.model, run.tokenizer, [p], CFG)[0] for p in ("From", "fair")]
    lines = out.getvalue().split("\n")
    assert lines[-1] == ""  # every answer ends with a newline
    answers = "\n".join(lines[:-1])
    error = "error: the text has 1 unknown character(s): 'Z'"
    assert answers.startswith(expected[0] + "\n" + error)
    assert answers.endswith("\n" + expected[1])
    assert answers.count("error:") == 1


def test_a_prompt_that_is_not_utf8_gets_one_error_line_and_the_chat_goes_on():
    """On a byte-level BPE model, which reads any text: bytes that are not UTF-8 (here as
    Python's surrogate escapes) are refused by the tokenizer, in one line."""
    tok = HFTokenizer.train_bpe(SONNET, 300)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2,
                            n_embd=16)).eval()
    out = io.StringIO()
    chat(model, tok, ["From", "\udce0\udca6", "fair"], CFG, out)
    lines = out.getvalue().split("\n")
    assert len(lines) == 4 and lines[-1] == ""  # three answers, each ending with a newline
    assert lines[1].startswith("error: the text is not valid UTF-8: byte 0xe0")
    assert [line.startswith("error:") for line in lines] == [False, True, False, False]


def test_the_chat_command_reads_a_line_that_is_not_utf8_as_one_error(run_dir, run, monkeypatch,
                                                                    capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"From\n\xe0\xa6\nfair\n"),
                                                      encoding="utf-8"))
    assert main(["chat", str(run_dir), "--max-new-tokens", "12", "--temperature", "0.9",
                 "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("error: the text is not valid UTF-8: byte 0xe0 at character 1") == 1
    for prompt in ("From", "fair"):
        assert generate(run.model, run.tokenizer, [prompt], CFG)[0] + "\n" in out


def test_the_chat_command_prints_what_an_ascii_terminal_cannot_show_as_question_marks(
        run_dir, monkeypatch):
    """PYTHONIOENCODING=ascii: the error line quotes the prompt's "é", which has no ASCII byte;
    it prints as "?" (errors="replace" on stdout) instead of ending the chat with
    UnicodeEncodeError."""
    terminal = io.BytesIO()
    stdout = io.TextIOWrapper(terminal, encoding="ascii")
    monkeypatch.setattr("sys.stdout", stdout)
    monkeypatch.setattr("sys.stdin", io.StringIO("fair\u00e9\nFrom\n"))
    assert main(["chat", str(run_dir), "--max-new-tokens", "12", "--seed", "2"]) == 0
    stdout.flush()
    shown = terminal.getvalue().decode("ascii")
    assert "error: the text has 1 unknown character(s): '?'" in shown
    assert shown.count("error:") == 1


def test_chat_ends_at_the_end_of_input(run):
    out = io.StringIO()
    chat(run.model, run.tokenizer, iter(["From"]), CFG, out)
    assert out.getvalue() == generate(run.model, run.tokenizer, ["From"], CFG)[0] + "\n"


def test_the_chat_command_reads_prompts_from_the_terminal(run_dir, run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("From\nfair\n"))
    assert main(["chat", str(run_dir), "--max-new-tokens", "12", "--temperature", "0.9",
                 "--seed", "2"]) == 0
    out = capsys.readouterr().out
    for prompt in ("From", "fair"):
        assert generate(run.model, run.tokenizer, [prompt], CFG)[0] + "\n" in out
    assert "/quit" in out.splitlines()[0]  # the first line says how to end


def free_port() -> int:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def test_the_serve_command_serves_the_run_with_its_limits(run_dir, monkeypatch):
    served = {}

    def fake_run(app, sock):
        served.update(app=app, address=sock.getsockname())
        sock.close()

    monkeypatch.setattr(api, "run_server", fake_run)
    port = free_port()
    assert main(["serve", str(run_dir), "--port", str(port), "--max-tokens", "50",
                 "--max-concurrent", "1", "--max-prompt-chars", "99"]) == 0
    playground = served["app"].state.playground
    assert served["address"] == ("127.0.0.1", port)
    assert (playground.limits.max_tokens, playground.limits.max_concurrent,
            playground.limits.max_prompt_chars) == (50, 1, 99)
    assert playground.name == run_dir.name


def test_serving_beyond_this_machine_warns(run_dir, monkeypatch, capsys):
    monkeypatch.setattr(api, "run_server", lambda app, sock: sock.close())
    assert main(["serve", str(run_dir), "--host", "0.0.0.0", "--port", str(free_port())]) == 0
    assert capsys.readouterr().err.startswith("warning: listening on 0.0.0.0: anyone")


@pytest.mark.parametrize("flag, value", [("--max-concurrent", "-1"), ("--max-tokens", "0"),
                                         ("--max-prompt-chars", "0")])
def test_the_serve_command_refuses_bad_limits_in_one_line(run_dir, flag, value, capsys):
    assert main(["serve", str(run_dir), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Limits.") and "Traceback" not in err


def test_an_instruct_model_keeps_the_conversation(monkeypatch):
    """With a chat template, each line is a turn: replies are the sampler's text for the whole
    conversation so far, up to the end of turn; /system and /reset start it again."""
    import string

    from glassformer.tokenizers import CharTokenizer
    from glassformer.tokenizers.chat_template import conversation
    from tests.serve.conftest import TEMPLATE

    tok = HFTokenizer.from_chars(CharTokenizer.from_text(SONNET + string.ascii_letters +
                                                         ":?.\n").tokens)
    tok.chat = {"chat_template": TEMPLATE, "eos_token": "\n"}
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=1, n_head=2,
                            n_embd=16)).eval()
    cfg = SampleConfig(max_new_tokens=12, temperature=0.9, seed=2)
    out = io.StringIO()
    chat(model, tok, ["Hi?", "And?", "/system Be brief.", "Hi?", "/reset", "Hi?"], cfg, out)
    lines = out.getvalue().split("\n")[:-1]

    def reply(turns):
        prompt = conversation(tok, [{"role": r, "content": c} for r, c in turns])
        stop = SampleConfig(max_new_tokens=12, temperature=0.9, seed=2, stop=("\n",))
        return generate(model, tok, [prompt], stop)[0]
    first = reply([("user", "Hi?")])
    assert lines[0] == first
    assert lines[1] == reply([("user", "Hi?"), ("assistant", first), ("user", "And?")])
    assert lines[2] == "(system message set; the conversation starts again)"
    briefly = reply([("system", "Be brief."), ("user", "Hi?")])
    assert lines[3] == briefly
    assert lines[4] == "(the conversation is forgotten)"
    assert lines[5] == reply([("system", "Be brief."), ("user", "Hi?")])
    assert len(lines) == 6
