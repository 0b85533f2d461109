"""Headline numbers of the data engine (issue: HashHop data engine).

1. Magic's "100M token" problem (3e8 characters, hops=2, 16-character hashes) written to a file:
   hashhop vs a straightforward pure-Python generator of the same output, run here in the same
   session, and vs the published time of Magic's own generator on a 2-core machine (206 s, 2.75 GB).
2. Token-exact sizing: 1M-token prompts for cl100k_base and o200k_base, counted whole afterwards.
3. (--scale) a 1B-token cl100k_base prompt streamed to a file: time and peak memory.

Usage: python benchmarks/generate_speed.py [--chars 3e8] [--skip-baseline] [--scale]
"""

from __future__ import annotations

import argparse
import os
import random
import string
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_measured, update_section  # noqa: E402

MAGIC_SECONDS, MAGIC_RSS_MB = 206.0, 2750.0  # ../shared/reference/published.md


def baseline(n_chars: int, hops: int, length: int, path: str) -> None:
    """The obvious pure-Python generator: random strings, a set against collisions, a shuffled list."""
    rng = random.Random(0)
    alphabet = string.ascii_lowercase + string.ascii_uppercase
    chain_chars = hops * (2 * length + 4) + 2
    n_chains = (n_chars + 1) // chain_chars
    seen: set[str] = set()

    def fresh() -> str:
        while True:
            h = "".join(rng.choices(alphabet, k=length))
            if h not in seen:
                seen.add(h)
                return h

    lines = []
    for _ in range(n_chains):
        chain = [fresh() for _ in range(hops + 1)]
        for j in range(hops):
            lines.append(f"{chain[j]} = '{chain[j + 1]}'" if j == hops - 1 else f"{chain[j]} = {chain[j + 1]}")
    rng.shuffle(lines)
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", default="3e8")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--scale", action="store_true", help="also stream a 1B-token cl100k prompt (minutes)")
    args = parser.parse_args()
    n_chars = int(float(args.chars))
    rows = []
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(__file__))) as tmp:
        out = os.path.join(tmp, "prompt.txt")
        cmd = [
            sys.executable,
            "-m",
            "hashhop.cli",
            "generate",
            "--context",
            str(n_chars),
            "--tokenizer",
            "chars",
            "--hops",
            "2",
            "--hash-length",
            "16",
            "--no-progress",
            "-o",
            out,
        ]
        ours_s, ours_mb, _ = run_measured(cmd)
        ours_size = os.path.getsize(out)
        print(f"hashhop:  {ours_s:7.2f} s  {ours_mb:7.0f} MB peak RSS  {ours_size:,} bytes")
        rows.append(("hashhop generate (numpy, 2 threads)", ours_s, ours_mb, ours_size))
        os.remove(out)
        if not args.skip_baseline:
            code = (
                f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                f"from generate_speed import baseline; baseline({n_chars}, 2, 16, {out!r})"
            )
            base_s, base_mb, _ = run_measured([sys.executable, "-c", code])
            base_size = os.path.getsize(out)
            print(f"baseline: {base_s:7.2f} s  {base_mb:7.0f} MB peak RSS  {base_size:,} bytes")
            rows.append(("pure-Python baseline (this script)", base_s, base_mb, base_size))
            os.remove(out)
        scale_rows = []
        if args.scale:
            cmd = [
                sys.executable,
                "-m",
                "hashhop.cli",
                "generate",
                "--context",
                "1B",
                "--tokenizer",
                "cl100k_base",
                "--hops",
                "2",
                "--no-progress",
                "-o",
                out,
            ]
            s, mb, proc = run_measured(cmd)
            scale_rows.append((s, mb, os.path.getsize(out)))
            print(f"1B cl100k tokens: {s:.1f} s, {mb:.0f} MB peak RSS, {os.path.getsize(out):,} bytes")
            os.remove(out)

    sizing = sizing_rows()

    lines = [
        "## Data engine: generation speed and exact sizing",
        "",
        f"Command: `python benchmarks/generate_speed.py --chars {args.chars}{' --scale' if args.scale else ''}`",
        "",
        f'### Magic\'s "100M token" problem: {n_chars:.0e} characters, hops=2, 16-character hashes, to a file',
        "",
        "| generator | wall time | peak RSS | output bytes | hashhop is faster by |",
        "|---|---|---|---|---|",
    ]
    for name, s, mb, size in rows:
        lines.append(f"| {name} | {s:.2f} s | {mb:.0f} MB | {size:,} | {s / ours_s:.1f}x |")
    lines.append(
        f"| Magic's generator (published, 2-core machine) | {MAGIC_SECONDS:.0f} s | {MAGIC_RSS_MB:.0f} MB | "
        f"~{n_chars * 1.05:,.0f} (overshoots 4-9%) | {MAGIC_SECONDS / ours_s:.0f}x |"
    )
    lines += [
        "",
        f"Target: <= 4 s (50x faster than 206 s) and <= 300 MB peak RSS. Measured: {ours_s:.2f} s "
        f"({MAGIC_SECONDS / ours_s:.0f}x), {ours_mb:.0f} MB.",
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
