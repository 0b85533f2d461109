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


# -- every command: bad input is one line on stderr, exit status 2, and earlier results stay whole ------------------
# Run in-process (hashhop.cli.main), as the console script runs it; argparse's own errors arrive as SystemExit.
def run_main(argv, capsys):
    from hashhop.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, message=""):
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err


RECORD = {
    "id": "a",
    "model": "m",
    "template": "chat",
    "status": "ok",
    "length": 1000,
    "hops": 1,
    "cot": False,
    "correct": True,
    "outcome": "correct",
    "links_right": 1,
    "prompt_tokens": 900,
}


def write_records(path, *records):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        ({**RECORD, "length": "1000"}, "field 'length' is str, not int"),
        ({**RECORD, "cot": 1}, "field 'cot'"),
        ({**RECORD, "links_right": 1.5}, "links_right"),
        ({**RECORD, "length": -5}, "length must be a whole number"),
        ({**RECORD, "length": 10**30}, "length must be a whole number"),
        ({**RECORD, "hops": 0}, "hops must be a whole number"),
        ({**RECORD, "links_right": 7}, "links_right must be 0 to hops"),
        ('{"id": ' + "[" * 100_000 + "]" * 100_000 + "}", "not JSON"),
        ("[" * 100_000, "not JSON"),
        ('{"id": 1' + "0" * 5000 + "}", "not a hashhop results record"),
        ("\xff\xfe not text", "not JSON"),
    ],
)
def test_report_rejects_bad_records_in_one_line_and_keeps_the_earlier_report(tmp_path, capsys, content, message):
    results = tmp_path / "results.jsonl"
    if isinstance(content, dict):
        write_records(results, RECORD, content)
    else:
        results.write_text(content + "\n", errors="surrogateescape")
    report = tmp_path / "report"
    report.mkdir()
    (report / "summary.md").write_text("earlier report\n")
    code, _, err = run_main(["report", results, "--out", report], capsys)
    assert_one_line_error(code, err, message)
    assert sorted(os.listdir(report)) == ["summary.md"]
    assert (report / "summary.md").read_text() == "earlier report\n"
    # no report folder is made for bad records
    code, _, err = run_main(["report", results, "--out", tmp_path / "new"], capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "new").exists()


def test_report_bad_paths_fail_fast_in_one_line(tmp_path, capsys):
    import time

    results = write_records(tmp_path / "results.jsonl", RECORD)
    (tmp_path / "file.txt").write_text("keep\n")
    for argv, message in [
        (["report", results, "--out", "/proc/r"], "cannot write the report into /proc/r"),
        (["report", results, "--out", tmp_path / "file.txt"], "is a file"),
        (["report", results, "--threshold", "nan"], "not a finite number"),
        (["report", results, "--threshold", "0"], "--threshold"),
        (["report", tmp_path], "is a folder"),
        (["report", tmp_path / "missing.jsonl"], "no results file"),
    ]:
        code, _, err = run_main(argv, capsys)
        assert_one_line_error(code, err, message)
    assert (tmp_path / "file.txt").read_text() == "keep\n"
    started = time.perf_counter()
    code, _, err = run_main(["report", "/dev/zero", "--out", tmp_path / "z"], capsys)
    assert_one_line_error(code, err, "/dev/zero")
    assert time.perf_counter() - started < 5


