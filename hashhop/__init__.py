"""hashhop: HashHop long-context data, evaluation and models.

Names are imported on first use, so ``hashhop --help`` and ``hashhop generate`` start fast and a
Ctrl-C during start-up is caught by the command line."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"
_WHERE = {
    "Chain": "hashhop.task",
    "HashHopSpec": "hashhop.task",
    "Problem": "hashhop.task",
    "Sample": "hashhop.task",
    "generate": "hashhop.task",
    "generate_many": "hashhop.task",
    "parse_size": "hashhop.task",
    "plan": "hashhop.task",
    "MultiHopEval": "hashhop.compat",
    "MultiHopSample": "hashhop.compat",
    "HashHopError": "hashhop.errors",
    "evaluate": "hashhop.eval",
    "Grid": "hashhop.eval",
    "EvalResult": "hashhop.eval",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'hashhop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
