"""Regression tests for the harness defects an adversarial user found against real servers (llama.cpp's,
lm-eval, inspect_ai, an outside oracle): each runs the harness for real against hashhop.testing.FaultServer
on loopback (or a closed port), most through the CLI in a subprocess."""

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest

from hashhop.errors import HashHopError
from hashhop.eval.grid import Grid, build_items
from hashhop.eval.run import RunOptions, evaluate
from hashhop.eval.score import score_answer
from hashhop.eval.templates import load_template
from hashhop.runners import RunnerOptions, make_runner
from hashhop.task.generator import generate
from hashhop.task.grammar import prompt_hashes
from hashhop.task.spec import HashHopSpec
from hashhop.task.tokens import ServerTokenizer, get_tokenizer
from hashhop.testing import FaultServer

GRID_200 = ["--lengths", "300,600", "--hops", "1,2", "--cot", "both", "--samples", "5", "--queries", "5"]


def cli(base_url, out, *extra, grid=GRID_200, tokenizer="cl100k_base", progress=False, timeout=120, env=None):
    cmd = [sys.executable, "-m", "hashhop.cli", "eval", "--model", "openai:fake", "--base-url", base_url]
    cmd += ["--tokenizer", tokenizer, *grid, "-o", str(out), *([] if progress else ["--no-progress"]), *extra]
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return result, time.monotonic() - started


