"""Model parts (one idea per module) and the models assembled from them."""

from glassformer.model.bert import BERT
from glassformer.model.encdec import EncoderDecoder
from glassformer.model.gpt import GPT
from glassformer.model.lstm import LSTMLM

FAMILIES = {"gpt": GPT, "bert": BERT, "encdec": EncoderDecoder, "lstm": LSTMLM}


def build(cfg):
    """The model `cfg.family` names, freshly initialised."""
    return FAMILIES[cfg.family](cfg)


def count_parameters(model) -> int:
    """All parameters, counting a tied matrix once."""
    return sum(p.numel() for p in model.parameters())
