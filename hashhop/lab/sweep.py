"""Sweeps, Zoology-style: a sweep is a list of run configs, trained one after another into one folder.
Finished runs are skipped and interrupted ones resume, so rerunning a sweep command continues it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace

from hashhop.errors import HashHopError
from hashhop.lab.config import RunConfig
from hashhop.lab.train import train_run

_LR_SUFFIX = re.compile(r"-lr[0-9.e+-]+$")


def with_learning_rates(configs: list[RunConfig], rates: list[float]) -> list[RunConfig]:
    """Each config once per learning rate, named ``NAME-lrRATE``."""
    return [c.replace(**{"name": f"{c.name}-lr{rate:g}", "optim.lr": rate}) for c in configs for rate in rates]


def check_sweep(configs: list[RunConfig], out_dir: str) -> None:
    """Everything that can be checked before training, so that a bad sweep fails in one line before any run starts
    and before anything in ``out_dir`` is written: unique names, a writable output folder (never a file), no finished
    run of another config under the same name, and every run's model and first batch (task shapes) buildable."""
    if not configs:
        raise HashHopError("the sweep has no runs")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise HashHopError("run names in a sweep must be unique")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise HashHopError(f"--out {out_dir} is a file, not a run folder: name a folder (the file is left as it is)")
    for cfg in configs:
        summary_path = os.path.join(out_dir, cfg.name, "summary.json")
        if os.path.exists(summary_path):
            summary = _read_json(summary_path)
            if not isinstance(summary, dict) or summary.get("config") != json.loads(json.dumps(cfg.to_dict())):
                raise HashHopError(f"{os.path.join(out_dir, cfg.name)} holds a finished run of another config: use another name or out dir")
    for cfg in configs:
        _preflight(cfg)
    check_out_dir(out_dir)  # last: it creates the folder


def check_out_dir(out_dir: str) -> None:
    """``out_dir`` is (or can be made) a folder we can write in: tried for real (/proc says writable and refuses)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise HashHopError(f"--out {out_dir} is a file, not a run folder: name a folder (the file is left as it is)")
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".hashhop-write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise HashHopError(f"cannot write runs into {out_dir}: {err.strerror or err}") from None


def _preflight(cfg: RunConfig) -> None:
    """Build the run's model and one row of each batch shape it will see, so shape errors surface before training."""
    import torch

    from hashhop.lab.data import eval_config, make_batch, task_vocab
    from hashhop.lab.model import LM

    try:
        tasks = [cfg.task, eval_config(cfg.task)] + [eval_config(cfg.task, seq_len=n) for n in cfg.eval_lengths]
        for task in tasks:
            make_batch(task, 1, torch.Generator().manual_seed(0))
        with torch.device("meta"):  # shapes only: no memory, no time
            LM(replace(cfg.model, vocab_size=task_vocab(cfg.task)))
    except HashHopError as err:
        raise HashHopError(f"run {cfg.name}: {err}") from None
    except (RuntimeError, ValueError, TypeError, IndexError, OverflowError, MemoryError) as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise HashHopError(f"run {cfg.name} cannot be built: {lines[0][:200]}") from None


def run_sweep(configs: list[RunConfig], out_dir: str, progress: bool = True, log=print) -> list[dict]:
    from hashhop.lab.train import _dist

    check_sweep(configs, out_dir)
    path = os.path.join(out_dir, "sweep.json")
    partial = f"{path}.{os.getpid()}.partial"  # under torchrun each rank writes its own, never another's half
    try:
        with open(partial, "w") as handle:
            json.dump([c.to_dict() for c in configs], handle, indent=1)
        if _dist()[0] == 0:
            os.replace(partial, path)
        else:  # rank 0 writes the same list
            os.remove(partial)
    except OSError as err:
        raise HashHopError(f"cannot write {path}: {err.strerror or err}") from None
    return [train_run(c, out_dir, progress=progress, log=log) for c in configs]


