"""The lab's field checks: one-line :class:`HashHopError`\\ s naming the field, shared by the config classes
(``TaskConfig``, ``MixerConfig``, ``ModelConfig``, ``OptimConfig``, ``RunConfig``), each checking itself in
``__post_init__``; and the limits that keep a run finite and its batches in memory. Torch-free."""

from __future__ import annotations

import math

from hashhop.errors import HashHopError

# Limits that keep a run finite and its batches in memory (a typo like steps=1e12 fails here, not after hours).
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536
MAX_SEQ_LEN = 1 << 20
MAX_BATCH_TOKENS = 1 << 26
MAX_SEED = 2**32 - 1  # batches are seeded with seed x 1,000,003 + ...: this keeps that within torch's 64 bits
MAX_PARAMS = 2_000_000_000


def show(value) -> str:
    """``repr(value)``, cut short: an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def whole(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise HashHopError(f"{name} must be a whole number from {lo:,} to {hi:,}, got {show(value)}")


def number(name: str, value, lo: float, hi: float, low_open: bool = False, high_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (lo < value if low_open else lo <= value) and (value < hi if high_open else value <= hi)
    if not ok:
        span = f"{'(' if low_open else '['}{lo:g}, {hi:g}{')' if high_open else ']'}"
        raise HashHopError(f"{name} must be a finite number in {span}, got {show(value)}")


def choice(name: str, value, choices, noun: str) -> None:
    if not isinstance(value, str) or value not in choices:
        raise HashHopError(f"{name}: unknown {noun} {show(value)}: use one of {', '.join(choices)}")


def flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise HashHopError(f"{name} must be true or false, got {show(value)}")
