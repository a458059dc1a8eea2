"""What an inspect command looks at: a trained run directory, or a preset's fresh model.

A preset has no tokenizer of its own; the text a command is given is then encoded by a
character tokenizer built from that text, whose ids fit any vocabulary at least as large.
"""

from dataclasses import dataclass
from pathlib import Path

from glassformer import config as C
from glassformer.errors import GlassformerError, writes_to
from glassformer.tokenizers import HFTokenizer


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
        """Token ids of `text`, with the run's tokenizer or (a preset) one built from `text`; a
        checkpoint's encoder reads them as its tokenizer wraps them ([CLS] text [SEP])."""
        if not text:
            raise GlassformerError("the text is empty; pass --text with at least one token")
        tokenizer = self.tokenizer_for(text)
        if self.cfg.model.family == "bert" and isinstance(tokenizer, HFTokenizer):
            return tokenizer.encode(text, add_special_tokens=True)
        return tokenizer.encode(text)

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

    def tokens(self, text: str) -> tuple[list[int], list[str]]:
        """The ids of `text` and its tokens as strings; it must fit the model's window."""
        ids = self.encode(text)
        T = self.cfg.model.block_size
        if len(ids) > T:
            raise GlassformerError(f"the text has {len(ids)} tokens but the model reads at most "
                                   f"{T}; use a shorter --text")
        decode = self.tokenizer_for(text).decode
        return ids, [decode([i]) for i in ids]

    def texts(self, text: str, target: str | None = None) -> list[tuple[list[int], list[str]]]:
        """The texts the model reads, as `tokens` gives them, in the order its forward takes
        them: [text], or for an encoder-decoder [text (the source), target (the decoder's
        input)], where `target` is required."""
        if self.cfg.model.family != "encdec":
            return [self.tokens(text)]
        source = self.tokens(text)
        if not target:
            raise GlassformerError("an encoder-decoder reads two texts: add --target TEXT, the "
                                   "decoder's input (--text is the source)")
        return [source, self.tokens(target)]

    def output_dir(self, out=None) -> Path:
        """The folder for what an inspect command writes, created: `out`, or by default
        RUN/inspect for a run and runs/inspect/PRESET for a preset (beside the runs `train`
        writes, not loose in the current directory)."""
        default = (self.run_dir / "inspect") if self.trained else Path("runs/inspect") / self.name
        path = Path(out) if out else default
        with writes_to(path):
            path.mkdir(parents=True, exist_ok=True)
        return path


def input_ids(texts, batch: int = 1) -> list:
    """The model's inputs for `texts` as Source.texts gives them: each text's ids `batch` times,
    int64 (B, S) and/or (B, T)."""
    import torch

    return [torch.tensor([ids] * batch) for ids, _ in texts]


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
