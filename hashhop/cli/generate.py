"""``hashhop generate``: arguments only; the work is the data engine (:mod:`hashhop.task`)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time

from hashhop.cli.common import progress_on, size
from hashhop.errors import HashHopError
from hashhop.task.formats import FORMATS, check_writable, format_for, write_samples
from hashhop.task.generator import Problem, plan
from hashhop.task.grammar import answer_line
from hashhop.task.spec import ALPHABETS, HashHopSpec
from hashhop.task.tokens import KNOWN

_STOP_SIGNALS = ("SIGTERM", "SIGHUP")


class Stopped(BaseException):
    """A stop signal (SIGTERM, SIGHUP) turned into an exception, so that what is being written is
    cleaned up on the way out, as for Ctrl-C (a BaseException: no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def stop_signals_raise():
    """While the block runs, SIGTERM and SIGHUP raise :class:`Stopped` (a signal that is ignored,
    e.g. SIGHUP under nohup, stays ignored)."""

    def stop(signum, frame):
        raise Stopped(signum)

    previous = {}
    for name in _STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is None:
            continue
        try:
            if signal.getsignal(number) is not signal.SIG_IGN:
                previous[number] = signal.signal(number, stop)
        except ValueError:  # not the main thread: leave the signals alone
            pass
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_stoppable(command: str, run) -> int:
    """``run()``, with SIGTERM and SIGHUP cleaning up and ending it with one line on stderr and the
    conventional status, 128 + the signal's number."""
    try:
        with stop_signals_raise():
            return run()
    except Stopped as stopped:
        print(f"{command}: stopped by {signal.Signals(stopped.signum).name}", file=sys.stderr)
        return 128 + stopped.signum


def add(sub) -> None:
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
        type=size,
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
    return run_stoppable("hashhop generate", lambda: _generate(args))


def _generate(args) -> int:
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
    if not 1 <= args.samples <= 10_000_000:
        raise HashHopError(f"--samples must be 1 to 10,000,000, got {args.samples}")
    if spec.seed + args.samples > 2**63:
        raise HashHopError(f"--seed {spec.seed} + --samples {args.samples} passes the largest seed, 2**63 - 1: use a smaller --seed")
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
    progress = progress_on(args)
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
        lines.append(f"    {answer_line(chain.query, chain.answer(spec.chain_of_thought))}   links at {depths}")
    lines.append("  write it with --output FILE.jsonl (or .txt, .parquet); see hashhop generate --help")
    return "\n".join(lines)
