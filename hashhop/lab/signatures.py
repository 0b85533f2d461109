"""Signature recall on the held-out code corpus (issue 11): "for 100 functions defined once in the held-out
100 MB, the prompt is the whole corpus then ``def NAME(``; the model writes the parameter list".

Finding the definitions (:func:`scan_signatures`, :func:`find_signatures`). Every ``def NAME(`` and
``async def NAME(`` of the corpus files (top level, methods and nested functions alike) is found with Python's
``ast`` on the file's bytes decoded as UTF-8 with ``errors="replace"`` (used only to parse; a file that does
not parse is skipped). The expected parameter text is then taken from the **raw bytes** of the file: from just
after ``def NAME(`` to the matching ``)`` (a small bracket matcher that skips strings, with their escapes and
triple quotes, and comments), exactly as written: multi-line lists keep their newlines (``\\r\\n`` included),
indentation, comments and trailing commas. Each text is checked against ``ast``: the matched ``)`` must be
followed by ``:`` or ``->``, and ``def _(<text>): pass`` must parse to the same arguments as the definition;
a definition that fails a check, whose name is not followed directly by ``(`` (``def f [T](``, ``def f (``),
or whose text is not valid UTF-8 is counted in ``unmatched`` and never asked about.

A name is **defined once** when ``ast`` finds exactly one definition of it in the whole corpus *and* the raw
bytes ``def NAME(`` (``def``, spaces or tabs, the name, ``(``; not preceded by a name character) occur exactly
once in the corpus, so no docstring, comment, doctest or unparsable file shows the model a second, different
``def NAME(``. Only ASCII names qualify.

The recall set (:func:`pick_recall_set`): ``count`` names defined once, leaving out dunder names
(``__x__``) and names shorter than 4 characters, spread over the packages in proportion to how many eligible
names each holds (largest remainders; every package that has an eligible name gets at least one when
``count`` allows), drawn at random within each package by a generator seeded with ``seed`` and the package's
name: the same corpus and seed give the same set on every machine. Returned in corpus order.

The prompt (:func:`recall_prompt`) is the whole corpus, unchanged, followed by ``b"\\ndef " + NAME + b"("``
(always at column 0, also for methods and nested functions). The expected continuation
(:func:`expected_text`) is the parameter text followed by ``)``. :func:`score_signature` is exact: the
model's continuation must *start with* those bytes, byte for byte (no whitespace folding, no newline fixing;
what follows the ``)``, such as ``:`` or ``-> int:``, is not scored).

``Signature.offset`` is the byte offset, in the built corpus (:func:`hashhop.lab.corpus.build_corpus`), of the
``def`` keyword of the definition (the ``def`` after ``async`` for ``async def``), so
``corpus[offset:offset + len(b"def NAME(" + expected)]`` is the definition's own text.

Command line (one line and exit status 2 on bad input)::

    python -m hashhop.lab.signatures --out PATH.jsonl [--count 100] [--seed 0] [--packages ...] [--no-stdlib]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import random
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from hashhop.errors import HashHopError
from hashhop.lab.corpus import HELD_OUT_PACKAGES, CorpusFile, _one_line, corpus_bytes, file_offsets, held_out_files

MIN_NAME_LENGTH = 4
_NAME = rb"[A-Za-z_][A-Za-z0-9_]*"
_DEF_TEXT = re.compile(rb"(?<![A-Za-z0-9_])def[ \t]+(" + _NAME + rb")\(")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_OPEN, _CLOSE = frozenset(b"([{"), frozenset(b")]}")


@dataclass(frozen=True)
class Signature:
    name: str
    package: str
    relpath: str
    params_text: str  # the raw bytes between "def NAME(" and its ")", decoded as UTF-8 (strict): exact
    offset: int  # byte offset of the "def" keyword in the built corpus

    @property
    def expected(self) -> bytes:
        return expected_text(self)


@dataclass
class SignatureScan:
    signatures: dict[str, Signature] = field(default_factory=dict)  # first definition of each name, text taken
    counts: Counter = field(default_factory=Counter)  # name -> definitions found by ast
    text_counts: Counter = field(default_factory=Counter)  # name -> raw "def NAME(" occurrences
    defs: int = 0  # definitions found by ast
    unmatched: int = 0  # definitions whose text could not be taken exactly (see the module's doc)
    files: int = 0
    files_skipped: int = 0  # files that do not parse

    def defined_once(self) -> dict[str, Signature]:
        """Names with one ``ast`` definition and one raw ``def NAME(`` in the corpus, whose text was taken."""
        return {name: sig for name, sig in self.signatures.items() if self.counts[name] == 1 and self.text_counts[name] == 1}


def _skip_string(raw: bytes, i: int) -> int:
    """``raw[i]`` opens a string (a quote); return the index just after it closes."""
    quote = raw[i : i + 1]
    if raw[i : i + 3] == quote * 3:
        end = quote * 3
        i += 3
    else:
        end = quote
        i += 1
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x5C:  # backslash: the next byte never closes (also in raw strings, as Python tokenizes)
            i += 2
            continue
        if raw.startswith(end, i):
            return i + len(end)
        if len(end) == 1 and c in (0x0A, 0x0D):
            return -1  # an unterminated one-line string
        i += 1
    return -1


def _skip_blank(raw: bytes, i: int) -> int:
    """Skip spaces, tabs, line continuations, newlines and comments."""
    n = len(raw)
    while i < n:
        c = raw[i]
        if c in b" \t\f\r\n":
            i += 1
        elif c == 0x5C:  # backslash continuation
            i += 1
        elif c == 0x23:  # '#'
            m = _LINE_BREAK.search(raw, i)
            i = m.start() if m else n
        else:
            break
    return i


def match_params(raw: bytes, open_at: int) -> int:
    """The index of the ``)`` that closes the ``(`` at ``raw[open_at]``, or -1."""
    depth, i, n = 0, open_at, len(raw)
    while i < n:
        c = raw[i]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth == 0:
                return i if c == 0x29 else -1
        elif c == 0x23:  # comment
            m = _LINE_BREAK.search(raw, i)
            i = m.start() if m else n
            continue
        elif c in (0x22, 0x27):  # string
            i = _skip_string(raw, i)
            if i < 0:
                return -1
            continue
        i += 1
    return -1


def _line_starts(raw: bytes) -> list[int]:
    return [0] + [m.end() for m in _LINE_BREAK.finditer(raw)]


def _params_of(raw: bytes, starts: list[int], node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, bytes] | None:
    """(position of ``def``, the raw parameter bytes) of ``node``, or None when they cannot be taken exactly."""
    if node.lineno - 1 >= len(starts):
        return None
    at = starts[node.lineno - 1] + node.col_offset
    if isinstance(node, ast.AsyncFunctionDef):
        if not raw.startswith(b"async", at):
            return None
        at = _skip_blank(raw, at + 5)
    m = re.compile(rb"def[ \t]+(" + _NAME + rb")\(").match(raw, at)
    if m is None or m.group(1) != node.name.encode("ascii", "replace"):
        return None
    close = match_params(raw, m.end() - 1)
    if close < 0:
        return None
    after = _skip_blank(raw, close + 1)
    if not (raw.startswith(b":", after) or raw.startswith(b"->", after)):
        return None
    return at, raw[m.end() : close]


def _same_arguments(params: str, node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = ast.parse(f"def _({params}): pass")
    except (SyntaxError, ValueError):
        return False
    return ast.dump(parsed.body[0].args) == ast.dump(node.args)


def scan_signatures(files: Sequence[CorpusFile]) -> SignatureScan:
    """Every definition of the corpus files (see the module's doc for what is counted and taken)."""
    scan = SignatureScan()
    for file, base in zip(files, file_offsets(files)):
        try:
            with open(file.path, "rb") as handle:
                raw = handle.read()
        except OSError as err:
            raise HashHopError(f"cannot read corpus file {file.path!r}: {err.strerror or err}") from None
        scan.files += 1
        for m in _DEF_TEXT.finditer(raw):
            scan.text_counts[m.group(1).decode("ascii")] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes and the like in old sources
                tree = ast.parse(raw.decode("utf-8", errors="replace"))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            scan.files_skipped += 1
            continue
        starts = None
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            scan.defs += 1
            scan.counts[node.name] += 1
            if node.name in scan.signatures:
                continue  # a second definition: the name is not asked about anyway
            if starts is None:
                starts = _line_starts(raw)
            found = _params_of(raw, starts, node)
            try:
                params = found[1].decode("utf-8") if found else None
            except UnicodeDecodeError:
                params = None
            if params is None or not _same_arguments(params, node):
                scan.unmatched += 1
                continue
            scan.signatures[node.name] = Signature(node.name, file.package, file.relpath, params, base + found[0])
    return scan


def find_signatures(files: Sequence[CorpusFile]) -> dict[str, Signature]:
    """The names defined once in the corpus (see the module's doc) and their signatures."""
    return scan_signatures(files).defined_once()


def eligible(name: str) -> bool:
    """A name the recall set may ask about: not a dunder, at least :data:`MIN_NAME_LENGTH` characters."""
    return len(name) >= MIN_NAME_LENGTH and not (name.startswith("__") and name.endswith("__"))


def _allocate(sizes: dict[str, int], count: int) -> dict[str, int]:
    total = sum(sizes.values())
    shares = {p: count * n / total for p, n in sizes.items()}
    alloc = {p: int(s) for p, s in shares.items()}
    order = sorted(sizes, key=lambda p: (-(shares[p] - alloc[p]), p))
    for p in order[: count - sum(alloc.values())]:
        alloc[p] += 1
    if count >= len(sizes):  # every package at least one, taken from the largest
        for p in sorted(sizes):
            if alloc[p] == 0:
                donor = max(alloc, key=lambda q: (alloc[q], q))
                alloc[donor] -= 1
                alloc[p] = 1
    return alloc


def pick_recall_set(signatures: Mapping[str, Signature], count: int = 100, seed: int = 0) -> list[Signature]:
    """``count`` eligible names from ``signatures`` (names defined once: :func:`find_signatures`), spread over
    the packages in proportion to their eligible names, deterministic for ``seed``; in corpus order."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise HashHopError(f"count {count!r} must be a positive whole number (e.g. 100)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise HashHopError(f"seed {seed!r} must be a whole number (e.g. 0)")
    by_package: dict[str, list[str]] = {}
    for name in sorted(signatures):
        if eligible(name):
            by_package.setdefault(signatures[name].package, []).append(name)
    available = sum(len(v) for v in by_package.values())
    if count > available:
        raise HashHopError(f"only {available} eligible names are defined once in the corpus: ask for at most that many")
    chosen = []
    for package, n in _allocate({p: len(v) for p, v in by_package.items()}, count).items():
        rng = random.Random(f"hashhop-signatures:{seed}:{package}")
        chosen.extend(signatures[name] for name in rng.sample(by_package[package], n))
    return sorted(chosen, key=lambda s: s.offset)


def prompt_suffix(sig: Signature) -> bytes:
    """``b"\\ndef " + NAME + b"("``: what follows the corpus in the prompt."""
    return b"\ndef " + sig.name.encode("ascii") + b"("


def expected_text(sig: Signature) -> bytes:
    """The parameter text, exactly as in the corpus, then ``)``."""
    return sig.params_text.encode("utf-8") + b")"


def recall_prompt(corpus: str | os.PathLike | bytes, sig: Signature) -> bytes:
    """The whole corpus (its bytes, or the path of the built corpus file) then ``b"\\ndef NAME("``."""
    if isinstance(corpus, (bytes, bytearray, memoryview)):
        data = bytes(corpus)
    else:
        try:
            with open(corpus, "rb") as handle:
                data = handle.read()
        except OSError as err:
            raise HashHopError(f"cannot read corpus file {os.fspath(corpus)!r}: {err.strerror or err}") from None
    return data + prompt_suffix(sig)


def score_signature(output: bytes | str, sig: Signature) -> bool:
    """True when the model's continuation (after ``def NAME(``; text as UTF-8) starts with the exact bytes of
    :func:`expected_text`; no whitespace or newline is folded."""
    if isinstance(output, str):
        output = output.encode("utf-8", "surrogateescape")
    return bytes(output).startswith(expected_text(sig))


def corpus_sha256(files: Sequence[CorpusFile]) -> str:
    digest = hashlib.sha256()
    for chunk in corpus_bytes(files):
        digest.update(chunk)
    return digest.hexdigest()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, _one_line(f"{self.prog}: error: {message} (see --help)") + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m hashhop.lab.signatures", description="Write the signature recall set (JSONL).")
    parser.add_argument("--out", required=True, help="the JSONL file to write (atomically)")
    parser.add_argument("--count", type=int, default=100, help="names to pick (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pick (default 0)")
    parser.add_argument("--packages", default=",".join(HELD_OUT_PACKAGES), help="comma-separated (networkx always last)")
    parser.add_argument("--no-stdlib", action="store_true", help="leave out the standard library")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        from hashhop.checkpoint import write_atomically

        packages = [p.strip() for p in args.packages.split(",") if p.strip()]
        files = held_out_files(packages, stdlib=not args.no_stdlib)
        scan = scan_signatures(files)
        once = scan.defined_once()
        picked = pick_recall_set(once, count=args.count, seed=args.seed)
        digest = corpus_sha256(files)
        lines = [json.dumps({**asdict(sig), "corpus_sha256": digest}, ensure_ascii=False) + "\n" for sig in picked]
        write_atomically(args.out, "".join(lines))
    except HashHopError as err:
        print(_one_line(f"{parser.prog}: error: {err}"), file=sys.stderr)
        return 2
    print(f"files {scan.files} (not parsed {scan.files_skipped})")
    print(f"definitions {scan.defs} (text not taken {scan.unmatched})")
    print(f"names {len(scan.counts)}")
    print(f"defined once {len(once)} (eligible {sum(eligible(n) for n in once)})")
    print(f"picked {len(picked)}: " + ", ".join(f"{p} {n}" for p, n in sorted(Counter(s.package for s in picked).items())))
    print(f"corpus sha256 {digest}")
    print(f"seconds {time.monotonic() - started:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
