"""Running an evaluation: answer every request of a grid with a runner, bounded concurrency, retries
with backoff, results appended as they arrive; and :func:`evaluate`, the one call that does it all
(the CLI, the benchmarks and the integrations go through it).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field

from hashhop.errors import HashHopError
from hashhop.eval.grid import OVERFLOW_POLICIES, Grid, Item
from hashhop.eval.score import score_answer
from hashhop.eval.store import Record, ResponseCache, ResultsFile, read_results
from hashhop.eval.templates import Template
from hashhop.runners.base import FatalError, PermanentError, Reply, Runner, RunnerOptions, TransientError
from hashhop.task.grammar import prompt_hashes


# -- running ---------------------------------------------------------------------------------
@dataclass
class RunOptions:
    concurrency: int = 8
    max_attempts: int = 6
    backoff_s: float = 0.5
    backoff_cap_s: float = 30.0
    progress: bool = True  # a bar when stderr is a terminal
    progress_log: bool = True  # else log lines: at the start, every log_every answers, every log_every_s while waiting
    log_every: int = 50
    log_every_s: float = 60.0
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
    not_sent: int = 0  # left for the next run after a fatal error
    first_error: str | None = None  # the reason of the first failed request (redacted)
    fatal: str | None = None  # the error that stopped the run early


class _Progress:
    """A tqdm bar on a terminal; otherwise log lines: one at the start, one every N answers, and one a
    minute while requests are out (answered or not), so a log is never silent for long."""

    def __init__(self, total: int, name: str, options: RunOptions, log) -> None:
        self.total, self.name, self.options, self.log = total, name, options, log
        self.done = self.correct = self.in_flight = 0
        self.bar = None
        self.started = self.last_line = time.monotonic()
        self.logging = bool(total) and options.progress_log
        if total and options.progress and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"eval {name}", unit="req")
            self.logging = False

    def begin(self, already_done: int) -> None:
        if self.logging:
            self.log(f"eval {self.name}: {self.total} request(s) to answer ({already_done} already done)")

    def line(self) -> None:
        now = time.monotonic()
        self.last_line = now
        waiting = f", {self.in_flight} in flight" if self.in_flight and self.done < self.total else ""
        self.log(f"eval {self.name}: {self.done}/{self.total} answered, {self.correct} correct{waiting}, {now - self.started:.0f} s")

    def update(self, correct: bool) -> None:
        self.done += 1
        self.correct += correct
        if self.bar is not None:
            self.bar.update(1)
            return
        due = self.done % self.options.log_every == 0 or time.monotonic() - self.last_line >= self.options.log_every_s
        if self.logging and (due or self.done == self.total):
            self.line()

    async def heartbeat(self) -> None:
        """A line every ``log_every_s`` without one, even when no answer came back (a slow server)."""
        while self.logging:
            await asyncio.sleep(max(0.01, self.last_line + self.options.log_every_s - time.monotonic()))
            if time.monotonic() - self.last_line >= self.options.log_every_s:
                self.line()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def run_items(
    items: list[Item], runner: Runner, template: Template, results_path: str, options: RunOptions, log=None
) -> RunStats:
    """Answer every item not already in ``results_path``; append one record per item."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    stats = RunStats(total=len(items))
    done: dict[str, Record] = {}
    if os.path.exists(results_path):
        for record in read_results(results_path):
            if record.get("model") != runner.name or record.get("template") != template.name:
                raise HashHopError(
                    f"{results_path} holds answers of {record.get('model')} with template {record.get('template')}: "
                    "resume only with the same model and template, or write to another file"
                )
            if record["status"] in ("ok", "skipped"):
                done[record["id"]] = record
    for item in items:
        if item.id not in done:
            continue
        if done[item.id]["status"] == "skipped" and item.status != "skipped":  # skipped before, fits now (e.g. --overflow shrink)
            del done[item.id]
        elif done[item.id].get("fingerprint") != item.fingerprint:
            raise HashHopError(
                f"{results_path} answered {item.id} for another grid (seed, sizing or tokenizer differ): write this grid to another file"
            )
    results = ResultsFile(results_path)
    cache = ResponseCache(options.cache_path) if options.cache_path else None
    todo = [item for item in items if item.id not in done]
    stats.already_done = len(items) - len(todo)
    hashes_of: dict[int, frozenset[str]] = {}
    progress = _Progress(sum(item.status != "skipped" for item in todo), runner.name, options, log)
    progress.begin(stats.already_done)
    semaphore = asyncio.Semaphore(max(1, min(options.concurrency, runner.max_concurrency or options.concurrency)))
    stop = asyncio.Event()  # set by a fatal error: no request of the run can succeed

    def failed(reason: str) -> None:
        stats.failed += 1
        if stats.first_error is None:
            stats.first_error = reason

    async def one(item: Item) -> None:
        if item.status == "skipped":
            results.append(_record(item, runner, template, status="skipped", error=item.note))
            stats.skipped += 1
            return
        async with semaphore:
            if stop.is_set():
                stats.not_sent += 1
                return
            started = time.perf_counter()
            key = ResponseCache.key(runner.cache_identity, item.request) if cache else None
            reply = cache.get(key) if cache else None
            attempts, error, cached = 0, "", reply is not None
            while reply is None and attempts < options.max_attempts and not stop.is_set():
                attempts += 1
                try:
                    progress.in_flight += 1
                    try:
                        reply = await runner.complete(item.request)
                    finally:
                        progress.in_flight -= 1
                except TransientError as err:
                    error = runner.redact(str(err))
                    if attempts < options.max_attempts:
                        stats.retries += 1
                        if err.retry_after_s is not None:
                            # The server's word (or a timeout's length: the server may still be working on the
                            # request), honoured up to 10 minutes: never less, jittered only upwards.
                            delay = min(600.0, err.retry_after_s) * (1 + 0.25 * random.random())
                        else:
                            delay = min(options.backoff_cap_s, options.backoff_s * 2 ** (attempts - 1)) * (0.5 + random.random())
                        try:  # a fatal error elsewhere ends the wait
                            await asyncio.wait_for(stop.wait(), delay)
                        except asyncio.TimeoutError:
                            pass
                except FatalError as err:
                    error = runner.redact(str(err))
                    if not stop.is_set():
                        stats.fatal = error
                        stop.set()
                    break
                except PermanentError as err:
                    error = runner.redact(str(err))
                    break
                except Exception as err:  # noqa: BLE001 - a runner bug must cost one item, not the run
                    error = runner.redact(f"{type(err).__name__}: {err}")[:300]  # redacted before it is cut: no half key
                    break
            latency = time.perf_counter() - started
        if reply is None and attempts == 0:  # stopped before its first try
            stats.not_sent += 1
            return
        if reply is None:
            results.append(_record(item, runner, template, status="error", error=error, attempts=attempts, latency_s=latency))
            failed(error)
            progress.update(False)
            return
        reply = Reply(runner.redact(reply.text), reply.input_tokens, reply.output_tokens)  # before the cache too
        if cache and not cached:
            cache.put(key, reply)
        sample_id = id(item.sample)
        if sample_id not in hashes_of:
            hashes_of[sample_id] = prompt_hashes(item.sample.prompt)
        score = score_answer(item.chain, item.cot, reply.text, hashes_of[sample_id], item.sample.spec.alphabet_chars, prefilled=template.native)
        results.append(
            _record(item, runner, template, status="ok", reply=reply, score=score, attempts=attempts, latency_s=latency, cached=cached, error=error)
        )
        stats.answered += 1
        stats.cached += cached
        progress.update(score.correct)

    heartbeat = asyncio.ensure_future(progress.heartbeat())
    try:
        await asyncio.gather(*(one(item) for item in todo))
    finally:
        heartbeat.cancel()
        progress.close()
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
) -> Record:
    record: Record = {
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




# -- one call ----------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """What :func:`evaluate` returns: the grid's records (this run's and earlier ones of the same grid) and its stats."""

    model: str
    template: str
    tokenizer: str
    output: str | None
    items: list[Item]
    records: list[Record] = field(default_factory=list)
    stats: RunStats | None = None  # None for a dry run
    dry_run: str | None = None  # the dry run's table
    report_paths: list[str] = field(default_factory=list)

    @property
    def cells(self):
        from hashhop.eval.report import aggregate

        return aggregate(self.records)

    def markdown(self, threshold: float | None = None) -> str:
        from hashhop.eval.report import markdown
        from hashhop.eval.score import EFFECTIVE_THRESHOLD

        return markdown(self.cells, self.model, threshold or EFFECTIVE_THRESHOLD)

    @property
    def accuracy(self) -> float | None:
        answered = [r for r in self.records if r["status"] == "ok"]
        return sum(r["correct"] for r in answered) / len(answered) if answered else None


def default_output(model: str) -> str:
    return os.path.join("results", re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_") + ".jsonl")


def evaluate(
    model: str | Runner,
    grid: Grid | None = None,
    *,
    template: str | Template = "auto",
    output: str | None = None,
    runner_options: RunnerOptions | None = None,
    run_options: RunOptions | None = None,
    overflow: str = "error",
    max_answer_tokens: int | None = None,
    report_dir: str | None = None,
    threshold: float | None = None,
    dry_run: bool = False,
    price_in_per_m: float | None = None,
    price_out_per_m: float | None = None,
    log=None,
) -> EvalResult:
    """Run ``model`` (``openai:NAME``, ``hf:...``, ``builtin:...`` or a :class:`Runner`) on ``grid``.

    Answers are appended to ``output`` (default ``results/<model>.jsonl``) as they arrive; calling again
    with the same arguments resumes. ``report_dir`` also writes the report. Bad arguments raise
    :class:`HashHopError` before anything is sent or written.
    """
    from hashhop.eval.grid import build_items
    from hashhop.eval.grid import dry_run as dry_run_table
    from hashhop.eval.templates import load_template
    from hashhop.runners import make_runner

    grid = grid or Grid()
    run_options = run_options or RunOptions()
    if overflow not in OVERFLOW_POLICIES:
        raise HashHopError(f"unknown overflow policy {overflow!r}: use {', '.join(OVERFLOW_POLICIES)}")
    if max_answer_tokens is not None and max_answer_tokens < 1:
        raise HashHopError("max_answer_tokens must be at least 1")
    for name, price in (("price_in_per_m", price_in_per_m), ("price_out_per_m", price_out_per_m)):
        if price is not None and not (math.isfinite(price) and price >= 0):
            raise HashHopError(f"{name} must be a price >= 0 per 1M tokens, got {price}")
    if run_options.concurrency < 1 or not 1 <= run_options.max_attempts <= 101:
        raise HashHopError("concurrency (--concurrency) must be at least 1 and attempts 1..101 (--retries 0..100)")
    timeout_s = (runner_options or RunnerOptions()).timeout_s
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise HashHopError(f"the request timeout (--timeout) must be a number of seconds > 0, got {timeout_s!r}")
    if run_options.log_every < 1 or not (math.isfinite(run_options.log_every_s) and run_options.log_every_s > 0):
        raise HashHopError("progress lines need log_every >= 1 answers and log_every_s > 0 seconds")
    if threshold is not None and not (math.isfinite(threshold) and 0 < threshold <= 1):
        raise HashHopError(f"threshold must be in (0, 1], got {threshold}")
    model_args = runner_options.model_args if runner_options else None
    if model_args and not isinstance(model, str):
        raise HashHopError("model args configure a runner evaluate() makes: give the model's name, not a Runner, with them")
    # with model args (another decoding) the default results file is named after the runner's name, which holds them
    named_later = bool(model_args) and output is None
    name = model if isinstance(model, str) else model.name
    if not named_later:
        output = output or default_output(name)
        if not dry_run:
            check_results_path(output, folder_made=output == default_output(name))
    if not dry_run and report_dir is not None:
        check_report_dir(report_dir)
    tmpl = None if template == "auto" else (template if isinstance(template, Template) else load_template(template))
    runner = make_runner(model, runner_options) if isinstance(model, str) else model
    if named_later:
        output = default_output(runner.name)
        if not dry_run:
            check_results_path(output, folder_made=True)
    runner.resolve_tokenizer()
    tmpl = tmpl or load_template("chat" if runner.chat else "native")
    items = build_items(grid, runner, tmpl, overflow, max_answer_tokens)
    result = EvalResult(runner.name, tmpl.name, runner.tokenizer, None if dry_run else output, items)
    if dry_run:
        result.dry_run = dry_run_table(items, price_in_per_m, price_out_per_m)
        return result
    runner.check_ready()
    try:  # checked above: there already, or ours to make (the default results/)
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    except OSError as err:
        raise HashHopError(f"cannot make the folder of {output}: {err.strerror or err}") from None
    result.stats = asyncio.run(run_items(items, runner, tmpl, output, run_options, log=log))
    ids = {item.id for item in items}
    result.records = [r for r in read_results(output) if r["id"] in ids]
    if report_dir is not None:
        from hashhop.eval.report import write_report
        from hashhop.eval.score import EFFECTIVE_THRESHOLD

        result.report_paths = write_report(result.records, report_dir, threshold or EFFECTIVE_THRESHOLD)
    return result


def check_results_path(path: str, folder_made: bool = False) -> None:
    """A results file can be written at ``path`` (checked before prompts are sized or any request is sent);
    ``folder_made``: a missing folder will be made (the default ``results/``), else it is an error."""
    import stat

    if os.path.isdir(path):
        raise HashHopError(f"results path {path} is a folder: name a file")
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise HashHopError(f"results path {path} is not a regular file")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise HashHopError(f"cannot write {path}: {folder} is not a folder")
    if not os.path.exists(folder) and not folder_made:
        raise HashHopError(f"cannot write {path}: folder {folder} does not exist; create it first")
    if os.path.isdir(folder) and not os.access(folder, os.W_OK):
        raise HashHopError(f"cannot write {path}: folder {folder} is not writable")


def check_report_dir(path: str) -> None:
    """A report can be written into folder ``path`` (checked before the run, not after it)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise HashHopError(f"report folder {path} is a file: name a folder for the report")
    try:  # /proc and friends say writable and refuse: try for real
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".hashhop-write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as err:
        raise HashHopError(f"cannot write the report into {path}: {err.strerror or err}") from None
