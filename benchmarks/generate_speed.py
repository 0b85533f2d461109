"""Headline numbers of the data engine (issue: HashHop data engine).

1. ``hashhop generate --context 3e8 --tokenizer chars -o FILE``, the command a user types, run as a
   subprocess: wall time, CPU time and peak RSS; next to a straightforward pure-Python generator of the
   same output and the published time of Magic's own generator (206 s, 2.75 GB on 2 cores).
2. ``MultiHopEval.make_one`` (the drop-in for Magic's generator) at 3e7 characters next to a plain
   Python ``make_one`` that builds the same sample (prompt, completion, targets of every chain; same
   sizes), each in a fresh process, alternated, wall and CPU time; and make_one's memory at 3e8
   characters (peak RSS overall, and beyond what the returned sample holds).
3. Start-up of ``hashhop --help`` and ``hashhop generate --help``.
4. Token-exact sizing: 1M-token prompts for cl100k_base and o200k_base, counted whole afterwards.
5. (--scale) a 1B-token cl100k_base prompt streamed to a file: time and peak memory.

Usage: python benchmarks/generate_speed.py [--chars 3e8] [--make-one-chars 3e7] [--memory-chars 3e8]
       [--repeat 3] [--make-one-repeat 7] [--skip-baseline] [--scale]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _results import update_section  # noqa: E402

MAGIC_SECONDS, MAGIC_RSS_MB = 206.0, 2750.0  # ../shared/reference/published.md
ALPHABET = string.ascii_lowercase + string.ascii_uppercase


def measure_child(cmd: list[str]) -> tuple[float, float, float, str]:
    """Run ``cmd``; (wall s, peak RSS MB of that child alone, its user + system CPU s, stdout), from wait4."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Read the pipes to the end before reaping, so the child never blocks on a full pipe.
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode().strip()[-500:]}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, out.decode()


def best(runs: list[tuple]) -> tuple:
    return min(runs, key=lambda r: r[0])


# -- plain-Python baselines --------------------------------------------------------------------
def plain_chains(rng: random.Random, n_chars: int, hops: int, length: int) -> list[list[str]]:
    """The chains that fill ``n_chars``: random strings, a set against collisions (the obvious way)."""
    n_chains = (n_chars + 1) // (hops * (2 * length + 4) + 2)
    seen: set[str] = set()

    def fresh() -> str:
        while True:
            h = "".join(rng.choices(ALPHABET, k=length))
            if h not in seen:
                seen.add(h)
                return h

    return [[fresh() for _ in range(hops + 1)] for _ in range(n_chains)]


def baseline(n_chars: int, hops: int, length: int, path: str) -> None:
    """The obvious pure-Python generator: random strings, a set against collisions, a shuffled list."""
    rng = random.Random(0)
    lines = []
    for chain in plain_chains(rng, n_chars, hops, length):
        for j in range(hops):
            lines.append(f"{chain[j]} = '{chain[j + 1]}'" if j == hops - 1 else f"{chain[j]} = {chain[j + 1]}")
    rng.shuffle(lines)
    with open(path, "w") as f:
        f.write("\n".join(lines))


def baseline_make_one(n_chars: int, num_queries: int, hops: int, length: int, cot: bool, seed: int = 0):
    """A plain Python make_one: the same sample as ``MultiHopEval.make_one`` (the prompt of the same
    number of chains, so the same length; the completion; targets of every chain, queried first)."""
    rng = random.Random(seed)
    chains = plain_chains(rng, n_chars, hops, length)
    n_chains = len(chains)
    lines = [f"{c[j]} = '{c[j + 1]}'" if j == hops - 1 else f"{c[j]} = {c[j + 1]}" for c in chains for j in range(hops)]
    rng.shuffle(lines)
    prompt = "\n".join(lines)

    def answer(chain: list[str]) -> str:
        return " = ".join(chain[1:]) if cot else chain[-1]

    queried = [chains[i] for i in rng.sample(range(n_chains), num_queries)]
    completion = f"COMPLETION:\nHops={hops}\n\nCoT={cot}\n\n" + "".join(f"{c[0]} = '{answer(c)}'\n" for c in queried)
    targets = {c[0]: answer(c) for c in queried}
    for chain in chains:
        targets.setdefault(chain[0], answer(chain))
    return prompt, completion, targets


