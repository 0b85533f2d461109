"""The results store: the append-only results file of typed records, and the response cache.

* Results go to an append-only JSONL file, one line per answered request, written whole with one
  ``write`` call; a crash (kill -9 included) can cut at most the last line, which the next run
  removes before appending. Resume skips every id already answered, so nothing is redone or doubled.
* Replies are cached (SQLite, keyed by model and request, never by credentials), so a rerun of a
  finished grid costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from typing import TypedDict

from hashhop.errors import HashHopError
from hashhop.runners.base import Reply, Request


# -- results file ----------------------------------------------------------------------------
class ResultsFile:
    """Append-only JSONL; each record is one ``os.write`` of a whole line."""

    def __init__(self, path: str) -> None:
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise HashHopError(f"cannot write {path}: folder {folder} does not exist; create it first")
        if os.path.isdir(path):
            raise HashHopError(f"results path {path} is a folder: name a file")
        self._repair()
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise HashHopError(f"cannot write {path}: {err.strerror}") from None
        self._last_sync = time.monotonic()

    def _repair(self) -> None:
        """Cut a line a crash left unfinished (it is no record; its request will be redone)."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb+") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            end = size
            while end > 0:  # find the last newline, however long the cut line is
                start = max(0, end - (1 << 20))
                handle.seek(start)
                block = handle.read(end - start)
                if end == size and block.endswith(b"\n"):
                    return
                cut = block.rfind(b"\n")
                if cut >= 0:
                    handle.truncate(start + cut + 1)
                    return
                end = start
            handle.truncate(0)  # a single unfinished line: no record at all

    def append(self, record: dict) -> None:
        data = memoryview((json.dumps(record, ensure_ascii=False) + "\n").encode())
        while data:  # a short write (a full disk, a signal) must not leave half a line before the next
            data = data[os.write(self._fd, data) :]
        if time.monotonic() - self._last_sync > 1.0:  # survive an OS crash too, within a second
            os.fsync(self._fd)
            self._last_sync = time.monotonic()

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)


class Record(TypedDict, total=False):
    """One line of a results file: one request of the grid and what became of it."""

    id: str  # L<length>-h<hops>-<cot|skip>-s<sample>-q<query>
    model: str
    template: str
    status: str  # ok | skipped | error
    length: int  # asked, in the model's tokens
    hops: int
    cot: bool
    sample: int
    query: int
    seed: int
    prompt_tokens: int
    request_tokens: int
    tokenizer: str
    fingerprint: str
    expected: str
    depth: float  # where the chain's first link sits in the prompt, 0..1
    response: str
    given: list[str]
    outcome: str  # one of hashhop.eval.score.OUTCOMES
    correct: bool
    links_right: int
    input_tokens: int | None
    output_tokens: int | None
    attempts: int
    latency_s: float
    cached: bool
    error: str | None
    time: float


STATUSES = ("ok", "skipped", "error")
# The fields every record has, and the type each must have (bool is an int in Python: checked apart).
_REQUIRED = {"id": str, "model": str, "template": str, "status": str, "length": int, "hops": int, "cot": bool}
_WHEN_OK = {"correct": bool, "outcome": str}
_OPTIONAL = {
    "links_right": int,
    "prompt_tokens": int,
    "sample": int,
    "query": int,
    "depth": (int, float),
    "response": str,
    "expected": str,
}
MAX_LENGTH = 10**15  # sizes go up to 1e15 (hashhop.task.spec.parse_size)
MAX_HOPS = 1_000_000
# The ranges of the numbers a record holds (inclusive; None: no upper bound; "hops": up to the record's hops).
_RANGES = {
    "length": (1, MAX_LENGTH),
    "hops": (1, MAX_HOPS),
    "prompt_tokens": (0, MAX_LENGTH),
    "links_right": (0, "hops"),
    "sample": (0, None),
    "query": (0, None),
    "depth": (0, 1),
}
MAX_LINE_BYTES = 64 << 20  # a longer "line" is not a record (e.g. /dev/zero)


def _typed(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, kind)