def test_report_files_are_written_atomically(tmp_path, capsys, monkeypatch):
    results = write_records(tmp_path / "results.jsonl", RECORD)
    report = tmp_path / "report"
    code, _, err = run_main(["report", results, "--out", report], capsys)
    assert code == 0, err
    before = {name: (report / name).read_bytes() for name in os.listdir(report)}
    assert sorted(before) == ["accuracy_vs_length.png", "heatmap.png", "report.html", "summary.csv", "summary.md"]
    write_records(results, RECORD, {**RECORD, "id": "b", "length": 2000, "correct": False, "outcome": "empty"})

    real_replace, calls = os.replace, []

    def disk_full_on_third(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full_on_third)
    code, _, err = run_main(["report", results, "--out", report], capsys)
    assert_one_line_error(code, err, "No space left on device")
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(os.listdir(report)) == sorted(before)  # no .partial files left behind
    for name, data in before.items():
        now = (report / name).read_bytes()
        assert now == data or name in ("summary.csv", "summary.md"), name  # each file old or new, never cut short
    assert b"2,000" in (report / "summary.md").read_bytes()  # the first two were replaced whole
    assert (report / "heatmap.png").read_bytes() == before["heatmap.png"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "nan"], "not a finite number"),
        (["--lr", "inf"], "not a finite number"),
        (["--lr", "0"], "lr must be"),
        (["--seed", "-1"], "seed must be"),
        (["--batch-size", "1000000000"], "batch_size must be"),
        (["--steps", "0"], "steps must be"),
        (["--context-chars", "1e400"], "invalid int value"),
        (["--out", "/proc/x.safetensors"], "cannot write weights file /proc/x.safetensors"),
        (["--out", "{tmp}"], "PATH.safetensors"),
        (["--out", "{tmp}/file.txt/x.safetensors"], "is not a folder"),
        (["--out", "{tmp}/folder.safetensors"], "is a folder"),
    ],
)
def test_train_bad_input_fails_before_training_and_keeps_the_weights(tmp_path, capsys, monkeypatch, argv, message):
    import hashhop.ltm.training as training

    def no_training(*args, **kwargs):
        raise AssertionError("training started with bad input")

    monkeypatch.setattr(training, "train_ltm", no_training)
    (tmp_path / "file.txt").write_text("keep\n")
    (tmp_path / "folder.safetensors").mkdir()
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"earlier weights")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(weights)]
    code, _, err = run_main(["train", *argv], capsys)
    assert_one_line_error(code, err, message)
    assert weights.read_bytes() == b"earlier weights"
    assert sorted(os.listdir(tmp_path)) == ["file.txt", "folder.safetensors", "w.safetensors"]


def test_a_failed_training_run_keeps_the_earlier_weights(tmp_path, capsys, monkeypatch):
    import hashhop.ltm.training as training
    from hashhop.errors import HashHopError

    def fails(*args, **kwargs):
        raise HashHopError("out of data")

    monkeypatch.setattr(training, "loss_and_metrics", fails)  # the real loop, failing at its first step
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"earlier weights")
    code, _, err = run_main(["train", "--steps", "1", "--batch-size", "1", "--no-progress", "--out", weights], capsys)
    assert_one_line_error(code, err, "out of data")
    assert weights.read_bytes() == b"earlier weights"
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e-9", "0", "-1", "1e303", "1e400"])
def test_serve_rejects_request_sizes_that_are_not_a_positive_number_of_bytes(capsys, monkeypatch, value):
    import hashhop.ltm.serve as serve

    def no_server(*args, **kwargs):
        raise AssertionError("the server started with bad input")

    monkeypatch.setattr(serve, "serve", no_server)
    code, _, err = run_main(["serve", f"--max-request-mb={value}"], capsys)
    assert_one_line_error(code, err, "--max-request-mb")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--gpu-memory", "nan"], "not a finite number"),
        (["--gpu-memory", "0"], "--gpu-memory"),
        (["--gpu-memory", "-1"], "--gpu-memory"),
        (["--context", "0"], "--context"),
        (["--kv-bytes", "0"], "--kv-bytes"),
        (["--config", "/dev/zero"], "/dev/zero"),
        (["--config", "/proc/x"], "no config"),
    ],
)
def test_cost_bad_input(capsys, argv, message):
    code, _, err = run_main(["cost", "--no-ltm", *argv], capsys)
    assert_one_line_error(code, err, message)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "steps=abc"], "steps must be a whole number"),
        (["--set", "steps=1e12"], "steps must be a whole number"),
        (["--set", "steps=1000000000000"], "steps must be a whole number"),
        (["--set", "steps=0"], "steps must be a whole number"),
        (["--set", "optim.lr=nan"], "optim.lr must be a finite number"),
        (["--set", "optim.lr=NaN"], "optim.lr must be a finite number"),
        (["--set", "optim.lr=Infinity"], "optim.lr must be a finite number"),
        (["--set", "batch_size=-3"], "batch_size must be"),
        (["--set", "batch_size=0"], "batch_size must be"),
        (["--set", "eval_every=0"], "eval_every must be"),
        (["--set", "a.b.c=1"], "no config field 'a.b.c'"),
        (["--set", "steps.x=1"], "no config field 'steps.x'"),
        (["--set", "task=3"], "must be an object"),
        (["--set", "name=../escape"], "folder name"),
        (["--set", "task.seq_len=100000"], "mqar needs"),
        (["--set", "model.mixer.d_model=65536"], "too large"),
        (["--set", "steps"], "FIELD=VALUE"),
        (["--lrs=-1"], "optim.lr must be"),
        (["--lrs", "0"], "optim.lr must be"),
        (["--lrs", "nan"], "optim.lr must be"),
        (["--lrs", "1e-3,,3e-3"], "comma-separated list"),
        (["--out", "{keep}"], "is a file"),
        (["--out", "/proc/lab"], "cannot write runs into /proc/lab"),
        (["{config}"], "steps must be a whole number from 1"),
        (["{bad_json}"], "not valid JSON"),
        (["/dev/zero"], "not a regular file"),
        (["{tmp}"], "is a folder"),
    ],
)
def test_lab_run_bad_input_is_one_line_and_trains_nothing(tmp_path, capsys, monkeypatch, argv, message):
    import hashhop.lab.sweep as sweep

    def no_training(*args, **kwargs):
        raise AssertionError("training started with bad input")

    monkeypatch.setattr(sweep, "train_run", no_training)
    keep = tmp_path / "keep.txt"
    keep.write_text("keep\n")
    (tmp_path / "config.json").write_text('{"steps": -5}')
    (tmp_path / "bad.json").write_text('{"steps": ' + "[" * 100_000)
    subs = {"{keep}": keep, "{config}": tmp_path / "config.json", "{bad_json}": tmp_path / "bad.json", "{tmp}": tmp_path}
    argv = [str(subs.get(a, a)) for a in argv]
    if not argv[0].startswith(("/", str(tmp_path))) or argv[0].startswith("--"):
        argv = ["smoke", *argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "runs")]
    code, _, err = run_main(["lab", "run", *argv], capsys)
    assert_one_line_error(code, err, message)
    assert keep.read_text() == "keep\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--timeout", "nan"], "not a finite number"),
        (["--timeout", "0"], "--timeout"),
        (["--max-answer-tokens", "0"], "max_answer_tokens must be at least 1"),
        (["--price-in", "-1", "--dry-run"], "price_in_per_m must be a price >= 0"),
        (["--price-out", "inf", "--dry-run"], "not a finite number"),
        (["--lengths", "1k,,2k"], "has an empty item"),
        (["--concurrency", "0"], "concurrency (--concurrency) must be at least 1"),
        (["--retries", "-1"], "--retries"),
        (["--samples", "0"], "grid samples"),
        (["--hops", "0"], "grid hops"),
    ],
)
def test_eval_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    output = tmp_path / "results.jsonl"
    output.write_text("")
    code, _, err = run_main(["eval", "--model", "builtin:ltm", "--no-cache", "-o", output, *argv], capsys)
    assert_one_line_error(code, err, message)
    assert output.read_text() == ""
    assert os.listdir(tmp_path) == ["results.jsonl"]


