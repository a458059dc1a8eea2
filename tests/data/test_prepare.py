"""`glassformer data prepare`: shards that hold each document's ids as the tokenizer gives them,
a validation split of whole documents, the same shards after a kill -9 and a rerun, and no
dataset a reader can open before it is whole."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from glassformer.cli import main
from glassformer.data.prepare import is_val, prepare
from glassformer.data.shards import PreparedData
from glassformer.errors import GlassformerError
from glassformer.tokenizers import CharTokenizer, HFTokenizer
from tests.data.corpus import write_corpus
from tests.helpers import one_error_line

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    return folder, write_corpus(folder)


def tokenizer_file(tmp_path, tokenizer) -> Path:
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    return path


def expected_split(docs, tokenizer, val_fraction, separator) -> dict[str, np.ndarray]:
    """Each split as the concatenation of its documents' ids, each followed by the separator's."""
    sep = tokenizer.encode(separator) if separator else []
    out = {"train": [], "val": []}
    for key, text in docs:
        out["val" if is_val(key, val_fraction) else "train"] += tokenizer.encode(text) + sep
    return {name: np.array(ids) for name, ids in out.items()}


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_shards_hold_each_documents_ids_and_val_holds_whole_documents(corpus, tmp_path, kind):
    folder, docs = corpus
    text = "".join(t for _, t in docs)
    tokenizer = (CharTokenizer.from_text(text) if kind == "char"
                 else HFTokenizer.train_bpe(text, 300))
    # Small groups and shards: several of each, and documents that cross shards.
    manifest = prepare([folder], str(tokenizer_file(tmp_path, tokenizer)), tmp_path / "ds",
                       val_fraction=0.3, field="body", workers=2, shard_tokens=500,
                       group_bytes=2000, progress=False)
    data = PreparedData(tmp_path / "ds")
    expected = expected_split(docs, tokenizer, 0.3, "\n\n")
    for name in ("train", "val"):
        split = getattr(data, name)
        np.testing.assert_array_equal(split[0:len(split)], expected[name])
        assert manifest["splits"][name]["tokens"] == len(expected[name])
        assert len(manifest["splits"][name]["shards"]) > 1
        assert all(s["tokens"] <= 500 for s in manifest["splits"][name]["shards"])
    n_val = sum(is_val(key, 0.3) for key, _ in docs)
    assert 0 < n_val < len(docs)
    assert manifest["splits"]["val"]["documents"] == n_val
    assert manifest["splits"]["train"]["documents"] == len(docs) - n_val
    assert manifest["dtype"] == "uint16"
    assert data.tokenizer.to_json() == tokenizer.to_json()


def test_a_vocabulary_past_uint16_gets_uint32_shards(tmp_path):
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c < 0xE000]
    tokenizer = CharTokenizer(chars)
    (tmp_path / "src").mkdir()
    text = chars[-1] + chars[0] + chars[66_000]
    (tmp_path / "src" / "a.txt").write_text(text, encoding="utf-8")
    manifest = prepare([tmp_path / "src"], str(tokenizer_file(tmp_path, tokenizer)),
                       tmp_path / "ds", val_fraction=0, separator="", progress=False)
    assert manifest["dtype"] == "uint32"
    train = PreparedData(tmp_path / "ds").train
    assert train[0:3].tolist() == tokenizer.encode(text) == [len(chars) - 1, 0, 66_000]


def shard_hashes(folder: Path) -> dict[str, str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {s["file"]: s["sha256"] for split in manifest["splits"].values()
            for s in split["shards"]}


def test_a_killed_prepare_reruns_to_the_same_shards_and_is_never_read_half_written(tmp_path):
    src = tmp_path / "corpus"
    src.mkdir()
    docs = []
    for i in range(4):  # 4 x 13 files: 52 groups of one file
        part = src / f"part{i}"
        part.mkdir()
        docs += write_corpus(part, n_docs=40, seed=i)
    tokenizer = CharTokenizer.from_text("".join(t for _, t in docs))
    tok = tokenizer_file(tmp_path, tokenizer)
    settings = dict(val_fraction=0.2, field="body", workers=2, shard_tokens=100, group_bytes=1,
                    progress=False)
    whole = prepare([src], str(tok), tmp_path / "whole", **settings)

    killed = tmp_path / "killed"
    code = (f"from glassformer.data.prepare import prepare\n"
            f"prepare([{str(src)!r}], {str(tok)!r}, {str(killed)!r}, **{settings!r})")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True,
                             env=os.environ | {"PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while len(list((killed / "groups").glob("0*.json"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGKILL)  # the launcher and its workers, at once
    child.wait()
    records = list((killed / "groups").glob("0*.json"))
    assert 5 <= len(records) < 52 and not (killed / "manifest.json").exists()

    with pytest.raises(GlassformerError, match="not a prepared dataset"):
        PreparedData(killed)  # nothing reads a dataset before its manifest
    for shard in killed.glob("*.bin"):  # what a kill leaves visible is whole
        assert shard.read_bytes() == (tmp_path / "whole" / shard.name).read_bytes()

    again = prepare([src], str(tok), killed, **settings)
    assert again == whole
    assert shard_hashes(killed) == shard_hashes(tmp_path / "whole")
    assert not list(killed.glob(".*.tmp"))
    for name, sha in shard_hashes(killed).items():
        assert hashlib.sha256((killed / name).read_bytes()).hexdigest() == sha


def test_a_rerun_with_other_settings_is_refused(corpus, tmp_path):
    folder, docs = corpus
    tok = tokenizer_file(tmp_path, CharTokenizer.from_text("".join(t for _, t in docs)))
    prepare([folder], str(tok), tmp_path / "ds", field="body", progress=False)
    with pytest.raises(GlassformerError, match="other sources or settings"):
        prepare([folder], str(tok), tmp_path / "ds", field="body", val_fraction=0.5,
                progress=False)


def test_the_command_prepares_and_names_what_is_wrong(corpus, tmp_path, capsys):
    folder, docs = corpus
    tok = tokenizer_file(tmp_path, CharTokenizer.from_text("".join(t for _, t in docs)))
    assert main(["data", "prepare", str(folder), "--tokenizer", str(tok),
                 "--out", str(tmp_path / "x")]) == 2  # the JSONL text is in "body"
    assert "a.jsonl:1 has no text field 'text'; name the field" in one_error_line(capsys)
    (folder / "books" / "latin1.txt").write_bytes("café".encode("latin-1"))
    assert main(["data", "prepare", str(folder), "--tokenizer", str(tok), "--field", "body",
                 "--out", str(tmp_path / "y"), "--workers", "1"]) == 2
    assert "latin1.txt is not valid UTF-8" in one_error_line(capsys)
    (folder / "books" / "latin1.txt").unlink()  # other sources: a new --out
    assert main(["data", "prepare", str(folder), "--tokenizer", str(tok), "--field", "body",
                 "--out", str(tmp_path / "z"), "--workers", "1"]) == 0
    assert "train" in capsys.readouterr().out
    assert PreparedData(tmp_path / "z").manifest["splits"]["val"]["documents"] > 0


def test_a_char_tokenizer_is_fitted_to_every_character_of_the_corpus(corpus, tmp_path):
    folder, docs = corpus
    manifest = prepare([folder], "char", tmp_path / "ds", val_fraction=0.3, field="body",
                       workers=2, group_bytes=2000, progress=False)
    fitted = CharTokenizer.from_text("".join(t for _, t in docs))
    data = PreparedData(tmp_path / "ds")
    assert data.tokenizer.to_json() == fitted.to_json()
    assert manifest["fit"] == {"kind": "char"}
    for name, ids in expected_split(docs, fitted, 0.3, "\n\n").items():
        split = getattr(data, name)
        np.testing.assert_array_equal(split[0:len(split)], ids)


def test_a_bpe_is_fitted_to_an_equal_share_of_each_file_and_reused_by_a_rerun(corpus, tmp_path):
    folder, docs = corpus
    settings = dict(field="body", workers=1, group_bytes=1, progress=False, vocab_size=300,
                    bpe_sample=1200)
    manifest = prepare([folder], "bpe", tmp_path / "ds", **settings)
    by_file = {}  # the documents of each file, in order
    for key, text in docs:
        by_file.setdefault(key.split(":")[0], []).append(text)
    share, sample = 1200 // len(by_file), []
    for texts in by_file.values():
        left = share
        for text in texts:
            sample.append(text[:left])
            left -= len(text)
            if left <= 0:
                break
    fitted = HFTokenizer.train_bpe("\n\n".join(sample), 300)
    assert PreparedData(tmp_path / "ds").tokenizer.to_json() == fitted.to_json()

    # Interrupted after a few groups: the rerun continues with the saved tokenizer.
    (tmp_path / "ds" / "manifest.json").unlink()
    for record in sorted((tmp_path / "ds" / "groups").glob("0*.json"))[3:]:
        record.unlink()
    assert prepare([folder], "bpe", tmp_path / "ds", **settings) == manifest
    with pytest.raises(GlassformerError, match="other sources or settings"):
        prepare([folder], "bpe", tmp_path / "ds", **settings | {"vocab_size": 400})


def test_a_second_prepare_on_the_same_folder_is_refused(corpus, tmp_path):
    from glassformer.data.prepare import locked

    folder, _ = corpus
    with locked(tmp_path / "ds"):
        with pytest.raises(GlassformerError, match="another `glassformer data prepare` is "
                                                   "writing"):
            prepare([folder], "char", tmp_path / "ds", field="body", progress=False)
    prepare([folder], "char", tmp_path / "ds", field="body", progress=False)  # released
