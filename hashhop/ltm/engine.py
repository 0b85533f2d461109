"""The long-context engine: the trained LTM reading a memory of any length at a fixed cost per query.

Prefill keeps, for the context, only its raw bytes and an index of its words: where each word starts,
its length, and the 64 sign bits of its key (sorted, with the word each code belongs to). That is
1 byte per character plus 21 bytes per word (about 2 bytes per character on HashHop text). Keys,
role scores and values are not stored: they are local functions of the text, recomputed for the
few entries a read touches.

A read looks up the query's sign code (and the codes with its least certain bits flipped) with a
binary search, rescores those candidates exactly as the dense model does, and softmaxes over them.
The dense model's softmax also spreads weight over every other entry; with the learnt temperature
that weight is below 1e-9 of the total at any context length measured, so both give the same answers
(``tests/ltm/test_engine.py`` checks answers and character log-probabilities).

``DenseEngine`` is the same network with plain full attention over stored keys: the baseline that
keeps 260+ bytes per word and scans every key at every read.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from hashhop.errors import HashHopError
from hashhop.ltm.model import LTM, Memory, greedy_answer
from hashhop.ltm.text import END, find_words, gather_chars, gather_separators, is_word_byte, to_bytes

CHUNK_WORDS = 1 << 16
PROBE_BITS = 4  # also look up the codes with the 4 least certain bits flipped (16 probes)
MARKER = b"\n\nCOMPLETION:"


@dataclass
class Request:
    """A native HashHop request cut into its parts: context bytes, completion-header words, query word."""

    context: np.ndarray  # uint8
    header: np.ndarray  # (M, W) chars of the words after the context, before the query word
    query: np.ndarray  # (1, W) chars of the query word (all END when the text has no word)


def split_request(text: str | bytes, width: int) -> Request:
    """The context is everything before the last ``\\n\\nCOMPLETION:`` (or before the last line when
    there is none); the query is the last word; the words between are the completion header."""
    data = to_bytes(text)
    raw = data.tobytes()
    cut = raw.rfind(MARKER)
    if cut < 0:
        cut = raw.rstrip(b"\n").rfind(b"\n")
        cut = max(cut, 0)
    if cut < len(data) and data[cut] == 10:
        cut += 1  # the context keeps its last line's end, as in training (the last word's separator is "'\n")
    context, tail = data[:cut], data[cut:]
    starts, lengths = find_words(tail)
    chars = gather_chars(tail, starts, lengths, width)
    if len(chars) == 0:
        return Request(context, np.zeros((0, width), dtype=np.int64), np.zeros((1, width), dtype=np.int64))
    return Request(context, chars[:-1], chars[-1:])


def _codes(keys: torch.Tensor) -> np.ndarray:
    bits = (keys > 0).numpy()
    return np.packbits(bits, axis=-1, bitorder="little").view(np.uint64).reshape(len(bits))


class ContextMemory:
    """What the engine keeps for a prefilled context (see the module docstring)."""

    def __init__(
        self, model: LTM, context: np.ndarray, progress: bool = False, owned: tuple[int, int] | None = None, encoder: LTM | None = None
    ) -> None:
        """``owned``: index only the words ``[a, b)`` (a shard; the other words are its halo). ``encoder``: a
        copy of the model on another device (CUDA) that computes the prefill's keys."""
        cfg = model.cfg
        if cfg.d_key != 64:
            raise HashHopError("the engine's index needs d_key = 64 (one uint64 sign code per key)")
        self.model = model
        self.data = context
        starts, lengths = find_words(context)
        self.starts = starts
        self.lengths = np.minimum(lengths, 255).astype(np.uint8)
        codes = np.empty(len(starts), dtype=np.uint64)
        chunks = range(0, len(starts), CHUNK_WORDS)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="prefill", unit="chunk", leave=False)
        with torch.inference_mode():
            for lo in chunks:
                hi = min(lo + CHUNK_WORDS, len(starts))
                chars = gather_chars(context, starts[lo:hi], lengths[lo:hi], cfg.max_word_chars)
                if encoder is None:
                    codes[lo:hi] = _codes(model.encode(torch.from_numpy(chars)))
                else:
                    device = next(encoder.parameters()).device
                    codes[lo:hi] = _codes(encoder.encode(torch.from_numpy(chars).to(device)).cpu())
        first, last = owned or (0, len(starts))
        order = np.argsort(codes[first:last], kind="stable") + first
        self.order = order.astype(np.uint32 if len(codes) < 2**32 else np.int64)
        self.sorted_codes = codes[self.order]

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def nbytes(self) -> int:
        """Every byte the engine keeps for this context."""
        return sum(a.nbytes for a in (self.data, self.starts, self.lengths, self.order, self.sorted_codes))

    def candidates(self, query: torch.Tensor) -> np.ndarray:
        """Word indices whose code equals the query's, or differs only in its least certain bits."""
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        code = int(_codes(query[None])[0])
        uncertain = np.argsort(query.abs().numpy())[:PROBE_BITS]
        probes = np.array([code], dtype=np.uint64)
        for bit in uncertain:
            probes = np.concatenate([probes, probes ^ np.uint64(1 << int(bit))])
        lo = np.searchsorted(self.sorted_codes, probes, side="left")
        hi = np.searchsorted(self.sorted_codes, probes, side="right")
        found = [self.order[a:b] for a, b in zip(lo, hi) if b > a]
        return np.unique(np.concatenate(found)).astype(np.int64) if found else np.zeros(0, dtype=np.int64)

    def entries(self, words: np.ndarray) -> Memory:
        """The dense memory of the given word indices (B = 1), recomputed from the text."""
        return entries_from_text(self.model, self.data, self.starts, self.lengths, words)  # uint8 lengths: no O(N) cast


