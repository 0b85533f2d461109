"""RULER-style needles and variable tracking: determinism, exact sizing, needle placement, scoring, spec checks."""

from __future__ import annotations

import re

import pytest

from hashhop.errors import HashHopError
from hashhop.task.ruler import NOISE_LINE, TASKS, RulerSpec, depth_of, make_ruler, score_ruler

NIAH = [t for t in TASKS if t != "variable_tracking"]
CASES = [(t, "noise", "numbers") for t in TASKS] + [(t, "needle", "uuids") for t in NIAH] + [("niah_multikey", "needle", "numbers")]


def _spec(task, haystack="noise", value_kind="numbers", seed=0, context_chars=20_000, **kw):
    return RulerSpec(task, context_chars, seed=seed, haystack=haystack, value_kind=value_kind, **kw)


def _max_line(sample):
    return max(len(line) + 1 for line in sample.prompt.split("\n")[1:-1])


@pytest.mark.parametrize("task,haystack,kind", CASES)
def test_deterministic_per_seed_and_differs_across_seeds(task, haystack, kind):
    a = make_ruler(_spec(task, haystack, kind, seed=5))
    b = make_ruler(_spec(task, haystack, kind, seed=5))
    c = make_ruler(_spec(task, haystack, kind, seed=6))
    assert a == b
    assert a.prompt != c.prompt and a.answers != c.answers


@pytest.mark.parametrize("task,haystack,kind", CASES)
@pytest.mark.parametrize("context_chars", [1_500, 20_000, 123_457])
def test_prompt_fills_context_to_within_one_line(task, haystack, kind, context_chars):
    s = make_ruler(_spec(task, haystack, kind, context_chars=context_chars, seed=context_chars))
    line = len(NOISE_LINE) if haystack == "noise" else _max_line(s)
    assert context_chars - line < len(s.prompt) <= context_chars


@pytest.mark.parametrize("task,haystack,kind", CASES)
def test_answers_sit_where_offsets_and_depths_say(task, haystack, kind):
    s = make_ruler(_spec(task, haystack, kind, seed=11))
    assert len(s.needles) == len(s.offsets) == len(s.depths)
    assert s.offsets == sorted(s.offsets) and s.depths == sorted(s.depths)
    for i, (needle, offset) in enumerate(zip(s.needles, s.offsets)):
        assert s.prompt[offset - 1] == "\n" and s.prompt.startswith(needle + "\n", offset)
        assert 0.0 <= s.depths[i] <= 1.0
        assert s.depths[i] == pytest.approx(depth_of(s, i), abs=1e-12)
    for answer in s.answers:
        holders = [n for n in s.needles if answer in n]
        assert holders, answer
    if haystack == "noise":
        # every line is the noise line, a needle, the instruction or the question: nothing else
        body = s.prompt.split("\n")[1:-1]
        assert set(body) - {NOISE_LINE[:-1]} == set(s.needles)
        hay = sum(1 for line in body if line + "\n" == NOISE_LINE)
        for i, offset in enumerate(s.offsets):
            lines_before = s.prompt[:offset].count(NOISE_LINE)
            assert s.depths[i] == pytest.approx(lines_before / hay)


def test_niah_defaults_follow_ruler():
    single = make_ruler(_spec("niah_single"))
    assert len(single.needles) == 1 and len(single.answers) == 1
    assert re.fullmatch(r"One of the special magic numbers for [a-z]+-[a-z]+ is: \d{7}\.", single.needles[0])
    assert single.prompt.endswith("The special magic number for " + single.needles[0].split(" for ")[1].split(" is:")[0] + " mentioned in the provided text is")
    multikey = make_ruler(_spec("niah_multikey"))
    keys = {n.split(" for ")[1].split(" is:")[0] for n in multikey.needles}
    assert len(multikey.needles) == 4 and len(keys) == 4 and len(multikey.answers) == 1
    multivalue = make_ruler(_spec("niah_multivalue"))
    keys = {n.split(" for ")[1].split(" is:")[0] for n in multivalue.needles}
    assert len(multivalue.needles) == 4 and len(keys) == 1 and sorted(multivalue.answers) == sorted(n.split("is: ")[1][:-1] for n in multivalue.needles)
    multiquery = make_ruler(_spec("niah_multiquery"))
    assert len(multiquery.needles) == 4 and len(set(multiquery.answers)) == 4
    question = multiquery.prompt.rsplit("\n", 1)[1]
    for needle in multiquery.needles:
        assert needle.split(" for ")[1].split(" is:")[0] in question
    uuids = make_ruler(_spec("niah_single", value_kind="uuids"))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uuids.answers[0])


