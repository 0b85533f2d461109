"""Sweeps, Zoology-style: a sweep is a list of run configs, trained one after another into one folder.
Finished runs are skipped and interrupted ones resume, so rerunning a sweep command continues it."""

from __future__ import annotations

import json
import os
import re

from hashhop.errors import HashHopError
from hashhop.lab.config import RunConfig
from hashhop.lab.train import train

_LR_SUFFIX = re.compile(r"-lr[0-9.e+-]+$")


def with_learning_rates(configs: list[RunConfig], rates: list[float]) -> list[RunConfig]:
    """Each config once per learning rate, named ``NAME-lrRATE``."""
    return [c.replace(**{"name": f"{c.name}-lr{rate:g}", "optim.lr": rate}) for c in configs for rate in rates]


def run_sweep(configs: list[RunConfig], out_dir: str, progress: bool = True, log=print) -> list[dict]:
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise HashHopError("run names in a sweep must be unique")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "sweep.json"), "w") as handle:
        json.dump([c.to_dict() for c in configs], handle, indent=1)
    return [train(c, out_dir, progress=progress, log=log) for c in configs]


def read_summaries(out_dir: str) -> list[dict]:
    if not os.path.isdir(out_dir):
        raise HashHopError(f"no run folder at {out_dir}")
    summaries = []
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name, "summary.json")
        if os.path.exists(path):
            with open(path) as handle:
                summaries.append(json.load(handle))
    if not summaries:
        raise HashHopError(f"{out_dir} holds no finished runs (each run folder gets a summary.json when it ends)")
    return summaries


def best_learning_rates(summaries: list[dict]) -> dict[str, dict]:
    """Per cell (the run name without its -lrRATE suffix), the run with the best final exact match."""
    best: dict[str, dict] = {}
    for s in summaries:
        cell = _LR_SUFFIX.sub("", s["name"])
        if cell not in best or (s["exact_match"] or 0) > (best[cell]["exact_match"] or 0):
            best[cell] = s
    return best


def summary_table(summaries: list[dict]) -> str:
    lines = [
        "| run | mixer | params | state bytes | steps | exact match | token acc | tokens/s | time | length generalisation |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        mixer = s["config"]["model"]["mixer"]
        name = mixer["name"] + (f"+{mixer['inner']}" if mixer["name"] == "hybrid" else "")
        lengths = ", ".join(f"{k}: {v:.2f}" for k, v in s.get("length_generalisation", {}).items())
        lines.append(
            f"| {s['name']} | {name} | {s['params']:,} | {s['state_bytes']:,} | {s['steps']} | {s['exact_match']:.3f} | "
            f"{s['token_accuracy']:.3f} | {s['tokens_per_s']:,.0f} | {s['elapsed_s']:.0f} s | {lengths} |"
        )
    return "\n".join(lines)
