"""Average LTM-2 weight files (a uniform model soup) for evaluation: the mean of every weight over the files.

The weights to ship come from the training command (``python -m hashhop.ltm2.train ... --read-soup SEEDS`` trains
each seed's read stage and averages them with the same function); this script averages read stages already trained
apart, to see what a soup of them answers before training one. The files must hold the same network (the same
mixer config); the output's metadata is the first file's plus ``averaged_from`` (each file's name and sha256).

Usage: python benchmarks/ltm2_average.py A.safetensors B.safetensors [...] --out SOUP.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hashhop.checkpoint import read_checkpoint_meta, save_checkpoint  # noqa: E402
from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.ltm2.train import _sha256 as sha256  # noqa: E402
from hashhop.ltm2.train import average_weights  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", help="LTM-2 weight files (two or more)")
    ap.add_argument("--out", required=True, help="the averaged weights: PATH.safetensors")
    args = ap.parse_args()
    if len(args.weights) < 2:
        raise HashHopError(f"give two or more weight files to average, got {len(args.weights)}")
    if not args.out.endswith(".safetensors") or os.path.abspath(args.out) in {os.path.abspath(w) for w in args.weights}:
        raise HashHopError(f"--out names a new weights file PATH.safetensors, not one of the inputs, got {args.out}")
    models = [load_ltm2(path) for path in args.weights]
    networks = [read_checkpoint_meta(path)["config"]["model"] for path in args.weights]
    for path, network in zip(args.weights[1:], networks[1:]):
        if network != networks[0]:
            raise HashHopError(f"{path} holds another network than {args.weights[0]} (model configs differ): they cannot be averaged")
    meta = read_checkpoint_meta(args.weights[0])
    meta["averaged_from"] = [{"file": os.path.basename(path), "sha256": sha256(path)} for path in args.weights]
    save_checkpoint(args.out, average_weights(models), None, meta)
    print(json.dumps({"out": args.out, "sha256": sha256(args.out), "averaged_from": meta["averaged_from"]}, indent=1))


if __name__ == "__main__":
    try:
        main()
    except HashHopError as err:
        print(f"ltm2_average.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
