"""Which inverted-list index should hold LTM-2's compact keys: search time against what the search finds.

A decode step's reads search each head's index for its 64 best entries and (by default) rescore those with exact
keys, so what the index decides is which entries are among the 64, and what it costs is the scan. This script
prefills the engine with the last C bytes of held-out code, records the real unit queries of a greedy decode's
reads, computes every entry's exact key, and builds per head, over the same keys, lists and rotation:

- the engine's compact index: product-quantised keys, 8 bits per 4 rotated dimensions (16 B), scan capped at
  ``SCAN_CAP_LISTS`` x nprobe x ``LIST_ENTRIES`` codes;
- the same without the cap;
- faiss's fast-scan product quantiser (4 bits per 2 dimensions: the same 16 B, scanned with SIMD lookup tables) at
  several nprobe;
- exact keys in the same lists (1 KB a key: an upper bound on what the lists allow, not a candidate).

Per kind: milliseconds per single-query search (one OpenMP thread, as the engine's decode step) and how often the
exact best entry over the whole context (and the exact top 5 and 10) is among the 64 returned. The exact search is
a matrix product over every key (the truth, not a measured kind).

Usage: python benchmarks/ltm2_index_kinds.py [--context 1M] [--decode 128] [--nprobes 48,64,96]
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
from ltm2_code import context_of, held_out_corpus  # noqa: E402

import hashhop.ltm2.engine as engine_module  # noqa: E402
from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.ltm2.engine import Engine, Memory  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.spec import parse_size  # noqa: E402

TOP_K = 64


def decode_queries(engine: Engine, decode: int) -> np.ndarray:
    """The unit queries (n, heads, hk) of a greedy decode's reads after the prefilled context."""
    queries, search = [], Memory.search

    def recording(memory, unit, top_k):
        queries.append(unit.copy())
        return search(memory, unit, top_k)

    Memory.search = recording
    try:
        engine.generate(decode)
    finally:
        Memory.search = search
    return np.stack(queries)


def exact_keys(engine: Engine, context: bytes) -> np.ndarray:
    """Every entry's exact unit keys (n, heads, hk): the encoder over the context, as the prefill writes them."""
    buf, reach, chunk, keys = np.frombuffer(context, np.uint8), engine.reach, 1 << 16, []
    for a in range(0, len(buf), chunk):
        lo = max(0, a - reach + 1)
        ids = torch.from_numpy(buf[lo : a + chunk].astype(np.int64))
        keys.append(engine._keys(engine.net.encoder.forward_symbols(ids, engine.byte_inputs[ids], engine.tap_table)[a - lo :]))
    return np.concatenate(keys)


