"""How much the read stage supervises: jumps with a read target in its first steps, per queries-per-HashHop-row.

The read-loss stage (``hashhop/ltm2/config.py``, stage 2) trains one 16K-byte row a step; only HashHop rows carry
read targets (the links an answer jumps to), and each asks 2 .. ``hashhop_max_queries`` queries. This counts, for
the stage's own batches (``batch_for``, the same rows training sees), the rows holding any target and the
supervised jumps, for each ``--queries`` value.

Usage: python benchmarks/ltm2_read_targets.py --corpus runs/ltm2_train_corpus.bin [--queries 16,64] [--steps 12]
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402

from hashhop.cli.common import Parser  # noqa: E402
from hashhop.lab.train import batch_for, weighted_read_targets  # noqa: E402
from hashhop.ltm2.config import ltm2_config  # noqa: E402
from hashhop.ltm2.train import RUNS  # noqa: E402


def count(corpus: str, max_queries: int, steps: int) -> tuple[int, int]:
    """(rows holding a jump target, supervised jumps) over the read stage's first ``steps`` batches."""
    cfg = ltm2_config(corpus, stage=2, max_queries=max_queries)
    rows = jumps = 0
    for step in range(steps):
        _, _, reads = batch_for(cfg, step, 0, True)
        wanted, _ = weighted_read_targets(reads, cfg)
        per_row = (wanted[..., 0, :] >= 0).any(-1).sum(dim=(1, 2))  # kind 0: the jumps
        rows += int((per_row > 0).sum())
        jumps += int(per_row.sum())
    return rows, jumps


def main() -> None:
    ap = Parser(prog="python benchmarks/ltm2_read_targets.py", description=__doc__.split("\n\n")[0])  # one-line errors
    ap.add_argument("--corpus", default=os.path.join(RUNS, "train_corpus.bin"))
    ap.add_argument("--queries", default="16,64", help="hashhop_max_queries values, comma-separated")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--section", default="ltm2_read_targets", help="RESULTS.md section to write ('' for none)")
    args = ap.parse_args()
    try:
        values = [int(x) for x in args.queries.split(",")]
    except ValueError:
        ap.error(f"--queries must be whole numbers separated by commas, got {args.queries!r}")
    if not values or any(not 2 <= v <= 4096 for v in values) or args.steps < 1:
        ap.error("each --queries value must be from 2 to 4096, and --steps >= 1")
    if not os.path.exists(args.corpus):
        ap.error(f"no training corpus at {args.corpus}: build it with python -m hashhop.ltm2.data --out PATH")
    torch.set_num_threads(1)
    started = time.perf_counter()
    rows = []
    for value in values:
        holding, jumps = count(args.corpus, value, args.steps)
        rows.append(f"| {value} | {holding} of {args.steps} | {jumps} |")
        print(rows[-1], flush=True)
    table = "| HashHop queries per row, at most | rows with a jump target | supervised jumps |\n|---|---|---|\n" + "\n".join(rows)
    if args.section:
        command = "python benchmarks/ltm2_read_targets.py " + shlex.join(sys.argv[1:])
        intro = (
            f"LTM-2's read stage (one 16,384-byte row a step, seed 1): its first {args.steps} batches, as training makes"
            f" them, counted. Command: `{command.strip()}` ({time.perf_counter() - started:.0f} s).\n"
        )
        update_section(args.section, intro + "\n" + table)


if __name__ == "__main__":
    run_script(main)
