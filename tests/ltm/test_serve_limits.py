"""``hashhop serve`` under hostile input: bounded work per request, bounded memory, slow clients, SIGTERM,
bind failures, and a context cache that never confuses two contexts.

Servers are real subprocesses on loopback, driven by raw sockets and urllib; nothing asserts on wall time
except the timeouts under test, with generous margins (a loaded 2-core machine)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from server_helpers import start_server, stop_server  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm.engine import Engine, sample_key
from hashhop.ltm.load import WEIGHTS, load_ltm
from hashhop.ltm.memory import MAX_CANDIDATES, ContextMemory
from hashhop.ltm.model import MAX_HEADER_WORDS, split_prompt
from hashhop.ltm.serve import ServeOptions
from hashhop.ltm.text import find_words, to_bytes
from hashhop.task.grammar import native_request

HEADER = "\n\nCOMPLETION:\nHops=1\n\nCoT=False\n\n"


def _repeated(n: int) -> str:
    """The adversarial prompt: one key repeated n times (every copy matches the query's code)."""
    return "a = b\n" * n + HEADER + "a = '"


@pytest.fixture(scope="module")
def model():
    return load_ltm(WEIGHTS)


# -- servers ------------------------------------------------------------------------------------------
def _post(url: str, path: str, body: bytes, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _warm(url: str) -> None:
    code, _ = _post(url, "/v1/completions", json.dumps({"prompt": _repeated(10)}).encode())
    assert code == 200


# -- 1. a key repeated N times: bounded work per read ---------------------------------------------------
def test_a_repeated_key_scores_a_bounded_number_of_entries(model):
    engine = Engine(model, cache_contexts=1)
    scored = {}
    for n in (1_000, 200_000):
        engine.entries_scored.clear()
        answer = engine.answer(_repeated(n))
        assert answer.text == "b"
        scored[n] = max(engine.entries_scored)
    # Before the cap a read scored every copy (1,000 and 200,000): the work grew with the content.
    assert scored[1_000] == scored[200_000] == MAX_CANDIDATES


def test_candidates_are_the_earliest_matches_by_position(model):
    data = to_bytes("a = b\n" * 500)
    memory = ContextMemory(model, data)
    with torch.inference_mode():
        query = model.encode(torch.from_numpy(split_prompt(_repeated(1), 33).query))[0]
    words = memory.candidates(query)
    assert len(words) == MAX_CANDIDATES and words.tolist() == list(range(0, 2 * MAX_CANDIDATES, 2))  # the first 64 "a"s
    assert len(memory.candidates(query, limit=1_000)) == 500


def test_a_huge_header_is_cut_and_a_huge_word_is_measured_without_a_byte_loop(model):
    parts = split_prompt("K = 'V'\n" + HEADER + "x " * 100_000 + "K = '", 33)
    assert parts.header.shape[0] == MAX_HEADER_WORDS and chr(parts.query[0, 0]) == "K"
    # a word of 300,000 characters: its stored length saturates at 255; the real end is found by numpy blocks
    text = "A" * 300_000 + " = 'B'\nC = 'D'\n"
    memory = ContextMemory(model, to_bytes(text))
    entries = memory.entries(np.arange(len(memory)))
    starts, lengths = find_words(to_bytes(text))
    assert lengths[0] == 300_000 and entries.roles.shape == (1, len(starts))
    assert Engine(model).answer(text + HEADER + "C = '").text == "D"


def test_the_repeated_key_request_over_http_answers_with_small_memory_growth():
    proc, url = start_server("--max-waiting", "2")
    try:
        _warm(url)
        before = _kb(proc.pid, "VmHWM")
        code, reply = _post(url, "/v1/completions", json.dumps({"prompt": _repeated(200_000), "max_tokens": 8}).encode(), timeout=300)
        assert code == 200 and reply["choices"][0]["text"] == "b"
        grown_mb = (_kb(proc.pid, "VmHWM") - before) / 1024
        # Before: ~1.2 GB at 20,000 repeats and 6 GB at 200,000. Now the prefill's chunks and a read's 64 entries.
        assert grown_mb < 300, grown_mb
    finally:
        stop_server(proc)


# -- 2. memory bounded whatever the bodies -------------------------------------------------------------
def test_many_concurrent_large_bodies_get_429_and_memory_stays_bounded():
    proc, url = start_server("--max-request-mb", "32", "--max-inflight-mb", "64", "--max-waiting", "16")
    try:
        _warm(url)
        before = _kb(proc.pid, "VmHWM")
        body = json.dumps({"prompt": " " * ((32 << 20) - 100)}).encode()  # just under the limit; cheap for the engine
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = [f.result()[0] for f in [pool.submit(_post, url, "/v1/completions", body) for _ in range(16)]]
        grown_mb = (_kb(proc.pid, "VmHWM") - before) / 1024
        assert codes.count(429) >= 1 and codes.count(200) >= 1 and set(codes) <= {200, 429}, codes
        # Before: all 16 bodies (512 MB) were read and parsed before the queue was checked.
        assert grown_mb < 450, grown_mb
        health = json.loads(urllib.request.urlopen(url + "/health", timeout=10).read())
        assert health["inflight_bytes"] == 0 and health["waiting"] == 0  # every reservation was released
    finally:
        stop_server(proc)


def test_options_refuse_sizes_below_a_byte_and_a_budget_below_one_request():
    with pytest.raises(HashHopError):
        ServeOptions(max_request_bytes=0)
    with pytest.raises(HashHopError):
        ServeOptions(max_inflight_bytes=0)
    with pytest.raises(HashHopError):
        ServeOptions(max_request_bytes=2 << 20, max_inflight_bytes=1 << 20)
    with pytest.raises(HashHopError):
        ServeOptions(header_timeout_s=0)
    assert ServeOptions().max_request_bytes == 128 << 20  # the default: a 100M-character prompt as JSON fits
    for flag in ("--max-request-mb", "--max-inflight-mb"):
        out = subprocess.run([sys.executable, "-m", "hashhop.cli", "serve", flag, "1e-9"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and flag in out.stderr


# -- 3. slow clients are closed ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def strict_server():
    proc, url = start_server("--header-timeout", "1", "--body-timeout", "1", "--max-request-mb", "8")
    yield proc, int(url.rsplit(":", 1)[1])
    stop_server(proc)


def _closed_after(sock: socket.socket, trickle: bytes, limit: float = 15.0) -> tuple[float, bytes]:
    """Send ``trickle`` a byte every 0.2 s until the server closes; (seconds until closed, what it sent)."""
    started, got = time.monotonic(), b""
    sock.settimeout(0.2)
    i = 0
    while time.monotonic() - started < limit:
        try:
            sock.send(trickle[i % len(trickle) : i % len(trickle) + 1])
            i += 1
        except OSError:
            return time.monotonic() - started, got
        try:
            chunk = sock.recv(65536)
            if not chunk:
                return time.monotonic() - started, got
            got += chunk
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started, got
    return float("inf"), got


def test_a_slow_header_client_is_disconnected(strict_server):
    _, port = strict_server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        seconds, _ = _closed_after(sock, b"X-Slow: yes\r\n")
    assert seconds < 10  # header timeout 1 s (before: aiohttp's 3,630 s keep-alive, i.e. never)


def test_a_slow_body_client_gets_408_and_is_disconnected(strict_server):
    _, port = strict_server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        seconds, got = _closed_after(sock, b" ")
    assert seconds < 10 and got.startswith(b"HTTP/1.1 408")


def test_a_huge_declared_length_gets_413_at_once_without_a_body(strict_server):
    _, port = strict_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n")
        got = sock.recv(65536)  # before: the server waited for the 100 GB body (and read it up to the limit)
    assert got.startswith(b"HTTP/1.1 413")
    reply = json.loads(got.split(b"\r\n\r\n", 1)[1])
    assert reply["error"]["code"] == "request_too_large"


def test_the_strict_server_still_answers_normal_requests(strict_server):
    _, port = strict_server
    code, reply = _post(f"http://127.0.0.1:{port}", "/v1/completions", json.dumps({"prompt": _repeated(3)}).encode())
    assert code == 200 and reply["choices"][0]["text"] == "b"


# -- 4. SIGTERM mid-request ---------------------------------------------------------------------------
SLOW_ENGINE = """
import time
from hashhop.ltm.engine import Engine
Engine.answer = lambda self, text: time.sleep(120)  # a request the engine works on for two minutes
"""


def test_sigterm_stops_the_server_mid_request():
    proc, url = start_server(code=SLOW_ENGINE)
    try:
        errors = []

        def ask():
            try:
                _post(url, "/v1/completions", json.dumps({"prompt": "x"}).encode(), timeout=60)
            except Exception as err:  # the request in flight may fail
                errors.append(err)

        client = threading.Thread(target=ask, daemon=True)
        client.start()
        for _ in range(100):  # until the request is with the engine
            if json.loads(urllib.request.urlopen(url + "/health", timeout=5).read())["waiting"] == 1:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        seconds = time.monotonic() - started
        assert seconds < 5, seconds  # before: the engine thread kept it alive until it finished (120 s here)
        assert proc.returncode == 0
        client.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_server(proc)


# -- 5. a failed bind is one line, and nothing claims to be serving -------------------------------------
def test_port_in_use_exits_2_in_one_line_without_serving_on():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "hashhop.cli", "serve", "--port", str(port)], capture_output=True, text=True, timeout=120
        )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and f"127.0.0.1:{port}" in out.stderr
    assert "hashhop serve:" not in out.stdout and " on http" not in out.stdout


# -- 7. the context cache: cheap lookups, never a wrong hit --------------------------------------------
def _keyed_context(lines: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    keys = ["".join(rng.choice(letters, 16)) for _ in range(lines)]
    values = ["".join(rng.choice(letters, 16)) for _ in range(lines)]
    return keys, values


def test_contexts_differing_in_one_unsampled_byte_get_different_entries_and_answers(model):
    rng = np.random.default_rng(0)
    keys, values = _keyed_context(30_000, rng)  # ~1 MB: the sampled key reads ~200 KB of it
    line = len(f"{keys[0]} = '{values[0]}'\n")
    a_text = "".join(f"{k} = '{v}'\n" for k, v in zip(keys, values))
    a = to_bytes(a_text)
    # a line in the middle that the sampled key does not read: only the full compare can tell the contexts apart
    for i in range(len(keys) // 2, len(keys)):
        position = i * line + len(keys[i]) + 4  # the first character of line i's value
        b = a.copy()
        b[position] = ord("Z") if a[position] != ord("Z") else ord("Y")
        if sample_key(a) == sample_key(b):
            break
    else:
        pytest.fail("no unsampled line found")
    b_text = b.tobytes().decode()
    engine = Engine(model, cache_contexts=4)
    ask = lambda context: engine.answer(native_request(context, 1, False, keys[i])).text  # noqa: E731
    assert ask(a_text) == values[i]
    assert ask(b_text) == b_text[position : position + 16] != values[i]
    assert len(engine._cache) == 2
    assert ask(a_text) == values[i] and len(engine._cache) == 2  # and A is still A
    assert ask(a_text[:1] + a_text[1:]) == values[i] and len(engine._cache) == 2  # the same bytes in another object: a hit