def validate_record(record: object) -> Record:
    """``record`` as a :class:`Record`, or ValueError saying which field is wrong: the one check of a record's
    fields, their types and their ranges (length 1 to 1e15, hops >= 1, links_right 0 to hops, sample and
    query >= 0, depth 0 to 1), for the results file as it is read and for a report (``report.check_records``)."""
    from hashhop.eval.score import OUTCOMES

    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    for name, kind in _REQUIRED.items():
        if name not in record:
            raise ValueError(f"no {name!r} field")
        if not _typed(record[name], kind):
            raise ValueError(f"field {name!r} is {type(record[name]).__name__}, not {kind.__name__}")
    if record["status"] not in STATUSES:
        raise ValueError(f"status {record['status']!r} is not one of {', '.join(STATUSES)}")
    if record["status"] == "ok":
        for name, kind in _WHEN_OK.items():
            if not _typed(record.get(name), kind):
                raise ValueError(f"an answered record needs a {kind.__name__} {name!r}")
        if record["outcome"] not in OUTCOMES:
            raise ValueError(f"outcome {record['outcome']!r} is not one of {', '.join(OUTCOMES)}")
    for name, kind in _OPTIONAL.items():
        if record.get(name) is not None and not _typed(record[name], kind):
            raise ValueError(f"field {name!r} has the wrong type ({type(record[name]).__name__})")
    for name, (lo, hi) in _RANGES.items():
        value = record.get(name)
        if value is None:
            continue
        hi = record["hops"] if hi == "hops" else hi
        if not ((isinstance(value, int) or math.isfinite(value)) and lo <= value and (hi is None or value <= hi)):
            if name == "links_right":
                raise ValueError(f"links_right must be 0 to hops ({hi:,}), got {str(value)[:40]}")
            kind = "a number" if name == "depth" else "a whole number"
            span = f"from {lo:,} to {hi:,}" if hi is not None else f"of at least {lo:,}"
            raise ValueError(f"{name} must be {kind} {span}, got {str(value)[:40]}")
    return record  # type: ignore[return-value]


def read_results(path: str) -> list[Record]:
    """The records of a results file, the last record of each id winning (a retried error)."""
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise HashHopError(f"no results file at {path}") from None
    except OSError as err:
        raise HashHopError(f"cannot read {path}: {err.strerror or err}") from None
    if stat.S_ISDIR(info.st_mode):
        raise HashHopError(f"{path} is a folder, not a results file")
    if not stat.S_ISREG(info.st_mode):
        raise HashHopError(f"{path} is not a regular file: a results file is written by hashhop eval")
    latest: dict[str, Record] = {}
    try:
        with open(path, "rb") as handle:
            number = 0
            while True:
                line = handle.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                number += 1
                if len(line) > MAX_LINE_BYTES:
                    raise HashHopError(f"{path}:{number}: a line over {MAX_LINE_BYTES >> 20} MB is not a hashhop results record")
                if not line.endswith(b"\n"):
                    break  # an unfinished last line: no record
                try:
                    record = validate_record(json.loads(line))
                except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                    why = "not JSON" if isinstance(err, (json.JSONDecodeError, UnicodeDecodeError, RecursionError)) else str(err)
                    raise HashHopError(f"{path}:{number}: not a hashhop results record ({why})") from None
                latest[record["id"]] = record
    except OSError as err:
        raise HashHopError(f"cannot read {path}: {err.strerror or err}") from None
    return list(latest.values())


# -- response cache --------------------------------------------------------------------------
def default_cache_path() -> str:
    root = os.environ.get("HASHHOP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hashhop"
    )
    return os.path.join(root, "responses.sqlite")


class ResponseCache:
    def __init__(self, path: str) -> None:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._db = sqlite3.connect(path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as err:
            raise HashHopError(f"cannot use {path} as the response cache ({err}): pass --cache FILE or --no-cache") from None

    @staticmethod
    def key(model: str, request: Request) -> str:
        return hashlib.sha256(json.dumps({"model": model, **request.payload()}, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> Reply | None:
        row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return Reply(**json.loads(row[0])) if row else None

    def put(self, key: str, reply: Reply) -> None:
        data = {"text": reply.text, "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}
        self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, json.dumps(data)))
        self._db.commit()

    def close(self) -> None:
        self._db.close()


