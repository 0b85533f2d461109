"""The one config type of the lab: a run is task + model + optimiser + schedule; a sweep is a list of runs."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from dataclasses import dataclass, field, fields, is_dataclass

from hashhop.errors import HashHopError
from hashhop.lab.checks import MAX_BATCH, MAX_BATCH_TOKENS, MAX_SEED, MAX_SEQ_LEN, MAX_STEPS, number, show, whole
from hashhop.lab.data import TaskConfig
from hashhop.lab.mixers import MixerConfig
from hashhop.lab.model import ModelConfig


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)

    def __post_init__(self) -> None:
        """One-line errors naming the field (a run config adds ``optim.`` in front)."""
        number("lr", self.lr, 0, 10, low_open=True)
        number("weight_decay", self.weight_decay, 0, 10)
        whole("warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        number("min_lr_ratio", self.min_lr_ratio, 0, 1)
        number("grad_clip", self.grad_clip, 0, 1e6)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise HashHopError(f"betas must be two numbers in [0, 1), got {show(self.betas)}")
        for beta in self.betas:
            number("betas", beta, 0, 1, high_open=True)


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
    # The auxiliary read loss's weight (0: off): tasks that know where an answer is copied from (ltm_mixture) give
    # each memory read its target entries, and the loss is -log of the read's share on them (mixers with reads: ltm2).
    read_loss: float = 0.0
    # The same loss on copy targets (the bytes after a jump), averaged apart from the jumps and weighted by this (0: off).
    copy_read_loss: float = 0.0
    init_from: str | None = None  # start from these weights (a .safetensors file or a finished run's folder)

    def __post_init__(self) -> None:
        """One-line errors naming the field; its parts (task, model, mixer, optim) checked themselves when they were made."""
        if not isinstance(self.name, str) or not self.name or len(self.name) > 200:
            raise HashHopError(f"name must be a non-empty string of at most 200 characters, got {show(self.name)}")
        if self.name in (".", "..") or any(c in self.name for c in "/\\") or not self.name.isprintable():
            raise HashHopError(f"name {show(self.name)} must be usable as a folder name (printable, no slashes, not . or ..)")
        for name, kind in (("task", TaskConfig), ("model", ModelConfig), ("optim", OptimConfig)):
            if not isinstance(getattr(self, name), kind):
                raise HashHopError(f"{name} must be an object of {kind.__name__} fields, got {show(getattr(self, name))}")
        whole("steps", self.steps, 1, MAX_STEPS)
        whole("batch_size", self.batch_size, 1, MAX_BATCH)
        whole("eval_every", self.eval_every, 1, MAX_STEPS)
        whole("eval_batches", self.eval_batches, 1, 100_000)
        if self.target_accuracy is not None:
            number("target_accuracy", self.target_accuracy, 0, 1)
        if not isinstance(self.eval_lengths, (tuple, list)):
            raise HashHopError(f"eval_lengths must be a list of sequence lengths, got {show(self.eval_lengths)}")
        for length in self.eval_lengths:
            whole("eval_lengths", length, 1, MAX_SEQ_LEN)
        whole("seed", self.seed, 0, MAX_SEED)
        if self.threads is not None:
            whole("threads", self.threads, 1, 4096)
        number("read_loss", self.read_loss, 0, 100)
        number("copy_read_loss", self.copy_read_loss, 0, 100)
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise HashHopError(f"init_from must be a weights file or run folder path, got {show(self.init_from)}")
        tokens = self.batch_size * max((self.task.seq_len, *self.eval_lengths))
        if tokens > MAX_BATCH_TOKENS:
            raise HashHopError(
                f"batch_size x seq_len is {tokens:,} tokens a batch: at most {MAX_BATCH_TOKENS:,} (lower batch_size or seq_len)"
            )

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
                if not isinstance(node, dict) or not isinstance(node.get(key), dict):
                    raise HashHopError(f"no config field {show(dotted)}")
                node = node[key]
            if not isinstance(node, dict) or last not in node:
                raise HashHopError(f"no config field {show(dotted)}")
            node[last] = value
        return RunConfig.from_dict(data)


MAX_CONFIG_BYTES = 16 << 20
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
        if name in _NESTED and not isinstance(value, dict):
            raise HashHopError(f"config {where}.{name} must be an object, got {show(value)}")
        if name in _NESTED:
            value = _build(_NESTED[name], value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise HashHopError(f"bad config {where}: {err}") from None
    except HashHopError as err:  # a part (task, model, mixer, optim) names its own field: say where it sits in the run
        if where == "run":
            raise
        raise HashHopError(f"{where.removeprefix('run.')}.{err}") from None


def load_configs(path: str) -> list[RunConfig]:
    """A JSON file holding one run config or a list of them (a sweep); a bad one is a one-line error naming the field."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise HashHopError(f"config {path} is a folder: name a JSON config file")
        if not stat.S_ISREG(info.st_mode):
            raise HashHopError(f"config {path} is not a regular file: name a JSON config file")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise HashHopError(f"cannot read config {path}: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise HashHopError(f"config {path} is over {MAX_CONFIG_BYTES >> 20} MB: not a run config")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise HashHopError(f"config {path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    except (ValueError, RecursionError) as err:  # undecodable bytes, a 5,000-digit number, [[[[...
        raise HashHopError(f"config {path} is not valid JSON ({type(err).__name__})") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise HashHopError(f"config {path} is an empty list: give one run config or a list of them")
    configs = []
    for i, item in enumerate(items):
        try:
            configs.append(RunConfig.from_dict(item))
        except HashHopError as err:
            where = f"config {path}" + (f" item {i}" if isinstance(data, list) else "")
            raise HashHopError(f"{where}: {err}") from None
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise HashHopError(f"config {path}: run names must be unique within a sweep")
    return configs


def is_config(value) -> bool:
    return is_dataclass(value) and isinstance(value, RunConfig)
