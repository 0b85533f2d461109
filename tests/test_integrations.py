"""lm-evaluation-harness, inspect_ai and Hugging Face datasets, each run for real against the loopback server."""

import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter

import pytest

from hashhop.testing import FaultServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_grid_export_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "grid.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "hashhop.cli", "export", "-o", str(out), "--lengths", "300,600", "--hops", "1,2", "--samples", "1"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    table = datasets.load_dataset("parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "c"))
    assert table.num_rows == 2 * 2 * 2 * 1 * 2
    row = table[0]
    assert row["chain"][0] in row["text"] and row["expected"] in (row["chain"][-1], " = ".join(row["chain"][1:]))


def test_lm_eval_task_folder(tmp_path):
    pytest.importorskip("lm_eval")
    with FaultServer() as server:
        cmd = [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "local-chat-completions",
            "--model_args",
            f"base_url={server.base_url}/chat/completions,model=fake,tokenizer_backend=none,num_concurrent=4",
            "--include_path",
            os.path.join(ROOT, "integrations", "lm_eval"),
            "--tasks",
            "hashhop",
            "--apply_chat_template",
            "--metadata",
            json.dumps({"lengths": [300], "hops": [1, 2], "samples": 1}),
            "--output_path",
            str(tmp_path / "out"),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OPENAI_API_KEY": "x"})
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.requests == 8
    results = next((tmp_path / "out").rglob("results_*.json"))
    metrics = json.loads(results.read_text())["results"]["hashhop"]
    assert metrics["exact_match,none"] == 1.0  # the server solves HashHop, so every answer must score


def readme_command(marker):
    """The command line of README.md's inline code span that holds ``marker`` (the documented one, verbatim)."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        spans = [span for line in handle if marker in line for span in re.findall(r"`([^`]+)`", line) if marker in span]
    assert len(spans) == 1, spans
    return spans[0]


def test_inspect_ai_readme_command(tmp_path):
    """README.md's inspect command, run as written (placeholders filled in) against the loopback server, which
    like llama.cpp or vLLM serves no Responses API: the doc and the test cannot drift apart."""
    pytest.importorskip("inspect_ai")
    pytest.importorskip("openai")
    words = shlex.split(readme_command("inspect eval hashhop/hashhop"))
    assert "responses_api=false" in words  # local servers need it (else HTTP 404 on /v1/responses)
    with FaultServer() as server:
        env = dict(os.environ)
        while "=" in words[0]:  # VAR=VALUE before the command
            name, value = words.pop(0).split("=", 1)
            env[name] = value.replace("http://HOST/v1", server.base_url).replace("KEY", "x")
        assert words[:3] == ["inspect", "eval", "hashhop/hashhop"] and env["OPENAI_BASE_URL"] == server.base_url
        words = [w.replace("openai/NAME", "openai/fake") for w in words]
        cmd = [os.path.join(os.path.dirname(sys.executable), "inspect"), *words[1:], "--log-dir", str(tmp_path / "logs"), "--log-format", "json"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert set(server.paths) == {"/v1/chat/completions"}, Counter(server.paths)
        assert server.requests == 2 * 2 * 2 * 2 * 2  # lengths x hops x cot x 2 samples x 2 queries
    log = json.loads(next((tmp_path / "logs").glob("*.json")).read_text())
    assert log["status"] == "success"
    assert log["results"]["scores"][0]["metrics"]["accuracy"]["value"] == 1.0


def test_inspect_ai_without_the_flag_fails_on_a_local_server(tmp_path):
    """Why the README's flag is there: without it inspect asks the Responses API, which the server does not serve."""
    pytest.importorskip("inspect_ai")
    pytest.importorskip("openai")
    with FaultServer() as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "x"}
        cmd = [
            os.path.join(os.path.dirname(sys.executable), "inspect"),
            "eval",
            "hashhop/hashhop",
            "--model",
            "openai/fake",
            *("-T", "lengths=300", "-T", "hops=1", "-T", "cot=off", "-T", "samples=1", "-T", "queries=1"),
            *("--max-retries", "0", "--log-dir", str(tmp_path / "logs"), "--log-format", "json"),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert "/v1/responses" in server.paths, result.stderr[-3000:]
    log = json.loads(next((tmp_path / "logs").glob("*.json")).read_text())
    assert log["status"] != "success" or log["results"]["scores"][0]["metrics"]["accuracy"]["value"] < 1.0
