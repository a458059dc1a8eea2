"""Byte-level BPE and Hugging Face tokenizer files: any text round-trips, long texts encode the
same in parallel pieces, GPT-2-style and BERT WordPiece tokenizer.json files load and agree with
`transformers`, the tokenizer command writes a loadable file, and a BPE run trains and samples
through the CLI (streaming only whole characters)."""

import json
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glassformer.cli import main
from glassformer.config import ModelConfig, SampleConfig
from glassformer.errors import GlassformerError
from glassformer.generate.sampler import generate, stream
from glassformer.model.gpt import GPT
from glassformer.tokenizers import HFTokenizer, bpe, load_tokenizer
from tests.helpers import SONNET, one_error_line

UNICODE = "Ünïcödé: ça va? 日本語, emoji 😀👍🏽, Greek αβγ, RTL שלום, combining e\u0301, nul \0."


@pytest.fixture(scope="module")
def tok():
    return HFTokenizer.train_bpe(SONNET * 3, 400)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_text_round_trips(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_unseen_characters_round_trip_byte_by_byte(tok):
    assert tok.decode(tok.encode(UNICODE)) == UNICODE
    ids = tok.encode("😀")
    assert len(ids) == 4  # never seen in training: its four UTF-8 bytes
    assert [tok.decode([i]) for i in ids] == ["\ufffd"] * 4  # each alone: part of a character


def test_merges_shorten_the_text(tok):
    ids = tok.encode(SONNET)
    assert tok.vocab_size == 400
    assert len(ids) < len(SONNET.encode()) / 2.5  # words the text repeats became single tokens
    assert len(tok.encode(" self")) == len(tok.encode(" thy")) == 1  # its frequent words


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list(" \n\t\r\u3000ab'1.é😀")), max_size=60))
def test_parallel_pieces_give_the_ids_of_the_whole_text(tok, text):
    with mock.patch.object(bpe, "CHUNK", 3):  # cut tiny texts into many pieces
        pieces = bpe._pieces(text)
        assert "".join(pieces) == text
        assert tok.encode(text) == tok.tokenizer.encode(text).ids


def test_a_long_text_is_encoded_in_pieces(tok):
    text = SONNET * 200  # > CHUNK characters
    assert len(bpe._pieces(text)) > 1
    assert tok.encode(text) == tok.tokenizer.encode(text).ids


def test_save_and_load_keep_the_tokenizer(tok, tmp_path):
    tok.save(tmp_path / "tokenizer.json")
    data = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert data["type"] == "hf" and data["tokenizer"]["model"]["type"] == "BPE"
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert isinstance(again, HFTokenizer) and again.vocab_size == tok.vocab_size
    assert again.encode(UNICODE) == tok.encode(UNICODE)
    assert again.to_json() == tok.to_json()


