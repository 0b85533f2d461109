"""The grid of an evaluation and its requests: cells (length x hops x chain of thought), samples sized
in the model's tokenizer, one :class:`Item` per query with a stable id, and the dry run's cost table.

Every request has a stable id (``L<length>-h<hops>-<cot|skip>-s<sample>-q<query>``); chain of thought
on and off see the same prompts (a paired comparison).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from hashhop.errors import HashHopError
from hashhop.eval.templates import Template
from hashhop.runners.base import Request, Runner
from hashhop.task.generator import plan
from hashhop.task.grammar import answer_line
from hashhop.task.keyed import derive_keys
from hashhop.task.sample import Chain, Sample
from hashhop.task.spec import HashHopSpec
from hashhop.task.tokens import get_tokenizer

OVERFLOW_POLICIES = ("error", "skip", "shrink")
CHAT_OVERHEAD_TOKENS = 32  # role markers and special tokens a chat template adds around the text


@dataclass(frozen=True)
class Grid:
    lengths: tuple[int, ...] = (1000, 4000)
    hops: tuple[int, ...] = (1, 2)
    cot: tuple[bool, ...] = (False, True)
    samples: int = 2
    queries: int = 2
    hash_length: int = 16
    alphabet: str = "letters"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lengths", "hops", "cot"):
            if not isinstance(getattr(self, name), tuple) or not getattr(self, name):
                raise HashHopError(f"grid {name} needs at least one value")
        for name in ("samples", "queries", "hash_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
                raise HashHopError(f"grid {name.replace('_', ' ')} must be a whole number from 1 to 1,000,000, got {value!r}")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hops):
            raise HashHopError(f"grid hops (--hops) must be whole numbers >= 1, got {', '.join(map(str, self.hops))}")
        if any(not isinstance(c, bool) for c in self.cot):
            raise HashHopError("grid cot values are True or False")
        for name in ("lengths", "hops", "cot"):  # a value given twice (--lengths 1k,1000): two requests, one id; keep the first
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))
        for length in self.lengths:  # every cell's spec checks itself (sizes, hops, alphabet, seed) before any work
            for hops in self.hops:
                HashHopSpec(context_tokens=length, hops=hops, hash_length=self.hash_length,
                            alphabet=self.alphabet, num_queries=self.queries, seed=self.seed)

    def cells(self) -> list[tuple[int, int, bool]]:
        return [(length, hops, cot) for length in self.lengths for hops in self.hops for cot in self.cot]

    def sample_seed(self, length: int, hops: int, sample: int) -> int:
        # Chain of thought is left out on purpose: both settings see the same prompts (a paired comparison).
        return derive_keys(self.seed, f"L{length}-h{hops}-s{sample}", 1)[0] >> 1


@dataclass
class Item:
    """One request of the grid, with everything needed to score and record its answer."""

    id: str
    length: int  # asked
    hops: int
    cot: bool
    sample_index: int
    query_index: int
    seed: int
    sample: Sample | None
    chain: Chain | None
    request: Request | None
    prompt_tokens: int
    request_tokens: int
    status: str = "todo"  # todo | skipped
    note: str = ""

    @property
    def fingerprint(self) -> str:
        """What makes two runs' answers to this id comparable: the problem and its sizing."""
        key = json.dumps([self.seed, self.prompt_tokens, self.chain.hashes if self.chain else None, self.status])
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def item_id(length: int, hops: int, cot: bool, sample: int, query: int) -> str:
    return f"L{length}-h{hops}-{'cot' if cot else 'skip'}-s{sample}-q{query}"


def build_items(
    grid: Grid, runner: Runner, template: Template, overflow: str = "error", max_answer_tokens: int | None = None
) -> list[Item]:
    """Every request of the grid, each prompt sized in the runner's tokenizer, overflow handled by policy."""
    if overflow not in OVERFLOW_POLICIES:
        raise HashHopError(f"unknown overflow policy {overflow!r}: use {', '.join(OVERFLOW_POLICIES)}")
    tokenizer_name = runner.tokenizer
    tokenizer = get_tokenizer(tokenizer_name)
    items: list[Item] = []
    problems: dict[tuple[int, int, int], tuple[Sample | None, str]] = {}
    for length, hops, cot in grid.cells():
        for s in range(grid.samples):
            key = (length, hops, s)
            if key not in problems:
                problems[key] = _sized_problem(grid, runner, template, tokenizer_name, length, hops, s, overflow, max_answer_tokens)
            base, note = problems[key]
            seed = grid.sample_seed(length, hops, s)
            if base is None:
                items += [
                    Item(item_id(length, hops, cot, s, q), length, hops, cot, s, q, seed, None, None, None, 0, 0, "skipped", note)
                    for q in range(grid.queries)
                ]
                continue
            sample = replace(base, chain_of_thought=cot, spec=replace(base.spec, chain_of_thought=cot))
            for q, chain in enumerate(sample.queries):
                overhead = _overhead_tokens(template, runner, tokenizer, sample, chain)
                answer_budget = max_answer_tokens or _answer_budget(tokenizer, chain, cot, template)
                request = template.request(sample.prompt, chain, hops, cot, answer_budget, runner.chat)
                total = sample.prompt_tokens + overhead + answer_budget
                item = Item(
                    item_id(length, hops, cot, s, q),
                    length,
                    hops,
                    cot,
                    s,
                    q,
                    seed,
                    sample,
                    chain,
                    request,
                    sample.prompt_tokens,
                    total,
                    note=note,
                )
                window = runner.max_context_tokens
                if window is not None and total > window:  # only with --max-answer-tokens larger than sizing assumed
                    if overflow == "error":
                        raise HashHopError(
                            f"{item.id} needs {total:,} tokens, over the model's {window:,}: "
                            "use --overflow skip or shrink, or shorter lengths"
                        )
                    item.status, item.note = "skipped", f"needs {total:,} tokens, over the model's {window:,}"
                items.append(item)
    return items


