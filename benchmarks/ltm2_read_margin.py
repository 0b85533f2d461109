"""Why LTM-2's reads fail at length: for the first answer byte of 1-hop HashHop queries, where the right entry
(the quote after the queried key in its link) ranks among each head's top-64 keys, and its cosine margin over the
best other key. Flat exact index over the prompt; the query vector from the dense network over the last 2 KB.

Usage: python benchmarks/ltm2_read_margin.py [--weights PATH] [--lengths 100k,1M] [--queries 8]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import update_section  # noqa: E402

from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.ltm2.engine import Engine  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.grammar import native_request  # noqa: E402
from hashhop.task.spec import HashHopSpec, parse_size  # noqa: E402


@torch.no_grad()
def first_read_queries(lm, text: bytes) -> np.ndarray:
    """Block 1's unit read queries (heads, hk) at the last byte of ``text`` (dense forward over its last 2 KB)."""
    net, block = lm.blocks[0].mixer, lm.blocks[0].mixer.blocks[0]
    x = lm.blocks[0].norm1(lm.embed(torch.tensor(list(text[-2048:]))[None]))
    h = net.encoder(x)
    h = h + block.local(block.norm_local(h))
    xq = block.norm_read(h)[0, -1:]
    return F.normalize((net.key(xq) + block.read.query(xq)).view(net.cfg.memory_heads, -1), dim=-1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--lengths", default="100k,1M")
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--section", default="ltm2_read_margin")
    args = ap.parse_args()
    lm = load_ltm2(args.weights)
    rows = []
    for length in (parse_size(x) for x in args.lengths.split(",")):
        problem = plan(HashHopSpec(context_tokens=length, tokenizer="chars", hops=1, hash_length=16, num_queries=args.queries, seed=3))
        engine = Engine(lm, index="flat", exact=True)
        engine.prefill(problem.prompt.encode())
        first = margins = reads = 0
        for chain in problem.queries:
            target = problem.prompt.encode().index(f"{chain.query} = '".encode()) + len(chain.query) + 3
            scores, ids = engine.memory.search(first_read_queries(lm, native_request(problem.prompt, 1, False, chain.query).encode()), 64)
            for head in range(len(ids)):
                reads += 1
                if ids[head][0] == target:
                    first += 1
                    margins += float(scores[head][0] - scores[head][1])
        rows.append((length, first, reads, margins / max(1, first)))
        print(rows[-1], flush=True)
    command = "python benchmarks/ltm2_read_margin.py " + " ".join(sys.argv[1:])
    lines = [
        f"LTM-2's first read on 1-hop HashHop (16-letter hashes): is the right entry the best key, and by what cosine margin. Command: `{command.strip()}`.",
        "",
        "| context chars | right entry ranked first (head-reads) | mean cosine margin when first |",
        "|---|---|---|",
        *[f"| {n:,} | {f}/{r} | {m:.3f} |" for n, f, r, m in rows],
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    main()
