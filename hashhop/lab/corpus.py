"""The held-out code corpus of LTM-2 (issue 11): real Python that no model here is trained or tuned on.

What it holds: the ``*.py`` files of the running CPython's standard library, then of the installed packages
torch, numpy, matplotlib and networkx (the versions this project installs, found with
``importlib.util.find_spec``), in this fixed order, **networkx last** (the code scored last is the code whose
context is the rest of the corpus). Within each part, files come in sorted relative-path order (``/``
separated, compared by code point, so the order is the same on every machine and locale).

The standard library is ``sysconfig.get_paths()["stdlib"]`` without any folder named ``site-packages``,
``dist-packages``, ``test``, ``tests`` or ``idle_test`` (the test suite, the tests of ctypes, tkinter,
unittest, distutils, lib2to3 and idlelib). Packages are taken whole, their own tests included.

Bytes are kept as they are (the model reads raw bytes; no decoding, no newline fixing). Skipped: anything that
is not a regular file, symbolic links whose target lies outside the package's folder, and linked folders
(never followed).

The concatenation (:func:`corpus_bytes`, :func:`build_corpus`) puts one separator line *before* each file::

    b"\\n# file: <package>/<relpath>\\n" + <the file's bytes, unchanged>

(``<package>`` is ``stdlib`` for the standard library; a character in a path that would break the line is
escaped). :func:`file_offsets` gives where each file's bytes start. :func:`build_corpus` writes the corpus
atomically (a temporary file in the same folder, renamed over the target: a failure leaves no partial file and
any earlier corpus untouched) and returns its size and SHA-256, so a run can pin the corpus it used.

Command line (one line and exit status 2 on bad input)::

    python -m hashhop.lab.corpus --out PATH [--packages numpy,networkx] [--no-stdlib] [--progress]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import stat
import sys
import sysconfig
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hashhop.errors import HashHopError

HELD_OUT_PACKAGES: tuple[str, ...] = ("torch", "numpy", "matplotlib", "networkx")
STDLIB = "stdlib"
STDLIB_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
PACKAGE_EXCLUDED_DIRS = frozenset({"__pycache__"})
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CorpusFile:
    path: str  # absolute path on this machine
    package: str  # "stdlib" or the package's import name
    relpath: str  # "/"-separated, relative to the package's folder
    size_bytes: int  # when listed

    @property
    def name(self) -> str:
        return f"{self.package}/{self.relpath}"


@dataclass(frozen=True)
class CorpusInfo:
    path: str
    files: int
    total_bytes: int  # separators included: the size of the corpus file
    sha256: str  # hex digest of the corpus file


def _one_line(text: str) -> str:
    return "".join(ch.encode("unicode_escape").decode() if len(f"a{ch}b".splitlines()) > 1 else ch for ch in text)


def separator(file: CorpusFile) -> bytes:
    """The line written before ``file``'s bytes: ``b"\\n# file: <package>/<relpath>\\n"``."""
    return b"\n# file: " + _one_line(file.name).encode("utf-8", "surrogateescape") + b"\n"


def _walk(root: str, package: str, excluded: frozenset[str]) -> list[CorpusFile]:
    root = os.path.abspath(root)
    real_root = os.path.realpath(root)
    found = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if d not in excluded]
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)  # follows a link: the target must be a regular file ...
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if os.path.islink(path):  # ... inside the package
                target = os.path.realpath(path)
                if os.path.commonpath([real_root, target]) != real_root:
                    continue
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            found.append(CorpusFile(path=path, package=package, relpath=rel, size_bytes=info.st_size))
    found.sort(key=lambda f: f.relpath)
    return found


def stdlib_files() -> list[CorpusFile]:
    """The running CPython's standard library, tests and site-packages left out, in sorted order."""
    root = sysconfig.get_paths()["stdlib"]
    if not os.path.isdir(root):
        raise HashHopError(f"the standard library's folder {root!r} is missing: use a full CPython install")
    return _walk(root, STDLIB, STDLIB_EXCLUDED_DIRS)


def package_files(package: str) -> list[CorpusFile]:
    """The ``*.py`` files of the installed package ``package``, in sorted relative-path order."""
    if not isinstance(package, str) or not package.isidentifier():
        raise HashHopError(f"package name {package!r} is not an importable top-level name (e.g. numpy)")
    if package == STDLIB:
        raise HashHopError("'stdlib' is the standard library's part: use stdlib=True, not a package name")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise HashHopError(f"package {package!r} is not installed: pip install {package}")
    locations = list(spec.submodule_search_locations or [])
    if not locations:  # a single-module distribution
        origin = spec.origin or ""
        if not origin.endswith(".py") or not os.path.isfile(origin):
            raise HashHopError(f"package {package!r} has no Python sources to read (found {origin or 'none'!r})")
        return [CorpusFile(path=origin, package=package, relpath=os.path.basename(origin), size_bytes=os.path.getsize(origin))]
    files = [f for location in locations for f in _walk(location, package, PACKAGE_EXCLUDED_DIRS)]
    files.sort(key=lambda f: f.relpath)
    if not files:
        raise HashHopError(f"package {package!r} has no .py files under {locations[0]!r}")
    return files


