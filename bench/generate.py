"""Generation speed: new tokens/s after a short prompt, at batch 1 and 8, of glassformer's
sampler (KV cache) against Hugging Face `generate` (use_cache=True), with the same weights, on
two models:

    python -m bench.generate [--model medium] [--new-tokens 500] [--batches 1 8]
    python -m bench.generate --model smollm2 [--new-tokens 200] [--batches 1 8]

smollm2: SmolLM2-135M-Instruct from its packaged GGUF (dequantized to fp32, loaded by both), chat
prompts; glassformer in fp32, with int8 and bf16 weights (model/quantize.py), and int8 with
prompt-lookup decoding (batch 1), against transformers' fp32 `generate`. Each row also says how
the weights change the model's predictions, teacher-forced over the first HELD_OUT tokens of
README.md: the share of positions whose top-1 next token equals fp32's, and the perplexity
against fp32's.

medium: GPT-2's layout at 6 layers, 6 heads, 384 wide, with block_size 512, so that prompt
and 500 new tokens fit the context of all of them without sliding; glassformer in fp32 and with
int8 weights, Hugging Face in fp32, and the loop the courses write (run the model on the whole
window again for every token). Recomputing the
window at batch 8 takes most of the script's minutes.

Decoding is greedy, so the decoders should write the same tokens; the tables say for how many
(a near tie between two logits can fall either way between implementations, after which the
texts part). Each decoder runs once, in a process of its own, which also gives its peak memory
(and what decoding adds to the model's).
"""

import argparse
import math
import string
from pathlib import Path

import torch

from bench.common import (gpt2_config, memory, ours_and_hf, restart_peak, run_in_child, table,
                          timed)
from glassformer.config import SampleConfig
from glassformer.generate.sampler import generate
from glassformer.interop.gguf import find
from glassformer.interop.hf import from_pretrained
from glassformer.interop.packaged import fetch
from glassformer.model.quantize import calibration_ids, quantize
from glassformer.tokenizers.chat_template import conversation
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
              "glassformer int8 (KV cache)": ("ours int8", ours_cached),
              "hf generate (cache)": ("hf", hf_generate),
              "recompute window": ("ours", recompute_window)}


def model(which: str):
    """The medium model, the same seeded weights in every process: "ours", "ours int8"
    (model/quantize.py) or "hf"."""
    ours, hf = ours_and_hf(gpt2_config("medium", block_size=BLOCK))
    if which == "hf":
        return hf.eval()
    return quantize(ours.eval(), "int8" if which == "ours int8" else "none",
                    calibration_ids(TOKENIZER))


def run_alone(name: str, batch: int, n: int) -> dict:
    """One contender in a process of its own (so its peak memory is its own): a 4-token
    warm-up, then `n` new tokens for each of `batch` prompts, timed."""
    which, fn = CONTENDERS[name]
    decoder = model(which)
    fn(decoder, prompts(batch), 4)
    out = {"rss": restart_peak()}  # the model is resident; what decoding adds is measured
    out["seconds"] = timed(lambda: out.setdefault("tokens", fn(decoder, prompts(batch), n)))
    return out


def agreement(a: list[list[int]], b: list[list[int]]) -> int:
    """Leading tokens that agree, in the worst row."""
    def common(x, y):
        return next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), min(len(x), len(y)))
    return min(common(x, y) for x, y in zip(a, b))


# --- SmolLM2-135M-Instruct ------------------------------------------------------------------

QUESTIONS = ["What is the capital of France?", "Explain photosynthesis in two sentences.",
             "Write a short poem about the sea.", "How do I reverse a list in Python?",
             "Why is the sky blue?", "Give me three tips for sleeping better.",
             "What is the difference between weather and climate?", "Summarise the plot of Hamlet."]
HELD_OUT = 4096  # tokens of README.md scored teacher-forced
SMOLLM2 = {"glassformer fp32": "none", "glassformer int8": "int8", "glassformer bf16": "bf16",
           "glassformer int8 + prompt lookup": "int8", "hf generate fp32": None}
LOOKUP = 8  # drafted tokens per pass


