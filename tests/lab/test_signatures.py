"""Signature recall (issue 11): parameter texts are the corpus's raw bytes (multi-line, defaults with brackets
and strings holding ')' and ':', annotations, *args, '/', async def, CRLF); names defined twice, or shown
twice as ``def NAME(`` text, are left out; the pick is deterministic and spread over packages; the prompt is
the corpus then ``def NAME(``; scoring is exact bytes."""

import json
import os

import pytest

from hashhop.errors import HashHopError
from hashhop.lab import corpus, signatures
from hashhop.lab.corpus import corpus_bytes, package_files
from hashhop.lab.signatures import (
    expected_text,
    find_signatures,
    match_params,
    pick_recall_set,
    recall_prompt,
    scan_signatures,
    score_signature,
)

TRICKY = b'''"""Docs that show def mentioned(x): as text."""
# a comment with a byte that is not UTF-8: \xff


def multi(
    a,  # a comment with ) and :
    b: "str)" = ")",
    *args,
    c=(1, (2, 3)),
    **kw,
) -> None:
    pass


def defaults(x=f(")"), y=':', z=\'\'\'a)b\'\'\', w={"k": [1, 2]}, v=lambda q: q, e="\\")"):
    return x


def positional(a, b, /, c, *, d=1):
    pass


async def coro(session: "Session", *, timeout: float = 1.0) -> int:
    return 0


class Box:
    def method_once(self, x: dict[str, int] = {}) -> "Box":
        def inner_nested(y=(")")):
            return y

        return self


def duplicated(a):
    pass


def duplicated(a, b):
    pass


def mentioned(y):
    pass


def also_in_broken(a):
    pass


def __dunder_once__(self):
    pass


def abc(q):
    pass
'''

EXPECTED = {
    "multi": '\n    a,  # a comment with ) and :\n    b: "str)" = ")",\n    *args,\n    c=(1, (2, 3)),\n    **kw,\n',
    "defaults": "x=f(\")\"), y=':', z='''a)b''', w={\"k\": [1, 2]}, v=lambda q: q, e=\"\\\")\"",
    "positional": "a, b, /, c, *, d=1",
    "coro": 'session: "Session", *, timeout: float = 1.0',
    "method_once": "self, x: dict[str, int] = {}",
    "inner_nested": 'y=(")")',
    "crlf_sig": "a,\r\n    b=')'  # note\r\n",
    "tab_sig": "\ta,\n\tb",
}
CRLF = b"def crlf_sig(a,\r\n    b=')'  # note\r\n):\r\n    pass\r\n\r\ndef tab_sig(\ta,\n\tb):\n    pass\n"
BROKEN = b'print "python 2"\ndef also_in_broken(b):\n    pass\ndef only_in_broken(c):\n    pass\n'


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sig") / "pkg"
    root.mkdir()
    (root / "tricky.py").write_bytes(TRICKY)
    (root / "crlf.py").write_bytes(CRLF)
    (root / "broken.py").write_bytes(BROKEN)
    numpy_part = [f for f in package_files("numpy") if f.relpath.split("/")[0] in ("polynomial", "linalg", "fft")]
    return numpy_part + corpus._walk(str(root), "pkg", corpus.PACKAGE_EXCLUDED_DIRS)


@pytest.fixture(scope="module")
def scan(files):
    return scan_signatures(files)


@pytest.fixture(scope="module")
def built(files):
    return b"".join(corpus_bytes(files))


def test_params_text_is_byte_exact(scan, built):
    for name, text in EXPECTED.items():
        sig = scan.signatures[name]
        assert sig.params_text == text, name
        assert sig.package == "pkg"
        # the offset points at the definition's own bytes in the built corpus
        own = b"def " + name.encode() + b"(" + expected_text(sig)
        assert built[sig.offset : sig.offset + len(own)] == own, name
    assert built[scan.signatures["coro"].offset - 6 : scan.signatures["coro"].offset] == b"async "


