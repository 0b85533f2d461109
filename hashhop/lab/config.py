"""The one config type of the lab: a run is task + model + optimiser + schedule; a sweep is a list of runs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from dataclasses import dataclass, field, fields, is_dataclass

from hashhop.errors import HashHopError
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
        _number("optim.lr", self.lr, 0, 10, low_open=True)
        _number("optim.weight_decay", self.weight_decay, 0, 10)
        _whole("optim.warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        _number("optim.min_lr_ratio", self.min_lr_ratio, 0, 1)
        _number("optim.grad_clip", self.grad_clip, 0, 1e6)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise HashHopError(f"optim.betas must be two numbers in [0, 1), got {_show(self.betas)}")
        for beta in self.betas:
            _number("optim.betas", beta, 0, 1, high_open=True)


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

    def __post_init__(self) -> None:
        """One-line errors naming the field, for this run and its parts (task, model, mixer, optim)."""
        if not isinstance(self.name, str) or not self.name or len(self.name) > 200:
            raise HashHopError(f"name must be a non-empty string of at most 200 characters, got {_show(self.name)}")
        if self.name in (".", "..") or any(c in self.name for c in "/\\") or not self.name.isprintable():
            raise HashHopError(f"name {_show(self.name)} must be usable as a folder name (printable, no slashes, not . or ..)")
        for name, kind in (("task", TaskConfig), ("model", ModelConfig), ("optim", OptimConfig)):
            if not isinstance(getattr(self, name), kind):
                raise HashHopError(f"{name} must be an object of {kind.__name__} fields, got {_show(getattr(self, name))}")
        _whole("steps", self.steps, 1, MAX_STEPS)
        _whole("batch_size", self.batch_size, 1, MAX_BATCH)
        _whole("eval_every", self.eval_every, 1, MAX_STEPS)
        _whole("eval_batches", self.eval_batches, 1, 100_000)
        if self.target_accuracy is not None:
            _number("target_accuracy", self.target_accuracy, 0, 1)
        if not isinstance(self.eval_lengths, (tuple, list)):
            raise HashHopError(f"eval_lengths must be a list of sequence lengths, got {_show(self.eval_lengths)}")
        for length in self.eval_lengths:
            _whole("eval_lengths", length, 1, MAX_SEQ_LEN)
        _whole("seed", self.seed, 0, MAX_SEED)
        if self.threads is not None:
            _whole("threads", self.threads, 1, 4096)
        _check_task(self.task)
        _check_model(self.model)
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
                    raise HashHopError(f"no config field {_show(dotted)}")
                node = node[key]
            if not isinstance(node, dict) or last not in node:
                raise HashHopError(f"no config field {_show(dotted)}")
            node[last] = value
        return RunConfig.from_dict(data)


# Limits that keep a run finite and its batches in memory (a typo like steps=1e12 fails here, not after hours).
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536
MAX_SEQ_LEN = 1 << 20
MAX_BATCH_TOKENS = 1 << 26
MAX_SEED = 2**32 - 1  # batches are seeded with seed x 1,000,003 + ...: this keeps that within torch's 64 bits
MAX_PARAMS = 2_000_000_000
MAX_CONFIG_BYTES = 16 << 20
POSITIONS = ("rope", "alibi", "none")


def _show(value) -> str:
    """``repr(value)``, cut short: an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise HashHopError(f"{name} must be a whole number from {lo:,} to {hi:,}, got {_show(value)}")


def _number(name: str, value, lo: float, hi: float, low_open: bool = False, high_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (lo < value if low_open else lo <= value) and (value < hi if high_open else value <= hi)
    if not ok:
        span = f"{'(' if low_open else '['}{lo:g}, {hi:g}{')' if high_open else ']'}"
        raise HashHopError(f"{name} must be a finite number in {span}, got {_show(value)}")


def _text(name: str, value, choices, noun: str) -> None:
    if not isinstance(value, str) or value not in choices:
        raise HashHopError(f"{name}: unknown {noun} {_show(value)}: use one of {', '.join(choices)}")


def _check_task(task: TaskConfig) -> None:
    from hashhop.lab.data import TASKS

    _text("task.name", task.name, tuple(TASKS), "task")
    _whole("task.seq_len", task.seq_len, 1, MAX_SEQ_LEN)
    _whole("task.vocab_size", task.vocab_size, 2, 1 << 20)
    _whole("task.num_pairs", task.num_pairs, 1, 1 << 20)
    _whole("task.hops", task.hops, 1, 1000)
    if not isinstance(task.chain_of_thought, bool):
        raise HashHopError(f"task.chain_of_thought must be true or false, got {_show(task.chain_of_thought)}")
    _whole("task.hash_length", task.hash_length, 1, 1000)
    _whole("task.num_queries", task.num_queries, 1, 1 << 20)
    _number("task.power_a", task.power_a, 0, 1, low_open=True)
    if not isinstance(task.extra, dict):
        raise HashHopError(f"task.extra must be an object, got {_show(task.extra)}")


def _check_model(model: ModelConfig) -> None:
    from hashhop.lab.mixers import mixer_names

    if not isinstance(model.mixer, MixerConfig):
        raise HashHopError(f"model.mixer must be an object of MixerConfig fields, got {_show(model.mixer)}")
    _whole("model.n_layers", model.n_layers, 1, 1000)
    _whole("model.vocab_size", model.vocab_size, 2, 1 << 20)
    _whole("model.mlp_ratio", model.mlp_ratio, 0, 64)
    if model.max_len is not None:
        _whole("model.max_len", model.max_len, 1, MAX_SEQ_LEN)
    m = model.mixer
    _text("model.mixer.name", m.name, tuple(mixer_names()), "mixer")
    _whole("model.mixer.d_model", m.d_model, 1, 1 << 16)
    _whole("model.mixer.n_heads", m.n_heads, 1, m.d_model)
    if m.d_model % m.n_heads:
        raise HashHopError(f"model.mixer.d_model {m.d_model} is not divisible by model.mixer.n_heads {m.n_heads}")
    _text("model.mixer.positions", m.positions, POSITIONS, "positions")
    _whole("model.mixer.window", m.window, 1, MAX_SEQ_LEN)
    _whole("model.mixer.conv_kernel", m.conv_kernel, 1, 1024)
    _whole("model.mixer.state_dim", m.state_dim, 1, 4096)
    _whole("model.mixer.expand", m.expand, 1, 64)
    _whole("model.mixer.chunk", m.chunk, 1, MAX_SEQ_LEN)
    _text("model.mixer.inner", m.inner, tuple(n for n in mixer_names() if n != "hybrid"), "inner mixer")
    # A rough parameter count (embeddings + per layer: the mixer's d x d maps and the MLP) before anything is allocated.
    width = m.d_model * max(1, m.expand)
    params = 2 * model.vocab_size * m.d_model + model.n_layers * (8 * width * m.d_model + 2 * model.mlp_ratio * m.d_model**2)
    if params > MAX_PARAMS:
        raise HashHopError(f"model of about {params:,} parameters is too large for the lab: at most {MAX_PARAMS:,}")


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
            raise HashHopError(f"config {where}.{name} must be an object, got {_show(value)}")
        if name in _NESTED:
            value = _build(_NESTED[name], value, f"{where}.{name}")
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise HashHopError(f"bad config {where}: {err}") from None


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