def smollm2_alone(name: str, batch: int, n: int, score: bool) -> dict:
    """One SmolLM2 decoder in a process of its own: when `score`, its predictions on the
    held-out text (glassformer's), a 4-token warm-up, then `n` greedy tokens for each of `batch` chat prompts,
    timed; "tokens" are the new ids of each row."""
    path = fetch("smollm2-135m-instruct")
    model, tok = from_pretrained(path)
    prompts = [conversation(tok, [{"role": "user", "content": q}]) for q in QUESTIONS[:batch]]
    out = {}
    if SMOLLM2[name] is None:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(path, gguf_file=find(path).name,
                                                  dtype=torch.float32).eval()
        del model
        decode = lambda k: hf_chat(hf, tok, prompts, k)  # noqa: E731
    else:
        quantize(model, SMOLLM2[name], calibration_ids(tok))
        if score:
            out["top1"], out["nll"] = predictions(model, tok)
        lookup = LOOKUP if "lookup" in name else 0
        decode = lambda k: [tok.encode(t) for t in generate(  # noqa: E731
            model, tok, prompts, SampleConfig(max_new_tokens=k, temperature=0,
                                              prompt_lookup=lookup))]
    decode(4)
    out["rss"] = restart_peak()
    out["seconds"] = timed(lambda: out.setdefault("tokens", decode(n)))
    return out


def hf_chat(hf, tok, prompts: list[str], n: int) -> list[list[int]]:
    """transformers' greedy `generate`, the prompts left-padded as ours are."""
    rows = [tok.encode(p) for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])  # (B, P)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])  # (B, P)
    with torch.inference_mode():
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, pad_token_id=0, eos_token_id=None)
    return out[:, width:].tolist()


@torch.inference_mode()
def predictions(model, tok) -> tuple[list[int], float]:
    """The top-1 next token at each held-out position and the mean loss (nats/token)."""
    ids = torch.tensor(tok.encode(Path("README.md").read_text())[:HELD_OUT + 1])  # (N + 1,)
    logits = model(ids[None, :-1])[0][0].float()  # (N, V)
    loss = torch.nn.functional.cross_entropy(logits, ids[1:]).item()
    return logits.argmax(dim=-1).tolist(), loss


def smollm2(batches: list[int], n: int) -> None:
    print(f"SmolLM2-135M-Instruct (GGUF, dequantized); {torch.get_num_threads()} threads; {n} "
          f"new tokens after a chat prompt; greedy; each decoder in a process of its own; "
          f"predictions teacher-forced on {HELD_OUT} tokens of README.md")
    rows, scores = [], {}  # the predictions do not depend on the batch: scored once
    for batch in batches:
        names = [m for m in SMOLLM2 if batch == 1 or "lookup" not in m]  # lookup: one prompt
        results = {m: run_in_child(smollm2_alone, m, batch, n, m not in scores) for m in names}
        scores |= {m: r for m, r in results.items() if "top1" in r and m not in scores}
        hf = results["hf generate fp32"]
        for m, r in results.items():
            quality = ["-", "-"]
            if m in scores:
                fp32 = scores["glassformer fp32"]
                same = sum(a == b for a, b in zip(scores[m]["top1"], fp32["top1"]))
                extra = math.exp(scores[m]["nll"] - fp32["nll"]) - 1  # perplexity ratio - 1
                quality = [f"{same / len(fp32['top1']):.1%}", f"{extra:+.2%}"]
            rows.append([batch, m, f"{batch * n / r['seconds']:,.1f}",
                         f"{1000 * r['seconds'] / n:.1f}", f"{hf['seconds'] / r['seconds']:.2f}",
                         f"{agreement(r['tokens'], hf['tokens'])}/{n}", *quality, memory(r)])
        print(table(["batch", "decoder", "new tokens/s", "ms/step", "x hf fp32",
                     "same tokens as hf", "top-1 = fp32's", "perplexity vs fp32",
                     "peak RSS MiB (+ while decoding)"], rows[-len(results):]),
              end="\n\n", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["medium", "smollm2"], default="medium")
    parser.add_argument("--new-tokens", type=int, help="default: 500 (medium), 200 (smollm2)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    if args.model == "smollm2":
        return smollm2(args.batches, args.new_tokens or 200)

    n = args.new_tokens or 500
    print(f"{torch.get_num_threads()} threads; "
          f"{sum(p.numel() for p in model('ours').parameters()):,} parameters; {n} new tokens "
          f"after {PROMPT_LEN}; greedy; each decoder in a process of its own")
    rows = []
    for batch in args.batches:
        results = {name: run_in_child(run_alone, name, batch, n) for name in CONTENDERS}
        ours, hf = results["glassformer (KV cache)"], results["hf generate (cache)"]
        for name, r in results.items():
            rate = batch * n / r["seconds"]
            rows.append([batch, name, f"{rate:,.0f}", f"{1000 * r['seconds'] / n:.2f}",
                         f"{hf['seconds'] / r['seconds']:.2f}",
                         f"{agreement(r['tokens'], ours['tokens'])}/{n}",
                         memory(r)])
        print(table(["batch", "decoder", "new tokens/s", "ms/step", "x hf generate",
                     "same tokens as ours", "peak RSS MiB (+ while decoding)"],
                    rows[-len(results):]),
              end="\n\n", flush=True)


if __name__ == "__main__":
    main()