def test_needle_haystack_distractors_use_other_keys():
    s = make_ruler(_spec("niah_single", "needle", context_chars=50_000, seed=3))
    key = s.needles[0].split(" for ")[1].split(" is:")[0]
    body = s.prompt.split("\n")[1:-1]
    assert len(body) > 100 and all(line.startswith("One of the special magic numbers for ") for line in body)
    assert sum(f" for {key} is:" in line for line in body) == 1
    assert s.prompt.count(s.answers[0]) == 1


@pytest.mark.parametrize("hops", [1, 4, 9])
def test_variable_tracking_chain(hops):
    s = make_ruler(_spec("variable_tracking", var_hops=hops, seed=hops))
    assert len(s.needles) == hops + 1 and len(s.answers) == hops + 1
    first = re.fullmatch(r"VAR ([A-Z]{5}) = (\d{5})", s.needles[0])
    assert first and first.group(1) == s.answers[0]
    for i, line in enumerate(s.needles[1:], start=1):
        link = re.fullmatch(r"VAR ([A-Z]{5}) = VAR ([A-Z]{5})", line)
        assert link and link.group(1) == s.answers[i] and link.group(2) == s.answers[i - 1]
    assert len(set(s.answers)) == hops + 1
    assert s.offsets == sorted(s.offsets) and len(set(s.offsets)) == hops + 1
    assert f"assigned the value {first.group(2)} in the text above" in s.prompt.rsplit("\n", 1)[1]


@pytest.mark.parametrize("task,haystack,kind", CASES)
def test_score_is_string_match_all(task, haystack, kind):
    s = make_ruler(_spec(task, haystack, kind, seed=2))
    assert score_ruler(s, " " + ", ".join(s.answers) + ".") == 1.0
    if len(s.answers) > 1:
        partial = score_ruler(s, ", ".join(s.answers[1:]))
        assert partial == pytest.approx((len(s.answers) - 1) / len(s.answers)) and partial < 1.0
    assert score_ruler(s, ", ".join(s.answers[:-1])) < 1.0
    assert score_ruler(s, "") == 0.0


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"task": "niah_double", "context_chars": 1000}, "task"),
        ({"task": "niah_single", "context_chars": 0}, "context_chars"),
        ({"task": "niah_single", "context_chars": 10**10 + 1}, "context_chars"),
        ({"task": "niah_single", "context_chars": 1000.0}, "context_chars"),
        ({"task": "niah_single", "context_chars": True}, "context_chars"),
        ({"task": "niah_single", "context_chars": 1000, "seed": -1}, "seed"),
        ({"task": "niah_single", "context_chars": 1000, "haystack": "essay"}, "haystack"),
        ({"task": "niah_single", "context_chars": 1000, "value_kind": "words"}, "value_kind"),
        ({"task": "niah_multikey", "context_chars": 1000, "num_keys": 0}, "num_keys"),
        ({"task": "niah_multivalue", "context_chars": 1000, "num_values": -2}, "num_values"),
        ({"task": "niah_multiquery", "context_chars": 1000, "num_queries": 5}, "num_queries"),
        ({"task": "variable_tracking", "context_chars": 1000, "var_hops": 0}, "var_hops"),
        ({"task": "variable_tracking", "context_chars": 1000, "haystack": "needle"}, "haystack"),
        ({"task": "variable_tracking", "context_chars": 100, "var_hops": 100}, "context_chars"),
        ({"task": "niah_multikey", "context_chars": 100_000, "num_keys": 10**9}, "context_chars"),
    ],
)
def test_bad_specs_are_one_line_errors(kwargs, field):
    with pytest.raises(HashHopError) as err:
        RulerSpec(**kwargs)
    assert "\n" not in str(err.value) and field in str(err.value)


def test_question_too_long_for_context_is_one_line_error():
    spec = RulerSpec("niah_multiquery", 300)  # passes the spec's rough check, not the exact one
    with pytest.raises(HashHopError) as err:
        make_ruler(spec)
    assert "\n" not in str(err.value) and "context_chars" in str(err.value)


def test_ten_million_characters_builds():
    s = make_ruler(RulerSpec("niah_multikey", 10_000_000, seed=9))
    assert 10_000_000 - len(NOISE_LINE) < len(s.prompt) <= 10_000_000
    assert all(s.prompt.startswith(n, o) for n, o in zip(s.needles, s.offsets))
    v = make_ruler(RulerSpec("variable_tracking", 10_000_000, seed=9))
    assert 10_000_000 - len(NOISE_LINE) < len(v.prompt) <= 10_000_000
