import json
import subprocess
import sys

import pytest
import torch
from lab_helpers import tiny

from hashhop.checkpoint import load_checkpoint, save_checkpoint
from hashhop.errors import HashHopError
from hashhop.lab.config import RunConfig, load_configs
from hashhop.lab.experiments import smoke
from hashhop.lab.sweep import run_sweep, with_learning_rates
from hashhop.lab.train import build_model, train_run


def test_training_learns_associative_recall(tmp_path):
    cfg = RunConfig.from_dict(
        {
            "name": "ar",
            "task": {"name": "ar", "seq_len": 20, "vocab_size": 12},
            "steps": 300,
            "batch_size": 32,
            "eval_every": 100,
            "model": {"mixer": {"name": "hybrid", "inner": "attention", "positions": "none", "d_model": 32, "n_heads": 2}, "n_layers": 2},
            "optim": {"lr": 0.003, "warmup_steps": 40},
        }
    )
    summary = train_run(cfg, str(tmp_path), progress=False)
    assert summary["exact_match"] > 0.9  # chance is 1/5
    run = tmp_path / "ar"
    assert (run / "model.safetensors").exists() and (run / "metrics.csv").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_early_stop_and_finished_runs_are_not_redone(tmp_path):
    cfg = tiny(name="stop", target_accuracy=0.0, steps=1000)
    summary = train_run(cfg, str(tmp_path), progress=False)
    assert summary["steps"] == cfg.eval_every and summary["reached_target_step"] == cfg.eval_every
    again = train_run(cfg, str(tmp_path), progress=False)
    assert again == summary
    with pytest.raises(HashHopError, match="another config"):
        train_run(cfg.replace(steps=5), str(tmp_path), progress=False)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, run_interrupted):
    from safetensors.torch import load_file


    cfg = tiny(name="resume", steps=30, eval_every=10)
    train_run(cfg, str(tmp_path / "a"), progress=False)
    run_interrupted(cfg, str(tmp_path / "b"))
    assert (tmp_path / "b" / "resume" / "checkpoint.safetensors").exists()
    summary = train_run(cfg, str(tmp_path / "b"), progress=False)
    assert summary["steps"] == 30
    a = load_file(str(tmp_path / "a" / "resume" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "resume" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "resume" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]


def test_lr_sweep_names_and_resume(tmp_path):
    configs = with_learning_rates(smoke(), [1e-3, 3e-3])
    assert [c.name for c in configs] == [
        "smoke-attention-lr0.001",
        "smoke-attention-lr0.003",
        "smoke-short_conv-lr0.001",
        "smoke-short_conv-lr0.003",
    ]
    first = run_sweep(configs[:2], str(tmp_path), progress=False, log=lambda _: None)
    both = run_sweep(configs, str(tmp_path), progress=False, log=lambda _: None)
    assert both[:2] == first


def test_checkpoints_are_safetensors_and_corruption_is_a_clear_error(tmp_path):
    cfg = tiny(name="ckpt")
    train_run(cfg, str(tmp_path), progress=False)
    path = tmp_path / "ckpt" / "model.safetensors"
    model = build_model(cfg)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(HashHopError, match="corrupt or not safetensors"):
        load_checkpoint(str(bad), model)
    other = build_model(cfg.replace(**{"model.mixer.d_model": 64}))
    save_checkpoint(str(tmp_path / "other.safetensors"), other, None, {"step": 0})
    with pytest.raises(HashHopError, match="does not fit this model"):
        load_checkpoint(str(tmp_path / "other.safetensors"), model)


def test_config_files(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps([c.to_dict() for c in smoke()]))
    assert load_configs(str(path)) == smoke()
    path.write_text(json.dumps({"name": "x", "model": {"mixer": {"nme": "attention"}}}))
    with pytest.raises(HashHopError, match="unknown config field"):
        load_configs(str(path))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is missing")
def test_torchrun_two_processes_match_one(tmp_path):
    cfg = tiny(name="ddp", steps=12, eval_every=12, batch_size=8).to_dict()
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    one = subprocess.run(
        [sys.executable, "-m", "hashhop.cli", "lab", "run", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "hashhop.cli",
            "lab",
            "run",
            str(tmp_path / "cfg.json"),
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "one" / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "ddp" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_lab_cli_bad_input(tmp_path):
    def lab(*args):
        return subprocess.run([sys.executable, "-m", "hashhop.cli", "lab", *args], capture_output=True, text=True, timeout=120)

    for args, message in [
        (["run", "nonexistent"], "neither a config file nor an experiment"),
        (["run", "smoke", "--set", "model.mixer.name=nope"], "unknown mixer"),
        (["run", "smoke", "--set", "model.mixer.n_heads=3"], "not divisible"),
        (["run", "smoke", "--set", "nofield=1"], "no config field"),
        (["plot", str(tmp_path)], "holds no finished runs"),
    ]:
        result = lab(*args)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_depth_evaluation_scores_with_the_harness_scorer(tmp_path):
    from hashhop.lab.evaluate import depth_table, evaluate_lengths

    cfg = RunConfig.from_dict(
        {
            "name": "hh",
            "task": {"name": "hashhop_chars", "seq_len": 120, "hash_length": 4, "num_queries": 2},
            "model": {"mixer": {"name": "hybrid", "inner": "attention", "positions": "none", "d_model": 32, "n_heads": 2}},
            "steps": 4,
            "batch_size": 4,
            "eval_every": 4,
            "eval_batches": 1,
        }
    )
    train_run(cfg, str(tmp_path), progress=False)
    rows = evaluate_lengths(str(tmp_path / "hh"), [120, 240], samples=2)
    assert [r["length"] for r in rows] == [120, 240]
    assert all(r["answers"] == 4 and sum(r["outcomes"].values()) == 4 for r in rows)
    assert "| 240 | 4 |" in depth_table(rows)
    result = subprocess.run(
        [sys.executable, "-m", "hashhop.cli", "lab", "eval", str(tmp_path / "hh"), "--lengths", "120", "--samples", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "hashhop.cli", "lab", "eval", str(tmp_path), "--lengths", "120"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "not a finished run folder" in bad.stderr


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"steps": -5}, "steps must be a whole number"),
        ({"steps": 1e12}, "steps must be a whole number"),
        ({"steps": True}, "steps must be a whole number"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"eval_every": 0}, "eval_every must be"),
        ({"eval_batches": -1}, "eval_batches must be"),
        ({"seed": -1}, "seed must be"),
        ({"target_accuracy": float("nan")}, "target_accuracy must be"),
        ({"eval_lengths": [0]}, "eval_lengths must be"),
        ({"threads": 0}, "threads must be"),
        ({"read_loss": -0.1}, "read_loss must be"),
        ({"read_loss": "yes"}, "read_loss must be"),
        ({"copy_read_loss": -1}, "copy_read_loss must be"),
        ({"copy_read_loss": None}, "copy_read_loss must be"),
        ({"init_from": ""}, "init_from must be"),
        ({"name": ""}, "name must be"),
        ({"optim.lr": float("nan")}, "optim.lr must be a finite number"),
        ({"optim.lr": float("inf")}, "optim.lr must be a finite number"),
        ({"optim.lr": 0}, "optim.lr must be a finite number"),
        ({"optim.lr": "0.1"}, "optim.lr must be a finite number"),
        ({"optim.betas": [0.9]}, "optim.betas"),
        ({"optim.warmup_steps": -1}, "optim.warmup_steps"),
        ({"task.name": "nope"}, "unknown task"),
        ({"task.seq_len": 0}, "task.seq_len"),
        ({"task.power_a": 0}, "task.power_a"),
        ({"model.n_layers": 0}, "model.n_layers"),
        ({"model.mixer.d_model": 2.5}, "model.mixer.d_model"),
        ({"model.mixer.positions": "sideways"}, "unknown positions"),
        ({"model.mixer.inner": "hybrid"}, "unknown inner mixer"),
        ({"batch_size": 65536, "task.seq_len": 4096}, "tokens a batch"),
    ],
)
def test_run_config_checks_itself_naming_the_field(changes, message):
    with pytest.raises(HashHopError, match=message) as err:
        tiny(**changes)
    assert "\n" not in str(err.value)


