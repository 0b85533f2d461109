"""Drop-in for Magic's generator: ``MultiHopEval.make_one`` with the same signature and fields.

Differences, all deliberate: the prompt never exceeds ``n_chars_problem`` (Magic's overshoots by
4-9%), hashes are distinct by construction, the queried chains are drawn at random, and ``seed``
makes a call reproducible (without it each call is fresh, as in Magic's)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from hashhop.task.generator import plan
from hashhop.task.spec import HashHopSpec


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
        sample = problem.sample()
        targets = dict(sample.targets)
        for chain in problem.all_chains():
            if chain[0] not in targets:
                targets[chain[0]] = " = ".join(chain[1:]) if chain_of_thought else chain[-1]
        return MultiHopSample(prompt=sample.prompt, completion=sample.completion, targets=targets)
