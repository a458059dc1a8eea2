"""What one playground server lets its clients ask for, so that a shared machine stays usable:
the longest text, the most tokens per completion, and how many completions run at once."""

from dataclasses import dataclass

from glassformer.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """Caps on what a request may ask for; beyond them the server answers 4xx."""

    max_prompt_chars: int = 8000
    """Characters of a prompt, or of a text to inspect (413 beyond)."""
    max_tokens: int = 1000
    """Tokens one completion may ask for (400 beyond)."""
    max_concurrent: int = 4
    """Completions generating at once; one more is refused with 429 (0 refuses every one)."""
    max_stops: int = 4
    """Stop strings one request may give (400 beyond; OpenAI's cap)."""

    def __post_init__(self):
        for name, least in (("max_prompt_chars", 1), ("max_tokens", 1), ("max_concurrent", 0),
                            ("max_stops", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"Limits.{name} must be an integer >= {least}, got {value!r}")

    @property
    def max_body_bytes(self) -> int:
        """The largest request body read: a prompt of max_prompt_chars written as JSON escapes
        (up to 12 bytes a character), plus room for the other fields."""
        return 12 * self.max_prompt_chars + 65536


class Slots:
    """The completions running, at most `size`. Used from the event loop only (one thread),
    so a plain counter is enough."""

    def __init__(self, size: int):
        self.size = size
        self.running = 0

    def take(self) -> bool:
        """Take a slot if one is free; False when all `size` are taken."""
        if self.running >= self.size:
            return False
        self.running += 1
        return True

    def give_back(self) -> None:
        self.running -= 1
