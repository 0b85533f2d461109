"""LTM-2 on recall tasks, with its ablations side by side, through the engine (``hashhop/ltm2/engine.py``).

Variants (same network, same prompts): the trained weights; the trained weights with the memory switched off
(local window only: reads return nothing); the untrained network (random init, same seed). Tasks:

* HashHop in Magic's format from the project's generator (characters, 16-character letter hashes): 1-4 hops,
  chain of thought on and off; the answer is right when the bytes up to the closing quote are the expected ones;
* hash lengths 4-64 and alphabets letters / digits / hex / alnum / base64 (1 hop and 2 hops CoT);
* RULER-style needles and variable tracking (``hashhop/task/ruler.py``; RULER's sentence and ``VAR`` form were
  never trained on), scored with RULER's string_match_all on the first line the model writes; beside them our own
  needle questions with an aside between the key and the answer (the key far from the answer, as in RULER's question);
* formats never trained on: ``K => V``, ``<item key="K">V</item>``, ``K<TAB>V`` lines, queried the same way.

Each prompt is continued greedily by the engine; the prefix cache keeps a prompt's prefill for its next query.

Usage: python benchmarks/ltm2_recall.py [--weights PATH] [--lengths 100k,1M] [--queries 20] [--variants ...]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import string
import sys
import time
from collections import Counter

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm2.config import WEIGHTS  # noqa: E402
from hashhop.runners.base import RunnerOptions  # noqa: E402
from hashhop.runners.builtin import LTM2Runner  # noqa: E402
from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.grammar import native_request  # noqa: E402
from hashhop.task.ruler import RulerSpec, make_ruler, score_ruler  # noqa: E402
from hashhop.task.spec import HashHopSpec, parse_size  # noqa: E402

HASHHOP_TASKS = [(1, False), (1, True), (2, True), (2, False), (3, True), (3, False), (4, True), (4, False)]
BASE64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
SHAPES = [  # (label, hash length, alphabet)
    ("4 letters", 4, "letters"),
    ("8 letters", 8, "letters"),
    ("32 letters", 32, "letters"),
    ("64 letters", 64, "letters"),
    ("16 digits", 16, "digits"),
    ("16 hex", 16, "hex"),
    ("16 alnum", 16, "alnum"),
    ("16 base64", 16, BASE64),
]
RULER_TASKS = ["niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "variable_tracking"]
NEW_FORMATS = {
    "K => V": (lambda k, v: f"{k} => {v}", lambda k: f"{k} => "),
    '<item key="K">V</item>': (lambda k, v: f'<item key="{k}">{v}</item>', lambda k: f'<item key="{k}">'),
    "K<TAB>V": (lambda k, v: f"{k}\t{v}", lambda k: f"{k}\t"),
}


def make_variant(name: str, weights: str, index: str = "auto", scan_cap: float | None = None, rescore: int | None = None, top_k: int | None = None) -> LTM2Runner:
    from hashhop.ltm2.engine import Engine
    from hashhop.ltm2.load import load_ltm2

    runner = LTM2Runner(weights, RunnerOptions())
    if name == "memory off":
        runner.engine.net.memory_enabled = False
    elif name == "random init":
        runner.engine = Engine(load_ltm2(weights, random_init=True))
    elif name == "no length gain" or name.startswith("bonus x"):
        # the pointer's bonus without its growth past the training rows (pointer_length_ref); "bonus xF", a diagnostic:
        # instead the trained bonus times F at every length
        for block in runner.engine.net.blocks:
            block.read.pointer_length_ref = 0
        if name != "no length gain":
            try:
                runner.engine.pointer_bonus_scale = float(name[len("bonus x") :])
            except ValueError:
                raise HashHopError(f"variant {name!r}: bonus x takes a number, e.g. 'bonus x2'") from None
    elif name.startswith("no read in block "):  # a diagnostic: the trained weights with that block's memory read skipped
        try:
            block = int(name[len("no read in block ") :])
        except ValueError:
            block = -1
        if not 0 <= block < len(runner.engine.net.blocks):
            raise HashHopError(f"variant {name!r}: name a block from 0 to {len(runner.engine.net.blocks) - 1}")
        runner.engine.reads_off = frozenset({block})
    elif name.startswith("beam "):  # the trained weights, answers by a beam search of that width, not greedy; "beam N
        # per byte": outputs compared by their log-probability per byte (Engine.length_penalty 1), not summed
        width, _, per = name[len("beam ") :].partition(" ")
        if per not in ("", "per byte"):
            raise HashHopError(f"variant {name!r}: use 'beam N' or 'beam N per byte', e.g. 'beam 4 per byte'")
        try:
            runner.engine.beams = int(width)
        except ValueError:
            raise HashHopError(f"variant {name!r}: beam takes a whole number >= 1, e.g. 'beam 4'") from None
        runner.engine.length_penalty = 1.0 if per else 0.0
    elif name != "trained":
        raise HashHopError(f"unknown variant {name!r}: use trained, memory off, random init, no length gain, bonus xF, beam N, beam N per byte or no read in block B")
    runner.engine.index = index  # "auto": flat 8-bit keys below 512K bytes, the compact inverted lists from there
    if scan_cap is not None:  # compact lists: codes a read scans at most, in lists' worth (the engine's SCAN_CAP_LISTS)
        runner.engine.scan_cap_lists = scan_cap
    runner.engine.rescore = rescore  # a read's best this many entries scored again with exact keys (None: the engine's default)
    if top_k:  # entries a read keeps per head (the engine's default: the k the network was trained with)
        runner.engine.top_k = top_k
    return runner


def continue_prompt(runner: LTM2Runner, prompt: str) -> None:
    data = prompt.encode()
    if runner.engine.context_reach is not None:  # memory off: the same output from the bytes it can see, no 10M prefill
        data = data[-runner.engine.context_reach :]
    runner.continue_text(data)


def complete(runner: LTM2Runner, prompt: str, max_bytes: int, stops: tuple[bytes, ...]) -> str:
    continue_prompt(runner, prompt)
    return runner.engine.generate(max_bytes, stops).decode("utf-8", errors="replace")


def first_wrong_logprobs(runner: LTM2Runner, prompt: str, right: str, written: str, at: int) -> list[float] | None:
    """The network's log-probabilities of the right byte and of the one written at an answer's first wrong byte
    (``at``: how many bytes were right), given the prompt and the right bytes before it: how near a tie the first
    wrong byte was. None where nothing was written there."""
    if at >= len(written) or at >= len(right):
        return None
    continue_prompt(runner, prompt + right[:at])
    logprobs = torch.log_softmax(runner.engine.logits.float(), -1)
    return [round(float(logprobs[right.encode()[at]]), 2), round(float(logprobs[written.encode()[at]]), 2)]


def memory_note(runner: LTM2Runner) -> str:
    """The memory the engine kept for its last prompt: the key index and bytes per context byte. The engine's "auto"
    picks by the prefilled length (IVF_MIN_BYTES, 512K bytes)."""
    memory = runner.engine.memory
    kind = "product-quantised keys in inverted lists" if memory.compact else "8-bit keys in inverted lists" if memory.quantizers else "8-bit keys, flat scan"
    return f"{kind}, {runner.engine.bytes_per_context_byte():.0f} B per context byte"


def hashhop_rows(
    runners: dict, length: int, tasks, hash_length: int, alphabet, queries: int, seed: int, failures: list | None = None, memory: dict | None = None
) -> dict:
    """(hops, cot) -> {variant: (right, asked)}; each wrong answer goes to ``failures`` (when given) with how many of
    its first bytes were right and whether its first hash was; ``memory`` (when given) gets each variant's
    :func:`memory_note` (variants with the memory on)."""
    out = {}
    for hops, cot in tasks:
        problem = plan(
            HashHopSpec(
                context_tokens=length, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=hash_length,
                alphabet=alphabet, num_queries=queries, seed=seed,
            )
        )
        cell = {}
        for name, runner in runners.items():
            right = 0
            for chain in problem.queries:
                expected = chain.answer(cot)
                got = complete(runner, native_request(problem.prompt, hops, cot, chain.query), len(expected) + 2, (b"'", b"\n"))
                right += got == expected + "'"
                if failures is not None and got != expected + "'":
                    prefix = next((i for i, (a, b) in enumerate(zip(got, expected + "'")) if a != b), min(len(got), len(expected) + 1))
                    failures.append(
                        {"variant": name, "context_chars": length, "hops": hops, "cot": cot, "hash_length": hash_length, "alphabet": alphabet,
                         "query": chain.query, "expected": expected, "got": got, "right_prefix_bytes": prefix,
                         "first_hash_right": got.startswith(chain.hashes[1 if cot or hops == 1 else -1]),
                         "first_hash_from": first_hash_source(problem.prompt, got, hash_length),
                         "first_wrong_logprobs": first_wrong_logprobs(runner, native_request(problem.prompt, hops, cot, chain.query), expected + "'", got, prefix)}
                    )
            cell[name] = (right, len(problem.queries))
            if memory is not None and runner.engine.context_reach is None:
                memory[name] = memory_note(runner)
        out[(hops, cot)] = cell
    return out


def first_hash_source(prompt: str, got: str, hash_length: int) -> str:
    """Where the first hash an answer wrote stands in the prompt: the value of a quoted link (a chain's last link,
    ``K = 'V'``: its text before the value ends ``= '`` as the query does), of an unquoted link (``K = V``, the links
    before the last), or not as any link's value. A diagnostic of wrong answers, not used to score."""
    head = got[:hash_length]
    if len(head) < hash_length:
        return "short"
    if f" = '{head}'" in prompt:
        return "quoted link"
    if f" = {head}\n" in prompt:
        return "unquoted link"
    return "no link"


