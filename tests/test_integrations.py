"""lm-evaluation-harness, inspect_ai and Hugging Face datasets, each run for real against the loopback server."""

import json
import os
import subprocess
import sys

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


def test_inspect_ai_entry_point(tmp_path):
    pytest.importorskip("inspect_ai")
    pytest.importorskip("openai")
    with FaultServer() as server:
        env = {**os.environ, "FAKE_BASE_URL": server.base_url, "FAKE_API_KEY": "x"}
        cmd = [
            os.path.join(os.path.dirname(sys.executable), "inspect"),
            "eval",
            "hashhop/hashhop",
            "--model",
            "openai-api/fake/fake",
            "-T",
            "lengths=300",
            "-T",
            "hops=1,2",
            "-T",
            "samples=1",
            "--log-dir",
            str(tmp_path / "logs"),
            "--log-format",
            "json",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.requests == 8
    log = json.loads(next((tmp_path / "logs").glob("*.json")).read_text())
    assert log["status"] == "success"
    assert log["results"]["scores"][0]["metrics"]["accuracy"]["value"] == 1.0
