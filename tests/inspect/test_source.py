"""What an inspect command reads: a text's ids and tokens within the window, the texts of each
family in the order its forward takes them, and the folder its files go to."""

from pathlib import Path

import pytest

from glassformer.errors import GlassformerError
from glassformer.inspect.source import Source, load_source


def test_tokens_are_the_ids_and_their_strings_within_the_window():
    source = load_source("tiny", device="meta")
    ids, tokens = source.tokens("abca")  # a preset: a char tokenizer built from the text
    assert tokens == ["a", "b", "c", "a"]
    assert ids[0] == ids[3] and len(set(ids)) == 3
    assert len(source.tokens("e" * 32)[0]) == 32
    with pytest.raises(GlassformerError, match="33 tokens but the model reads at most 32"):
        source.tokens("e" * 33)


def test_a_decoder_reads_one_text_and_an_encoder_decoder_two():
    gpt = load_source("tiny", device="meta")
    assert gpt.texts("abc", target="xy") == [gpt.tokens("abc")]
    encdec = load_source("tiny", {"model.family": "encdec", "train.task": "pairs"}, "meta")
    src, tgt = encdec.texts("twelve", target="12")
    assert src[1] == list("twelve") and tgt[1] == ["1", "2"]
    with pytest.raises(GlassformerError, match="add --target TEXT"):
        encdec.texts("twelve")


def test_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preset = load_source("tiny", device="meta")
    assert preset.output_dir() == Path("runs", "inspect", "tiny")  # beside the runs
    assert (tmp_path / "runs" / "inspect" / "tiny").is_dir()
    run = Source(preset.cfg, preset.model, None, "run", tmp_path / "run")
    assert run.output_dir() == tmp_path / "run" / "inspect"
    assert run.output_dir(tmp_path / "mine") == tmp_path / "mine"
    assert (tmp_path / "run" / "inspect").is_dir() and (tmp_path / "mine").is_dir()
