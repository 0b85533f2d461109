"""What a HashHop problem is asked to be: the spec, with validation and size parsing."""

from __future__ import annotations

import math
import re
import string
from dataclasses import asdict, dataclass, fields

from hashhop.errors import HashHopError

# Named alphabets; Magic's generator uses "letters" (lowercase then uppercase).
ALPHABETS = {
    "letters": string.ascii_lowercase + string.ascii_uppercase,
    "lower": string.ascii_lowercase,
    "alnum": string.ascii_lowercase + string.ascii_uppercase + string.digits,
    "hex": "0123456789abcdef",
    "digits": string.digits,
}
# Characters a hash may not contain: they would make the `KEY = 'VALUE'` format ambiguous.
_FORBIDDEN = set(" ='\"\\\t\r\n")
MAX_ALPHABET = 94

# Upper limits: far beyond any useful problem, low enough that nothing derived from them is slow.
_LIMITS = (
    ("context_tokens", "context size", "--context", 10**12),
    ("hops", "hops", "--hops", 1_000_000),
    ("hash_length", "hash length", "--hash-length", 4096),
    ("num_queries", "queries", "--queries", 1_000_000),
)
# A lower bound of tokens for text, for tokenizers a spec cannot load: no tokenizer in use puts more
# than this many characters of HashHop text (hashes, " = ", newlines) in one token.
_MAX_CHARS_PER_TOKEN = 32


def _chars_per_token_bound(tokenizer: str) -> int:
    """Most characters one token of ``tokenizer`` can hold, as far as a spec can tell without loading it."""
    if tokenizer.startswith("estimate:"):
        try:
            return max(_MAX_CHARS_PER_TOKEN, math.ceil(float(tokenizer.split(":", 1)[1])))
        except (ValueError, OverflowError):
            return _MAX_CHARS_PER_TOKEN  # get_tokenizer names the bad ratio
    return _MAX_CHARS_PER_TOKEN

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbg]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}


def parse_size(text: str | int) -> int:
    """'100k' -> 100000, '1M' -> 1000000, '3e8' -> 300000000, 4096 -> 4096 (decimal suffixes)."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(str(text))
    if not match:
        raise HashHopError(f"cannot read size {text!r}: use a number such as 4096, 100k, 1M, 1.5M or 3e8")
    value = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    if not math.isfinite(value) or value > 1e15:
        raise HashHopError(f"size {text!r} is too large: sizes go up to 1e15")
    if value != int(value):
        raise HashHopError(f"size {text!r} is not a whole number")
    return int(value)


def resolve_alphabet(alphabet: str) -> str:
    """A named alphabet (letters, lower, alnum, hex, digits) or the literal characters to use."""
    chars = ALPHABETS.get(alphabet, alphabet)
    bad = sorted({c for c in chars if c in _FORBIDDEN or not (c.isascii() and c.isprintable())})
    if bad:
        raise HashHopError(
            f"alphabet {alphabet!r} has characters a hash cannot hold ({''.join(bad)!r}): use printable "
            f"ASCII without spaces, quotes, '=' or backslashes, or a name: {', '.join(ALPHABETS)}"
        )
    if len(set(chars)) != len(chars):
        raise HashHopError(f"alphabet {alphabet!r} repeats characters: list each character once")
    if not 2 <= len(chars) <= MAX_ALPHABET:
        raise HashHopError(f"alphabet {alphabet!r} has {len(chars)} characters: use 2 to {MAX_ALPHABET}, or a name: {', '.join(ALPHABETS)}")
    return chars


@dataclass(frozen=True)
class HashHopSpec:
    """One HashHop problem: ``hops`` links per chain, prompt sized to ``context_tokens`` of ``tokenizer``.

    ``tokenizer`` is "chars" (sizes in characters), a tiktoken encoding ("cl100k_base",
    "o200k_base") or the path of a Hugging Face ``tokenizer.json``. The prompt is the longest
    whole-chain prompt that does not exceed ``context_tokens``.
    """

    context_tokens: int = 100_000
    tokenizer: str = "cl100k_base"
    hops: int = 2
    chain_of_thought: bool = False
    hash_length: int = 16
    alphabet: str = "letters"
    num_queries: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        # Every check is O(1) in the sizes: absurd values fail here, before any work.
        for name, label, flag, top in _LIMITS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HashHopError(f"{label} must be a whole number >= 1 ({flag}), got {value!r}")
            if value > top:
                raise HashHopError(f"{label} must be at most {top:,} ({flag}), got {value:,}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise HashHopError(f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r}")
        resolve_alphabet(self.alphabet)
        self._check_fits()

    def _check_fits(self) -> None:
        """``num_queries`` chains of ``hops`` links of ``hash_length`` hashes must fit the context:
        exactly for characters; for tokens, with a lower bound of the tokens a chain takes (a token
        holds at most ``_MAX_CHARS_PER_TOKEN`` characters), so a spec that passes may still be
        refused by :func:`~hashhop.task.generator.plan`, which counts the real tokens."""
        chars = self.tokenizer in ("chars", "char", "characters")
        per_token = 1 if chars else _chars_per_token_bound(self.tokenizer)
        unit, at_least = ("characters", "") if chars else (f"{self.tokenizer} tokens", "at least ")
        one_chain = -(-(self.chain_chars() - 1) // per_token)  # a prompt's last line has no newline
        if one_chain > self.context_tokens:
            raise HashHopError(
                f"a context of {self.context_tokens:,} {unit} is too small for one chain, which takes {at_least}{one_chain:,} "
                f"({self.hops:,} hop(s) of {self.hash_length:,}-character hashes): raise the context size (--context), "
                "or use fewer hops (--hops) or shorter hashes (--hash-length)"
            )
        needed = -(-(self.num_queries * self.chain_chars() - 1) // per_token)
        if needed > self.context_tokens:
            raise HashHopError(
                f"{self.num_queries:,} queries need {self.num_queries:,} chains, which take {at_least}{needed:,} {unit}, but the "
                f"context holds {self.context_tokens:,}: ask fewer queries (--queries) or raise the context size (--context)"
            )

    @property
    def alphabet_chars(self) -> str:
        return resolve_alphabet(self.alphabet)

    def chain_chars(self) -> int:
        """Characters one chain adds to the prompt: its lines, the quotes of the last, the newlines."""
        return self.hops * (2 * self.hash_length + 4) + 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HashHopSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HashHopError(f"unknown spec field(s) {', '.join(unknown)}: known fields are {', '.join(sorted(known))}")
        return cls(**data)