def held_out_files(packages: Sequence[str] = HELD_OUT_PACKAGES, stdlib: bool = True) -> list[CorpusFile]:
    """The corpus's files in order: the standard library (when ``stdlib``), then each of ``packages`` in the
    order given, except that networkx, when listed, always comes last."""
    if isinstance(packages, str):
        packages = [p for p in packages.split(",") if p]
    packages = list(packages)
    if len(set(packages)) != len(packages):
        raise HashHopError(f"packages {packages} name one package twice")
    if not packages and not stdlib:
        raise HashHopError("the corpus is empty: name packages or keep the standard library")
    ordered = [p for p in packages if p != "networkx"] + [p for p in packages if p == "networkx"]
    files = stdlib_files() if stdlib else []
    for package in ordered:
        files.extend(package_files(package))
    return files


def _read_chunks(file: CorpusFile) -> Iterator[bytes]:
    try:
        with open(file.path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk
    except OSError as err:
        raise HashHopError(f"cannot read corpus file {file.path!r}: {err.strerror or err}") from None


def corpus_bytes(files: Iterable[CorpusFile]) -> Iterator[bytes]:
    """The corpus as a stream of chunks: for each file, :func:`separator` then its bytes, unchanged."""
    for file in files:
        yield separator(file)
        yield from _read_chunks(file)


def file_offsets(files: Iterable[CorpusFile]) -> list[int]:
    """Where each file's bytes start in the corpus, from the sizes as listed (valid while the files are
    unchanged since :func:`held_out_files`)."""
    offsets, at = [], 0
    for file in files:
        at += len(separator(file))
        offsets.append(at)
        at += file.size_bytes
    return offsets


def build_corpus(out_path: str, files: Sequence[CorpusFile], progress: bool = False) -> CorpusInfo:
    """Write the concatenation of ``files`` to ``out_path`` atomically; return its size and SHA-256."""
    from hashhop.task.formats import atomic_output

    if not files:
        raise HashHopError("no files to write: the corpus would be empty")
    digest, total, started = hashlib.sha256(), 0, time.monotonic()
    next_report = 10 << 20
    with atomic_output(out_path) as handle:
        for chunk in corpus_bytes(files):
            handle.write(chunk)
            digest.update(chunk)
            total += len(chunk)
            if progress and total >= next_report:
                print(f"corpus: {total / 1e6:.0f} MB in {time.monotonic() - started:.1f} s", file=sys.stderr)
                next_report += 10 << 20
        handle.flush()
        os.fsync(handle.fileno())
    return CorpusInfo(path=out_path, files=len(files), total_bytes=total, sha256=digest.hexdigest())


def load_corpus(path: str) -> np.memmap:
    """The corpus file as a read-only uint8 memory map."""
    try:
        if os.path.getsize(path) == 0:
            raise HashHopError(f"corpus file {path!r} is empty: build it with python -m hashhop.lab.corpus --out PATH")
        return np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as err:
        raise HashHopError(f"cannot read corpus file {path!r}: {err.strerror or err}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, _one_line(f"{self.prog}: error: {message} (see --help)") + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m hashhop.lab.corpus", description="Build the held-out code corpus.")
    parser.add_argument("--out", required=True, help="the corpus file to write (atomically)")
    parser.add_argument("--packages", default=",".join(HELD_OUT_PACKAGES), help="comma-separated (networkx always last)")
    parser.add_argument("--no-stdlib", action="store_true", help="leave out the standard library")
    parser.add_argument("--progress", action="store_true", help="report progress on stderr")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        packages = [p.strip() for p in args.packages.split(",") if p.strip()]
        files = held_out_files(packages, stdlib=not args.no_stdlib)
        info = build_corpus(args.out, files, progress=args.progress)
    except HashHopError as err:
        print(_one_line(f"{parser.prog}: error: {err}"), file=sys.stderr)
        return 2
    print(f"files {info.files}")
    print(f"bytes {info.total_bytes}")
    print(f"sha256 {info.sha256}")
    print(f"seconds {time.monotonic() - started:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
