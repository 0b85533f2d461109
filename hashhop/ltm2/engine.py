"""LTM-2's inference engine: prefill writes the memory with the encoder only; decode runs the deep stack
one byte at a time, reading the memory through a key index.

It computes the trained network (``hashhop/ltm2/model.py``) with two differences, both measured by the
tests against the dense forward: a read scores only the ``top_k`` best keys of each head (plus the sink)
instead of every entry, and keys and values are stored in a few bits (``exact=True`` keeps float32 and a
flat index, for checking the computation itself).

What it keeps per context byte: the byte, plus below 512K bytes an 8-bit key per memory head (flat faiss scan)
and an 8-bit value with its fp16 scale (155 B at the shipped sizes); from 512K bytes the compact memory
(:class:`Memory`): product-quantised keys in inverted lists and 4-bit values (63 B at the shipped sizes).
On that compact memory a read's entries are by default scored again with exact keys recomputed from the text
(``rescore``), so only the choice of the ``top_k`` entries comes from the codes.
"""

from __future__ import annotations

import math
import os
import pickle
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from itertools import repeat

import numpy as np
import torch
import torch.nn.functional as F

from hashhop.errors import HashHopError
from hashhop.lab.mixers import apply_rope, rope_tables, rotary
from hashhop.lab.model import LM
from hashhop.ltm2.config import check_beams, check_length_penalty
from hashhop.ltm2.model import LTM2, POINTER_GAIN, POINTER_OFFSETS, pointer_gain, read_gain

PREFILL_CHUNK = 1 << 16  # bytes the encoder runs over at once
# contexts this long get inverted-list indexes and the compact memory ("auto"); shorter ones a flat 8-bit scan. Under
# 1M, so that a 1M-character prompt (its cached prefix a little short of 1,000,000 bytes) keeps 63 B per byte too.
IVF_MIN_BYTES = 1 << 19
SAMPLE_WINDOWS, SAMPLE_WINDOW = 48, 8192  # where IVF lists are learnt from: 48 stretches of 8 KB over the context
COMPACT_MIN_BYTES = 8192  # inverted lists over shorter contexts (tests) keep 8-bit keys: too few keys to learn PQ codes
PQ_ROTATION = True  # compact keys: learn a rotation (OPQ) before the product quantiser
PQ_DIMS_PER_BYTE = 4  # compact keys: one 8-bit code per 4 rotated key dimensions (benchmarks/ltm2_read_margin.py: the right entry keeps 0.52 of a 100K read, 0.54 at 2 per byte unrotated, 0.41 at 4 unrotated)
LIST_ENTRIES = 1024  # compact memory: about this many entries per inverted list at any length, so a read scans about
# nprobe x LIST_ENTRIES codes whether the context is 1M or 100M bytes (decode cost flat in the context)
SCAN_CAP_LISTS = 2  # ... and never more than this many times that (lists are unequal on code: faiss max_codes). At 100M
# bytes of code the lists a read probes hold 118K codes: cap 2 scans 61K and decodes 237 bytes/s (cap 4: 159), with
# HashHop 1 hop at 1M unchanged (benchmarks/ltm2_code.py --scan-caps, ltm2_recall.py --scan-cap)
THREADED_QUERIES = 16  # searches for fewer queries run on one OpenMP thread (a team's start-up costs more than the scan)
# exact keys recomputed from the text (rescored reads, pointer reads) kept for later heads, blocks and steps: a greedy
# decode's reads over 600K bytes of code rescore about 113 entries a read, half of them rescored at an earlier step
EXACT_KEYS_CACHED = 4096
# the encoder's matrix products round a window's key the same in any batch of at least this many windows (fewer take
# another kernel: keys differ in the last bits), so _compute_exact_keys pads smaller batches to it
KEY_BATCH_MIN = 4
FEED_CHUNK_MIN = 64  # continuations this long run a chunk at a time (feed_chunks), shorter ones byte by byte


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - a dependency
        raise HashHopError("LTM-2's engine needs faiss: pip install faiss-cpu") from None
    return faiss


