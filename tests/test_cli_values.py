"""Every command and subcommand, fed random and extreme option values: never a traceback, exit status 0, 1 or 2,
and a status-2 error is one line on stderr.

Commands run in-process (``hashhop.cli.main``). What would start long work is stubbed at the boundary where the
checking ends and the work begins (planning a huge problem, building an eval grid, training, measuring the LTM,
serving): every check before it runs for real, and the server never binds. Deterministic (``derandomize``)."""

from __future__ import annotations

import itertools
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashhop.errors import HashHopError

# Values every option is tried with ({...} are paths made below).
EXTREME = [
    "nan", "inf", "-inf", "NaN", "Infinity", "-1", "0", "1", "2", "-5", "3.5", "1e-9", "1e12", "1e400", "-1e400",
    "99999999999999999999999999999999", str(2**63), str(-(2**63) - 1), "", " ", ",", ",,", "1,,2", "1k,,2k",
    "é", "ünïcödé", "\u2028", "名前", "/proc/x", "/proc/x.safetensors", "/dev/zero", "/dev/null", "{folder}",
    "{missing}", "{file}", "{results}", "-", "--", "=",
]  # fmt: skip


def values(*extra: str) -> st.SearchStrategy[str]:
    return st.sampled_from([*extra, *EXTREME])


GRID = {
    "--lengths": values("1k", "2k,4k", "1e15", "100"),
    "--hops": values("1", "1,2", "0,1", "1,,2"),
    "--cot": values("both", "on", "off"),
    "--samples": values("1", "1000001"),
    "--queries": values("1", "4"),
    "--hash-length": values("4", "16"),
    "--seed": values("0", "7"),
}
NO_DEVZERO = [v for v in EXTREME if v != "/dev/zero"]  # --template /dev/zero hangs (hashhop/eval/templates.py)
LAB_FIELDS = [
    "steps", "batch_size", "eval_every", "eval_batches", "seed", "threads", "name", "target_accuracy", "eval_lengths",
    "optim.lr", "optim.betas", "optim.warmup_steps", "optim.min_lr_ratio", "task", "task.name", "task.seq_len",
    "task.vocab_size", "task.extra", "model.n_layers", "model.mixer.name", "model.mixer.d_model", "model.mixer.n_heads",
    "model.max_len", "a.b.c", "steps.x", "",
]  # fmt: skip

