"""Why LTM-2's code bits per byte rise with context: the same scored bytes, the index and the sharpness rule varied.

A diagnostic beside ``ltm2_code.py`` (the headline curve). The last ``--scored`` bytes of the held-out corpus are
scored after contexts of C bytes, each C with the engine's exact flat index (8-bit keys, every entry scored) and
with its compact one (product-quantised keys in inverted lists, the engine's default from 512K), and with the reads'
length-dependent sharpness (``read_gain``, trained in at rows of 2,048 entries) held at what it is for
``--gain-cap`` entries. If the flat index is no better than the compact one, the rise is the trained reads', not the
index's; if the capped gain is no better, it is not the sharpness rule extrapolated past training length.

Usage: python benchmarks/ltm2_code_reads.py [--contexts 2k,100k,1M] [--scored 3k] [--gain-cap 2048]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402
from ltm2_code import bits_per_byte, held_out_corpus  # noqa: E402

import hashhop.ltm2.engine as engine_module  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.ltm2.engine import Engine  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.spec import parse_size  # noqa: E402


def capped_gain(cap: int):
    """The engine's ``read_gain`` as if a read never saw more than ``cap`` entries (a diagnostic, not the trained rule)."""
    rule = engine_module.read_gain

    def gain(entries, log_length: bool):
        return rule(min(entries, cap) if isinstance(entries, int) else entries.clamp(max=cap), log_length)

    return gain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--contexts", default="2k,100k,1M", help="context sizes before the scored bytes")
    ap.add_argument("--scored", default="3k", help="bytes scored at the end of the held-out corpus (the flat index is slow)")
    ap.add_argument("--gain-cap", default="2048", help="entries the sharpness rule is held at in the capped rows")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--section", default="ltm2_code_reads", help="RESULTS.md section to write ('' for none)")
    args = ap.parse_args()
    contexts = [parse_size(x) for x in args.contexts.split(",")]
    scored_n, cap = parse_size(args.scored), parse_size(args.gain_cap)
    if scored_n < 2 or cap < 1:
        ap.error(f"--scored must be at least 2 bytes and --gain-cap at least 1 entry, got {args.scored}, {args.gain_cap}")
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = held_out_corpus()
    if max(contexts) + scored_n > len(corpus):
        ap.error(f"--contexts and --scored ask for {max(contexts) + scored_n:,} bytes; the held-out corpus has {len(corpus):,}")
    scored = corpus[len(corpus) - scored_n :].tobytes()
    model = load_ltm2(args.weights)
    rule = engine_module.read_gain
    rows = []
    for context_n in contexts:
        context = corpus[len(corpus) - scored_n - context_n : len(corpus) - scored_n].tobytes()
        for index in ("flat", "ivf") if context_n >= 100_000 else ("flat",):
            for capped in (False, True) if context_n > cap else (False,):
                engine_module.read_gain = capped_gain(cap) if capped else rule
                try:
                    bpb, seconds = bits_per_byte(Engine(model, index=index), context, scored)
                finally:
                    engine_module.read_gain = rule
                rows.append((context_n, index, f"held at {cap:,} entries" if capped else "trained rule", bpb, seconds))
                print(rows[-1], flush=True)
    base = rows[0][3]
    command = "python benchmarks/ltm2_code_reads.py " + shlex.join(sys.argv[1:])
    lines = [
        f"Why LTM-2's code bits per byte rise with context (diagnostic): the last {scored_n:,} bytes of the held-out corpus "
        "after contexts of the code before them, with the exact flat index and the compact one, and with the reads' "
        f"sharpness rule held at {cap:,} entries. Command: `{command.strip()}`.",
        "",
        "| context bytes | index | read sharpness | bits per byte | vs the first row | seconds |",
        "|---|---|---|---|---|---|",
        *[f"| {n:,} | {index} | {gain} | {bpb:.3f} | {bpb / base - 1:+.1%} | {s:.0f} |" for n, index, gain, bpb, s in rows],
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
