"""LTM-2: which length penalty should a beam search use? One search per question records its final outputs
(``Engine.beam_trace``); every length penalty a > 0 chooses among that same set (by summed log-probability /
length ** a), and a = 0 (the summed search, whose early stop drops no better output) too, so one run scores every
a exactly. Greedy decoding's answer on the same prefill stands beside them, and "any" counts the questions where
some output of the search is right (what no choice among them can beat).

Prompts are ``hashhop generate``'s (Magic's format, 16-letter hashes or ``--shapes``) as in ``ltm2_recall.py``'s long rows: one
problem per (seed, task), ``--queries`` questions each, answers capped at the right answer's length + 2 bytes and
stopped at a quote or a newline (as there). Choose a on some seeds, then confirm it on seeds it was not chosen on.

Usage: python benchmarks/ltm2_beam_alpha.py --length 10M --seeds 0,1 --tasks 2cot,3cot --queries 30 --beams 4
       python benchmarks/ltm2_beam_alpha.py --from runs/evals/beam_alpha.jsonl --alphas 0,1,2   (rescore a saved run)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402
from ltm2_recall import SHAPES, continue_prompt, make_variant  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.grammar import native_request  # noqa: E402
from hashhop.task.spec import HashHopSpec, parse_size  # noqa: E402

TASKS = {"1": (1, False), "2cot": (2, True), "3cot": (3, True), "2": (2, False)}
SHAPE_OF = {"16 letters": (16, "letters"), **{label: (length, alphabet) for label, length, alphabet in SHAPES}}
STOPS = (b"'", b"\n")


def chosen(candidates: list, power: float) -> str:
    """The output a search with length penalty ``power`` writes: the best by sum / length ** power (the first of
    equals, as the engine's ``max``)."""
    return max(candidates, key=lambda c: c[0] / max(len(c[1].encode("utf-8", errors="surrogateescape")), 1) ** power)[1]


def run_questions(
    weights: str, length: int, seeds: list[int], tasks: list[str], queries: int, beams: int, shapes: tuple[str, ...] = ("16 letters",)
) -> list[dict]:
    """One record per question: its seed, task (with its hash shape unless 16 letters), the right answer, greedy
    decoding's and the search's outputs."""
    runner = make_variant("trained", weights)
    engine = runner.engine
    records = []
    for seed in seeds:
        for shape, task in [(s, t) for s in shapes for t in tasks]:
            hops, cot = TASKS[task]
            hash_length, alphabet = SHAPE_OF[shape]
            spec = HashHopSpec(
                context_tokens=length,
                tokenizer="chars",
                hops=hops,
                chain_of_thought=cot,
                hash_length=hash_length,
                alphabet=alphabet,
                num_queries=queries,
                seed=seed,
            )
            problem = plan(spec)
            label = task if shape == "16 letters" else f"{shape} {task}"
            started = time.perf_counter()
            for chain in tqdm(problem.queries, desc=f"seed {seed}, {label}", leave=False):
                expected = chain.answer(cot) + "'"
                continue_prompt(runner, native_request(problem.prompt, hops, cot, chain.query))
                before = engine.snapshot()
                greedy = engine.generate(len(expected) + 1, STOPS, beams=1)
                engine.restore(before)
                engine.length_penalty, engine.beam_trace = 1.0, []  # any penalty > 0: the search runs to its end
                try:
                    engine.generate(len(expected) + 1, STOPS, beams=beams)
                    (outputs,) = engine.beam_trace
                finally:
                    engine.length_penalty, engine.beam_trace = 0.0, None
                text = lambda b: b.decode("utf-8", errors="surrogateescape")  # noqa: E731
                records.append(
                    {
                        "seed": seed,
                        "task": label,
                        "length": length,
                        "beams": beams,
                        "query": chain.query,
                        "expected": expected,
                        "greedy": text(greedy),
                        "outputs": [[s, text(o), f] for s, o, f in outputs],
                    }
                )
            print(f"seed {seed} {label}: {len(problem.queries)} questions in {time.perf_counter() - started:.0f} s", flush=True)
    return records


def table(records: list[dict], alphas: list[float]) -> list[str]:
    """Right answers per (seed, task) for greedy decoding, each length penalty and "any"; fixed / broken against greedy."""
    order = list(dict.fromkeys(r["task"] for r in records))  # as run
    cells = sorted({(r["seed"], r["task"]) for r in records}, key=lambda c: (c[0], order.index(c[1])))
    head = "| decoding | " + " | ".join(f"seed {s} {t}" for s, t in cells) + " | all | fixed / broken against greedy |"
    lines = [head, "|" + "---|" * (len(cells) + 3)]

    def row(label: str, answer) -> str:
        counts = [sum(answer(r) == r["expected"] for r in records if (r["seed"], r["task"]) == c) for c in cells]
        asked = [sum((r["seed"], r["task"]) == c for r in records) for c in cells]
        fixed = sum(answer(r) == r["expected"] and r["greedy"] != r["expected"] for r in records)
        broken = sum(answer(r) != r["expected"] and r["greedy"] == r["expected"] for r in records)
        shown = " | ".join(f"{n}/{a}" for n, a in zip(counts, asked))
        return f"| {label} | {shown} | **{sum(counts)}/{len(records)}** | {fixed} / {broken} |"

    lines.append(row("greedy", lambda r: r["greedy"]))
    for a in alphas:
        label = f"beam {records[0]['beams']}, a = {a:g}" + (" (summed)" if a == 0 else " (per byte)" if a == 1 else "")
        lines.append(row(label, lambda r, a=a: chosen(r["outputs"], a)))
    lines.append(row("any output of the search", lambda r: r["expected"] if any(o[1] == r["expected"] for o in r["outputs"]) else ""))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--length", default="10M", help="HashHop prompt length in characters")
    ap.add_argument("--seeds", default="0,1", help="prompt seeds (comma-separated)")
    ap.add_argument("--tasks", default="2cot,3cot", help=f"comma-separated: {', '.join(TASKS)}")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--shapes", default="16 letters", help=f"hash shapes, comma-separated: {', '.join(SHAPE_OF)}")
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--alphas", default="0,0.5,1,1.5,2,3", help="length penalties to score (comma-separated, 0-4)")
    ap.add_argument("--out", default=None, metavar="FILE.jsonl", help="write every question's outputs here")
    ap.add_argument("--from", dest="source", default=None, metavar="FILE.jsonl", help="score a saved run's outputs (no model run)")
    ap.add_argument("--section", default="", help="RESULTS.md section to write (default: none, print only)")
    args = ap.parse_args()
    try:
        alphas = [float(a) for a in args.alphas.split(",")]
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise HashHopError(
            f"--alphas takes numbers and --seeds whole numbers, comma-separated: got {args.alphas!r}, {args.seeds!r}"
        ) from None
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or any(t not in TASKS for t in tasks):
        raise HashHopError(f"--tasks takes {', '.join(TASKS)} (comma-separated), got {args.tasks!r}")
    shapes = tuple(s.strip() for s in args.shapes.split(",") if s.strip())
    if not shapes or any(s not in SHAPE_OF for s in shapes):
        raise HashHopError(f"--shapes takes {', '.join(SHAPE_OF)} (comma-separated), got {args.shapes!r}")
    if any(not 0 <= a <= 4 for a in alphas):
        raise HashHopError(f"--alphas must be from 0 to 4, got {args.alphas!r}")
    if args.beams < 2 or args.queries < 1:
        raise HashHopError(f"--beams must be >= 2 and --queries >= 1, got {args.beams} and {args.queries}")
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):  # before the run, not after it
        raise HashHopError(f"--out {args.out}: its folder does not exist")
    started = time.perf_counter()
    if args.source:
        try:
            with open(args.source) as handle:
                records = [json.loads(line) for line in handle if line.strip()]
        except (OSError, ValueError) as err:
            raise HashHopError(f"cannot read {args.source}: {err}") from None
        fields = {"seed", "task", "length", "beams", "expected", "greedy", "outputs"}
        if not records or any(not isinstance(r, dict) or not fields <= set(r) for r in records):
            raise HashHopError(f"{args.source} holds no questions of this script (each line needs {', '.join(sorted(fields))})")
        where = f"the outputs saved in `{args.source}`"
    else:
        records = run_questions(args.weights, parse_size(args.length), seeds, tasks, args.queries, args.beams, shapes)
        if args.out:
            tmp = args.out + ".tmp"
            with open(tmp, "w") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in records)
            os.replace(tmp, args.out)
        where = f"{len(records)} questions run in {time.perf_counter() - started:,.0f} s"
    command = "python benchmarks/ltm2_beam_alpha.py " + shlex.join(sys.argv[1:])
    lines = [
        f"LTM-2, HashHop at {records[0]['length']:,} characters (Magic's format; 16-letter hashes where a column names no shape), answers by a beam search of "
        f"width {records[0]['beams']} scored for every length penalty a from one search per question ({where}). "
        f"Command: `{command.strip()}`.",
        "",
        *table(records, alphas),
        "",
        "A search with a length penalty a > 0 compares its outputs by summed log-probability / length ** a and runs until "
        "none is live, so every a > 0 chooses among the same outputs; a = 0 is the summed search (its early stop drops "
        'no better output). "Any": some output of the search is right.',
    ]
    print("\n".join(lines))
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
