"""benchmarks/ltm2_index_kinds.py: its indexes are built as the engine's and its shares count what they find."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

from ltm2_index_kinds import build, measure  # noqa: E402


def test_exact_lists_probed_in_full_find_every_exact_best_and_codes_are_the_engines_size():
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((8192, 64)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    queries = keys[rng.choice(len(keys), 40, replace=False)] + 0.05 * rng.standard_normal((40, 64)).astype(np.float32)
    truth = np.argsort(-(queries @ keys.T), axis=1)[:, :10]
    everywhere = 4**3  # 8192 keys / 1024 per list -> 2 x 2^3 half-centroids, 64 lists: probe them all
    index, _parts = build("exact keys in the same lists", keys, keys[:4096], everywhere)
    ms, top1, top5, top10, code = measure(index, queries, truth)
    assert ms > 0 and top1 == top5 == top10 == 1.0 and code == 64 * 4
    for kind in ("the engine's: PQ 8-bit, scan capped", "fast-scan PQ 4-bit (nprobe 64)"):
        index, _parts = build(kind, keys, keys[:4096], everywhere)
        ms, top1, top5, top10, code = measure(index, queries, truth)
        assert code == 16 and 0 <= top10 <= 1 and top1 > 0.5  # 16 B a key; a query near its key finds it mostly