def records(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening, then closed: connecting is refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# 1 -------------------------------------------------------------------------------------------
def test_native_answer_with_a_repeated_opening_quote_scores():
    sample = generate(HashHopSpec(context_tokens=2000, tokenizer="chars", hops=2, chain_of_thought=True, num_queries=2))
    chain = sample.queries[0]
    hashes, letters = prompt_hashes(sample.prompt), sample.spec.alphabet_chars

    def outcome(text, cot):
        return score_answer(chain, cot, text, hashes, letters, prefilled=True).outcome

    last, both = chain.hashes[-1], chain.answer(True)
    assert outcome(f"'{last}'", False) == "correct"  # the model repeats the quote the prompt ends with
    assert outcome(f"'{last}", False) == "correct"  # ... and the server stopped at the closing one
    assert outcome(f" '{both}'\nmore", True) == "correct"
    assert outcome(f"{last}'", False) == "correct"
    assert outcome("'", False) == "empty"
    assert load_template("native").stop == ("\n",)  # a stop on the quote would cut 'HASH' to nothing


def test_native_run_against_a_server_that_repeats_the_quote(tmp_path):
    """The server applies stop sequences like a real one: with a stop on ``'`` it returns '' for 'HASH'."""
    grid = ["--lengths", "300", "--hops", "1,2", "--cot", "both", "--samples", "2", "--queries", "2"]
    with FaultServer(quote_answers=True) as server:
        result, _ = cli(server.base_url, tmp_path / "r.jsonl", "--template", "native", "--endpoint", "completions", "--no-cache", grid=grid)
        assert result.returncode == 0, result.stderr[-2000:]
    answered = records(tmp_path / "r.jsonl")
    assert len(answered) == 16 and all(r["response"].startswith("'") for r in answered)
    assert all(r["correct"] for r in answered), Counter(r["outcome"] for r in answered)


# 2 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["refused", "no_v1", "bad_key"])
def test_fatal_errors_stop_early_with_their_reason_and_a_rerun_redoes_only_the_rest(tmp_path, fault):
    out = tmp_path / "r.jsonl"
    concurrency = 4
    with FaultServer(api_key="right-key") as server:
        base_url = {"refused": f"http://127.0.0.1:{closed_port()}/v1", "no_v1": server.root}.get(fault, server.base_url)
        key = "right-key" if fault != "bad_key" else "wrong-key"
        args = ("--api-key", key, "--concurrency", str(concurrency), "--retries", "5", "--timeout", "30", "--no-cache")
        result, elapsed = cli(base_url, out, *args)
        assert result.returncode == 2, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("hashhop eval: error: stopped early"), result.stderr[-2000:]
        why = {"refused": "is the server running", "no_v1": "the base URL has no /v1", "bad_key": "refused the API key"}[fault]
        assert why in last, last
        assert fault != "no_v1" or f"HTTP 404 from {server.root}/chat/completions" in last
        assert elapsed < 15
        assert server.requests <= concurrency  # only what was already in flight: no retries, nothing more
        sent = server.requests
        # the same command, now right, answers exactly the requests that were not answered
        again, _ = cli(server.base_url, out, *args[:1], "right-key", *args[2:])
        assert again.returncode == 0, again.stderr[-2000:]
        assert server.requests - sent == 200
    final = records(out)
    ok = Counter(r["id"] for r in final if r["status"] == "ok")
    assert len(ok) == 200 and set(ok.values()) == {1}
    assert len(final) - 200 <= concurrency  # the error records of the requests that were in flight, no more


def test_other_failures_say_the_first_reason(tmp_path):
    with FaultServer(fault_rate=1.0, faults=("500",)) as server:
        grid = ["--lengths", "300", "--hops", "1", "--cot", "off", "--samples", "2", "--queries", "2"]
        result, _ = cli(server.base_url, tmp_path / "r.jsonl", "--retries", "0", "--no-cache", grid=grid)
    assert result.returncode == 1, result.stderr
    assert "first failure: HTTP 500" in result.stderr and "4 request(s) failed" in result.stderr


# 3 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template", ["chat", "native"])
def test_shrink_sizes_every_query_not_one_probe(template):
    """Queries (and chain of thought on and off) differ in template and answer tokens: every request must fit."""
    tokenizer = get_tokenizer("cl100k_base")
    for window in (700, 1000):
        options = RunnerOptions(base_url="http://127.0.0.1:9/v1", tokenizer="cl100k_base", max_context_tokens=window)
        options.endpoint = "chat" if template == "chat" else "completions"
        runner = make_runner("openai:fake", options)
        grid = Grid(lengths=(window - 150, window, 3 * window), hops=(1, 2, 3), cot=(False, True), samples=2, queries=4)
        items = build_items(grid, runner, load_template(template), "shrink")
        assert [(i.id, i.note) for i in items if i.status != "todo"] == []
        assert max(i.request_tokens for i in items) <= window
        if template == "native":  # the text sent, counted whole, plus the answer budget fits too
            assert all(tokenizer.count(i.request.prompt) + i.request.max_tokens <= window for i in items)


def test_shrink_end_to_end_then_resume_a_skipped_grid_with_shrink(tmp_path):
    out = tmp_path / "r.jsonl"
    grid = ["--lengths", "400,800,2000", "--hops", "1,3", "--cot", "both", "--samples", "2", "--queries", "3"]
    with FaultServer() as server:
        skipped, _ = cli(server.base_url, out, "--max-context", "800", "--overflow", "skip", "--no-cache", grid=grid)
        assert skipped.returncode == 0, skipped.stderr[-2000:]
        assert {r["status"] for r in records(out)} == {"ok", "skipped"}
        # the skipped cells fit once shrunk: the same file resumes, answering just those
        shrunk, _ = cli(server.base_url, out, "--max-context", "800", "--overflow", "shrink", "--no-cache", grid=grid)
        assert shrunk.returncode == 0, shrunk.stderr[-2000:]
    final = {r["id"]: r for r in records(out)}  # the last record of an id wins
    assert len(final) == 3 * 2 * 2 * 2 * 3
    assert all(r["status"] == "ok" and r["correct"] and r["request_tokens"] <= 800 for r in final.values())


# 4 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("leak", ["401_body", "answers"])
def test_a_key_the_server_echoes_is_never_written(tmp_path, leak):
    secret = "sk-hashhop-echo-7d3e9b1f5a2c"
    options = {"api_key": "another-key"} if leak == "401_body" else {"leak_key": True}
    env = {**os.environ, "HASHHOP_CACHE_DIR": str(tmp_path / "cache")}
    with FaultServer(**options) as server:
        result, _ = cli(server.base_url, tmp_path / "r.jsonl", "--api-key", secret, "--cache", str(tmp_path / "c.sqlite"), progress=True, env=env)
        assert f"Bearer {secret}" in server.authorizations  # it was sent, and came back
    assert result.returncode == (2 if leak == "401_body" else 0), result.stderr[-2000:]
    stored = records(tmp_path / "r.jsonl")
    if leak == "401_body":
        assert "***" in stored[0]["error"] and "Incorrect API key" in stored[0]["error"]
    else:
        assert all(r["correct"] and "***" in r["response"] for r in stored)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "c.sqlite" for p in files)
    assert [p for p in files if secret.encode() in p.read_bytes()] == []
    assert secret not in result.stdout and secret not in result.stderr


# 6 -------------------------------------------------------------------------------------------
def test_server_tokenizer_says_what_is_wrong():
    with pytest.raises(HashHopError, match=r"nothing answers at .*is the server running, and is --base-url right"):
        ServerTokenizer(f"http://127.0.0.1:{closed_port()}/v1")
    with FaultServer(api_key="right-key") as server:
        with pytest.raises(HashHopError, match="refused the API key on its tokenize endpoint: check --api-key") as err:
            ServerTokenizer(server.base_url, headers={"Authorization": "Bearer wrong-key"})
        assert "wrong-key" not in str(err.value)
        assert ServerTokenizer(server.base_url, headers={"Authorization": "Bearer right-key"}).count("abcdef") == 2
    with FaultServer() as server:
        with pytest.raises(HashHopError, match=r"has no /v1: OpenAI-compatible servers answer under http://HOST:PORT/v1"):
            ServerTokenizer(server.root + "/api")
        with pytest.raises(HashHopError, match="no tokenize endpoint hashhop knows: pass --tokenizer") as err:
            ServerTokenizer(server.root + "/api/v1")
        assert "no /v1" not in str(err.value)


