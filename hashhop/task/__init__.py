"""The HashHop task: spec -> problem -> sample, and its text formats.

Names are imported on first use (as in :mod:`hashhop`), so ``import hashhop.task.spec`` or
``hashhop.task.grammar`` does not load the generator or numpy."""

from __future__ import annotations

import importlib

_WHERE = {
    "Chain": "hashhop.task.sample",
    "Sample": "hashhop.task.sample",
    "HashHopSpec": "hashhop.task.spec",
    "parse_size": "hashhop.task.spec",
    "Problem": "hashhop.task.generator",
    "generate": "hashhop.task.generator",
    "generate_many": "hashhop.task.generator",
    "plan": "hashhop.task.generator",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'hashhop.task' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
