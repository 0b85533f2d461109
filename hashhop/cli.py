"""The ``hashhop`` command line. Bad input exits with status 2 and one line on stderr."""

from __future__ import annotations

import argparse
import os
import sys
import time

from hashhop.errors import HashHopError
from hashhop.task.formats import FORMATS, check_writable, format_for, write_samples
from hashhop.task.generator import Problem, plan
from hashhop.task.spec import ALPHABETS, HashHopSpec, parse_size
from hashhop.task.tokens import KNOWN


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except HashHopError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_generate(sub) -> None:
    defaults = HashHopSpec()
    p = sub.add_parser(
        "generate",
        help="generate HashHop problems",
        description="Generate HashHop problems in Magic's format, exactly sized and reproducible. "
        "Without --output, generate one problem and print a summary of it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--context",
        type=_size,
        default=defaults.context_tokens,
        metavar="SIZE",
        help="prompt size in tokens of --tokenizer (characters for 'chars'); 4096, 100k, 1M and 3e8 all work",
    )
    p.add_argument(
        "--tokenizer",
        default=defaults.tokenizer,
        help=f"what --context counts: {', '.join(KNOWN)}, or the path of a Hugging Face tokenizer.json",
    )
    p.add_argument("--hops", type=int, default=defaults.hops, help="links per chain (hashes per chain minus one)")
    p.add_argument(
        "--cot",
        action=argparse.BooleanOptionalAction,
        default=defaults.chain_of_thought,
        help="chain of thought: answer with every hash of the chain (H1 = 'H2 = H3') instead of only the last (H1 = 'H3')",
    )
    p.add_argument("--hash-length", type=int, default=defaults.hash_length, help="characters per hash")
    p.add_argument(
        "--alphabet",
        default=defaults.alphabet,
        help=f"hash characters: {', '.join(ALPHABETS)}, or the literal characters (2 to 94, no spaces, quotes or '=')",
    )
    p.add_argument("--queries", type=int, default=defaults.num_queries, help="queried chains per problem")
    p.add_argument("--seed", type=int, default=defaults.seed, help="problem i of --samples uses seed + i")
    p.add_argument("--samples", type=int, default=1, help="number of problems")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="PATH",
        help="write the problems to PATH ('-' for stdout) instead of printing a summary",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="text: prompt, blank line, completion (one problem); jsonl: one JSON object a line; "
        "parquet: a table (datasets.load_dataset reads both). Default: from the extension of --output (.txt, .jsonl, .parquet), "
        "text for stdout, else jsonl",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_generate)


def _run_generate(args) -> int:
    spec = HashHopSpec(
        context_tokens=args.context,
        tokenizer=args.tokenizer,
        hops=args.hops,
        chain_of_thought=args.cot,
        hash_length=args.hash_length,
        alphabet=args.alphabet,
        num_queries=args.queries,
        seed=args.seed,
    )
    if args.samples < 1:
        raise HashHopError(f"--samples must be at least 1, got {args.samples}")
    started = time.perf_counter()
    if args.output is None:
        problem = plan(spec)
        print(summary(problem, time.perf_counter() - started))
        return 0
    fmt = format_for(args.output, args.format)
    check_writable(args.output)
    if fmt == "text" and args.samples > 1:
        raise HashHopError("text output holds one problem: use --format jsonl or parquet for --samples > 1")
    from dataclasses import replace

    first = plan(spec)  # plan the first before opening the output: bad specs fail here
    problems = (first if i == 0 else plan(replace(spec, seed=spec.seed + i)) for i in range(args.samples))
    progress = not args.no_progress and sys.stderr.isatty()
    count = write_samples(problems, args.output, fmt, progress=progress)
    where = "stdout" if args.output == "-" else args.output
    print(f"wrote {count} problem(s) to {where} ({fmt}) in {time.perf_counter() - started:.2f} s", file=sys.stderr)
    return 0


def summary(problem: Problem, seconds: float) -> str:
    spec = problem.spec
    unit = "characters" if problem.tokenizer == "chars" else f"{problem.tokenizer} tokens"
    head = problem.render_lines(0, min(3, problem.num_lines)).decode().rstrip("\n")
    lines = [
        f"HashHop problem: {spec.hops} hop(s), chain of thought {'on' if spec.chain_of_thought else 'off'}, "
        f"{spec.hash_length}-character hashes ({spec.alphabet}), seed {spec.seed}",
        f"  prompt      {problem.prompt_tokens:,} {unit} of {spec.context_tokens:,} asked; "
        f"{problem.prompt_chars:,} characters, {problem.num_lines:,} lines, {problem.num_chains:,} chains",
        f"  planned in  {seconds:.2f} s",
        "  first lines " + head.replace("\n", "\n              "),
        "  queries (line of each link, as % depth in the prompt):",
    ]
    for chain in problem.queries:
        depths = ", ".join(f"{line} ({100 * line / max(1, problem.num_lines - 1):.0f}%)" for line in chain.lines)
        lines.append(f"    {chain.query} = '{chain.answer(spec.chain_of_thought)}'   links at {depths}")
    lines.append("  write it with --output FILE.jsonl (or .txt, .parquet); see hashhop generate --help")
    return "\n".join(lines)


