"""`glassformer data prepare` against Hugging Face `datasets` on the same generated corpus.

    python bench/prepare.py --gigabytes 0.2 [--tokenizer bpe|char] [--workers 2] [--dir DIR]
                            [--keep]

Generates a corpus of about --gigabytes of JSONL files (8 MiB each, one document of 2-20 KB of
mixed-script text per line) and a tokenizer both contenders use: `bpe` (default) a byte-level BPE
of 4,096 tokens trained on the corpus's first 4 MiB; `char` the corpus's alphabet. Then, each in
a fresh process and in one run:
  ours      prepare(files, tokenizer, --workers processes): token shards and a manifest
  datasets  load_dataset("json", files) then .map(batched=True, num_proc=--workers) into Arrow
            files of uint16 ids: bpe through a transformers.PreTrainedTokenizerFast over the
            same tokenizer.json; char through a dict from character to id, as nanoGPT's
            character-level preparation does (the `tokenizers` form of a char vocabulary runs
            its regex split per character, at well under 1 MB/s here)
  train     a short training run (`tiny`-sized GPT, block 128, batch 16) on our dataset
and prints MB/s of input text and the peak resident memory (MiB) of each process tree (the
launcher and its workers, summed, sampled every 50 ms), and their ratios. The token counts of
the two contenders must agree (no separator between documents here), which the script checks.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
FILE_BYTES = 8 << 20
SCRIPTS = ["abcdefghijklmnopqrstuvwxyz", "àáâãäåæçèéêëìíîïñòóôõöøùúûüýß",
           "абвгдежзийклмнопрстуфхцчшщыэюя", "αβγδεζηθικλμνξοπρστυφχψω",
           "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年", "אבגדהוזחטיכלמנסעפצקרשת",
           "🙂🚀★☃♥✓"]


def words(rng, n: int = 20_000) -> np.ndarray:
    """`n` made-up words, each from one script, 1-10 characters (CJK and emoji 1-3)."""
    out = []
    for _ in range(n):
        script = SCRIPTS[rng.choice(len(SCRIPTS), p=[.5, .12, .12, .08, .1, .05, .03])]
        length = rng.integers(1, 4) if ord(script[0]) > 0x3000 else rng.integers(1, 11)
        out.append("".join(script[i] for i in rng.integers(0, len(script), length)))
    return np.array(out, dtype=object)


def generate(folder: Path, gigabytes: float, seed: int = 0) -> list[Path]:
    """JSONL files of about FILE_BYTES each, {"text": ...} per line, about `gigabytes` in all."""
    rng = np.random.default_rng(seed)
    vocab = words(rng)
    weights = 1 / np.arange(1, len(vocab) + 1)  # Zipf: a few words common, most rare
    weights /= weights.sum()
    files, total = [], 0
    while total < gigabytes * 1e9:
        path = folder / f"part-{len(files):05d}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            written = 0
            while written < FILE_BYTES:
                picks = vocab[rng.choice(len(vocab), rng.integers(400, 4000), p=weights)]
                lines = [" ".join(picks[i:i + 12]) for i in range(0, len(picks), 12)]
                line = json.dumps({"text": ".\n".join(lines)}, ensure_ascii=False) + "\n"
                written += f.write(line)
        files.append(path)
        total += path.stat().st_size
    return files


def measured(code: str) -> dict:
    """Run `code` in a fresh Python; return its seconds, the peak of the summed RSS of it and
    its children (MiB), and the JSON object it printed last."""
    process = psutil.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                           env=os.environ | {"PYTHONPATH": str(ROOT)}, text=True)
    peak, started = 0.0, time.perf_counter()

    def sample():
        nonlocal peak
        while process.poll() is None:
            try:
                tree = [process, *process.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.05)
    sampler = threading.Thread(target=sample)
    sampler.start()
    out = process.communicate()[0]
    sampler.join()
    if process.returncode:
        raise SystemExit(f"failed: {code}")
    return {"seconds": time.perf_counter() - started, "peak_rss": peak,
            **json.loads(out.strip().splitlines()[-1])}


OURS = """
import json
from glassformer.data.prepare import prepare
m = prepare({files!r}, {tok!r}, {out!r}, val_fraction=0.01, workers={workers}, separator="",
            progress=False)
