"""Where LTM-2's wrong HashHop answers go wrong, side by side across recall sections of RESULTS.md.

Every ``ltm2_recall.py --failures`` section lists, per variant, length and task, the count of right bytes before each
wrong answer's first wrong byte. This script reads those lists back from the named sections and counts, with
``ltm2_recall.first_wrong_step``, which step of the answer failed: a jump to a link (a hash's first byte), the first
bytes of a copy (1-3), a later copy byte, the end of a copied hash (the space before ` = `), the separator, the
closing quote. It computes nothing new from the model: a table to compare weights on the same prompts.

Usage: python benchmarks/ltm2_failure_steps.py --sections ltm2_recall_10m_30q_rs64,ltm2_recall_10m_30q_r1pg [--section NAME]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import RESULTS, run_script, update_section  # noqa: E402
from ltm2_recall import FIRST_WRONG_STEPS, step_counts  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402

LINE = re.compile(r"^- (\w[^,\n]*?), ([\d,]+) chars, (\d+) hops( CoT)?, (\d+) \w+: (\d+) wrong;.*?right bytes before the first wrong one: ([\d, ]+);", re.M)


def section_failures(text: str, name: str) -> list[tuple[str, int, int, bool, int, list[int]]]:
    """(variant, context chars, hops, cot, hash length, right bytes before each wrong answer's first wrong byte) per
    failure line of section ``name`` of RESULTS.md's ``text``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise HashHopError(f"no section {name!r} in {RESULTS}")
    body = text[text.index(begin) : text.index(end)]
    found = []
    for m in LINE.finditer(body):
        prefixes = [int(x) for x in m.group(7).split(",")]
        if len(prefixes) != int(m.group(6)):
            raise HashHopError(f"section {name!r}: a failure line lists {len(prefixes)} answers for {m.group(6)} wrong")
        found.append((m.group(1), int(m.group(2).replace(",", "")), int(m.group(3)), bool(m.group(4)), int(m.group(5)), prefixes))
    if not found:
        raise HashHopError(f"section {name!r} lists no wrong answers (written without --failures, or every answer right)")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", required=True, help="comma-separated ltm2_recall.py sections of RESULTS.md (written with --failures)")
    ap.add_argument("--section", default=None, help="write the table to this RESULTS.md section")
    args = ap.parse_args()
    names = [x for x in args.sections.split(",") if x]
    if not names:
        raise HashHopError("--sections names no section")
    text = open(RESULTS).read()
    head = "| section | length | task | wrong | " + " | ".join(FIRST_WRONG_STEPS) + " |"
    rows = [head, "|" + "---|" * (4 + len(FIRST_WRONG_STEPS))]
    for name in names:
        for variant, chars, hops, cot, hash_length, prefixes in section_failures(text, name):
            counts = step_counts(hops, cot, hash_length, prefixes)
            task = f"{hops} hops{' CoT' if cot else ''}" + ("" if variant == "trained" else f" ({variant})")
            rows.append(f"| `{name}` | {chars:,} | {task} | {len(prefixes)} | " + " | ".join(str(counts[s]) for s in FIRST_WRONG_STEPS) + " |")
    table = "\n".join(rows)
    print(table)
    if args.section:
        command = "python benchmarks/ltm2_failure_steps.py " + shlex.join(sys.argv[1:])
        intro = (
            "Where LTM-2's wrong HashHop answers first go wrong, read back from recall sections written with `--failures`"
            " (`ltm2_recall.first_wrong_step`: a hash's first byte is a *jump*, its bytes 1-3 an *early copy*, later bytes a"
            " *copy*, the space after a hash that ` = ` follows the *hash end*, the `= ` after it the *separator*). Counts of"
            f" wrong answers per step; each section's own lines hold the rest. Command: `{command}`.\n"
        )
        update_section(args.section, intro + "\n" + table)


if __name__ == "__main__":
    run_script(main)