def test_ambiguous_names_are_left_out(scan, files):
    once = find_signatures(files)
    assert scan.counts["duplicated"] == 2 and "duplicated" not in once
    assert scan.text_counts["mentioned"] == 2 and "mentioned" not in once  # shown in a docstring too
    assert "also_in_broken" not in once  # a second def NAME( in a file that does not parse
    assert "only_in_broken" not in scan.signatures and scan.files_skipped == 1
    assert set(EXPECTED) <= set(once)
    assert all(scan.counts[n] == 1 and scan.text_counts[n] == 1 for n in once)
    assert scan.defs >= len(scan.counts) > len(once) > 100  # numpy's part contributes many


def test_pick_is_deterministic_eligible_and_spread(files):
    once = find_signatures(files)
    first = pick_recall_set(once, count=20, seed=0)
    assert first == pick_recall_set(once, count=20, seed=0)
    assert [s.name for s in first] != [s.name for s in pick_recall_set(once, count=20, seed=1)]
    assert len({s.name for s in first}) == 20
    assert [s.offset for s in first] == sorted(s.offset for s in first)
    assert all(len(s.name) >= 4 and not s.name.startswith("__") for s in first)
    assert {s.package for s in first} == {"numpy", "pkg"}  # the small package still gets one
    every = pick_recall_set(once, count=sum(signatures.eligible(n) for n in once), seed=0)
    assert "abc" not in {s.name for s in every} and "__dunder_once__" not in {s.name for s in every}
    assert "abc" in once and "__dunder_once__" in once
    with pytest.raises(HashHopError, match="at most"):
        pick_recall_set(once, count=len(once) + 1)
    with pytest.raises(HashHopError, match="positive"):
        pick_recall_set(once, count=0)


def test_prompt_and_score(files, built, tmp_path):
    sig = find_signatures(files)["multi"]
    prompt = recall_prompt(built, sig)
    assert prompt == built + b"\ndef multi(" and prompt.endswith(b"def multi(")
    path = tmp_path / "corpus.txt"
    path.write_bytes(built)
    assert recall_prompt(str(path), sig) == prompt
    with pytest.raises(HashHopError, match="cannot read"):
        recall_prompt(str(tmp_path / "missing.txt"), sig)
    exact = EXPECTED["multi"] + ")"
    assert score_signature(exact, sig) and score_signature(exact.encode() + b" -> None:\n    pass", sig)
    assert not score_signature(exact.replace("    *args", "   *args"), sig)  # one space short
    assert not score_signature(EXPECTED["multi"], sig)  # no closing parenthesis
    assert not score_signature(exact.replace("\n", "\r\n"), sig)
    assert not score_signature(b"", sig)


def test_match_params_brackets_and_strings():
    raw = b"f(a=')', b=\"(\", c=[1, (2)], # )\n d='''x)''')  tail"
    assert raw[match_params(raw, 1) :] == b")  tail"
    assert match_params(b"f(a, b", 1) == -1
    assert match_params(b"f(a='x\n)", 1) == -1  # unterminated string


def test_command_line(files, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(signatures, "held_out_files", lambda packages, stdlib=True: files)
    out = tmp_path / "recall.jsonl"
    assert signatures.main(["--out", str(out), "--count", "10", "--seed", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10
    assert set(rows[0]) == {"name", "package", "relpath", "params_text", "offset", "corpus_sha256"}
    assert len({r["corpus_sha256"] for r in rows}) == 1 and len(rows[0]["corpus_sha256"]) == 64
    assert "defined once" in capsys.readouterr().out
    assert signatures.main(["--out", str(tmp_path / "x.jsonl"), "--count", "100000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most" in err
    assert not os.path.exists(tmp_path / "x.jsonl")
    with pytest.raises(SystemExit) as stop:
        signatures.main(["--count", "3"])  # no --out
    assert stop.value.code == 2
