"""Drop-in for Magic's generator: ``MultiHopEval.make_one`` with the same signature and fields.

Differences, all deliberate: the prompt never exceeds ``n_chars_problem`` (Magic's overshoots by
4-9%), hashes are distinct by construction, the queried chains are drawn at random, and ``seed``
makes a call reproducible (without it each call is fresh, as in Magic's).

The sample is built by the vectorised engine: every hash is computed once (NumPy), the prompt is
written from those hashes into one buffer (each line's pieces scattered to their offsets), and the targets of every chain are cut out of one
rendered text per block of chains (one ``str.split``, then ``dict.update(zip(...))``), so no Python
object is made per line or per hash beyond the strings and the dict that the sample holds."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from hashhop.task.generator import Problem, decode_ascii, hash_column, plan
from hashhop.task.spec import HashHopSpec

# Chains whose targets are rendered at once, and prompt lines per chunk: small enough that every
# buffer of a block stays in cache and below glibc's mmap threshold (128 KiB), so the memory of one
# block is reused by the next instead of being mapped afresh (a page fault per 4 KiB: here 2-3 us,
# as much as a pass of the work over those bytes). Fewer chains per block when chains are long.
_BLOCK, _BLOCK_BYTES = 1 << 11, 96 << 10
_LINES_PER_CHUNK = 1 << 14
# Threads for the hashes and the prompt: one. The targets (most of the time: Python strings and the
# dict) hold the GIL, and threads add CPU time (locks, a malloc arena each) for the little they save.
_WORKERS = 1


@dataclass
class MultiHopSample:
    prompt: str
    """The shuffled hash pairs."""
    completion: str
    """What the model should output given the prompt."""
    targets: dict[str, str]
    """Every chain, ``{first hash: answer}``; the queried chains come first, in completion order."""


class MultiHopEval:
    @staticmethod
    def make_one(
        n_chars_problem: int,
        num_queries: int,
        hops: int,
        hash_pair_str_length: int,
        chain_of_thought: bool,
        seed: int | None = None,
    ) -> MultiHopSample:
        spec = HashHopSpec(
            context_tokens=int(n_chars_problem),
            tokenizer="chars",
            hops=hops,
            chain_of_thought=chain_of_thought,
            hash_length=hash_pair_str_length,
            num_queries=num_queries,
            seed=secrets.randbits(63) if seed is None else seed,
        )
        problem = plan(spec)
        # Each hash once, as text: the prompt and the targets gather from it.
        hashes = problem.hash_digits(_WORKERS, text=True)
        prompt_bytes = problem.prompt_text(hashes, _LINES_PER_CHUNK)  # + a newline after the last line
        completion = problem.completion
        # The queried chains first, in completion order, then every chain in order (update keeps a
        # key where it first came).
        targets = _str_dict()
        targets.update((c.query, c.answer(problem.chain_of_thought)) for c in problem.queries)
        rows = np.ascontiguousarray(hashes).view(f"V{problem.spec.hash_length}").reshape(problem.num_chains, problem.hops + 1)
        answer_chars = len(problem.queries[0].answer(problem.chain_of_thought))
        block = max(1, min(_BLOCK, _BLOCK_BYTES // (problem.spec.hash_length + answer_chars + 2)))
        for start in range(0, problem.num_chains, block):
            pieces = iter(_target_lines(problem, rows[start : start + block]))
            targets.update(zip(pieces, pieces))
        del hashes, rows  # before the prompt is decoded: the peak is the prompt twice, not three times
        prompt = decode_ascii(prompt_bytes[:-1])
        del prompt_bytes
        return MultiHopSample(prompt=prompt, completion=completion, targets=targets)


def _str_dict() -> dict:
    """An empty dict for many str keys, in the layout that stores each key's hash in the table.

    CPython (3.11+) gives a dict whose keys are all str a compact layout without the hashes, so an
    insert that meets an occupied slot reads that key's string object to compare hashes: a cache
    miss per collision once the dict outgrows the cache. A dict that has held any other key keeps the
    general layout, hashes stored (8 bytes more per entry), through every resize: building the
    targets of 405k chains takes 1.7x less time. Only speed and layout differ: it is a plain dict."""
    table: dict = {0: None}
    del table[0]
    return table


def _target_lines(problem: Problem, rows: np.ndarray) -> list[str]:
    """``[first hash, answer, first hash, answer, ...]`` of the chains whose hashes are ``rows``
    (``(chains, hops + 1)`` items of ``hash_length`` characters): written as one text of two lines
    per chain, decoded once and split."""
    hops, length = problem.hops, problem.spec.hash_length
    answer_hashes = list(range(1, hops + 1)) if problem.chain_of_thought else [hops]
    # key \n answer \n, the answer's hashes joined by " = "
    offsets = [0] + [length + 1 + j * (length + 3) for j in range(len(answer_hashes))]
    width = offsets[-1] + length + 1
    mat = np.empty((len(rows), width), dtype=np.uint8)
    for at, column in zip(offsets, [0, *answer_hashes]):
        hash_column(mat, at, length)[:] = rows[:, column]
    mat[:, length] = ord("\n")
    for at in offsets[2:]:
        mat[:, at - 3 : at] = np.frombuffer(b" = ", dtype=np.uint8)
    mat[:, -1] = ord("\n")
    return str(memoryview(mat).cast("B")[:-1], "ascii").split("\n")