def _read_json(path: str):
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SUMMARY_BYTES + 1)
        if len(raw) > MAX_SUMMARY_BYTES:
            raise ValueError("too large")
        return json.loads(raw)
    except OSError as err:
        raise HashHopError(f"cannot read {path}: {err.strerror or err}") from None
    except (ValueError, RecursionError):
        raise HashHopError(f"{path} is not a run summary (not readable JSON)") from None


_SUMMARY_FIELDS = {"name": str, "config": dict, "params": int, "state_bytes": int, "steps": int}
MAX_SUMMARY_BYTES = 16 << 20


def read_summaries(out_dir: str) -> list[dict]:
    if not os.path.isdir(out_dir):
        raise HashHopError(f"no run folder at {out_dir}")
    summaries = []
    try:
        names = sorted(os.listdir(out_dir))
    except OSError as err:
        raise HashHopError(f"cannot read {out_dir}: {err.strerror or err}") from None
    for name in names:
        path = os.path.join(out_dir, name, "summary.json")
        if os.path.isfile(path):
            summary = _read_json(path)
            if not _is_summary(summary):
                raise HashHopError(f"{path} is not a run summary written by hashhop lab run")
            summaries.append(summary)
    if not summaries:
        raise HashHopError(f"{out_dir} holds no finished runs (each run folder gets a summary.json when it ends)")
    return summaries


def _is_summary(s) -> bool:
    if not isinstance(s, dict):
        return False
    for key, kind in _SUMMARY_FIELDS.items():
        if not isinstance(s.get(key), kind) or (kind is int and isinstance(s.get(key), bool)):
            return False
    for key in ("exact_match", "token_accuracy", "tokens_per_s", "elapsed_s"):
        value = s.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return False
    mixer = s["config"].get("model", {}).get("mixer") if isinstance(s["config"].get("model"), dict) else None
    if not isinstance(mixer, dict) or not isinstance(mixer.get("name"), str):
        return False
    lengths = s.get("length_generalisation", {})
    return isinstance(lengths, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lengths.values())


def best_learning_rates(summaries: list[dict]) -> dict[str, dict]:
    """Per cell (the run name without its -lrRATE suffix), the run with the best final exact match."""
    best: dict[str, dict] = {}
    for s in summaries:
        cell = _LR_SUFFIX.sub("", s["name"])
        if cell not in best or (s.get("exact_match") or 0) > (best[cell].get("exact_match") or 0):
            best[cell] = s
    return best


def best_rate_lines(summaries: list[dict]) -> list[str]:
    """Markdown lines naming the best learning rate per cell (none when no cell was swept over rates)."""
    best = best_learning_rates(summaries)
    if all(name == s["name"] for name, s in best.items()):
        return []
    lines = ["", "Best learning rate per cell:"]
    for cell, s in best.items():
        optim = s["config"].get("optim")
        lr = optim.get("lr") if isinstance(optim, dict) else None
        rate = f"{lr:g}" if isinstance(lr, (int, float)) and not isinstance(lr, bool) else "?"
        lines.append(f"- {cell}: lr {rate} (exact match {_num(s.get('exact_match'), '.3f')})")
    return lines


def _num(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def summary_table(summaries: list[dict]) -> str:
    lines = [
        "| run | mixer | params | state bytes | steps | exact match | token acc | tokens/s | time | length generalisation |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        mixer = s["config"]["model"]["mixer"]
        name = mixer["name"] + (f"+{mixer.get('inner')}" if mixer["name"] == "hybrid" else "")
        lengths = ", ".join(f"{k}: {v:.2f}" for k, v in s.get("length_generalisation", {}).items())
        lines.append(
            f"| {s['name']} | {name} | {s['params']:,} | {s['state_bytes']:,} | {s['steps']} | {_num(s.get('exact_match'), '.3f')} | "
            f"{_num(s.get('token_accuracy'), '.3f')} | {_num(s.get('tokens_per_s'), ',.0f')} | {_num(s.get('elapsed_s'), '.0f', ' s')} | {lengths} |"
        )
    return "\n".join(lines)
