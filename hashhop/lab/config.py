"""The one config type of the lab: a run is task + model + optimiser + schedule; a sweep is a list of runs."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, is_dataclass

from hashhop.errors import HashHopError
from hashhop.lab.mixers import MixerConfig
from hashhop.lab.model import ModelConfig
from hashhop.lab.tasks import TaskConfig


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 2000
    batch_size: int = 64
    eval_every: int = 100
    eval_batches: int = 4
    target_accuracy: float | None = None  # stop early once eval exact match reaches it
    eval_lengths: tuple[int, ...] = ()  # length generalisation at the end (task seq_len values)
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: torch's default)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        return _build(cls, data, "run")

    def replace(self, **changes) -> RunConfig:
        """A copy with dotted changes: ``cfg.replace(**{"optim.lr": 3e-3, "model.mixer.name": "mamba"})``."""
        data = self.to_dict()
        for dotted, value in changes.items():
            node = data
            *path, last = dotted.split(".")
            for key in path:
                node = node[key]
            if last not in node:
                raise HashHopError(f"no config field {dotted!r}")
            node[last] = value
        return RunConfig.from_dict(data)


_NESTED = {"task": TaskConfig, "model": ModelConfig, "optim": OptimConfig, "mixer": MixerConfig}


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise HashHopError(f"config {where} must be an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise HashHopError(f"unknown config field(s) in {where}: {', '.join(unknown)} (known: {', '.join(known)})")
    values = {}
    for name, value in data.items():
        if name in _NESTED and isinstance(value, dict):
            value = _build(_NESTED[name], value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise HashHopError(f"bad config {where}: {err}") from None


def load_configs(path: str) -> list[RunConfig]:
    """A JSON file holding one run config or a list of them (a sweep)."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as err:
        raise HashHopError(f"cannot read config {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise HashHopError(f"config {path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    items = data if isinstance(data, list) else [data]
    configs = [RunConfig.from_dict(item) for item in items]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise HashHopError(f"config {path}: run names must be unique within a sweep")
    return configs


def is_config(value) -> bool:
    return is_dataclass(value) and isinstance(value, RunConfig)