# -- children ------------------------------------------------------------------------------------
_MAKE_ONE_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {here!r})

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

which, n = sys.argv[1], int(float(sys.argv[2]))
if which == "hashhop":
    from hashhop import MultiHopEval
    import numpy  # noqa: F401  (imported before the clock starts, as a caller's would be)
    MultiHopEval.make_one(10_000, 5, 2, 16, False, seed=1)
    make = lambda: MultiHopEval.make_one(n, 5, 2, 16, False, seed=0)
else:
    from generate_speed import baseline_make_one
    make = lambda: baseline_make_one(n, 5, 2, 16, False)
# numpy's OpenBLAS thread pool spins for ~0.1 s after the import (a thread per extra core, counted
# in the process's CPU time though make_one runs no BLAS): let it go idle, as in a caller's process.
time.sleep(0.5)
start_rss = rss_mb()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
started, cpu = time.perf_counter(), time.process_time()
one = make()
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
prompt, completion, targets = (one.prompt, one.completion, one.targets) if which == "hashhop" else one
after_rss = rss_mb()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(seconds=seconds, cpu=cpu, prompt_chars=len(prompt), targets=len(targets), start_rss=start_rss,
                      after_rss=after_rss, peak_rss=peak, faults=faults)))
"""


def make_one_run(which: str, n_chars: int) -> dict:
    code = _MAKE_ONE_CHILD.format(here=HERE)
    _, _, _, out = measure_child([sys.executable, "-c", code, which, str(n_chars)])
    return json.loads(out.strip().splitlines()[-1])


def startup(argv: list[str], repeat: int) -> float:
    return min(measure_child([sys.executable, "-m", "hashhop.cli", *argv])[0] for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", default="3e8", help="size of the CLI run")
    parser.add_argument("--make-one-chars", default="3e7", help="size of the make_one speed comparison")
    parser.add_argument("--memory-chars", default="3e8", help="size of the make_one memory run ('0': skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed hashhop command (the best is reported)")
    parser.add_argument("--make-one-repeat", type=int, default=7, help="alternated runs of each make_one (best and median reported)")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the pure-Python file generator at --chars (54 s, 2.9 GB)")
    parser.add_argument("--scale", action="store_true", help="also stream a 1B-token cl100k prompt (minutes)")
    args = parser.parse_args()
    n_chars = int(float(args.chars))
    rows = []
    with tempfile.TemporaryDirectory(dir=HERE) as tmp:
        out = os.path.join(tmp, "prompt.txt")
        # Exactly what a user types (progress is off without a terminal).
        cmd = [sys.executable, "-m", "hashhop.cli", "generate", "--context", args.chars, "--tokenizer", "chars", "-o", out]
        ours_s, ours_mb, ours_cpu, _ = best([measure_child(cmd) for _ in range(args.repeat)])
        ours_size = os.path.getsize(out)
        print(f"hashhop generate: {ours_s:7.2f} s  {ours_cpu:6.2f} s CPU  {ours_mb:7.0f} MB peak RSS  {ours_size:,} bytes")
        rows.append((f"`hashhop generate --context {args.chars} --tokenizer chars -o FILE`", ours_s, ours_cpu, ours_mb, ours_size))
        os.remove(out)
        if not args.skip_baseline:
            code = f"import sys; sys.path.insert(0, {HERE!r}); from generate_speed import baseline; baseline({n_chars}, 2, 16, {out!r})"
            base_s, base_mb, base_cpu, _ = measure_child([sys.executable, "-c", code])
            base_size = os.path.getsize(out)
            print(f"baseline:         {base_s:7.2f} s  {base_cpu:6.2f} s CPU  {base_mb:7.0f} MB peak RSS  {base_size:,} bytes")
            print(f"hashhop generate is faster by {base_s / ours_s:.1f}x wall, {base_cpu / ours_cpu:.1f}x CPU, and uses {base_mb / ours_mb:.0f}x less memory")
            rows.append(("pure-Python baseline (this script)", base_s, base_cpu, base_mb, base_size))
            os.remove(out)
        scale_rows = []
        if args.scale:
            cmd = [sys.executable, "-m", "hashhop.cli", "generate", "--context", "1B", "--tokenizer", "cl100k_base", "--hops", "2", "-o", out]
            s, mb, _, _ = measure_child(cmd)
            scale_rows.append((s, mb, os.path.getsize(out)))
            print(f"1B cl100k tokens: {s:.1f} s, {mb:.0f} MB peak RSS, {os.path.getsize(out):,} bytes")
            os.remove(out)

    # make_one against a plain Python make_one of the same output: each in a fresh process, the two
    # alternated so that both see the same load on a shared machine; the best wall and the best CPU
    # time of each are compared (CPU time is the steadier of the two where other jobs run).
    m1 = int(float(args.make_one_chars))
    ours_runs, plain_runs = [], []
    for _ in range(args.make_one_repeat):
        ours_runs.append(make_one_run("hashhop", m1))
        plain_runs.append(make_one_run("plain", m1))
    ours, plain = best_of(ours_runs), best_of(plain_runs)
    assert (ours["prompt_chars"], ours["targets"]) == (plain["prompt_chars"], plain["targets"]), (ours, plain)
    print(
        f"make_one {m1:.0e}, best (median) of {args.make_one_repeat}: hashhop {ours['seconds']:.3f} ({ours['median_seconds']:.3f}) s wall, "
        f"{ours['cpu']:.3f} ({ours['median_cpu']:.3f}) s CPU | plain Python {plain['seconds']:.2f} ({plain['median_seconds']:.2f}) s wall, "
        f"{plain['cpu']:.2f} ({plain['median_cpu']:.2f}) s CPU | hashhop is faster by {plain['seconds'] / ours['seconds']:.1f}x "
        f"({plain['median_seconds'] / ours['median_seconds']:.1f}x) wall, {plain['cpu'] / ours['cpu']:.1f}x "
        f"({plain['median_cpu'] / ours['median_cpu']:.1f}x) CPU (target >= 15x)"
    )
    memory = None
    if float(args.memory_chars) > 0:
        memory = make_one_run("hashhop", int(float(args.memory_chars)))
        prompt_mb = memory["prompt_chars"] / 2**20
        print(
            f"make_one {float(args.memory_chars):.0e}: {memory['seconds']:.2f} s, peak RSS {memory['peak_rss']:.0f} MB, "
            f"{memory['peak_rss'] - memory['after_rss']:.0f} MB above what the returned sample holds (target <= 300 MB; "
            f"prompt {prompt_mb:.0f} MB, start {memory['start_rss']:.0f} MB, after {memory['after_rss']:.0f} MB)"
        )

    help_s = startup(["--help"], 5)
    generate_help_s = startup(["generate", "--help"], 5)
    probe = "import sys; from hashhop.cli import build_parser; build_parser(); print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    print(f"start-up: hashhop --help {help_s:.2f} s, hashhop generate --help {generate_help_s:.2f} s; heavy modules imported: {heavy}")

    sizing = sizing_rows()
    write_results(args, n_chars, rows, scale_rows, m1, ours, plain, memory, help_s, generate_help_s, heavy, sizing)


def best_of(runs: list[dict]) -> dict:
    """The best and the median wall and CPU times of ``runs`` (each statistic over all runs)."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["cpu"] = min(r["cpu"] for r in runs)
    best["median_seconds"] = statistics.median(r["seconds"] for r in runs)
    best["median_cpu"] = statistics.median(r["cpu"] for r in runs)
    best["runs"] = len(runs)
    return best