class Memory:
    """The memory entries written so far: keys in one faiss index per head, values in a growing array.

    After :meth:`freeze`, new entries (a request's own bytes) go to a small exact ``recent`` part searched
    beside the index, so a prefilled context can be returned to (:meth:`snapshot`, :meth:`restore`) without
    touching the index: the prefix cache of the runner and the server."""

    split_heads = False  # search(): the heads' searches on two threads (Engine._decode_threads sets it)

    def __init__(
        self,
        heads: int,
        head_key_dim: int,
        value_dim: int,
        exact: bool = False,
        nlist: int = 0,
        nprobe: int = 32,
        compact: bool = True,
        scan_cap_lists: float = SCAN_CAP_LISTS,
    ) -> None:
        faiss = _faiss()
        self.heads, self.head_key_dim, self.value_dim, self.exact = heads, head_key_dim, value_dim, exact
        # Long contexts (inverted lists) keep compact codes: product-quantised keys (2 dimensions per byte, coded
        # relative to their list's centroid) and 4-bit values; short ones 8-bit keys and values.
        self.compact = compact and bool(nlist) and not exact and head_key_dim % (2 * PQ_DIMS_PER_BYTE) == 0
        self.indexes = []
        self.quantizers = []  # IVF: each index's coarse quantizer must outlive it
        self._wrapped = []  # rotated IVF: the inner index and the rotation must outlive their wrapper
        corners = np.stack([-np.ones(head_key_dim), np.ones(head_key_dim)]).astype(np.float32)
        for _ in range(heads):
            if nlist:  # inverted lists: a read scans the nprobe lists nearest its query, not every entry
                if self.compact:
                    # an inverted multi-index: 2 x 2^b centroids over the key's halves give 4^b lists, so assigning
                    # a key costs 2^b half-dot-products however many lists (a flat quantizer over sqrt(100M) lists
                    # would cost more than the encoder); the lists' scan is inner product on residual PQ codes
                    bits = min(10, max(3, round(math.log2(nlist) / 2)))
                    quantizer = faiss.MultiIndexQuantizer(head_key_dim, 2, bits)
                    index = faiss.IndexIVFPQ(quantizer, head_key_dim, 4**bits, head_key_dim // PQ_DIMS_PER_BYTE, 8, faiss.METRIC_INNER_PRODUCT)
                    index.quantizer_trains_alone = 1
                    index.max_codes = int(scan_cap_lists * nprobe * LIST_ENTRIES)
                else:
                    quantizer = faiss.IndexFlatIP(head_key_dim)
                    kind = faiss.ScalarQuantizer.QT_fp16 if exact else faiss.ScalarQuantizer.QT_8bit_uniform
                    index = faiss.IndexIVFScalarQuantizer(quantizer, head_key_dim, nlist, kind, faiss.METRIC_INNER_PRODUCT)
                    index.by_residual = False  # code the keys themselves on the same [-1, 1] grid as the flat scan
                index.nprobe = nprobe
                self.quantizers.append(quantizer)
                if self.compact and PQ_ROTATION:  # a learnt rotation that spreads the key's variance over the codes
                    rotation = faiss.OPQMatrix(head_key_dim, head_key_dim // PQ_DIMS_PER_BYTE)
                    # seconds of training, not tens: 4 rounds with 10 PQ iterations first, not 8 rounds with 40 (what the
                    # rotation costs the reads is measured by benchmarks/ltm2_read_margin.py, its time by ltm2_code.py)
                    rotation.niter, rotation.niter_pq_0, rotation.max_train_points = 4, 10, 16384
                    self._wrapped += [index, rotation]
                    index = faiss.IndexPreTransform(rotation, index)
            elif exact:
                index = faiss.IndexFlatIP(head_key_dim)
            else:  # unit keys: one uniform 8-bit grid over [-1, 1]
                index = faiss.IndexScalarQuantizer(head_key_dim, faiss.ScalarQuantizer.QT_8bit_uniform, faiss.METRIC_INNER_PRODUCT)
                index.train(corners)
            self.indexes.append(index)
        self.count = 0
        self.frozen: int | None = None  # entries in the index once frozen; later ones are `recent`
        self.recent = np.zeros((0, heads, head_key_dim), np.float32)
        self.recent_values = np.zeros((0, value_dim), np.float32)
        self._values = np.zeros((1024, self._value_width()), dtype=np.float32 if exact else np.uint8 if self.compact else np.int8)
        self._scales = np.ones(1024, dtype=np.float16)

    def _value_width(self) -> int:
        return (self.value_dim + 1) // 2 if self.compact else self.value_dim  # 4-bit values: two per byte

    def train(self, sample: np.ndarray) -> None:
        """IVF only: learn each head's lists from sample keys (n, heads, head_key_dim); the 8-bit grid stays [-1, 1]."""
        for h, index in enumerate(self.indexes):
            if not index.is_trained:
                keys = np.ascontiguousarray(sample[:, h], dtype=np.float32)
                if not self.compact:  # the corners pin the 8-bit grid to [-1, 1]; product quantisers learn their own
                    keys = np.concatenate([keys, -np.ones((1, self.head_key_dim), np.float32), np.ones((1, self.head_key_dim), np.float32)])
                index.train(keys)

    def reserve(self, entries: int) -> None:
        if entries > len(self._values):
            self._values = np.resize(self._values, (entries, self._value_width()))
            self._scales = np.resize(self._scales, entries)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """keys (n, heads, head_key_dim) unit vectors; values (n, value_dim)."""
        n = len(keys)
        if n == 0:
            return
        if self.frozen is not None:  # a request's own bytes: kept exact beside the index, dropped by restore()
            self.recent = np.concatenate([self.recent, keys.astype(np.float32)])
            self.recent_values = np.concatenate([self.recent_values, np.asarray(values, np.float32)])
            self.count += n
            return
        for h, index in enumerate(self.indexes):
            index.add(np.ascontiguousarray(keys[:, h], dtype=np.float32))
        need = self.count + n
        if need > len(self._values):
            self.reserve(max(need, 2 * len(self._values)))
        if self.exact:
            self._values[self.count : need] = values
        else:
            levels = 7.0 if self.compact else 127.0
            scale = np.maximum(np.abs(values).max(axis=1), 1e-8) / levels
            coded = np.round(values / scale[:, None]).astype(np.int8)
            self._values[self.count : need] = _pack4(coded) if self.compact else coded
            self._scales[self.count : need] = scale
        self.count = need

    def freeze(self) -> None:
        if self.frozen is None:
            self.frozen = self.count

    def snapshot(self) -> tuple:
        return self.count, self.recent.copy(), self.recent_values.copy()

    def restore(self, snap: tuple) -> None:
        self.count, recent, recent_values = snap
        self.recent, self.recent_values = recent.copy(), recent_values.copy()

    def values(self, ids: np.ndarray) -> np.ndarray:
        """The values of entries ``ids`` (any shape) as float32, (*ids.shape, value_dim)."""
        base = self.count if self.frozen is None else self.frozen
        indexed = np.minimum(ids, base - 1) if base else np.zeros_like(ids)
        out = _unpack4(self._values[indexed], self.value_dim) if self.compact else self._values[indexed].astype(np.float32)
        if not self.exact:
            out *= self._scales[indexed].astype(np.float32)[..., None]
        late = ids >= base
        if late.any():
            out[late] = self.recent_values[ids[late] - base]
        return out

    # -- on disk: a prefilled context is written once and memory-mapped back by later processes --------------------
    def save(self, folder: str) -> None:
        import json

        faiss = _faiss()
        base = self.count if self.frozen is None else self.frozen
        for h, index in enumerate(self.indexes):
            faiss.write_index(index, os.path.join(folder, f"keys{h}.faiss"))
        np.save(os.path.join(folder, "values.npy"), np.ascontiguousarray(self._values[:base]))
        np.save(os.path.join(folder, "scales.npy"), np.ascontiguousarray(self._scales[:base]))
        info = {"heads": self.heads, "head_key_dim": self.head_key_dim, "value_dim": self.value_dim, "exact": self.exact, "compact": self.compact, "count": base}
        with open(os.path.join(folder, "memory.json"), "w") as handle:
            json.dump(info, handle)

    @classmethod
    def load(cls, folder: str) -> Memory:
        """A saved memory, its keys and values memory-mapped (pages are read as reads touch them), frozen."""
        import json

        faiss = _faiss()
        with open(os.path.join(folder, "memory.json")) as handle:
            info = json.load(handle)
        memory = cls.__new__(cls)
        memory.heads, memory.head_key_dim, memory.value_dim, memory.exact = info["heads"], info["head_key_dim"], info["value_dim"], info["exact"]
        memory.compact = info.get("compact", False)
        memory.indexes = []
        for h in range(memory.heads):
            path = os.path.join(folder, f"keys{h}.faiss")
            try:
                index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:  # an index type faiss cannot map: read it
                index = faiss.read_index(path)
            memory.indexes.append(index)
        ivfs = [_inverted(i) for i in memory.indexes]
        memory.quantizers = [faiss.downcast_index(i.quantizer) for i in ivfs if i is not None]
        memory._wrapped = []  # a read index owns what it wraps
        memory.set_scan_cap(SCAN_CAP_LISTS)  # not in faiss's file format
        memory._values = np.load(os.path.join(folder, "values.npy"), mmap_mode="r")
        memory._scales = np.load(os.path.join(folder, "scales.npy"), mmap_mode="r")
        memory.count = memory.frozen = info["count"]
        memory.recent = np.zeros((0, memory.heads, memory.head_key_dim), np.float32)
        memory.recent_values = np.zeros((0, memory.value_dim), np.float32)
        return memory

    def set_scan_cap(self, lists: float) -> None:
        """Compact inverted lists: a read scans at most ``lists`` x nprobe x LIST_ENTRIES codes (faiss ``max_codes``)."""
        for index in self.indexes:
            ivf = _inverted(index)
            if self.compact and ivf is not None:
                ivf.max_codes = int(lists * ivf.nprobe * LIST_ENTRIES)

    def search(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (heads, head_key_dim) unit -> (scores, ids), each (heads, k); ids -1 where fewer entries. On inverted
        lists with a second core, the heads' searches run side by side (faiss leaves the GIL): a decode step's scans
        of long lists are most of its time (benchmarks/ltm2_rescore_cost.py)."""
        pool = _search_pool() if self.split_heads else None
        if pool is None:
            found = [self.search_batch(h, queries[h : h + 1], top_k) for h in range(self.heads)]
        else:
            others = [pool.submit(self.search_batch, h, queries[h : h + 1], top_k) for h in range(1, self.heads)]
            try:
                first = self.search_batch(0, queries[:1], top_k)
            finally:  # (no search left running on the index if this one fails)
                wait(others)
            found = [first] + [f.result() for f in others]
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])

    def search_batch(self, head: int, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Head ``head``'s best ``top_k`` entries for each of ``queries`` (n, head_key_dim): (scores, ids), (n, k)."""
        indexed = self.count if self.frozen is None else self.frozen
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(top_k, indexed)
        if not k:
            scores, ids = np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        elif len(queries) < THREADED_QUERIES:
            scores, ids = _one_thread(self.indexes[head].search, queries, k)
        else:
            scores, ids = self.indexes[head].search(queries, k)
        if len(self.recent):
            recent_scores = queries @ self.recent[:, head].T
            scores = np.concatenate([scores, recent_scores], axis=1)
            ids = np.concatenate([ids, np.broadcast_to(np.arange(indexed, self.count), recent_scores.shape)], axis=1)
            if scores.shape[1] > top_k:
                best = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
                scores, ids = np.take_along_axis(scores, best, 1), np.take_along_axis(ids, best, 1)
        return scores, ids

    def nbytes(self) -> int:
        """Bytes kept per entry: the key codes (8-bit, or product-quantised when compact; fp16 under IVF when exact),
        under IVF each list entry's 8-byte id, and the values (8-bit, 4-bit when compact) with their fp16 scale
        (the text is counted by the engine)."""
        if self.compact:
            key_bytes = self.head_key_dim // PQ_DIMS_PER_BYTE
        else:
            key_bytes = self.head_key_dim * (2 if self.exact and self.quantizers else 4 if self.exact else 1)
        ids = 8 if self.quantizers else 0
        value_bytes = self.value_dim * 4 if self.exact else self._value_width() + 2
        return self.count * (self.heads * (key_bytes + ids) + value_bytes)


def _inverted(index):
    """The inverted-list index inside ``index`` (itself, or behind a rotation), or None for a flat one."""
    try:
        return _faiss().extract_index_ivf(index)
    except RuntimeError:
        return None


_SEARCH_POOL: list[ThreadPoolExecutor] = []  # made on first use


def _search_pool() -> ThreadPoolExecutor:
    """One worker thread, shared by every engine, for the other heads' searches of a decode step."""
    if not _SEARCH_POOL:
        _SEARCH_POOL.append(ThreadPoolExecutor(1, thread_name_prefix="ltm2-search"))
    return _SEARCH_POOL[0]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _one_thread(call, *args):
    """``call(*args)`` with faiss on one OpenMP thread: a decode step's search of one query is a short scan, and
    starting (and, beside other work, spinning) a thread team cost more than the scan itself."""
    faiss = _faiss()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return call(*args)
    finally:
        faiss.omp_set_num_threads(threads)


def _pack4(coded: np.ndarray) -> np.ndarray:
    """int8 codes in [-7, 7], (n, dim) -> (n, ceil(dim / 2)) bytes, two 4-bit codes (offset by 8) per byte."""
    if coded.shape[1] % 2:
        coded = np.pad(coded, ((0, 0), (0, 1)))
    nibbles = (coded + 8).astype(np.uint8)
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)


def _unpack4(packed: np.ndarray, dim: int) -> np.ndarray:
    """The inverse of _pack4, as float32 codes: (..., ceil(dim / 2)) -> (..., dim)."""
    low = (packed & 15).astype(np.float32) - 8
    high = (packed >> 4).astype(np.float32) - 8
    return np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], -1)[..., :dim]


