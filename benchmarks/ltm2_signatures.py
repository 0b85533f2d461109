"""LTM-2 signature recall on the held-out code: the prompt is the corpus then ``def NAME(``; the model writes the
parameter list; exact bytes (``hashhop/lab/signatures.py``).

``--context all`` is the issue's definition (the whole 82 MB corpus, 100 names defined once). A shorter
``--context N`` takes the corpus's last N bytes as the prompt and 100 names defined once in the whole corpus
whose definition lies inside those bytes (picked the same way), so the answer is always in the context.
The untrained network and the trained one with its memory off are scored on the same prompts.

Usage: python benchmarks/ltm2_signatures.py [--weights PATH] [--context 10M] [--count 100]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402
from ltm2_code import CACHE, held_out_corpus, parse_rescores  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402
from hashhop.lab.corpus import held_out_files  # noqa: E402
from hashhop.lab.signatures import expected_text, find_signatures, pick_recall_set, prompt_suffix, score_signature  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.ltm2.engine import Engine  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.spec import parse_size  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--context", default="all", help="'all' (the whole corpus) or the last N bytes of it")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--variants", default="trained,memory off")
    ap.add_argument(
        "--rescores", default="default",
        help="rows of the memory's variants per rescore count (a read's best entries scored again with exact keys from the text; 'default': the "
        "engine's, every entry of a read on the compact memory), after one prefill",
    )
    ap.add_argument("--beams", type=int, default=1, help="answers by a beam search of this width (1: greedy decoding, the engine's default)")
    ap.add_argument("--per-byte", action="store_true", help="the beam compares answers by log-probability per byte (Engine.length_penalty 1)")
    ap.add_argument("--section", default="ltm2_signatures")
    args = ap.parse_args()
    if args.beams < 1:
        raise HashHopError(f"--beams must be a whole number >= 1, got {args.beams}")
    rescores = parse_rescores(args.rescores)
    corpus = held_out_corpus()
    size = len(corpus) if args.context == "all" else min(len(corpus), parse_size(args.context))
    start = len(corpus) - size
    signatures = {name: sig for name, sig in find_signatures(held_out_files()).items() if sig.offset >= start}
    chosen = pick_recall_set(signatures, min(args.count, len(signatures)))
    context = corpus[start:].tobytes()
    results = {}
    for variant in (v.strip() for v in args.variants.split(",")):
        lm = load_ltm2(args.weights, random_init=variant == "untrained")
        if variant == "memory off":
            lm.blocks[0].mixer.memory_enabled = False
        engine = Engine(lm, beams=args.beams, length_penalty=1.0 if args.per_byte else 0.0)
        seen = context if engine.context_reach is None else context[-engine.context_reach :]  # memory off: same output
        t0 = time.perf_counter()
        engine.prefill(seen, progress=True)
        prefill_s = time.perf_counter() - t0
        kept = engine.bytes_per_context_byte()
        base = engine.snapshot()
        for rescore in rescores if engine.context_reach is None else (0,):  # memory off reads nothing to rescore
            engine.rescore = rescore
            right, generated, decode_s = 0, 0, 0.0
            t1 = time.perf_counter()
            for sig in tqdm(chosen, desc=f"{variant}, rescore {engine.rescore}", leave=False):
                engine.restore(base)
                engine.feed(prompt_suffix(sig))
                t2 = time.perf_counter()
                out = engine.generate(len(expected_text(sig)) + 2)
                decode_s += time.perf_counter() - t2
                generated += len(out)
                right += score_signature(out, sig)
            speed = (len(seen) / prefill_s, kept, generated / max(decode_s, 1e-9)) if engine.context_reach is None else None
            label = f"{variant}, rescore {engine.rescore}" if engine.context_reach is None else variant
            results[label] = (right, len(chosen), prefill_s, time.perf_counter() - t1, speed)
            print(label, results[label], flush=True)
    command = "python benchmarks/ltm2_signatures.py " + shlex.join(sys.argv[1:])
    lines = [
        f"Signature recall on the held-out code: prompt = the last {size:,} bytes of the corpus (`{os.path.basename(CACHE)}`, "
        f"{len(corpus):,} bytes) then `def NAME(`; {len(chosen)} names defined once in the corpus, inside the prompt; "
        f"exact parameter bytes. Command: `{command.strip()}`.",
        "",
        f"| variant | exact | prefill seconds | prompts' seconds | prefill bytes/s | bytes kept per context byte | {'greedy decode' if args.beams == 1 else f'beam-{args.beams} decode'} bytes/s |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {v} | {r}/{n} | {p:.0f} | {s:.0f} | " + ("{:,.0f} | {:.1f} | {:.1f} |".format(*speed) if speed else "- | - | - |")
            for v, (r, n, p, s, speed) in results.items()
        ],
        "",
        "Memory off reads nothing, so it is run on the last bytes it can see (Engine.context_reach: the same output). "
        "Rows of one variant share its prefill; \"rescore K\": each read's K best entries by the index's codes scored "
        "again with exact keys recomputed from the text (Engine(rescore=K); the memory kept is the same; the engine's "
        "default on the compact memory rescores all of a read's entries).",
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
