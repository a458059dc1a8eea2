"""Special tokens: names that take the first ids of a tokenizer built for a family that needs
them (CharTokenizer.from_text(text, specials)); text never encodes to them.

  encoder (BERT)       [PAD] 0  [CLS] 1  [SEP] 2  [MASK] 3     passages as [CLS] text [SEP]
  encoder-decoder      [PAD] 0  [BOS] 1  [EOS] 2               targets as [BOS] y [EOS]
"""

ENCODER = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]
PAD, CLS, SEP, MASK = range(len(ENCODER))

SEQ2SEQ = ["[PAD]", "[BOS]", "[EOS]"]
BOS, EOS = SEQ2SEQ.index("[BOS]"), SEQ2SEQ.index("[EOS]")
assert SEQ2SEQ.index("[PAD]") == PAD  # one padding id for every family
