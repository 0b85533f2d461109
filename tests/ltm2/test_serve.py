"""hashhop serve --model builtin:ltm2:PATH --context DIR: a real server on loopback; the reply equals the engine's
own greedy continuation of context + prompt; the prefilled context is saved and mapped back on the next start."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from hashhop.lab.train import train_run
from hashhop.ltm2.engine import Engine
from hashhop.ltm2.load import load_ltm2
from hashhop.ltm2.session import Session, read_context
from hashhop.ltm2.train import ship

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_runner import tiny_config  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from server_helpers import start_server, stop_server  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("ltm2_serve")
    cfg = tiny_config("serve")
    summary = train_run(cfg, str(root / "runs"), progress=False, log=lambda *_: None)
    out = str(root / "w.safetensors")
    ship(str(root / "runs" / cfg.name), out, [summary], {"bytes": 0, "sha256": "-"}, "test", 1.0)
    return out


@pytest.fixture()
def repo(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("def alpha(x, y):\n    return x + y\n" * 40)
    (tmp_path / "pkg" / "b.py").write_text("def beta(z):\n    return alpha(z, z)\n" * 40)
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2" * 100)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("never read")
    return tmp_path


def test_read_context_takes_text_files_in_path_order(repo):
    data = read_context(str(repo))
    assert data.index(b"# file: pkg/a.py") < data.index(b"# file: pkg/b.py")
    assert b"never read" not in data and b"\0" not in data


def _complete(url: str, model: str, prompt: str) -> str:
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": 12, "temperature": 0}).encode()
    request = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())["choices"][0]["text"]


def test_serve_continues_the_preloaded_repository(weights, repo, tmp_path_factory):
    model = f"builtin:ltm2:{weights}"
    cache = tmp_path_factory.mktemp("cache") / "prefilled"  # outside the repository it caches
    expected = Session(Engine(load_ltm2(weights)), read_context(str(repo))).answer("\ndef gamma(", 12).text
    for start in ("prefilled", "memory-mapped"):  # the second start maps the saved context back
        proc, url = start_server("--model", model, "--context", str(repo), "--context-cache", str(cache))
        try:
            assert _complete(url, model, "\ndef gamma(") == expected
            assert _complete(url, model, "\ndef gamma(") == expected  # the base context is restored per request
        finally:
            log = stop_server(proc)
        assert (cache / "context.sha256").exists() and start in log


def test_context_needs_ltm2(repo):
    out = subprocess.run([sys.executable, "-m", "hashhop.cli", "serve", "--context", str(repo)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "LTM-2" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_serve_model_args_decode_with_a_beam(weights):
    model = f"builtin:ltm2:{weights}"
    prompt = "def alpha(x, y):\n    return x + y\n" * 8 + "\ndef gamma("
    expected = Session(Engine(load_ltm2(weights), beams=3, length_penalty=1)).answer(prompt, 12).text
    proc, url = start_server("--model", model, "--model-args", "beams=3,length_penalty=1")
    served = f"{model}[beams=3,length_penalty=1]"  # the decoding is part of the name: clients never mix two decodings
    try:
        assert _complete(url, served, prompt) == expected
        with urllib.request.urlopen(url + "/v1/models", timeout=30) as reply:
            assert [m["id"] for m in json.loads(reply.read())["data"]] == [served]
        with pytest.raises(urllib.error.HTTPError) as refused:
            _complete(url, model, prompt)
        assert refused.value.code == 404 and "model_not_found" in refused.value.read().decode()
    finally:
        stop_server(proc)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model-args", "beams=2"], "needs an LTM-2 model"),
        (["--model", "builtin:ltm2:/nowhere.safetensors", "--model-args", "beams=300"], "from 1 to 256"),  # before weights load
        (["--model", "builtin:ltm2:/nowhere.safetensors", "--model-args", "length_penalty=2"], "give beams >= 2"),
    ],
)
def test_serve_model_args_errors(flags, message):
    out = subprocess.run([sys.executable, "-m", "hashhop.cli", "serve", *flags], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
