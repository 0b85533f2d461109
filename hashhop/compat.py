"""Drop-in for Magic's generator: ``MultiHopEval.make_one`` with the same signature and fields.

Differences, all deliberate: the prompt never exceeds ``n_chars_problem`` (Magic's overshoots by
4-9%), hashes are distinct by construction, the queried chains are drawn at random, and ``seed``
makes a call reproducible (without it each call is fresh, as in Magic's).

The sample is built by the vectorised engine: every hash is computed once (NumPy), the prompt is
rendered from them straight into one string, and the targets of every chain are cut out of one
rendered text per block of chains, so no Python object is made per line or per hash."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from hashhop.task.generator import _EQUALS, _NEWLINE, _SPACE, Problem, ascii_string, plan
from hashhop.task.spec import HashHopSpec

_BLOCK = 1 << 16  # chains whose targets are rendered at once


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
        hashes = problem.hash_digits()  # each hash once; the prompt and the targets gather from it
        prompt = ascii_string(problem.prompt_chunks(hashes=hashes), problem.prompt_chars)
        queried = problem.query_chain_ids().astype(np.intp)
        targets = dict(_chain_targets(problem, hashes, queried))  # the queried chains first, in completion order
        for start in range(0, problem.num_chains, _BLOCK):
            targets.update(_chain_targets(problem, hashes, np.arange(start, min(start + _BLOCK, problem.num_chains))))
        del hashes
        return MultiHopSample(prompt=prompt, completion=problem.completion, targets=targets)


def _chain_targets(problem: Problem, hashes: np.ndarray, chains: np.ndarray):
    """``(first hash, answer)`` of each chain in ``chains``: the keys and the answers are each
    rendered as one text, one line per chain, and split."""
    hops, length = problem.hops, problem.spec.hash_length
    rows = np.take(hashes.reshape(-1, hops + 1, length), chains, axis=0)
    answer_hashes = range(1, hops + 1) if problem.chain_of_thought else [hops]
    return zip(_lines(problem, [rows[:, 0]]), _lines(problem, [rows[:, j] for j in answer_hashes]))


def _lines(problem: Problem, columns: list[np.ndarray]) -> list[str]:
    """One line per row: the hashes of ``columns`` joined by `` = ``."""
    rows, length = columns[0].shape
    width = len(columns) * (length + 3) - 2
    mat = np.empty((rows, width), dtype=np.uint8)
    for j, column in enumerate(columns):
        at = j * (length + 3)
        mat[:, at : at + length] = column
        if j + 1 < len(columns):
            mat[:, at + length : at + length + 3] = (_SPACE, _EQUALS, _SPACE)
    mat[:, -1] = _NEWLINE
    text = mat.tobytes().translate(problem.alphabet_table())
    return str(memoryview(text)[:-1], "ascii").split("\n")
