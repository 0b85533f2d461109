"""The command line, run as a user runs it: in a fresh process."""

import hashlib
import os
import subprocess
import sys

import pytest


def hashhop(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "hashhop.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_main_job_prints_a_summary():
    result = hashhop("generate")
    assert result.returncode == 0, result.stderr
    assert "HashHop problem: 2 hop(s)" in result.stdout
    assert "cl100k_base tokens of 100,000 asked" in result.stdout
    assert result.stdout.count(" = '") >= 5


def test_help_explains_every_option_with_its_default():
    out = hashhop("generate", "--help").stdout
    for option in [
        "--context",
        "--tokenizer",
        "--hops",
        "--cot",
        "--hash-length",
        "--alphabet",
        "--queries",
        "--seed",
        "--samples",
        "--output",
        "--format",
    ]:
        assert option in out
    assert out.count("(default:") >= 10


# A pinned digest: the same spec and seed must give these bytes on every machine and NumPy version.
PINNED = ("--context", "5000", "--tokenizer", "chars", "--hops", "3", "--cot", "--seed", "42", "--format", "jsonl")
PINNED_SHA256 = "890fe9067870438acb6be8b253769423aed1374a42b1d5bba04018307094b494"


def test_same_bytes_in_two_processes_and_pinned(tmp_path):
    digests = []
    for i in range(2):
        env = {**os.environ, "PYTHONHASHSEED": str(i)}
        path = tmp_path / f"{i}.jsonl"
        result = hashhop("generate", *PINNED, "-o", str(path), env=env)
        assert result.returncode == 0, result.stderr
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert digests[0] == PINNED_SHA256


def test_stdout_streams_text():
    result = hashhop("generate", "--context", "800", "--tokenizer", "chars", "-o", "-")
    assert result.returncode == 0
    assert "\n\nCOMPLETION:\nHops=2\n\nCoT=False\n\n" in result.stdout


def test_samples_to_parquet(tmp_path):
    path = tmp_path / "grid.parquet"
    result = hashhop("generate", "--context", "2k", "--samples", "3", "-o", str(path))
    assert result.returncode == 0, result.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(path).num_rows == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hops", "0"], "hops must be"),
        (["--context", "1000", "--tokenizer", "chars", "--queries", "40"], "queries need"),
        (["--context", "30"], "too small for one chain"),
        (["--context", "20000", "--tokenizer", "chars", "--hash-length", "2", "--alphabet", "hex"], "distinct hashes"),
        (["--tokenizer", "nope"], "unknown tokenizer"),
        (["--tokenizer", "{broken}"], "cannot read Hugging Face tokenizer"),
        (["--context", "lots"], "cannot read size"),
        (["--samples", "0"], "--samples"),
        (["--alphabet", "a b"], "cannot hold"),
        (["--samples", "2", "--format", "text"], "text output holds one"),
        (["--output", "{missing}/x.jsonl"], "does not exist"),
        (["--output", "{dir}"], "is a folder"),
        (["--hops", "two"], "invalid int value"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    existing = tmp_path / "out.jsonl"
    existing.write_text("earlier results\n")
    args = [a.format(broken=broken, missing=tmp_path / "missing", dir=tmp_path) for a in args]
    if "--output" not in args:
        args += ["--output", str(existing)]
    result = hashhop("generate", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert existing.read_text() == "earlier results\n"
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl", "tokenizer.json"]
