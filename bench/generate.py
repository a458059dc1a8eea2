"""Generation speed: new tokens/s for 500 tokens after a short prompt, at batch 1 and 8, of
glassformer's sampler (KV cache), Hugging Face `generate` (use_cache=True) and the loop the
courses write (run the model on the whole window again for every token), with the same weights.

    python -m bench.generate [--new-tokens 500] [--batches 1 8]

The medium size (6 layers, 6 heads, 384 wide) with block_size 512, so that prompt and 500 new
tokens fit the context of all three without sliding. Decoding is greedy, so the three should
write the same tokens; the table says for how many (a near tie between two logits can fall
either way between implementations, after which the texts part). Each decoder runs once, in a
process of its own, which also gives its peak memory (and what decoding adds to the model's); recomputing the window at batch 8 takes
most of the script's minutes.
"""

import argparse
import string

import torch

from bench.common import (gpt2_config, memory, ours_and_hf, restart_peak, run_in_child, table,
                          timed)
from glassformer.config import SampleConfig
from glassformer.generate.sampler import generate
from glassformer.tokenizers.char import CharTokenizer

BLOCK = 512
PROMPT_LEN = 8
TOKENIZER = CharTokenizer(list(string.printable[:65]))  # 65 characters, as tinyshakespeare's


def prompts(batch: int) -> list[str]:
    g = torch.Generator().manual_seed(batch)
    return [TOKENIZER.decode(torch.randint(65, (PROMPT_LEN,), generator=g).tolist())
            for _ in range(batch)]


def ours_cached(model, texts, n):
    out = generate(model, TOKENIZER, texts, SampleConfig(max_new_tokens=n, temperature=0))
    return [TOKENIZER.encode(t) for t in out]


def hf_generate(hf, texts, n):
    ids = torch.tensor([TOKENIZER.encode(t) for t in texts])  # (B, P), one length: no padding
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                      min_new_tokens=n, do_sample=False, use_cache=True, pad_token_id=0)
    return out[:, ids.size(1):].tolist()


@torch.inference_mode()
def recompute_window(model, texts, n):
    """The courses' loop: the whole window through the model for each new token."""
    ids = torch.tensor([TOKENIZER.encode(t) for t in texts])  # (B, P)
    for _ in range(n):
        logits, _ = model(ids[:, -BLOCK:])  # (B, t, V)
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)  # (B, t + 1)
    return ids[:, PROMPT_LEN:].tolist()


CONTENDERS = {"glassformer (KV cache)": ("ours", ours_cached),
              "hf generate (cache)": ("hf", hf_generate),
              "recompute window": ("ours", recompute_window)}


def models():
    ours, hf = ours_and_hf(gpt2_config("medium", block_size=BLOCK))
    return {"ours": ours.eval(), "hf": hf.eval()}


def run_alone(name: str, batch: int, n: int) -> dict:
    """One contender in a process of its own (so its peak memory is its own): a 4-token
    warm-up, then `n` new tokens for each of `batch` prompts, timed."""
    which, fn = CONTENDERS[name]
    model = models()[which]  # the same seeded weights in every process
    fn(model, prompts(batch), 4)
    out = {"rss": restart_peak()}  # the model is resident; what decoding adds is measured
    out["seconds"] = timed(lambda: out.setdefault("tokens", fn(model, prompts(batch), n)))
    return out


def agreement(a: list[list[int]], b: list[list[int]]) -> int:
    """Leading tokens that agree, in the worst row."""
    def common(x, y):
        return next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), min(len(x), len(y)))
    return min(common(x, y) for x, y in zip(a, b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    n = args.new_tokens
    print(f"{torch.get_num_threads()} threads; "
          f"{sum(p.numel() for p in models()['ours'].parameters()):,} parameters; {n} new tokens "
          f"after {PROMPT_LEN}; greedy; each decoder in a process of its own")
    rows = []
    for batch in args.batches:
        results = {name: run_in_child(run_alone, name, batch, n) for name in CONTENDERS}
        ours = results["glassformer (KV cache)"]
        for name, r in results.items():
            rate = batch * n / r["seconds"]
            rows.append([batch, name, f"{rate:,.0f}", f"{1000 * r['seconds'] / n:.2f}",
                         f"{r['seconds'] / ours['seconds']:.2f}",
                         f"{agreement(r['tokens'], ours['tokens'])}/{n}",
                         memory(r)])
        print(table(["batch", "decoder", "new tokens/s", "ms/step", "glassformer is x",
                     "same tokens as ours", "peak RSS MiB (+ while decoding)"], rows[-3:]),
              end="\n\n", flush=True)


if __name__ == "__main__":
    main()