FIRST_WRONG_STEPS = ("jump", "early copy", "copy", "hash end", "separator", "closing quote")


def first_wrong_step(hops: int, cot: bool, hash_length: int, right_prefix_bytes: int) -> str:
    """Which step of a HashHop answer (``H2 = H3 = ... = Hk+1'`` with chain of thought, else ``Hk+1'``) its first
    wrong byte is, from the count of right bytes before it: a hash's first byte (a *jump* to a link), its bytes 1-3
    (*early copy*: the copy out of the link before the pointer holds it) or later (*copy*), the space right after a
    hash that ` = ` follows (*hash end*: the link the hash was copied from holds a newline there), the ``= `` after that
    space (*separator*), or the closing quote."""
    hashes = hops if cot else 1
    step, at = divmod(right_prefix_bytes, hash_length + 3)
    if step >= hashes or (step == hashes - 1 and at >= hash_length):
        return "closing quote"
    if at == 0:
        return "jump"
    if at < hash_length:
        return "early copy" if at <= 3 else "copy"
    return "hash end" if at == hash_length else "separator"


def step_counts(hops: int, cot: bool, hash_length: int, right_prefix_bytes: list[int]) -> dict[str, int]:
    """:func:`first_wrong_step` counted over wrong answers, every step named (0 where none)."""
    counted = Counter(first_wrong_step(hops, cot, hash_length, prefix) for prefix in right_prefix_bytes)
    return {step: counted[step] for step in FIRST_WRONG_STEPS}


