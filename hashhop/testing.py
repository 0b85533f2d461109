"""An OpenAI-compatible server on loopback that injects faults, for reliability tests and benchmarks.

It is a real HTTP server (stdlib, one thread per connection) that answers chat and completion
requests by actually solving the HashHop question in the prompt, so a harness run against it must
score 100%. With ``fault_rate`` > 0 it answers a share of requests with 429, 500, a stall past the
client's timeout, cut-off JSON, or the wrong content type (real servers rarely do on demand).

Like llama.cpp's server it answers only under ``/v1`` (chat and completions) and at ``/tokenize``
(beside ``/v1``); any other path is a 404. Other misbehaviours of real servers, on demand:

* ``api_key``: only that key is accepted; any other gets a 401 whose body echoes the Authorization
  header it received (as some servers do), so a client that stores error bodies leaks the key;
* ``leak_key``: every answer ends by quoting the Authorization header it came with;
* ``quote_answers``: a completion in Magic's native format repeats the opening quote (``'HASH'``),
  stop sequences applied as a real server applies them;
* ``slots``: requests processed at once (llama.cpp's ``--parallel``); the others queue. A client
  that gives up does not stop the work (the slot stays busy), and ``stall_first`` makes the first
  request of every prompt take ``stall_s``. ``events`` records each completion request's arrival,
  start and end, by prompt, to check that no prompt was ever processed twice at once.

    python -m hashhop.testing --fault-rate 0.3 --stall-s 3     # prints its base URL, serves until killed
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hashhop.task.grammar import answer_line, answer_text, links_in, parse_native_request

FAULTS = ("429", "500", "stall", "cut_json", "wrong_type")
_CHAT_Q = re.compile(r"Start from (\S+) and follow the assignments for (\d+)")  # the chat template's words


def solve(text: str, quote: bool = False) -> str:
    """The right answer to the HashHop question in ``text`` (chat instruction or native format);
    ``quote``: in the native format, repeat the opening quote (``'HASH'``) as some models do."""
    links = links_in(text)
    native = parse_native_request(text)
    if native:
        hops, cot, query = native
    else:
        chat = _CHAT_Q.search(text)
        if not chat:
            return "I do not know."
        query, hops, cot = chat.group(1), int(chat.group(2)), "Write every string" in text
    chain = [query]
    for _ in range(hops):
        chain.append(links.get(chain[-1], "?"))
    answer = answer_text(chain[1:]) if cot else chain[-1]
    return (f"'{answer}'" if quote else f"{answer}'") if native else f"Sure. {answer_line(query, answer)}"


class FaultServer:
    def __init__(
        self,
        fault_rate: float = 0.0,
        stall_s: float = 5.0,
        seed: int = 0,
        faults: tuple[str, ...] = FAULTS,
        delay_s: float = 0.0,
        *,
        api_key: str | None = None,
        leak_key: bool = False,
        quote_answers: bool = False,
        slots: int | None = None,
        stall_first: bool = False,
    ) -> None:
        self.fault_rate, self.stall_s, self.faults, self.delay_s = fault_rate, stall_s, faults, delay_s
        self.api_key, self.leak_key, self.quote_answers, self.stall_first = api_key, leak_key, quote_answers, stall_first
        self.authorizations: set[str] = set()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(slots) if slots else None
        self.requests = 0  # every request, tokenize and refused ones included
        self.paths: list[str] = []  # of every request, in order of arrival
        self.arrivals: list[float] = []  # when each came (time.monotonic())
        self.events: list[dict] = []  # completion requests: prompt (a digest), arrived, started, finished (monotonic s)
        self._seen_prompts: set[str] = set()
        self.injected = dict.fromkeys(FAULTS, 0)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path.split("?")[0] in ("/health", "/v1/models"):
                    return self._send(200, {"status": "ok", "object": "list", "data": [{"id": "fake", "object": "model"}]})
                return self._send(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                arrived = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                path = self.path.split("?")[0]
                authorization = self.headers.get("authorization", "")
                with server._lock:
                    server.requests += 1
                    server.paths.append(path)
                    server.arrivals.append(arrived)
                    server.authorizations.add(authorization)
                if server.api_key is not None and authorization != f"Bearer {server.api_key}":
                    message = f"Incorrect API key provided: {authorization.removeprefix('Bearer ') or '(none)'}"
                    return self._send(401, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}})
                if path == "/tokenize":  # llama.cpp's: beside /v1, {"content": ...} -> {"tokens": [...]}
                    if not isinstance(body.get("content"), str):
                        return self._send(400, {"error": "content is required"})
                    return self._send(200, {"tokens": list(range((len(body["content"]) + 2) // 3))})
                if path not in ("/v1/chat/completions", "/v1/completions"):
                    return self._send(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
                with server._lock:
                    fault = server._rng.choice(server.faults) if server._rng.random() < server.fault_rate else None
                    if fault:
                        server.injected[fault] += 1
                if fault == "429":
                    return self._send(429, {"error": "rate limited"}, {"Retry-After": "0.05"})
                if fault == "500":
                    return self._send(500, {"error": "internal"})
                chat = path == "/v1/chat/completions"
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                digest = hashlib.sha256(prompt.encode()).hexdigest()[:16]
                if server._slots is not None:
                    server._slots.acquire()
                try:
                    started = time.monotonic()
                    with server._lock:
                        first = digest not in server._seen_prompts
                        server._seen_prompts.add(digest)
                    if fault == "stall" or (server.stall_first and first):
                        time.sleep(server.stall_s)  # the work goes on whether or not the client still waits
                    elif server.delay_s:
                        time.sleep(server.delay_s)
                    finished = time.monotonic()
                finally:
                    if server._slots is not None:
                        server._slots.release()
                with server._lock:
                    server.events.append({"prompt": digest, "arrived": arrived, "started": started, "finished": finished})
                text = solve(prompt, quote=server.quote_answers and not chat)
                if server.leak_key:
                    text += f" (asked with {authorization})"
                if chat:
                    reply = {
                        "object": "chat.completion",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    }
                else:
                    stops = body.get("stop") or []
                    for stop in [stops] if isinstance(stops, str) else stops:
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
        self.root = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.base_url = self.root + "/v1"
        self._thread: threading.Thread | None = None

    def overlapping(self) -> list[tuple[dict, dict]]:
        """Pairs of requests for the same prompt where the second arrived before the first was done
        (on a single-slot server: the prompt prefilled twice, the client having given up on the first)."""
        pairs = []
        by_prompt: dict[str, list[dict]] = {}
        for event in sorted(self.events, key=lambda e: e["arrived"]):
            for earlier in by_prompt.get(event["prompt"], []):
                if event["arrived"] < earlier["finished"]:
                    pairs.append((earlier, event))
            by_prompt.setdefault(event["prompt"], []).append(event)
        return pairs

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
    parser.add_argument("--api-key", default=None, help="accept only this key; a 401 for any other echoes it")
    parser.add_argument("--leak-key", action="store_true", help="every answer quotes the Authorization header it came with")
    parser.add_argument("--quote-answers", action="store_true", help="native completions repeat the opening quote: 'HASH'")
    parser.add_argument("--slots", type=int, default=None, help="requests processed at once (the others queue)")
    parser.add_argument("--stall-first", action="store_true", help="the first request of every prompt takes --stall-s")
    args = parser.parse_args()
    server = FaultServer(
        args.fault_rate, args.stall_s, args.seed, delay_s=args.delay_s, api_key=args.api_key, leak_key=args.leak_key,
        quote_answers=args.quote_answers, slots=args.slots, stall_first=args.stall_first,
    )
    print(server.base_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
