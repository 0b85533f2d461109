"""Answering prompts with LTM-2: an optional preloaded context (a file or a whole repository) that every prompt
continues, and a prefix cache, so that the queries of one long prompt pay one prefill.

Nothing here reads the prompt's format: the cache cuts ``TAIL`` bytes before a prompt's end, a byte count.
Used by ``builtin:ltm2`` (the harness) and ``hashhop serve --model builtin:ltm2`` (the HTTP server).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

from hashhop.errors import HashHopError

TAIL = 128  # bytes before a prompt's end where the prefix cache cuts: a query line and a header fit
MAX_CONTEXT_FILE_BYTES = 64 << 20  # one file of a repository context; larger ones (data dumps) are skipped


# What ``--model-args`` may set on an LTM-2 engine (hashhop eval and hashhop serve): its decoding. It changes the
# output, so it is part of the model's name (results, response cache, the name a server serves); it does not change
# a prefill, so a context saved by one decoding (--context-cache) serves another.
ENGINE_ARGS: dict = {"beams": int, "length_penalty": float}


def engine_args(model: str, model_args: dict) -> dict:
    """``model_args`` checked and converted for :func:`load_engine`, one-line errors (before any weights load); the
    engine's defaults (beams 1, length_penalty 0) left out, so they name the default decoding."""
    from hashhop.ltm2.config import check_beams, check_length_penalty
    from hashhop.runners.base import check_model_args

    args = check_model_args(model, model_args, ENGINE_ARGS)
    beams = check_beams(args.get("beams", 1))
    penalty = check_length_penalty(args.get("length_penalty", 0.0))
    if "length_penalty" in args and beams < 2:
        raise HashHopError("length_penalty compares a beam search's outputs: give beams >= 2 with it")
    defaults = {"beams": 1, "length_penalty": 0.0}
    return {key: value for key, value in (("beams", beams), ("length_penalty", penalty)) if value != defaults[key]}


def model_name(model: str, engine_args: dict) -> str:
    """``model`` with its engine arguments (from :func:`engine_args`), e.g. ``builtin:ltm2[beams=4,length_penalty=2]``:
    what results record and a server serves. Every distinct value has its own name (floats as Python writes them)."""
    if not engine_args:
        return model

    def show(value) -> str:
        return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)

    return f"{model}[" + ",".join(f"{key}={show(value)}" for key, value in sorted(engine_args.items())) + "]"


def load_engine(path: str | None = None, engine_args: dict | None = None):
    """An :class:`~hashhop.ltm2.engine.Engine` over LTM-2 weights (default: the shipped ones) with ``engine_args``
    (keys of :data:`ENGINE_ARGS`, already converted)."""
    from hashhop.ltm2.config import WEIGHTS
    from hashhop.ltm2.engine import Engine
    from hashhop.ltm2.load import load_ltm2

    return Engine(load_ltm2(path or WEIGHTS), **(engine_args or {}))


@dataclass
class Answer:
    text: str
    finish: str  # "stop" or "length"


def read_context(path: str) -> bytes:
    """A context file's bytes, or a folder's text files (sorted by path, each after ``# file: PATH``; hidden
    folders, binary files and files over 64 MB skipped), as one byte string."""
    if os.path.isfile(path):
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as err:
            raise HashHopError(f"cannot read context {path}: {err.strerror or err}") from None
    if not os.path.isdir(path):
        raise HashHopError(f"context {path} is neither a file nor a folder")
    parts = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                if not os.path.isfile(full) or os.path.getsize(full) > MAX_CONTEXT_FILE_BYTES:
                    continue
                with open(full, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if b"\0" in data[:8192]:
                continue  # binary
            parts.append(f"\n# file: {os.path.relpath(full, path)}\n".encode() + data)
    if not parts:
        raise HashHopError(f"context folder {path} holds no readable text files")
    return b"".join(parts)


class Session:
    """An :class:`~hashhop.ltm2.engine.Engine` answering prompts, each continuing ``context`` (if any)."""

    limits = True  # the server passes max_tokens and stop strings to answer()

    def __init__(self, engine, context: bytes | None = None, context_cache: str | None = None, progress: bool = False, log=None) -> None:
        self.engine = engine
        self.log = log or (lambda text: None)
        self._base = None
        self._prefix: bytes | None = None
        self._snapshot = None
        if context:
            self._base = self._prefill_context(context, context_cache, progress)

    def _prefill_context(self, context: bytes, cache: str | None, progress: bool):
        digest = hashlib.sha256(context).hexdigest()
        if cache and os.path.exists(os.path.join(cache, "context.sha256")):
            with open(os.path.join(cache, "context.sha256")) as handle:
                saved = handle.read().strip()
            if saved == digest:
                self.engine.load(cache)
                self.log(f"context: {len(context):,} bytes, memory-mapped from {cache}")
                return self.engine.snapshot()
        started = time.perf_counter()
        self.engine.prefill(context, progress=progress)
        self.log(f"context: {len(context):,} bytes prefilled in {time.perf_counter() - started:.1f} s")
        if cache:
            self.engine.save(cache)
            self.log(f"context: saved to {cache}")
        return self.engine.snapshot()

    def continue_text(self, data: bytes) -> None:
        """Bring the engine to the end of (context +) ``data``, from the cached prefix when ``data`` starts with it."""
        if self._prefix is not None and data.startswith(self._prefix) and len(data) > len(self._prefix):
            self.engine.restore(self._snapshot)
            self.engine.feed(data[len(self._prefix) :])
            return
        cut = len(data) - TAIL
        if self._base is not None:
            self.engine.restore(self._base)
            if cut > 0:
                self.engine.feed(data[:cut])
        elif cut > 0:
            self.engine.prefill(data[:cut])
        else:
            self._prefix = self._snapshot = None
            self.engine.prefill(data)
            return
        if cut > 0:
            self._prefix, self._snapshot = data[:cut], self.engine.snapshot()
            data = data[cut:]
        else:
            self._prefix = self._snapshot = None
        self.engine.feed(data)

    def answer(self, text: str, max_tokens: int = 256, stop: list[str] | tuple[str, ...] = ()) -> Answer:
        data = text.encode("utf-8")
        if not data and self._base is None:
            raise HashHopError("the prompt is empty")
        if data:
            self.continue_text(data)
        else:
            self.engine.restore(self._base)
        out = self.engine.generate(max_tokens, tuple(s.encode("utf-8") for s in stop if s)).decode("utf-8", errors="replace")
        finish = "length"
        for s in stop:
            if s and s in out:
                out, finish = out[: out.index(s)], "stop"
        return Answer(out, finish)
