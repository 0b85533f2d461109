"""Plots of a run folder: accuracy vs context length per mixer, accuracy vs state size (Zoology's
figure), and training curves."""

from __future__ import annotations

import json
import os

from hashhop.lab.sweep import read_summaries


def plot_runs(out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = read_summaries(out_dir)
    paths = []

    def label(s: dict) -> str:
        mixer = s["config"]["model"]["mixer"]
        return mixer["name"] + (f"+{mixer['inner']}" if mixer["name"] == "hybrid" else "")

    # training curves
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for s in summaries:
        path = os.path.join(out_dir, s["name"], "metrics.jsonl")
        if os.path.exists(path):
            with open(path) as handle:
                rows = [json.loads(line) for line in handle if line.strip()]
            ax.plot([r["step"] for r in rows], [r["exact_match"] for r in rows], label=s["name"])
    ax.set_xlabel("step")
    ax.set_ylabel("eval exact match")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(_save(fig, out_dir, "training_curves.png"))

    # accuracy vs state size
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in summaries:
        ax.scatter(s["state_bytes"], s["exact_match"], label=s["name"])
        ax.annotate(label(s), (s["state_bytes"], s["exact_match"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("inference state per sequence (bytes, at the training length)")
    ax.set_ylabel("exact match")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out_dir, "accuracy_vs_state.png"))

    # accuracy vs context length
    with_lengths = [s for s in summaries if s.get("length_generalisation")]
    if with_lengths:
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in with_lengths:
            points = sorted((int(k), v) for k, v in s["length_generalisation"].items())
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=s["name"])
        ax.set_xscale("log")
        lengths = sorted({int(k) for s in with_lengths for k in s["length_generalisation"]})
        ax.set_xticks(lengths, [f"{x:,}" for x in lengths])  # the measured lengths, not log-scale minor labels
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("exact match")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        paths.append(_save(fig, out_dir, "accuracy_vs_length.png"))
    return paths


def _save(fig, out_dir: str, name: str) -> str:
    import matplotlib.pyplot as plt

    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