# command -> (base argv, {option: strategy of values} (None: a positional), flags)
COMMANDS = {
    "generate": (
        ["generate", "--tokenizer", "chars", "--context", "2000"],
        {
            "--context": values("500", "2k", "1e15"),
            "--tokenizer": values("chars", "cl100k_base", "nope"),
            "--hops": values("1", "3"),
            "--hash-length": values("2", "8"),
            "--alphabet": values("hex", "letters", "a b", "ab"),
            "--queries": values("1", "40"),
            "--seed": values("0", "5"),
            "--samples": values("1", "2", "10000001"),
            "--output": values("{tmp}/out.jsonl", "{tmp}/out.txt", "{tmp}/out.parquet"),
            "--format": values("text", "jsonl", "parquet"),
        },
        ["--cot", "--no-cot", "--no-progress"],
    ),
    "eval": (
        ["eval", "--model", "builtin:ltm", "--no-cache", "--no-progress", "--output", "{tmp}/eval.jsonl"],
        {
            "--model": values("builtin:ltm", "nope", "builtin:{file}", "builtin:/dev/zero"),
            "--endpoint": values("chat", "completions"),
            "--tokenizer": values("chars", "cl100k_base", "estimate:3", "estimate:0", "estimate:nan"),
            "--max-context": values("1k", "100"),
            "--template": st.sampled_from(["auto", "chat", "native", *NO_DEVZERO]),
            **GRID,
            "--overflow": values("error", "skip", "shrink"),
            "--max-answer-tokens": values("1", "64"),
            "--concurrency": values("1", "8"),
            "--retries": values("0", "101"),
            "--timeout": values("1", "0.5"),
            "--output": values("{tmp}/eval2.jsonl"),
            "--cache": values("{tmp}/cache.sqlite"),
            "--price-in": values("3", "0.5"),
            "--price-out": values("15"),
            "--report": values("{tmp}/eval-report"),
        },
        ["--dry-run", "--no-cache"],
    ),
    "export": (
        ["export", "--output", "{tmp}/grid.jsonl"],
        {
            "--output": values("{tmp}/grid.jsonl", "{tmp}/grid.parquet", "{tmp}/grid.csv"),
            "--tokenizer": values("chars", "cl100k_base"),
            "--template": st.sampled_from(["chat", "native", *NO_DEVZERO]),
            **GRID,
        },
        [],
    ),
    "report": (
        ["report", "{results}", "--out", "{tmp}/report"],
        {"results": values("{results}"), "--out": values("{tmp}/report2"), "--threshold": values("0.5", "1", "0.8")},
        [],
    ),
    "lab run": (
        ["lab", "run", "smoke", "--out", "{tmp}/runs", "--no-progress"],
        {
            "experiment": values("smoke", "mqar", "h3_ar", "{config}"),
            "--out": values("{tmp}/runs2"),
            "--lrs": values("1e-3", "1e-3,3e-3", "0,1"),
            "--set": st.builds(lambda f, v: f"{f}={v}", st.sampled_from(LAB_FIELDS), values("1", "[1]", '"x"', "{}", "null", "true")),
        },
        [],
    ),
    "lab list": (["lab", "list"], {}, []),
    "lab plot": (["lab", "plot", "{folder}"], {"run_dir": values("{runs}")}, []),
    "lab table": (["lab", "table", "{folder}"], {"run_dir": values("{runs}")}, []),
    "lab eval": (
        ["lab", "eval", "{folder}", "--lengths", "1k"],
        {"run_dir": values("{runs}"), "--lengths": values("1k", "120,240"), "--samples": values("1", "100001")},
        [],
    ),
    "train": (
        ["train", "--out", "{tmp}/w.safetensors", "--no-progress"],
        {
            "--steps": values("1", "10000001"),
            "--batch-size": values("1", "4096", "4097"),
            "--context-chars": values("1000", "16384", "16385", "999"),
            "--lr": values("1e-3", "10", "10.5"),
            "--seed": values("0", str(2**63 - 1)),
            "--out": values("{tmp}/w2.safetensors", "{folder}/x.safetensors", "{file}/x.safetensors", "{tmp}/w.txt"),
            "--model": values("ltm", "ltm2"),
            "--threads": values("1", "0"),
            "--read-steps": values("0", "3", "-1", "10000001"),
            "--read-soup": values("none", "1", "0,x", "0"),
        },
        ["--no-progress"],
    ),
    "cost": (
        ["cost", "--no-ltm"],
        {
            "--config": values("llama-3.1-405b", "{hf_config}", "{bad_config}"),
            "--context": values("1M", "1e15", "100"),
            "--gpu-memory": values("80e9", "1e-300", "1e308"),
            "--kv-bytes": values("1", "2", "64", "65"),
        },
        ["--no-ltm"],
    ),
    "serve": (
        ["serve"],
        {
            "--model": values("builtin:ltm", "builtin:{file}", "nope"),
            "--host": values("127.0.0.1", "::1", "256.0.0.1"),
            "--port": values("8000", "65535", "65536"),
            "--max-waiting": values("0", "16"),
            "--max-request-mb": values("1024", "1e303", "0.000001"),
            "--cache-contexts": values("1", "4"),
            "--context": values("{folder}", "{missing}"),
            "--context-cache": values("{folder}", "{file}"),
        },
        [],
    ),
}

RESULT = {
    "id": "a",
    "model": "m",
    "template": "chat",
    "status": "ok",
    "length": 1000,
    "hops": 1,
    "cot": False,
    "correct": True,
    "outcome": "correct",
}


