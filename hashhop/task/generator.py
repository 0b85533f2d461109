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


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int = _WORKERS, ahead: int = 4) -> Iterator[R]:
    """``map`` on a thread pool, in order, with at most ``ahead`` results in flight (bounded memory).
    A single item runs inline: starting threads costs more than small problems take."""
    items = iter(items)
    head = list(itertools.islice(items, 2))
    if len(head) < 2:
        yield from map(fn, head)
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
    """``b"".join(chunks).decode("ascii")`` for ASCII chunks of ``size`` bytes in all, without the
    joined bytes: on CPython the chunks are copied into a new string as they come, so a 300 MB
    prompt costs 300 MB, not 600 MB."""
    target = _new_ascii(size)
    if target is None:
        return b"".join(chunks).decode("ascii")
    import ctypes

    text, address, filled = target
    for chunk in chunks:
        if filled + len(chunk) > size or not chunk.isascii():
            raise ValueError("ascii_string: the chunks are not the promised ASCII bytes")
        ctypes.memmove(address + filled, chunk, len(chunk))
        filled += len(chunk)
    if filled != size:
        raise ValueError(f"ascii_string: the chunks hold {filled} bytes, not {size}")
    return text


@functools.lru_cache(maxsize=1)
def _ascii_data_offset() -> int | None:
    """Where a compact ASCII string's characters start in its object, checked on a fresh string;
    None where that cannot be relied on (not CPython)."""
    try:
        import ctypes
        import sys

        if sys.implementation.name != "cpython":
            return None
        new = ctypes.pythonapi.PyUnicode_New
        new.restype, new.argtypes = ctypes.py_object, (ctypes.c_ssize_t, ctypes.c_uint32)
        offset = sys.getsizeof("") - 1  # the object header; one byte is the terminating NUL
        probe = new(8, 127)
        ctypes.memmove(id(probe) + offset, b"hashhop!", 8)
        return offset if probe == "hashhop!" and probe.isascii() and sys.getsizeof(probe) == offset + 9 else None
    except (AttributeError, OSError, TypeError, ValueError):
        return None


def _new_ascii(size: int) -> tuple[str, int, int] | None:
    """A new, uninitialised ASCII string of ``size`` characters, its data address and 0; None
    when strings cannot be filled in place (then the caller joins and decodes)."""
    offset = _ascii_data_offset()
    if offset is None or size < 1:
        return None
    import ctypes

    text = ctypes.pythonapi.PyUnicode_New(size, 127)
    return text, id(text) + offset, 0


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
        self._chain_ends: dict[int, tuple[int, int]] = {}  # chunk start -> (stop, lines that end a chain)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def prompt_chars(self) -> int:
        return self.num_chains * self.spec.chain_chars() - 1

    # -- rendering ---------------------------------------------------------------------------
    def render_lines(self, start: int, stop: int, eol: bytes = EOL_TEXT) -> bytes:
        """Prompt lines ``[start, stop)`` as ASCII, each followed by ``eol`` except the prompt's last."""
        return self._render(start, stop, eol)[0]

    def _render(self, start: int, stop: int, eol: bytes = EOL_TEXT, hashes: np.ndarray | None = None) -> tuple[bytes, int]:
        """Lines ``[start, stop)`` and how many of them end a chain. ``hashes``: the digits of every
        hash of the problem (:meth:`hash_digits`), gathered instead of computed when given."""
        L, hops = self.spec.hash_length, self.hops
        positions = np.arange(start, stop, dtype=np.uint64)
        line = self._lines(positions)
        chain = line // np.uint64(hops)
        link = line - chain * np.uint64(hops)
        key_index = chain * np.uint64(hops + 1) + link
        mat = np.empty((stop - start, 2 * L + 5 + len(eol)), dtype=np.uint8)
        if hashes is None:
            mat[:, :L] = self.hash_family.digits(key_index)
            mat[:, L + 4 : 2 * L + 4] = self.hash_family.digits(key_index + np.uint64(1))
        else:
            rows = key_index.astype(np.intp)
            mat[:, :L] = np.take(hashes, rows, axis=0)  # take: 20x faster than hashes[rows] on rows of bytes
            rows += 1
            mat[:, L + 4 : 2 * L + 4] = np.take(hashes, rows, axis=0)
        mat[:, L : L + 3] = (_SPACE, _EQUALS, _SPACE)
        mat[:, 2 * L + 5 :] = np.frombuffer(eol, dtype=np.uint8)
        if hops > 1:
            # Only the last link of a chain keeps its quotes: the others' are deleted by translate.
            last = link == np.uint64(hops - 1)
            quotes = np.where(last, np.uint8(_QUOTE), np.uint8(_DELETE))
            mat[:, L + 3] = quotes
            mat[:, 2 * L + 4] = quotes
            ends = int(np.count_nonzero(last))
            text = mat.tobytes().translate(self._table, _DELETE_BYTES)
        else:
            mat[:, L + 3] = _QUOTE
            mat[:, 2 * L + 4] = _QUOTE
            ends = stop - start
            text = mat.tobytes().translate(self._table)
        if stop == self.num_lines:
            text = text[: len(text) - len(eol)]
        return text, ends

    def prompt_chunks(self, eol: bytes = EOL_TEXT, progress: bool = False, hashes: np.ndarray | None = None) -> Iterator[bytes]:
        """The prompt as ASCII chunks of whole lines, computed on two threads, in order."""
        bounds = [(s, min(s + LINES_PER_CHUNK, self.num_lines)) for s in range(0, self.num_lines, LINES_PER_CHUNK)]

        def render(bound: tuple[int, int]) -> bytes:
            text, ends = self._render(bound[0], bound[1], eol, hashes)
            self._chain_ends[bound[0]] = (bound[1], ends)  # lets the queries' offsets skip this chunk
            return text

        chunks = ordered_map(render, bounds)
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

    def hash_digits(self) -> np.ndarray:
        """``(num_chains * (hops + 1), hash_length)`` digits of every hash, row ``i`` for index ``i``
        (memory grows with the size: for materialising whole problems)."""
        n = self.num_chains * (self.hops + 1)
        out = np.empty((n, self.spec.hash_length), dtype=np.uint8)
        step = 1 << 17

        def fill(start: int) -> None:
            stop = min(start + step, n)
            out[start:stop] = self.hash_family.digits(np.arange(start, stop, dtype=np.uint64))

        for _ in ordered_map(fill, range(0, n, step)):
            pass
        return out

    def alphabet_table(self) -> bytes:
        """The ``bytes.translate`` table from digits and this module's codes to text."""
        return self._table

    # -- queries -----------------------------------------------------------------------------
    def query_chain_ids(self) -> np.ndarray:
        """The indices of the queried chains, in completion order."""
        return self._query_chains(np.arange(self.spec.num_queries, dtype=np.uint64))

    @functools.cached_property
    def queries(self) -> tuple[Chain, ...]:
        hops = self.hops
        chains = self.query_chain_ids()
        positions = [self._lines.inverse(chain * np.uint64(hops) + np.arange(hops, dtype=np.uint64)) for chain in chains]
        offsets = self._line_offsets(np.concatenate(positions))
        result = []
        for i, chain in enumerate(chains):
            index = chain * np.uint64(hops + 1) + np.arange(hops + 1, dtype=np.uint64)
            lines = tuple(int(p) for p in positions[i])
            result.append(Chain(tuple(self.hash_family.strings(index)), lines, tuple(offsets[p] for p in lines)))
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
        for start in range(0, int(wanted[-1]) + 1, LINES_PER_CHUNK):
            stop = min(start + LINES_PER_CHUNK, self.num_lines)
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
