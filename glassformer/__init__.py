"""glassformer: build, train, inspect and sample transformers from scratch in PyTorch.

Shapes, everywhere in the code:
    B batch · T target (query) length · S source (key) length · H heads · D head dim (C / H)
    C model width (n_embd) · V vocabulary size

Importing the package stays light (no torch); import the parts you need, e.g.
`from glassformer.model.gpt import GPT`.
"""

__version__ = "0.1.0"
