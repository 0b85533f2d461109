"""A HashHop sample: the prompt, the queried chains with every hash and the position of every link,
and the completion in Magic's format."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import FrozenInstanceError, asdict, dataclass

from hashhop.task.grammar import answer_text, completion_header, format_completion  # noqa: F401 (completion_header: used by importers)
from hashhop.task.spec import HashHopSpec


class Chain:
    """One chain ``H1 -> H2 -> ... -> H(hops+1)``; link ``i`` is the prompt line ``H(i+1) = H(i+2)``.

    Immutable, compared and printed like a frozen dataclass of ``hashes``, ``lines`` and ``offsets``.
    ``offsets`` may be given as a function of ``lines`` instead of a tuple (``locate``): it is then
    computed on first use, so a problem's queries (hashes, lines, completion) cost O(1) in the size of
    the prompt; only the character offsets of the links need a pass over the prompt's lines
    (cheap once the prompt has been rendered)."""

    __slots__ = ("hashes", "lines", "_offsets", "_locate")

    def __init__(self, hashes: tuple[str, ...], lines: tuple[int, ...], offsets: tuple[int, ...] | None = None,
                 locate: Callable[[tuple[int, ...]], Sequence[int]] | None = None) -> None:
        if (offsets is None) == (locate is None):
            raise TypeError("Chain needs either offsets or locate")
        object.__setattr__(self, "hashes", tuple(hashes))
        object.__setattr__(self, "lines", tuple(lines))
        object.__setattr__(self, "_offsets", None if offsets is None else tuple(offsets))
        object.__setattr__(self, "_locate", locate)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Character offset of each link's line in the prompt."""
        offsets, locate = self._offsets, self._locate
        if offsets is None:
            if locate is None:  # another thread has just computed them
                return self._offsets
            offsets = tuple(int(o) for o in locate(self.lines))
            object.__setattr__(self, "_offsets", offsets)
            object.__setattr__(self, "_locate", None)  # lets the problem go
        return offsets

    def __setattr__(self, name: str, value) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.hashes, self.lines) == (other.hashes, other.lines) and self.offsets == other.offsets

    def __hash__(self) -> int:
        return hash((self.hashes, self.lines))  # equal chains have equal hashes and lines

    def __repr__(self) -> str:
        return f"Chain(hashes={self.hashes!r}, lines={self.lines!r}, offsets={self.offsets!r})"

    def __reduce__(self):
        return (Chain, (self.hashes, self.lines, self.offsets))

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