def write_results(args, n_chars, rows, scale_rows, m1, ours, plain, memory, help_s, generate_help_s, heavy, sizing) -> None:
    ours_s, _, ours_mb = rows[0][1], rows[0][2], rows[0][3]
    command = "python benchmarks/generate_speed.py" + "".join(
        f" {flag} {value}" for flag, value, default in [
            ("--chars", args.chars, "3e8"), ("--make-one-chars", args.make_one_chars, "3e7"),
            ("--memory-chars", args.memory_chars, "3e8"), ("--repeat", args.repeat, 3), ("--make-one-repeat", args.make_one_repeat, 7)]
        if str(value) != str(default)
    ) + (" --skip-baseline" if args.skip_baseline else "") + (" --scale" if args.scale else "")
    lines = [
        "## Data engine: generation speed and exact sizing",
        "",
        f"Command: `{command}`. Wall times are the best of {args.repeat} runs; CPU is user + system time of the process.",
        "",
        f'### Magic\'s "100M token" problem: {n_chars:.0e} characters, hops=2, 16-character hashes, to a file',
        "",
        "| generator | wall time | CPU time | peak RSS | output bytes | hashhop is faster by |",
        "|---|---|---|---|---|---|",
    ]
    for name, s, cpu, mb, size in rows:
        lines.append(f"| {name} | {s:.2f} s | {cpu:.2f} s | {mb:.0f} MB | {size:,} | {s / ours_s:.1f}x |")
    lines.append(
        f"| Magic's generator (published, 2-core machine) | {MAGIC_SECONDS:.0f} s | | {MAGIC_RSS_MB:.0f} MB | "
        f"~{n_chars * 1.05:,.0f} (overshoots 4-9%) | {MAGIC_SECONDS / ours_s:.0f}x |"
    )
    lines += [
        "",
        f"Target: the command itself <= 4 s wall and <= 300 MB peak RSS. Measured: {ours_s:.2f} s, {ours_mb:.0f} MB.",
        "",
        f"### `MultiHopEval.make_one` at {m1:.0e} characters (hops=2, 16-character hashes, 5 queries)",
        "",
        "Each in a fresh process, timed around the call (numpy imported before), the two alternated "
        f"{args.make_one_repeat} times; both build the same sample: a prompt of {ours['prompt_chars']:,} characters, the "
        f"completion, and a dict of the targets of all {ours['targets']:,} chains. Best of {args.make_one_repeat} (median in "
        "brackets); CPU is the process's user + system time, the steadier measure on a machine shared with other jobs.",
        "",
        "| make_one | wall time | CPU time | page faults |",
        "|---|---|---|---|",
        f"| hashhop (vectorised) | {ours['seconds']:.3f} s ({ours['median_seconds']:.3f}) | {ours['cpu']:.3f} s ({ours['median_cpu']:.3f}) | {ours['faults']:,} |",
        f"| plain Python (this script's `baseline_make_one`) | {plain['seconds']:.2f} s ({plain['median_seconds']:.2f}) | "
        f"{plain['cpu']:.2f} s ({plain['median_cpu']:.2f}) | {plain['faults']:,} |",
        f"| **hashhop is faster by** | **{plain['seconds'] / ours['seconds']:.1f}x** ({plain['median_seconds'] / ours['median_seconds']:.1f}x) "
        f"| **{plain['cpu'] / ours['cpu']:.1f}x** ({plain['median_cpu'] / ours['median_cpu']:.1f}x) | |",
        "",
        f"Target: >= 15x a plain Python generator. Measured: {plain['seconds'] / ours['seconds']:.1f}x wall, "
        f"{plain['cpu'] / ours['cpu']:.1f}x CPU (best of each); {plain['median_seconds'] / ours['median_seconds']:.1f}x wall, "
        f"{plain['median_cpu'] / ours['median_cpu']:.1f}x CPU (medians).",
        "",
        "Where hashhop's time goes (one fresh process, `getrusage` around each step): the targets dict, 405k "
        "key strings, 405k answer strings and the dict itself, is about half, and half of that is the kernel "
        "mapping fresh pages (a page fault per 4 KiB, 2-3 us each on this VM: the strings and the dict's tables "
        "take ~100 MB); decoding the 30 MB prompt string is ~7,300 page faults; the NumPy work (the hashes, the "
        "line permutation, gathering the hashes and scattering each line's pieces into the prompt) is the rest.",
        "",
    ]
    if memory:
        prompt_mb = memory["prompt_chars"] / 2**20
        kept = memory["after_rss"] - memory["start_rss"]
        beyond = memory["peak_rss"] - memory["after_rss"]
        lines += [
            f"Memory at {float(args.memory_chars):.0e} characters ({memory['targets']:,} chains, {memory['seconds']:.1f} s): "
            f"peak RSS {memory['peak_rss']:.0f} MB overall. The returned sample holds {kept:.0f} MB (RSS after the call less "
            f"before it, {memory['start_rss']:.0f} MB): the prompt string ({prompt_mb:.0f} MB) and the targets dict of every "
            f"chain ({kept - prompt_mb:.0f} MB of Python strings). Beyond the result, the call needed {beyond:.0f} MB at its peak "
            f"(target: <= 300 MB): the hash digits while the prompt and targets are built, then the prompt's bytes while "
            "they are decoded into the string (the hash digits freed first).",
            "",
        ]
    lines += [
        "### Start-up",
        "",
        f"`hashhop --help`: {help_s:.2f} s; `hashhop generate --help`: {generate_help_s:.2f} s (best of 5, "
        f"fresh processes; target < 0.5 s). torch or numpy imported to build the parser: {heavy}.",
        "",
    ]
    if scale_rows:
        s, mb, size = scale_rows[0]
        lines += [
            "### Streaming at scale",
            "",
            "| prompt | wall time | peak RSS | bytes |",
            "|---|---|---|---|",
            f"| 1B cl100k_base tokens, hops=2 (`hashhop generate --context 1B -o FILE`) | {s:.0f} s | {mb:.0f} MB | {size:,} |",
            "",
        ]
    lines += [
        "### Token-exact sizing",
        "",
        "| target | tokenizer | prompt tokens (counted whole) | off by | planning time |",
        "|---|---|---|---|---|",
    ]
    for target, tok, counted, seconds in sizing:
        lines.append(f"| {target:,} | {tok} | {counted:,} | {100 * (target - counted) / target:.4f}% under | {seconds:.1f} s |")
    lines += [
        "",
        "Target: within 0.1% of a 1M-token cl100k_base target. The prompt is the longest whole-chain prompt "
        "that fits: it never exceeds the target, and one more chain would.",
    ]
    update_section("generate_speed", "\n".join(lines))
    print("\n".join(lines))


def sizing_rows() -> list[tuple[int, str, int, float]]:
    from hashhop.task.generator import plan
    from hashhop.task.spec import HashHopSpec
    from hashhop.task.tokens import get_tokenizer

    rows = []
    for tok in ("cl100k_base", "o200k_base"):
        target = 1_000_000
        started = time.perf_counter()
        problem = plan(HashHopSpec(context_tokens=target, tokenizer=tok, hops=2, hash_length=16))
        seconds = time.perf_counter() - started
        counted = get_tokenizer(tok).count(problem.prompt)  # the whole prompt in one piece
        print(f"{tok}: target {target:,}, counted {counted:,}, planned in {seconds:.1f} s")
        rows.append((target, tok, counted, seconds))
    return rows


if __name__ == "__main__":
    main()
