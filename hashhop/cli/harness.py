"""``hashhop eval``, ``hashhop export``, ``hashhop report``: arguments only; the work is :func:`hashhop.evaluate`."""

from __future__ import annotations

import argparse
import sys

from hashhop.cli.common import add_grid_args, add_model_args_arg, finite_float, grid_from_args, progress_on, size


def add(sub) -> None:
    _add_eval(sub)
    _add_export(sub)
    _add_report(sub)


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a HashHop grid",
        description="Run a model on a grid of HashHop cells (context length x hops x chain of thought). Results are appended "
        "to --output as they arrive; run the same command again to resume after any interruption.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args_arg(p)
    p.add_argument(
        "--model",
        required=True,
        help="openai:NAME (any OpenAI-compatible server), hf:PATH|FILE.gguf|smollm2 (in-process), builtin:ltm (this project's model)",
    )
    p.add_argument("--base-url", default=None, help="server URL for openai: models, ending in /v1 (default $OPENAI_BASE_URL, else api.openai.com)")
    p.add_argument("--api-key", default=None, help="API key (default $OPENAI_API_KEY); never written anywhere")
    p.add_argument("--endpoint", choices=("chat", "completions"), default="chat", help="which endpoint openai: models use")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="size prompts with this tokenizer: cl100k_base, o200k_base, a tokenizer.json, server (the server's tokenize "
        "endpoint) or estimate:CHARS_PER_TOKEN; default: the model's own when known, else the server's",
    )
    p.add_argument("--max-context", type=size, default=None, metavar="TOKENS", help="the model's context window (default: from the model when known)")
    p.add_argument("--template", default="auto", help="chat, native (Magic's completion format), auto (chat for chat models) or a JSON file")
    add_grid_args(p)
    p.add_argument(
        "--overflow",
        choices=("error", "skip", "shrink"),
        default="error",
        help="a cell that does not fit the model's context: stop before spending, skip it (reported), or shrink its prompt",
    )
    p.add_argument("--max-answer-tokens", type=int, default=None, help="output tokens per request (default: sized to the answer)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--retries", type=int, default=5, help="retries per request on 429, 5xx, timeouts and broken responses")
    p.add_argument("--timeout", type=finite_float, default=120.0, metavar="SECONDS", help="per-request timeout")
    p.add_argument("-o", "--output", default=None, metavar="RESULTS.jsonl", help="results file (default: results/<model>.jsonl)")
    p.add_argument("--cache", default=None, metavar="PATH", help="response cache (default: ~/.cache/hashhop/responses.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the response cache")
    p.add_argument("--dry-run", action="store_true", help="print the requests, tokens and cost the grid would take, and stop")
    p.add_argument("--price-in", type=finite_float, default=None, metavar="USD", help="price per 1M input tokens, for the dry run's cost")
    p.add_argument("--price-out", type=finite_float, default=None, metavar="USD", help="price per 1M output tokens, for the dry run's cost")
    p.add_argument("--report", default=None, metavar="DIR", help="also write the report (markdown, CSV, heatmap, curves, HTML) to DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    from hashhop.errors import HashHopError
    from hashhop.eval.run import RunOptions, evaluate
    from hashhop.eval.store import default_cache_path
    from hashhop.runners import RunnerOptions

    runner_options = RunnerOptions(
        base_url=args.base_url,
        api_key=args.api_key,
        endpoint=args.endpoint,
        timeout_s=args.timeout,
        max_context_tokens=args.max_context,
        tokenizer=args.tokenizer,
        model_args=args.model_args,
    )
    run_options = RunOptions(
        concurrency=args.concurrency,
        max_attempts=args.retries + 1,
        progress=progress_on(args),
        progress_log=not args.no_progress,
        cache_path=None if args.no_cache else (args.cache or default_cache_path()),
    )
    result = evaluate(
        args.model,
        grid_from_args(args),
        template=args.template,
        output=args.output,
        runner_options=runner_options,
        run_options=run_options,
        overflow=args.overflow,
        max_answer_tokens=args.max_answer_tokens,
        report_dir=args.report,
        dry_run=args.dry_run,
        price_in_per_m=args.price_in,
        price_out_per_m=args.price_out,
    )
    if args.dry_run:
        print(f"{result.model}: {len({(i.length, i.hops, i.cot) for i in result.items})} cells, sized with {result.tokenizer}, template {result.template}\n")
        print(result.dry_run)
        return 0
    stats = result.stats
    if stats.fatal:  # nothing worth a table: say why, once
        raise HashHopError(f"stopped early, {stats.not_sent} request(s) not sent ({stats.failed} failed): {stats.fatal}")
    if result.records:
        print(result.markdown())
    if result.report_paths:
        print("wrote " + ", ".join(result.report_paths), file=sys.stderr)
    print(
        f"\n{stats.answered} answered ({stats.cached} from cache), {stats.already_done} already done, {stats.skipped} skipped, "
        f"{stats.failed} failed, {stats.retries} retries; results in {result.output}",
        file=sys.stderr,
    )
    if stats.failed:
        print(f"first failure: {stats.first_error}", file=sys.stderr)
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
    add_grid_args(p)
    p.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from hashhop.cli.generate import run_stoppable

    return run_stoppable("hashhop export", lambda: _export(args))


def _export(args) -> int:
    from hashhop.eval.export import grid_rows
    from hashhop.task.formats import check_writable, format_for, write_rows

    grid = grid_from_args(args)
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
    p.add_argument("--threshold", type=finite_float, default=0.8, help="accuracy that defines the effective context length")
    p.set_defaults(run=_run_report)


def _run_report(args) -> int:
    import os

    from hashhop.errors import HashHopError
    from hashhop.eval.report import aggregate, check_records, markdown, write_report
    from hashhop.eval.run import check_report_dir
    from hashhop.eval.store import read_results

    if not 0 < args.threshold <= 1:
        raise HashHopError("--threshold must be in (0, 1]")
    records = read_results(args.results)
    check_records(records)  # bad records fail before the report folder is made
    out = args.out or os.path.splitext(args.results)[0] + "_report"
    check_report_dir(out)
    paths = write_report(records, out, args.threshold)
    print(markdown(aggregate(records), ", ".join(sorted({r["model"] for r in records})), args.threshold))
    print("\nwrote " + ", ".join(paths), file=sys.stderr)
    return 0
