"""The evaluation harness: a grid of HashHop cells run against any runner, without ever losing work.

* Every request has a stable id (``L<length>-h<hops>-<cot|skip>-s<sample>-q<query>``).
* Results go to an append-only JSONL file, one line per answered request, written whole with one
  ``write`` call; a crash (kill -9 included) can cut at most the last line, which the next run
  removes before appending. Resume skips every id already answered, so nothing is redone or doubled.
* Replies are cached (SQLite, keyed by model and request, never by credentials), so a rerun of a
  finished grid costs nothing.
* Bounded concurrency; retries with exponential backoff and jitter on transient errors.
* ``dry_run`` counts requests and tokens (and cost, given prices) before anything is spent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sqlite3
import time
from dataclasses import dataclass, replace

from hashhop.errors import HashHopError
from hashhop.runners.base import PermanentError, Reply, Request, Runner, TransientError
from hashhop.score import prompt_hash_set, score_answer
from hashhop.task.generator import plan
from hashhop.task.keyed import derive_keys
from hashhop.task.sample import Chain, Sample
from hashhop.task.spec import HashHopSpec
from hashhop.task.tokens import get_tokenizer
from hashhop.templates import Template

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
            overhead = _overhead_tokens(template, runner, tokenizer, sample)
            for q, chain in enumerate(sample.queries):
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
                if window is not None and total > window:  # the probe's estimate was short for this query
                    if overflow == "error":
                        raise HashHopError(
                            f"{item.id} needs {total:,} tokens, over the model's {window:,}: "
                            "use --overflow skip or shrink, or shorter lengths"
                        )
                    item.status, item.note = "skipped", f"needs {total:,} tokens, over the model's {window:,}"
                items.append(item)
    return items


def _sized_problem(grid, runner, template, tokenizer_name, length, hops, s, overflow, max_answer_tokens):
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
    probe = plan(replace(spec, context_tokens=min(length, 2000), num_queries=1)).sample()
    overhead = _overhead_tokens(template, runner, tokenizer, probe)
    answer = max_answer_tokens or _answer_budget(tokenizer, probe.queries[0], True, template)
    room = window - overhead - answer
    if length <= room:
        return plan(spec).sample(), ""
    message = f"cell length {length:,} + template {overhead:,} + answer {answer:,} tokens exceeds the model's {window:,}-token context"
    if overflow == "error":
        raise HashHopError(f"{message}: drop the length, or pass --overflow skip or --overflow shrink")
    if overflow == "skip":
        return None, message
    try:
        return plan(replace(spec, context_tokens=room)).sample(), f"shrunk to {room:,} tokens: {message}"
    except HashHopError as err:  # too little room for even one chain per query
        return None, f"{message}; shrinking leaves no room ({err})"


def _overhead_tokens(template: Template, runner: Runner, tokenizer, sample: Sample) -> int:
    """Tokens the template adds around the HashHop prompt."""
    chain = sample.queries[0]
    text = template.render("", chain, sample.hops, sample.chain_of_thought)
    extra = CHAT_OVERHEAD_TOKENS if (runner.chat and not template.native) else 0
    return tokenizer.count(text) + (tokenizer.count(template.system) if template.system else 0) + extra


def _answer_budget(tokenizer, chain: Chain, cot: bool, template: Template) -> int:
    """Room for the answer: exact for the native format, with slack for chatty chat models."""
    answer = chain.answer(cot)
    if template.native:
        return tokenizer.count(answer + "'") + 8
    return 2 * tokenizer.count(f"{chain.query} = '{answer}'") + 32


# -- results file ----------------------------------------------------------------------------
class ResultsFile:
    """Append-only JSONL; each record is one ``os.write`` of a whole line."""

    def __init__(self, path: str) -> None:
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise HashHopError(f"cannot write {path}: folder {folder} does not exist; create it first")
        if os.path.isdir(path):
            raise HashHopError(f"results path {path} is a folder: name a file")
        self._repair()
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise HashHopError(f"cannot write {path}: {err.strerror}") from None
        self._last_sync = time.monotonic()

    def _repair(self) -> None:
        """Cut a line a crash left unfinished (it is no record; its request will be redone)."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb+") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            end = size
            while end > 0:  # find the last newline, however long the cut line is
                start = max(0, end - (1 << 20))
                handle.seek(start)
                block = handle.read(end - start)
                if end == size and block.endswith(b"\n"):
                    return
                cut = block.rfind(b"\n")
                if cut >= 0:
                    handle.truncate(start + cut + 1)
                    return
                end = start
            handle.truncate(0)  # a single unfinished line: no record at all

    def append(self, record: dict) -> None:
        data = memoryview((json.dumps(record, ensure_ascii=False) + "\n").encode())
        while data:  # a short write (a full disk, a signal) must not leave half a line before the next
            data = data[os.write(self._fd, data) :]
        if time.monotonic() - self._last_sync > 1.0:  # survive an OS crash too, within a second
            os.fsync(self._fd)
            self._last_sync = time.monotonic()

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)


