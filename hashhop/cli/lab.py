"""``hashhop lab ...``: arguments only; the work is :mod:`hashhop.lab`."""

from __future__ import annotations

import argparse
import os
import sys

from hashhop.cli.common import Parser, progress_on, size_list
from hashhop.errors import HashHopError


def add(sub) -> None:
    p = sub.add_parser(
        "lab",
        help="architecture lab: train small models on HashHop, MQAR and recall tasks",
        description="Train sequence mixers on synthetic recall tasks and compare them.",
    )
    lab = p.add_subparsers(dest="lab_command", required=True, parser_class=Parser)
    run = lab.add_parser(
        "run",
        help="train a config file or a named experiment (a sweep); rerun to resume",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("experiment", help="a JSON config (one run or a list) or a named experiment: see 'hashhop lab list'")
    run.add_argument("--out", default="runs/lab", help="folder for the runs")
    run.add_argument("--lrs", default=None, metavar="LR1,LR2", help="learning-rate sweep: train every config at each rate")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field of every config, dotted (steps=500, optim.lr=0.003, model.mixer.name=mamba)",
    )
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(run=_run_lab)
    lst = lab.add_parser("list", help="the named experiments")
    lst.set_defaults(run=_run_lab_list)
    plot = lab.add_parser("plot", help="plots of a run folder: curves, accuracy vs state size and vs length")
    plot.add_argument("run_dir")
    plot.set_defaults(run=_run_lab_plot)
    ev = lab.add_parser(
        "eval",
        help="length generalisation of a trained HashHop model, per depth, scored like hashhop eval",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ev.add_argument("run_dir", help="a finished run folder (config.json + model.safetensors)")
    ev.add_argument("--lengths", type=size_list, required=True, metavar="L1,L2,..", help="prompt lengths in characters")
    ev.add_argument("--samples", type=int, default=8, help="problems per length")
    ev.set_defaults(run=_run_lab_eval)
    table = lab.add_parser("table", help="a markdown table of a run folder (with the best learning rate per cell)")
    table.add_argument("run_dir")
    table.set_defaults(run=_run_lab_table)


def _lab_configs(args):
    import json

    from hashhop.lab.config import load_configs
    from hashhop.lab.experiments import EXPERIMENTS
    from hashhop.lab.sweep import with_learning_rates

    if args.experiment in EXPERIMENTS:
        configs = EXPERIMENTS[args.experiment]()
    elif os.path.exists(args.experiment):
        configs = load_configs(args.experiment)
    else:
        raise HashHopError(f"{args.experiment!r} is neither a config file nor an experiment: use one of {', '.join(EXPERIMENTS)}")
    for assignment in args.set:
        field, sep, value = assignment.partition("=")
        if not sep:
            raise HashHopError(f"--set {assignment!r}: write FIELD=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        configs = [c.replace(**{field: parsed}) for c in configs]
    if args.lrs:
        try:
            rates = [float(x) for x in args.lrs.split(",") if x.strip()]
        except ValueError:
            raise HashHopError(f"--lrs {args.lrs!r}: write rates like 1e-3,3e-3") from None
        configs = with_learning_rates(configs, rates)
    return configs


def _run_lab(args) -> int:
    from hashhop.lab.sweep import run_sweep, summary_table
    from hashhop.lab.train import build_model, maybe_init_distributed

    configs = _lab_configs(args)
    for cfg in configs:  # bad shapes and names fail here, before any training
        model = build_model(cfg)
        del model
    maybe_init_distributed()
    summaries = run_sweep(
        configs, args.out, progress=progress_on(args), log=lambda line: print(line, file=sys.stderr)
    )
    print(summary_table(summaries))
    return 0


def _run_lab_list(args) -> int:
    from hashhop.lab.experiments import EXPERIMENTS

    for name, factory in EXPERIMENTS.items():
        print(f"{name:18} {(factory.__doc__ or '').split(chr(10))[0]}")
    return 0


def _run_lab_plot(args) -> int:
    from hashhop.lab.plot import plot_runs

    print("wrote " + ", ".join(plot_runs(args.run_dir)), file=sys.stderr)
    return 0


def _run_lab_eval(args) -> int:
    from hashhop.lab.evaluate import depth_table, evaluate_lengths

    if args.samples < 1:
        raise HashHopError("--samples must be at least 1")
    print(depth_table(evaluate_lengths(args.run_dir, list(args.lengths), args.samples)))
    return 0


def _run_lab_table(args) -> int:
    from hashhop.lab.sweep import best_learning_rates, read_summaries, summary_table

    summaries = read_summaries(args.run_dir)
    print(summary_table(summaries))
    best = best_learning_rates(summaries)
    if any(name != s["name"] for name, s in best.items()):
        print("\nBest learning rate per cell:")
        for cell, s in best.items():
            print(f"- {cell}: lr {s['config']['optim']['lr']:g} (exact match {s['exact_match']:.3f})")
    return 0
