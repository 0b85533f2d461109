"""RULER-style long-context tasks: needles in a haystack and variable tracking, at any size up to 1e10 characters.

Written from RULER's published task definitions (NVIDIA/RULER, ``scripts/synthetic.yaml``; summarised in
``../shared/reference/published.md``), not from its code:

- needle sentence ``One of the special magic {numbers|uuids} for {key} is: {value}.``; values are 7-digit numbers
  or UUIDs; haystack ``noise`` (one fixed sentence group repeated, one per line) or ``needle`` (distractor needles
  with other keys);
- ``niah_single`` (1 key, 1 value), ``niah_multikey`` (4 keys in the text, 1 asked), ``niah_multivalue`` (4 values
  for one key), ``niah_multiquery`` (4 keys in the text, all 4 asked at once);
- ``variable_tracking``: ``VAR ABCDE = 12345`` then ``VAR FGHIJ = VAR ABCDE`` ... (one chain of ``var_hops`` hops,
  5-letter upper-case names), lines inserted in order into a noise haystack; the question asks for every variable
  assigned the value;
- scoring is RULER's string_match_all: the output must contain every expected string.

The instruction and question texts are ours, modelled on RULER's templates, not its exact wording. Keys are
pronounceable pseudo-words (``bokima-teluvo``) rather than dictionary words, so nothing needs a word list. Variable
tracking lines carry no trailing space (RULER's copy lines end in one).

Sizing: ``context_chars`` is the length of the whole prompt in characters: the instruction line, the haystack, the
needles and the question all count. The haystack is as many whole lines as fit in what the rest leaves, so the
prompt is at most ``context_chars`` long and short of it by less than one haystack line.

Every random choice comes from one ``random.Random(seed)``, so a spec gives the same sample on every machine.
The noise haystack is built by string multiplication and the needles are spliced in at line boundaries, so a
10M-character sample takes well under a second.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from itertools import accumulate

from hashhop.errors import HashHopError

TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "variable_tracking")
HAYSTACKS = ("noise", "needle")
VALUE_KINDS = ("numbers", "uuids")

NOISE_LINE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"

# RULER's defaults per task: (keys in the text, values per key, keys asked).
_DEFAULTS = {
    "niah_single": (1, 1, 1),
    "niah_multikey": (4, 1, 1),
    "niah_multivalue": (1, 4, 1),
    "niah_multiquery": (4, 1, 4),
    "variable_tracking": (1, 1, 1),
}
_MAX_SIZE = 10**10
# Shortest possible lines, for the spec's early "does it fit at all" check (before anything is generated).
_MIN_NEEDLE_CHARS = len("One of the special magic numbers for ab-ab is: 1234567.\n")
_MIN_VAR_CHARS = len("VAR ABCDE = 1\n")

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]  # 70


@dataclass(frozen=True)
class RulerSpec:
    """What a RULER-style sample is asked to be. ``num_keys`` / ``num_values`` / ``num_queries`` left as None take
    RULER's defaults for ``task``; they may be set for any needle task (keys in the text, values per key, keys
    asked). ``var_hops`` is the number of ``VAR X = VAR Y`` copies in the variable-tracking chain."""

    task: str
    context_chars: int
    seed: int = 0
    haystack: str = "noise"
    num_keys: int | None = None
    num_values: int | None = None
    num_queries: int | None = None
    value_kind: str = "numbers"
    var_hops: int = 4

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise HashHopError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}")
        if self.haystack not in HAYSTACKS:
            raise HashHopError(f"haystack must be one of {', '.join(HAYSTACKS)}; got {self.haystack!r}")
        if self.value_kind not in VALUE_KINDS:
            raise HashHopError(f"value_kind must be one of {', '.join(VALUE_KINDS)}; got {self.value_kind!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise HashHopError(f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r}")
        defaults = _DEFAULTS[self.task]
        for name, default in zip(("num_keys", "num_values", "num_queries"), defaults):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        for name in ("context_chars", "num_keys", "num_values", "num_queries", "var_hops"):
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= _MAX_SIZE:
                raise HashHopError(f"{name} must be a whole number from 1 to {_MAX_SIZE:.0e}, got {value!r}")
        if self.num_queries > self.num_keys:
            raise HashHopError(f"num_queries ({self.num_queries}) must be at most num_keys ({self.num_keys}): only keys in the text can be asked")
        if self.task == "variable_tracking":
            if self.haystack != "noise":
                raise HashHopError(f"haystack for variable_tracking must be 'noise', got {self.haystack!r}")
            if (self.var_hops + 1) * _MIN_VAR_CHARS > self.context_chars:
                raise HashHopError(f"context_chars {self.context_chars:,} cannot hold a chain of var_hops {self.var_hops:,}: raise context_chars or lower var_hops")
        elif self.num_keys * self.num_values * _MIN_NEEDLE_CHARS > self.context_chars:
            raise HashHopError(
                f"context_chars {self.context_chars:,} cannot hold {self.num_keys * self.num_values:,} needles: raise context_chars or lower num_keys/num_values"
            )


@dataclass(frozen=True)
class RulerSample:
    """One prompt and what its answer must contain. ``needles`` are the inserted lines (without their newline) in
    prompt order; ``offsets`` where each starts in ``prompt``; ``depths`` the fraction of the haystack (needles not
    counted) that comes before each, 0..1."""

    prompt: str
    answers: list[str]
    depths: list[float]
    task: str
    spec: RulerSpec
    needles: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def make_ruler(spec: RulerSpec) -> RulerSample:
    """The sample ``spec`` asks for; the same spec gives the same sample on every machine."""
    rng = random.Random(spec.seed)
    if spec.task == "variable_tracking":
        header, needles, question, answers = _variable_tracking(spec, rng)
    else:
        header, needles, question, answers = _niah(spec, rng)
    needle_lines = [n + "\n" for n in needles]
    budget = spec.context_chars - len(header) - len(question) - sum(map(len, needle_lines))
    if budget < 0:
        raise HashHopError(f"context_chars {spec.context_chars:,} is too small for the needles and question ({spec.context_chars - budget:,} characters): raise context_chars")
    if spec.haystack == "noise":
        count = budget // len(NOISE_LINE)
        lines = None
        prefix = None
    else:
        lines = _distractors(spec, rng, budget, needles, answers)
        count = len(lines)
        prefix = [0, *accumulate(map(len, lines))]
    hay_chars = count * len(NOISE_LINE) if lines is None else prefix[-1]

    slots = count + 1  # line boundaries a needle can go at
    if len(needles) <= slots:
        cuts = sorted(rng.sample(range(slots), len(needles)))
    else:
        cuts = sorted(rng.choices(range(slots), k=len(needles)))

    pieces = [header]
    offsets = []
    depths = []
    pos = len(header)
    previous = 0
    for cut, line in zip(cuts, needle_lines):
        chunk = NOISE_LINE * (cut - previous) if lines is None else "".join(lines[previous:cut])
        pieces.append(chunk)
        pos += len(chunk)
        offsets.append(pos)
        before = cut * len(NOISE_LINE) if lines is None else prefix[cut]
        depths.append(before / hay_chars if hay_chars else 0.0)
        pieces.append(line)
        pos += len(line)
        previous = cut
    pieces.append(NOISE_LINE * (count - previous) if lines is None else "".join(lines[previous:]))
    pieces.append(question)
    prompt = "".join(pieces)
    assert len(prompt) <= spec.context_chars
    return RulerSample(prompt=prompt, answers=answers, depths=depths, task=spec.task, spec=spec, needles=list(needles), offsets=offsets)


def score_ruler(sample: RulerSample, output: str) -> float:
    """Fraction of the expected strings found in ``output``; 1.0 only when all are there (RULER's string_match_all)."""
    if not sample.answers:
        return 1.0
    return sum(answer in output for answer in sample.answers) / len(sample.answers)


# -- needles ---------------------------------------------------------------------------------------------------


def _niah(spec: RulerSpec, rng: random.Random) -> tuple[str, list[str], str, list[str]]:
    noun = "numbers" if spec.value_kind == "numbers" else "uuids"
    one = noun[:-1]
    keys: list[str] = []
    seen: set[str] = set()
    while len(keys) < spec.num_keys:
        key = _key(rng)
        if key not in seen:
            seen.add(key)
            keys.append(key)
    values: dict[str, list[str]] = {}
    used: set[str] = set()
    for key in keys:
        values[key] = []
        while len(values[key]) < spec.num_values:
            value = _value(spec.value_kind, rng)
            if value not in used:
                used.add(value)
                values[key].append(value)
    pairs = [(key, value) for key in keys for value in values[key]]
    rng.shuffle(pairs)
    needles = [_needle(noun, key, value) for key, value in pairs]
    asked = rng.sample(keys, spec.num_queries)
    answers = [value for key in asked for value in values[key]]

    header = f"Some special magic {noun} are hidden within the following text. Make sure to memorize it. I will quiz you about the {noun} afterwards.\n"
    what = _listing(asked)
    if spec.num_queries == 1 and spec.num_values == 1:
        question = f"What is the special magic {one} for {what} mentioned in the provided text? The special magic {one} for {what} mentioned in the provided text is"
    else:
        question = f"What are all the special magic {noun} for {what} mentioned in the provided text? The special magic {noun} for {what} mentioned in the provided text are"
    return header, needles, question, answers


def _distractors(spec: RulerSpec, rng: random.Random, budget: int, needles: list[str], answers: list[str]) -> list[str]:
    """The ``needle`` haystack: distractor needle lines with keys other than the real ones, filling ``budget``."""
    noun = "numbers" if spec.value_kind == "numbers" else "uuids"
    taken = {line.split(" for ", 1)[1].rsplit(" is: ", 1)[0] for line in needles}
    banned = set(answers)
    lines: list[str] = []
    total = 0
    while True:
        key = _key(rng)
        value = _value(spec.value_kind, rng)
        if key in taken or value in banned:
            continue
        line = _needle(noun, key, value) + "\n"
        if total + len(line) > budget:
            return lines
        taken.add(key)
        lines.append(line)
        total += len(line)


def _needle(noun: str, key: str, value: str) -> str:
    return f"One of the special magic {noun} for {key} is: {value}."


def _key(rng: random.Random) -> str:
    """A pseudo-word pair such as ``bokima-teluvo``: 2-3 syllables each, about 10**11 pairs."""
    return f"{_word(rng)}-{_word(rng)}"


def _word(rng: random.Random) -> str:
    n = rng.getrandbits(32)
    n, extra = divmod(n, 2)
    parts = []
    for _ in range(2 + extra):
        n, s = divmod(n, len(_SYLLABLES))
        parts.append(_SYLLABLES[s])
    return "".join(parts)


def _value(kind: str, rng: random.Random) -> str:
    if kind == "numbers":
        return str(rng.randrange(1_000_000, 10_000_000))
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _listing(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


# -- variable tracking -----------------------------------------------------------------------------------------


def _variable_tracking(spec: RulerSpec, rng: random.Random) -> tuple[str, list[str], str, list[str]]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < spec.var_hops + 1:
        name = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))
        if name not in seen:
            seen.add(name)
            names.append(name)
    value = str(rng.randrange(10_000, 100_000))
    needles = [f"VAR {names[0]} = {value}"] + [f"VAR {names[i + 1]} = VAR {names[i]}" for i in range(spec.var_hops)]
    header = "Memorize and track the chain of variable assignments hidden in the following text.\n"
    question = (
        f"Question: Find all variables that are assigned the value {value} in the text above. "
        f"Answer: According to the chain of variable assignments in the text above, {len(names)} variables are assigned the value {value}, they are:"
    )
    return header, needles, question, names


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def depth_of(sample: RulerSample, index: int) -> float:
    """Recompute needle ``index``'s depth from the prompt alone (a check on ``depths``): the haystack characters
    before it over all haystack characters."""
    header_end = sample.prompt.index("\n") + 1
    question_start = sample.prompt.rindex("\n") + 1
    needle_chars = sum(len(n) + 1 for n in sample.needles)
    hay_chars = question_start - header_end - needle_chars
    before = sample.offsets[index] - header_end - sum(len(n) + 1 for n in sample.needles[:index])
    return before / hay_chars if hay_chars else 0.0


__all__ = ["TASKS", "NOISE_LINE", "RulerSpec", "RulerSample", "make_ruler", "score_ruler", "depth_of"]
