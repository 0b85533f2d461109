"""``hashhop serve`` with a reusable context: one prefill, then many questions about it.

Starts the real server as a subprocess, sends a 10M-token HashHop prompt through the official
``openai`` client (the first request prefills), then every other query of the problem over the same
context (each a full 10M-character request body; the server recognises the context and reuses it).

Then, in-process, what finding the cached context costs next to the decode itself: ``Engine.answer()``
(cut the request, find the context in the cache, decode) against ``Engine.decode()`` alone, now (a sampled
key, confirmed by comparing the bytes) and before (the lookup as it was: a copy of the request's bytes and
blake2b over the whole context, re-run here on the same engine), interleaved per query.

Usage: python benchmarks/serve_cached.py [--context 10M] [--queries 20]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openai  # noqa: E402
from _results import update_section  # noqa: E402

from hashhop.ltm.engine import Engine  # noqa: E402
from hashhop.ltm.load import WEIGHTS, load_ltm  # noqa: E402
from hashhop.ltm.model import MARKER, PromptParts, split_prompt  # noqa: E402
from hashhop.ltm.text import find_words, gather_chars, to_bytes  # noqa: E402
from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.grammar import native_request  # noqa: E402
from hashhop.task.spec import HashHopSpec, parse_size  # noqa: E402


def _split_before(text: str, width: int) -> PromptParts:
    """``split_prompt`` as it was before the lookup was made cheap (a full copy of the request's bytes)."""
    data = to_bytes(text)
    raw = data.tobytes()
    cut = raw.rfind(MARKER)
    if cut < 0:
        cut = max(raw.rstrip(b"\n").rfind(b"\n"), 0)
    if cut < len(data) and data[cut] == 10:
        cut += 1
    context, tail = data[:cut], data[cut:]
    starts, lengths = find_words(tail)
    chars = gather_chars(tail, starts, lengths, width)
    return PromptParts(context, chars[:-1], chars[-1:])


def lookup_costs(problem, queries: int) -> dict[str, list[float]]:
    """Per query, in-process: decode() alone, answer() now, and answer() with the lookup as it was. One torch
    thread: a decode's tensors are tiny, and on a busy 2-core machine a 2-thread pool's barriers add
    tens of milliseconds of scheduling noise to each small op, which would swamp what is measured here."""
    import torch

    torch.set_num_threads(1)
    engine = Engine(load_ltm(WEIGHTS), cache_contexts=1)
    width = engine.model.cfg.max_word_chars + 1
    texts = [native_request(problem.prompt, 2, False, chain.query) for chain in problem.queries[:queries]]
    engine.answer(texts[0])  # the prefill
    before_cache: dict[bytes, object] = {}
    times: dict[str, list[float]] = {"decode": [], "answer_now": [], "answer_before": [], "lookup_now": [], "lookup_before": []}
    for text in texts * 3:
        started = time.perf_counter()
        engine.answer(text)
        times["answer_now"].append(time.perf_counter() - started)

        started = time.perf_counter()
        parts = split_prompt(text, width)
        memory = engine.cached(parts.context)
        times["lookup_now"].append(time.perf_counter() - started)

        started = time.perf_counter()
        old = _split_before(text, width)
        digest = hashlib.blake2b(memoryview(old.context), digest_size=16).digest()
        old_memory = before_cache.setdefault(digest, memory)
        times["lookup_before"].append(time.perf_counter() - started)
        engine.decode(old_memory, old)
        times["answer_before"].append(time.perf_counter() - started)

        started = time.perf_counter()
        engine.decode(memory, parts)
        times["decode"].append(time.perf_counter() - started)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--context", default="10M")
    ap.add_argument("--queries", type=int, default=20)
    args = ap.parse_args()
    context = int(parse_size(args.context))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "hashhop.cli", "serve", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        problem = plan(
            HashHopSpec(
                context_tokens=context,
                tokenizer="chars",
                hops=2,
                chain_of_thought=False,
                hash_length=16,
                num_queries=args.queries + 1,
                seed=21,
            )
        )
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
        latencies, right = [], 0
        for chain in problem.queries:
            text = native_request(problem.prompt, 2, False, chain.query)
            started = time.perf_counter()
            out = client.completions.create(model="builtin:ltm", prompt=text, max_tokens=64, stop=["'"])
            latencies.append(time.perf_counter() - started)
            right += out.choices[0].text == chain.answer(False)
            print(f"request {len(latencies)}: {latencies[-1]:.3f} s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    first, cached = latencies[0], latencies[1:]
    costs = {name: statistics.median(values) * 1e3 for name, values in lookup_costs(problem, min(10, len(problem.queries))).items()}
    print(costs)
    body = f"""## Serving with a reusable context (`hashhop serve`, official `openai` client)

`python benchmarks/serve_cached.py --context {args.context} --queries {args.queries}`

A {context:,}-token HashHop problem (2 hops, no chain of thought); every request carries the whole
{context:,}-character prompt over loopback HTTP.

| request | latency |
|---|---|
| first (prefill + answer) | {first:.2f} s |
| later, same context (median of {len(cached)}) | {statistics.median(cached):.3f} s |
| later, same context (slowest) | {max(cached):.3f} s |

Answers right: {right}/{len(latencies)}. Target: a request over a cached 10M-token context in under a second.

Finding the cached context, in-process (median of {3 * min(10, len(problem.queries))} calls, interleaved, one torch thread): `Engine.answer()` is
cut the request + find the context + `decode()`. Before, the lookup copied the request's bytes and hashed the
whole context with blake2b; now it hashes a fixed ~200 KB sample (length, first and last 64 KB, 64 blocks of
1 KB) and confirms a match by comparing the bytes with the kept context (memcmp speed), so two different
contexts never share an entry.

| at {context:,} characters | before | now |
|---|---|---|
| cut the request + find the context | {costs["lookup_before"]:.1f} ms | {costs["lookup_now"]:.1f} ms |
| `answer()` | {costs["answer_before"]:.1f} ms | {costs["answer_now"]:.1f} ms |
| `decode()` alone | {costs["decode"]:.1f} ms | {costs["decode"]:.1f} ms |
| `answer()` / `decode()` | {costs["answer_before"] / costs["decode"]:.2f}x | {costs["answer_now"] / costs["decode"]:.2f}x |
"""
    update_section("serve_cached", body)
    print(body)


if __name__ == "__main__":
    main()
