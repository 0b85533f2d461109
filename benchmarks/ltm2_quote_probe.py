"""Is LTM-2's failing jump the one that must skip a quote? A probe on Magic's own 2-hop prompts.

In Magic's format a chain's last link is written ``K = 'V'`` and the links before it ``K = V``, while every question
asks ``K = '``. So on the same 2-hop prompt (chains H1 = H2, H2 = 'H3'), two 1-hop questions differ only in the link
they jump to: ``H2 = '`` finds the quoted last link, whose 15-byte window is the query's own; ``H1 = '`` finds the
unquoted first link, whose window lacks the query's quote (and every other chain's last link ends like the query).
A third question is a CoT answer's second jump given its first hop (``H1 = 'H2 = ``): it finds the quoted last link
``H2 = 'H3'`` from a window without the quote, which the link's window has. Each answer is scored on its first hash
(16 bytes). The engine and weights are the shipped ones unless given.

Usage: python benchmarks/ltm2_quote_probe.py [--lengths 100k,1M] [--queries 10] [--variants "trained,memory off"]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402
from ltm2_recall import complete, make_variant  # noqa: E402

from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.grammar import native_request  # noqa: E402
from hashhop.task.spec import HashHopSpec, parse_size  # noqa: E402

HASH_LENGTH = 16
PROBES = (  # the link each question jumps to: its window is the query's / lacks the query's quote / has a quote the query lacks
    "quoted last link (H2 = ')",
    "unquoted first link (H1 = ')",
    "quoted last link from a CoT answer (H1 = 'H2 = )",
)


def probe(runner, length: int, queries: int, seed: int) -> dict[str, tuple[int, int]]:
    """{probe label: (right, first byte right, asked)} on one 2-hop prompt (:data:`PROBES`)."""
    problem = plan(
        HashHopSpec(context_tokens=length, tokenizer="chars", hops=2, chain_of_thought=True, hash_length=HASH_LENGTH, num_queries=queries, seed=seed)
    )
    right, started = dict.fromkeys(PROBES, 0), dict.fromkeys(PROBES, 0)
    for chain in problem.queries:
        h1, h2, h3 = chain.hashes
        requests = (
            native_request(problem.prompt, 1, False, h2),
            native_request(problem.prompt, 1, False, h1),
            native_request(problem.prompt, 2, True, h1) + f"{h2} = ",  # a CoT answer whose first hop is right, given
        )
        for label, request, expected in zip(PROBES, requests, (h3, h2, h3)):
            got = complete(runner, request, HASH_LENGTH + 1, (b"'", b"\n"))
            right[label] += got[:HASH_LENGTH] == expected
            started[label] += got[:1] == expected[:1]
    return {label: (n, started[label], len(problem.queries)) for label, n in right.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--lengths", default="100k,1M", help="context lengths in characters")
    ap.add_argument("--queries", type=int, default=10, help="chains asked per prompt")
    ap.add_argument("--variants", default="trained,memory off")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--section", default="ltm2_quote_probe", help="RESULTS.md section to write ('' for none)")
    args = ap.parse_args()
    lengths = [parse_size(x) for x in args.lengths.split(",") if x.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not lengths or not variants or args.queries < 1:
        ap.error("give at least one length, one variant and --queries >= 1")
    started = time.perf_counter()
    runners = {name: make_variant(name, args.weights) for name in variants}
    rows = []
    for length in lengths:
        cells = {name: probe(runner, length, args.queries, args.seed) for name, runner in runners.items()}
        for label in next(iter(cells.values())):
            row = f"| {length:,} | {label} | " + " | ".join("{}/{} ({})".format(*(cells[n][label][i] for i in (0, 2, 1))) for n in variants) + " |"
            rows.append(row)
            print(row, flush=True)
    table = "| context chars | the link a 1-hop question jumps to | " + " | ".join(variants) + " |\n|" + "---|" * (2 + len(variants)) + "\n" + "\n".join(rows)
    if args.section:
        command = "python benchmarks/ltm2_quote_probe.py " + shlex.join(sys.argv[1:])
        intro = (
            "LTM-2 through its engine on Magic's 2-hop prompts (seed 0): the same prompt asked two 1-hop questions, one whose"
            " link is the chain's quoted last link (`H2 = 'H3'`: the query's window, exactly) and one whose link is the"
            " unquoted first (`H1 = H2`: the query's quote is not in it), and a 2-hop CoT answer given up to its second jump"
            " (`H1 = 'H2 = `: the quoted last link's window has a quote the query lacks). Right = the first 16 bytes are"
            " the link's value; in brackets, answers whose first byte is right."
            f" Command: `{command.strip()}` ({time.perf_counter() - started:.0f} s).\n"
        )
        update_section(args.section, intro + "\n" + table)


if __name__ == "__main__":
    run_script(main)