@pytest.fixture(scope="module")
def paths():
    with tempfile.TemporaryDirectory() as tmp:
        made = {
            "tmp": tmp,
            "folder": os.path.join(tmp, "folder"),
            "missing": os.path.join(tmp, "missing", "x.jsonl"),
            "file": os.path.join(tmp, "file.txt"),
            "results": os.path.join(tmp, "results.jsonl"),
            "runs": os.path.join(tmp, "runs-folder"),
            "config": os.path.join(tmp, "config.json"),
            "hf_config": os.path.join(tmp, "hf.json"),
            "bad_config": os.path.join(tmp, "bad.json"),
        }
        os.makedirs(made["folder"])
        with open(made["file"], "w") as fh:
            fh.write("not anything\n")
        with open(made["results"], "w") as fh:
            fh.write(json.dumps(RESULT) + "\n")
        from hashhop.lab.experiments import smoke

        with open(made["config"], "w") as fh:
            fh.write(json.dumps([c.to_dict() for c in smoke()]))
        with open(made["hf_config"], "w") as fh:
            json.dump({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64}, fh)
        with open(made["bad_config"], "w") as fh:
            json.dump({"num_hidden_layers": "x", "num_attention_heads": 0, "hidden_size": 1e400}, fh)
        # a finished-looking run folder with a corrupt summary
        os.makedirs(os.path.join(made["runs"], "r"))
        with open(os.path.join(made["runs"], "r", "summary.json"), "w") as fh:
            fh.write('{"name": "r", "config": {}}')
        yield made


@pytest.fixture(scope="module")
def stubs(paths):
    """Stop at the line between checking and working: everything before it is the real code. Commands run in the
    temporary folder, so relative paths among the values (``--out=-1``, ``-o 0``) land there."""
    import hashhop.cli.generate as generate_cli
    import hashhop.eval.export as export
    import hashhop.eval.grid as grid
    import hashhop.lab.sweep as sweep
    import hashhop.ltm.cost as cost
    import hashhop.ltm.serve as serve
    import hashhop.ltm.training as training
    import hashhop.ltm2.train as ltm2_train

    real_plan, real_write = generate_cli.plan, generate_cli.write_samples

    def small_plan(spec):
        if spec.context_tokens > 20_000 or spec.tokenizer not in ("chars", "cl100k_base"):
            raise HashHopError("test stub: too large to plan in this test")
        return real_plan(spec)

    def few_samples(problems, path, fmt, progress=False):
        return real_write(itertools.islice(problems, 2), path, fmt, progress=progress)

    def stop(*args, **kwargs):
        raise HashHopError("test stub: the checks passed; no work in this test")

    def fake_training(cfg, out=None, progress=True, command=None):
        return {"parameters": 1, "train_seconds": 0.0, "final": {"loss": 0.0, "exact": 0.0}}

    def no_server(options):
        return None  # never binds

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(paths["tmp"])
        mp.setattr(generate_cli, "plan", small_plan)
        mp.setattr(generate_cli, "write_samples", few_samples)
        mp.setattr(grid, "build_items", stop)
        mp.setattr(export, "grid_rows", stop)
        mp.setattr(sweep, "train_run", stop)
        mp.setattr(training, "train_ltm", fake_training)
        mp.setattr(ltm2_train, "train_ltm2", stop)
        mp.setattr(cost, "measure_ltm", lambda context_tokens: cost.LTMCost(1.0, 1.0, 1.0, 1, 1))
        mp.setattr(serve, "serve", no_server)
        yield


def argv_for(data, command: str, paths: dict) -> list[str]:
    base, options, flags = COMMANDS[command]
    argv = list(base)
    chosen = data.draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=4) if options else st.just([]))
    positional = {"results": 1, "experiment": 2, "run_dir": 2}
    for option in chosen:
        value = data.draw(options[option])
        if option in positional:
            argv[positional[option]] = value
        else:
            argv.append(f"{option}={value}")  # = keeps values like -1 and -- the option's value
    argv += data.draw(st.lists(st.sampled_from(flags), unique=True, max_size=2)) if flags else []
    return [a.format(**paths) if "{" in a and "}" in a and not a.startswith("--set=") else a for a in argv]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_option_value_is_a_clean_exit(command, data, paths, stubs, capsys):
    from hashhop.cli import main

    argv = argv_for(data, command, paths)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own errors and --help
        code = stop.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 1, 2), (argv, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, (argv, err)
