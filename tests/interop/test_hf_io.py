"""Hugging Face directories on disk: the weight files `from_pretrained` reads (safetensors, shards,
pytorch_model.bin unpickled safely), the tokenizer beside them, `glassformer.from_pretrained`,
`glassformer convert` both ways, and one clear error for each thing that cannot be done."""

import json

import pytest
import torch
from safetensors.torch import save_model
from tokenizers import Tokenizer

from hf_pairs import CHARS, TEXT, TOL, hf_gpt2, hf_greedy, load_in_transformers, random_ids

from glassformer.cli import main
from glassformer.config import ModelConfig, RunConfig
from glassformer.errors import GlassformerError
from glassformer.interop.hf import from_pretrained, save_pretrained
from glassformer.model.gpt import GPT
from glassformer.tokenizers import CharTokenizer, HFTokenizer
from glassformer.train.checkpoint import start_run
from tests.helpers import one_error_line, run_python

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bpe():
    return HFTokenizer.train_bpe(TEXT, 300)


@pytest.fixture
def hf_dir(tmp_path, bpe):
    """A GPT-2 directory as `transformers` writes it, with a plain Hugging Face tokenizer.json."""
    hf = hf_gpt2(std=0.5, vocab_size=bpe.vocab_size)
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer.json").write_text(bpe.hf_json(), encoding="utf-8")
    return hf, tmp_path / "hf"


def logits_match(ours, hf):
    ids = random_ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0], hf(input_ids=ids).logits, atol=TOL, rtol=0)


def test_model_and_tokenizer_come_from_the_directory(hf_dir, bpe):
    hf, path = hf_dir
    model, tokenizer = from_pretrained(path)
    assert isinstance(tokenizer, HFTokenizer) and not model.training
    assert tokenizer.encode("From fairest creatures") == bpe.encode("From fairest creatures")
    logits_match(model, hf)


def test_pytorch_model_bin_is_read(hf_dir):
    hf, path = hf_dir
    (path / "model.safetensors").unlink()
    torch.save(hf.state_dict(), path / "pytorch_model.bin")
    model, tokenizer = from_pretrained(path)
    assert tokenizer is not None and model.cfg.vocab_size == hf.config.vocab_size
    logits_match(model, hf)


class Payload:
    """Not a tensor: an unpickler that runs code would build it."""


def test_pytorch_model_bin_with_objects_is_refused_not_run(hf_dir):
    _, path = hf_dir
    (path / "model.safetensors").unlink()
    torch.save({"transformer.wte.weight": torch.zeros(3), "x": Payload()}, path / "pytorch_model.bin")
    with pytest.raises(GlassformerError, match="cannot read the weights .*Unpickling"):
        from_pretrained(path)


def test_sharded_safetensors_are_read(tmp_path):
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "hf" / "model.safetensors").exists()
    logits_match(from_pretrained(tmp_path / "hf")[0], hf)


def test_package_level_from_pretrained_is_imported_lazily():
    code = ("import sys, glassformer\n"
            "assert 'torch' not in sys.modules\n"
            "from glassformer.interop.hf import from_pretrained\n"
            "assert glassformer.from_pretrained is from_pretrained\n"
            "print('ok')")
    result = run_python(code)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


@pytest.mark.parametrize("config,message", [
    (None, "has no config.json"),
    ({"model_type": "mamba"}, "model_type 'mamba' is not supported; glassformer reads gpt2, llama"),
    ({"n_layer": 2}, 'has no "model_type"'),
])
def test_directories_that_are_not_checkpoints_are_refused(tmp_path, config, message):
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(GlassformerError, match=message):
        from_pretrained(tmp_path)


def test_missing_weight_files_are_named(hf_dir):
    _, path = hf_dir
    (path / "model.safetensors").unlink()
    with pytest.raises(GlassformerError, match="has none of model.safetensors, "
                                               "model.safetensors.index.json, pytorch_model.bin"):
        from_pretrained(path)


def test_save_pretrained_refuses_a_model_with_no_hf_form(tmp_path):
    model = GPT(ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8,
                            position="alibi"))
    with pytest.raises(GlassformerError) as err:
        save_pretrained(model, tmp_path / "out")
    assert "a gpt2 checkpoint cannot hold position='alibi' (it would load as 'learned')" in \
        str(err.value)
    assert "a llama checkpoint cannot hold position='alibi' (it would load as 'rope')" in \
        str(err.value)
    assert not (tmp_path / "out").exists()


def test_save_pretrained_refuses_a_char_tokenizer(tmp_path):
    model = GPT(ModelConfig(vocab_size=3, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(GlassformerError, match="CharTokenizer has no Hugging Face tokenizer.json"):
        save_pretrained(model, tmp_path / "out", CharTokenizer(["a", "b", "c"]))


def test_convert_round_trip_through_a_run_directory(hf_dir, bpe, tmp_path, capsys):
    hf, path = hf_dir
    run, back = tmp_path / "run", tmp_path / "back"
    assert main(["convert", str(path), str(run)]) == 0
    assert "wrote run directory" in capsys.readouterr().out
    assert {p.name for p in run.iterdir()} >= {"config.json", "tokenizer.json", "model.safetensors"}
    assert json.loads((run / "config.json").read_text())["model"]["activation"] == "gelu_tanh"

    # The run samples what transformers' greedy generate gives.
    prompt = "From fairest"
    expected = bpe.decode(hf_greedy(hf, torch.tensor(bpe.encode(prompt)), 30))
    assert main(["sample", str(run), "--prompt", prompt, "--temperature", "0",
                 "--max-new-tokens", "30"]) == 0
    assert capsys.readouterr().out == prompt + expected + "\n"

    assert main(["convert", str(run), str(back)]) == 0
    assert "wrote Hugging Face gpt2 directory" in capsys.readouterr().out
    logits_match(from_pretrained(back)[0], hf)
    assert load_in_transformers(back).config.model_type == "gpt2"
    tokenizer = Tokenizer.from_file(str(back / "tokenizer.json"))  # the plain HF format
    assert tokenizer.encode(TEXT).ids == bpe.encode(TEXT)


def test_convert_refuses_a_destination_with_files(hf_dir, tmp_path, capsys):
    _, path = hf_dir
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")
    assert main(["convert", str(path), str(tmp_path / "taken")]) == 2
    assert "is not an empty directory" in one_error_line(capsys)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"


def test_convert_needs_a_tokenizer_for_a_run_directory(hf_dir, tmp_path, capsys):
    _, path = hf_dir
    (path / "tokenizer.json").unlink()
    assert main(["convert", str(path), str(tmp_path / "run")]) == 2
    assert "has no tokenizer.json, and a run directory needs one" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_convert_a_char_run_writes_no_tokenizer(tmp_path, capsys):
    cfg = ModelConfig(vocab_size=CHARS.vocab_size, block_size=32, n_layer=1, n_head=2,
                      n_embd=16, activation="gelu_tanh")
    model = GPT(cfg).eval()
    start_run(tmp_path / "run", RunConfig(model=cfg), CHARS)
    save_model(model, str(tmp_path / "run" / "model.safetensors"), metadata={"step": "3"})
    assert main(["convert", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    assert "no tokenizer.json: the run's CharTokenizer has no Hugging Face form" in \
        capsys.readouterr().out
    assert not (tmp_path / "hf" / "tokenizer.json").exists()
    logits_match(model, load_in_transformers(tmp_path / "hf"))
