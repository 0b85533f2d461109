"""Bad input is one line and exit status 2 (a HashHopError from the library), never a hang, a traceback or a
destroyed earlier result: templates, the builtin runner's --tokenizer, results records, the LTM's files, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hashhop.errors import HashHopError
from hashhop.eval.templates import MAX_TEMPLATE_BYTES, load_template

HASHHOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep + "hashhop" + os.sep


def cli(*args, timeout=60, cwd=None):
    return subprocess.run([sys.executable, "-m", "hashhop", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_one_line(result, message):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr, result.stderr


# -- 1. templates: only a small regular file is read ----------------------------------------------
def test_a_template_must_be_a_small_regular_file(tmp_path):
    with pytest.raises(HashHopError, match="not a regular file"):
        load_template("/dev/zero")  # read whole, this never ends
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(HashHopError, match="not a regular file"):
        load_template(str(fifo))  # opened, this blocks forever
    with pytest.raises(HashHopError, match="is a folder"):
        load_template(str(tmp_path))
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"user": "{prompt}" + " " * MAX_TEMPLATE_BYTES}))
    with pytest.raises(HashHopError, match="over 1 MB"):
        load_template(str(big))
    for text in ("[" * 100_000, b"\xff\xfe{}", '{"user": 1' + "0" * 5000 + "}"):
        bad = tmp_path / "bad.json"
        bad.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(HashHopError, match="not valid JSON") as err:
            load_template(str(bad))
        assert "\n" not in str(err.value)
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"user": "{prompt}", "name": 5}))
    with pytest.raises(HashHopError, match="name, user and system are strings"):
        load_template(str(named))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"user": "{prompt}\n{query} = '", "stop": ["\n"]}))
    assert load_template(str(good)).stop == ("\n",)


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--model", "builtin:ltm", "--template", "/dev/zero", "--no-cache", "--dry-run"],
        ["export", "-o", "x.jsonl", "--template", "/dev/zero"],
    ],
)
def test_cli_refuses_a_device_as_template_at_once(tmp_path, argv):
    result = cli(*argv, timeout=120, cwd=tmp_path)  # before the fix: a hang, or memory growing until killed
    assert_one_line(result, "not a regular file")
    assert not os.path.exists(tmp_path / "x.jsonl")


# -- 8. the builtin runner sizes in characters: --tokenizer is refused, not ignored ------------------
def test_builtin_runner_refuses_a_tokenizer_other_than_chars():
    from hashhop.runners import RunnerOptions, make_runner

    for tokenizer in ("cl100k_base", "/dev/zero", "estimate:3"):
        with pytest.raises(HashHopError, match="sizes prompts in characters"):
            make_runner("builtin:ltm", RunnerOptions(tokenizer=tokenizer))
    assert make_runner("builtin:ltm", RunnerOptions(tokenizer="chars")).tokenizer == "chars"
    assert make_runner("builtin:ltm", RunnerOptions()).tokenizer == "chars"


def test_cli_builtin_with_a_tokenizer_is_one_line(tmp_path):
    result = cli("eval", "--model", "builtin:ltm", "--tokenizer", "/dev/zero", "--dry-run", "--no-cache", timeout=120, cwd=tmp_path)
    assert_one_line(result, "sizes prompts in characters")


# -- 7. one check of a record: types and ranges, in the store; the report uses it --------------------
RECORD = {
    "id": "L1000-h2-cot-s0-q0",
    "model": "m",
    "template": "chat",
    "status": "ok",
    "length": 1000,
    "hops": 2,
    "cot": True,
    "sample": 0,
    "query": 0,
    "depth": 0.5,
    "correct": True,
    "outcome": "correct",
    "links_right": 2,
    "prompt_tokens": 900,
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"length": 0}, "length must be a whole number from 1"),
        ({"length": 10**15 + 1}, "length must be a whole number from 1"),
        ({"length": 10**400}, "length must be a whole number from 1"),
        ({"hops": 0}, "hops must be a whole number from 1"),
        ({"links_right": 3}, "links_right must be 0 to hops (2)"),
        ({"links_right": -1}, "links_right must be 0 to hops (2)"),
        ({"sample": -1}, "sample must be a whole number of at least 0"),
        ({"query": -3}, "query must be a whole number of at least 0"),
        ({"depth": 1.5}, "depth must be a number from 0 to 1"),
        ({"depth": -0.1}, "depth must be a number from 0 to 1"),
        ({"depth": float("nan")}, "depth must be a number from 0 to 1"),
        ({"prompt_tokens": -1}, "prompt_tokens must be a whole number from 0"),
        ({"sample": 1.0}, "field 'sample' has the wrong type"),
    ],
)
def test_validate_record_checks_ranges_and_the_report_uses_it(tmp_path, change, message):
    from hashhop.eval.report import check_records
    from hashhop.eval.store import read_results, validate_record

    assert validate_record(dict(RECORD)) == RECORD
    bad = {**RECORD, **change}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_record(bad)
    with pytest.raises(HashHopError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        check_records([RECORD, bad])  # one check, in one place: the report's is the store's
    assert "\n" not in str(err.value) and RECORD["id"] in str(err.value)
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(RECORD) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(HashHopError, match=r"results.jsonl:2: not a hashhop results record"):
        read_results(str(results))


def test_records_without_the_optional_fields_pass():
    from hashhop.eval.report import check_records

    skipped = {k: RECORD[k] for k in ("id", "model", "template", "length", "hops", "cot")} | {"status": "skipped", "depth": None}
    check_records([skipped, RECORD])
    with pytest.raises(HashHopError, match="no records"):
        check_records([])


# -- 3. the LTM's three files: atomic, named after the weights -------------------------------------
def _ltm_save(out, history=None):
    from hashhop.ltm.config import TrainConfig
    from hashhop.ltm.model import LTM, LTMConfig
    from hashhop.ltm.training import save

    history = [{"step": 1, "loss": 1.0, "exact": 0.5, "tau": 10.0}] if history is None else history
    return save(LTM(LTMConfig()), TrainConfig(steps=1, batch_size=1), str(out), 1.0, history, "hashhop train --steps 1")


def test_ltm_card_is_named_after_the_weights_and_spares_an_unrelated_card(tmp_path):
    from hashhop.ltm.config import WEIGHTS, card_path

    (tmp_path / "MODEL_CARD.md").write_text("someone else's model\n")
    _ltm_save(tmp_path / "mine.safetensors")
    assert (tmp_path / "MODEL_CARD.md").read_text() == "someone else's model\n"
    assert sorted(os.listdir(tmp_path)) == ["MODEL_CARD.md", "mine.card.md", "mine.json", "mine.safetensors"]
    assert "`mine.safetensors`" in (tmp_path / "mine.card.md").read_text()
    assert json.loads((tmp_path / "mine.json").read_text())["weights"] == "mine.safetensors"
    # the rule: <stem>.card.md, except the shipped weights' card
    assert card_path(str(tmp_path / "a" / "w.safetensors")) == str(tmp_path / "a" / "w.card.md")
    assert card_path(WEIGHTS) == os.path.join(os.path.dirname(WEIGHTS), "MODEL_CARD.md")


def test_ltm_save_never_half_writes_the_summary_or_the_card(tmp_path, monkeypatch):
    out = tmp_path / "w.safetensors"
    _ltm_save(out)
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    # A summary that cannot be written (here: a value JSON cannot hold): the earlier summary and card stay whole.
    with pytest.raises(TypeError):
        _ltm_save(out, history=[{"step": 1, "loss": 1.0, "exact": 0.5, "tau": 10.0, "odd": object()}])
    assert (tmp_path / "w.json").read_bytes() == before["w.json"]
    assert (tmp_path / "w.card.md").read_bytes() == before["w.card.md"]
    assert sorted(os.listdir(tmp_path)) == sorted(before)  # no temporary files left

    # A failing disk (fsync) while the card is written: the earlier card stays whole, and the error is one line.
    import hashhop.checkpoint

    real_fsync = os.fsync

    def failing_fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".w.card.md"):
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(hashhop.checkpoint.os, "fsync", failing_fsync)
    with pytest.raises(HashHopError, match="No space left on device") as err:
        _ltm_save(out)
    assert "\n" not in str(err.value)
    assert (tmp_path / "w.card.md").read_bytes() == before["w.card.md"]
    assert sorted(os.listdir(tmp_path)) == sorted(before)


# -- 4. the model card says what the model is ---------------------------------------------------------
def test_model_card_says_what_its_numbers_mean(tmp_path):
    from hashhop.ltm.config import WEIGHTS
    from hashhop.ltm.training import WHAT_ITS_NUMBERS_MEAN

    assert WHAT_ITS_NUMBERS_MEAN.startswith("## What its numbers mean\n`builtin:ltm` is a hand-built retrieval baseline")
    assert "not a learnt long-context model" in WHAT_ITS_NUMBERS_MEAN and "python benchmarks/ltm_ablations.py" in WHAT_ITS_NUMBERS_MEAN
    shipped = open(os.path.join(os.path.dirname(WEIGHTS), "MODEL_CARD.md")).read()
    assert shipped.endswith("\n\n" + WHAT_ITS_NUMBERS_MEAN)
    assert "| final training batch | loss 0.0067, exact match 1.000, temperature 26.3 |" in shipped  # the rest as it was
    _ltm_save(tmp_path / "w.safetensors")
    assert (tmp_path / "w.card.md").read_text().endswith("\n\n" + WHAT_ITS_NUMBERS_MEAN)  # retraining reproduces it


# -- 9. Ctrl-C at any moment of start-up: one line, status 130, no traceback --------------------------
def _frames_in_hashhop(stderr: str) -> bool:
    return any(line.strip().startswith("File ") and HASHHOP in line for line in stderr.splitlines())


@pytest.mark.parametrize("argv", [["generate", "--context", "1M", "-o", "OUT"], ["eval", "--help"]])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, argv):
    """SIGINT after 0.02 to 0.5 s. A Ctrl-C that lands while CPython itself is still starting (its ``site``
    module, runpy: the first ~20-30 ms here, before any hashhop file runs) gets CPython's own report, which no
    project code can catch: such tries are set apart. Once hashhop's code runs, a traceback is a failure."""
    delays = [0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5] * 2
    in_hashhop = 0
    for i, delay in enumerate(delays):
        out = tmp_path / f"out{i}.jsonl"
        args = [str(out) if a == "OUT" else a for a in argv]
        proc = subprocess.Popen(
            [sys.executable, "-m", "hashhop", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
        )
        time.sleep(delay)
        signalled = proc.poll() is None
        if signalled:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        where = f"delay {delay} s: status {proc.returncode}, stderr {err[-1500:]!r}"
        assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")], where
        if "Traceback" in err and not _frames_in_hashhop(err):
            continue  # CPython's start-up, before hashhop: see the docstring
        assert "Traceback" not in err, where
        if proc.returncode == -signal.SIGINT:
            # Killed by the signal: before Python could turn it into KeyboardInterrupt (nothing said), or after the
            # one line, when CPython saw the KeyboardInterrupt pass out of an exec() (dataclasses) and re-sends SIGINT at exit.
            assert not err or (err.strip().endswith("interrupted") and len(err.strip().splitlines()) == 1), where
            continue
        if signalled and proc.returncode != 0:
            assert proc.returncode == 130 and err.strip().endswith("interrupted") and len(err.strip().splitlines()) == 1, where
        else:
            assert proc.returncode == 0, where  # finished before the signal (eval --help)
        in_hashhop += 1
    assert in_hashhop >= 5, f"only {in_hashhop} of {len(delays)} tries were interrupted once hashhop had started: the machine is too slow"


def test_a_ctrl_c_swallowed_as_unraisable_is_raised_again_not_printed():
    """A KeyboardInterrupt raised inside a callback of the import system is "ignored" by Python (a traceback, and the
    command runs on). While a command runs, it is raised again a moment later, in the main flow, and not printed."""
    script = (
        "import sys, time\n"
        "from hashhop.cli import _watch_ctrl_c\n"
        "seen = []\n"
        "restore = _watch_ctrl_c(seen)\n"
        "seen.append(2)  # as after a SIGINT\n"
        "class Callback:\n"
        "    def __del__(self):\n"
        "        raise KeyboardInterrupt\n"
        "try:\n"
        "    Callback()\n"
        "    for _ in range(200):\n"
        "        time.sleep(0.01)\n"
        "    print('ran on')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
        "restore()\n"
        "assert sys.unraisablehook is sys.__unraisablehook__\n"
    )
    # SIGINT at its default in the child, whatever the suite was started under (a background job's is ignored, and
    # the watcher leaves an ignored SIGINT alone, on purpose)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted"
    assert "Traceback" not in result.stderr and "ignored" not in result.stderr, result.stderr


def test_weights_and_outputs_are_written_with_the_umask_mode_not_0600(tmp_path):
    """Weights were once written 0600 (safetensors' temp file): others on the machine could not read them."""
    import stat

    import torch

    from hashhop.checkpoint import save_checkpoint
    from hashhop.cli import main

    old = os.umask(0o022)
    try:
        save_checkpoint(str(tmp_path / "w.safetensors"), torch.nn.Linear(2, 2), None, {"format": "test"})
        assert main(["generate", "--context", "2k", "--tokenizer", "chars", "-o", str(tmp_path / "p.jsonl"), "--no-progress"]) == 0
    finally:
        os.umask(old)
    for name in ("w.safetensors", "p.jsonl"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name


def test_the_prefix_cache_lookup_hashes_a_bounded_sample_not_the_context(monkeypatch):
    """Finding a cached context used to blake2b the whole context (3x a decode at 10M characters)."""
    import hashlib

    import numpy as np

    from hashhop.ltm import engine

    hashed, real_blake2b = [], hashlib.blake2b

    class Counting:
        def __init__(self, **kwargs) -> None:
            self._h = real_blake2b(**kwargs)

        def update(self, data) -> None:
            hashed.append(len(memoryview(data)))
            self._h.update(data)

        def digest(self) -> bytes:
            return self._h.digest()

    monkeypatch.setattr(engine.hashlib, "blake2b", Counting)
    small, large = np.zeros(1 << 20, dtype=np.uint8), np.zeros(64 << 20, dtype=np.uint8)
    engine.sample_key(small)
    small_bytes, hashed[:] = sum(hashed), []
    engine.sample_key(large)
    assert sum(hashed) <= max(small_bytes, 1 << 20)  # the same bounded sample at 64 MB as at 1 MB