def test_server_tokenizer_diagnosis_reaches_the_cli(tmp_path):
    with FaultServer() as server:
        result, _ = cli(server.root + "/api", tmp_path / "r.jsonl", tokenizer="server")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "has no /v1" in result.stderr
    assert not (tmp_path / "r.jsonl").exists()


# 7 -------------------------------------------------------------------------------------------
def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    with FaultServer() as server:
        result, _ = cli(server.base_url, tmp_path / "r.jsonl", "--no-cache", progress=True)  # stderr is a pipe
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("eval openai:fake:")]
    assert lines[0] == "eval openai:fake: 200 request(s) to answer (0 already done)"
    assert [line.split(",")[0] for line in lines[1:]] == [f"eval openai:fake: {n}/200 answered" for n in (50, 100, 150, 200)]
    assert "\r" not in result.stderr  # no progress bar in a log


def test_progress_lines_while_a_slow_server_answers_nothing(tmp_path):
    lines = []
    with FaultServer(delay_s=1.2) as server:
        result = evaluate(
            "openai:fake",
            Grid(lengths=(300,), hops=(1,), cot=(False,), samples=1, queries=1),
            output=str(tmp_path / "r.jsonl"),
            runner_options=RunnerOptions(base_url=server.base_url, tokenizer="cl100k_base"),
            run_options=RunOptions(progress=False, log_every_s=0.3),
            log=lines.append,
        )
    assert result.accuracy == 1.0
    waiting = [line for line in lines if "0/1 answered, 0 correct, 1 in flight" in line]
    assert len(waiting) >= 2, lines  # heard from while nothing came back
    assert lines[-1].startswith("eval openai:fake: 1/1 answered, 1 correct")


# 8 -------------------------------------------------------------------------------------------
def test_a_timed_out_request_is_not_sent_again_while_a_single_slot_server_still_works_on_it(tmp_path):
    """The first request of each prompt takes 0.9 s on a one-slot server that keeps working after the client gives
    up at 0.5 s: the retry must come after the timeout's length again (>= 1.0 s), when the slot is free."""
    timeout = 0.5
    grid = ["--lengths", "300", "--hops", "1", "--cot", "off", "--samples", "2", "--queries", "2"]
    with FaultServer(slots=1, stall_first=True, stall_s=0.9) as server:
        result, _ = cli(server.base_url, tmp_path / "r.jsonl", "--timeout", str(timeout), "--concurrency", "1", "--no-cache", grid=grid)
        assert result.returncode == 0, result.stderr[-2000:]
        events = list(server.events)
        assert server.overlapping() == []
    by_prompt = {}
    for event in sorted(events, key=lambda e: e["arrived"]):
        by_prompt.setdefault(event["prompt"], []).append(event)
    assert len(by_prompt) == 4 and all(len(tries) == 2 for tries in by_prompt.values())  # one timeout, one answer each
    for first, retry in by_prompt.values():
        assert retry["arrived"] - first["arrived"] >= 2 * timeout - 0.05  # the timeout, then as long again
    assert all(r["correct"] and r["attempts"] == 2 for r in records(tmp_path / "r.jsonl"))


def test_retry_after_is_never_shortened_by_jitter(tmp_path):
    """A 429 with Retry-After: the next try comes no sooner than the server asked."""
    with FaultServer(fault_rate=1.0, faults=("429",)) as server:
        grid = ["--lengths", "300", "--hops", "1", "--cot", "off", "--samples", "1", "--queries", "1"]
        result, _ = cli(server.base_url, tmp_path / "r.jsonl", "--retries", "6", "--no-cache", grid=grid)
        stamps = list(server.arrivals)
    assert result.returncode == 1 and "HTTP 429" in result.stderr
    assert len(stamps) == 7 and min(b - a for a, b in zip(stamps, stamps[1:])) >= 0.05 - 0.005  # Retry-After: 0.05


# the refactor -------------------------------------------------------------------------------
def test_evaluate_refuses_before_sizing_and_dedupes_the_grid(tmp_path):
    runner_options = RunnerOptions(base_url="http://127.0.0.1:9/v1", tokenizer="cl100k_base")
    with pytest.raises(HashHopError, match="does not exist; create it first"):
        evaluate("openai:fake", output=str(tmp_path / "no" / "r.jsonl"), runner_options=runner_options)
    with pytest.raises(HashHopError, match="log_every"):
        evaluate("openai:fake", output=str(tmp_path / "r.jsonl"), runner_options=runner_options, run_options=RunOptions(log_every=0))
    with pytest.raises(HashHopError, match="threshold"):
        evaluate("openai:fake", output=str(tmp_path / "r.jsonl"), runner_options=runner_options, threshold=80)
    assert os.listdir(tmp_path) == []
    grid = Grid(lengths=(300, 300), hops=(1, 1), cot=(True, True), samples=1, queries=2)  # --lengths 300,300: one cell
    ids = [item.id for item in evaluate("openai:fake", grid, runner_options=runner_options, dry_run=True).items]
    assert len(ids) == len(set(ids)) == 2
