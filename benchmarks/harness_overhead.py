"""Harness overhead per request: everything but the model (request building, HTTP client, retries
bookkeeping, parsing, scoring, the append-only results file), at 64-way concurrency against a
loopback OpenAI-compatible server (hashhop.testing, in its own process) that answers at once.

Overhead = CPU time of the harness process / requests (the server's work is in the other process).

Usage: python benchmarks/harness_overhead.py [--requests 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import update_section  # noqa: E402

from hashhop.eval.grid import Grid, build_items  # noqa: E402
from hashhop.eval.run import RunOptions, run_items  # noqa: E402
from hashhop.eval.store import read_results  # noqa: E402
from hashhop.eval.templates import load_template  # noqa: E402
from hashhop.runners import RunnerOptions, make_runner  # noqa: E402

TARGET_MS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "hashhop.testing"], stdout=subprocess.PIPE, text=True)
    base_url = server.stdout.readline().strip()
    try:
        runner = make_runner("openai:fake", RunnerOptions(base_url=base_url, tokenizer="cl100k_base"))
        template = load_template("chat")
        samples = max(1, args.requests // (2 * 2 * 5))
        grid = Grid(lengths=(400,), hops=(1, 2), cot=(False, True), samples=samples, queries=5)
        items = build_items(grid, runner, template)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "r.jsonl")
            options = RunOptions(concurrency=args.concurrency, progress=False, cache_path=None)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            stats = asyncio.run(run_items(items, runner, template, out, options))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            records = read_results(out)
    finally:
        server.terminate()
        server.wait()
    n = len(items)
    assert stats.answered == n and all(r["correct"] for r in records), "the server solves HashHop: every answer must score"
    cpu_ms, wall_ms = 1000 * cpu / n, 1000 * wall / n
    print(
        f"{n} requests at concurrency {args.concurrency}: harness CPU {cpu_ms:.2f} ms/request, wall {wall_ms:.2f} ms/request "
        f"({n / wall:.0f} requests/s, server included)"
    )
    lines = [
        "## Harness overhead per request",
        "",
        f"Command: `python benchmarks/harness_overhead.py --requests {args.requests} --concurrency {args.concurrency}`",
        "",
        "| requests | concurrency | harness CPU per request | wall per request (server included) | target | ratio to target |",
        "|---|---|---|---|---|---|",
        f"| {n} | {args.concurrency} | {cpu_ms:.2f} ms | {wall_ms:.2f} ms | < {TARGET_MS:g} ms | {TARGET_MS / cpu_ms:.1f}x under |",
        "",
        "The server (stdlib, one thread per connection) runs in its own process and answers at once; the harness CPU time "
        "covers request building, the httpx client, retry bookkeeping, parsing and scoring, and the append-only results file.",
    ]
    update_section("harness_overhead", "\n".join(lines))


if __name__ == "__main__":
    main()
