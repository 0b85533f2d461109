"""Model backends behind one interface (see :mod:`hashhop.runners.base`)."""

from hashhop.runners.base import (
    PermanentError,
    Reply,
    Request,
    Runner,
    RunnerOptions,
    TransientError,
    make_runner,
    register_runner,
    runner_prefixes,
)

__all__ = [
    "PermanentError",
    "Reply",
    "Request",
    "Runner",
    "RunnerOptions",
    "TransientError",
    "make_runner",
    "register_runner",
    "runner_prefixes",
]
