"""The LTM's torch-free settings: where the shipped weights live and what ``hashhop train`` takes.

Kept apart from the network and training code so ``hashhop --help`` never imports torch."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from hashhop.errors import HashHopError

FORMAT = "hashhop-ltm"  # the checkpoint meta's format for LTM weights
WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "ltm.safetensors")
MAX_CONTEXT_CHARS = 16_384  # training contexts are short by design


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 800
    batch_size: int = 16
    context_chars: int = 2000  # every training context is this short (the engine is then run at 10M+)
    hash_lengths: tuple[int, ...] = (8, 16)
    hops: tuple[int, ...] = (1, 2, 3)
    num_queries: int = 4
    lr: float = 3e-3
    warmup_steps: int = 20
    seed: int = 0
    log_every: int = 25

    def __post_init__(self) -> None:
        def whole(value, lo: int, hi: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi

        if not whole(self.steps, 1, 10_000_000):
            raise HashHopError(f"steps must be a whole number from 1 to 10,000,000, got {self.steps!r}")
        if not whole(self.batch_size, 1, 4096):
            raise HashHopError(f"batch_size must be a whole number from 1 to 4096, got {self.batch_size!r}")
        if not whole(self.context_chars, 1000, MAX_CONTEXT_CHARS):
            raise HashHopError(
                f"context_chars must be a whole number from 1000 to {MAX_CONTEXT_CHARS} (training contexts are short by design), "
                f"got {self.context_chars!r}"
            )
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (math.isfinite(self.lr) and 0 < self.lr <= 10):
            raise HashHopError(f"lr must be a finite number > 0 and <= 10, got {self.lr!r}")
        if not whole(self.seed, 0, 2**63 - 1):
            raise HashHopError(f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r}")


def card_path(out: str) -> str:
    """Where the model card of the weights ``out`` goes: ``<stem>.card.md`` next to them, except for the shipped
    weights, whose card is ``hashhop/ltm/weights/MODEL_CARD.md``."""
    if os.path.realpath(out) == os.path.realpath(WEIGHTS):
        return os.path.join(os.path.dirname(WEIGHTS), "MODEL_CARD.md")
    return os.path.splitext(out)[0] + ".card.md"


def summary_path(out: str) -> str:
    """Where the training summary of the weights ``out`` goes: ``<stem>.json`` next to them."""
    return os.path.splitext(out)[0] + ".json"
