"""The harness against a real HTTP server on loopback that injects faults (hashhop.testing)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from hashhop.eval.grid import Grid, build_items
from hashhop.eval.store import ResultsFile, read_results
from hashhop.eval.templates import load_template
from hashhop.runners import RunnerOptions, make_runner
from hashhop.testing import FAULTS, FaultServer

GRID_200 = ["--lengths", "300,600", "--hops", "1,2", "--cot", "both", "--samples", "5", "--queries", "5"]


def eval_cmd(base_url, out, *extra):
    return [
        sys.executable,
        "-m",
        "hashhop.cli",
        "eval",
        "--model",
        "openai:fake",
        "--base-url",
        base_url,
        "--tokenizer",
        "cl100k_base",
        *GRID_200,
        "-o",
        str(out),
        "--no-progress",
        *extra,
    ]


def ok_ids(path):
    with open(path) as handle:
        records = [json.loads(line) for line in handle]  # every line is a whole record
    return Counter(r["id"] for r in records if r["status"] == "ok"), records


def test_faults_every_cell_answered_exactly_once(tmp_path):
    with FaultServer(fault_rate=0.35, stall_s=1.5, seed=1) as server:
        result = subprocess.run(
            eval_cmd(server.base_url, tmp_path / "r.jsonl", "--timeout", "0.5", "--retries", "12", "--concurrency", "16", "--no-cache"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert all(server.injected[f] > 0 for f in FAULTS), server.injected
    counts, records = ok_ids(tmp_path / "r.jsonl")
    assert len(counts) == 200 and set(counts.values()) == {1}
    assert all(r["correct"] for r in records if r["status"] == "ok")  # the server solves HashHop; so must the scoring
    assert sum(r["attempts"] > 1 for r in records) > 20


def test_sigkill_halfway_then_resume_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "r.jsonl"
    with FaultServer(delay_s=0.02, fault_rate=0.1, stall_s=0.3, faults=("429", "500", "stall")) as server:
        cmd = eval_cmd(server.base_url, out, "--timeout", "0.2", "--concurrency", "4", "--cache", str(tmp_path / "c.sqlite"))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 80):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = out.read_bytes().count(b"\n")
        assert 0 < before < 200
        # a crash mid-write leaves at most an unfinished last line; simulate the worst case
        with open(out, "ab") as handle:
            handle.write(b'{"id": "L300-h1-skip-s0-q0", "status": "o')
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{before} already done" in result.stderr
    counts, records = ok_ids(out)
    assert len(counts) == 200 and set(counts.values()) == {1}
    assert len(records) == 200


def test_a_finished_grid_reruns_from_nothing(tmp_path):
    with FaultServer() as server:
        cmd = eval_cmd(server.base_url, tmp_path / "r.jsonl", "--cache", str(tmp_path / "c.sqlite"))
        assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
        requests = server.requests
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "200 already done" in again.stderr
        assert server.requests == requests  # nothing sent
        # a new results file for the same grid is answered from the cache
        cmd2 = eval_cmd(server.base_url, tmp_path / "r2.jsonl", "--cache", str(tmp_path / "c.sqlite"))
        third = subprocess.run(cmd2, capture_output=True, text=True, timeout=300)
        assert "200 answered (200 from cache)" in third.stderr
        assert server.requests == requests


def test_api_key_is_never_written(tmp_path):
    secret = "sk-hashhop-test-4f9a1c7e2b"
    with FaultServer() as server:
        out = tmp_path / "r.jsonl"
        cmd = eval_cmd(server.base_url, out, "--cache", str(tmp_path / "c.sqlite"), "--api-key", secret)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0
        assert server.authorizations == {f"Bearer {secret}"}  # it was sent
        env = {**os.environ, "OPENAI_API_KEY": secret + "-env"}
        result2 = subprocess.run(
            eval_cmd(server.base_url, tmp_path / "r2.jsonl", "--cache", str(tmp_path / "c2.sqlite")),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert result2.returncode == 0 and f"Bearer {secret}-env" in server.authorizations
    report = subprocess.run([sys.executable, "-m", "hashhop.cli", "report", str(out)], capture_output=True, text=True)
    assert report.returncode == 0
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []
    for text in (result.stdout, result.stderr, result2.stdout, result2.stderr, report.stdout, report.stderr):
        assert secret not in text
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert all(secret not in row[0] for row in db.execute("SELECT key || reply FROM replies"))


def test_dry_run_counts_before_spending(tmp_path):
    with FaultServer() as server:
        result = subprocess.run(
            eval_cmd(server.base_url, tmp_path / "r.jsonl", "--dry-run", "--price-in", "2.5", "--price-out", "10"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert server.requests == 0
    assert "200 requests" in result.stdout and "Cost at most $" in result.stdout
    assert not (tmp_path / "r.jsonl").exists()


def test_overflow_policies():
    runner = make_runner("openai:fake", RunnerOptions(base_url="http://127.0.0.1:9/v1", tokenizer="cl100k_base", max_context_tokens=1000))
    template = load_template("chat")
    grid = Grid(lengths=(400, 5000), hops=(1,), cot=(False,), samples=1, queries=1)
    with pytest.raises(Exception, match="exceeds the model's 1,000-token context"):
        build_items(grid, runner, template, "error")
    skipped = build_items(grid, runner, template, "skip")
    assert [i.status for i in skipped] == ["todo", "skipped"]
    shrunk = build_items(grid, runner, template, "shrink")
    assert shrunk[1].status == "todo" and shrunk[1].request_tokens <= 1000 and "shrunk" in shrunk[1].note
    assert all(i.request_tokens <= 1000 for i in shrunk)


def test_results_file_repairs_a_cut_line(tmp_path):
    path = tmp_path / "r.jsonl"
    whole = (
        json.dumps({"id": "a", "model": "m", "template": "chat", "status": "ok", "length": 1, "hops": 1, "cot": False, "correct": True, "outcome": "correct"})
        + "\n"
    )
    path.write_bytes(whole.encode() + b'{"id": "b", "sta')
    ResultsFile(str(path)).close()
    assert path.read_bytes() == whole.encode()
    assert [r["id"] for r in read_results(str(path))] == ["a"]
    long_cut = tmp_path / "long.jsonl"  # a cut line longer than the 1 MiB read-back block
    long_cut.write_bytes(whole.encode() + b'{"response": "' + b"x" * (3 << 20))
    ResultsFile(str(long_cut)).close()
    assert long_cut.read_bytes() == whole.encode()
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"something": "else"}\n')
    with pytest.raises(Exception, match="not a hashhop results record"):
        read_results(str(foreign))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope:x"], "unknown model"),
        (["--model", "openai:x", "--base-url", "ftp://x"], "not an http(s) URL"),
        (["--model", "openai:x", "--base-url", "http://127.0.0.1:9/v1", "--template", "/no/such.json"], "unknown template"),
        (["--model", "openai:x", "--base-url", "http://127.0.0.1:9/v1", "--tokenizer", "estimate:zero"], "estimate:CHARS_PER_TOKEN"),
        (["--model", "openai:x", "--base-url", "http://127.0.0.1:9/v1"], "is the server running"),
        (["--model", "openai:x", "--base-url", "http://127.0.0.1:9/v1", "--tokenizer", "cl100k_base", "--hops", "0"], "--hops"),
        (
            ["--model", "openai:x", "--base-url", "http://127.0.0.1:9/v1", "--tokenizer", "cl100k_base", "--lengths", "x"],
            "cannot read size",
        ),
    ],
)
def test_eval_bad_input(args, message):
    result = subprocess.run([sys.executable, "-m", "hashhop.cli", "eval", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_report_writes_every_artefact(tmp_path):
    with FaultServer() as server:
        out = tmp_path / "r.jsonl"
        assert subprocess.run(eval_cmd(server.base_url, out, "--no-cache"), capture_output=True, timeout=300).returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "hashhop.cli", "report", str(out), "--out", str(tmp_path / "rep")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    names = sorted(os.listdir(tmp_path / "rep"))
    assert names == ["accuracy_vs_length.png", "heatmap.png", "report.html", "summary.csv", "summary.md"]
    assert (tmp_path / "rep" / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    assert "| 300 | 1 | no | 100% |" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "hashhop.cli", "report", str(tmp_path / "missing.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 2 and "no results file" in bad.stderr
