"""What prefill keeps: the trained LTM's memory of a context of any length, indexed for fixed-cost reads.

Prefill keeps, for the context, only its raw bytes and an index of its words: where each word starts,
its length, and the 64 sign bits of its key (sorted, with the word each code belongs to). That is
1 byte per character plus 21 bytes per word (about 2 bytes per character on HashHop text). Keys,
role scores and values are not stored: they are local functions of the text, recomputed for the
few entries a read touches (:func:`entries_from_text`).

A read looks up the query's sign code (and the codes with its least certain bits flipped) with a
binary search (:meth:`ContextMemory.candidates`); the engine (:mod:`hashhop.ltm.engine`) rescores those
candidates exactly as the dense model does. A read scores at most ``MAX_CANDIDATES`` entries, whatever
the text: a word repeated N times matches N entries, and only its first ``MAX_CANDIDATES`` occurrences
(by position) are kept, so a read's work never grows with the context (HashHop keys match 1-2).
:func:`dense_memory` is the training-time memory: every word an entry.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from hashhop.errors import HashHopError
from hashhop.ltm.model import LTM, Memory
from hashhop.ltm.text import END, find_words, gather_chars, gather_separators, is_word_byte

CHUNK_WORDS = 1 << 13  # words encoded at once by prefill: ~35 MB of activations (2^16 took ~270 MB, no faster)
PROBE_BITS = 4  # also look up the codes with the 4 least certain bits flipped (16 probes)
MAX_CANDIDATES = 64  # entries one read scores at most: the earliest matches by position
_WORD_BYTE = np.array([is_word_byte(code) for code in range(256)])


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

    def candidates(self, query: torch.Tensor, limit: int = MAX_CANDIDATES) -> np.ndarray:
        """Word indices whose code equals the query's, or differs only in its least certain bits: the first
        ``limit`` of them by position. Equal codes are sorted by position (a stable sort), so each probe's
        range is cut to its first ``limit`` entries before anything is copied: O(probes * limit) work,
        however many words match (a word repeated a million times costs what a word seen once does)."""
        if len(self) == 0 or limit < 1:
            return np.zeros(0, dtype=np.int64)
        code = int(_codes(query[None])[0])
        uncertain = np.argsort(query.abs().numpy())[:PROBE_BITS]
        probes = np.array([code], dtype=np.uint64)
        for bit in uncertain:
            probes = np.concatenate([probes, probes ^ np.uint64(1 << int(bit))])
        lo = np.searchsorted(self.sorted_codes, probes, side="left")
        hi = np.searchsorted(self.sorted_codes, probes, side="right")
        found = [self.order[a : min(b, a + limit)] for a, b in zip(lo, hi) if b > a]
        return np.unique(np.concatenate(found))[:limit].astype(np.int64) if found else np.zeros(0, dtype=np.int64)

    def entries(self, words: np.ndarray) -> Memory:
        """The dense memory of the given word indices (B = 1), recomputed from the text."""
        return entries_from_text(self.model, self.data, self.starts, self.lengths, words)  # uint8 lengths: no O(N) cast


def _true_lengths(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Lengths as int64; a stored uint8 length of 255 means "255 or more": find the real end (rare, few entries)."""
    out = lengths.astype(np.int64)
    if lengths.dtype == np.uint8:
        for i in np.flatnonzero(out == 255):
            out[i] = _word_end(data, int(starts[i]) + 255) - int(starts[i])
    return out


def _word_end(data: np.ndarray, position: int) -> int:
    """The first non-word byte at or after ``position`` (or the end): numpy over growing blocks, no Python
    loop per byte (a megabyte-long word is a few block scans, not a million iterations)."""
    block = 4096
    while position < len(data):
        chunk = data[position : position + block]
        outside = ~_WORD_BYTE[chunk]
        if outside.any():
            return position + int(outside.argmax())
        position += len(chunk)
        block *= 2
    return len(data)


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
