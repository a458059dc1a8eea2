"""glassformer: build, train, inspect and sample transformers from scratch in PyTorch.

Shapes, everywhere in the code:
    B batch · T target (query) length · S source (key) length · H heads · D head dim (C / H)
    C model width (n_embd) · V vocabulary size

Importing the package stays light (no torch); import the parts you need, e.g.
`from glassformer.model.gpt import GPT`.
"""

__version__ = "0.1.0"


def __getattr__(name):
    """`glassformer.from_pretrained(path)` and `glassformer.save_pretrained(model, path)`, the
    Hugging Face directory format, imported (with torch) on first use."""
    if name in ("from_pretrained", "save_pretrained"):
        from glassformer.interop import hf

        return getattr(hf, name)
    raise AttributeError(f"module 'glassformer' has no attribute {name!r}")