def ruler_rows(runners: dict, length: int, samples: int, seed: int) -> dict:
    out = {}
    for task in RULER_TASKS:
        cell = {}
        specs = [RulerSpec(task=task, context_chars=length, seed=seed + i) for i in range(samples)]
        made = [make_ruler(spec) for spec in specs]
        for name, runner in runners.items():
            right = sum(score_ruler(s, complete(runner, s.prompt, 120, (b"\n",))) == 1.0 for s in made)
            cell[name] = (right, samples)
        out[task] = cell
    return out


def aside_rows(runners: dict, length: int, samples: int, seed: int) -> dict:
    """Our needle questions with an aside between the key and the answer (``hashhop.ltm2.data.NEEDLE_ASIDES``; in
    training only with ``--needle-far-keys``), one question a prompt: the key 15-50 bytes before the answer, as in
    RULER's question, in our own templates. Right when the answer starts with the needle's value."""
    from hashhop.ltm2.data import NEEDLE_TEMPLATES, build_needle, needle_question

    prompts = []
    for i in range(samples):
        built = build_needle(seed + i, length, None, far_keys=1.0)
        text = b"".join(piece for piece, _ in built.parts).decode("ascii")
        key, value = built.meta["asked"][0]
        asked = needle_question(NEEDLE_TEMPLATES[built.meta["template"]][1], built.meta["aside"], built.meta["lead"]).format(key=key)
        prompts.append((text[: text.index(asked) + len(asked)], built.meta["lead"] + value))
    cell = {}
    for name, runner in runners.items():
        right = sum(complete(runner, prompt, len(want) + 1, (b"\n",)).startswith(want) for prompt, want in prompts)
        cell[name] = (right, samples)
    return {"needle question with an aside (ours)": cell}


