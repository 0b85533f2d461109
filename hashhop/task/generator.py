"""The HashHop generator: one spec + seed -> one exactly sized problem, streamed in bounded memory.

Layout: chain ``c`` has hashes ``H(c*(hops+1) + j)`` for ``j = 0..hops`` (``H`` is the keyed
:class:`HashFamily`, injective, so every hash of a sample is distinct); its link ``j`` is line
``c*hops + j``; prompt position ``p`` holds line ``lines(p)`` for a keyed permutation ``lines``.
The queried chains are the first ``num_queries`` images of another keyed permutation of the chains.
Nothing is stored per line, so any prompt line is computed on its own and generation streams.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from hashhop.errors import HashHopError
from hashhop.task.grammar import format_link
from hashhop.task.sample import Chain, HasQueries, Sample
from hashhop.task.spec import HashHopSpec
from hashhop.task.tokens import CharTokenizer, Tokenizer, get_tokenizer

if TYPE_CHECKING:
    import numpy as np
else:

    class _Numpy:
        """numpy, imported on first use (then bound here in its place): every ``hashhop`` command
        imports this module, and ``hashhop --help`` should not wait for numpy."""

        def __getattr__(self, name: str):
            import numpy

            globals()["np"] = numpy
            return getattr(numpy, name)

    np = _Numpy()

LINES_PER_CHUNK = 1 << 16
_GATHER = 1 << 12  # lines whose hashes are gathered at once
_PERMUTE_LINES = 1 << 16  # lines whose positions are permuted at once
PROBE_CHARS = 1 << 20
_WORKERS = 2

# Byte codes of the non-hash characters while a chunk is assembled (hash digits are < 94); one
# bytes.translate maps digits and codes to text at the end.
_DELETE, _SPACE, _EQUALS, _QUOTE, _NEWLINE, _BACKSLASH, _LETTER_N = 249, 250, 251, 252, 253, 254, 255
_DELETE_BYTES = bytes([_DELETE])  # removed by translate: the quotes of links that do not end a chain
EOL_TEXT = bytes([_NEWLINE])  # "\n" in a text file
EOL_JSON = bytes([_BACKSLASH, _LETTER_N])  # "\\n" inside a JSON string

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None, ahead: int = 4) -> Iterator[R]:
    """``map`` on a thread pool of ``workers`` (default ``_WORKERS``) threads, in order, with at most
    ``ahead`` results in flight (bounded memory). A single item, or a single worker, runs inline:
    starting threads costs more than small problems take."""
    workers = _WORKERS if workers is None else workers
    items = iter(items)
    head = list(itertools.islice(items, 2))
    if len(head) < 2 or workers < 2:
        yield from map(fn, itertools.chain(head, items))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in itertools.chain(head, items):
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def ascii_string(chunks: Iterable[bytes], size: int) -> str:
    """``b"".join(chunks).decode("ascii")`` for ASCII chunks of ``size`` bytes in all: the chunks are
    copied into one buffer as they come (no list of chunks), then decoded once. Peak memory: the
    string and the buffer, twice the text, for the moment of the decode (:func:`fill_buffer` and
    :func:`decode_ascii` let a caller free other memory in between)."""
    return decode_ascii(fill_buffer(chunks, size))


def fill_buffer(chunks: Iterable[bytes], size: int) -> np.ndarray:
    """A new uint8 array of ``size`` bytes holding the chunks one after the other; ValueError when
    they hold more or fewer bytes than that."""
    buffer = np.empty(size, dtype=np.uint8)
    view = memoryview(buffer)
    filled = 0
    for chunk in chunks:
        n = len(chunk)
        if filled + n > size:
            raise ValueError(f"the chunks hold more than the {size} bytes promised")
        view[filled : filled + n] = chunk
        filled += n
    if filled != size:
        raise ValueError(f"the chunks hold {filled} bytes, not {size}")
    return buffer


def decode_ascii(buffer: np.ndarray) -> str:
    """The ASCII text in ``buffer`` as a str (UnicodeDecodeError, a ValueError, on any other byte)."""
    return str(memoryview(buffer), "ascii")


_THREAD = threading.local()


def _scratch_bytes(size: int) -> bytearray:
    """A bytearray of ``size`` bytes for this thread to assemble into (contents undefined), reused by
    the next call of the same size: the chunks of a prompt all have one size but the last."""
    cache = getattr(_THREAD, "scratch", None)
    if cache is None:
        cache = _THREAD.scratch = {}
    buffer = cache.get(size)
    if buffer is None:
        if len(cache) >= 4:
            cache.clear()
        buffer = cache[size] = bytearray(size)
    return buffer


def hash_column(mat: np.ndarray, at: int, length: int) -> np.ndarray:
    """Bytes ``[at, at + length)`` of every row of the 2-D uint8 array ``mat`` as a writable view of
    one ``V{length}`` item per row: filling it copies one item per row, not one byte at a time."""
    assert mat.dtype == np.uint8 and mat.ndim == 2 and mat.strides[1] == 1 and 0 <= at and at + length <= mat.shape[1]
    return np.ndarray((mat.shape[0],), dtype=f"V{length}", buffer=mat, offset=at, strides=(mat.strides[0],))


class Problem(HasQueries):
    """A HashHop problem of ``num_chains`` chains, rendered on demand (never held whole in memory)."""

    def __init__(self, spec: HashHopSpec, num_chains: int, prompt_tokens: int | None = None) -> None:
        self.spec = spec
        self.hops = spec.hops
        self.chain_of_thought = spec.chain_of_thought
        self.num_chains = num_chains
        self.num_lines = num_chains * spec.hops
        self.prompt_tokens = prompt_tokens
        self.tokenizer = spec.tokenizer
        alphabet = spec.alphabet_chars
        from hashhop.task.keyed import HashFamily, KeyedPermutation

        self.hash_family = HashFamily(alphabet, spec.hash_length, spec.seed)
        needed = num_chains * (spec.hops + 1)
        if needed > self.hash_family.capacity:
            raise HashHopError(
                f"{spec.hash_length}-character hashes over {len(alphabet)} symbols give only "
                f"{self.hash_family.capacity:,} distinct hashes, and this size needs {needed:,}: "
                "use longer hashes, a larger alphabet or a smaller context"
            )
        if spec.num_queries > num_chains:
            raise HashHopError(
                f"{spec.num_queries} queries need {spec.num_queries} chains, but this context holds only "
                f"{num_chains}: ask fewer queries or raise the context size"
            )
        self._lines = KeyedPermutation(self.num_lines, spec.seed, "lines")
        self._query_chains = KeyedPermutation(num_chains, spec.seed, "queries")
        table = bytearray(range(256))
        table[: len(alphabet)] = alphabet.encode("ascii")
        for code, char in [(_SPACE, " "), (_EQUALS, "="), (_QUOTE, "'"), (_NEWLINE, "\n"), (_BACKSLASH, "\\"), (_LETTER_N, "n")]:
            table[code] = ord(char)
        self._table = bytes(table)
        table[: len(alphabet)] = range(len(alphabet))  # identity on ASCII: for hashes already in text
        self._text_table = bytes(table)
        self._chain_ends: dict[int, tuple[int, int]] = {}  # chunk start -> (stop, lines that end a chain)
        self._chain_ends_step = LINES_PER_CHUNK  # the chunks' size in lines

    # -- sizes -------------------------------------------------------------------------------
    @property
    def prompt_chars(self) -> int:
        return self.num_chains * self.spec.chain_chars() - 1

    # -- rendering ---------------------------------------------------------------------------
    def render_lines(self, start: int, stop: int, eol: bytes = EOL_TEXT) -> bytes:
        """Prompt lines ``[start, stop)`` as ASCII, each followed by ``eol`` except the prompt's last."""
        return bytes(self._render(start, stop, eol)[0])

    def _render(
        self,
        start: int,
        stop: int,
        eol: bytes = EOL_TEXT,
        hashes: np.ndarray | None = None,
        line: np.ndarray | None = None,
        text: bool = False,
    ) -> tuple[bytearray, int]:
        """Lines ``[start, stop)`` and how many of them end a chain. ``hashes``: the digits of every
        hash of the problem (:meth:`hash_digits`; their characters with ``text``), gathered instead of
        computed when given; ``line``: ``lines(arange(start, stop))`` when already computed
        (overwritten here).

        The lines are assembled in a scratch buffer of this thread's, reused from chunk to chunk, and
        ``bytearray.translate`` maps them to text: one new buffer per chunk, not three (fresh memory
        costs a page fault per 4 KiB)."""
        L, hops = self.spec.hash_length, self.hops
        n = stop - start
        if line is None:
            line = self._lines(np.arange(start, stop, dtype=np.uint64))
        # line = chain * hops + link; its key is hash chain * (hops + 1) + link = line + chain, its value the next
        if hops == 1:
            key_index = line + line
        else:
            chain = line // np.uint64(hops)
            key_index = line + chain
            chain *= np.uint64(hops)
            line -= chain  # the link
            last = line == np.uint64(hops - 1)
        width = 2 * L + 5 + len(eol)
        scratch = _scratch_bytes(n * width)
        mat = np.frombuffer(scratch, dtype=np.uint8).reshape(n, width)
        keys, values = hash_column(mat, 0, L), hash_column(mat, L + 4, L)
        if hashes is None:
            keys[:] = self.hash_family.digits(key_index).view(f"V{L}")[:, 0]
            key_index += np.uint64(1)
            values[:] = self.hash_family.digits(key_index).view(f"V{L}")[:, 0]
        else:
            table = np.ascontiguousarray(hashes).view(f"V{L}")[:, 0]
            rows = key_index.astype(np.intp)
            after = rows + 1
            # A line's key and value are neighbours in the table: gathering both for a few thousand
            # lines at a time reads each cache line once. The rows are in range: clip skips the check.
            for at in range(0, n, _GATHER):
                np.take(table, rows[at : at + _GATHER], out=keys[at : at + _GATHER], mode="clip")
                np.take(table, after[at : at + _GATHER], out=values[at : at + _GATHER], mode="clip")
        # The separators as two items per row: " = '" after the key, "'" + eol after the value; the
        # quotes of links that do not end a chain are written as _DELETE, which translate removes.
        middle, end = hash_column(mat, L, 4), hash_column(mat, 2 * L + 4, 1 + len(eol))
        if hops > 1:
            pick = last.view(np.uint8).astype(np.intp)  # 1: the link ends its chain
            np.take(self._separators(eol)[0], pick, out=middle, mode="clip")
            np.take(self._separators(eol)[1], pick, out=end, mode="clip")
            ends = int(np.count_nonzero(last))
            out = scratch.translate(self.alphabet_table(text and hashes is not None), _DELETE_BYTES)
        else:
            middle[:] = self._separators(eol)[0][1]
            end[:] = self._separators(eol)[1][1]
            ends = n
            out = scratch.translate(self.alphabet_table(text and hashes is not None))
        del mat, keys, values, middle, end  # the scratch buffer's views
        if stop == self.num_lines:
            del out[len(out) - len(eol) :]
        return out, ends

    def prompt_text(self, hash_text: np.ndarray, lines_per_chunk: int = 1 << 14) -> np.ndarray:
        """The prompt's bytes (a uint8 array of ``prompt_chars + 1``, the last byte not part of it),
        written in place from ``hash_text`` (:meth:`hash_digits` with ``text=True``).

        For materialising whole prompts: each line's key, separator, value, quotes and newline are
        scattered straight to their offsets (a running sum of the line widths), so the prompt is
        written once, without a per-chunk text to translate and copy."""
        L, hops = self.spec.hash_length, self.hops
        out = np.empty(self.prompt_chars + 1, dtype=np.uint8)  # + the newline after the last line

        def items(length: int) -> np.ndarray:  # item k: bytes [k, k + length) of out
            return np.ndarray((out.size - length + 1,), dtype=f"V{length}", buffer=out, strides=(1,))

        hashes_at, separator_at = items(L), items(3)
        table = np.ascontiguousarray(hash_text).view(f"V{L}")[:, 0]
        separator = np.frombuffer(b" = ", dtype="V3")[0]
        at = 0
        self._chain_ends, self._chain_ends_step = {}, lines_per_chunk
        for group in range(0, self.num_lines, _PERMUTE_LINES):
            lines = self._lines(np.arange(group, min(group + _PERMUTE_LINES, self.num_lines), dtype=np.uint64))
            for first in range(0, lines.size, lines_per_chunk):
                line = lines[first : first + lines_per_chunk]
                chain = line // np.uint64(hops)
                rows = (line + chain).astype(np.intp)  # the key's hash; the value's is the next
                chain *= np.uint64(hops)
                line -= chain
                last = line == np.uint64(hops - 1)  # the link ends its chain: quoted value
                width = last.astype(np.intp)
                width *= 2
                width += 2 * L + 4
                offsets = np.empty(line.size, dtype=np.intp)
                offsets[0] = at
                np.cumsum(width[:-1], out=offsets[1:])
                offsets[1:] += at
                at = int(offsets[-1] + width[-1])
                keys, values = np.empty(line.size, dtype=table.dtype), np.empty(line.size, dtype=table.dtype)
                for sub in range(0, line.size, _GATHER):  # a line's key and value share cache lines
                    np.take(table, rows[sub : sub + _GATHER], out=keys[sub : sub + _GATHER], mode="clip")
                    rows[sub : sub + _GATHER] += 1
                    np.take(table, rows[sub : sub + _GATHER], out=values[sub : sub + _GATHER], mode="clip")
                hashes_at[offsets] = keys
                separator_at[offsets + L] = separator
                ends = offsets[last]
                out[ends + (L + 3)] = ord("'")
                out[ends + (2 * L + 4)] = ord("'")
                offsets += L + 3
                offsets += last
                hashes_at[offsets] = values
                offsets += L
                offsets += last
                out[offsets] = ord("\n")
                self._chain_ends[group + first] = (group + first + line.size, int(ends.size))
        assert at == out.size
        return out

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _separators(eol: bytes) -> tuple[np.ndarray, np.ndarray]:
        """The separator items of a line, ``[deleted quotes, quotes]``: after the key, after the value
        (read-only: shared by every problem)."""
        middle = np.array([bytes([_SPACE, _EQUALS, _SPACE, quote]) for quote in (_DELETE, _QUOTE)], dtype="V4")
        end = np.array([bytes([quote]) + eol for quote in (_DELETE, _QUOTE)], dtype=f"V{1 + len(eol)}")
        middle.flags.writeable = end.flags.writeable = False
        return middle, end

    def prompt_chunks(
        self,
        eol: bytes = EOL_TEXT,
        progress: bool = False,
        hashes: np.ndarray | None = None,
        lines_per_chunk: int | None = None,
        workers: int | None = None,
        text: bool = False,
    ) -> Iterator[bytearray]:
        """The prompt as ASCII chunks of ``lines_per_chunk`` whole lines (default ``LINES_PER_CHUNK``),
        computed on ``workers`` threads (default ``_WORKERS``), in order. ``hashes``: every hash's
        digits (:meth:`hash_digits`; their characters with ``text``), gathered instead of computed."""
        size = lines_per_chunk or LINES_PER_CHUNK
        if size != self._chain_ends_step:  # the counts recorded are for chunks of one size
            self._chain_ends, self._chain_ends_step = {}, size
        # The line permutation is computed for groups of chunks at once (its cycle walking costs a
        # few NumPy calls per call, whatever the size), each group on one thread.
        group = size * max(1, _PERMUTE_LINES // size)
        groups = [(g, min(g + group, self.num_lines)) for g in range(0, self.num_lines, group)]

        def render(g: tuple[int, int]) -> Iterator[bytearray]:
            lines = self._lines(np.arange(g[0], g[1], dtype=np.uint64))
            for start in range(g[0], g[1], size):
                stop = min(start + size, g[1])
                chunk, ends = self._render(start, stop, eol, hashes, lines[start - g[0] : stop - g[0]], text)
                self._chain_ends[start] = (stop, ends)  # lets the queries' offsets skip this chunk
                yield chunk

        workers = _WORKERS if workers is None else workers
        if workers < 2 or len(groups) < 2:  # one chunk at a time: each chunk's memory is reused by the next
            chunks = itertools.chain.from_iterable(map(render, groups))
        else:
            chunks = itertools.chain.from_iterable(ordered_map(lambda g: list(render(g)), groups, workers))
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.prompt_chars, unit="B", unit_scale=True, desc="generate", leave=False, mininterval=0.5)
            for chunk in chunks:
                bar.update(len(chunk))
                yield chunk
            bar.close()
        else:
            yield from chunks

    @property
    def prompt(self) -> str:
        return ascii_string(self.prompt_chunks(), self.prompt_chars)

    def hash_digits(self, workers: int | None = None, text: bool = False) -> np.ndarray:
        """``(num_chains * (hops + 1), hash_length)`` digits of every hash, row ``i`` for index ``i``
        (memory grows with the size: for materialising whole problems), computed on ``workers``
        threads (default ``_WORKERS``). ``text``: the hashes' characters (ASCII codes) instead."""
        n = self.num_chains * (self.hops + 1)
        out = np.empty((n, self.spec.hash_length), dtype=np.uint8)
        workers = _WORKERS if workers is None else workers
        # One contiguous range per worker (each allocates its scratch once), in pieces of at least 2**16.
        step = max(1 << 16, -(-n // max(1, workers)))
        piece = 1 << 15  # mapped to text while in cache

        def fill(start: int) -> None:
            scratch = np.empty(2 * piece * self.spec.hash_length, dtype=np.uint8) if text else None
            for at in range(start, min(start + step, n), piece):
                stop = min(at + piece, start + step, n)
                self.hash_family.range_digits(at, stop, out=out[at:stop])
                if text:
                    self.hash_family.to_text(out[at:stop], scratch)

        for _ in ordered_map(fill, range(0, n, step), workers):
            pass
        return out

    def alphabet_table(self, text: bool = False) -> bytes:
        """The ``bytes.translate`` table from digits and this module's codes to text (``text``: for
        hashes already in text, :meth:`hash_digits` with ``text=True``)."""
        return self._text_table if text else self._table

    # -- queries -----------------------------------------------------------------------------
    def query_chain_ids(self) -> np.ndarray:
        """The indices of the queried chains, in completion order."""
        return self._query_chains(np.arange(self.spec.num_queries, dtype=np.uint64))

    @functools.cached_property
    def queries(self) -> tuple[Chain, ...]:
        """The queried chains, in completion order: O(1) in the size of the prompt. The character
        offsets of their links are computed when first asked for (one pass over the lines before the
        deepest link, skipped for the chunks already rendered), for all of them at once."""
        hops = self.hops
        chains = self.query_chain_ids()
        positions = [self._lines.inverse(chain * np.uint64(hops) + np.arange(hops, dtype=np.uint64)) for chain in chains]
        found: dict[int, int] = {}

        def locate(lines: tuple[int, ...]) -> list[int]:
            if not found:
                found.update(self._line_offsets(np.concatenate(positions)))
            return [found[p] for p in lines]

        result = []
        for i, chain in enumerate(chains):
            index = chain * np.uint64(hops + 1) + np.arange(hops + 1, dtype=np.uint64)
            lines = tuple(int(p) for p in positions[i])
            result.append(Chain(tuple(self.hash_family.strings(index)), lines, locate=locate))
        return tuple(result)

    def _line_offsets(self, positions: np.ndarray) -> dict[int, int]:
        """Character offset of each line position: every line is ``2L+4`` characters with its newline,
        the last link of a chain 2 more (its quotes), so count the last links before each position."""
        L, hops = self.spec.hash_length, self.hops
        wanted = np.unique(positions.astype(np.int64))
        if hops == 1:
            return {int(p): int(p) * (2 * L + 6) for p in wanted}
        last_before = {}
        seen = 0
        step = self._chain_ends_step
        for start in range(0, int(wanted[-1]) + 1, step):
            stop = min(start + step, self.num_lines)
            inside = wanted[(wanted >= start) & (wanted < stop)]
            known = self._chain_ends.get(start)
            if known is not None and known[0] == stop:
                if not inside.size:
                    seen += known[1]  # counted while the prompt was rendered
                    continue
                stop_here = int(inside[-1]) + 1  # the rest of the chunk is known
            else:
                stop_here = stop
            is_last = (self._lines(np.arange(start, stop_here, dtype=np.uint64)) % np.uint64(hops)) == np.uint64(hops - 1)
            cumulative = np.concatenate([[0], np.cumsum(is_last)])
            for p in inside:
                last_before[int(p)] = seen + int(cumulative[p - start])
            seen += known[1] if stop_here != stop else int(cumulative[-1])
        return {p: p * (2 * L + 4) + 2 * n for p, n in last_before.items()}

    def all_chains(self) -> list[list[str]]:
        """Every chain's hashes, chain by chain (memory grows with the size: for small problems)."""
        n_hashes = self.num_chains * (self.hops + 1)
        flat = self.hash_family.strings(np.arange(n_hashes, dtype=np.uint64))
        return [flat[c * (self.hops + 1) : (c + 1) * (self.hops + 1)] for c in range(self.num_chains)]

    def chain_text(self, chain: int) -> str:
        """Chain ``chain``'s lines alone, each with its newline (to count one chain's tokens)."""
        index = np.uint64(chain * (self.hops + 1)) + np.arange(self.hops + 1, dtype=np.uint64)
        hashes = self.hash_family.strings(index)
        return "".join(format_link(hashes[j], hashes[j + 1], j == self.hops - 1) + "\n" for j in range(self.hops))

    def sample(self) -> Sample:
        return Sample(
            prompt=self.prompt,
            hops=self.hops,
            chain_of_thought=self.chain_of_thought,
            queries=self.queries,
            num_lines=self.num_lines,
            prompt_tokens=self.prompt_tokens,
            tokenizer=self.tokenizer,
            spec=self.spec,
        )


def count_prompt_tokens(problem: Problem, tokenizer: Tokenizer) -> int:
    """Exact token count of the prompt, streamed chunk by chunk (chunks end after a newline)."""
    if isinstance(tokenizer, CharTokenizer):
        return problem.prompt_chars
    counts = ordered_map(lambda chunk: tokenizer.count(chunk.decode("ascii")), problem.prompt_chunks())
    return sum(counts)


def _too_small(spec: HashHopSpec, one_chain: int) -> HashHopError:
    return HashHopError(
        f"a context of {spec.context_tokens:,} {_unit(spec)} is too small for one chain, which takes "
        f"{one_chain:,}: raise the context size, or use fewer hops or shorter hashes"
    )


def _unit(spec: HashHopSpec) -> str:
    return "characters" if get_tokenizer(spec.tokenizer).name == "chars" else f"{spec.tokenizer} tokens"


def plan(spec: HashHopSpec) -> Problem:
    """The problem with the most whole chains whose prompt fits in ``spec.context_tokens``.

    Characters: solved exactly in closed form. Tokens: the prompt is counted exactly with the
    tokenizer, and the number of chains corrected (by the measured tokens per chain) until the
    prompt fits and the next chain would not.
    """
    tokenizer = get_tokenizer(spec.tokenizer)
    target = spec.context_tokens
    if isinstance(tokenizer, CharTokenizer):
        num_chains = (target + 1) // spec.chain_chars()
        if num_chains < 1:
            raise _too_small(spec, spec.chain_chars() - 1)
        problem = Problem(spec, num_chains)
        problem.prompt_tokens = problem.prompt_chars
        return problem

    from hashhop.task.keyed import HashFamily

    family = HashFamily(spec.alphabet_chars, spec.hash_length, spec.seed)
    max_chains = family.capacity // (spec.hops + 1)
    # 256 chains measure the tokens per chain; fewer when chains are long (about 1M characters at most).
    probe_chains = max(1, min(256, max_chains, PROBE_CHARS // spec.chain_chars()))
    probe = Problem(_with_queries(spec, 1), probe_chains)
    one_chain = tokenizer.count(probe.chain_text(0).rstrip("\n"))
    if one_chain > target:  # before counting the probe: a long chain in a small context fails at once
        raise _too_small(spec, one_chain)
    per_chain = count_prompt_tokens(probe, tokenizer) / probe_chains

    num_chains = max(1, min(max_chains, int(target / per_chain)))
    best: tuple[int, int] | None = None
    tried: dict[int, int] = {}
    for _ in range(12):
        problem = Problem(_with_queries(spec, 1), num_chains)
        tokens = tried[num_chains] = count_prompt_tokens(problem, tokenizer)
        if tokens <= target:
            if best is None or num_chains > best[0]:
                best = (num_chains, tokens)
            gap = target - tokens
            if num_chains >= max_chains or gap < tokenizer.count(problem.chain_text(num_chains)):
                break
            step = max(1, int(gap / per_chain))
            num_chains = min(max_chains, num_chains + step)
        else:
            step = max(1, math.ceil((tokens - target) / per_chain))
            num_chains -= step
            if num_chains < 1:
                raise _too_small(spec, tokens)
        if num_chains in tried:  # oscillating between two sizes: the best that fits is the answer
            break
    if best is None:
        raise _too_small(spec, tried[min(tried)])
    problem = Problem(spec, best[0], prompt_tokens=best[1])
    if best[0] == max_chains and best[1] + per_chain <= target:
        # Would fit more chains but the hash space is exhausted.
        Problem(spec, max_chains + 1)  # raises the capacity error
    return problem


def _with_queries(spec: HashHopSpec, num_queries: int) -> HashHopSpec:
    """The same problem asked fewer queries: the prompt does not depend on the queries."""
    from dataclasses import replace

    return replace(spec, num_queries=num_queries)


def generate(spec: HashHopSpec) -> Sample:
    """One HashHop sample, materialised in memory (use :func:`plan` and stream it for huge sizes)."""
    return plan(spec).sample()


def generate_many(spec: HashHopSpec, count: int) -> Iterator[Problem]:
    """``count`` problems: sample ``i`` uses seed ``spec.seed + i``."""
    from dataclasses import replace

    for i in range(count):
        yield plan(replace(spec, seed=spec.seed + i))