def _true_lengths(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Lengths as int64; a stored uint8 length of 255 means "255 or more": find the real end (rare, few entries)."""
    out = lengths.astype(np.int64)
    if lengths.dtype == np.uint8:
        for i in np.flatnonzero(out == 255):
            position = int(starts[i]) + 255
            while position < len(data) and is_word_byte(data[position]):
                position += 1
            out[i] = position - int(starts[i])
    return out


def entries_from_text(model: LTM, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, words: np.ndarray) -> Memory:
    cfg = model.cfg
    width = cfg.max_word_chars + 1
    n_words = len(starts)
    offsets = np.array(cfg.value_offsets)
    neighbours = words[:, None] + offsets[None, :]
    exists = (neighbours >= 0) & (neighbours < n_words)
    neighbours = np.clip(neighbours, 0, max(n_words - 1, 0))
    word_lengths = _true_lengths(data, starts[words], lengths[words])
    chars = gather_chars(data, starts[words], word_lengths, width)
    seps = gather_separators(data, starts[words], word_lengths, cfg.separator_chars)
    flat = neighbours.reshape(-1)
    nchars = gather_chars(data, starts[flat], _true_lengths(data, starts[flat], lengths[flat]), width).reshape(
        len(words), len(offsets), width
    )
    nchars[~exists] = END
    chars_t, nchars_t = torch.from_numpy(chars), torch.from_numpy(nchars)
    keys = model.encode(chars_t)
    return Memory(
        keys=keys[None],
        roles=model.role(torch.from_numpy(seps))[None],
        mask=torch.ones(1, len(words), dtype=torch.bool),
        neighbour_keys=model.encode(nchars_t)[None],
        neighbour_chars=nchars_t[None],
        neighbour_mask=torch.from_numpy(exists)[None],
    )


def dense_memory(model: LTM, context: np.ndarray) -> Memory:
    """Every context word as an entry: the training-time memory."""
    starts, lengths = find_words(context)
    return entries_from_text(model, context, starts, lengths, np.arange(len(starts)))


@dataclass
class Answer:
    text: str
    logprobs: list[torch.Tensor]  # one (CHARS,) row per generated character step


def answer_from_reads(model: LTM, request: Request, reads: list[tuple[torch.Tensor, Memory]]) -> Answer:
    """Decode the answer from the reads at each depth (attention (1, 1, N_d) over memory_d)."""
    header = torch.from_numpy(request.header)
    header_keys = model.encode(header)[None]
    header_mask = torch.from_numpy(request.header[:, 0] != END)[None]
    depth_logp, continue_logits = model.control(header_keys, header_mask)  # (1, J, D), (1, J)
    offsets = model.offset_weights().log()
    logws, chars, valid = [], [], []
    for depth, (attention, memory) in enumerate(reads):
        lw = attention[0, 0].clamp_min(1e-30).log()[:, None] + offsets[None, :]  # (N, O)
        lw = lw.masked_fill(attention[0, 0][:, None] == 0, float("-inf"))
        logws.append(lw.reshape(1, -1) + depth_logp[0, :, depth : depth + 1])  # (J, N*O)
        chars.append(memory.neighbour_chars[0].reshape(-1, memory.neighbour_chars.shape[-1]))
        valid.append(memory.neighbour_mask[0].reshape(-1))
    text, rows = greedy_answer(torch.cat(logws, 1), torch.cat(chars), torch.cat(valid), continue_logits[0])
    return Answer(text, rows)


class Engine:
    """The trained model over an indexed context: ``prefill`` once, then ``answer`` any number of queries."""

    def __init__(self, model: LTM, cache_contexts: int = 2, device: str = "cpu") -> None:
        if cache_contexts < 1:
            raise HashHopError("the engine keeps at least one prefilled context (cache_contexts >= 1)")
        self.model = model.eval()
        # Prefill's encoder can run on a GPU; reads touch a handful of entries and stay on the CPU.
        self.encoder = None if device == "cpu" else copy.deepcopy(model).to(device)
        self.cache_contexts = cache_contexts
        self._cache: dict[bytes, ContextMemory] = {}
        self.entries_scored: deque[int] = deque(maxlen=100_000)  # candidates scored per recent read (cost accounting)

    def prefill(self, context: np.ndarray, progress: bool = False) -> ContextMemory:
        digest = hashlib.blake2b(memoryview(context), digest_size=16).digest()
        if digest in self._cache:
            self._cache[digest] = self._cache.pop(digest)  # most recently used last: eviction takes the oldest use
            return self._cache[digest]
        check_memory(len(context))
        while self._cache and len(self._cache) >= self.cache_contexts:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = ContextMemory(self.model, context, progress=progress, encoder=self.encoder)
        return self._cache[digest]

    def answer(self, text: str | bytes) -> Answer:
        """Answer a native HashHop request (context, completion header, ``QUERY = '``)."""
        request = split_request(text, self.model.cfg.max_word_chars + 1)
        return self.decode(self.prefill(request.context), request)

    def entries_for(self, memory: ContextMemory, query: torch.Tensor) -> Memory:
        """The entries one read sees: the index's candidates for the query, recomputed from the text."""
        words = memory.candidates(query)
        self.entries_scored.append(len(words))
        return memory.entries(words)

    @torch.inference_mode()
    def decode(self, memory, request: Request) -> Answer:
        """The answer from a prefilled memory: per hop, the entries for the query and a read over them."""
        return decode_hops(self.model, request, lambda query: self.entries_for(memory, query))


def decode_hops(model: LTM, request: Request, entries_for) -> Answer:
    """``max_hops`` reads in a row, each over ``entries_for(query)``, then the answer from them."""
    query = model.encode(torch.from_numpy(request.query))  # (1, d)
    reads = []
    for _ in range(model.cfg.max_hops):
        entries = entries_for(query[0])
        attention, nxt = model.read(query[None], entries)
        reads.append((attention, entries))
        query = nxt[0]
    return answer_from_reads(model, request, reads)


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
        request = split_request(text, self.model.cfg.max_word_chars + 1)
        return self.decode(self.prefill(request.context), request)

    @torch.inference_mode()
    def decode(self, memory: Memory, request: Request) -> Answer:
        return decode_hops(self.model, request, lambda query: memory)  # every read sees every entry


def memory_needed_bytes(context_chars: int) -> int:
    """An upper bound of what prefill needs at its peak: the index keeps 21 bytes per word (about 2 bytes per
    character on HashHop text), but a text of one-letter words has a word every 2 characters, and the sort and
    the word arrays are briefly alive together (about 32 bytes per character in all, text copies included)."""
    return context_chars * 32


def check_memory(context_chars: int) -> None:
    needed = memory_needed_bytes(context_chars)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if needed > available:
        raise HashHopError(
            f"a {context_chars:,}-character context needs up to {needed / 1e9:.1f} GB for prefill; {available / 1e9:.1f} GB is free"
        )
