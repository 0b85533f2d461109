"""How LTM-2's first read holds up at length: for the first answer byte of 1-hop HashHop queries, where the right
entry (the quote after the queried key in its link) ranks among each head's top-64 keys, its cosine margin over the
best other key, its share of the read, and whether the compact index finds it. The query vector comes from the
dense network over the last 2 KB.

Usage: python benchmarks/ltm2_read_margin.py [--weights PATH] [--lengths 100k,1M] [--queries 8]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402

from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.ltm2.engine import Engine  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.ltm2.model import read_gain  # noqa: E402
from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.grammar import native_request  # noqa: E402
from hashhop.task.spec import HashHopSpec, parse_size  # noqa: E402


@torch.no_grad()
def first_read_queries(lm, text: bytes) -> np.ndarray:
    """Block 1's unit read queries (heads, hk) at the last byte of ``text`` (dense forward over its last 2 KB)."""
    net, block = lm.blocks[0].mixer, lm.blocks[0].mixer.blocks[0]
    x = lm.blocks[0].norm1(lm.embed(torch.tensor(list(text[-2048:]))[None]))
    states = net.encoder(x)
    h = states + block.local(block.norm_local(states))
    return block.read.unit_queries(block.norm_read(h)[0, -1:], net.key, states[0, -2:-1])[0].detach().numpy()


def read_share(scores: np.ndarray, ids: np.ndarray, target: int, scale: float, sink: float) -> float:
    """The right entry's weight in a read over these top entries and the sink (logits = cosine x sharpness)."""
    valid = ids >= 0
    logits = np.append(scores[valid] * scale, sink)
    weights = np.exp(logits - logits.max())
    return float(weights[:-1][ids[valid] == target].sum() / weights.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--lengths", default="100k,1M")
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--hops", type=int, choices=(1, 2), default=1, help="2: the first read of 2 hops with chain of thought (link `Q = H2` asked as `Q = '`)")
    ap.add_argument("--pq-dims-per-byte", type=int, default=None, help="compact keys: key dimensions per PQ byte (default: the engine's)")
    ap.add_argument("--rotate", choices=("on", "off"), default=None, help="compact keys: a learnt rotation (OPQ) before the product quantiser (default: the engine's)")
    ap.add_argument("--section", default="ltm2_read_margin")
    args = ap.parse_args()
    import hashhop.ltm2.engine as engine_module

    if args.pq_dims_per_byte:
        engine_module.PQ_DIMS_PER_BYTE = args.pq_dims_per_byte
    if args.rotate:
        engine_module.PQ_ROTATION = args.rotate == "on"
    lm = load_ltm2(args.weights)
    net, read = lm.blocks[0].mixer, lm.blocks[0].mixer.blocks[0].read
    rows = []
    for length in (parse_size(x) for x in args.lengths.split(",")):
        problem = plan(HashHopSpec(context_tokens=length, tokenizer="chars", hops=args.hops, chain_of_thought=True, hash_length=16, num_queries=args.queries, seed=3))
        prompt = problem.prompt.encode()
        exact, compact = Engine(lm, index="flat", exact=True), Engine(lm, index="ivf")
        exact.prefill(prompt)
        compact.prefill(prompt)
        first = margins = reads = found = 0
        share = compact_share = 0.0
        for chain in problem.queries:
            # the entry whose value starts with the link's value: the quote of `Q = 'V'`, the space of `Q = H2`
            target = prompt.index(f"{chain.query} = ".encode()) + len(chain.query) + (3 if args.hops == 1 else 2)
            request = native_request(problem.prompt, args.hops, args.hops > 1, chain.query).encode()
            queries = first_read_queries(lm, request)
            scores, ids = exact.memory.search(queries, 64)
            compact_scores, compact_ids = compact.memory.search(queries, 64)
            # the read's sharpness at this length (learnt x ln-length gain) and its sink, as the network computes them
            scale = read.log_scale.detach().exp().clamp(max=100.0).numpy() * read_gain(len(request) - net.delay, net.cfg.log_length_reads)
            sink = (torch.from_numpy(queries) * read.sink_keys()).sum(-1).detach().numpy() * scale + np.log(net.delay)
            for head in range(len(ids)):
                reads += 1
                found += int(target in compact_ids[head])
                share += read_share(scores[head], ids[head], target, scale[head], sink[head])
                compact_share += read_share(compact_scores[head], compact_ids[head], target, scale[head], sink[head])
                if ids[head][0] == target:
                    first += 1
                    margins += float(scores[head][0] - scores[head][1])
        kept = compact.bytes_per_context_byte()
        rows.append((length, first, reads, margins / max(1, first), share / reads, found, compact_share / reads, kept))
        print(rows[-1], flush=True)
    command = "python benchmarks/ltm2_read_margin.py " + shlex.join(sys.argv[1:])
    lines = [
        f"LTM-2's first read on {'1-hop HashHop' if args.hops == 1 else '2-hop HashHop with chain of thought (its first link)'} (16-letter hashes): is the right entry the best key (exact keys, every entry), by what cosine margin, what share of the read it gets, and whether the compact long-context index (product-quantised keys in inverted lists, 32 probed) finds it. Command: `{command.strip()}`.",
        "",
        "| context chars | right entry ranked first (head-reads) | mean cosine margin when first | its mean share of the read (top 64 + sink) | in the compact index's top 64 | its share with the compact index's scores | compact bytes kept per context byte |",
        "|---|---|---|---|---|---|---|",
        *[f"| {n:,} | {f}/{r} | {m:.3f} | {w:.2f} | {c}/{r} | {cw:.2f} | {b:.0f} |" for n, f, r, m, w, c, cw, b in rows],
        "",
        "The memories hold the problem text without the query lines (about 100 bytes fewer entries than the real read sees).",
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
