"""Training data: corpora and the batches each model family trains on."""