def build(kind: str, keys: np.ndarray, sample: np.ndarray, nprobe: int):
    """One head's index of ``kind`` over keys (n, hk), its lists and rotation learnt from sample (m, hk) as the engine's."""
    faiss = engine_module._faiss()
    hk = keys.shape[1]
    bits = min(10, max(3, round(math.log2(max(1, len(keys) // engine_module.LIST_ENTRIES)) / 2)))
    quantizer = faiss.MultiIndexQuantizer(hk, 2, bits)
    if kind == "exact keys in the same lists":
        index, subspaces = faiss.IndexIVFFlat(quantizer, hk, 4**bits, faiss.METRIC_INNER_PRODUCT), hk // engine_module.PQ_DIMS_PER_BYTE
    elif kind.startswith("fast-scan"):
        subspaces = hk // 2
        index = faiss.IndexIVFPQFastScan(quantizer, hk, 4**bits, subspaces, 4, faiss.METRIC_INNER_PRODUCT)
    else:
        subspaces = hk // engine_module.PQ_DIMS_PER_BYTE
        index = faiss.IndexIVFPQ(quantizer, hk, 4**bits, subspaces, 8, faiss.METRIC_INNER_PRODUCT)
        if "capped" in kind:
            index.max_codes = int(engine_module.SCAN_CAP_LISTS * nprobe * engine_module.LIST_ENTRIES)
    index.quantizer_trains_alone = 1
    index.nprobe = nprobe
    rotation = faiss.OPQMatrix(hk, subspaces)
    rotation.niter, rotation.niter_pq_0, rotation.max_train_points = 4, 10, 16384
    wrapped = faiss.IndexPreTransform(rotation, index)
    wrapped.train(np.ascontiguousarray(sample, dtype=np.float32))
    wrapped.add(np.ascontiguousarray(keys, dtype=np.float32))
    return wrapped, (quantizer, index, rotation)  # the parts must outlive the wrapper


def measure(index, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float, int]:
    """(ms per single-query search, share of queries whose exact best is found, of the exact top 5, of the top 10,
    code bytes per key)."""
    faiss = engine_module._faiss()
    index.search(queries[:4], TOP_K)  # warm
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        started = time.perf_counter()
        for i in range(len(queries)):
            index.search(queries[i : i + 1], TOP_K)
        ms = (time.perf_counter() - started) / len(queries) * 1e3
    finally:
        faiss.omp_set_num_threads(threads)
    _, found = index.search(queries, TOP_K)
    shares = [np.mean([len(set(truth[i, :n]) & set(found[i])) / n for i in range(len(queries))]) for n in (1, 5, 10)]
    return ms, *shares, faiss.extract_index_ivf(index).code_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--context", default="1M", help="bytes of held-out code prefilled")
    ap.add_argument("--decode", type=int, default=128, help="bytes greedily decoded: their reads' queries are the test set")
    ap.add_argument("--nprobe", type=int, default=32, help="lists a search probes (the engine's: 32)")
    ap.add_argument("--nprobes", default="48,64,96", help="more nprobe values for the fast-scan kind")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--section", default="ltm2_index_kinds", help="RESULTS.md section to write ('' for none)")
    args = ap.parse_args()
    try:
        context_n, more = parse_size(args.context), [int(x) for x in args.nprobes.split(",") if x.strip()]
    except ValueError as e:
        raise HashHopError(f"--context / --nprobes: {e}") from None
    if context_n < 4 * engine_module.LIST_ENTRIES or args.decode < 1 or args.nprobe < 1 or any(n < 1 for n in more):
        raise HashHopError("give --context of at least 4K bytes, --decode >= 1 and nprobe values >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    torch.set_grad_enabled(False)
    engine = Engine(load_ltm2(args.weights))
    context = context_of(held_out_corpus(), context_n)
    engine.prefill(context, progress=True)
    queries = decode_queries(engine, args.decode)
    keys = exact_keys(engine, context)[: engine.memory.count]
    sample = engine._sample_keys(np.frombuffer(context, np.uint8))
    kinds = [("the engine's: PQ 8-bit, scan capped", args.nprobe), ("PQ 8-bit, no cap", args.nprobe)]
    kinds += [(f"fast-scan PQ 4-bit (nprobe {n})", n) for n in [args.nprobe, *more]] + [("exact keys in the same lists", args.nprobe)]
    rows = []
    for kind, nprobe in kinds:
        per_head = []
        for head in range(engine.cfg.memory_heads):
            truth = np.argsort(-(queries[:, head] @ keys[:, head].T), axis=1)[:, :10]
            index, _parts = build(kind, keys[:, head], sample[:, head], nprobe)
            per_head.append(measure(index, np.ascontiguousarray(queries[:, head]), truth))
        ms, top1, top5, top10, code = np.mean(per_head, axis=0)
        rows.append((kind, nprobe, int(code), ms, top1, top5, top10))
        print(f"{kind} (nprobe {nprobe}): {ms:.3f} ms a search, exact best found {top1:.3f}, top 10 {top10:.3f}", flush=True)
    base = rows[0][3]
    table = (
        "| index | nprobe | code bytes per key and head | ms per search | vs the engine's | exact best found | exact top 5 found | exact top 10 found |\n"
        "|---|---|---|---|---|---|---|---|\n"
        + "\n".join(f"| {k} | {n} | {c} | {ms:.3f} | {ms / base:.2f}x | {a:.3f} | {b:.3f} | {t:.3f} |" for k, n, c, ms, a, b, t in rows)
    )
    print(table)
    if args.section:
        command = "python benchmarks/ltm2_index_kinds.py " + shlex.join(sys.argv[1:])
        intro = (
            f"Index kinds for LTM-2's compact keys over {len(keys):,} entries of held-out code (the last {context_n:,} bytes),"
            f" tested with the {len(queries)} reads (x {engine.cfg.memory_heads} heads) of a {args.decode}-byte greedy decode"
            " after them; the same lists (an inverted multi-index) and learnt rotation for every kind, mean over heads. ms per"
            f" search: one query at a time on one thread, top {TOP_K}. Found: the share of queries whose exact best entry over"
            " the whole context (and of the exact top 5 / 10) is among the 64 returned; the engine rescores those 64 with"
            f" exact keys, so this is what its reads can find. Command: `{command.strip()}` ({time.perf_counter() - started:.0f} s).\n"
        )
        update_section(args.section, intro + "\n" + table)


if __name__ == "__main__":
    run_script(main)