def _size_list(text: str) -> tuple[int, ...]:
    return tuple(_size(part) for part in text.split(",") if part.strip())


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers, e.g. 1,2,3") from None


_COT = {"both": (False, True), "on": (True,), "off": (False,)}


def _add_grid_args(p) -> None:
    """The grid options shared by eval and export."""
    p.add_argument(
        "--lengths", type=_size_list, default=(1000, 4000), metavar="L1,L2,..", help="HashHop prompt lengths in the model's tokens"
    )
    p.add_argument("--hops", type=_int_list, default=(1, 2), metavar="H1,H2,..", help="hop counts")
    p.add_argument("--cot", choices=tuple(_COT), default="both", help="chain of thought on, off or both")
    p.add_argument("--samples", type=int, default=2, help="problems per cell")
    p.add_argument("--queries", type=int, default=2, help="queries per problem (one request each)")
    p.add_argument("--hash-length", type=int, default=16, help="characters per hash")
    p.add_argument("--seed", type=int, default=0, help="grid seed")


def _grid(args):
    from hashhop.harness import Grid

    for name in ("samples", "queries", "hash_length"):
        if getattr(args, name) < 1:
            raise HashHopError(f"--{name.replace('_', '-')} must be at least 1")
    if not args.lengths or not args.hops:
        raise HashHopError("--lengths and --hops need at least one value each")
    if min(args.hops) < 1:
        raise HashHopError("--hops values must be >= 1")
    return Grid(
        lengths=args.lengths,
        hops=args.hops,
        cot=_COT[args.cot],
        samples=args.samples,
        queries=args.queries,
        hash_length=args.hash_length,
        seed=args.seed,
    )


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a HashHop grid",
        description="Run a model on a grid of HashHop cells (context length x hops x chain of thought). Results are appended "
        "to --output as they arrive; run the same command again to resume after any interruption.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        help="openai:NAME (any OpenAI-compatible server), hf:PATH|FILE.gguf|smollm2 (in-process), builtin:ltm (this project's model)",
    )
    p.add_argument("--base-url", default=None, help="server URL for openai: models (default $OPENAI_BASE_URL, else api.openai.com)")
    p.add_argument("--api-key", default=None, help="API key (default $OPENAI_API_KEY); never written anywhere")
    p.add_argument("--endpoint", choices=("chat", "completions"), default="chat", help="which endpoint openai: models use")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="size prompts with this tokenizer: cl100k_base, o200k_base, a tokenizer.json, server (the server's tokenize "
        "endpoint) or estimate:CHARS_PER_TOKEN; default: the model's own when known, else the server's",
    )
    p.add_argument(
        "--max-context", type=_size, default=None, metavar="TOKENS", help="the model's context window (default: from the model when known)"
    )
    p.add_argument(
        "--template", default="auto", help="chat, native (Magic's completion format), auto (chat for chat models) or a JSON file"
    )
    _add_grid_args(p)
    p.add_argument(
        "--overflow",
        choices=("error", "skip", "shrink"),
        default="error",
        help="a cell that does not fit the model's context: stop before spending, skip it (reported), or shrink its prompt",
    )
    p.add_argument("--max-answer-tokens", type=int, default=None, help="output tokens per request (default: sized to the answer)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--retries", type=int, default=5, help="retries per request on 429, 5xx, timeouts and broken responses")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS", help="per-request timeout")
    p.add_argument("-o", "--output", default=None, metavar="RESULTS.jsonl", help="results file (default: results/<model>.jsonl)")
    p.add_argument("--cache", default=None, metavar="PATH", help="response cache (default: ~/.cache/hashhop/responses.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    p.add_argument("--dry-run", action="store_true", help="print the requests, tokens and cost the grid would take, and stop")
    p.add_argument("--price-in", type=float, default=None, metavar="USD", help="price per 1M input tokens, for the dry run's cost")
    p.add_argument("--price-out", type=float, default=None, metavar="USD", help="price per 1M output tokens, for the dry run's cost")
    p.add_argument("--report", default=None, metavar="DIR", help="also write the report (markdown, CSV, heatmap, curves, HTML) to DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    import asyncio
    import re

    from hashhop.harness import RunOptions, build_items, default_cache_path, dry_run, read_results, run_items
    from hashhop.report import aggregate, markdown
    from hashhop.runners import RunnerOptions, make_runner
    from hashhop.templates import load_template

    grid = _grid(args)
    if args.concurrency < 1:
        raise HashHopError("--concurrency must be at least 1")
    if args.retries < 0 or args.timeout <= 0:
        raise HashHopError("--retries must be >= 0 and --timeout > 0")
    output = args.output or os.path.join("results", re.sub(r"[^A-Za-z0-9._-]+", "_", args.model) + ".jsonl")
    if os.path.isdir(output):
        raise HashHopError(f"results path {output} is a folder: name a file")
    template = None if args.template == "auto" else load_template(args.template)  # cheap checks before any network
    options = RunnerOptions(
        base_url=args.base_url,
        api_key=args.api_key,
        endpoint=args.endpoint,
        timeout_s=args.timeout,
        max_context_tokens=args.max_context,
        tokenizer=args.tokenizer,
    )
    runner = make_runner(args.model, options)
    if hasattr(runner, "resolve_tokenizer"):
        runner.resolve_tokenizer()
    if template is None:
        template = load_template("chat" if runner.chat else "native")
    items = build_items(grid, runner, template, args.overflow, args.max_answer_tokens)
    if args.dry_run:
        print(f"{args.model}: {len(grid.cells())} cells, sized with {runner.tokenizer}, template {template.name}\n")
        print(dry_run(items, args.price_in, args.price_out))
        return 0
    if hasattr(runner, "check_ready"):
        runner.check_ready()
    run_options = RunOptions(
        concurrency=args.concurrency,
        max_attempts=args.retries + 1,
        progress=not args.no_progress and sys.stderr.isatty(),
        cache_path=None if args.no_cache else (args.cache or default_cache_path()),
    )
    if args.output is None:
        os.makedirs("results", exist_ok=True)
    stats = asyncio.run(run_items(items, runner, template, output, run_options))
    ids = {item.id for item in items}
    records = [r for r in read_results(output) if r["id"] in ids]
    print(markdown(aggregate(records), runner.name))
    if args.report:
        from hashhop.report import write_report

        paths = write_report(records, args.report)
        print("wrote " + ", ".join(paths), file=sys.stderr)
    print(
        f"\n{stats.answered} answered ({stats.cached} from cache), {stats.already_done} already done, {stats.skipped} skipped, "
        f"{stats.failed} failed, {stats.retries} retries; results in {output}",
        file=sys.stderr,
    )
    if stats.failed:
        print(f"{stats.failed} request(s) failed after retries: run the same command again to retry only those", file=sys.stderr)
        return 1
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write an evaluation grid as a dataset (JSONL or Parquet) for other tools",
        description="Write every request of a grid (the same ids, prompts and sizing as hashhop eval) as rows "
        "that datasets.load_dataset reads, with the expected answer and what is needed to score it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("-o", "--output", required=True, metavar="GRID.jsonl|GRID.parquet")
    p.add_argument("--tokenizer", default="cl100k_base", help="what the lengths count (as for hashhop generate)")
    p.add_argument("--template", default="chat", help="chat, native or a JSON template file")
    _add_grid_args(p)
    p.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from hashhop.export import grid_rows
    from hashhop.task.formats import check_writable, format_for, write_rows

    grid = _grid(args)
    fmt = format_for(args.output, None)
    check_writable(args.output)
    rows = grid_rows(grid, tokenizer=args.tokenizer, template=args.template)
    write_rows(rows, args.output, fmt)
    print(f"wrote {len(rows)} rows ({len(grid.cells())} cells) to {args.output}", file=sys.stderr)
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="summarise a results file: markdown, CSV, heatmap, curves, HTML",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("results", help="a results file written by hashhop eval")
    p.add_argument("--out", default=None, help="folder for the report (default: RESULTS without .jsonl, plus _report)")
    p.add_argument("--threshold", type=float, default=0.8, help="accuracy that defines the effective context length")
    p.set_defaults(run=_run_report)


def _run_report(args) -> int:
    from hashhop.harness import read_results
    from hashhop.report import aggregate, markdown, write_report

    if not 0 < args.threshold <= 1:
        raise HashHopError("--threshold must be in (0, 1]")
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise HashHopError(f"--out {args.out} is a file: name a folder for the report")
    records = read_results(args.results)
    out = args.out or os.path.splitext(args.results)[0] + "_report"
    paths = write_report(records, out, args.threshold)
    print(markdown(aggregate(records), ", ".join(sorted({r["model"] for r in records})), args.threshold))
    print("\nwrote " + ", ".join(paths), file=sys.stderr)
    return 0


def _add_lab(sub) -> None:
    p = sub.add_parser(
        "lab",
        help="architecture lab: train small models on HashHop, MQAR and recall tasks",
        description="Train sequence mixers on synthetic recall tasks and compare them.",
    )
    lab = p.add_subparsers(dest="lab_command", required=True, parser_class=_Parser)
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
    ev.add_argument("--lengths", type=_size_list, required=True, metavar="L1,L2,..", help="prompt lengths in characters")
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
        configs, args.out, progress=not args.no_progress and sys.stderr.isatty(), log=lambda line: print(line, file=sys.stderr)
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


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the built-in LTM model (builtin:ltm) on short HashHop contexts",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from hashhop.ltm.train import WEIGHTS, TrainConfig

    d = TrainConfig()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="problems per step")
    p.add_argument("--context-chars", type=int, default=d.context_chars, help="training context size (at most 16384)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=WEIGHTS, help="weights file (a model card and a .json summary go next to it)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    import shlex

    from hashhop.ltm.train import TrainConfig, train

    if args.steps < 1 or args.batch_size < 1 or not 1000 <= args.context_chars <= 16384 or args.lr <= 0:
        raise HashHopError("--steps and --batch-size must be >= 1, --context-chars 1000..16384, --lr > 0")
    if not args.out.endswith(".safetensors"):
        raise HashHopError("--out names the weights file: PATH.safetensors (its .json summary and model card go next to it)")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, context_chars=args.context_chars, lr=args.lr, seed=args.seed)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    except OSError as err:
        raise HashHopError(f"cannot create the folder for {args.out}: {err.strerror or err}") from None
    check_writable(args.out)
    command = "hashhop train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["train"] else "hashhop train"
    summary = train(cfg, out=args.out, progress=not args.no_progress and sys.stderr.isatty(), command=command.strip())
    final = summary["final"]
    print(
        f"trained {summary['parameters']:,} parameters in {summary['train_seconds']} s: final batch loss {final['loss']:.4f}, "
        f"exact match {final['exact']:.3f}; wrote {args.out}"
    )
    return 0


def _add_cost(sub) -> None:
    p = sub.add_parser(
        "cost",
        help="KV-cache bytes, GPUs and attention FLOPs of a transformer at a context, next to the built-in LTM",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default="llama-3.1-405b", help="a Hugging Face config.json, or a bundled name (llama-3.1-405b)")
    p.add_argument("--context", type=_size, default=100_000_000, metavar="TOKENS", help="context length (100M, 1e8, ...)")
    p.add_argument("--gpu-memory", type=float, default=80e9, metavar="BYTES", help="memory per GPU (80e9: an H100 80GB)")
    p.add_argument("--kv-bytes", type=int, default=None, help="bytes per cached value (default: from the config's dtype)")
    p.add_argument("--no-ltm", action="store_true", help="skip measuring the built-in LTM (a 1M-token prefill, about a second)")
    p.set_defaults(run=_run_cost)


def _run_cost(args) -> int:
    from hashhop.cost import load_config, measure_ltm, side_by_side

    if args.context < 1 or args.gpu_memory <= 0 or (args.kv_bytes is not None and args.kv_bytes < 1):
        raise HashHopError("--context must be >= 1 token, --gpu-memory > 0 and --kv-bytes >= 1")
    model = load_config(args.config, args.kv_bytes)
    ltm = None if args.no_ltm else measure_ltm(args.context)
    print(side_by_side(model, ltm, args.context, args.gpu_memory))
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the built-in LTM model as an OpenAI-compatible server (completions and chat)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="builtin:ltm", help="builtin:ltm or builtin:PATH (weights from hashhop train)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback by default)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-waiting", type=int, default=16, help="requests queued behind the running one; more get HTTP 429")
    p.add_argument("--max-request-mb", type=float, default=1024, help="largest request body; larger get HTTP 413")
    p.add_argument("--cache-contexts", type=int, default=4, help="prefilled contexts kept for reuse (prefix caching)")
    p.set_defaults(run=_run_serve)


def _run_serve(args) -> int:
    from hashhop.serve import ServeOptions, serve

    if not 0 < args.port < 65536 or args.max_waiting < 0 or args.max_request_mb <= 0 or args.cache_contexts < 1:
        raise HashHopError("--port 1..65535, --max-waiting >= 0, --max-request-mb > 0, --cache-contexts >= 1")
    options = ServeOptions(
        model=args.model,
        host=args.host,
        port=args.port,
        max_waiting=args.max_waiting,
        max_request_bytes=int(args.max_request_mb * 2**20),
        cache_contexts=args.cache_contexts,
    )
    try:
        serve(options)
    except OSError as err:  # port in use, no permission...
        raise HashHopError(f"cannot serve on {args.host}:{args.port}: {err.strerror or err}") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hashhop", description="HashHop: long-context data, evaluation and models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_generate(sub)
    _add_eval(sub)
    _add_export(sub)
    _add_report(sub)
    _add_lab(sub)
    _add_train(sub)
    _add_cost(sub)
    _add_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except HashHopError as err:
        print(f"hashhop {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hashhop {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `hashhop generate -o - | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
