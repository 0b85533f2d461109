"""``hashhop lab ...``: arguments only; the work is :mod:`hashhop.lab`."""

from __future__ import annotations

import argparse
import os
import sys

from hashhop.cli.common import Parser, float_list, progress_on, size_list
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
    run.add_argument("--out", default="runs/lab", help="folder for the runs (never an existing file)")
    run.add_argument("--lrs", type=float_list, default=None, metavar="LR1,LR2", help="learning-rate sweep: train every config at each rate")
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
        if not sep or not field:
            raise HashHopError(f"--set {assignment!r}: write FIELD=VALUE")
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # not JSON (or a 5,000-digit number, [[[[...): the text itself
            parsed = value
        try:  # the configs check the value (type, finiteness, range) and name the field
            configs = [c.replace(**{field: parsed}) for c in configs]
        except HashHopError as err:
            raise HashHopError(f"--set {assignment!r}"[:80] + f": {err}") from None
    if args.lrs is not None:
        try:
            configs = with_learning_rates(configs, list(args.lrs))
        except HashHopError as err:
            raise HashHopError(f"--lrs: {err}") from None
    return configs


def _run_lab(args) -> int:
    from hashhop.lab.sweep import run_sweep, summary_table
    from hashhop.lab.train import maybe_init_distributed

    configs = _lab_configs(args)
    maybe_init_distributed()
    # run_sweep checks --out, names and every run's shapes before any training or writing
    summaries = run_sweep(configs, args.out, progress=progress_on(args), log=lambda line: print(line, file=sys.stderr))
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

    if not 1 <= args.samples <= 100_000:
        raise HashHopError(f"--samples must be 1 to 100,000, got {args.samples}")
    print(depth_table(evaluate_lengths(args.run_dir, list(args.lengths), args.samples)))
    return 0


def _run_lab_table(args) -> int:
    from hashhop.lab.sweep import best_rate_lines, read_summaries, summary_table

    summaries = read_summaries(args.run_dir)
    print("\n".join([summary_table(summaries), *best_rate_lines(summaries)]))
    return 0
