"""The lab's files and configs: each config part checks itself; run files are written atomically; a corrupt
metrics line is skipped with a warning; ``lab eval`` of a bad run folder is one line naming the file."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from lab_helpers import tiny

from hashhop.errors import HashHopError
from hashhop.lab import config as config_module
from hashhop.lab.data import TaskConfig
from hashhop.lab.mixers import MixerConfig
from hashhop.lab.model import ModelConfig
from hashhop.lab.train import build_model, train_run


# -- 6. each part checks itself; the run config adds where the part sits ------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TaskConfig(name="nope"), "name: unknown task 'nope'"),
        (lambda: TaskConfig(seq_len=0), "seq_len must be a whole number from 1"),
        (lambda: TaskConfig(seq_len=64.0), "seq_len must be a whole number"),
        (lambda: TaskConfig(vocab_size=True), "vocab_size must be a whole number"),
        (lambda: TaskConfig(power_a=float("nan")), "power_a must be a finite number"),
        (lambda: TaskConfig(power_a=float("inf")), "power_a must be a finite number"),
        (lambda: TaskConfig(chain_of_thought="yes"), "chain_of_thought must be true or false"),
        (lambda: TaskConfig(extra=[]), "extra must be an object"),
        (lambda: dataclasses.replace(TaskConfig(), hops=0), "hops must be a whole number from 1"),
        (lambda: MixerConfig(name="transformer-xl"), "name: unknown mixer"),
        (lambda: MixerConfig(d_model=2.5), "d_model must be a whole number"),
        (lambda: MixerConfig(d_model=30, n_heads=4), "d_model 30 is not divisible by n_heads 4"),
        (lambda: MixerConfig(n_heads=0), "n_heads must be a whole number from 1"),
        (lambda: MixerConfig(positions="sideways"), "positions: unknown positions"),
        (lambda: MixerConfig(name="hybrid", inner="hybrid"), "inner: unknown inner mixer"),
        (lambda: MixerConfig(chunk=-1), "chunk must be"),
        (lambda: ModelConfig(n_layers=0), "n_layers must be a whole number from 1"),
        (lambda: ModelConfig(mlp_ratio=float("nan")), "mlp_ratio must be a whole number"),
        (lambda: ModelConfig(max_len=0), "max_len must be"),
        (lambda: ModelConfig(mixer={"name": "attention"}), "mixer must be an object of MixerConfig fields"),
        (lambda: ModelConfig(mixer=MixerConfig(d_model=65536, n_heads=1)), "too large for the lab"),
    ],
)
def test_each_config_part_checks_itself_in_one_line(make, message):
    with pytest.raises(HashHopError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"task.seq_len": 0}, "task.seq_len must be a whole number"),
        ({"task.name": "nope"}, "task.name: unknown task"),
        ({"model.n_layers": 0}, "model.n_layers must be"),
        ({"model.mixer.d_model": 2.5}, "model.mixer.d_model must be"),
        ({"model.mixer.n_heads": 3}, "model.mixer.d_model 32 is not divisible by n_heads 3"),
        ({"optim.lr": 0}, "optim.lr must be a finite number"),
    ],
)
def test_the_run_config_names_where_a_part_sits(changes, message):
    with pytest.raises(HashHopError, match=message) as err:
        tiny(**changes)
    assert str(err.value).startswith(message.split(" ")[0]) and ".task.task" not in str(err.value)


def test_the_run_config_does_not_check_its_parts_again():
    for name in ("_check_task", "_check_model", "_whole", "_number", "_text"):
        assert not hasattr(config_module, name), name


# -- 5. run files: atomic, and a corrupt metrics line is skipped with a warning -----------------------
def test_every_run_file_is_written_atomically(tmp_path, monkeypatch):
    from hashhop.lab import train as train_module

    written = []
    real = train_module.write_atomically

    def recording(path, data):
        written.append(os.path.basename(path))
        real(path, data)

    monkeypatch.setattr(train_module, "write_atomically", recording)
    train_run(tiny(name="atomic", steps=20, eval_every=10), str(tmp_path), progress=False)
    assert sorted(set(written)) == ["config.json", "metrics.csv", "model.safetensors", "summary.json"]
    assert written[-1] == "summary.json"  # last: a summary means the run is finished
    assert not [n for n in os.listdir(tmp_path / "atomic") if n.endswith(".partial")]


def test_a_failed_write_of_the_weights_leaves_no_file_and_the_run_resumes(tmp_path, monkeypatch):
    import hashhop.checkpoint

    cfg = tiny(name="full", steps=20, eval_every=10)
    real_fsync = os.fsync

    def disk_full_for_the_weights(fd):
        if ".model.safetensors." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(hashhop.checkpoint.os, "fsync", disk_full_for_the_weights)
    with pytest.raises(HashHopError, match="No space left on device") as err:
        train_run(cfg, str(tmp_path), progress=False)
    assert "\n" not in str(err.value)
    run = tmp_path / "full"
    assert sorted(os.listdir(run)) == ["checkpoint.safetensors", "config.json", "metrics.jsonl"]  # no half weights, no summary
    monkeypatch.setattr(hashhop.checkpoint.os, "fsync", real_fsync)
    assert train_run(cfg, str(tmp_path), progress=False)["steps"] == 20


def test_a_corrupt_metrics_line_is_skipped_with_a_warning_on_resume(tmp_path, capsys, run_interrupted):
    cfg = tiny(name="log", steps=30, eval_every=10)
    run_interrupted(cfg, str(tmp_path))
    metrics = tmp_path / "log" / "metrics.jsonl"
    with open(metrics, "ab") as handle:
        handle.write(b'{"step": 10, "loss": 1.0\n' + b"[" * 100_000 + b"\n\xff\xfe\n" + b'{"step": "x"}\n' + b"[1, 2]\n")
    capsys.readouterr()
    summary = train_run(cfg, str(tmp_path), progress=False)
    assert summary["steps"] == 30
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 5 line(s)" in warnings[0] and "metrics.jsonl" in warnings[0], err
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [10, 20, 30]
    assert (tmp_path / "log" / "metrics.csv").read_text().splitlines()[0].startswith("step,")


def test_a_corrupt_summary_is_one_line(tmp_path):
    run = tmp_path / "bad"
    run.mkdir()
    (run / "summary.json").write_text("[" * 100_000)
    with pytest.raises(HashHopError, match="is not a run summary"):
        train_run(tiny(name="bad"), str(tmp_path), progress=False)


# -- 2. lab eval of a bad run folder: one line naming the file ------------------------------------------
HH = {
    "name": "hh",
    "task": {"name": "hashhop_chars", "seq_len": 120, "hash_length": 4, "num_queries": 2},
    "model": {"mixer": {"name": "hybrid", "inner": "attention", "positions": "none", "d_model": 32, "n_heads": 2}},
    "steps": 4,
    "batch_size": 4,
    "eval_every": 4,
    "eval_batches": 1,
}


def lab_eval(run):
    return subprocess.run(
        [sys.executable, "-m", "hashhop", "lab", "eval", str(run), "--lengths", "1k"], capture_output=True, text=True, timeout=300
    )


def _weights(cfg_dict, path):
    from safetensors.torch import save_file

    from hashhop.lab.config import RunConfig

    model = build_model(RunConfig.from_dict(cfg_dict))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


@pytest.mark.parametrize(
    "config, weights, message",
    [
        ("[" * 100_000, "good", "config.json is not valid JSON (RecursionError)"),
        ("{not json", "good", "config.json is not valid JSON"),
        ('{"steps": -5}', "good", "config.json: steps must be"),
        ("/dev/zero", "good", "config.json is not a regular file"),
        ("good", None, "it has no model.safetensors"),
        (None, "good", "it has no config.json"),
        ("good", b"not safetensors at all", "model.safetensors is corrupt or not safetensors"),
        ("good", b"", "model.safetensors is corrupt or not safetensors"),
        ("good", "other", "model.safetensors does not fit this model"),
    ],
)
def test_lab_eval_of_a_bad_run_folder_is_one_line(tmp_path, config, weights, message):
    run = tmp_path / "hh"
    run.mkdir()
    if config == "/dev/zero":
        os.symlink("/dev/zero", run / "config.json")
    elif config == "good":
        (run / "config.json").write_text(json.dumps(HH))
    elif config is not None:
        (run / "config.json").write_text(config)
    if weights == "good":
        _weights(HH, run / "model.safetensors")
    elif weights == "other":
        _weights({**HH, "model": {"mixer": {**HH["model"]["mixer"], "d_model": 64}}}, run / "model.safetensors")
    elif weights is not None:
        (run / "model.safetensors").write_bytes(weights)
    result = lab_eval(run)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr, result.stderr
    if message.startswith("config.json"):
        assert str(run / "config.json") in result.stderr  # names the file


def test_lab_eval_of_a_good_folder_still_runs(tmp_path):
    run = tmp_path / "hh"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(HH))
    _weights(HH, run / "model.safetensors")
    result = subprocess.run(
        [sys.executable, "-m", "hashhop", "lab", "eval", str(run), "--lengths", "120", "--samples", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| 120 |" in result.stdout
