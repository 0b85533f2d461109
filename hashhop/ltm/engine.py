"""The long-context engines: the trained LTM answering native HashHop requests over a context of any length.

:class:`Engine` prefills a context once into a :class:`~hashhop.ltm.memory.ContextMemory` (raw bytes
plus an index of the words' key sign codes, about 2 bytes per character) and answers any number of
queries about it; each read scores only the index's candidates for the query. The decode itself
(hop loop, controller, character copying) is :func:`hashhop.ltm.model.decode_hops`, shared with the
dense baseline and the sharded engine. The dense model's softmax also spreads weight over every other
entry; with the learnt temperature that weight is below 1e-9 of the total at any context length
measured, so both give the same answers (``tests/ltm/test_ltm.py`` checks answers and character
log-probabilities).

Prefilled contexts are kept (``cache_contexts``, least recently used out). A request finds its context
without hashing it: the cache key is the length and a hash of a fixed sample (the first and last 64 KB
and 64 blocks of 1 KB spread over the middle: ~200 KB however long the context), and a key match is
confirmed by comparing the whole context with the kept one (a memcmp-speed pass, ~1 ms at 10M characters
against ~10 ms for blake2b over all of it), so two different contexts never share an entry.

``DenseEngine`` is the same network with plain full attention over stored keys: the baseline that
keeps 260+ bytes per word and scans every key at every read.
"""

from __future__ import annotations

import copy
import hashlib
from collections import deque

import numpy as np
import torch

from hashhop.errors import HashHopError
from hashhop.ltm.memory import ContextMemory, check_memory, dense_memory
from hashhop.ltm.model import LTM, Answer, Memory, PromptParts, decode_hops, split_prompt

EDGE_BYTES = 1 << 16  # the sampled key hashes the context's first and last 64 KB...
SAMPLE_BLOCKS, BLOCK_BYTES = 64, 1 << 10  # ... and 64 blocks of 1 KB spread evenly between them
COMPARE_BYTES = 1 << 20  # the confirming compare runs over 1 MB slices (no context-sized temporary)


def sample_key(context: np.ndarray) -> tuple[int, bytes]:
    """(length, hash of a fixed sample of the bytes): cheap, and only a hint; a match is confirmed by :func:`same_bytes`."""
    n = len(context)
    h = hashlib.blake2b(digest_size=16)
    if n <= 2 * EDGE_BYTES + SAMPLE_BLOCKS * BLOCK_BYTES:
        h.update(memoryview(context))
    else:
        h.update(memoryview(context[:EDGE_BYTES]))
        h.update(memoryview(context[n - EDGE_BYTES :]))
        for start in np.linspace(EDGE_BYTES, n - EDGE_BYTES - BLOCK_BYTES, SAMPLE_BLOCKS).astype(np.int64):
            h.update(memoryview(context[start : start + BLOCK_BYTES]))
    return n, h.digest()


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two uint8 arrays hold the same bytes (slice by slice: stops at the first difference)."""
    if len(a) != len(b):
        return False
    return all(np.array_equal(a[i : i + COMPARE_BYTES], b[i : i + COMPARE_BYTES]) for i in range(0, len(a), COMPARE_BYTES))


class Engine:
    """The trained model over an indexed context: ``prefill`` once, then ``answer`` any number of queries."""

    def __init__(self, model: LTM, cache_contexts: int = 2, device: str = "cpu") -> None:
        if cache_contexts < 1:
            raise HashHopError("the engine keeps at least one prefilled context (cache_contexts >= 1)")
        self.model = model.eval()
        # Prefill's encoder can run on a GPU; reads touch a handful of entries and stay on the CPU.
        self.encoder = None if device == "cpu" else copy.deepcopy(model).to(device)
        self.cache_contexts = cache_contexts
        self._cache: list[tuple[tuple[int, bytes], ContextMemory]] = []  # (sample key, memory), most recently used last
        self.entries_scored: deque[int] = deque(maxlen=100_000)  # candidates scored per recent read (cost accounting)

    def cached(self, context: np.ndarray) -> ContextMemory | None:
        """The kept memory of exactly these bytes, if any (and mark it most recently used)."""
        key = sample_key(context)
        for i, (k, memory) in enumerate(self._cache):
            if k == key and same_bytes(memory.data, context):  # same sample, then the whole text: never a near miss
                self._cache.append(self._cache.pop(i))
                return memory
        return None

    def prefill(self, context: np.ndarray, progress: bool = False) -> ContextMemory:
        memory = self.cached(context)
        if memory is not None:
            return memory
        check_memory(len(context))
        while self._cache and len(self._cache) >= self.cache_contexts:
            self._cache.pop(0)  # the least recently used
        memory = ContextMemory(self.model, context, progress=progress, encoder=self.encoder)
        self._cache.append((sample_key(context), memory))
        return memory

    def answer(self, text: str | bytes) -> Answer:
        """Answer a native HashHop request (context, completion header, ``QUERY = '``)."""
        request = split_prompt(text, self.model.cfg.max_word_chars + 1)
        return self.decode(self.prefill(request.context), request)

    def entries_for(self, memory: ContextMemory, query: torch.Tensor) -> Memory:
        """The entries one read sees: the index's candidates for the query, recomputed from the text."""
        words = memory.candidates(query)
        self.entries_scored.append(len(words))
        return memory.entries(words)

    @torch.inference_mode()
    def decode(self, memory: ContextMemory, request: PromptParts) -> Answer:
        """The answer from a prefilled memory: per hop, the entries for the query and a read over them."""
        return decode_hops(self.model, request, lambda query: self.entries_for(memory, query))


class DenseEngine:
    """Baseline: the same network with full attention over every stored key (no index)."""

    def __init__(self, model: LTM) -> None:
        self.model = model.eval()
        self._key: bytes | None = None
        self._memory: Memory | None = None

    def prefill(self, context: np.ndarray) -> Memory:
        digest = hashlib.blake2b(memoryview(context), digest_size=16).digest()
        if digest != self._key:
            with torch.inference_mode():
                self._memory, self._key = dense_memory(self.model, context), digest
        return self._memory

    @staticmethod
    def nbytes(memory: Memory, context: np.ndarray) -> int:
        return context.nbytes + sum(t.numel() * t.element_size() for t in vars(memory).values())

    def answer(self, text: str | bytes) -> Answer:
        request = split_prompt(text, self.model.cfg.max_word_chars + 1)
        return self.decode(self.prefill(request.context), request)

    @torch.inference_mode()
    def decode(self, memory: Memory, request: PromptParts) -> Answer:
        return decode_hops(self.model, request, lambda query: memory)  # every read sees every entry
