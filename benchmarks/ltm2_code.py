"""LTM-2 on real code it never saw: bits per byte by context size, and what the engine costs.

The held-out corpus (``hashhop/lab/corpus.py``: CPython's standard library without tests, torch, numpy, matplotlib,
networkx last, in sorted path order); the last ``--scored`` bytes are scored, each byte given everything before it
in a context of C bytes: the C bytes before the scored range are prefilled (encoder only), then the scored bytes
are read a chunk at a time (``Engine.feed_chunks``; the memory grows as they are read). The same for the trained
network with its memory off (local window only) and for the untrained network. Then the engine's costs: prefill
bytes/s, bytes kept per context byte, and greedy decode bytes/s after contexts of each size.

Usage: python benchmarks/ltm2_code.py [--weights PATH] [--contexts 2k,100k,1M] [--scored 200k] [--decode 64]
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402
from hashhop.lab.corpus import build_corpus, held_out_files  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.ltm2.engine import SCAN_CAP_LISTS, Engine  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.spec import parse_size  # noqa: E402

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs", "heldout_code.bin")


def held_out_corpus(path: str = CACHE) -> np.ndarray:
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        build_corpus(path, held_out_files())
    return np.memmap(path, dtype=np.uint8, mode="r")


def bits_per_byte(engine: Engine, context: bytes, scored: bytes, chunk: int = 1024) -> tuple[float, float]:
    """(bits per byte of ``scored`` after ``context``, seconds)."""
    started = time.perf_counter()
    first = engine.prefill(context)
    total_bits = -float(torch.log_softmax(first, -1)[scored[0]]) / math.log(2)
    targets = torch.tensor(list(scored[1:]), dtype=torch.long)
    done = 0
    for a in range(0, len(scored) - 1, chunk * 8):
        rows = engine.feed_chunks(scored[a : a + chunk * 8], chunk=chunk)
        want = targets[a : a + len(rows)]
        logp = torch.log_softmax(rows[: len(want)], -1).gather(1, want[:, None])
        total_bits -= float(logp.sum()) / math.log(2)
        done += len(want)
    return total_bits / len(scored), time.perf_counter() - started


def parse_rescores(text: str) -> tuple[int | None, ...]:
    """``--rescores``: entries per read scored again with exact keys, whole numbers >= 0 or ``default`` (None: the
    engine's default, all of a read's entries on the compact memory, none on 8-bit keys) separated by commas."""
    try:
        rescores = tuple(None if x.strip() == "default" else int(x) for x in text.split(","))
    except ValueError:
        rescores = ()
    if not rescores or min((r for r in rescores if r is not None), default=0) < 0:
        raise HashHopError(f"--rescores takes whole numbers >= 0 or 'default' separated by commas, got {text!r}")
    return rescores


def parse_top_ks(text: str) -> tuple[int | None, ...]:
    """``--top-ks``: entries a read keeps per head, whole numbers >= 1 separated by commas; empty: the network's own."""
    if not text.strip():
        return (None,)
    try:
        top_ks = tuple(int(x) for x in text.split(","))
    except ValueError:
        top_ks = ()
    if not top_ks or min(top_ks) < 1:
        raise HashHopError(f"--top-ks takes whole numbers >= 1 separated by commas, got {text!r}")
    return top_ks


def read_settings(top_ks: tuple[int | None, ...], rescores: tuple[int | None, ...]) -> list[tuple[int | None, int | None]]:
    """Each (top_k, rescore) pair once: rescoring more entries than a read keeps is the same as rescoring all of them."""
    pairs = []
    for top_k in top_ks:
        for rescore in rescores:
            pair = (top_k, min(rescore, top_k) if top_k and rescore is not None else rescore)
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def decode_speed(
    engine: Engine, context: bytes, count: int, scan_caps: list[float], settings: list[tuple[int | None, int | None]] = ((None, None),), rounds: int = 3
) -> list[tuple]:
    """Prefill once, then greedy decode ``count`` bytes with each read setting (top_k, rescore) and scan cap
    (search-time settings: entries a read keeps per head; entries it scores again with exact keys; lists' worth of
    codes a read may scan), each from the same prefilled state (a prefix-cache snapshot, as a served request
    continues a preloaded context), the settings taking turns ``rounds`` times: every row decodes the same context
    and this VM's drift spreads over all of them. Per setting: (top_k, rescore, cap, prefill bytes/s, bytes kept per
    context byte, median greedy decode bytes/s, codes scanned per index search)."""
    import faiss

    t0 = time.perf_counter()
    engine.prefill(context, progress=True)
    prefill_s = time.perf_counter() - t0
    kept = engine.bytes_per_context_byte()
    base = engine.snapshot()
    engine.generate(4)  # warm
    resolved = []  # the settings as this memory takes them ("default" rescoring: all entries on the compact memory)
    for top_k, rescore in settings:
        k = top_k or engine.top_k
        pair = (k, min(k, rescore if rescore is not None else k if engine.memory.compact else 0))
        resolved += [pair] if pair not in resolved else []
    runs = {(top_k, rescore, cap): [] for top_k, rescore in resolved for cap in scan_caps}
    stats = faiss.cvar.indexIVF_stats
    for _ in range(rounds):
        for top_k, rescore, cap in runs:
            engine.restore(base)
            engine.top_k, engine.rescore = top_k, rescore
            engine.memory.set_scan_cap(cap)
            stats.reset()
            t0 = time.perf_counter()
            engine.generate(count)
            runs[top_k, rescore, cap].append((time.perf_counter() - t0, stats.ndis, stats.nq))
    rows = []
    for (top_k, rescore, cap), done in runs.items():
        decode_s = float(np.median([s for s, *_ in done]))
        scanned, searched = sum(d[1] for d in done), sum(d[2] for d in done)  # index searches: per head and block
        rows.append((top_k, rescore, cap, len(context) / prefill_s, kept, count / decode_s, scanned / searched if searched else float("nan")))
    return rows


