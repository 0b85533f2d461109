"""What rescoring costs a decode step, with and without the engine's cache of exact keys.

On the compact memory the engine's reads are rescored by default: each read's entries are scored again with exact
keys recomputed from the text (an encoder window per entry). Greedy decodes after a context of held-out code (the
last C bytes of ``ltm2_code.py``'s corpus) read many of the same entries at neighbouring steps, so the engine keeps
the newest ``EXACT_KEYS_CACHED`` recomputed keys, and computes a step's keys in one batch per block: the rescored
entries' and the pointer candidates' the search did not return (an encoder call's fixed cost is that of ~40
windows). This script decodes the same bytes from one prefilled state with the cache on, with it off (the same
computation, every key recomputed), with the pointer's candidates computed one call each (as before the
twenty-second session), and without rescoring (with and without that batching), the rows taking turns ``--rounds``
times, and prints per row the encoder windows recomputed and the encoder calls per decoded byte (both
machine-independent) and the median decode bytes/s, each beside the cache-off row.

Usage: python benchmarks/ltm2_rescore_cost.py [--context 1M] [--decode 128] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402
from ltm2_code import context_of, held_out_corpus  # noqa: E402

import hashhop.ltm2.engine as engine_module  # noqa: E402
from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.ltm2.engine import Engine  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.spec import parse_size  # noqa: E402

VARIANTS = (  # (label, rescore, exact keys cached (None: the engine's), the pointer's candidates batched per block)
    ("rescored, exact keys cached (the default)", None, None, True),
    ("rescored, nothing cached", None, 0, True),
    ("rescored, cached, pointer candidates one call each", None, None, False),
    ("no rescoring", 0, None, True),
    ("no rescoring, pointer candidates one call each", 0, None, False),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--context", default="1M", help="bytes of held-out code prefilled (the compact memory from 512K)")
    ap.add_argument("--decode", type=int, default=128, help="bytes greedily decoded per run")
    ap.add_argument("--rounds", type=int, default=5, help="runs per variant, the variants taking turns (rows: the median)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--section", default="ltm2_rescore_cost")
    args = ap.parse_args()
    if args.decode < 1 or args.rounds < 1:
        raise HashHopError(f"--decode and --rounds must be >= 1, got {args.decode} and {args.rounds}")
    context_n = parse_size(args.context)
    if context_n < engine_module.IVF_MIN_BYTES:
        raise HashHopError(f"--context {args.context}: the engine keeps 8-bit keys below {engine_module.IVF_MIN_BYTES:,} bytes and rescores nothing there")
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine(load_ltm2(args.weights))
    context = context_of(held_out_corpus(), context_n)
    t0 = time.perf_counter()
    engine.prefill(context, progress=True)
    prefill_s = time.perf_counter() - t0
    base = engine.snapshot()
    engine.generate(4)  # warm
    windows_of, batched = engine._compute_exact_keys, engine._pointer_misses
    counted = [0, 0]  # windows, calls

    def counting(entries: np.ndarray) -> np.ndarray:
        counted[0] += len(entries)
        counted[1] += 1
        return windows_of(entries)

    def one_call_each(block: int, ids: np.ndarray, q: int) -> np.ndarray:  # none batched: _follow asks for each
        return np.zeros(0, np.int64)

    engine._compute_exact_keys = counting
    cached = engine_module.EXACT_KEYS_CACHED
    runs: dict[str, list[tuple[float, int, int, bytes]]] = {label: [] for label, *_ in VARIANTS}
    for _ in range(args.rounds):
        for label, rescore, cache, batch in VARIANTS:
            engine.restore(base)  # also empties the cache
            engine.rescore = rescore
            engine._pointer_misses = batched if batch else one_call_each
            engine_module.EXACT_KEYS_CACHED = cached if cache is None else cache
            counted[:] = [0, 0]
            t0 = time.perf_counter()
            out = engine.generate(args.decode)
            runs[label].append((time.perf_counter() - t0, counted[0], counted[1], out))
    engine_module.EXACT_KEYS_CACHED = cached
    engine._pointer_misses = batched
    rows = {
        label: (args.decode / float(np.median([s for s, *_ in done])), np.mean([w for _, w, _, _ in done]) / args.decode, np.mean([c for _, _, c, _ in done]) / args.decode, done[0][3])
        for label, done in runs.items()
    }
    written = rows[VARIANTS[0][0]][3]
    same = written == rows[VARIANTS[1][0]][3]
    ref_bps, ref_windows, _, _ = rows[VARIANTS[1][0]]
    command = "python benchmarks/ltm2_rescore_cost.py " + shlex.join(sys.argv[1:])
    lines = [
        f"What rescoring costs LTM-2's greedy decode after {context_n:,} bytes of held-out code (compact memory, "
        f"{engine.bytes_per_context_byte():.1f} B per context byte; prefill {len(context) / prefill_s:,.0f} bytes/s). Command: `{command}`. "
        f"Each row: the median of {args.rounds} decodes of {args.decode} bytes from the same prefilled state, the rows taking turns.",
        "",
        "| decode | encoder windows recomputed per decoded byte | vs nothing cached | encoder calls per decoded byte | greedy decode bytes/s | vs nothing cached |",
        "|---|---|---|---|---|---|",
        *[
            f"| {label} | {windows:.1f} | {windows / ref_windows if ref_windows else float('nan'):.2f}x | {calls:.2f} | {bps:.1f} | {bps / ref_bps:.2f}x |"
            for label, (bps, windows, calls, _) in rows.items()
        ],
        "",
        f"The cached and uncached decodes wrote {'the same' if same else 'different'} {args.decode} bytes.",
        # named by hash so two sections (weights, sessions, VMs) can be compared on the bytes decoded, not only on counts
        f"The default's {args.decode} bytes: sha256 `{hashlib.sha256(written).hexdigest()[:16]}`, starting {json.dumps(written[:48].decode('latin-1'))}.",
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