def _sized_problem(grid, runner, template, tokenizer_name, length, hops, s, overflow, max_answer_tokens):
    """The sample of a cell, sized so that every one of its requests (each query, chain of thought on and
    off) fits the model's window; ``overflow`` says what to do when the cell's length does not."""
    spec = HashHopSpec(
        context_tokens=length,
        tokenizer=tokenizer_name,
        hops=hops,
        chain_of_thought=True,
        hash_length=grid.hash_length,
        alphabet=grid.alphabet,
        num_queries=grid.queries,
        seed=grid.sample_seed(length, hops, s),
    )
    window = runner.max_context_tokens
    if window is None:
        return plan(spec).sample(), ""
    tokenizer = get_tokenizer(tokenizer_name)
    # A cell longer than the window is judged on a small sample: the template and answer cost the same.
    sample = plan(spec if length < window else replace(spec, context_tokens=min(length, 2000))).sample()
    need = _largest_request(sample, grid, template, runner, tokenizer, max_answer_tokens) - sample.prompt_tokens + length
    if need <= window:
        return sample, ""
    message = f"cell length {length:,} + template and answer ({need - length:,} tokens) exceeds the model's {window:,}-token context"
    if overflow == "error":
        raise HashHopError(f"{message}: drop the length, or pass --overflow skip or --overflow shrink")
    if overflow == "skip":
        return None, message
    room = length
    for _ in range(8):  # each query's template and answer differ a little: shrink until the largest request fits
        room -= need - window
        if room < 1:
            break
        try:
            sample = plan(replace(spec, context_tokens=room)).sample()
        except HashHopError as err:  # too little room for even one chain per query
            return None, f"{message}; shrinking leaves no room ({err})"
        need = _largest_request(sample, grid, template, runner, tokenizer, max_answer_tokens)
        if need <= window:
            return sample, f"shrunk to {sample.prompt_tokens:,} tokens: {message}"
    return None, f"{message}; shrinking leaves no room"


def _largest_request(sample: Sample, grid: Grid, template: Template, runner: Runner, tokenizer, max_answer_tokens: int | None) -> int:
    """Tokens of the largest request of a sample: each query, with chain of thought on and off as the grid asks."""
    largest = 0
    for cot in grid.cot:
        variant = replace(sample, chain_of_thought=cot)
        for chain in variant.queries:
            overhead = _overhead_tokens(template, runner, tokenizer, variant, chain)
            answer = max_answer_tokens or _answer_budget(tokenizer, chain, cot, template)
            largest = max(largest, variant.prompt_tokens + overhead + answer)
    return largest


def _overhead_tokens(template: Template, runner: Runner, tokenizer, sample: Sample, chain: Chain) -> int:
    """Tokens the template adds around the HashHop prompt for the query of ``chain``."""
    text = template.render("", chain, sample.hops, sample.chain_of_thought)
    extra = CHAT_OVERHEAD_TOKENS if (runner.chat and not template.native) else 0
    return tokenizer.count(text) + (tokenizer.count(template.system) if template.system else 0) + extra


def _answer_budget(tokenizer, chain: Chain, cot: bool, template: Template) -> int:
    """Room for the answer: exact for the native format, with slack for chatty chat models."""
    answer = chain.answer(cot)
    if template.native:
        return tokenizer.count(answer + "'") + 8
    return 2 * tokenizer.count(answer_line(chain.query, answer)) + 32




def dry_run(items: list[Item], price_in_per_m: float | None = None, price_out_per_m: float | None = None) -> str:
    """What the grid would send, per cell, before anything is spent."""
    cells: dict[tuple[int, int, bool], list[Item]] = {}
    for item in items:
        cells.setdefault((item.length, item.hops, item.cot), []).append(item)
    lines = ["| length | hops | CoT | requests | skipped | input tokens | max output tokens |", "|---|---|---|---|---|---|---|"]
    total_in = total_out = total_req = 0
    for (length, hops, cot), cell in sorted(cells.items()):
        live = [i for i in cell if i.status != "skipped"]
        tokens_in = sum(i.request_tokens - i.request.max_tokens for i in live)
        tokens_out = sum(i.request.max_tokens for i in live)
        total_in, total_out, total_req = total_in + tokens_in, total_out + tokens_out, total_req + len(live)
        lines.append(
            f"| {length:,} | {hops} | {'yes' if cot else 'no'} | {len(live)} | {len(cell) - len(live)} | {tokens_in:,} | {tokens_out:,} |"
        )
    lines.append(f"\n{total_req:,} requests, {total_in:,} input tokens, at most {total_out:,} output tokens.")
    if price_in_per_m is not None or price_out_per_m is not None:
        cost = total_in * (price_in_per_m or 0) / 1e6 + total_out * (price_out_per_m or 0) / 1e6
        lines.append(f"Cost at most ${cost:,.4f} (${price_in_per_m or 0:g} / ${price_out_per_m or 0:g} per 1M input / output tokens).")
    return "\n".join(lines)