def context_of(corpus: np.ndarray, length: int) -> bytes:
    """The last ``length`` bytes of the corpus; a longer context is the whole corpus then its beginning again."""
    if length <= len(corpus):
        return corpus[len(corpus) - length :].tobytes()
    return np.resize(np.asarray(corpus), length).tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--contexts", default="2k,100k,1M", help="context sizes before the scored bytes ('all': every byte before them)")
    ap.add_argument("--scored", default="200k", help="bytes scored at the end of the held-out corpus")
    ap.add_argument("--ablation-context", default="100k", help="context of the memory-off and untrained rows")
    ap.add_argument("--decode-contexts", default="1M,10M", help="contexts for the prefill / decode speed rows")
    ap.add_argument("--decode", type=int, default=64, help="bytes generated for the decode speed")
    ap.add_argument("--rounds", type=int, default=3, help="decodes per setting, the settings taking turns (rows: the median)")
    ap.add_argument("--ivf-from", default="1M", help="contexts this long are searched through inverted lists (nprobe 32)")
    ap.add_argument("--scan-caps", default=str(SCAN_CAP_LISTS), help="decode rows per scan cap (lists' worth of codes a read scans at most)")
    ap.add_argument(
        "--rescores", default="0",
        help="bits-per-byte and decode rows per rescore count (a read's best entries scored again with exact keys from the text; 'default': the "
        "engine's, every entry of a read on the compact memory). 0 by default: scoring every position's reads again costs an encoder window "
        "per entry, hours at 1M, and moved bits per byte by 0.1%% (RESULTS.md, ltm2_code_rescore)",
    )
    ap.add_argument("--top-ks", default="", help="rows per entries a read keeps per head (with each --rescores count; default: the network's own k)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--speed-only", action="store_true", help="only the prefill / memory / decode rows")
    ap.add_argument("--section", default="ltm2_code")
    args = ap.parse_args()
    settings = read_settings(parse_top_ks(args.top_ks), parse_rescores(args.rescores))
    if args.decode < 1 or args.rounds < 1:
        raise HashHopError(f"--decode and --rounds must be >= 1, got {args.decode} and {args.rounds}")
    if args.speed_only and not args.decode_contexts.strip(","):
        raise HashHopError("--speed-only measures the --decode-contexts: give at least one")
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = held_out_corpus()
    scored_n = parse_size(args.scored)
    scored = corpus[len(corpus) - scored_n :].tobytes()
    trained = load_ltm2(args.weights)
    rows = []
    base = None
    available = len(corpus) - scored_n
    if scored_n < 2 or available < 1:
        raise HashHopError(f"--scored must be 2 to {len(corpus) - 1:,} bytes (the corpus holds {len(corpus):,}), got {args.scored}")
    contexts = [available if x.strip() == "all" else parse_size(x) for x in args.contexts.split(",")]
    if any(not 0 < n <= available for n in contexts):
        raise HashHopError(f"--contexts: each is 1 to {available:,} bytes (the code before the scored bytes) or 'all', got {args.contexts}")
    for context_n in contexts if not args.speed_only else ():
        context = corpus[len(corpus) - scored_n - context_n : len(corpus) - scored_n].tobytes()
        index = "ivf" if context_n >= parse_size(args.ivf_from) else "flat"
        for top_k, rescore in settings:
            engine = Engine(trained, index=index, top_k=top_k, rescore=rescore)
            bpb, seconds = bits_per_byte(engine, context, scored)
            base = base if base is not None else bpb
            reads = f", top {top_k}" if top_k else ""
            rows.append((f"trained, context {context_n:,} ({index} index{reads}{f', rescore {engine.rescore}' if engine.rescore else ''})", bpb, bpb / base - 1, seconds))
            print(rows[-1], flush=True)
    ablation_n = parse_size(args.ablation_context)
    context = corpus[len(corpus) - scored_n - ablation_n : len(corpus) - scored_n].tobytes()
    off = load_ltm2(args.weights)
    off.blocks[0].mixer.memory_enabled = False
    ablations = () if args.speed_only else ((f"memory off, context {ablation_n:,}", off), (f"untrained, context {ablation_n:,}", load_ltm2(args.weights, random_init=True)))
    for label, model in ablations:
        bpb, seconds = bits_per_byte(Engine(model), context, scored)
        rows.append((label, bpb, bpb / base - 1, seconds))
        print(rows[-1], flush=True)
    speed = []
    try:
        scan_caps = [float(x) for x in args.scan_caps.split(",")]
    except ValueError:
        scan_caps = []
    if not scan_caps or not all(0 < cap < math.inf for cap in scan_caps):
        raise HashHopError(f"--scan-caps takes positive numbers separated by commas, got {args.scan_caps!r}")
    for context_n in (parse_size(x) for x in args.decode_contexts.split(",") if x.strip()):
        engine = Engine(trained)
        for top_k, rescore, cap, prefill_bps, kept, decode_bps, scanned in decode_speed(engine, context_of(corpus, context_n), args.decode, scan_caps, settings, args.rounds):
            speed.append((context_n, cap, prefill_bps, kept, decode_bps, scanned, "ivf" if engine.memory.quantizers else "flat", top_k, rescore))
            print(speed[-1], flush=True)
        del engine
    command = "python benchmarks/ltm2_code.py " + shlex.join(sys.argv[1:])
    lines = [
        f"LTM-2 on the held-out code (never trained on): the last {scored_n:,} bytes of the corpus scored after a context of "
        f"the code before them. Command: `{command.strip()}`.",
        "",
        "| model, context before the scored bytes | bits per byte | vs the first row | seconds |",
        "|---|---|---|---|",
        *[f"| {label} | {bpb:.3f} | {rel:+.1%} | {s:.0f} |" for label, bpb, rel, s in rows],
    ]
    if speed:
        lines += [
            "",
            "| context bytes | prefill bytes/s | bytes kept per context byte | scan cap (lists) | codes scanned per search | entries read per head | entries rescored per read | greedy decode bytes/s | index |",
            "|---|---|---|---|---|---|---|---|---|",
            *[f"| {n:,} | {p:,.0f} | {k:.1f} | {c:g} | {sc:,.0f} | {t} | {r} | {d:.1f} | {kind} |" for n, c, p, k, d, sc, kind, t, r in speed],
            "",
            f"Greedy decode: the median of {args.rounds} decodes of {args.decode} bytes per row, each from the same prefilled state (the settings taking turns).",
        ]
    if args.speed_only:
        longer = f" Contexts longer than the corpus ({len(corpus):,} bytes) are the corpus then its beginning again." if any(n > len(corpus) for n, *_ in speed) else ""
        lines = [lines[0].split(":")[0] + f" (engine costs only). Command: `{command.strip()}`.{longer}", "", *lines[-(len(speed) + 4) :]]
        print("\n".join(lines))
        if args.section:
            update_section(args.section, "\n".join(lines))
        return
    curve = [
        (int(label.split("context ")[1].split(" ")[0].replace(",", "")), bpb, label.split(" index")[1].rstrip(")"))
        for label, bpb, _, _ in rows
        if label.startswith("trained")
    ]
    name = "ltm2_code_bpb.png" if args.section in ("", "ltm2_code") else f"{args.section}_bpb.png"  # one plot per section
    plot = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots", name)
    plot_curve(curve, rows, plot)
    lines += ["", f"![bits per byte by context](plots/{os.path.basename(plot)})"]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


def plot_curve(curve: list[tuple[int, float, str]], rows: list, path: str) -> None:
    """curve: (context bytes, bits per byte, read setting, e.g. ", top 16, rescore 16") of the trained rows, one line
    per read setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for setting in dict.fromkeys(r for _, _, r in curve):
        points = [(c, b) for c, b, r in curve if r == setting]
        ax.plot([c for c, _ in points], [b for _, b in points], "o-", label="LTM-2, trained" + setting)
    for label, bpb, _, _ in rows:
        if not label.startswith("trained"):
            ax.axhline(bpb, ls="--", lw=1, color="grey" if "memory" in label else "red", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("context before the scored bytes (bytes)")
    ax.set_ylabel("bits per byte (held-out code)")
    ax.set_title("LTM-2 on code it never saw")
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    run_script(main)
