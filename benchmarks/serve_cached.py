"""``hashhop serve`` with a reusable context: one prefill, then many questions about it.

Starts the real server as a subprocess, sends a 10M-token HashHop prompt through the official
``openai`` client (the first request prefills), then every other query of the problem over the same
context (each a full 10M-character request body; the server recognises the context and reuses it).

Usage: python benchmarks/serve_cached.py [--context 10M] [--queries 20]
"""

from __future__ import annotations

import argparse
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

from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.grammar import native_request  # noqa: E402
from hashhop.task.spec import HashHopSpec, parse_size  # noqa: E402


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
"""
    update_section("serve_cached", body)
    print(body)


if __name__ == "__main__":
    main()
