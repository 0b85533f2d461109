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
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from hashhop.errors import HashHopError
from hashhop.task.grammar import format_link
from hashhop.task.keyed import HashFamily, KeyedPermutation
from hashhop.task.sample import Chain, HasQueries, Sample
from hashhop.task.spec import HashHopSpec
from hashhop.task.tokens import CharTokenizer, Tokenizer, get_tokenizer

LINES_PER_CHUNK = 1 << 16
_WORKERS = 2

# Byte codes of the non-hash characters while a chunk is assembled (hash digits are < 94); one
# bytes.translate maps digits and codes to text at the end.
_SPACE, _EQUALS, _QUOTE, _NEWLINE, _BACKSLASH, _LETTER_N = 250, 251, 252, 253, 254, 255
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
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in itertools.chain(head, items):
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


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

    # -- sizes -------------------------------------------------------------------------------
    @property
    def prompt_chars(self) -> int:
        return self.num_chains * self.spec.chain_chars() - 1

    # -- rendering ---------------------------------------------------------------------------
    def render_lines(self, start: int, stop: int, eol: bytes = EOL_TEXT) -> bytes:
        """Prompt lines ``[start, stop)`` as ASCII, each followed by ``eol`` except the prompt's last."""
        L, hops = self.spec.hash_length, self.hops
        positions = np.arange(start, stop, dtype=np.uint64)
        line = self._lines(positions)
        chain = line // np.uint64(hops)
        link = line - chain * np.uint64(hops)
        key_index = chain * np.uint64(hops + 1) + link
        width = 2 * L + 5 + len(eol)
        mat = np.empty((stop - start, width), dtype=np.uint8)
        mat[:, :L] = self.hash_family.digits(key_index)
        mat[:, L : L + 4] = (_SPACE, _EQUALS, _SPACE, _QUOTE)
        mat[:, L + 4 : 2 * L + 4] = self.hash_family.digits(key_index + np.uint64(1))
        mat[:, 2 * L + 4] = _QUOTE
        mat[:, 2 * L + 5 :] = np.frombuffer(eol, dtype=np.uint8)
        if hops > 1:
            # Only the last link of a chain keeps its quotes.
            not_last = np.flatnonzero(link != np.uint64(hops - 1))
            keep = np.ones(mat.shape, dtype=bool)
            keep[not_last, L + 3] = False
            keep[not_last, 2 * L + 4] = False
            flat = mat[keep]
        else:
            flat = mat.reshape(-1)
        if stop == self.num_lines:
            flat = flat[: flat.size - len(eol)]
        return flat.tobytes().translate(self._table)

    def prompt_chunks(self, eol: bytes = EOL_TEXT, progress: bool = False) -> Iterator[bytes]:
        """The prompt as ASCII chunks of whole lines, computed on two threads, in order."""
        bounds = [(s, min(s + LINES_PER_CHUNK, self.num_lines)) for s in range(0, self.num_lines, LINES_PER_CHUNK)]
        chunks = ordered_map(lambda b: self.render_lines(b[0], b[1], eol), bounds)
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.prompt_chars, unit="B", unit_scale=True, desc="generate", leave=False)
            for chunk in chunks:
                bar.update(len(chunk))
                yield chunk
            bar.close()
        else:
            yield from chunks

    @property
    def prompt(self) -> str:
        return b"".join(self.prompt_chunks()).decode("ascii")

    # -- queries -----------------------------------------------------------------------------
    @functools.cached_property
    def queries(self) -> tuple[Chain, ...]:
        hops = self.hops
        chains = self._query_chains(np.arange(self.spec.num_queries, dtype=np.uint64))
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
            is_last = (self._lines(np.arange(start, stop, dtype=np.uint64)) % np.uint64(hops)) == np.uint64(hops - 1)
            cumulative = np.concatenate([[0], np.cumsum(is_last)])
            for p in wanted[(wanted >= start) & (wanted < stop)]:
                last_before[int(p)] = seen + int(cumulative[p - start])
            seen += int(cumulative[-1])
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

    probe_chains = 256
    family = HashFamily(spec.alphabet_chars, spec.hash_length, spec.seed)
    probe_chains = max(1, min(probe_chains, family.capacity // (spec.hops + 1)))
    probe = Problem(_with_queries(spec, 1), probe_chains)
    per_chain = count_prompt_tokens(probe, tokenizer) / probe_chains
    max_chains = family.capacity // (spec.hops + 1)
    if tokenizer.count(probe.chain_text(0).rstrip("\n")) > target:
        raise _too_small(spec, tokenizer.count(probe.chain_text(0).rstrip("\n")))

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
