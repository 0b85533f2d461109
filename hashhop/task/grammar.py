"""Magic's HashHop text format, written and parsed in one place.

A prompt is lines ``KEY = VALUE``; the last link of a chain is ``KEY = 'VALUE'``. The completion is
the header ``COMPLETION:\\nHops=H\\n\\nCoT=True|False\\n\\n`` then one ``KEY = 'ANSWER'`` line per query,
where ANSWER is ``H2 = H3`` with chain of thought and ``H3`` without. A native request (a base model
continuing Magic's text) is the prompt, a blank line, the header and the query line ``KEY = '``.

Everything that writes or reads this format (the generator, the scorer, the templates, the testing
server, the LTM engine, the lab's tasks) goes through the functions here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from hashhop.errors import HashHopError

SEPARATOR = " = "
QUOTE = "'"
COMPLETION_MARKER = "COMPLETION:"
CONTEXT_END = "\n\n" + COMPLETION_MARKER  # what ends the context of a native request

_LINK_RE = re.compile(r"^(\S+) = (?:'([^'\s]+)'|([^'\s]+))$")
_HEADER_RE = re.compile(r"^COMPLETION:\nHops=(\d+)\n\nCoT=(True|False)\n\n")
_ANSWER_LINE_RE = re.compile(r"^(\S+) = '([^']*)'$")
_NATIVE_QUERY_RE = re.compile(r"Hops=(\d+)\n\nCoT=(True|False)\n\n(\S+) = '$")
# `KEY = 'ANSWER'` anywhere in free text; quotes may be straight, curly or double, spaces around '=' optional.
_LOOSE_ANSWER_RE = re.compile(r"(\S+?)\s*=\s*['‘’\"]([^'‘’\"\n]*)['‘’\"]")
LOOSE_QUOTES = "'‘’\"`"


# -- writing ---------------------------------------------------------------------------------
def format_link(key: str, value: str, last: bool) -> str:
    """A prompt line: ``KEY = VALUE``, or ``KEY = 'VALUE'`` for the last link of a chain."""
    return f"{key} = '{value}'" if last else f"{key} = {value}"


def completion_header(hops: int, chain_of_thought: bool) -> str:
    return f"COMPLETION:\nHops={hops}\n\nCoT={chain_of_thought}\n\n"


def answer_text(hashes_after_query: Iterable[str]) -> str:
    """What goes between the quotes: ``H2 = H3`` (chain of thought) or ``H3``."""
    return SEPARATOR.join(hashes_after_query)


def answer_line(query: str, answer: str) -> str:
    """``KEY = 'ANSWER'``: one line of a completion."""
    return f"{query} = '{answer}'"


def query_line(query: str) -> str:
    """``KEY = '``: where a native request stops and the model writes the answer."""
    return f"{query} = '"


def format_completion(hops: int, chain_of_thought: bool, queries: list[tuple[str, str]]) -> str:
    """Magic's completion: the header, then one ``KEY = 'ANSWER'`` line per query."""
    body = "\n".join(answer_line(key, answer) for key, answer in queries)
    return f"{completion_header(hops, chain_of_thought)}{body}\n"


def native_request(prompt: str, hops: int, chain_of_thought: bool, query: str) -> str:
    """A whole native request: the prompt, a blank line, the completion header and ``QUERY = '``."""
    return f"{prompt}\n\n{completion_header(hops, chain_of_thought)}{query_line(query)}"


def render_prompt(links: Iterable[tuple[str, str, bool]]) -> str:
    return "\n".join(format_link(key, value, last) for key, value, last in links)


# -- parsing ---------------------------------------------------------------------------------
def parse_link(line: str) -> tuple[str, str, bool] | None:
    """``(key, value, is_last_link)`` of one prompt line, or None when it is not a link."""
    match = _LINK_RE.match(line)
    if not match:
        return None
    last = match.group(2) is not None
    return match.group(1), match.group(2) if last else match.group(3), last


def parse_prompt(prompt: str) -> list[tuple[str, str, bool]]:
    """``[(key, value, is_last_link), ...]`` in prompt order."""
    links = []
    for number, line in enumerate(prompt.split("\n")):
        link = parse_link(line)
        if link is None:
            raise HashHopError(f"prompt line {number + 1} is not a HashHop link (KEY = VALUE or KEY = 'VALUE'): {line[:60]!r}")
        links.append(link)
    return links


def links_in(text: str) -> dict[str, str]:
    """``{key: value}`` of every line of ``text`` that is a link (other lines are skipped)."""
    found = {}
    for line in text.split("\n"):
        link = parse_link(line)
        if link is not None:
            found.setdefault(link[0], link[1])
    return found


def parse_completion(completion: str) -> tuple[int, bool, list[tuple[str, str]]]:
    """``(hops, chain_of_thought, [(query, answer), ...])`` from a completion in Magic's format."""
    header = _HEADER_RE.match(completion)
    if not header:
        raise HashHopError("completion does not start with Magic's header 'COMPLETION:\\nHops=H\\n\\nCoT=True|False\\n\\n'")
    answers = []
    for line in completion[header.end() :].rstrip("\n").split("\n"):
        match = _ANSWER_LINE_RE.match(line)
        if not match:
            raise HashHopError(f"completion line is not KEY = 'ANSWER': {line[:60]!r}")
        answers.append((match.group(1), match.group(2)))
    return int(header.group(1)), header.group(2) == "True", answers


def parse_native_request(text: str) -> tuple[int, bool, str] | None:
    """``(hops, chain_of_thought, query)`` of a native request (it ends with ``QUERY = '``), else None."""
    match = _NATIVE_QUERY_RE.search(text)
    if not match:
        return None
    return int(match.group(1)), match.group(2) == "True", match.group(3)


def parse_answers(text: str) -> dict[str, str]:
    """``{key: answer}`` for every ``KEY = 'ANSWER'`` in free text (the first answer for a key wins).

    Lenient, for model output: curly or double quotes, spaces around ``=`` optional, Markdown marks
    around the key dropped, runs of spaces in the answer collapsed."""
    answers: dict[str, str] = {}
    for match in _LOOSE_ANSWER_RE.finditer(text):
        answers.setdefault(match.group(1).strip("`*'\""), " ".join(match.group(2).split()))
    return answers


def split_answer(answer: str) -> list[str]:
    """The hashes of an answer: ``H2 = H3`` gives ``[H2, H3]`` (stray quotes and punctuation dropped)."""
    return [w.strip(" `*.,;'‘’\"") for w in answer.split("=") if w.strip(" `*.,;'‘’\"")]


def prompt_hashes(prompt: str) -> frozenset[str]:
    """Every hash of a prompt (the words either side of `` = ``)."""
    return frozenset(re.findall(r"[^\s=']+", prompt))
