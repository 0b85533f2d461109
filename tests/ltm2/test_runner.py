"""LTM-2 weights (train -> ship -> load), the builtin:ltm2 runner and its prefix cache, the CLI's errors."""

import asyncio
import json
import os
import subprocess
import sys

import pytest
import torch

from hashhop.errors import HashHopError
from hashhop.lab.config import RunConfig
from hashhop.lab.train import train_run
from hashhop.ltm2.engine import Engine
from hashhop.ltm2.load import load_ltm2
from hashhop.ltm2.train import card_path, ship
from hashhop.runners.base import Request, RunnerOptions
from hashhop.runners.builtin import LTM2Runner


def tiny_config(name: str = "tiny") -> RunConfig:
    return RunConfig.from_dict(
        {
            "name": name,
            "task": {"name": "ltm_mixture", "seq_len": 300, "extra": {"mix": {"kv": 1.0, "code": 0.0}}},
            "model": {
                "mixer": {"name": "ltm2", "d_model": 16, "n_heads": 2, "window": 32, "conv_kernel": 3, "key_dim": 8, "value_dim": 4},
                "n_layers": 1,
                "vocab_size": 256,
                "mlp_ratio": 0,
            },
            "steps": 2,
            "batch_size": 2,
            "eval_every": 1,
            "eval_batches": 1,
        }
    )


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    root = tmp_path_factory.mktemp("ltm2")
    cfg = tiny_config()
    summary = train_run(cfg, str(root / "runs"), progress=False, log=lambda *_: None)
    out = str(root / "weights.safetensors")
    ship(str(root / "runs" / cfg.name), out, [summary], {"bytes": 0, "sha256": "-"}, "hashhop train --model ltm2 --steps 2", 1.0)
    return root, out


def test_ship_and_load_round_trip(shipped):
    root, out = shipped
    from_run = load_ltm2(str(root / "runs" / "tiny"))
    from_file = load_ltm2(out)
    for (name, a), (_, b) in zip(from_run.state_dict().items(), from_file.state_dict().items()):
        assert torch.equal(a, b), name
    card = open(card_path(out)).read()
    assert "hashhop train --model ltm2 --steps 2" in card and "| seed | 0 |" in card
    random_init = load_ltm2(out, random_init=True)
    assert any(not torch.equal(a, b) for a, b in zip(random_init.state_dict().values(), from_file.state_dict().values()))


def test_load_errors(tmp_path, shipped):
    with pytest.raises(HashHopError, match="no LTM-2 weights"):
        load_ltm2(str(tmp_path / "missing.safetensors"))
    with pytest.raises(HashHopError, match="not an LTM-2 run folder"):
        load_ltm2(str(tmp_path))
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(HashHopError, match="not an LTM-2 weights file"):
        load_ltm2(str(other))


def test_runner_prefix_cache_gives_the_fresh_answer(shipped, monkeypatch):
    _, out = shipped
    runner = LTM2Runner(out, RunnerOptions())
    context = bytes(range(32, 127)) * 20
    prefills = []
    original = runner.engine.prefill
    monkeypatch.setattr(runner.engine, "prefill", lambda data: prefills.append(len(data)) or original(data))
    answers = []
    for query in ("abc = '", "xyz = '"):
        reply = asyncio.run(runner.complete(Request(max_tokens=8, prompt=context.decode() + query, stop=("'",))))
        answers.append(reply.text)
    assert len(prefills) == 1  # the second prompt continued from the cached prefix
    fresh = Engine(load_ltm2(out))
    fresh.prefill(context + b"xyz = '")
    expected = fresh.generate(8, (b"'",)).decode("utf-8", errors="replace").split("'")[0]
    assert answers[1] == expected


def test_runner_refuses_other_tokenizers(shipped):
    with pytest.raises(HashHopError, match="reads bytes"):
        LTM2Runner(shipped[1], RunnerOptions(tokenizer="cl100k"))


def test_train_cli_bad_out_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "hashhop.cli", "train", "--model", "ltm2", "--out", str(tmp_path / "w.txt"), "--runs", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "safetensors" in proc.stderr
    assert not os.listdir(tmp_path) or json.dumps(os.listdir(tmp_path))
