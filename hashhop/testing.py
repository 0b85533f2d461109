"""An OpenAI-compatible server on loopback that injects faults, for reliability tests and benchmarks.

It is a real HTTP server (stdlib, one thread per connection) that answers chat and completion
requests by actually solving the HashHop question in the prompt, so a harness run against it must
score 100%. With ``fault_rate`` > 0 it answers a share of requests with 429, 500, a stall past the
client's timeout, cut-off JSON, or the wrong content type (real servers rarely do on demand).

    python -m hashhop.testing --fault-rate 0.3 --stall-s 3     # prints its base URL, serves until killed
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "stall", "cut_json", "wrong_type")
_LINK = re.compile(r"^(\S+) = '?([^'\s]+)'?$", re.M)
_CHAT_Q = re.compile(r"Start from (\S+) and follow the assignments for (\d+)")
_NATIVE_Q = re.compile(r"Hops=(\d+)\n\nCoT=(True|False)\n\n(\S+) = '$")


def solve(text: str) -> str:
    """The right answer to the HashHop question in ``text`` (chat instruction or native format)."""
    links = dict(_LINK.findall(text))
    native = _NATIVE_Q.search(text)
    if native:
        hops, cot, query = int(native.group(1)), native.group(2) == "True", native.group(3)
    else:
        chat = _CHAT_Q.search(text)
        if not chat:
            return "I do not know."
        query, hops, cot = chat.group(1), int(chat.group(2)), "Write every string" in text
    chain = [query]
    for _ in range(hops):
        chain.append(links.get(chain[-1], "?"))
    answer = " = ".join(chain[1:]) if cot else chain[-1]
    return f"{answer}'" if native else f"Sure. {query} = '{answer}'"


class FaultServer:
    def __init__(
        self, fault_rate: float = 0.0, stall_s: float = 5.0, seed: int = 0, faults: tuple[str, ...] = FAULTS, delay_s: float = 0.0
    ) -> None:
        self.fault_rate, self.stall_s, self.faults, self.delay_s = fault_rate, stall_s, faults, delay_s
        self.authorizations: set[str] = set()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.injected = dict.fromkeys(FAULTS, 0)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with server._lock:
                    server.requests += 1
                    server.authorizations.add(self.headers.get("authorization", ""))
                    fault = server._rng.choice(server.faults) if server._rng.random() < server.fault_rate else None
                    if fault:
                        server.injected[fault] += 1
                if self.path.endswith("/tokenize"):
                    return self._send(200, {"tokens": list(range(max(1, len(body.get("content", "")) // 3)))})
                if fault == "429":
                    return self._send(429, {"error": "rate limited"}, {"Retry-After": "0.05"})
                if fault == "500":
                    return self._send(500, {"error": "internal"})
                if fault == "stall":
                    time.sleep(server.stall_s)
                elif server.delay_s:
                    time.sleep(server.delay_s)
                if self.path.endswith("/chat/completions"):
                    text = solve(body["messages"][-1]["content"])
                    reply = {
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    }
                else:
                    text = solve(body["prompt"])
                    for stop in body.get("stop") or []:
                        text = text.split(stop)[0]
                    reply = {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]}
                reply.update(
                    id=f"hh-{server.requests}",
                    created=int(time.time()),
                    model=body.get("model", "fake"),
                    usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                )
                if fault == "cut_json":
                    data = json.dumps(reply).encode()[:25]
                    return self._send_raw(200, data, "application/json")
                if fault == "wrong_type":
                    return self._send_raw(200, b"<html>gateway</html>", "text/html")
                return self._send(200, reply)

            def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
                self._send_raw(status, json.dumps(obj).encode(), "application/json", headers)

            def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a stall past its timeout)
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--stall-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay-s", type=float, default=0.0, help="answer every request after this long")
    args = parser.parse_args()
    server = FaultServer(args.fault_rate, args.stall_s, args.seed, delay_s=args.delay_s)
    print(server.base_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
