"""``hashhop serve``: the built-in LTM model behind an OpenAI-compatible HTTP server.

Endpoints: ``POST /v1/completions`` (the prompt is the text), ``POST /v1/chat/completions`` (the last
user message is the text; its content a string or a list of text parts, concatenated), ``GET /v1/models``,
``GET /health``. Errors use OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``, ``code``
a string or null): 400 for malformed requests and out-of-range parameters, 404 for unknown paths and
unknown models (``model_not_found``; a request without ``model`` gets the served one), 408 for a body
that does not arrive in time, 413 for bodies over the limit or contexts beyond the machine's memory, 429
(with ``Retry-After``) when more requests wait than the server takes or their bodies would pass the
in-flight byte budget, 500 for anything unexpected; the server keeps running. Decoding is greedy, or for LTM-2 the
beam search ``--model-args`` sets (``beams=4,length_penalty=2``), which is then part of the model's served name
(``builtin:ltm2[beams=4,length_penalty=2]``, what requests name), so clients never mix two decodings' answers: ``n``
(and ``best_of``) up to 128 return that many identical choices; ``temperature`` (0..2) and ``top_p``
(0..1) are checked and do not change the answer.

Resources are bounded whatever the clients do: the queue is checked before a body is read; a declared
``Content-Length`` over the limit is refused before reading; bodies are read only within a global budget
of in-flight bytes (``max_inflight_bytes``, held until the request is answered); headers must arrive
within ``header_timeout_s`` of the connection opening (or of the previous response) and a body within
``body_timeout_s``, else the connection is closed; each read of the model scores a bounded number of
entries (:data:`hashhop.ltm.memory.MAX_CANDIDATES`), so a request's work is bounded by its length.
SIGTERM and SIGINT stop the server at once, even mid-request (the engine runs in a daemon thread).

A context is prefilled once and kept (``--cache-contexts``): every later request whose text has the
same context (everything before ``\\n\\nCOMPLETION:``) reuses it, so many questions about one huge
context cost one prefill. Bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from hashhop.errors import HashHopError

MAX_CHOICES = 128  # OpenAI's own limit on n


@dataclass
class ServeOptions:
    model: str = "builtin:ltm"
    model_args: dict = field(default_factory=dict)  # LTM-2: the engine's decoding (session.ENGINE_ARGS)
    host: str = "127.0.0.1"
    port: int = 8000
    max_waiting: int = 16  # requests queued behind the one being answered; more get 429
    # 128 MB: a 100M-character HashHop prompt as JSON (~103 MB); the engine keeps ~2.15 B per character of it.
    max_request_bytes: int = 128 << 20
    max_inflight_bytes: int = 256 << 20  # bodies read and not yet answered, all requests together; more get 429
    header_timeout_s: float = 15.0  # from a connection's opening (or its previous response) to the end of the headers
    body_timeout_s: float = 60.0  # from the end of the headers to the end of the body
    cache_contexts: int = 4
    default_max_tokens: int = 256
    context: str | None = None  # LTM-2: a file or folder every request continues
    context_cache: str | None = None  # LTM-2: where the prefilled context is saved and memory-mapped back from

    def __post_init__(self) -> None:
        """One-line errors for values the server cannot run with (the CLI passes its options straight here)."""

        def whole(value, lo: int, hi: float = float("inf")) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi

        def seconds(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 86_400

        if not whole(self.port, 1, 65535):
            raise HashHopError(f"port must be 1..65535, got {self.port!r}")
        if not whole(self.max_waiting, 0):
            raise HashHopError(f"max waiting must be a whole number >= 0, got {self.max_waiting!r}")
        if not whole(self.max_request_bytes, 1):
            raise HashHopError(f"max request size must be a whole number of bytes >= 1, got {self.max_request_bytes!r}")
        if not whole(self.max_inflight_bytes, 1):
            raise HashHopError(f"max in-flight bytes must be a whole number >= 1, got {self.max_inflight_bytes!r}")
        if self.max_inflight_bytes < self.max_request_bytes:
            raise HashHopError(
                f"the in-flight budget ({self.max_inflight_bytes:,} bytes) must hold at least one request of the largest size "
                f"({self.max_request_bytes:,} bytes)"
            )
        if not seconds(self.header_timeout_s) or not seconds(self.body_timeout_s):
            raise HashHopError(f"timeouts must be > 0 and <= 86400 s, got {self.header_timeout_s!r} and {self.body_timeout_s!r}")
        if not whole(self.cache_contexts, 1):
            raise HashHopError(f"cache contexts must be a whole number >= 1, got {self.cache_contexts!r}")
        if not whole(self.default_max_tokens, 1):
            raise HashHopError(f"default max tokens must be a whole number >= 1, got {self.default_max_tokens!r}")
        ltm2 = self.model == "builtin:ltm2" or self.model.startswith("builtin:ltm2:")
        if self.model_args and not ltm2:
            raise HashHopError(f"--model-args needs an LTM-2 model (--model builtin:ltm2): {self.model} takes none")
        self.served_name = self.model  # what requests name and replies carry: the model with its decoding
        if ltm2:
            from hashhop.ltm2.session import engine_args, model_name

            self.engine_args = engine_args(self.model, self.model_args)  # checked before any weights load
            self.served_name = model_name(self.model, self.engine_args)
        if (self.context or self.context_cache) and not ltm2:
            raise HashHopError("--context and --context-cache need an LTM-2 model (--model builtin:ltm2): builtin:ltm reads its prompt only")
        if self.context is not None and not os.path.exists(self.context):
            raise HashHopError(f"context {self.context} does not exist: give a file or a folder")
        if self.context_cache is not None and os.path.exists(self.context_cache) and not os.path.isdir(self.context_cache):
            raise HashHopError(f"--context-cache {self.context_cache} is not a folder")


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        headers: dict | None = None,
        code: str | None = None,
        param: str | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.headers, self.code, self.param, self.close = status, kind, headers or {}, code, param, close


def _error(status: int, message: str, kind: str, headers: dict | None = None, code: str | None = None, param: str | None = None):
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _busy(message: str) -> _ApiError:
    return _ApiError(429, message, "rate_limit_error", {"Retry-After": "1"}, code="rate_limit_exceeded")


def load_engine(
    model: str, cache_contexts: int, context: str | None = None, context_cache: str | None = None, model_args: dict | None = None
):
    if model == "builtin:ltm2" or model.startswith("builtin:ltm2:"):
        from hashhop.ltm2.session import Session, engine_args, read_context
        from hashhop.ltm2.session import load_engine as load_ltm2_engine

        engine = load_ltm2_engine(model[len("builtin:ltm2:") :] or None, engine_args(model, model_args or {}))
        log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
        return Session(engine, read_context(context) if context else None, context_cache, progress=True, log=log)
    if context:
        raise HashHopError("--context needs an LTM-2 model (--model builtin:ltm2): builtin:ltm reads its prompt only")
    from hashhop.ltm.engine import Engine
    from hashhop.ltm.load import WEIGHTS, load_ltm

    prefix, _, name = model.partition(":")
    if prefix != "builtin" or not name:
        raise HashHopError(f"hashhop serve runs the built-in model: --model builtin:ltm or builtin:PATH (got {model!r})")
    return Engine(load_ltm(WEIGHTS if name == "ltm" else name), cache_contexts=cache_contexts)


class _Reservation:
    """One request's share of the in-flight byte budget; grows as its body is read, released when answered."""

    def __init__(self, server: Server) -> None:
        self.server, self.bytes = server, 0

    def grow(self, total: int) -> None:
        extra = total - self.bytes
        if extra <= 0:
            return
        if self.server.inflight_bytes + extra > self.server.options.max_inflight_bytes:
            raise _busy(
                f"the server is busy: the request bodies it holds would pass its budget of "
                f"{self.server.options.max_inflight_bytes:,} bytes; retry shortly"
            )
        self.server.inflight_bytes += extra
        self.bytes = total

    def release(self) -> None:
        self.server.inflight_bytes -= self.bytes
        self.bytes = 0


