"""Where LTM-2's reads go at the jumps of a chain-of-thought HashHop answer, per block and head.

A CoT answer ``H2 = H3 = ... = Hk+1`` jumps after each ``= `` it writes: the next hash is the value of the link
that starts with the hash just written (``H2 = H3`` in the middle of a chain, ``Hk = 'Hk+1'`` at its end, a quote
the answer does not write). Each answer here is given (teacher-forced) up to a jump's ``= ``; the engine's decode
step at that space is traced, and for every block and head of the network the table gives how much of the read's
weight lands on the link's separator (the entries from the hash's last byte to the quote: each one's value holds
the next hash), how often the heaviest entry is there, and the median margin of the read's logits (the best entry
there minus the best elsewhere, the sink included; negative: another entry outranks the link). Beside them: how
often the greedy next byte is the next hash's first byte. The same engine and defaults as every other row.

A second kind of row traces the step before: the answer given up to the end of a hash it copied (``H2`` of ``H2 =
H3``), where the next byte is the space of `` = ``. There the link that hash starts is the one to read (the same
separator span: its first entry's value is `` = H3``), while the link it was copied from (``H1 = H2``) ends with a
newline: the row adds the share of the read on that link's last two entries (its hash's last byte and the newline,
where a pointer that kept copying lands) and counts the greedy bytes that are a newline.

With ``--copy-bytes N`` a third kind of row traces the first N bytes of the answer's first hash (``H2``, the value of
the question's own link ``H1 = H2``, which lacks the question's quote): the answer given up to byte j of it, the
step that writes byte j. The right entries there are the ones before that byte wherever ``H2`` stands (in ``H1 = H2``
and at the start of ``H2 = H3``: each one's value holds the byte); beside them the share of the read on the entries
laid out as the question is, the end of ``= '`` plus the j bytes written so far in some other (quoted) link, the
near matches a long memory holds by the thousand for a copy's first bytes.

Usage: python benchmarks/ltm2_jump_reads.py [--lengths 1M,10M] [--hops 2,3] [--queries 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402
from ltm2_recall import make_variant, memory_note  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.grammar import native_request  # noqa: E402
from hashhop.task.spec import HashHopSpec, parse_size  # noqa: E402

HASH_LENGTH = 16


def link_span(prompt: str, key: str) -> tuple[int, int]:
    """[first, end) of the entries of the link ``key = ...`` from the key's last byte to the byte before its value
    (the space after ``=``, or the quote of a chain's last link)."""
    at = prompt.find("\n" + key + " = ") + 1 if not prompt.startswith(key + " = ") else 0
    if at <= 0 and not prompt.startswith(key + " = "):
        raise HashHopError(f"no link starts with {key!r} in the prompt")
    end = at + len(key) + 3 + (prompt[at + len(key) + 3] == "'")
    return at + len(key) - 1, end


def copied_from(prompt: str, value: str) -> tuple[int, int]:
    """[first, end) of the last two entries of the link whose value is ``value`` (its last byte and the byte after)."""
    at = prompt.find(" = " + value)
    if at < 0:
        at = prompt.find(" = '" + value)
        if at < 0:
            raise HashHopError(f"no link has the value {value!r} in the prompt")
        at += 1
    last = at + 3 + len(value) - 1
    return last, last + 2


def read_weights(logits: np.ndarray, sink: float, on: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """One head's read: the softmax weights of its entries then the sink, whether the heaviest is one of ``on``, and
    the margin (the best logit on ``on`` minus the best elsewhere, the sink included)."""
    row = np.append(logits, sink)
    weights = np.exp(row - row.max())
    weights /= weights.sum()
    best_on = logits[on].max() if on.any() else -np.inf
    best_off = max(logits[~on].max() if (~on).any() else -np.inf, sink)
    heaviest = int(np.argmax(row))
    return weights, heaviest < len(on) and bool(on[heaviest]), best_on - best_off


def hash_starts(prompt: str, value: str) -> list[int]:
    """Where ``value`` starts as a link's value (after ``= `` or ``= '``) or as a line's first word (a link's key)."""
    starts = []
    for before in (" = ", " = '", "\n"):
        at = prompt.find(before + value)
        while at >= 0:
            starts.append(at + len(before))
            at = prompt.find(before + value, at + 1)
    if prompt.startswith(value + " = "):
        starts.append(0)
    return starts


def quote_ends(text: np.ndarray) -> np.ndarray:
    """The positions of every ``'`` that follows ``= `` in ``text`` (bytes): where a quoted link's value starts, less one."""
    return np.flatnonzero((text[2:] == ord("'")) & (text[1:-1] == ord(" ")) & (text[:-2] == ord("="))) + 2


def question_shaped(quotes: np.ndarray, text: np.ndarray, written: bytes) -> np.ndarray:
    """The entries laid out as a question that wrote ``written`` after its quote: ``quotes`` the positions of every
    ``'`` that follows ``= `` in ``text`` (the prompt's bytes); those followed by ``written``, at its last byte."""
    keep = quotes[quotes + len(written) < len(text)]
    for i, byte in enumerate(written):
        keep = keep[text[keep + 1 + i] == byte]
    return keep + len(written)


def jump_reads(runner, length: int, hops: int, queries: int, seed: int, copy_bytes: int = 0) -> dict:
    """{row label: {"right": n, "asked": n, "newline": n, "wrong": [...], (block, head): [(weight on the right entries,
    heaviest there, margin, weight on the link the hash was copied from (at a hash end) or on the question-shaped
    entries (at a first hash's byte; NaN at a jump)), ...]}}; "wrong": per step whose greedy byte is wrong, its
    (block, head) -> (weight on the right entries, on the question-shaped ones)."""
    problem = plan(
        HashHopSpec(context_tokens=length, tokenizer="chars", hops=hops, chain_of_thought=True, hash_length=HASH_LENGTH, num_queries=queries, seed=seed)
    )
    engine, out = runner.engine, {}
    text = np.frombuffer(problem.prompt.encode(), dtype=np.uint8)
    quotes = quote_ends(text)
    for chain in problem.queries:
        request = native_request(problem.prompt, hops, True, chain.query)
        first = chain.hashes[1]
        for j in range(min(copy_bytes, len(first))):
            runner.continue_text((request + first[: j - 1] if j else request[:-1]).encode())
            engine.read_trace = []
            try:
                logits = engine.step(ord(first[j - 1]) if j else ord(request[-1]))
                trace = engine.read_trace
            finally:
                engine.read_trace = None
            right_ids = np.array([start + j - 1 for start in hash_starts(problem.prompt, first)])
            shaped = question_shaped(quotes, text, first[:j].encode())
            cell = out.setdefault(f"first hash, byte {j}", {"right": 0, "asked": 0, "newline": 0, "wrong": []})
            cell["asked"] += 1
            good = int(logits.argmax()) == ord(first[j])
            cell["right"] += good
            wrong = {}
            for block, ids, read_logits, sink in trace:
                for head in range(len(ids)):
                    on, near = np.isin(ids[head], right_ids), np.isin(ids[head], shaped) & ~np.isin(ids[head], right_ids)
                    weights, heaviest_on, margin = read_weights(read_logits[head], sink[head], on)
                    share_on, share_near = float(weights[:-1][on].sum()), float(weights[:-1][near].sum())
                    cell.setdefault((block, head), []).append((share_on, heaviest_on, margin, share_near))
                    wrong[(block, head)] = (share_on, share_near)
            if not good:
                cell["wrong"].append(wrong)
        # at each jump (after writing H(m+1) = , the link H(m+1) = H(m+2), quoted when it is the last), and a step
        # before, at the end of the copied hash H(m+1) (the same link to read; the space of ` = ` to write)
        for m, at_jump in [(m, j) for m in range(1, hops) for j in (False, True)]:
            which = "last link (quoted)" if m == hops - 1 else "middle link"
            label = which if at_jump else f"end of the copied hash, {which} next"
            given = " = ".join(chain.hashes[1 : m + 1]) + (" = " if at_jump else "")
            runner.continue_text((request + given[:-1]).encode())
            engine.read_trace = []
            try:
                logits = engine.step(ord(given[-1]))
                trace = engine.read_trace
            finally:
                engine.read_trace = None
            first, end = link_span(problem.prompt, chain.hashes[m])
            source = None if at_jump else copied_from(problem.prompt, chain.hashes[m])
            cell = out.setdefault(label, {"right": 0, "asked": 0, "newline": 0})
            cell["asked"] += 1
            cell["right"] += int(logits.argmax()) == (ord(chain.hashes[m + 1][0]) if at_jump else ord(" "))
            cell["newline"] += int(logits.argmax()) == ord("\n")
            for block, ids, read_logits, sink in trace:
                for head in range(len(ids)):
                    on = (ids[head] >= first) & (ids[head] < end)
                    weights, heaviest_on, margin = read_weights(read_logits[head], sink[head], on)
                    there = np.nan if source is None else float(weights[:-1][(ids[head] >= source[0]) & (ids[head] < source[1])].sum())
                    cell.setdefault((block, head), []).append((float(weights[:-1][on].sum()), heaviest_on, margin, there))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--lengths", default="1M,10M", help="context lengths in characters")
    ap.add_argument("--hops", default="2,3", help="chain lengths (CoT answers; each jump after the first hash is traced)")
    ap.add_argument("--queries", type=int, default=30, help="chains asked per prompt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--copy-bytes", type=int, default=0, help="also trace the steps that write the first hash's first N bytes (0: none)")
    ap.add_argument("--rescore", type=int, default=None, help="the engine's rescore setting (default: the engine's)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--section", default="ltm2_jump_reads", help="RESULTS.md section to write ('' for none)")
    args = ap.parse_args()
    try:
        lengths = [parse_size(x) for x in args.lengths.split(",") if x.strip()]
        hops = [int(x) for x in args.hops.split(",") if x.strip()]
    except ValueError as e:
        raise HashHopError(f"--lengths / --hops: {e}") from None
    if args.copy_bytes < 0 or args.copy_bytes > HASH_LENGTH:
        raise HashHopError(f"--copy-bytes must be a whole number from 0 to {HASH_LENGTH} (the hash length), got {args.copy_bytes}")
    if not lengths or not hops or any(h < 2 for h in hops) or args.queries < 1:
        raise HashHopError("give at least one length, hop counts >= 2 (a 1-hop answer makes no jump after its first hash) and --queries >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    runner = make_variant("trained", args.weights, rescore=args.rescore)
    heads = [(b, h) for b in range(len(runner.engine.net.blocks)) for h in range(runner.engine.cfg.memory_heads)]
    header = (
        "| context chars | hops | step | next byte right (newlines) | "
        + " | ".join(f"block {b} head {h}: weight on the link; heaviest there; median margin; weight on the link copied from" for b, h in heads)
        + " |\n|"
        + "---|" * (4 + len(heads))
    )
    rows, notes, memory = [], [], ""
    for length in lengths:
        for hop in hops:
            cells = jump_reads(runner, length, hop, args.queries, args.seed, args.copy_bytes)
            memory = memory_note(runner)
            for label, cell in cells.items():
                parts = []
                for key in heads:
                    got = cell.get(key, [])
                    if not got:
                        parts.append("-")
                        continue
                    weights, heaviest, margins, there = zip(*got)
                    source = "-" if np.isnan(there).all() else f"{np.mean(there):.2f}"
                    parts.append(f"{np.mean(weights):.2f}; {sum(heaviest)}/{len(got)}; {np.median(margins):+.1f}; {source}")
                row = f"| {length:,} | {hop} | {label} | {cell['right']}/{cell['asked']} ({cell['newline']}) | " + " | ".join(parts) + " |"
                rows.append(row)
                print(row, flush=True)
                for wrong in cell.get("wrong", []):
                    notes.append(
                        f"- {length:,}, {hop} hops, {label}: greedy byte wrong; weight on the right entries / on the question-shaped ones, per block and head: "
                        + ", ".join(f"{b}.{h} {wrong[(b, h)][0]:.2f} / {wrong[(b, h)][1]:.2f}" for b, h in heads if (b, h) in wrong)
                    )
                    print(notes[-1], flush=True)
    table = header + "\n" + "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "")
    if args.section:
        command = "python benchmarks/ltm2_jump_reads.py " + shlex.join(sys.argv[1:])
        intro = (
            "LTM-2's reads at the jumps of CoT HashHop answers given up to each jump's `= ` (Magic's format, prompts of seed"
            f" {args.seed}, {args.queries} chains a prompt), traced in the engine's decode step ({memory} at the last length)."
            " Per block and head: the mean share of the read's weight on the link's separator (the entries from the hash's"
            " last byte to the quote), how often the heaviest entry is there, and the median margin in logits (the best"
            " entry there minus the best elsewhere, the sink included), and at the end of a copied hash the share on the"
            " last two entries of the link it was copied from (its last byte and newline). Next byte right: the greedy byte"
            " is the next hash's first (at a jump) or the space of ` = ` (at the end of a copied hash); in brackets how many"
            f" greedy bytes were a newline."
            + (
                f" Rows *first hash, byte j* (`--copy-bytes {args.copy_bytes}`): the answer given up to byte j of its first hash,"
                " the step that writes it; the right entries are those before that byte wherever the hash stands (the question's"
                " link `H1 = H2`, which lacks the question's quote, and the start of `H2 = H3`), the last slot the share on the"
                " *question-shaped* entries (the end of `= '` and the j bytes written so far in another link: a quoted link"
                " whose value starts the same way); the list under the table gives those shares for each step whose greedy"
                " byte is wrong. Byte 0 is the first jump."
                if args.copy_bytes
                else ""
            )
            + f" Command: `{command.strip()}` ({time.perf_counter() - started:.0f} s).\n"
        )
        update_section(args.section, intro + "\n" + table)


if __name__ == "__main__":
    run_script(main)
