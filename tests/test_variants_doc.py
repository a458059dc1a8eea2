"""docs/variants.md, the architecture map, against the code: every config word is a real field
with a value the config accepts, every file exists, every comparison named is one `glassformer
compare` runs and every test named exists."""

import re
import typing
from pathlib import Path

from glassformer.config import Quantization, apply_overrides, preset
from glassformer.inspect.recipes import COMPARISONS

ROOT = Path(__file__).resolve().parents[1]


def rows() -> list[dict]:
    """The map's table rows as {variant, changes, matters, word, file, shown}."""
    text = (ROOT / "docs" / "variants.md").read_text(encoding="utf-8")
    found = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("variant", "---"):
            found.append(dict(zip(("variant", "changes", "matters", "word", "file", "shown"),
                                  cells)))
    return found


def code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"expected one `code` span, got {cell!r}"
    return match.group(1)


def test_the_map_covers_the_courses_variants():
    names = {row["variant"] for row in rows()}
    for expected in ("learned table", "sinusoidal", "RoPE", "ALiBi", "T5 relative bias",
                     "multi-head (MHA)", "grouped-query (GQA)", "multi-query (MQA)",
                     "sliding window", "linear attention", "ReLU", "GELU", "SwiGLU", "GeGLU",
                     "mixture of experts", "LayerNorm", "RMSNorm", "pre-norm", "post-norm",
                     "GPT (decoder-only)", "BERT (encoder-only)", "encoder-decoder", "LoRA",
                     "int8 decoding"):
        assert expected in names, expected


def test_every_config_word_is_a_field_and_a_value_the_config_accepts():
    base = preset("tiny")
    for row in rows():
        word = code(row["word"])
        if word.startswith("sample --quantize "):
            assert word.split()[-1] in typing.get_args(Quantization), word
            continue
        key, _, value = word.partition("=")
        changes = {key: value}
        if key == "model.family" and value in ("bert", "encdec"):  # each family its own task
            changes["train.task"] = {"bert": "mlm", "encdec": "pairs"}[value]
        if key == "train.lora_rank":
            changes["train.init_from"] = "a-run"
        cfg = apply_overrides(base, changes)  # unknown fields and bad values raise
        section, name = key.split(".")
        assert str(getattr(getattr(cfg, section), name)).lower() == value.lower(), word


def test_every_file_and_every_comparison_or_test_named_exists():
    for row in rows():
        assert (ROOT / code(row["file"])).is_file(), row["file"]
        shown = code(row["shown"])
        if shown.startswith("glassformer compare "):
            assert shown.split()[-1] in COMPARISONS, shown
        elif shown.startswith("glassformer finetune "):
            assert "--compare" in shown
        else:
            assert (ROOT / shown).is_file(), shown