class Server:
    def __init__(self, options: ServeOptions, engine=None) -> None:
        self.options = options
        self.engine = engine or load_engine(
            options.model, options.cache_contexts, options.context, options.context_cache, options.model_args
        )
        self._lock = asyncio.Lock()  # the queue: one request at the engine at a time
        self._engine_lock = threading.Lock()  # the engine itself, even if a waiting request was cancelled
        self._waiting = 0  # requests admitted (reading, queued or running)
        self.inflight_bytes = 0
        self.engine_busy = False

    # -- admission and request parsing ---------------------------------------------------------------
    def _admit(self, request: web.Request) -> _Reservation:
        """Before any byte of the body is read: a declared size over the limit is a 413, a full queue a 429."""
        declared = request.content_length
        if declared is not None and declared > self.options.max_request_bytes:
            raise self._too_large()
        if self._waiting >= self.options.max_waiting + 1:
            raise _busy("the server is busy: too many requests waiting; retry shortly")
        reservation = _Reservation(self)
        if declared:
            reservation.grow(declared)  # a 429 before reading, when the budget cannot hold it
        self._waiting += 1
        return reservation

    def _done(self, reservation: _Reservation) -> None:
        self._waiting -= 1
        reservation.release()

    def _too_large(self) -> _ApiError:
        return _ApiError(
            413, f"the request is larger than the server's limit of {self.options.max_request_bytes:,} bytes", code="request_too_large"
        )

    async def _read_body(self, request: web.Request, reservation: _Reservation) -> bytearray:
        limit = self.options.max_request_bytes
        data = bytearray()

        async def read() -> None:
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    return
                if len(data) + len(chunk) > limit:
                    raise self._too_large()
                reservation.grow(len(data) + len(chunk))  # chunked bodies: the budget is checked as they arrive
                data.extend(chunk)

        try:
            await asyncio.wait_for(read(), self.options.body_timeout_s)
        except asyncio.TimeoutError:
            raise _ApiError(
                408, f"the request body did not arrive within {self.options.body_timeout_s:g} s", code="timeout", close=True
            ) from None
        return data

    async def _body(self, request: web.Request, reservation: _Reservation) -> dict:
        raw = await self._read_body(request, reservation)
        try:
            charset = request.charset
            text = raw if charset is None or charset.lower().replace("_", "-") in ("utf-8", "utf8") else raw.decode(charset)
            del raw
            body = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, LookupError, RecursionError):  # LookupError: bad charset
            raise _ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        if body.get("stream"):
            raise _ApiError(400, "stream=true is not supported; ask without streaming", param="stream")
        return body

    def _check_model(self, body: dict) -> None:
        model = body.get("model")
        if model is None:
            return
        if not isinstance(model, str):
            raise _ApiError(400, "model must be a string", param="model")
        if model != self.options.served_name:
            raise _ApiError(
                404,
                f"The model '{model}' does not exist: this server serves '{self.options.served_name}'",
                code="model_not_found",
                param="model",
            )

    def _max_tokens(self, body: dict) -> int:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
        if value is None:
            return self.options.default_max_tokens
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _ApiError(400, "max_tokens must be a positive integer", param="max_tokens")
        return value

    @staticmethod
    def _number(body: dict, name: str, lo: float, hi: float) -> None:
        value = body.get(name)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
            raise _ApiError(400, f"{name} must be a number from {lo:g} to {hi:g}, got {value!r}", param=name, code="invalid_value")

    @staticmethod
    def _count(body: dict, name: str, lo: int) -> int | None:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_CHOICES:
            raise _ApiError(400, f"{name} must be an integer from {lo} to {MAX_CHOICES}, got {value!r}", param=name, code="invalid_value")
        return value

    def _choices(self, body: dict, completions: bool) -> int:
        """How many choices to return (greedy decoding: identical ones), after checking the sampling parameters."""
        self._number(body, "temperature", 0, 2)
        self._number(body, "top_p", 0, 1)
        n = self._count(body, "n", 1) or 1
        if completions:
            best_of = self._count(body, "best_of", 1)
            if best_of is not None and best_of < n:
                raise _ApiError(400, f"best_of ({best_of}) must be at least n ({n})", param="best_of", code="invalid_value")
        return n

    @staticmethod
    def _stop(body: dict) -> list[str]:
        stop = body.get("stop")
        if stop is None:
            return []
        if isinstance(stop, str):
            return [stop]
        if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
            return stop
        raise _ApiError(400, "stop must be a string or a list of up to 4 strings", param="stop")

    @staticmethod
    def _content(message: dict) -> str:
        """A chat message's text: a string, or a list of text parts (concatenated); null for non-user turns."""
        content = message.get("content")
        if isinstance(content, str):
            return content
        if content is None and message["role"] != "user":
            return ""
        if isinstance(content, list):
            texts = []
            for part in content:
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _ApiError(400, "each content part must be an object with a type", param="messages")
                if part["type"] != "text":
                    raise _ApiError(400, f"only text content parts are supported, got a {part['type']!r} part", param="messages")
                if not isinstance(part.get("text"), str):
                    raise _ApiError(400, "a text content part needs a string text", param="messages")
                texts.append(part["text"])
            return "".join(texts)
        raise _ApiError(400, "each message needs a string role and a content: a string or a list of text parts", param="messages")

    # -- answering ---------------------------------------------------------------------------------
    async def _answer(self, text: str, max_tokens: int, stop: list[str]) -> tuple[str, str]:
        async with self._lock:
            try:
                answer = await self._in_thread(text, max_tokens, stop)
            except HashHopError as err:  # e.g. a context beyond the machine's memory
                raise _ApiError(413, str(err), code="context_too_large") from None
        if getattr(self.engine, "limits", False):  # LTM-2 generated within the limits itself
            return answer.text, answer.finish
        out, finish = answer.text, "stop"
        if len(out) > max_tokens:
            out, finish = out[:max_tokens], "length"
        for s in stop:
            if s and s in out:
                out, finish = out[: out.index(s)], "stop"
        return out, finish

    async def _in_thread(self, text: str, max_tokens: int, stop: list[str]):
        """The engine in a daemon thread: it never keeps the process alive after SIGTERM (asyncio.to_thread would)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(result, error) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def work() -> None:
            try:
                result, error = self._run_engine(text, max_tokens, stop), None
            except BaseException as err:  # noqa: BLE001 - carried to the request
                result, error = None, err
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the loop is gone: the server is stopping
                pass

        threading.Thread(target=work, name="hashhop-engine", daemon=True).start()
        return await future

    def _run_engine(self, text: str, max_tokens: int, stop: list[str]):
        with self._engine_lock:
            self.engine_busy = True
            try:
                if getattr(self.engine, "limits", False):
                    return self.engine.answer(text, max_tokens, stop)
                return self.engine.answer(text)
            except StopIteration as err:  # a StopIteration cannot be set on a future: it would hang the request
                raise RuntimeError("engine error") from err
            finally:
                self.engine_busy = False

    def _usage(self, prompt: str, completion: str, n: int) -> dict:
        # The model reads characters: one token per character.
        return {"prompt_tokens": len(prompt), "completion_tokens": n * len(completion), "total_tokens": len(prompt) + n * len(completion)}

    async def completions(self, request: web.Request) -> web.Response:
        reservation = self._admit(request)
        try:
            body = await self._body(request, reservation)
            self._check_model(body)
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise _ApiError(400, "prompt must be a string (or a list of one string)", param="prompt")
            n, max_tokens, stop = self._choices(body, completions=True), self._max_tokens(body), self._stop(body)
            text, finish = await self._answer(prompt, max_tokens, stop)
        finally:
            self._done(reservation)
        return web.json_response(
            {
                "id": f"cmpl-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": self.options.served_name,
                "choices": [{"index": i, "text": text, "finish_reason": finish, "logprobs": None} for i in range(n)],
                "usage": self._usage(prompt, text, n),
            }
        )

    async def chat(self, request: web.Request) -> web.Response:
        reservation = self._admit(request)
        try:
            body = await self._body(request, reservation)
            self._check_model(body)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _ApiError(400, "messages must be a non-empty list", param="messages")
            texts = []
            for m in messages:
                if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                    raise _ApiError(400, "each message needs a string role and a string content", param="messages")
                texts.append((m["role"], self._content(m)))
            users = [t for role, t in texts if role == "user"]
            prompt = users[-1] if users else texts[-1][1]
            n, max_tokens, stop = self._choices(body, completions=False), self._max_tokens(body), self._stop(body)
            text, finish = await self._answer(prompt, max_tokens, stop)
        finally:
            self._done(reservation)
        message = {"role": "assistant", "content": text}
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.options.served_name,
                "choices": [{"index": i, "message": message, "finish_reason": finish, "logprobs": None} for i in range(n)],
                "usage": self._usage(prompt, text, n),
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.options.served_name, "object": "model", "created": 0, "owned_by": "hashhop"}]}
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "waiting": self._waiting, "inflight_bytes": self.inflight_bytes})

    # -- app ---------------------------------------------------------------------------------------
    @web.middleware
    async def errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except _ApiError as err:
            response = _error(err.status, str(err), err.kind, err.headers, err.code, err.param)
            if err.close:  # send the error, then drop the connection: no lingering read of what the client still sends
                response.force_close()
                await response.prepare(request)
                await response.write_eof()
                request.protocol.force_close()
            return response
        except web.HTTPException as err:  # 404, 405...
            code = {404: "unknown_url", 405: "method_not_allowed"}.get(err.status)
            return _error(err.status, f"{err.reason or 'error'}: {request.method} {request.path}", "invalid_request_error", code=code)
        except Exception as err:  # never die on a request
            return _error(500, f"internal error: {type(err).__name__}", "server_error")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.options.max_request_bytes, middlewares=[self.errors])
        app.add_routes(
            [
                web.post("/v1/completions", self.completions),
                web.post("/v1/chat/completions", self.chat),
                web.get("/v1/models", self.models),
                web.get("/health", self.health),
            ]
        )
        return app

    def runner(self) -> web.AppRunner:
        """The app with the connection limits: headers within ``header_timeout_s`` (aiohttp's keep-alive timer runs
        from a connection's opening and closes it if no whole request has arrived), at most a few seconds of
        draining an unread body after an early error, and about a second for requests in flight at shutdown."""
        return web.AppRunner(
            self.app(),
            handle_signals=False,
            shutdown_timeout=0.5,  # aiohttp waits up to twice this for a request in flight, then cancels it
            keepalive_timeout=self.options.header_timeout_s,
            lingering_time=min(10.0, self.options.body_timeout_s),
        )


async def _serve(server: Server, ready=None) -> None:
    options = server.options
    runner = server.runner()
    await runner.setup()
    try:
        await web.TCPSite(runner, options.host, options.port).start()
    except OSError:
        await runner.cleanup()
        raise
    print(f"hashhop serve: {options.served_name} on http://{options.host}:{options.port}/v1 (OpenAI-compatible)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # stops listening; requests in flight get about a second, then are cancelled


def serve(options: ServeOptions) -> None:
    """Run until SIGTERM or SIGINT. "serving on" is printed once the socket is bound; a failed bind raises OSError."""
    server = Server(options)
    asyncio.run(_serve(server))
    if server.engine_busy:  # a request was mid-computation: its daemon thread would only be torn down at exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