@pytest.mark.parametrize(
    "config, message",
    [
        ({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 1e400}, "hidden_size must be a whole number"),
        ({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": float("nan")}, "hidden_size must be a whole number"),
        ({"num_hidden_layers": "2", "num_attention_heads": 4, "hidden_size": 64}, "num_hidden_layers must be a whole number"),
        ({"num_hidden_layers": -2, "num_attention_heads": 4, "hidden_size": 64}, "num_hidden_layers must be a whole number"),
        ({"num_hidden_layers": 2, "num_attention_heads": 0, "hidden_size": 64}, "num_attention_heads must be a whole number"),
        ({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 0}, "hidden_size must be a whole number"),
        ({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 2}, "smaller than num_attention_heads"),
        ({"num_hidden_layers": 2.5, "num_attention_heads": 4, "hidden_size": 64}, "num_hidden_layers must be a whole number"),
        ({"num_hidden_layers": True, "num_attention_heads": 4, "hidden_size": 64}, "num_hidden_layers must be a whole number"),
        ({"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": -1, "hidden_size": 64}, "num_key_value_heads"),
        ({"num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": "x", "hidden_size": 64}, "head_dim"),
        ({"num_attention_heads": 4, "hidden_size": 64}, "lacks 'num_hidden_layers'"),
        ({"text_config": 3}, "lacks 'num_hidden_layers'"),
        ("[" * 100_000, "not readable JSON"),
        ('{"num_hidden_layers": 1' + "0" * 5000 + "}", "not readable JSON"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_cost_config_file_values_are_checked(tmp_path, capsys, config, message):
    import json

    path = tmp_path / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    code, _, err = run_main(["cost", "--no-ltm", "--config", path], capsys)
    assert_one_line_error(code, err, message)


def test_cost_accepts_whole_float_sizes(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text('{"num_hidden_layers": 2.0, "num_attention_heads": 4, "hidden_size": 64}')
    code, out, err = run_main(["cost", "--no-ltm", "--config", path, "--gpu-memory", "1"], capsys)
    assert code == 0, err
    assert "| memory per context token | 512 B (KV cache) |" in out
    code, _, err = run_main(["cost", "--no-ltm", "--gpu-memory", "1e-300"], capsys)
    assert_one_line_error(code, err, "--gpu-memory")