def test_gpt2_style_tokenizer_json_loads_and_agrees_with_transformers(tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    gpt2_style = ByteLevelBPETokenizer()  # GPT-2's pre-tokenizer, decoder and post-processor
    gpt2_style.train_from_iterator([SONNET], vocab_size=350, special_tokens=["<|endoftext|>"])
    path = tmp_path / "tokenizer.json"
    gpt2_style.save(str(path))  # a plain Hugging Face file, no "type"
    assert "type" not in json.loads(path.read_text())
    ours = load_tokenizer(path)
    theirs = PreTrainedTokenizerFast(tokenizer_file=str(path))
    text = "From fairest creatures, " + UNICODE
    assert ours.encode(text) == theirs.encode(text, add_special_tokens=False)
    assert ours.decode(ours.encode(text)) == text
    assert ours.vocab_size == len(theirs) > 256
    assert ours.decode([ours.special("<|endoftext|>")]) == "<|endoftext|>"


def test_bert_wordpiece_tokenizer_json_loads_and_agrees_with_transformers(tmp_path):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator([SONNET], vocab_size=200)
    path = tmp_path / "tokenizer.json"
    wordpiece.save(str(path))
    ours = load_tokenizer(path)
    theirs = BertTokenizerFast(tokenizer_file=str(path))
    text = "Thy tender heir might bear his memory"
    ids = ours.encode(text)
    assert ids == theirs.encode(text, add_special_tokens=False)  # no [CLS] / [SEP] added
    assert ours.special("[CLS]") not in ids and ours.special("[MASK]") == theirs.mask_token_id
    assert ours.decode(ids) == text.lower()  # WordPiece lowercases: no exact round trip


def test_bad_inputs_are_clear_errors(tok, tmp_path):
    with pytest.raises(GlassformerError, match="vocab_size >= 256"):
        HFTokenizer.train_bpe(SONNET, 100)
    with pytest.raises(GlassformerError, match=r"has no \[MASK\] token"):
        tok.special("[MASK]")
    with pytest.raises(GlassformerError, match="token id 400 is outside the vocabulary 0..399"):
        tok.decode([1, 400])
    with pytest.raises(GlassformerError, match="not valid UTF-8: byte 0xe0 at character 5"):
        tok.encode("From\udce0\udca6")  # `--prompt $'From\xe0\xa6'`, as Python receives it
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"type": "hf", "tokenizer": {"model": {"type": "Nope"}}}))
    with pytest.raises(GlassformerError, match="not a tokenizer.json the Hugging Face"):
        load_tokenizer(path)


def test_tokenizer_command_writes_a_loadable_file(text_file, tmp_path, capsys):
    out = tmp_path / "bpe.json"
    assert main(["tokenizer", "train", "--vocab-size", "300", "--text", str(text_file),
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "byte-level BPE of 300 tokens" in said and "characters per token" in said
    loaded = load_tokenizer(out)
    assert loaded.vocab_size == 300 and loaded.decode(loaded.encode(UNICODE)) == UNICODE


def test_tokenizer_command_refuses_a_small_vocabulary(text_file, capsys):
    assert main(["tokenizer", "train", "--vocab-size", "10", "--text", str(text_file)]) == 2
    assert "error: a byte-level BPE needs vocab_size >= 256" in capsys.readouterr().err


def test_bpe_run_trains_and_samples_through_the_cli(text_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--train.device=cpu", "--train.tokenizer=bpe",
                 "--train.bpe_vocab_size=300", "--text", str(text_file), "--out", str(run),
                 "--max-steps", "12", "--train.lr=3e-3"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    tokenizer = load_tokenizer(run / "tokenizer.json")
    assert cfg["train"]["tokenizer"] == "bpe" and cfg["model"]["vocab_size"] == 300
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.vocab_size == 300
    losses = [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text()
              .splitlines() if "train_loss" in line]
    assert losses[-1] < losses[0] - 0.3  # it learned

    capsys.readouterr()
    prompt = "Ünïcödé 😀 From"  # characters the char tokenizer of this text would refuse
    assert main(["sample", str(run), "--prompt", prompt, "--max-new-tokens", "40",
                 "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(prompt) and len(out) > len(prompt) + 40  # tokens are several chars
    assert main(["sample", str(run), "--prompt", "\udce0\udca6"]) == 2  # $'\xe0\xa6'
    assert "not valid UTF-8" in one_error_line(capsys)


def test_stream_shows_only_whole_characters_and_joins_to_generate(tok):
    """An untrained model over a byte-level vocabulary often picks lone bytes of multi-byte
    characters: those are held back until a token completes them (or the end comes)."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2,
                            n_embd=16)).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.02)  # near-uniform: bytes 128-255 come often
    cfg = SampleConfig(max_new_tokens=120, temperature=1.0, seed=5)
    pieces = list(stream(model, tok, "From", cfg))
    assert "".join(pieces) == generate(model, tok, ["From"], cfg)[0]
    assert len(pieces) < 120  # some tokens were held back, as part of a character
    assert not any(piece.endswith("\ufffd") for piece in pieces[:-1])