def test_config_file_errors_name_the_file_and_the_field(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps([tiny(name="a").to_dict(), {**tiny(name="b").to_dict(), "steps": -5}]))
    with pytest.raises(HashHopError, match=r"item 1: steps must be"):
        load_configs(str(path))
    path.write_text("[]")
    with pytest.raises(HashHopError, match="empty list"):
        load_configs(str(path))
    path.write_text('{"steps": NaN}')
    with pytest.raises(HashHopError, match="steps must be"):
        load_configs(str(path))
    with pytest.raises(HashHopError, match="not a regular file"):
        load_configs("/dev/zero")


def test_a_sweep_is_checked_whole_before_anything_is_written(tmp_path):
    from hashhop.lab.sweep import check_sweep

    good = tiny(name="good")
    bad = tiny(name="bad", **{"task.seq_len": 4})  # mqar needs seq_len >= 4 x num_pairs
    with pytest.raises(HashHopError, match="run bad: mqar needs"):
        run_sweep([good, bad], str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("keep")
    with pytest.raises(HashHopError, match="is a file"):
        check_sweep([good], str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "keep"
    with pytest.raises(HashHopError, match="no runs"):
        check_sweep([], str(tmp_path / "out"))


def test_read_summaries_rejects_corrupt_summaries_in_one_line(tmp_path):
    from hashhop.lab.sweep import read_summaries

    run = tmp_path / "run"
    run.mkdir()
    for text in ("{not json", "[" * 100_000, '{"name": "x"}', '{"name": 1, "config": {}, "params": 1, "state_bytes": 1, "steps": 1}'):
        (run / "summary.json").write_text(text)
        with pytest.raises(HashHopError, match="not a run summary"):
            read_summaries(str(tmp_path))