print(json.dumps({{"tokens": sum(s["tokens"] for s in m["splits"].values())}}))
"""

HF = """
import json
import pyarrow.compute as pc
from datasets import Features, Sequence, Value, load_dataset
{encode}
ds = load_dataset("json", data_files={files!r}, split="train", cache_dir={cache!r})
ids = ds.map(lambda b: {{"input_ids": encode(b["text"])}}, batched=True, num_proc={workers},
             remove_columns=["text"], features=Features({{"input_ids": Sequence(Value("uint16"))}}))
print(json.dumps({{"tokens": pc.sum(pc.list_value_length(ids.data.column("input_ids"))).as_py()}}))
"""
HF_ENCODE = {
    "bpe": """
from transformers import PreTrainedTokenizerFast
tok = PreTrainedTokenizerFast(tokenizer_file={hf_tok!r})
encode = lambda texts: tok(texts, add_special_tokens=False)["input_ids"]
""",
    "char": """
ids_of = {{c: i for i, c in enumerate(json.load(open({tok!r}, encoding="utf-8"))["chars"])}}
encode = lambda texts: [[ids_of[c] for c in text] for text in texts]
"""}

TRAIN = """
import json
from glassformer.config import apply_overrides, preset
from glassformer.train.loop import train
cfg = apply_overrides(preset("tiny"), {{"train.data": {out!r}, "train.device": "cpu",
    "model.block_size": "128", "train.batch_size": "16", "train.max_steps": "50",
    "train.eval_every": "25", "train.eval_batches": "10", "train.sample_tokens": "0"}})
print(json.dumps({{"val_loss": train(cfg, {run!r})["val_loss"]}}))
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gigabytes", type=float, default=0.2)
    parser.add_argument("--tokenizer", choices=["bpe", "char"], default="bpe")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", help="working folder (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path):
    from glassformer.tokenizers import CharTokenizer, HFTokenizer

    (work / "corpus").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    files = [str(f) for f in generate(work / "corpus", args.gigabytes)]
    mb = sum(Path(f).stat().st_size for f in files) / 1e6
    print(f"corpus: {len(files)} JSONL files, {mb:,.0f} MB, generated in "
          f"{time.perf_counter() - started:.0f} s; {args.workers} workers, {os.cpu_count()} CPUs")
    if args.tokenizer == "bpe":
        with open(files[0], encoding="utf-8") as f:
            sample = "".join(json.loads(line)["text"] for line in f.readlines()[:400])[:4 << 20]
        tokenizer = HFTokenizer.train_bpe(sample, 4096)
        (work / "hf-tokenizer.json").write_text(tokenizer.hf_json(), encoding="utf-8")
    else:
        tokenizer = CharTokenizer.from_text("".join(SCRIPTS) + " .\n")  # what generate() writes
    tokenizer.save(work / "tokenizer.json")
    print(f"tokenizer: {args.tokenizer}, {tokenizer.vocab_size:,} tokens")

    ours = measured(OURS.format(files=files, tok=str(work / "tokenizer.json"),
                                out=str(work / "ours"), workers=args.workers))
    encode = HF_ENCODE[args.tokenizer].format(hf_tok=str(work / "hf-tokenizer.json"),
                                              tok=str(work / "tokenizer.json"))
    hf = measured(HF.format(encode=encode, files=files, cache=str(work / "hf-cache"),
                            workers=args.workers))
    if ours["tokens"] != hf["tokens"]:
        raise SystemExit(f"the contenders disagree: {ours['tokens']:,} vs {hf['tokens']:,} tokens")
    shutil.rmtree(work / "hf-cache")
    trained = measured(TRAIN.format(out=str(work / "ours"), run=str(work / "run")))

    print(f"{ours['tokens']:,} tokens (both)")
    print(f"{'':24}{'MB/s':>8}{'peak RSS MiB':>14}{'seconds':>9}")
    for name, r in (("glassformer prepare", ours), ("datasets load+map", hf)):
        print(f"{name:24}{mb / r['seconds']:8.1f}{r['peak_rss']:14.0f}{r['seconds']:9.1f}")
    print(f"ratio (ours / datasets): {hf['seconds'] / ours['seconds']:.2f}x the throughput, "
          f"{ours['peak_rss'] / hf['peak_rss']:.2f}x the peak RSS")
    print(f"training on the prepared {mb:,.0f} MB (50 steps, batch 16 x 128): peak RSS "
          f"{trained['peak_rss']:.0f} MiB, {trained['seconds']:.0f} s, val loss "
          f"{trained['val_loss']:.3f}")


if __name__ == "__main__":
    main()
