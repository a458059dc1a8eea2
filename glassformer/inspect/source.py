"""What an inspect command looks at: a trained run directory, or a preset's fresh model.

A preset has no tokenizer of its own; the text a command is given is then encoded by a
character tokenizer built from that text, whose ids fit any vocabulary at least as large.
"""

from dataclasses import dataclass
from pathlib import Path

from glassformer import config as C
from glassformer.errors import GlassformerError


@dataclass
class Source:
    """A model to inspect: its config, the model (eval mode), its tokenizer (None for a preset)
    and a name for titles."""

    cfg: C.RunConfig
    model: object
    tokenizer: object
    name: str
    run_dir: Path | None = None

    @property
    def trained(self) -> bool:
        return self.run_dir is not None

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with the run's tokenizer or (a preset) one built from `text`."""
        if not text:
            raise GlassformerError("the text is empty; pass --text with at least one token")
        return self.tokenizer_for(text).encode(text)

    def tokenizer_for(self, text: str):
        if self.tokenizer is not None:
            return self.tokenizer
        from glassformer.tokenizers import CharTokenizer

        tokenizer = CharTokenizer.from_text(text)
        if tokenizer.vocab_size > self.cfg.model.vocab_size:
            raise GlassformerError(
                f"the text has {tokenizer.vocab_size} distinct characters but preset "
                f"{self.name!r} has a vocabulary of {self.cfg.model.vocab_size}; use fewer "
                "distinct characters or a trained run")
        return tokenizer


def load_source(source: str, overrides: dict | None = None, device="cpu") -> Source:
    """A run directory, or a preset name with optional dotted overrides
    ({"model.n_layer": "4"}; a run's model is fixed). With device "meta" a preset's model has
    shapes but no values (no memory, no time: enough for counting); a run loads on the CPU."""
    path = Path(source)
    if path.is_dir():
        if overrides:
            raise GlassformerError(f"{source} is a trained run; its model cannot be changed "
                                   "with --model.* options")
        from glassformer.train.checkpoint import load_run

        run = load_run(path, "cpu" if device == "meta" else device)
        return Source(run.cfg, run.model, run.tokenizer, path.name, path)
    if source in C.PRESETS:
        import torch

        from glassformer.model import build

        cfg = C.apply_overrides(C.preset(source), overrides or {})
        torch.manual_seed(cfg.train.seed)
        with torch.device(device):
            model = build(cfg.model)
        return Source(cfg, model.eval(), None, source)
    raise GlassformerError(f"{source!r} is neither a run directory nor a preset; presets: "
                           f"{', '.join(C.PRESETS)}")
