"""Generation: pure logit filters (filters.py) and autoregressive sampling with a KV cache
(sampler.py)."""
