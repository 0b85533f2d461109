"""``hashhop serve``: the built-in LTM model behind an OpenAI-compatible HTTP server.

Endpoints: ``POST /v1/completions`` (the prompt is the text), ``POST /v1/chat/completions`` (the last
user message is the text), ``GET /v1/models``, ``GET /health``. Errors use OpenAI's shape
(``{"error": {"message", "type", "code"}}``): 400 for malformed requests, 413 for bodies over the
limit or contexts beyond the machine's memory, 429 (with ``Retry-After``) when more requests wait than
the server takes, 404 for unknown paths, 500 for anything unexpected; the server keeps running.

A context is prefilled once and kept (``--cache-contexts``): every later request whose text has the
same context (everything before ``\\n\\nCOMPLETION:``) reuses it, so many questions about one huge
context cost one prefill. Bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from aiohttp import web

from hashhop.errors import HashHopError


@dataclass
class ServeOptions:
    model: str = "builtin:ltm"
    host: str = "127.0.0.1"
    port: int = 8000
    max_waiting: int = 16  # requests queued behind the one being answered; more get 429
    max_request_bytes: int = 1 << 30
    cache_contexts: int = 4
    default_max_tokens: int = 256

    def __post_init__(self) -> None:
        """One-line errors for values the server cannot run with (the CLI passes its options straight here)."""

        def whole(value, lo: int, hi: float = float("inf")) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi

        if not whole(self.port, 1, 65535):
            raise HashHopError(f"port must be 1..65535, got {self.port!r}")
        if not whole(self.max_waiting, 0):
            raise HashHopError(f"max waiting must be a whole number >= 0, got {self.max_waiting!r}")
        if not whole(self.max_request_bytes, 1):
            raise HashHopError(f"max request size must be > 0 bytes, got {self.max_request_bytes!r}")
        if not whole(self.cache_contexts, 1):
            raise HashHopError(f"cache contexts must be a whole number >= 1, got {self.cache_contexts!r}")
        if not whole(self.default_max_tokens, 1):
            raise HashHopError(f"default max tokens must be a whole number >= 1, got {self.default_max_tokens!r}")


class _ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, headers or {}


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return web.json_response(body, status=status, headers=headers)


def load_engine(model: str, cache_contexts: int):
    from hashhop.ltm.engine import Engine
    from hashhop.ltm.load import WEIGHTS, load_ltm

    prefix, _, name = model.partition(":")
    if prefix != "builtin" or not name:
        raise HashHopError(f"hashhop serve runs the built-in model: --model builtin:ltm or builtin:PATH (got {model!r})")
    return Engine(load_ltm(WEIGHTS if name == "ltm" else name), cache_contexts=cache_contexts)


class Server:
    def __init__(self, options: ServeOptions, engine=None) -> None:
        self.options = options
        self.engine = engine or load_engine(options.model, options.cache_contexts)
        self._lock = asyncio.Lock()
        self._waiting = 0

    # -- request parsing --------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> dict:
        try:
            body = await request.json(loads=json.loads)
        except web.HTTPRequestEntityTooLarge:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, LookupError, RecursionError):  # LookupError: bad charset
            raise _ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        if body.get("stream"):
            raise _ApiError(400, "stream=true is not supported; ask without streaming")
        return body

    def _max_tokens(self, body: dict) -> int:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
        if value is None:
            return self.options.default_max_tokens
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _ApiError(400, "max_tokens must be a positive integer")
        return value

    @staticmethod
    def _stop(body: dict) -> list[str]:
        stop = body.get("stop")
        if stop is None:
            return []
        if isinstance(stop, str):
            return [stop]
        if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
            return stop
        raise _ApiError(400, "stop must be a string or a list of up to 4 strings")

    # -- answering ---------------------------------------------------------------------------------
    async def _answer(self, text: str, max_tokens: int, stop: list[str]) -> tuple[str, str]:
        if self._waiting >= self.options.max_waiting + 1:
            raise _ApiError(429, "the server is busy: too many requests waiting; retry shortly", "rate_limit_error", {"Retry-After": "1"})
        self._waiting += 1
        try:
            async with self._lock:
                try:
                    answer = await asyncio.to_thread(self._run_engine, text)
                except HashHopError as err:  # e.g. a context beyond the machine's memory
                    raise _ApiError(413, str(err)) from None
        finally:
            self._waiting -= 1
        out, finish = answer.text, "stop"
        if len(out) > max_tokens:
            out, finish = out[:max_tokens], "length"
        for s in stop:
            if s and s in out:
                out, finish = out[: out.index(s)], "stop"
        return out, finish

    def _run_engine(self, text: str):
        try:
            return self.engine.answer(text)
        except StopIteration as err:  # a StopIteration cannot cross asyncio.to_thread: it would hang the request
            raise RuntimeError("engine error") from err

    def _usage(self, prompt: str, completion: str) -> dict:
        # The model reads characters: one token per character.
        return {"prompt_tokens": len(prompt), "completion_tokens": len(completion), "total_tokens": len(prompt) + len(completion)}

    async def completions(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise _ApiError(400, "prompt must be a string (or a list of one string)")
        text, finish = await self._answer(prompt, self._max_tokens(body), self._stop(body))
        return web.json_response(
            {
                "id": f"cmpl-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": self.options.model,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                "usage": self._usage(prompt, text),
            }
        )

    async def chat(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _ApiError(400, "messages must be a non-empty list")
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise _ApiError(400, "each message needs a string role and a string content")
        users = [m["content"] for m in messages if m["role"] == "user"]
        prompt = users[-1] if users else messages[-1]["content"]
        text, finish = await self._answer(prompt, self._max_tokens(body), self._stop(body))
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.options.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}],
                "usage": self._usage(prompt, text),
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.options.model, "object": "model", "created": 0, "owned_by": "hashhop"}]}
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "waiting": self._waiting})

    # -- app ---------------------------------------------------------------------------------------
    @web.middleware
    async def errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except _ApiError as err:
            return _error(err.status, str(err), err.kind, err.headers)
        except web.HTTPRequestEntityTooLarge:
            return _error(
                413, f"the request is larger than the server's limit of {self.options.max_request_bytes:,} bytes", "invalid_request_error"
            )
        except web.HTTPException as err:  # 404, 405...
            return _error(err.status, err.reason or "error", "invalid_request_error")
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


def serve(options: ServeOptions) -> None:
    server = Server(options)
    print(f"hashhop serve: {options.model} on http://{options.host}:{options.port}/v1 (OpenAI-compatible)", flush=True)
    web.run_app(server.app(), host=options.host, port=options.port, print=None)