RECORD_FIELDS = ("id", "model", "template", "status", "length", "hops", "cot")


def read_results(path: str) -> list[dict]:
    """The records of a results file, the last record of each id winning (a retried error)."""
    if os.path.isdir(path):
        raise HashHopError(f"{path} is a folder, not a results file")
    if not os.path.exists(path):
        raise HashHopError(f"no results file at {path}")
    latest: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.endswith("\n"):
                    break  # an unfinished last line: no record
                try:
                    record = json.loads(line)
                    if not all(key in record for key in RECORD_FIELDS):
                        raise KeyError
                    latest[record["id"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise HashHopError(f"{path}:{number}: not a hashhop results record (written by hashhop eval)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise HashHopError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    return list(latest.values())


# -- response cache --------------------------------------------------------------------------
def default_cache_path() -> str:
    root = os.environ.get("HASHHOP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hashhop"
    )
    return os.path.join(root, "responses.sqlite")


class ResponseCache:
    def __init__(self, path: str) -> None:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._db = sqlite3.connect(path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as err:
            raise HashHopError(f"cannot use {path} as the response cache ({err}): pass --cache FILE or --no-cache") from None

    @staticmethod
    def key(model: str, request: Request) -> str:
        return hashlib.sha256(json.dumps({"model": model, **request.payload()}, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> Reply | None:
        row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return Reply(**json.loads(row[0])) if row else None

    def put(self, key: str, reply: Reply) -> None:
        data = {"text": reply.text, "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}
        self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, json.dumps(data)))
        self._db.commit()

    def close(self) -> None:
        self._db.close()


# -- running ---------------------------------------------------------------------------------
@dataclass
class RunOptions:
    concurrency: int = 8
    max_attempts: int = 6
    backoff_s: float = 0.5
    backoff_cap_s: float = 30.0
    progress: bool = True
    cache_path: str | None = None  # None: no cache


@dataclass
class RunStats:
    total: int = 0
    already_done: int = 0
    answered: int = 0
    cached: int = 0
    skipped: int = 0
    failed: int = 0
    retries: int = 0


def cache_identity(runner: Runner) -> str:
    return f"{runner.name}@{getattr(runner, 'base_url', '')}"


async def run_items(items: list[Item], runner: Runner, template: Template, results_path: str, options: RunOptions) -> RunStats:
    """Answer every item not already in ``results_path``; append one record per item."""
    stats = RunStats(total=len(items))
    done: dict[str, str | None] = {}
    if os.path.exists(results_path):
        for record in read_results(results_path):
            if record.get("model") != runner.name or record.get("template") != template.name:
                raise HashHopError(
                    f"{results_path} holds answers of {record.get('model')} with template {record.get('template')}: "
                    "resume only with the same model and template, or write to another file"
                )
            if record["status"] in ("ok", "skipped"):
                done[record["id"]] = record.get("fingerprint")
    for item in items:
        if item.id in done and done[item.id] != item.fingerprint:
            raise HashHopError(
                f"{results_path} answered {item.id} for another grid (seed, sizing or tokenizer differ): write this grid to another file"
            )
    results = ResultsFile(results_path)
    cache = ResponseCache(options.cache_path) if options.cache_path else None
    todo = [item for item in items if item.id not in done]
    stats.already_done = len(items) - len(todo)
    hashes_of: dict[int, frozenset[str]] = {}
    bar = None
    if options.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"eval {runner.name}", unit="req")
    semaphore = asyncio.Semaphore(max(1, min(options.concurrency, getattr(runner, "max_concurrency", options.concurrency))))
    identity = cache_identity(runner)

    async def one(item: Item) -> None:
        if item.status == "skipped":
            results.append(_record(item, runner, template, status="skipped", error=item.note))
            stats.skipped += 1
            return
        async with semaphore:
            started = time.perf_counter()
            key = ResponseCache.key(identity, item.request) if cache else None
            reply = cache.get(key) if cache else None
            attempts, error, cached = 0, "", reply is not None
            while reply is None and attempts < options.max_attempts:
                attempts += 1
                try:
                    reply = await runner.complete(item.request)
                except TransientError as err:
                    error = str(err)
                    if attempts < options.max_attempts:
                        stats.retries += 1
                        delay = err.retry_after_s if err.retry_after_s is not None else options.backoff_s * 2 ** (attempts - 1)
                        await asyncio.sleep(min(options.backoff_cap_s, delay) * (0.5 + random.random()))
                except PermanentError as err:
                    error = str(err)
                    break
                except Exception as err:  # noqa: BLE001 - a runner bug must cost one item, not the run
                    error = f"{type(err).__name__}: {err}"[:300]
                    break
            latency = time.perf_counter() - started
        if reply is None:
            results.append(_record(item, runner, template, status="error", error=error, attempts=attempts, latency_s=latency))
            stats.failed += 1
        else:
            if cache and not cached:
                cache.put(key, reply)
            sample_id = id(item.sample)
            if sample_id not in hashes_of:
                hashes_of[sample_id] = prompt_hash_set(item.sample.prompt)
            score = score_answer(
                item.chain, item.cot, reply.text, hashes_of[sample_id], item.sample.spec.alphabet_chars, prefilled=template.native
            )
            results.append(
                _record(
                    item,
                    runner,
                    template,
                    status="ok",
                    reply=reply,
                    score=score,
                    attempts=attempts,
                    latency_s=latency,
                    cached=cached,
                    error=error,
                )
            )
            stats.answered += 1
            stats.cached += cached
        if bar is not None:
            bar.update(1)

    try:
        await asyncio.gather(*(one(item) for item in todo))
    finally:
        if bar is not None:
            bar.close()
        results.close()
        if cache:
            cache.close()
        await runner.aclose()
    return stats


def _record(
    item: Item,
    runner: Runner,
    template: Template,
    status: str,
    reply: Reply | None = None,
    score=None,
    attempts: int = 0,
    latency_s: float = 0.0,
    cached: bool = False,
    error: str = "",
) -> dict:
    record = {
        "id": item.id,
        "model": runner.name,
        "template": template.name,
        "status": status,
        "length": item.length,
        "hops": item.hops,
        "cot": item.cot,
        "sample": item.sample_index,
        "query": item.query_index,
        "seed": item.seed,
        "prompt_tokens": item.prompt_tokens,
        "request_tokens": item.request_tokens,
        "tokenizer": runner.tokenizer,
        "fingerprint": item.fingerprint,
    }
    if item.chain is not None and item.sample is not None:
        record["expected"] = item.chain.answer(item.cot)
        record["depth"] = round(item.chain.lines[0] / max(1, item.sample.num_lines - 1), 4)
    if reply is not None and score is not None:
        record.update(
            response=reply.text,
            given=list(score.given),
            outcome=score.outcome,
            correct=score.correct,
            links_right=score.links_right,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
        )
    record.update(attempts=attempts, latency_s=round(latency_s, 4), cached=cached, error=error or None, time=round(time.time(), 3))
    return record


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