class Engine:
    """Greedy decoding and next-byte log-probabilities of an LTM-2 language model over a long context."""

    def __init__(
        self,
        lm: LM,
        top_k: int | None = None,
        exact: bool = False,
        index: str = "auto",
        nprobe: int = 32,
        scan_cap_lists: float = SCAN_CAP_LISTS,
        rescore: int | None = None,
        beams: int = 1,
        length_penalty: float = 0.0,
    ) -> None:
        """``top_k``: entries a read keeps per head; by default the k the network was trained with (``read_top_k``),
        else 64. ``rescore``: the best this many of a read's entries (by the index's scores) are scored again with
        their exact keys, recomputed from the text (no memory kept for it; each costs an encoder window). By default
        (None) all ``top_k`` of them on the compact memory (product-quantised keys: it lifted 2-hop HashHop at 1M
        from 41 to 52 of 60 answers, benchmarks/RESULTS.md), none on 8-bit or exact keys. ``beams``: :meth:`generate`'s
        beam width (1: greedy). ``length_penalty``: a beam search's outputs compared by their summed log-probability
        over their length to this power (0: the sum)."""
        if not isinstance(lm.blocks[0].mixer, LTM2) or len(lm.blocks) != 1 or lm.blocks[0].mlp is not None:
            raise HashHopError("the engine runs LTM-2 models: one lab block whose mixer is ltm2 and no block MLP")
        self.lm = lm.eval()
        self.net: LTM2 = lm.blocks[0].mixer
        self.cfg = self.net.cfg
        if index not in ("auto", "flat", "ivf"):
            raise HashHopError(f"index must be auto, flat or ivf, got {index!r}")
        if not 0 < scan_cap_lists < math.inf:
            raise HashHopError(f"scan_cap_lists must be positive, got {scan_cap_lists}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise HashHopError(f"top_k must be a whole number >= 1 (entries a read keeps per head) or None, got {top_k!r}")
        self.rescore = rescore
        self.beams = beams
        self.length_penalty = length_penalty
        top_k = top_k or self.cfg.read_top_k or 64
        self.top_k, self.exact, self.index, self.nprobe, self.scan_cap_lists = top_k, exact, index, nprobe, scan_cap_lists
        self.pointer_bonus_scale = 1.0  # a diagnostic (benchmarks' "bonus xF" variants): the trained bonuses times this
        self.reads_off: frozenset[int] = frozenset()  # a diagnostic (benchmarks' "no read in block B"): blocks that skip their read
        # a diagnostic (benchmarks/ltm2_jump_reads.py): when a list, each decode step's read appends (block, ids (heads,
        # K), logits (heads, K) with the pointer's bonuses, sink logits (heads,)); -inf logits for no entry
        self.read_trace: list | None = None
        # a diagnostic (benchmarks/ltm2_beam_alpha.py): when a list, each beam search appends its outputs at the end,
        # finished and live, as (summed log-probability, bytes, finished): the same set for every length_penalty > 0
        # (with 0 the search stops early, so record with a penalty > 0: its set holds the summed search's choice too)
        self.beam_trace: list | None = None
        self.reach = self.net.encoder.reach
        with torch.inference_mode():  # every byte's input vector, and the encoder's first convolution of each
            self.byte_inputs = self._embed(torch.arange(256))
            self.tap_table = self.net.encoder.tap_table(self.byte_inputs)
            self.padded_inputs = F.pad(self.byte_inputs, (0, 0, 0, 1))  # symbol 256: before the first byte (zeros)
            # RoPE angles of the local windows' offsets 0 .. 2 x window - 1 (a decode step's keys keep their rotation)
            self.rope = rope_tables(2 * self.cfg.window, self.cfg.d_model // self.cfg.n_heads)
        for function in (window_states, window_keys, mlp_residual):  # compiled now, from the source just imported
            _scripted(function)
        self._encoder_weights = None  # window_states' weight arguments, on first use
        self._key_args = (self.net.key.weight.detach(), self.cfg.memory_heads)  # window_keys' after window_states'
        self._read_constants: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # per block, on first use (_read)
        self._mlp_weights: dict[int, tuple] = {}  # per block, mlp_residual's weight arguments, on first use
        self.reset()

    # -- state -------------------------------------------------------------------------------
    def reset(self, context_bytes: int = 0) -> None:
        cfg = self.cfg
        ivf = self.index == "ivf" or (self.index == "auto" and context_bytes >= IVF_MIN_BYTES)
        # product quantisers learn 256 codes per sub-vector: a context too short for that keeps 8-bit keys
        compact = context_bytes >= COMPACT_MIN_BYTES
        if compact:  # an inverted multi-index: lists of about LIST_ENTRIES entries (its 2 x sqrt(nlist) centroids
            # need only 39 sample keys each, so the sample bounds nothing up to 4^10 lists)
            nlist = max(64, context_bytes // LIST_ENTRIES) if ivf else 0
        else:  # about sqrt(N) lists, and at least 39 sample keys per list for k-means (faiss's rule)
            nlist = max(64, min(int(context_bytes**0.5), SAMPLE_WINDOWS * SAMPLE_WINDOW // 39)) if ivf else 0
        self.memory = Memory(cfg.memory_heads, cfg.key_dim // cfg.memory_heads, cfg.value_dim, self.exact, nlist, self.nprobe, compact, self.scan_cap_lists)
        self.text = bytearray()
        self.pending_keys: dict[int, np.ndarray] = {}
        self.pending_values: dict[int, np.ndarray] = {}
        self.caches = [deque() for _ in self.net.blocks]  # per block: (position, k, v) of the local window
        self.rotated: list[tuple | None] = [None for _ in self.net.blocks]  # per block, step()'s copy of it (below)
        self.logits: torch.Tensor | None = None
        self.last_state = torch.zeros(1, cfg.d_model)  # the encoder state at the last position (a query shift's input)
        # pointer reads: per block and head, the entry the last position's read gave most weight (-1: the sink) and
        # that weight. The bulk of a prefill runs no deep stack, so a chain starts again where the deep stack starts
        self.pointers = self._fresh_pointers()
        self._new_keys: tuple[int, torch.Tensor | None] = (0, None)  # during a chunk: its first new entry and their keys
        # exact keys recomputed from the text for rescored and pointer reads (heads, blocks and steps name the same
        # entries): the newest EXACT_KEYS_CACHED, valid while the text before the memory's base stays (until reset/restore)
        # entry -> its row of a preallocated slab (a read's keys come back in one gather, not a stack of arrays)
        self._exact_key_slab = np.zeros((EXACT_KEYS_CACHED, cfg.memory_heads, cfg.key_dim // cfg.memory_heads), np.float32)
        self._clear_exact_keys()

    def _clear_exact_keys(self) -> None:
        """Empty the cache of exact keys. It is a ring over the slab's rows: the k-th key kept since takes row k mod
        EXACT_KEYS_CACHED, so once full each new key takes the oldest one's row (first in, first out; a hit does not
        refresh) and a call's new keys are written in one slab assignment."""
        self._exact_key_cache: dict[int, int] = {}  # entry -> its slab row, oldest first
        self._exact_key_owner = np.full(len(self._exact_key_slab), -1, np.int64)  # each row's entry (-1: none)
        self._exact_key_kept = 0  # keys kept since the cache was last emptied

    def _fresh_pointers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per block: each head's pointer (-1: none) and its confidence, before any read."""
        heads = self.cfg.memory_heads
        return [(np.full(heads, -1), np.zeros(heads, np.float32)) for _ in self.net.blocks]

    @property
    def context_reach(self) -> int | None:
        """How many of the last context bytes the output can depend on: all (None) with the memory on; with it
        off (the ablation), the local windows of the deep blocks and the encoder's reach."""
        return None if self.net.memory_enabled else len(self.net.blocks) * self.cfg.window + self.reach

    @property
    def rescore(self) -> int:
        """Entries per read scored again with exact keys: the setting, or by default all of a read's on the compact
        memory and none otherwise (decided again by each :meth:`reset`, as the memory is)."""
        if self._rescore_setting is not None:
            return self._rescore_setting
        return self.top_k if self.memory.compact else 0

    @rescore.setter
    def rescore(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise HashHopError(f"rescore must be a whole number >= 0 (entries per read scored again exactly) or None, got {value!r}")
        self._rescore_setting = value

    @property
    def beams(self) -> int:
        return self._beams

    @beams.setter
    def beams(self, value: int) -> None:
        self._beams = _beam_width(value)

    @property
    def length_penalty(self) -> float:
        return self._length_penalty

    @length_penalty.setter
    def length_penalty(self, value: float) -> None:
        self._length_penalty = check_length_penalty(value)

    @property
    def position(self) -> int:
        return len(self.text)

    def bytes_per_context_byte(self) -> float:
        return (len(self.text) + self.memory.nbytes()) / max(1, len(self.text))

    # -- prefill -----------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, data: bytes, progress: bool = False) -> torch.Tensor:
        """Start over with ``data`` as the context; return the next-byte logits after it. The encoder writes
        the memory over all but the last ``layers + 1`` local windows; those run through the deep stack."""
        if not data:
            raise HashHopError("the context is empty: give at least one byte")
        self.reset(len(data))
        w, layers, reach = self.cfg.window, len(self.net.blocks), self.reach
        n = len(data)
        tail_start = max(0, ((n - 1) // w - layers) * w)
        buf = np.frombuffer(bytes(data), dtype=np.uint8)
        self.memory.reserve(n + 4096)
        if self.memory.indexes and not self.memory.indexes[0].is_trained:
            self.memory.train(self._sample_keys(buf))
        bar = None
        if progress and tail_start > PREFILL_CHUNK:
            from tqdm import tqdm

            bar = tqdm(total=tail_start, unit="B", unit_scale=True, desc="prefill", leave=False)
        carry = np.zeros((0, self.cfg.memory_heads, self.cfg.key_dim // self.cfg.memory_heads), np.float32)
        writing = None
        with ThreadPoolExecutor(1) as writer:  # leaving it (also on an error) waits for the last add
            for a in range(0, tail_start, PREFILL_CHUNK):
                b = min(tail_start, a + PREFILL_CHUNK)
                lo = max(0, a - reach + 1)
                ids = torch.from_numpy(buf[lo:b].astype(np.int64))
                x = self.byte_inputs[ids]
                states = self.net.encoder.forward_symbols(ids, x, self.tap_table)[a - lo :]  # positions a .. b-1
                # the state at p completes entry p - reach + 1: entries before a keep their keys in `carry`
                keys = np.concatenate([carry, self._keys(states)])  # entries max(0, a-reach+1) .. b-1
                # entry e's value: value(state at e + reach - 1) + next_value(embedding at e + 1)
                projected = self.net.value(states)[max(0, reach - 1 - a) :]
                first = max(0, a - reach + 1)
                following = self.net.next_value(x[first + 1 - lo : first + 1 - lo + len(projected)])
                values = (projected + following).numpy()
                done = len(values)
                if writing is not None:
                    writing.result()
                # the index add (faiss, outside the GIL) of this chunk runs while the encoder runs over the next
                writing = writer.submit(self.memory.add, keys[:done], values)
                carry = keys[done:]
                if bar is not None:
                    bar.update(b - a)
            if writing is not None:
                writing.result()
        if bar is not None:
            bar.close()
        self.text += data[:tail_start]
        # the last chunks run through the deep stack (their local windows start empty: `layers` windows of slack)
        self.feed_chunks(data[tail_start:])
        return self.logits

    def _sample_keys(self, buf: np.ndarray, windows: int = None, window: int = None) -> np.ndarray:
        """Keys of ``windows`` stretches spread over the context: what the IVF lists are learnt from."""
        windows, window = windows or SAMPLE_WINDOWS, window or SAMPLE_WINDOW
        keys = []
        for start in np.linspace(0, max(0, len(buf) - window), windows).astype(int):
            ids = torch.from_numpy(buf[start : start + window].astype(np.int64))
            keys.append(self._keys(self.net.encoder.forward_symbols(ids, self.byte_inputs[ids], self.tap_table)[self.reach :]))
        return np.concatenate(keys)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.blocks[0].norm1(self.lm.embed(ids))

    def _keys(self, states: torch.Tensor) -> np.ndarray:
        heads = self.cfg.memory_heads
        return F.normalize(self.net.key(states).view(len(states), heads, -1), dim=-1).numpy()

    # -- prefix cache ------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """The state after what was fed so far; later bytes go to the memory's recent part (see Memory)."""
        self.memory.freeze()
        return {
            "memory": self.memory.snapshot(),
            "length": len(self.text),
            "pending_keys": dict(self.pending_keys),
            "pending_values": dict(self.pending_values),
            "caches": [list(cache) for cache in self.caches],
            "logits": self.logits,
            "last_state": self.last_state,
            "pointers": [(p.copy(), c.copy()) for p, c in self.pointers],
        }

    def restore(self, snap: dict, keep_exact_keys: bool = False) -> None:
        """Back to a :meth:`snapshot`. ``keep_exact_keys``: keep the cache of recomputed exact keys (valid while the
        text before the memory's frozen base is the same: a beam's own bytes come after it)."""
        self.memory.restore(snap["memory"])
        del self.text[snap["length"] :]
        self.pending_keys, self.pending_values = dict(snap["pending_keys"]), dict(snap["pending_values"])
        self.caches = [deque(cache) for cache in snap["caches"]]
        self.rotated = [None for _ in self.net.blocks]
        self.logits = snap["logits"]
        self.last_state = snap["last_state"]
        self.pointers = [(p.copy(), c.copy()) for p, c in snap.get("pointers", self._fresh_pointers())]
        if not keep_exact_keys:
            self._clear_exact_keys()

    def save(self, folder: str) -> None:
        """Write the prefilled state (at a snapshot point: call after prefill) to ``folder``: the index, values,
        text and the deep stack's local state, with a fingerprint of the weights."""
        import hashlib

        snap = self.snapshot()
        os.makedirs(folder, exist_ok=True)
        self.memory.save(folder)
        with open(os.path.join(folder, "text.bin"), "wb") as handle:
            handle.write(self.text[: snap["length"]])
        state = {k: v for k, v in snap.items() if k != "memory"}
        state["weights"] = _fingerprint(self.lm)
        torch.save(state, os.path.join(folder, "state.pt"))
        digest = hashlib.sha256(bytes(self.text[: snap["length"]])).hexdigest()
        with open(os.path.join(folder, "context.sha256"), "w") as handle:
            handle.write(digest + "\n")

    def load(self, folder: str) -> None:
        """Continue from a state :meth:`save` wrote (memory-mapped); refuses one written by other weights."""
        try:
            state = torch.load(os.path.join(folder, "state.pt"), weights_only=False)
            memory = Memory.load(folder)
            with open(os.path.join(folder, "text.bin"), "rb") as handle:
                text = bytearray(handle.read())
        except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as err:
            raise HashHopError(f"{folder} holds no saved LTM-2 context ({str(err).splitlines()[0][:120]})") from None
        if state.get("weights") != _fingerprint(self.lm):
            raise HashHopError(f"{folder} was prefilled by other LTM-2 weights: prefill the context again")
        memory.set_scan_cap(self.scan_cap_lists)
        self.memory, self.text = memory, text
        self.restore({**state, "memory": memory.snapshot()})

    # -- decode ------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, byte: int) -> torch.Tensor:
        """Feed one byte (at position ``self.position``); return the logits of the byte after it."""
        q, reach = self.position, self.reach
        self.text.append(byte)
        embedded = self.lm.embed(torch.tensor([byte]))
        last = self.text[max(0, q + 1 - reach) :]
        ids = torch.tensor([256] * (reach - len(last)) + list(last))  # the encoder's reach, padded before byte 0
        state = _scripted(window_states)(ids[None], *self._encoder_args())  # (1, d): the encoder's last_state
        self.pending_keys[q] = self._keys(state)[0]
        if q - reach + 1 >= 0:  # entry q - reach + 1 is complete: its value and the input vector of the byte after it
            value = self.net.value(state) + self.net.next_value(self.padded_inputs[ids[1:2]])
            self.pending_values[q - reach + 1] = value.numpy()[0]
        ready = q - self.reach  # entries a query at q may read: t <= q - reach
        if ready >= 0 and ready in self.pending_values:
            self.memory.add(self.pending_keys.pop(ready)[None], self.pending_values.pop(ready)[None])
        previous, self.last_state = self.last_state, state
        h = state
        for i, block in enumerate(self.net.blocks):
            h = h + self._local(i, block.local, block.norm_local(h), q)
            if self.net.memory_enabled and i not in self.reads_off:
                h = h + self._read(block.read, block.norm_read(h), q, previous, i)
            h = _scripted(mlp_residual)(h, *self._mlp_args(i))  # h + block.mlp(block.norm_mlp(h))
        out = embedded + h
        self.logits = self.lm.head(self.lm.norm(out))[0]
        return self.logits

    def _local(self, block: int, attn, x: torch.Tensor, q: int) -> torch.Tensor:
        """Block ``block``'s local attention at position q. RoPE depends on offsets only, so keys are rotated once,
        by their offset from a base position that moves a window at a time (never by positions near 1e8), and kept
        rotated in ``self.rotated[block]`` = (base, positions, keys, values) until the base moves."""
        w, heads = attn.window, attn.heads
        d = x.shape[-1]
        qv, k, v = attn.qkv(x).view(3, heads, d // heads)
        cache = self.caches[block]
        cache.append((q, k, v))
        while cache[0][0] <= q - w:  # the dense forward's window: the last w positions
            cache.popleft()
        rotated = self.rotated[block]
        if rotated is None or q - rotated[0] >= 2 * w or rotated[1][-1] != q - 1:  # (re)rotate the window's keys
            base = cache[0][0]
            positions = [c[0] for c in cache]
            keys = _rope(torch.stack([c[1] for c in cache], dim=1), self.rope, 0)
            values = torch.stack([c[2] for c in cache], dim=1)
        else:
            base, positions, keys, values = rotated
            drop = len(positions) - (len(cache) - 1)  # what fell out of the window
            positions = positions[drop:] + [q]
            keys = torch.cat([keys[:, drop:], _rope(k[:, None], self.rope, q - base)], dim=1)
            values = torch.cat([values[:, drop:], v[:, None]], dim=1)
        self.rotated[block] = (base, positions, keys, values)
        y = F.scaled_dot_product_attention(_rope(qv[:, None], self.rope, q - base)[None], keys[None], values[None])
        return attn.out(y.reshape(1, d))

    def _read(self, read, x: torch.Tensor, q: int, previous: torch.Tensor, block: int = 0) -> torch.Tensor:
        heads = read.heads
        # the query at q sees q - reach + 1 entries (the dense forward's rule, trained in when log_length_reads)
        gain = read_gain(q - self.reach + 1, self.cfg.log_length_reads)
        if block not in self._read_constants:  # each read's sharpness and sink keys: functions of its weights alone
            self._read_constants[block] = (read.log_scale.exp().clamp(max=100.0), read.sink_keys())
        sharpness, sink_keys = self._read_constants[block]
        scale = sharpness * gain
        unit = read.unit_queries(x, self.net.key, previous)[0]  # (heads, hk)
        scores, ids = self.memory.search(unit.numpy(), self.top_k)  # (heads, k) each, ids -1 past the entries
        # the pointer's candidates the search did not return are scored with exact keys: computed with the rescored
        # entries' (or alone) in one batch of encoder windows, not one call each (a call's fixed cost is ~40 windows')
        wanted = self._pointer_misses(block, ids, q) if read.pointer_gain is not None else None
        scores = self._rescore(np.arange(heads), unit.numpy(), scores, ids, also=wanted)  # (rescore 0: `wanted` alone)
        sink = (unit * sink_keys).sum(-1) * scale + math.log(min(q + 1, self.net.delay))
        logits = (torch.from_numpy(scores) * scale[:, None]).masked_fill(torch.from_numpy(ids < 0), float("-inf"))
        if read.pointer_gain is not None:  # the entries near the last read's, with their bonuses, as more candidates
            bonus = self._pointer_bonus(read, x, torch.tensor([float(pointer_gain(q - self.reach + 1, self.cfg.log_length_reads, read.pointer_length_ref))]))
            extra_logits, extra_ids = [], []
            for h in range(heads):
                row = logits[h : h + 1].numpy().copy()
                extra_logit, extra_id = self._follow(block, h, row, ids[h : h + 1], sink[h : h + 1].numpy(), bonus[:, h], np.array([q]), unit[None, h], scale[h : h + 1])
                logits[h] = torch.from_numpy(row[0])
                extra_logits.append(extra_logit[0])
                extra_ids.append(extra_id[0])
            if max(e.max() for e in extra_logits) > -np.inf:  # some head's candidate was not found by the search
                logits = torch.cat([logits, torch.from_numpy(np.stack(extra_logits)).to(logits.dtype)], dim=1)
                ids = np.concatenate([ids, np.stack(extra_ids)], axis=1)
        if self.read_trace is not None:
            self.read_trace.append((block, ids.copy(), logits.numpy().copy(), sink.numpy().copy()))
        weights = torch.softmax(torch.cat([logits, sink[:, None]], dim=1), dim=1)[:, :-1]  # (heads, k)
        # every head's entries through this read's value map, each head keeping its own slice of it
        vals = read.value(torch.from_numpy(self.memory.values(np.maximum(ids, 0))))  # (heads, k, value_dim)
        per_head = vals.view(heads, ids.shape[1], heads, self.cfg.value_dim // heads)[torch.arange(heads), :, torch.arange(heads)]
        return read.out(torch.einsum("hk,hkd->hd", weights, per_head).reshape(1, -1))

    @torch.inference_mode()
    def generate(self, max_bytes: int, stop: bytes | tuple[bytes, ...] = (), beams: int | None = None) -> bytes:
        """Greedy bytes after what was fed, until one of ``stop`` ends the output (kept) or ``max_bytes``. ``beams`` >
        1 (default: the engine's ``beams``): the most probable output a beam search of that width finds instead (per byte,
        with the engine's ``length_penalty``)."""
        if self.logits is None:
            raise HashHopError("nothing to continue: prefill a context first")
        stops = (stop,) if isinstance(stop, bytes) else tuple(stop)
        beams = self.beams if beams is None else _beam_width(beams)
        with self._decode_threads():
            if beams > 1:
                return self._beam_search(max_bytes, stops, beams)
            out = bytearray()
            for _ in range(max_bytes):
                byte = int(self.logits.argmax())
                out.append(byte)
                if any(s and out.endswith(s) for s in stops):
                    break
                self.step(byte)
            return bytes(out)

    @contextmanager
    def _decode_threads(self):
        """Byte-at-a-time steps on the compact memory's inverted lists with two cores: torch on one thread and the
        memory heads' searches side by side. A step's scans of long lists are about a third of its time and torch's
        operations are too small to split (its idle threads spin against the second search: with torch on two threads
        the split was slower): greedy decode after 100M bytes of code 198 -> 262 bytes/s, after 1M 222 -> 242
        (benchmarks/ltm2_rescore_cost.py; RESULTS.md sections ltm2_rescore_cost_*_split_heads)."""
        threads = torch.get_num_threads()
        if not (self.memory.quantizers and self.memory.heads > 1 and threads > 1 and _cores() > 1):
            yield
            return
        torch.set_num_threads(1)
        self.memory.split_heads = True
        try:
            yield
        finally:
            self.memory.split_heads = False
            torch.set_num_threads(threads)

    def _beam_search(self, max_bytes: int, stops: tuple[bytes, ...], width: int) -> bytes:
        """The output of highest log-probability (the sum over its bytes) among those a beam of ``width`` keeps: at each
        byte every live output's ``width`` likeliest next bytes, the ``width`` best of them kept; an output ending with
        a stop (or at ``max_bytes``) is finished. Log-probabilities only fall as an output grows, so the search stops
        once a finished output scores at least as well as every live one. With a ``length_penalty`` a > 0 outputs are
        compared by that sum over (their length) ** a (live ones are all one length, so they are kept as before): a sum
        that falls by little per byte can then overtake a finished output, so the search runs until none is live (or
        ``max_bytes``); without it a search favours outputs that stop early. Each output runs on its own copy of the
        decode state (:meth:`snapshot` plus its own bytes since the start); the memory is frozen first, so each
        output's own entries go to its recent part and the index is shared. The engine ends in the chosen output's
        state, as after a greedy :meth:`generate` (its last byte not fed)."""
        start = self.snapshot()  # freezes the memory
        base = start["length"]

        def fork() -> dict:
            state = self.snapshot()
            state["own"], state["rotated"] = bytes(self.text[base:]), list(self.rotated)
            return state

        def resume(state: dict) -> None:
            del self.text[base:]
            self.text += state["own"]
            self.restore(state, keep_exact_keys=True)
            self.rotated = list(state["rotated"])

        live = [(0.0, b"", fork())]
        finished: list[tuple[float, bytes, dict]] = []
        for _ in range(max_bytes):
            grown = []
            for score, out, state in live:
                top = torch.log_softmax(state["logits"].float(), -1).topk(width)
                grown += [(score + lp, out + bytes([byte]), state) for lp, byte in zip(top.values.tolist(), top.indices.tolist())]
            grown.sort(key=lambda c: -c[0])  # stable: ties keep the earlier output's and the likelier byte's order
            live = []
            for score, out, state in grown[:width]:
                if len(out) == max_bytes or any(s and out.endswith(s) for s in stops):
                    finished.append((score, out, state))
                    continue
                resume(state)
                self.step(out[-1])
                live.append((score, out, fork()))
            if not live or (not self.length_penalty and finished and max(f[0] for f in finished) >= live[0][0]):
                break
        if self.beam_trace is not None:
            self.beam_trace.append([(s, o, True) for s, o, _ in finished] + [(s, o, False) for s, o, _ in live])
        power = self.length_penalty
        score, out, state = max(finished + live, key=lambda c: c[0] / max(len(c[1]), 1) ** power) if finished or live else (0.0, b"", start)
        resume(state)
        return out

    def feed(self, data: bytes) -> torch.Tensor:
        """Continue the context with ``data`` (a prompt after a prefilled corpus); the logits after it."""
        if len(data) >= FEED_CHUNK_MIN:
            self.feed_chunks(data)
        else:
            with self._decode_threads():
                for byte in data:
                    self.step(byte)
        return self.logits

    @torch.inference_mode()
    def feed_chunks(self, data: bytes, chunk: int = 1024) -> torch.Tensor:
        """Continue with ``data`` a chunk at a time: the same network as :meth:`step`, positions in a chunk computed
        together (the encoder and deep stack as matrix products, the reads of a chunk as one batched index search
        plus a dense read over the chunk's own new entries). Returns the logits at every position of ``data``:
        row i predicts the byte after ``data[i]``."""
        rows = []
        for a in range(0, len(data), chunk):
            rows.append(self._chunk(data[a : a + chunk]))
        self.logits = rows[-1][-1]
        return torch.cat(rows)

    def _chunk(self, data: bytes) -> torch.Tensor:
        reach, heads = self.reach, self.cfg.memory_heads
        c0 = self.position
        c1 = c0 + len(data)
        self.text += data
        lo = max(0, c0 - 2 * reach)  # the state at c0 - reach (the first new key) needs reach - 1 bytes before it
        ids = torch.tensor(list(self.text[lo:c1]), dtype=torch.long)
        embedded_all = self.lm.embed(ids)
        x = self.lm.blocks[0].norm1(embedded_all)
        states_all = self.net.encoder(x[None])[0]  # exact from position lo + reach - 1 (or from 0)
        s0 = min(self.memory.count, c0)  # first state needed: the first new entry's key
        states = states_all[s0 - lo :]  # positions s0 .. c1-1
        # new entries: e in [E, c1 - reach], E = c0 - reach (clipped at 0); key from state e, value from state
        # e + reach - 1 and the byte embedding at e + 1
        first_new = self.memory.count  # c0 - reach after step(), one more right after a bulk prefill
        if not max(0, c0 - reach) <= first_new <= max(0, c0 - reach + 1):
            raise RuntimeError(f"memory holds {first_new} entries at position {c0}")  # an engine bug, never input
        last_new = c1 - reach  # inclusive; may be < first_new for a short chunk at the start
        n_new = max(0, last_new - first_new + 1)
        keys_all = F.normalize(self.net.key(states).view(len(states), heads, -1), dim=-1)  # positions s0..c1-1
        new_keys = keys_all[first_new - s0 : first_new - s0 + n_new]
        value_states = states_all[first_new + reach - 1 - lo : first_new + reach - 1 - lo + n_new]
        new_values = self.net.value(value_states) + self.net.next_value(x[first_new + 1 - lo : first_new + 1 - lo + n_new])
        h = states_all[c0 - lo :]  # (n, d) positions c0 .. c1-1
        # the state one position earlier (exact from lo + reach - 1 <= c0 - 1; zeros before the first byte)
        previous = states_all[c0 - 1 - lo : c1 - 1 - lo] if c0 else F.pad(h[:-1], (0, 0, 1, 0))
        self.last_state = h[-1:]
        q_pos = torch.arange(c0, c1)
        visible_new = torch.arange(first_new, first_new + n_new)[None, :] <= (q_pos[:, None] - reach)  # (n, n_new)
        self._new_keys = (first_new, new_keys)  # the chunk's own entries, for pointer candidates among them
        for index, (block, cache) in enumerate(zip(self.net.blocks, self.caches)):
            h = h + self._local_chunk(block.local, block.norm_local(h), cache, c0)
            if self.net.memory_enabled and index not in self.reads_off:
                h = h + self._read_chunk(block.read, block.norm_read(h), previous, q_pos, new_keys, new_values, visible_new, index)
            h = h + block.mlp(block.norm_mlp(h))
        self._new_keys = (0, None)  # these entries' ids may hold other bytes after a restore
        logits = self.lm.head(self.lm.norm(embedded_all[c0 - lo :] + h))
        # commit entries visible to the next position (<= c1 - reach - 1); keep the rest pending for step()
        commit_end = c1 - reach  # exclusive
        n_commit = max(0, commit_end - first_new)
        if n_commit:
            self.memory.add(new_keys[:n_commit].numpy(), new_values[:n_commit].numpy())
        self.pending_values = {}
        if n_commit < n_new:
            self.pending_values[first_new + n_commit] = new_values[n_commit].numpy()
        self.pending_keys = {p: keys_all[p - s0].numpy() for p in range(max(commit_end, s0, 0), c1)}
        self.rotated = [None for _ in self.net.blocks]
        return logits

    def _local_chunk(self, attn, x: torch.Tensor, cache: deque, c0: int) -> torch.Tensor:
        w, heads = attn.window, attn.heads
        n, d = x.shape
        q, k, v = attn.qkv(x).view(n, 3, heads, d // heads).permute(1, 2, 0, 3)  # (heads, n, dh) each
        old = [c for c in cache if c[0] > c0 - w]
        old_k = torch.stack([c[1] for c in old], dim=1) if old else k[:, :0]
        old_v = torch.stack([c[2] for c in old], dim=1) if old else v[:, :0]
        keys, values = torch.cat([old_k, k], dim=1), torch.cat([old_v, v], dim=1)
        base = c0 - len(old)
        positions = torch.arange(base, c0 + n)
        keys = rotary(keys[None])[0]
        queries = rotary(F.pad(q, (0, 0, len(old), 0))[None])[0, :, len(old) :]
        distance = torch.arange(c0, c0 + n)[:, None] - positions[None, :]
        mask = (distance >= 0) & (distance < w)
        y = F.scaled_dot_product_attention(queries[None], keys[None], values[None], attn_mask=mask[None, None])[0]
        cache.clear()
        for i in range(max(0, len(positions) - w), len(positions)):
            cache.append((int(positions[i]), keys_raw(old_k, k, i, len(old)), keys_raw(old_v, v, i, len(old))))
        return attn.out(y.transpose(0, 1).reshape(n, d))

    def _read_chunk(self, read, x, previous, q_pos, new_keys, new_values, visible_new, block: int = 0) -> torch.Tensor:
        heads = read.heads
        n = len(x)
        gain = read_gain(q_pos - self.reach + 1, self.cfg.log_length_reads)
        gain = gain[:, None] if torch.is_tensor(gain) else torch.full((n, 1), gain)  # (n, 1): per query
        scale = read.log_scale.exp().clamp(max=100.0)[None] * gain  # (n, heads)
        unit = read.unit_queries(x, self.net.key, previous)  # (n, heads, hk)
        sink = (unit * read.sink_keys()[None]).sum(-1) * scale + torch.log(torch.clamp(q_pos + 1, max=self.net.delay).float())[:, None]
        projected_new = read.value(new_values).view(len(new_values), heads, self.cfg.value_dim // heads)  # (n_new, heads, dv)
        bonus = None  # (n, heads, m, 2): each position's pointer candidates' bonuses
        if read.pointer_gain is not None:
            bonus_gain = pointer_gain(q_pos - self.reach + 1, self.cfg.log_length_reads, read.pointer_length_ref)
            bonus = self._pointer_bonus(read, x, bonus_gain if torch.is_tensor(bonus_gain) else torch.full((n,), bonus_gain))
        first_new = self._new_keys[0] if len(new_keys) else 0
        outs = []
        for h in range(heads):
            parts_logits = [sink[:, h : h + 1]]
            parts_values = [torch.zeros(n, 1, projected_new.shape[-1])]
            parts_ids = []
            if self.memory.count:
                scores, ids = self.memory.search_batch(h, unit[:, h].numpy(), self.top_k)
                if self.rescore:
                    scores = self._rescore(np.full(n, h), unit[:, h].numpy(), scores, ids)
                valid = torch.from_numpy(ids >= 0)
                logits = torch.from_numpy(scores) * scale[:, h : h + 1]
                parts_logits.append(logits.masked_fill(~valid, float("-inf")))
                vals = read.value(torch.from_numpy(self.memory.values(np.maximum(ids, 0)))).view(n, ids.shape[1], heads, -1)[:, :, h]
                parts_values.append(vals)
                parts_ids.append(ids)
            if len(new_keys):
                logits = (unit[:, h] @ new_keys[:, h].T) * scale[:, h : h + 1]
                parts_logits.append(logits.masked_fill(~visible_new, float("-inf")))
                parts_values.append(projected_new[None, :, h].expand(n, -1, -1))
                parts_ids.append(np.broadcast_to(np.arange(first_new, first_new + len(new_keys)), (n, len(new_keys))))
            logits = torch.cat(parts_logits[1:], dim=1) if len(parts_logits) > 1 else torch.zeros(n, 0)
            if bonus is not None:  # each position's pointer candidates, one position after another
                row_ids = np.concatenate(parts_ids, axis=1) if parts_ids else np.zeros((n, 0), np.int64)
                found = logits.numpy().copy()
                extra_logit, extra_id = self._follow(block, h, found, row_ids, sink[:, h].numpy(), bonus[:, h], q_pos.numpy(), unit[:, h], scale[:, h])
                logits = torch.from_numpy(found)
                extra_values = torch.zeros(*extra_logit.shape, projected_new.shape[-1])  # (n, m, dv)
                extra = np.nonzero(extra_logit > -np.inf)
                if len(extra[0]):
                    extra_values[extra] = read.value(torch.from_numpy(self.memory.values(extra_id[extra]))).view(len(extra[0]), heads, -1)[:, h]
                logits = torch.cat([logits, torch.from_numpy(extra_logit)], dim=1)
                parts_values.append(extra_values)
            weights = torch.softmax(torch.cat([parts_logits[0], logits], dim=1), dim=1)
            outs.append(torch.einsum("nk,nkd->nd", weights, torch.cat(parts_values, dim=1)))
        return read.out(torch.cat(outs, dim=1))

    def _pointer_bonus(self, read, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """A pointer read's candidates' bonuses at each of n positions, in two parts: (n, heads, m, 2) = (the part from
        the hidden state, the part per unit of the previous read's confidence), each times the pointer's length gain (``gain``:
        :func:`hashhop.ltm2.model.pointer_gain`, as trained)."""
        gated, gains = read.pointer_bonus_parts(x)  # (n, heads, m), (heads, m)
        gain = gain * self.pointer_bonus_scale
        per_confidence = (gains * POINTER_GAIN)[None] * gain[:, None, None]
        return torch.stack([gated * gain[:, None, None], per_confidence.expand_as(gated)], dim=-1)

    def _follow(self, block, head, found, ids, sink, bonus, q_pos, unit, scale) -> tuple[np.ndarray, np.ndarray]:
        """A pointer read's candidates for head ``head`` of block ``block`` at n positions in order (as
        :func:`hashhop.ltm2.model.follow_pointers` in training): found (n, K) the logits of the entries found (ids (n,
        K), -1 for none), sink (n,), bonus (n, m, 2), q_pos (n,), unit (n, hk) unit queries, scale (n,). The entries
        POINTER_OFFSETS after the one the previous position gave most weight get their bonuses: in place if found, else
        as extra candidates whose logits use their exact keys (the found ones keep their columns, so their values come
        with them, a chunk's new entries included). Returns the extra candidates' logits (-inf: none) and
        ids, each (n, m)."""
        pointers, confidences = self.pointers[block]
        pointer, confidence = int(pointers[head]), float(confidences[head])
        n, m = len(found), bonus.shape[1]
        extra_logit, extra_id = np.full((n, m), -np.inf, np.float32), np.zeros((n, m), np.int64)
        bonus = bonus.numpy()
        for p in range(n):
            own = extra_logit[p]  # (m,) a view: the candidates the search did not find
            for j, offset in enumerate(POINTER_OFFSETS[:m]):
                nxt = pointer + offset
                if pointer >= 0 and nxt <= q_pos[p] - self.reach:
                    add = bonus[p, j, 0] + bonus[p, j, 1] * confidence
                    at = np.nonzero(ids[p] == nxt)[0]
                    if len(at):  # found by the search: its bonus in place
                        found[p, at[0]] += add
                    else:
                        extra_id[p, j] = nxt
                        own[j] = float(unit[p] @ self._entry_key(nxt)[head]) * float(scale[p]) + add
            row = found[p]
            best = int(row.argmax()) if row.size else -1
            best_logit = row[best] if row.size else -np.inf
            own_best = int(own.argmax())
            top = max(best_logit, own[own_best], sink[p])
            total = np.exp(row - top).sum() + np.exp(own - top).sum() + np.exp(sink[p] - top)
            if max(best_logit, own[own_best]) <= sink[p]:
                pointer, confidence = -1, 0.0
            elif own[own_best] >= best_logit:
                pointer, confidence = int(extra_id[p, own_best]), float(np.exp(own[own_best] - top) / total)
            else:
                pointer, confidence = int(ids[p, best]), float(np.exp(best_logit - top) / total)
        pointers[head], confidences[head] = pointer, confidence
        return extra_logit, extra_id

    def _pointer_misses(self, block: int, ids: np.ndarray, q: int) -> np.ndarray:
        """The indexed entries a decode step's pointer candidates (each head's, block ``block``) name that the
        search (ids (heads, k)) did not return: :meth:`_follow` scores them with exact keys."""
        pointers = self.pointers[block][0]
        indexed = self.memory.count if self.memory.frozen is None else self.memory.frozen
        offsets = np.array(POINTER_OFFSETS[: self.cfg.pointer_candidates])
        wanted = pointers[:, None] + offsets  # (heads, m)
        valid = (pointers[:, None] >= 0) & (wanted <= q - self.reach) & (wanted < indexed)
        valid &= ~(wanted[:, :, None] == ids[:, None, :]).any(-1)
        return np.array(sorted(set(wanted[valid].tolist())), np.int64)  # (np.unique costs more on a few entries)

    def _rescore(self, heads_of_rows: np.ndarray, unit: np.ndarray, scores: np.ndarray, ids: np.ndarray, also: np.ndarray | None = None) -> np.ndarray:
        """The index's scores (n, k) of each row's ``rescore`` best indexed entries (ids (n, k), -1: none) replaced by
        exact ones: unit (n, hk) the rows' queries, ``heads_of_rows`` (n,) whose keys each row reads. The index scores
        codes (8-bit or product-quantised keys); a request's own entries (``recent``) are exact already. ``also``:
        more indexed entries whose exact keys are wanted soon, computed in the same batch (kept in the cache)."""
        indexed = self.memory.count if self.memory.frozen is None else self.memory.frozen
        also = np.zeros(0, np.int64) if also is None else also
        k = min(self.rescore, scores.shape[1])
        if not k:
            if len(also):
                self._exact_keys(also)
            return scores
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else None  # None: every column
        chosen = ids if top is None else np.take_along_axis(ids, top, 1)
        coded = (chosen >= 0) & (chosen < indexed)
        if not coded.any():
            if len(also):
                self._exact_keys(also)
            return scores
        rows, at = np.nonzero(coded)
        named = chosen[rows, at]
        entries = np.array(sorted(set(named.tolist())), np.int64)  # np.unique's, for less
        which = np.searchsorted(entries, named)
        if len(also):  # (a set: np.setdiff1d costs more than the rest of a decode step's rescoring)
            seen = set(entries.tolist())
            also = np.array([entry for entry in also.tolist() if entry not in seen], np.int64)
        keys = self._exact_keys(np.concatenate([entries, also]))[: len(entries)]  # (u, heads, hk)
        out = scores.copy()
        out[rows, at if top is None else top[rows, at]] = np.einsum("nd,nd->n", unit[rows], keys[which, heads_of_rows[rows]])
        return out

    def _exact_keys(self, entries: np.ndarray) -> np.ndarray:
        """Indexed entries' exact unit keys (n, heads, hk), recomputed from the text: the encoder over the ``reach``
        bytes ending at each (the padding symbol before the first byte), as :meth:`step` wrote them; the newest
        ``EXACT_KEYS_CACHED`` are kept (the text before the memory's base does not change until reset/restore)."""
        cache, slab = self._exact_key_cache, self._exact_key_slab
        listed = entries.tolist()
        slots = np.fromiter(map(cache.get, listed, repeat(-1)), np.int64, len(listed))
        hit = slots >= 0
        if hit.all():
            return slab[slots]
        out = np.empty((len(listed), *slab.shape[1:]), np.float32)
        out[hit] = slab[slots[hit]]  # gathered before the new keys below may take the oldest rows
        missing = np.flatnonzero(~hit)
        out[missing] = self._compute_exact_keys(entries[missing])
        cap = EXACT_KEYS_CACHED
        if len(slab) != cap:  # the setting changed (tests, benchmarks): start a slab of the new size
            slab = self._exact_key_slab = np.zeros((cap, *slab.shape[1:]), np.float32)
            self._clear_exact_keys()
            cache = self._exact_key_cache
        if not cap:
            return out
        kept = missing[-cap:]
        new = dict.fromkeys(listed[i] for i in kept.tolist())  # in order, an entry named twice kept once
        if len(new) < len(kept):
            first = {}
            for i in kept.tolist():
                first.setdefault(listed[i], i)
            kept = np.array(list(first.values()), np.int64)
        rows = (self._exact_key_kept + np.arange(len(kept))) % cap
        for entry, row in zip(self._exact_key_owner[rows].tolist(), rows.tolist()):  # the oldest keys give up their rows
            if cache.get(entry) == row:  # (not an owner the cache forgot: emptied from outside, the entry kept since)
                del cache[entry]
        slab[rows] = out[kept]
        self._exact_key_owner[rows] = entries[kept]
        cache.update(zip(new, rows.tolist()))
        self._exact_key_kept += len(kept)
        return out

    def _compute_exact_keys(self, entries: np.ndarray) -> np.ndarray:
        """:meth:`_exact_keys` without the cache: one batch of encoder windows."""
        text = np.frombuffer(self.text, np.uint8)
        offsets = entries[:, None] + np.arange(1 - self.reach, 1)  # (n, reach)
        ids = torch.from_numpy(np.where(offsets >= 0, text[np.maximum(offsets, 0)].astype(np.int64), 256))
        del text  # a live view would stop the bytearray from growing
        if len(ids) < KEY_BATCH_MIN:  # so that a key rounds the same whatever else its batch holds
            return self._window_keys(F.pad(ids, (0, 0, 0, KEY_BATCH_MIN - len(ids)), value=256))[: len(ids)]
        return self._window_keys(ids)

    def _window_keys(self, ids: torch.Tensor) -> np.ndarray:
        """Exact unit keys (n, heads, hk) of n encoder windows ids (n, reach): :meth:`_keys` of the encoder's
        ``last_states``, as one TorchScript call (:func:`window_keys`: the same operations, so the same bits, with
        about a fifth less fixed cost than calling them one by one from Python)."""
        return _scripted(window_keys)(ids, *self._encoder_args(), *self._key_args).numpy()

    def _mlp_args(self, block: int) -> tuple:
        """:func:`mlp_residual`'s weight arguments for block ``block``."""
        if block not in self._mlp_weights:
            b = self.net.blocks[block]
            norm, (first, gelu, second) = b.norm_mlp, b.mlp
            if gelu.approximate != "none":  # (what mlp_residual computes)
                raise HashHopError("the engine's block MLP computes the exact GELU")
            self._mlp_weights[block] = tuple(t.detach() if torch.is_tensor(t) else t for t in (norm.weight, norm.bias, norm.eps, first.weight, first.bias, second.weight, second.bias))
        return self._mlp_weights[block]

    def _encoder_args(self) -> tuple:
        """:func:`window_states`' arguments after the windows: the encoder's weights and tables."""
        encoder = self.net.encoder
        if self._encoder_weights is None:
            convs = encoder.convs
            self._encoder_weights = (self.padded_inputs, self.tap_table, encoder.kernel, convs[0].bias.detach(), [c.weight.detach() for c in convs[1:]], [c.bias.detach() for c in convs[1:]], encoder.norm.weight.detach(), encoder.norm.bias.detach(), encoder.norm.eps)  # fmt: skip
        return self._encoder_weights

    def _entry_key(self, entry: int) -> torch.Tensor:
        """Entry ``entry``'s exact unit keys (heads, hk): kept for a request's own bytes and a chunk's new entries,
        recomputed from the text (the encoder over the ``reach`` bytes ending there) for the indexed ones."""
        base = self.memory.count if self.memory.frozen is None else self.memory.frozen
        first_new, new_keys = self._new_keys
        if new_keys is not None and first_new <= entry < first_new + len(new_keys):
            return new_keys[entry - first_new]
        if entry >= base and entry - base < len(self.memory.recent):
            return torch.from_numpy(self.memory.recent[entry - base])
        return torch.from_numpy(self._exact_keys(np.array([entry]))[0])


_SCRIPTS: dict[str, object] = {}  # compiled on first use


def _scripted(function):
    """``function`` compiled by TorchScript, once per process; the function itself (the same operations, from Python)
    where this torch cannot script it (TorchScript is deprecated in favour of torch.compile, which this CPU-bound
    decode of tiny operations does not need). TorchScript reads the function's source file, so the engine compiles
    its functions when it is made (a file changed on disk later, a package upgraded under a server, is not read)."""
    if function.__name__ not in _SCRIPTS:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                _SCRIPTS[function.__name__] = torch.jit.script(function)
        except Exception:  # noqa: BLE001 - any failure to compile leaves the uncompiled function, which computes the same
            _SCRIPTS[function.__name__] = function
    return _SCRIPTS[function.__name__]


def mlp_residual(
    h: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    eps: float,
    weight1: torch.Tensor,
    bias1: torch.Tensor,
    weight2: torch.Tensor,
    bias2: torch.Tensor,
) -> torch.Tensor:
    """A block's ``h + mlp(norm_mlp(h))`` (its LayerNorm, Linear, exact GELU, Linear) as a function TorchScript
    can compile: the same operations, so the same bits."""
    return h + F.linear(F.gelu(F.linear(F.layer_norm(h, [h.shape[-1]], norm_weight, norm_bias, eps), weight1, bias1)), weight2, bias2)


def window_states(
    ids: torch.Tensor,
    inputs: torch.Tensor,
    table: torch.Tensor,
    kernel: int,
    bias0: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """:meth:`hashhop.ltm2.model.Encoder.last_states` (the encoder's states (b, d) at the last position of b windows
    ids (b, reach)) as a function TorchScript can compile: the same operations, so the same bits. ``weights`` and
    ``biases``: its convolutions after the first, whose terms come from ``table`` (:meth:`Encoder.tap_table`)."""
    k, b = kernel, ids.shape[0]
    pad = table.shape[0] // k - 1
    n = len(weights) * (k - 1) + 1
    taps = ids.unfold(1, k, 1)[:, -n:] + torch.arange(k) * (pad + 1)  # (b, n, k)
    h = F.embedding(ids[:, -n:], inputs) + F.gelu(F.embedding_bag(taps.reshape(-1, k), table, mode="sum").view(b, n, -1) + bias0)
    padded = bool((ids[:, -n:] == pad).any())
    if padded:  # positions before the first are zeros to the next layer
        h = h * (ids[:, -n:] != pad).unsqueeze(-1)
    for i in range(len(weights)):
        n -= k - 1
        windows = h.unfold(1, k, 1).reshape(b, n, -1)  # (b, n, d * k): (channel, tap) order, the weight's
        h = h[:, -n:] + F.gelu(F.linear(windows, weights[i].reshape(weights[i].shape[0], -1), biases[i]))
        if padded:
            h = h * (ids[:, -n:] != pad).unsqueeze(-1)
    return F.layer_norm(h[:, -1], [h.shape[-1]], norm_weight, norm_bias, eps)


def window_keys(
    ids: torch.Tensor,
    inputs: torch.Tensor,
    table: torch.Tensor,
    kernel: int,
    bias0: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    eps: float,
    key_weight: torch.Tensor,
    heads: int,
) -> torch.Tensor:
    """The unit keys (b, heads, hk) of :func:`window_states`: the key map, then each head's normalisation."""
    state = window_states(ids, inputs, table, kernel, bias0, weights, biases, norm_weight, norm_bias, eps)
    return F.normalize(F.linear(state, key_weight).view(ids.shape[0], heads, -1), dim=-1)


_beam_width = check_beams


def _fingerprint(lm: LM) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(lm.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def keys_raw(old: torch.Tensor, new: torch.Tensor, i: int, n_old: int) -> torch.Tensor:
    """Column i of old ++ new (heads, n, dh) -> (heads, dh): the un-rotated key or value the step cache holds."""
    return old[:, i] if i < n_old else new[:, i - n_old]


def _rope(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor], offset: int) -> torch.Tensor:
    """RoPE of (heads, n, dh) at offsets offset .. offset + n - 1 (``tables``: :func:`rope_tables`)."""
    cos, sin = tables
    return apply_rope(x, cos[offset : offset + x.shape[1]], sin[offset : offset + x.shape[1]])
