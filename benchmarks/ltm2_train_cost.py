"""What a longer memory costs LTM-2's training: seconds per step at the same bytes per step, rows of 2K .. 16K bytes.

In training the memory spans one row (the reads are dense over it), so longer rows are how training sees more
entries per read, the regime where the trained reads lose sharpness (docs/ltm2.md). Each row of the table times
forward + backward of the shipped config (``hashhop/ltm2/config.py``, stage 2: the read loss on) on batches of
``--bytes`` bytes cut into rows of each length; the first step is a warm-up.

Usage: python benchmarks/ltm2_train_cost.py [--seq-lens 2048,4096,8192,16384] [--bytes 16384] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402

from hashhop.lab.data import IGNORE  # noqa: E402
from hashhop.lab.train import batch_for, build_model, weighted_read_targets  # noqa: E402
from hashhop.ltm2.config import ltm2_config  # noqa: E402
from hashhop.ltm2.train import RUNS  # noqa: E402

CORPUS = os.path.join(RUNS, "train_corpus.bin")  # where hashhop train --model ltm2 builds it


def step_seconds(seq_len: int, batch: int, corpus: str, steps: int, read_top_k: int = 0) -> float:
    """Median seconds of forward + backward (language-model loss + read loss) after one warm-up step."""
    cfg = ltm2_config(corpus, stage=2, read_top_k=read_top_k).replace(**{"task.seq_len": seq_len, "batch_size": batch})
    model = build_model(cfg)
    times = []
    for step in range(steps + 1):
        inputs, targets, reads = batch_for(cfg, step, 0, True)
        started = time.perf_counter()
        wanted, weights = weighted_read_targets(reads, cfg)  # as the trainer: kinds weighted 0 cost nothing
        logits, read_sums, _ = model(inputs, read_targets=wanted)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE) + (weights * read_sums).sum()
        loss.backward()
        if step:
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq-lens", default="2048,4096,8192,16384", help="row lengths in bytes (the memory each read spans)")
    ap.add_argument("--bytes", type=int, default=16384, help="bytes per step (rows x row length)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row length")
    ap.add_argument("--corpus", default=CORPUS, help="the training code corpus (python -m hashhop.ltm2.data --out PATH)")
    ap.add_argument("--read-top-k", default="0", help="rows per value: reads over each query's k best entries (0: dense), e.g. 0,64")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--section", default="ltm2_train_cost", help="RESULTS.md section to write ('' for none)")
    args = ap.parse_args()
    try:
        seq_lens = [int(x) for x in args.seq_lens.split(",")]
    except ValueError:
        ap.error(f"--seq-lens must be whole numbers separated by commas, got {args.seq_lens!r}")
    try:
        top_ks = [int(x) for x in args.read_top_k.split(",")]
    except ValueError:
        top_ks = [-1]
    if any(not 0 <= k <= 1 << 16 for k in top_ks):
        ap.error(f"--read-top-k must be whole numbers from 0 to {1 << 16} separated by commas, got {args.read_top_k!r}")
    if args.steps < 1 or args.bytes < 1 or any(s < 256 or args.bytes % s for s in seq_lens):
        ap.error(f"--steps and --bytes must be >= 1 and each --seq-lens value >= 256 and a divisor of --bytes {args.bytes}")
    if not os.path.exists(args.corpus):
        ap.error(f"no training corpus at {args.corpus}: build it with python -m hashhop.ltm2.data --out PATH and pass --corpus PATH")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for top_k in top_ks:
        for seq_len in seq_lens:
            seconds = step_seconds(seq_len, args.bytes // seq_len, args.corpus, args.steps, top_k)
            rows.append((seq_len, args.bytes // seq_len, top_k, seconds))
            print(rows[-1], flush=True)
    base = rows[0][3]
    command = "python benchmarks/ltm2_train_cost.py " + shlex.join(sys.argv[1:])
    lines = [
        f"LTM-2 training cost by row length (the memory a read spans in training), {args.bytes:,} bytes per step, "
        f"forward + backward with the read loss, {torch.get_num_threads()} threads. Command: `{command.strip()}`.",
        "",
        "| row bytes | rows | read | seconds per step | vs the first row |",
        "|---|---|---|---|---|",
        *[f"| {s:,} | {b} | {f'top {k}' if k else 'dense'} | {t:.2f} | {t / base:.2f}x |" for s, b, k, t in rows],
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
