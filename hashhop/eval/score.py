"""Scoring: exact match per query, links right along a chain, and a diagnosis of every wrong answer.

A model's text is reduced to the hashes it gave after the queried key; that list is compared with
the chain. Outcomes:

* ``correct``        the answer is exactly the expected one;
* ``stopped_early``  the last hash given is an earlier hash of the right chain (too few hops);
* ``other_chain``    the last hash given is a hash of the prompt, but of another chain;
* ``hallucinated``   the last hash given is not in the prompt at all;
* ``empty``          the model said nothing (``''``, or ``QUERY = ''``);
* ``unparseable``    it said something with no answer in it (an echoed ``<final string>`` placeholder included).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from hashhop.task.grammar import LOOSE_QUOTES, answer_line, parse_answers, prompt_hashes, split_answer
from hashhop.task.sample import Chain

_PLACEHOLDER = re.compile(r"<[^<>]*>")

OUTCOMES = ("correct", "stopped_early", "other_chain", "hallucinated", "empty", "unparseable")


@lru_cache(maxsize=64)
def _hash_re(alphabet: str, length: int) -> re.Pattern:
    chars = re.escape(alphabet)
    return re.compile(rf"(?<![{chars}])[{chars}]{{{length}}}(?![{chars}])")


def extract_hashes(text: str, query: str, alphabet: str, length: int, prefilled: bool = False) -> list[str]:
    """The strings a model gave as its answer to ``query``, in order (``H2 = H3`` gives two).

    ``prefilled``: the request ended with ``QUERY = '`` (the native completion format), so the
    answer is the text up to the closing quote or the end of the line. Otherwise the answer is
    the quoted text after ``QUERY =`` if there is one, else every hash-shaped word after the last
    mention of the query (or in the whole text), so chatty output still scores. Words of a quoted
    answer count whatever their shape: a wrong-length string is an answer, just not in the prompt.
    """
    if prefilled:
        # A model may repeat the opening quote (``'HASH'``): skip it, then read to the closing quote or the line's end.
        body = text.lstrip(" " + LOOSE_QUOTES)
        end = min((i for i in (body.find(q) for q in LOOSE_QUOTES + "\n") if i >= 0), default=len(body))
        return split_answer(body[:end])
    quoted = parse_answers(text).get(query)
    if quoted is not None:
        return split_answer(quoted)
    after = text.rsplit(query, 1)[-1] if query in text else text
    return [h for h in _hash_re(alphabet, length).findall(after) if h != query]


@dataclass(frozen=True)
class QueryScore:
    query: str
    expected: str
    given: tuple[str, ...]  # the hashes the model gave
    outcome: str
    links_right: int  # leading links of the chain the model got right (chain of thought), 0 or hops otherwise

    @property
    def correct(self) -> bool:
        return self.outcome == "correct"

    @property
    def predicted(self) -> str | None:
        return " = ".join(self.given) if self.given else None


def score_answer(
    chain: Chain,
    chain_of_thought: bool,
    text: str,
    hashes_in_prompt: set[str] | frozenset[str],
    alphabet: str,
    prefilled: bool = False,
) -> QueryScore:
    """Score one model answer to the query of ``chain``."""
    length = len(chain.query)
    given = tuple(extract_hashes(text, chain.query, alphabet, length, prefilled))
    expected_hashes = chain.hashes[1:] if chain_of_thought else chain.hashes[-1:]
    expected = chain.answer(chain_of_thought)
    links_right = 0
    if chain_of_thought:
        for got, want in zip(given, expected_hashes):
            if got != want:
                break
            links_right += 1
    if given == expected_hashes:
        outcome = "correct"
        links_right = len(chain.hashes) - 1
    elif not given:  # nothing said (``''`` or ``QUERY = ''`` included) is empty; something without an answer is not
        blank = not text.strip(" \n\t" + LOOSE_QUOTES)
        outcome = "empty" if blank or (not prefilled and parse_answers(text).get(chain.query) == "") else "unparseable"
    elif any(_PLACEHOLDER.fullmatch(h) for h in given):  # the instruction's `<final string>` echoed back
        outcome = "unparseable"
    elif given[-1] in chain.hashes[:-1]:
        outcome = "stopped_early"
    elif given[-1] in hashes_in_prompt:
        outcome = "other_chain"
    else:
        outcome = "hallucinated"
    return QueryScore(chain.query, expected, given, outcome, links_right)


def score_text(sample, text: str) -> list[QueryScore]:
    """Score a whole completion (every query's ``KEY = 'ANSWER'`` line in one text) against a sample."""
    alphabet = sample.spec.alphabet_chars if sample.spec is not None else _alphabet_of(sample)
    hashes = prompt_hashes(sample.prompt)
    answers = parse_answers(text)
    scores = []
    for chain in sample.queries:
        line = answer_line(chain.query, answers[chain.query]) if chain.query in answers else ""
        scores.append(score_answer(chain, sample.chain_of_thought, line, hashes, alphabet))
    return scores


def _alphabet_of(sample) -> str:
    return "".join(sorted({ch for chain in sample.queries for h in chain.hashes for ch in h}))


def accuracy(scores: list[QueryScore]) -> float:
    return sum(s.correct for s in scores) / len(scores) if scores else 0.0


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sound at 0% and 100%, unlike the normal one)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


# RULER's convention adapted: a length counts as handled when accuracy there reaches the threshold.
EFFECTIVE_THRESHOLD = 0.8


def effective_length(accuracy_by_length: dict[int, float], threshold: float = EFFECTIVE_THRESHOLD) -> int | None:
    """The longest length at which accuracy, there and at every shorter tested length, is >= threshold
    (None when even the shortest fails)."""
    best = None
    for length in sorted(accuracy_by_length):
        if accuracy_by_length[length] < threshold:
            break
        best = length
    return best