def new_format_rows(runners: dict, length: int, queries: int, seed: int) -> dict:
    """Key-value lines in layouts the mixture never had, then a query line in the same layout."""
    rng = random.Random(seed)
    out = {}
    for label, (line, ask) in NEW_FORMATS.items():
        pairs, size = [], 0
        while size < length - 200:
            k = "".join(rng.choices(string.ascii_letters, k=12))
            v = "".join(rng.choices(string.ascii_letters, k=12))
            pairs.append((k, v))
            size += len(line(k, v)) + 1
        body = "\n".join(line(k, v) for k, v in pairs) + "\n\n"
        asked = rng.sample(pairs, min(queries, len(pairs)))
        cell = {}
        for name, runner in runners.items():
            right = sum(complete(runner, body + ask(k), len(v) + 1, (b"\n", b"<")).startswith(v) for k, v in asked)
            cell[name] = (right, len(asked))
        out[label] = cell
    return out


def table(title: str, rows: dict, variants: list[str], label) -> str:
    lines = [f"**{title}**", "", "| task | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for key, cell in rows.items():
        lines.append(f"| {label(key)} | " + " | ".join(f"{cell[v][0]}/{cell[v][1]}" for v in variants) + " |")
    return "\n".join(lines) + "\n"


def hashhop_title(length: int, memory: dict) -> str:
    notes = "; ".join(f"{name}: {note}" for name, note in memory.items())
    return f"HashHop, Magic's format, {length:,} characters (16-letter hashes{'; memory ' + notes if notes else ''})"


def hop_label(key) -> str:
    hops, cot = key
    return f"{hops} hop{'s' if hops > 1 else ''}{' CoT' if cot else ''}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS, help="LTM-2 weights (a file from hashhop train --model ltm2, or a lab run folder)")
    ap.add_argument("--lengths", default="10k,100k", help="HashHop context lengths in characters (every task; '' for none)")
    ap.add_argument("--long-lengths", default="1M", help="longer HashHop contexts (the tasks of --long-tasks only)")
    ap.add_argument("--long-tasks", default="1,2cot", help="the tasks at --long-lengths (comma-separated): 1 (1 hop), 2cot (2 hops CoT), 3cot (3 hops CoT)")
    ap.add_argument("--queries", type=int, default=20, help="queries per HashHop problem")
    ap.add_argument("--shapes-length", default="100k", help="context length of the hash length / alphabet rows")
    ap.add_argument("--ruler-lengths", default="100k", help="RULER-style context lengths")
    ap.add_argument("--ruler-samples", type=int, default=10)
    ap.add_argument(
        "--variants", default="trained,memory off,random init",
        help="for the HashHop rows: trained, memory off, random init, no length gain, bonus xF (diagnostic), beam N (beam search of width N), no read in block B (diagnostic)",
    )
    ap.add_argument("--other-variants", default="trained,memory off", help="for the other rows")
    ap.add_argument("--shapes", default="", help="the hash-shape rows to run, by label, comma-separated (e.g. '4 letters,16 hex'; default: all)")
    ap.add_argument("--skip", default="", help="sections to skip: hashhop,shapes,ruler,asides,formats (asides: the needle-with-aside row of the RULER tables)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--section", default="ltm2_recall", help="RESULTS.md section to write ('' for none)")
    ap.add_argument("--index", choices=("auto", "flat", "ivf"), default="auto", help="the engine's key index (flat: every entry scored, a diagnostic at 1M+)")
    ap.add_argument("--scan-cap", type=float, default=None, help="compact index: a read scans at most this many lists' worth of codes (default: the engine's)")
    ap.add_argument("--top-k", type=int, default=None, help="entries a read keeps per head (default: the k the weights were trained with)")
    ap.add_argument(
        "--rescore", type=int, default=None,
        help="a read's best this many entries (by the index's scores) scored again with exact keys recomputed from the text (default: the engine's, all of a read's entries on the compact memory, none on 8-bit keys; 0: none)",
    )
    ap.add_argument("--failures", default="", help="write every wrong HashHop answer to this JSON-lines file (what it wrote, how far it was right)")
    args = ap.parse_args()
    failures = [] if args.failures else None
    folder = os.path.dirname(os.path.abspath(args.failures)) if args.failures else None
    if folder and not os.path.isdir(folder):  # before the run, not after it
        ap.error(f"--failures {args.failures}: no folder {folder}")
    long_tasks = {"1": (1, False), "2cot": (2, True), "3cot": (3, True)}
    picked = [t.strip() for t in args.long_tasks.split(",") if t.strip()]
    if not picked or any(t not in long_tasks for t in picked):
        ap.error(f"--long-tasks takes 1, 2cot and 3cot (comma-separated), got {args.long_tasks!r}")
    long_tasks = [long_tasks[t] for t in dict.fromkeys(picked)]
    shape_labels = [label for label, _, _ in SHAPES]
    wanted = [t.strip() for t in args.shapes.split(",") if t.strip()]
    if any(t not in shape_labels for t in wanted):
        ap.error(f"--shapes takes labels among {', '.join(shape_labels)} (comma-separated), got {args.shapes!r}")
    shapes = [shape for shape in SHAPES if not wanted or shape[0] in wanted]
    variants = [v.strip() for v in args.variants.split(",")]
    others = [v.strip() for v in args.other_variants.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    if args.scan_cap is not None and not 0 < args.scan_cap < float("inf"):
        raise HashHopError(f"--scan-cap must be positive, got {args.scan_cap}")
    if args.rescore is not None and args.rescore < 0:
        raise HashHopError(f"--rescore must be >= 0, got {args.rescore}")
    if args.top_k is not None and args.top_k < 1:
        raise HashHopError(f"--top-k must be >= 1, got {args.top_k}")
    all_runners = {name: make_variant(name, args.weights, args.index, args.scan_cap, args.rescore, args.top_k) for name in dict.fromkeys(variants + others)}
    top_k = next(iter(all_runners.values())).engine.top_k
    runners = {name: all_runners[name] for name in variants}
    other_runners = {name: all_runners[name] for name in others}
    started = time.perf_counter()
    parts = []
    if "hashhop" not in skip:
        for length in (parse_size(x) for x in filter(None, args.lengths.split(","))):
            t0 = time.perf_counter()
            memory = {}
            rows = hashhop_rows(runners, length, HASHHOP_TASKS, 16, "letters", args.queries, args.seed, failures, memory)
            parts.append(table(hashhop_title(length, memory), rows, variants, hop_label))
            print(parts[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
        for length in (parse_size(x) for x in filter(None, args.long_lengths.split(","))):
            t0 = time.perf_counter()
            memory = {}
            rows = hashhop_rows(runners, length, long_tasks, 16, "letters", args.queries, args.seed, failures, memory)
            parts.append(table(hashhop_title(length, memory), rows, variants, hop_label))
            print(parts[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if "shapes" not in skip:
        length = parse_size(args.shapes_length)
        rows, memory = {}, {}
        for label, hash_length, alphabet in shapes:
            got = hashhop_rows(other_runners, length, [(1, False), (2, True)], hash_length, alphabet, args.queries, args.seed, failures, memory)
            rows[f"{label}, 1 hop"] = got[(1, False)]
            rows[f"{label}, 2 hops CoT"] = got[(2, True)]
        notes = "; ".join(f"{name}: {note}" for name, note in memory.items())
        parts.append(table(f"Hash lengths and alphabets, {length:,} characters{' (memory ' + notes + ')' if notes else ''}", rows, others, str))
        print(parts[-1], flush=True)
    if "ruler" not in skip:
        for length in (parse_size(x) for x in args.ruler_lengths.split(",")):
            rows = ruler_rows(other_runners, length, args.ruler_samples, args.seed)
            if "asides" not in skip:
                rows.update(aside_rows(other_runners, length, args.ruler_samples, args.seed))
            parts.append(table(f"RULER-style tasks, {length:,} characters (string_match_all)", rows, others, str))
            print(parts[-1], flush=True)
    if "formats" not in skip:
        length = parse_size(args.shapes_length)
        rows = new_format_rows(other_runners, length, args.queries, args.seed)
        parts.append(table(f"Key-value layouts never trained on, {length:,} characters (12-letter keys and values)", rows, others, str))
        print(parts[-1], flush=True)
    elapsed = time.perf_counter() - started
    if failures is not None:
        import json

        from hashhop.checkpoint import write_atomically

        write_atomically(args.failures, "".join(json.dumps(f) + "\n" for f in failures))
        summary = []
        for key in sorted({(f["variant"], f["context_chars"], f["hops"], f["cot"], f["hash_length"], f["alphabet"]) for f in failures}):
            wrong = [f for f in failures if (f["variant"], f["context_chars"], f["hops"], f["cot"], f["hash_length"], f["alphabet"]) == key]
            summary.append(
                f"- {key[0]}, {key[1]:,} chars, {key[2]} hops{' CoT' if key[3] else ''}, {key[4]} {key[5]}: {len(wrong)} wrong; first hash "
                f"right in {sum(f['first_hash_right'] for f in wrong)}; right bytes before the first wrong one: "
                f"{', '.join(str(f['right_prefix_bytes']) for f in wrong)}; wrong first hashes by where they stand: "
                + (", ".join(f"{where} {n}" for where, n in sorted(Counter(f["first_hash_from"] for f in wrong if not f["first_hash_right"]).items())) or "none")
                + "; first wrong byte at a step: "
                + ", ".join(f"{step} {n}" for step, n in step_counts(key[2], key[3], key[4], [f["right_prefix_bytes"] for f in wrong]).items() if n)
                + "; log-probabilities there, right byte / written byte: "
                + ", ".join("-" if f.get("first_wrong_logprobs") is None else "{:.2f} / {:.2f}".format(*f["first_wrong_logprobs"]) for f in wrong)
            )
        parts.append(
            "**Wrong answers** (all of them in the `--failures` file). Where a wrong first hash stands in the prompt: the value"
            " of a *quoted link* (a chain's last link, `K = 'V'`, whose text before the value ends `= '` as the query does),"
            " of an *unquoted link* (`K = V`), or of *no link*. The step of the answer its first wrong byte is"
            " (`first_wrong_step`): a hash's first byte (*jump*), its bytes 1-3 (*early copy*) or later (*copy*), the space"
            " after a hash that ` = ` follows (*hash end*), the `= ` after it (*separator*), the closing quote. At that byte, the"
            " network's log-probabilities of the right byte and of the one written, given the prompt and the right bytes"
            " before it (`first_wrong_logprobs`: how near a tie it was).\n\n" + "\n".join(summary)
        )
        print(parts[-1], flush=True)
    if args.section:
        command = "python benchmarks/ltm2_recall.py " + shlex.join(sys.argv[1:])
        intro = (
            f"LTM-2 (byte-level LM, learnt memory; hashhop/ltm2) on recall tasks through its engine (top-{top_k} reads per "
            + (
                "head; the engine's default index: 8-bit keys in a flat faiss index below 524,288 prefilled bytes, product-quantised"
                " keys in inverted lists from there; each table says which memory each variant kept)"
                if args.index == "auto"
                else f"head; every context through the {'flat 8-bit' if args.index == 'flat' else 'compact inverted-list'} index)"
            )
            + (f"; a read scans at most {args.scan_cap:g} lists' worth of codes" if args.scan_cap is not None else "")
            + (
                f"; on the compact memory each read's {top_k} entries scored again with exact keys recomputed from the text (the engine's default)"
                if args.rescore is None
                else f"; a read's best {args.rescore} entries scored again with exact keys recomputed from the text"
                if args.rescore
                else "; no rescoring (every read scored by the index's codes)"
            )
            + ". Same prompts for every variant: trained weights; the trained weights with the memory switched off "
            "(local window only); "
            "the untrained network"
            + (
                "; *beam N*: the trained weights answering by a beam search of width N (the answer of highest log-probability"
                " among the N the search keeps at each byte), the other variants greedily"
                if any(v.startswith("beam ") for v in variants + others)
                else ""
            )
            + f". Command: `{command.strip()}` "
            f"({elapsed:.0f} s).\n"
        )
        update_section(args.section, intro + "\n" + "\n".join(parts))


if __name__ == "__main__":
    run_script(main)
