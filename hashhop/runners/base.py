"""The one interface every model backend implements, and the registry that names them.

A runner turns a :class:`Request` into a :class:`Reply`. It also says how to size prompts for its
model (``tokenizer``: a name :func:`hashhop.task.tokens.get_tokenizer` resolves) and how much context
the model takes (``max_context_tokens``, None when unknown). Runners raise :class:`TransientError`
for what is worth retrying (rate limits, server errors, timeouts, broken responses) and
:class:`PermanentError` for what is not, and :class:`FatalError` for what no request of the run can get
past (a refused connection, a bad key, a wrong URL): the run stops early. The harness owns retries,
concurrency and caching, and applies :meth:`Runner.redact` to everything it stores or prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hashhop.errors import HashHopError


@dataclass(frozen=True)
class Request:
    """One model call: chat ``messages`` or a raw ``prompt`` (for completion endpoints / base models)."""

    max_tokens: int
    messages: tuple[tuple[str, str], ...] | None = None  # ((role, content), ...)
    prompt: str | None = None
    stop: tuple[str, ...] = ()

    def payload(self) -> dict:
        """What identifies the request for caching (no credentials, no transport details)."""
        body: dict = {"max_tokens": self.max_tokens, "stop": list(self.stop)}
        if self.messages is not None:
            body["messages"] = [{"role": r, "content": c} for r, c in self.messages]
        else:
            body["prompt"] = self.prompt
        return body


@dataclass(frozen=True)
class Reply:
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None


class TransientError(Exception):
    """Worth retrying: 429, 5xx, timeouts, cut-off or malformed responses."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        # the least wait before the next try: the server's Retry-After, or a timeout's length (the server may
        # still be working on the request; asking again at once would have it do the work twice)
        self.retry_after_s = retry_after_s


class PermanentError(Exception):
    """Not worth retrying: the request itself is wrong (400, prompt too long...)."""


class FatalError(PermanentError):
    """No request of the run can succeed (401, 403, 404, connection refused): the run stops early."""


@dataclass
class RunnerOptions:
    base_url: str | None = None
    api_key: str | None = None
    endpoint: str = "chat"  # chat | completions
    timeout_s: float = 120.0
    max_context_tokens: int | None = None
    tokenizer: str | None = None
    # options of the model itself, as ``--model-args KEY=VALUE,...`` gives them (e.g. builtin:ltm2's decoding:
    # beams=4,length_penalty=1); a runner that takes none refuses any (check_model_args)
    model_args: dict = field(default_factory=dict)


class Runner(Protocol):
    """What the harness needs of a model backend. :class:`BaseRunner` gives the optional parts defaults."""

    name: str  # what results record as the model
    chat: bool  # requests carry messages (True) or a raw prompt (False)
    tokenizer: str  # how to size prompts for this model (resolved by resolve_tokenizer)
    max_context_tokens: int | None  # the model's context window, None when unknown
    max_concurrency: int | None  # requests the backend takes at once (None: as many as the run allows)
    cache_identity: str  # what makes two runners' replies interchangeable in the response cache

    def resolve_tokenizer(self) -> str:
        """Settle ``tokenizer`` (e.g. ask a server for its tokenize endpoint) before prompts are sized."""
        ...

    def check_ready(self) -> None:
        """Raise a :class:`HashHopError` before a real run (not a dry run) when no request could succeed."""
        ...

    def redact(self, text: str) -> str:
        """``text`` with every secret of this runner (an API key) masked: applied to all it stores or prints."""
        ...

    async def complete(self, request: Request) -> Reply: ...

    async def aclose(self) -> None: ...


class BaseRunner:
    """Defaults for the optional parts of :class:`Runner`."""

    name: str
    chat: bool
    tokenizer: str
    max_context_tokens: int | None = None
    max_concurrency: int | None = None

    @property
    def cache_identity(self) -> str:
        return self.name

    def resolve_tokenizer(self) -> str:
        return self.tokenizer

    def check_ready(self) -> None:
        return None

    def redact(self, text: str) -> str:
        return text

    async def complete(self, request: Request) -> Reply:
        raise PermanentError(f"{type(self).__name__} answers no requests")

    async def aclose(self) -> None:
        return None


def parse_model_args(text: str) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` (as lm-evaluation-harness's ``--model_args``) as a dict of strings; one-line errors."""
    args: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not part.strip():
            continue
        if not sep or not key or not value:
            raise HashHopError(f"model args must be KEY=VALUE pairs separated by commas, got {part.strip()[:80]!r}")
        if key in args:
            raise HashHopError(f"model arg {key!r} is given twice")
        args[key] = value
    return args


_NUMBER = {int: re.compile(r"[+-]?[0-9]+"), float: re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")}


def check_model_args(model: str, model_args: dict | None, accepted: dict[str, Callable[[str], object]]) -> dict:
    """``model_args`` converted by ``accepted`` (a key's parser: int and float take plain ASCII numbers only): a
    one-line error for a key ``model`` does not take or a value its parser refuses. Values that are not strings
    (the Python API's) pass as they are, for the model to check."""
    model_args = {} if model_args is None else model_args
    if not isinstance(model_args, dict) or any(not isinstance(key, str) for key in model_args):
        raise HashHopError(f"model args must be a dict with string keys, got {str(model_args)[:80]}")
    unknown = sorted(set(model_args) - set(accepted))
    if unknown:
        takes = f"it takes {', '.join(sorted(accepted))}" if accepted else "it takes none"
        raise HashHopError(f"{model} takes no model arg {unknown[0][:40]!r}: {takes}")
    out = {}
    for key, value in model_args.items():
        parse = accepted[key]
        if not isinstance(value, str):
            out[key] = value
            continue
        kind = {int: "whole number", float: "number"}.get(parse, parse.__name__)
        try:
            if parse in _NUMBER and not _NUMBER[parse].fullmatch(value):
                raise ValueError
            out[key] = parse(value)
        except ValueError:
            raise HashHopError(f"model arg {key}={value[:80]!r}: not a {kind}") from None
    return out


_RUNNERS: dict[str, Callable[[str, RunnerOptions], Runner]] = {}


def register_runner(prefix: str):
    """Register a runner factory for models named ``prefix:NAME`` (e.g. ``openai:gpt-4o``)."""

    def decorate(factory):
        _RUNNERS[prefix] = factory
        return factory

    return decorate


def runner_prefixes() -> list[str]:
    _load_builtin_runners()
    return sorted(_RUNNERS)


def make_runner(model: str, options: RunnerOptions | None = None) -> Runner:
    """The runner for ``model``: ``openai:NAME``, ``hf:PATH|smollm2``, or any registered prefix."""
    _load_builtin_runners()
    prefix, sep, name = model.partition(":")
    if not sep or prefix not in _RUNNERS:
        raise HashHopError(f"unknown model {model!r}: name it PREFIX:NAME with PREFIX one of {', '.join(sorted(_RUNNERS))}")
    if not name:
        raise HashHopError(f"model {model!r} names no model after '{prefix}:'")
    return _RUNNERS[prefix](name, options or RunnerOptions())


def _load_builtin_runners() -> None:
    # Importing registers them; kept lazy so `hashhop generate` never imports HTTP or torch code.
    from hashhop.runners import builtin, hf, openai  # noqa: F401
