"""Small corpora the data tests write themselves: mixed Unicode, in text, gzip'd text, JSONL and
gzip'd JSONL files, with the documents they hold in order."""

import gzip
import json
import random
from pathlib import Path

ALPHABET = ("abcdefghij klmnop ÀÉîõü ßø Привет мир 你好世界 ελληνικά עברית ☃★ 🙂🚀 \n"
            "0123456789 .,;:!?'\"-")


def document(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(length))


def write_corpus(folder: Path, n_docs: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """Files under `folder` (a text file each for the first docs, then a gzip'd text, a JSONL and
    a gzip'd JSONL file); return (key, text) of each document in prepare's order, the key as
    prepare names it when given `folder` (names start with the folder's name)."""
    rng = random.Random(seed)
    texts = [document(rng, rng.randint(20, 400)) for _ in range(n_docs)]
    q = n_docs // 4
    root = folder.name
    docs = []
    for i in range(q):
        name = f"books/{i:03d}.txt"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(texts[i], encoding="utf-8")
        docs.append((f"{root}/{name}", texts[i]))
    with gzip.open(folder / "books" / "zipped.txt.gz", "wt", encoding="utf-8") as f:
        f.write(texts[q])
    docs.append((f"{root}/books/zipped.txt.gz", texts[q]))
    (folder / "dump").mkdir(exist_ok=True)
    with open(folder / "dump" / "a.jsonl", "w", encoding="utf-8") as f:
        for j, text in enumerate(texts[q + 1:2 * q + 1]):
            f.write(json.dumps({"id": j, "body": text}, ensure_ascii=j % 2 == 0) + "\n")
            docs.append((f"{root}/dump/a.jsonl:{j + 1}", text))
    with gzip.open(folder / "dump" / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        for j, text in enumerate(texts[2 * q + 1:]):
            f.write(json.dumps({"body": text}) + "\n")
            docs.append((f"{root}/dump/b.jsonl.gz:{j + 1}", text))
    return docs
