"""Starting and stopping a real ``hashhop serve`` subprocess on a free loopback port (shared by the server tests;
a unique module name, importable from any test folder)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*flags: str, env: dict | None = None, code: str | None = None) -> tuple[subprocess.Popen, str]:
    """``hashhop serve --port P *flags``, waited for until /health answers; ``code`` runs first in the same
    process (e.g. to slow the engine down). Returns the process and its base URL."""
    port = free_port()
    argv = ["serve", "--port", str(port), *flags]
    if code is None:
        cmd = [sys.executable, "-m", "hashhop.cli", *argv]
    else:
        cmd = [sys.executable, "-c", code + f"\nimport sys\nfrom hashhop.cli import main\nsys.exit(main({argv!r}))"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read()) from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def stop_server(proc: subprocess.Popen) -> str:
    """SIGTERM (then kill after 20 s); returns what the server wrote to stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return log
