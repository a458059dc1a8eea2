"""Two-column TSV files (one `first<TAB>second` line per example), as the tasks read them:
source<TAB>target pairs (data/seq2seq.py) and text<TAB>label examples (data/labelled.py).

Each line holds exactly one tab; blank lines are skipped; "\\r\\n" line ends are read as "\\n".
A problem is one error naming the file, the line and what to change.
"""

from __future__ import annotations

from pathlib import Path

from glassformer.errors import GlassformerError


def read_tsv(path, columns: tuple[str, str], what: str) -> list[tuple[int, str, str]]:
    """(line number, first, second) of each line of the UTF-8 file `path`, whose two columns
    are called `columns` (e.g. ("text", "label")) in messages about the `what` file (e.g.
    "pairs")."""
    form = f"{columns[0]}<TAB>{columns[1]}"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise GlassformerError(f"{what} file {path} does not exist") from None
    except OSError as err:
        raise GlassformerError(f"cannot read {what} file {path} ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise GlassformerError(f"{path}:{line}: not UTF-8 (byte {err.start}); save the file "
                               "as UTF-8") from None
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            tabs = len(parts) - 1
            fix = ("replace the tabs inside it by spaces" if tabs else "separate the two "
                   "columns with a tab")
            raise GlassformerError(f"{path}:{number}: expected '{form}' (one tab), got {tabs} "
                                   f"tabs in {line[:60]!r}; {fix}")
        for name, value in zip(columns, parts):
            if not value.strip():
                raise GlassformerError(f"{path}:{number}: expected '{form}', but the {name} is "
                                       f"empty in {line[:60]!r}; fill it in or remove the line")
        rows.append((number, parts[0], parts[1]))
    if not rows:
        raise GlassformerError(f"{path} holds no {form} lines")
    return rows
