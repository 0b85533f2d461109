"""The architecture lab's results, each a named experiment trained here on the CPU.

  python benchmarks/lab_results.py h3_ar mqar three_tasks hashhop_mixers hashhop_attention throughput

Each part trains (or resumes) its sweep under benchmarks/runs/lab/<experiment>/ and writes its own
section of benchmarks/RESULTS.md with the table and the command.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import update_section  # noqa: E402

from hashhop.lab.experiments import EXPERIMENTS  # noqa: E402
from hashhop.lab.plot import plot_runs  # noqa: E402
from hashhop.lab.sweep import run_sweep, summary_table  # noqa: E402

RUNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs", "lab")
PLOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots")
PUBLISHED = {
    "h3_ar": "Published (berlino/seq_icl reproduction of H3): Transformer 100.0, H3 98.2, S4D 32.4, LSTM 36.2, chance 25.",
    "mqar": "Published (Zoology figure 2, sequence 64, 4 pairs, d_model 64): attention 0.97-0.99, BaseConv 0.69, Hyena 0.51, "
    "RWKV 0.74, H3 0.90.",
    "three_tasks": "Magic's point: a fixed-state model can pass the induction-head and needle tasks and still fail HashHop.",
    "hashhop_mixers": "Expected: fixed-state mixers fall as the number of pairs exceeds what their state holds; attention does not.",
    "hashhop_attention": "Target: 99% exact match on 1-hop HashHop within 30 minutes on this 2-core CPU.",
}


def run_experiment(name: str) -> None:
    out = os.path.join(RUNS, name)
    configs = EXPERIMENTS[name]()
    started = time.perf_counter()
    summaries = run_sweep(configs, out, progress=sys.stderr.isatty())
    plots = []
    os.makedirs(os.path.join(PLOTS, name), exist_ok=True)
    for path in plot_runs(out):  # the runs are not committed; their plots are
        plots.append(os.path.join(PLOTS, name, os.path.basename(path)))
        shutil.copyfile(path, plots[-1])
    lines = [
        f"## Lab: {name}",
        "",
        f"Command: `hashhop lab run {name} --out benchmarks/runs/lab/{name}` "
        f"(via `python benchmarks/lab_results.py {name}`; {time.perf_counter() - started:.0f} s this call)",
        "",
        (EXPERIMENTS[name].__doc__ or "").strip().replace("\n", " "),
        "",
        summary_table(summaries),
        "",
        PUBLISHED.get(name, ""),
        "",
        "Plots: " + ", ".join(os.path.relpath(p, os.path.dirname(RUNS)) for p in plots),
    ]
    update_section(f"lab_{name}", "\n".join(lines))
    print(summary_table(summaries))


def throughput() -> None:
    """Training tokens/s of every mixer on one shape (1-hop HashHop, characters)."""
    import torch

    from hashhop.lab.train import batch_for, build_model

    base = EXPERIMENTS["hashhop_mixers"]()[0]
    rows = []
    for inner in ("attention", "sliding_window", "linear_attention", "deltanet", "mamba"):
        cfg = base.replace(**{"model.mixer.inner": inner, "batch_size": 16})
        model = build_model(cfg)
        optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
        batches = [batch_for(cfg, i) for i in range(6)]
        for i, (x, y) in enumerate(batches):
            if i == 1:
                started = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = (time.perf_counter() - started) / 5
        rows.append((inner, model.num_params(), x.numel() / seconds, seconds * 1000))
        print(rows[-1])
    lines = [
        "## Lab: training throughput per mixer",
        "",
        "Command: `python benchmarks/lab_results.py throughput`",
        "",
        f"1-hop HashHop at character level, {base.task.seq_len}-character prompts, batch 16, 2 layers, d_model 64, "
        f"every mixer behind a short convolution; {torch.get_num_threads()} torch threads.",
        "",
        "| mixer | params | tokens/s | ms/step |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m} | {p:,} | {t:,.0f} | {ms:.0f} |" for m, p, t, ms in rows]
    update_section("lab_throughput", "\n".join(lines))


def hashhop_depth() -> None:
    """Length generalisation and depth of the 1-hop HashHop attention model (greedy answers, harness scorer)."""
    from hashhop.lab.evaluate import depth_table, evaluate_lengths

    run = os.path.join(RUNS, "hashhop_attention", "hashhop1-attention-to-99")
    rows = evaluate_lengths(run, [320, 1280, 5120], samples=8)
    table = depth_table(rows)
    print(table)
    lines = [
        "## Lab: 1-hop HashHop attention model at 1x, 4x and 16x its training length",
        "",
        "Command: `hashhop lab eval benchmarks/runs/lab/hashhop_attention/hashhop1-attention-to-99 --lengths 320,1280,5120 --samples 8` "
        "(via `python benchmarks/lab_results.py hashhop_depth`)",
        "",
        "Trained on 320-character prompts (4-character hashes, 4 queries); answers decoded greedily and scored by the "
        "harness's scorer; exact match per depth quarter of the queried link.",
        "",
        table,
    ]
    update_section("lab_hashhop_depth", "\n".join(lines))


def main() -> None:
    for part in sys.argv[1:] or ["h3_ar", "mqar", "three_tasks", "hashhop_mixers", "hashhop_attention", "hashhop_depth", "throughput"]:
        if part in ("throughput", "hashhop_depth"):
            {"throughput": throughput, "hashhop_depth": hashhop_depth}[part]()
        else:
            run_experiment(part)


if __name__ == "__main__":
    main()
