"""LTM-2's greedy decode after a long context: this checkout's engine against an earlier commit's, side by side.

The decode speed of this 2-core VM moves by 10-20% between runs and sessions, so an engine change is measured by
decoding from the same prefilled context with both engines in one process, the two taking turns ``--rounds`` times
(each row: the median). Both load one saved context (``Engine.save``; written first with ``--context`` bytes of the
held-out code if the folder holds none), so the memory, index and text are the same bytes for both. The section says
whether the two engines wrote the same bytes: a change meant to make the decode cheaper must not change its output.

Usage: python benchmarks/ltm2_engine_ab.py --baseline REV --context-dir DIR [--context 100M] [--decode 128] [--rounds 6]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import machine, run_script, update_section  # noqa: E402
from ltm2_code import context_of, held_out_corpus  # noqa: E402

import hashhop.ltm2.engine as engine_module  # noqa: E402
from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.spec import parse_size  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def baseline_engine(rev: str):
    """hashhop/ltm2/engine.py as of commit ``rev``, imported as its own module."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:hashhop/ltm2/engine.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise HashHopError(f"--baseline {rev}: git cannot show hashhop/ltm2/engine.py at that revision") from None
    folder = tempfile.mkdtemp(prefix="ltm2_engine_ab_")
    path = os.path.join(folder, "engine_baseline.py")
    with open(path, "w") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("engine_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--baseline", required=True, help="the git revision whose hashhop/ltm2/engine.py is compared")
    ap.add_argument("--context-dir", required=True, help="a saved prefilled context (written here first if none)")
    ap.add_argument("--context", default="100M", help="bytes of held-out code to prefill when the folder holds none")
    ap.add_argument("--decode", type=int, default=128, help="bytes greedily decoded per run")
    ap.add_argument("--rounds", type=int, default=6, help="runs per engine, the two taking turns (rows: the median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--section", default="")
    args = ap.parse_args()
    if args.decode < 1 or args.rounds < 1 or args.threads < 1:
        raise HashHopError(f"--decode, --rounds and --threads must be >= 1, got {args.decode}, {args.rounds}, {args.threads}")
    torch.set_num_threads(args.threads)
    baseline = baseline_engine(args.baseline)
    lm = load_ltm2(args.weights)
    if not os.path.exists(os.path.join(args.context_dir, "state.pt")):
        context_n = parse_size(args.context)
        engine = engine_module.Engine(lm)
        print(f"prefilling {context_n:,} bytes of held-out code into {args.context_dir}", flush=True)
        engine.prefill(context_of(held_out_corpus(), context_n), progress=True)
        engine.save(args.context_dir)
        del engine
    engines = {}
    engine_module.Engine(lm).load(args.context_dir)  # a folder this engine cannot read fails here, in one line
    for label, module in ((f"engine at {args.baseline}", baseline), ("this checkout's engine", engine_module)):
        engine = module.Engine(lm)
        engine.load(args.context_dir)
        context_bytes = len(engine.text)
        start = engine.snapshot()
        engine.generate(8)  # warm (pages of the memory-mapped context, the compiled functions)
        engines[label] = (engine, start)
    times: dict[str, list[float]] = {label: [] for label in engines}
    written: dict[str, bytes] = {}
    for turn in range(args.rounds):
        for label, (engine, start) in engines.items():
            engine.restore(start)
            t0 = time.perf_counter()
            written[label] = engine.generate(args.decode)
            times[label].append(time.perf_counter() - t0)
        print(f"round {turn + 1}: " + ", ".join(f"{label} {args.decode / runs[-1]:.1f} B/s" for label, runs in times.items()), flush=True)
    rate = {label: args.decode / float(np.median(runs)) for label, runs in times.items()}
    old_label, old_rate = next(iter(rate.items()))
    same = len(set(written.values())) == 1
    command = "python benchmarks/ltm2_engine_ab.py " + shlex.join(sys.argv[1:])
    lines = [
        f"LTM-2's greedy decode after {context_bytes:,} bytes of held-out code (a saved context, loaded by both engines), "
        f"{args.decode} bytes a run, the two engines taking turns {args.rounds} times in one process. Command: `{command}`. "
        f"Machine: {machine()}.",
        "",
        "| engine | greedy decode bytes/s (median) | vs the baseline | bytes written (sha256) |",
        "|---|---|---|---|",
        *[
            f"| {label} | {value:.1f} | {value / old_rate:.2f}x | `{hashlib.sha256(written[label]).hexdigest()[:16]}` |"
            for label, value in rate.items()
        ],
        "",
        f"The two engines wrote {'the same' if same else 'different'} {args.decode} bytes. "
        f"Every round (bytes/s): " + "; ".join(f"{label}: " + ", ".join(f"{args.decode / s:.1f}" for s in runs) for label, runs in times.items()) + ".",
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
