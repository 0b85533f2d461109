"""Scoring: exact match per query, parsed robustly out of a model's text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hashhop.task.sample import Sample

# `KEY = 'ANSWER'` anywhere in a line; quotes may be straight or curly, spaces around '=' optional.
_ANSWER_RE = re.compile(r"(\S+?)\s*=\s*['‘’\"]([^'‘’\"\n]*)['‘’\"]")


def parse_answers(text: str) -> dict[str, str]:
    """``{key: answer}`` for every ``KEY = 'ANSWER'`` in ``text`` (the first answer for a key wins)."""
    answers: dict[str, str] = {}
    for match in _ANSWER_RE.finditer(text):
        answers.setdefault(match.group(1).strip("`*'\""), " ".join(match.group(2).split()))
    return answers


@dataclass(frozen=True)
class QueryScore:
    query: str
    expected: str
    predicted: str | None
    correct: bool


def score_text(sample: Sample, text: str) -> list[QueryScore]:
    """Exact match of each queried chain's answer in ``text`` (a completion or a model's output)."""
    answers = parse_answers(text)
    scores = []
    for query, expected in sample.targets.items():
        predicted = answers.get(query)
        scores.append(QueryScore(query, expected, predicted, predicted == expected))
    return scores


def accuracy(scores: list[QueryScore]) -> float:
    return sum(s.correct for s in scores) / len(scores) if scores else 0.0
