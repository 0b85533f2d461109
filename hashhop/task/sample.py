"""A HashHop sample: the prompt, the queried chains with every hash and the position of every link,
and the completion in Magic's format."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hashhop.task.grammar import answer_text, completion_header, format_completion  # noqa: F401 (completion_header: used by importers)
from hashhop.task.spec import HashHopSpec


@dataclass(frozen=True)
class Chain:
    """One chain ``H1 -> H2 -> ... -> H(hops+1)``; link ``i`` is the prompt line ``H(i+1) = H(i+2)``."""

    hashes: tuple[str, ...]
    lines: tuple[int, ...]  # prompt line index of each link (0-based)
    offsets: tuple[int, ...]  # character offset of each link's line in the prompt

    @property
    def query(self) -> str:
        return self.hashes[0]

    def answer(self, chain_of_thought: bool) -> str:
        """What goes between the quotes: ``H2 = H3`` with chain of thought, ``H3`` without."""
        return answer_text(self.hashes[1:]) if chain_of_thought else self.hashes[-1]


class HasQueries:
    """Completion, targets and export record of anything with ``hops``, ``chain_of_thought``, ``queries``."""

    hops: int
    chain_of_thought: bool
    queries: tuple[Chain, ...]

    @property
    def completion(self) -> str:
        return format_completion(self.hops, self.chain_of_thought, [(c.query, c.answer(self.chain_of_thought)) for c in self.queries])

    @property
    def targets(self) -> dict[str, str]:
        """``{query: expected answer}`` for the queried chains, in completion order."""
        return {c.query: c.answer(self.chain_of_thought) for c in self.queries}

    def record(self) -> dict:
        """Every field but the prompt, in the flat, fixed shape of the JSONL and Parquet exports
        (fixed, so ``datasets`` infers one table for many samples)."""
        spec = getattr(self, "spec", None)
        return {
            "completion": self.completion,
            "hops": self.hops,
            "chain_of_thought": self.chain_of_thought,
            "queries": [c.query for c in self.queries],
            "answers": [c.answer(self.chain_of_thought) for c in self.queries],
            "chains": [list(c.hashes) for c in self.queries],
            "link_lines": [list(c.lines) for c in self.queries],
            "link_offsets": [list(c.offsets) for c in self.queries],
            "num_lines": self.num_lines,
            "prompt_tokens": self.prompt_tokens,
            "tokenizer": self.tokenizer,
            "spec": asdict(spec) if spec is not None else None,
        }


@dataclass(frozen=True)
class Sample(HasQueries):
    """A materialised sample: the prompt text and everything needed to score answers to it."""

    prompt: str
    hops: int
    chain_of_thought: bool
    queries: tuple[Chain, ...]
    num_lines: int
    prompt_tokens: int | None = None  # in ``tokenizer``'s tokens, when known
    tokenizer: str | None = None
    spec: HashHopSpec | None = None

    def prompt_chunks(self):
        yield self.prompt
