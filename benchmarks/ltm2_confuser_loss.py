"""How well LTM-2's keys tell a read's target from confusers: the auxiliary read loss with confusers added.

``MixerConfig.read_confusers`` (``python -m hashhop.ltm2.train --read-confusers N``) adds N confusers to every
supervised read's softmax in training: windows copied from the reads' target entries with their letters and digits
replaced by random ones of the same kind (other links of the same shape, as a long memory holds by the hundred
thousand). This script scores given weights on the same stage-2 batches (drawn with a seed the training runs do not
use) with 0 and more confusers, and prints the mean read loss per supervised jump read (nats: -log of the read's
share on its targets) side by side: how much a crowd of same-shape links costs each set of weights' reads.

Usage: python benchmarks/ltm2_confuser_loss.py --weights A.safetensors,B.safetensors [--confusers 0,8192,65536]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402
from hashhop.lab.train import batch_for, weighted_read_targets  # noqa: E402
from hashhop.ltm2.config import ltm2_config  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402

BATCH_SEED = 5  # stage 2 draws its batches with seed + 1 (6 here); the training runs use seed 0 (batches of seed 1)


def recall_batches(corpus: str, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` stage-2 batches (one 16K-byte row each) that hold supervised reads: (inputs, read targets)."""
    cfg = ltm2_config(corpus, steps=1, stage=2, init_from="unused", seed=BATCH_SEED)
    found = []
    for step in range(50 * count):
        inputs, _, reads = batch_for(cfg, step, read_targets=True)
        if (reads >= 0).any():
            found.append((inputs, weighted_read_targets(reads, cfg)[0]))
            if len(found) == count:
                return found
    raise HashHopError(f"found {len(found)} batches with supervised reads in {50 * count} steps")


@torch.no_grad()
def jump_read_loss(weights: str, batches: list, confusers: int) -> float:
    """Mean read loss (nats) per supervised jump read of ``weights`` with ``confusers`` confusers (0: the row alone)."""
    lm = load_ltm2(weights).train()  # confusers join the read loss in training mode only (no weights change here)
    net = lm.blocks[0].mixer
    net.cfg = dataclasses.replace(net.cfg, read_confusers=confusers, pointer_jitter=1.0)
    total, count = 0.0, 0
    for inputs, targets in batches:
        torch.manual_seed(0)  # the same confusers for every set of weights
        _, sums, covered = lm(inputs, read_targets=targets)
        total, count = total + float(sums[0]), count + int(covered[0])
    return total / max(count, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="comma-separated LTM-2 weights files")
    ap.add_argument("--confusers", default="0,8192,65536", help="comma-separated confuser counts (0: the row alone)")
    ap.add_argument("--batches", type=int, default=4, help="stage-2 batches with supervised reads to score")
    ap.add_argument("--corpus", default="runs/ltm2_train_corpus.bin", help="the training code corpus (python -m hashhop.ltm2.data --out PATH)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--section", default="ltm2_confuser_loss")
    args = ap.parse_args()
    weights = [w.strip() for w in args.weights.split(",") if w.strip()]
    try:
        counts = [int(c) for c in args.confusers.split(",") if c.strip()]
    except ValueError:
        raise HashHopError(f"--confusers takes whole numbers, got {args.confusers!r}") from None
    if not weights or not counts or min(counts) < 0 or args.batches < 1:
        raise HashHopError("give --weights, --confusers counts >= 0 and --batches >= 1")
    for path in weights + [args.corpus]:
        if not os.path.isfile(path):
            raise HashHopError(f"no file {path}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    batches = recall_batches(args.corpus, args.batches)
    rows = {w: [jump_read_loss(w, batches, n) for n in counts] for w in weights}
    lines = [
        "LTM-2's auxiliary read loss per supervised jump read (nats: -log of the read's share on its targets, heads averaged)"
        f" on {len(batches)} stage-2 batches (16K-byte rows drawn with batch seed {BATCH_SEED}, not the training runs' seed), with confusers"
        " added to each read's softmax (windows copied from the targets' entries, letters and digits made random; the same"
        f" confusers for every weights file). Command: `python benchmarks/ltm2_confuser_loss.py {shlex.join(sys.argv[1:])}`"
        f" ({time.perf_counter() - started:.0f} s).",
        "",
        "| weights | " + " | ".join(f"{n:,} confusers" for n in counts) + " |",
        "|---|" + "---|" * len(counts),
        *[f"| {w} | " + " | ".join(f"{v:.3f}" for v in values) + " |" for w, values in rows.items()],
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
