"""LTM-2 weights (train -> ship -> load), the builtin:ltm2 runner and its prefix cache, the CLI's errors."""

import asyncio
import json
import os
import subprocess
import sys

import pytest
import torch

from hashhop.errors import HashHopError
from hashhop.eval.run import default_output
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


def test_runner_model_args_set_the_engines_decoding(shipped):
    _, out = shipped
    runner = LTM2Runner(out, RunnerOptions(model_args={"beams": "3", "length_penalty": "1"}))
    assert (runner.engine.beams, runner.engine.length_penalty) == (3, 1.0)
    # the decoding is part of the name results record and of the response cache's key
    assert runner.name == f"builtin:ltm2:{out}[beams=3,length_penalty=1]" and runner.cache_identity == runner.name
    assert LTM2Runner(out, RunnerOptions()).name == f"builtin:ltm2:{out}"
    # the default decoding has the default name, whichever way it is asked for; distinct values, distinct names
    assert LTM2Runner(out, RunnerOptions(model_args={"beams": "1"})).name == f"builtin:ltm2:{out}"
    assert LTM2Runner(out, RunnerOptions(model_args=None)).name == f"builtin:ltm2:{out}"
    close = LTM2Runner(out, RunnerOptions(model_args={"beams": 3, "length_penalty": 1.0000001}))
    assert close.name == f"builtin:ltm2:{out}[beams=3,length_penalty=1.0000001]"
    prompt = (bytes(range(32, 127)) * 4).decode() + "abc = '"
    reply = asyncio.run(runner.complete(Request(max_tokens=8, prompt=prompt)))
    fresh = Engine(load_ltm2(out), beams=3, length_penalty=1)
    fresh.prefill(prompt.encode())
    assert reply.text == fresh.generate(8).decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    "model_args, message",
    [
        ({"beams": "x"}, "model arg beams='x': not a whole number"),
        ({"beams": "\u0664"}, "not a whole number"),  # an Arabic-Indic 4: int() takes it, the arg does not
        ({"beams": "4_0"}, "not a whole number"),
        ({"beams": "0"}, "beams must be a whole number from 1 to 256"),
        ({"beams": "257"}, "beams must be a whole number from 1 to 256"),
        ({"beams": 4.0}, "beams must be a whole number"),
        ({"beams": "4", "length_penalty": "nan"}, "not a number"),
        ({"beams": "4", "length_penalty": "9"}, "length_penalty must be a number from 0 to 4"),
        ({"length_penalty": "1"}, "give beams >= 2 with it"),
        ({"top_k": "3"}, "takes no model arg 'top_k': it takes beams, length_penalty"),
        ({1: "3"}, "must be a dict with string keys"),
    ],
)
def test_runner_model_args_errors(shipped, model_args, message):
    with pytest.raises(HashHopError, match=message):
        LTM2Runner(shipped[1], RunnerOptions(model_args=model_args))


def test_eval_cli_model_args(shipped, tmp_path):
    def cli(*flags):
        return subprocess.run(
            [sys.executable, "-m", "hashhop.cli", "eval", *flags], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )

    grid = ["--lengths", "2k", "--hops", "1", "--cot", "off", "--samples", "1", "--dry-run", "--no-progress"]
    dry = cli("--model", f"builtin:ltm2:{shipped[1]}", "--model-args", "beams=2, length_penalty=1", *grid)
    assert dry.returncode == 0 and f"builtin:ltm2:{shipped[1]}[beams=2,length_penalty=1]" in dry.stdout, dry.stderr
    # a real run: another decoding writes another results file by default (a resume refuses another model's file)
    run = cli(
        "--model", f"builtin:ltm2:{shipped[1]}", "--model-args", "beams=2", *grid[:-2], "--lengths", "1k", "--queries", "1", "--no-progress"
    )
    assert run.returncode == 0, run.stderr
    (written,) = os.listdir(tmp_path / "results")
    assert written.endswith("_beams_2.jsonl") and os.path.join("results", written) == default_output(f"builtin:ltm2:{shipped[1]}[beams=2]")
    assert json.loads(open(tmp_path / "results" / written).readline())["model"] == f"builtin:ltm2:{shipped[1]}[beams=2]"
    for flags, message in [
        (("--model", "openai:x", "--model-args", "beams=2"), "openai:x takes no model arg 'beams': it takes none"),
        (("--model", f"builtin:ltm2:{shipped[1]}", "--model-args", "beams"), "model args must be KEY=VALUE pairs"),
        (("--model", f"builtin:ltm2:{shipped[1]}", "--model-args", "beams=2,beams=3"), "model arg 'beams' is given twice"),
    ]:
        bad = cli(*flags, *grid)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_evaluate_refuses_model_args_beside_a_runner(shipped):
    from hashhop import evaluate

    runner = LTM2Runner(shipped[1], RunnerOptions())
    with pytest.raises(HashHopError, match="give the model's name, not a Runner"):
        evaluate(runner, runner_options=RunnerOptions(model_args={"beams": "2"}), dry_run=True)
