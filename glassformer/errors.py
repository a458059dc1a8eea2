"""Errors a user can act on: the CLI prints their message as one line, never a traceback."""

import contextlib


class GlassformerError(Exception):
    """A problem with the user's input or files; the message says what to do."""


class ConfigError(GlassformerError, ValueError):
    """An invalid configuration value; the message names the field."""


@contextlib.contextmanager
def writes_to(path):
    """Inside, creating or writing the output `path` (an --out) that fails is one error naming
    it and why: a file where a directory should be, a read-only directory, a full disk."""
    try:
        yield
    except OSError as err:
        if isinstance(err, FileExistsError):  # mkdir(exist_ok=True) found a file of that name
            reason = "it is a file" if err.filename in (None, str(path)) else \
                f"{err.filename} is a file"
        elif isinstance(err, NotADirectoryError):
            reason = "a directory on its path is a file"
        else:
            reason = (err.strerror or str(err)).lower()
        raise GlassformerError(f"cannot write {path}: {reason}; choose another --out") from None


def article(word: str) -> str:
    """'an' before a vowel ("an encdec model"), else 'a' ("a gpt model"), for messages."""
    return "an" if word[0].lower() in "aeiou" else "a"
