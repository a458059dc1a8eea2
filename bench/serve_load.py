"""A bounded load check of `glassformer serve` (not a test): start the server on a loopback port,
send a burst of completions from several clients at once (every other one streamed), and report
latency percentiles, time to first token, throughput and how many were refused with 429.

    OMP_NUM_THREADS=1 python bench/serve_load.py [--run RUN] [--requests 32] [--concurrency 8]
        [--max-tokens 48] [--max-concurrent 4] [--tries 10]

Without --run it serves a randomly initialised `shakespeare-char`-sized GPT (written to a
temporary run directory). With more clients than --max-concurrent, requests are refused with
429: that is expected; each is counted, and the client tries again after the Retry-After the
server sent, up to --tries times. Any other failure (another status, a stream without [DONE],
no answer) is printed and makes the exit status 1.
"""

import argparse
import asyncio
import socket
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["ROMEO.", "To be, or not", "Now is the winter", "JULIET.\nO", "Friends, Romans"]


def random_run(out: Path) -> Path:
    """A shakespeare-char-sized GPT with random weights, as a run directory in `out`."""
    import torch

    from glassformer.config import apply_overrides, preset
    from glassformer.model import build
    from glassformer.tokenizers import CharTokenizer
    from glassformer.train.checkpoint import save_checkpoint, start_run

    tokenizer = CharTokenizer.from_text(string.printable)
    cfg = apply_overrides(preset("shakespeare-char"),
                          {"model.vocab_size": str(tokenizer.vocab_size)})
    torch.manual_seed(0)
    model = build(cfg.model)
    start_run(out, cfg, tokenizer)
    save_checkpoint(out, model, torch.optim.AdamW(model.parameters()), step=0, rng={})
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until_up(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{url}/v1/status")).status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)


async def attempts(client, i: int, max_tokens: int, tries: int) -> dict:
    """Request i until it is not refused with 429, at most `tries` times; its last attempt's
    result, with `refused`: the 429s it met."""
    for refused in range(tries):
        result = await one(client, i, max_tokens)
        if result["status"] != 429:
            break
        await asyncio.sleep(float(result["retry_after"]))
    return result | {"refused": refused + (result["status"] == 429)}


async def one(client, i: int, max_tokens: int) -> dict:
    """Request i (streamed when i is odd): {status, stream, latency, ttft, tokens, problem,
    retry_after}."""
    body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0.8,
            "seed": i, "stream": i % 2 == 1}
    result = {"stream": body["stream"], "ttft": None, "tokens": 0, "problem": None}
    start = time.perf_counter()
    try:
        if not body["stream"]:
            response = await client.post("/v1/completions", json=body)
            result["status"] = response.status_code
            if response.status_code == 200:
                result["tokens"] = response.json()["usage"]["completion_tokens"]
        else:
            async with client.stream("POST", "/v1/completions", json=body) as response:
                result["status"] = response.status_code
                if response.status_code == 200:
                    done = False
                    async for line in response.aiter_lines():
                        if line == "data: [DONE]":
                            done = True
                        elif line.startswith("data: ") and '"text": ""' not in line:
                            result["tokens"] += 1  # a piece: one token for a char tokenizer
                            result["ttft"] = result["ttft"] or time.perf_counter() - start
                    if not done:
                        result["problem"] = "the stream ended without [DONE]"
                else:
                    await response.aread()
        result["retry_after"] = response.headers.get("retry-after")
        if result["status"] not in (200, 429):
            result["problem"] = f"status {result['status']}: {response.text[:200]}"
    except httpx.HTTPError as err:
        result["status"], result["problem"] = None, f"{type(err).__name__}: {err}"
    result["latency"] = time.perf_counter() - start
    return result


async def burst(url: str, requests: int, concurrency: int, max_tokens: int, tries: int):
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        async def gated(i):
            async with gate:
                return await attempts(client, i, max_tokens, tries)
        start = time.perf_counter()
        results = await asyncio.gather(*(gated(i) for i in range(requests)))
        return results, time.perf_counter() - start


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    pick = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.9, 0.99)]
    return "p50 {:.3f} s, p90 {:.3f} s, p99 {:.3f} s".format(*pick)


def report(results: list[dict], seconds: float) -> int:
    ok = [r for r in results if r["status"] == 200 and not r["problem"]]
    gave_up = [r for r in results if r["status"] == 429]
    failed = [r for r in results if r["problem"]]
    tokens = sum(r["tokens"] for r in ok)
    print(f"{len(results)} requests in {seconds:.2f} s: {len(ok)} completed, {len(failed)} "
          f"failed, {len(gave_up)} still refused after their last try")
    print(f"429 answers: {sum(r['refused'] for r in results)} (expected: more clients than the "
          "server's cap), met by " + f"{sum(r['refused'] > 0 for r in results)} requests")
    print(f"latency (completed, last try): {percentiles([r['latency'] for r in ok])}")
    print(f"  whole answers:     {percentiles([r['latency'] for r in ok if not r['stream']])}")
    print(f"  streams:           {percentiles([r['latency'] for r in ok if r['stream']])}")
    print(f"time to first token (streams): {percentiles([r['ttft'] for r in ok if r['stream']])}")
    print(f"throughput: {tokens / seconds:.1f} tokens/s, {len(ok) / seconds:.2f} completions/s")
    for r in failed:
        print(f"FAILED: {r['problem']}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="run directory to serve (default: a random-init model)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8, help="clients at once")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens per completion")
    parser.add_argument("--max-concurrent", type=int, default=4, help="the server's cap")
    parser.add_argument("--tries", type=int, default=10, help="attempts per request (429s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else random_run(Path(tmp) / "random")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "glassformer", "serve", str(run), "--port", str(port),
             "--max-concurrent", str(args.max_concurrent)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            asyncio.run(wait_until_up(url))
            print(f"serving {run} on {url} (--max-concurrent {args.max_concurrent}); "
                  f"{args.requests} requests of {args.max_tokens} tokens, {args.concurrency} "
                  "clients at once, every other one streamed")
            results, seconds = asyncio.run(
                burst(url, args.requests, args.concurrency, args.max_tokens, args.tries))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return report(results, seconds)


if __name__ == "__main__":
    sys.exit(main())
