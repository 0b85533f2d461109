"""OpenAI-compatible HTTP runner: OpenAI, vLLM, SGLang, llama.cpp server, Ollama (chat or completions).

Base URL: ``--base-url`` or ``$OPENAI_BASE_URL`` (default https://api.openai.com/v1). Key:
``--api-key`` or ``$OPENAI_API_KEY``; it is sent in a header and never stored anywhere else."""

from __future__ import annotations

import asyncio
import errno
import json
import os

from hashhop.errors import HashHopError
from hashhop.runners.base import (
    BaseRunner,
    FatalError,
    PermanentError,
    Reply,
    Request,
    RunnerOptions,
    TransientError,
    check_model_args,
    register_runner,
)
from hashhop.task.tokens import ServerTokenizer, register_tokenizer

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_LOCAL_LIMITS = {errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS}
_REASONING = ("o1", "o3", "o4", "gpt-5")
# OpenAI model families and the encodings they use (for sizing without a tokenize endpoint).
_ENCODINGS = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
)


class OpenAIRunner(BaseRunner):
    def __init__(self, model: str, options: RunnerOptions) -> None:
        self.model = model
        self.name = f"openai:{model}"
        check_model_args(self.name, options.model_args, {})
        self.base_url = (options.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise HashHopError(f"base URL {self.base_url!r} is not an http(s) URL: pass --base-url http://HOST:PORT/v1")
        api_key = options.api_key or os.environ.get("OPENAI_API_KEY")
        self._secrets = tuple(secret for secret in (api_key,) if secret and len(secret) >= 4)
        self.missing_key = self.base_url == DEFAULT_BASE_URL and not api_key
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if options.endpoint not in ("chat", "completions"):
            raise HashHopError(f"unknown endpoint {options.endpoint!r}: use chat or completions")
        self.chat = options.endpoint == "chat"
        self.max_context_tokens = options.max_context_tokens
        self.timeout_s = options.timeout_s
        self.tokenizer = options.tokenizer or self._default_tokenizer()
        self._session = None

    @property
    def cache_identity(self) -> str:
        return f"{self.name}@{self.base_url}"

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _default_tokenizer(self) -> str:
        for prefix, encoding in _ENCODINGS:
            if self.model.startswith(prefix):
                return encoding
        return "server"

    def resolve_tokenizer(self) -> str:
        """The tokenizer name to size with; "server" asks the server's tokenize endpoint."""
        if self.tokenizer == "server":
            try:
                tokenizer = ServerTokenizer(self.base_url, self.model, headers=self._headers)
            except HashHopError as err:
                raise HashHopError(self.redact(str(err))) from None
            register_tokenizer(tokenizer.name, tokenizer)
            self.tokenizer = tokenizer.name
        return self.tokenizer

    def check_ready(self) -> None:
        """Fail before a run (not before a dry run) when the requests could not succeed."""
        if self.missing_key:
            raise HashHopError("no API key for api.openai.com: set OPENAI_API_KEY or pass --api-key")

    def _http(self):
        import aiohttp

        if self._session is None:
            # aiohttp, not httpx: httpx's pool costs O(connections) per request, ~7 ms at 64-way concurrency.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        return self._session

    async def complete(self, request: Request) -> Reply:
        import aiohttp

        body = {"model": self.model, "temperature": 0, **request.payload()}
        if not body["stop"]:
            del body["stop"]
        if self.model.startswith(_REASONING):  # these take max_completion_tokens and no temperature
            body["max_completion_tokens"] = body.pop("max_tokens")
            del body["temperature"]
        path = "/chat/completions" if request.messages is not None else "/completions"
        try:
            async with self._http().post(self.base_url + path, json=body) as response:
                status = response.status
                content_type = response.headers.get("content-type", "")
                retry_after = _retry_after(response.headers)
                raw = await response.read()
        except asyncio.TimeoutError:
            # The server may still be working on it: wait about as long before asking again (a single-slot
            # server would otherwise prefill the same prompt twice).
            raise TransientError(
                f"timeout after {self.timeout_s:g} s (the server may still be working on it: a long prompt on a busy "
                "server can take minutes; pass a longer --timeout)",
                retry_after_s=self.timeout_s,
            ) from None
        except aiohttp.ClientConnectorError as err:
            if err.errno in _LOCAL_LIMITS:  # out of sockets or ports here, not the server's fault: worth a retry
                raise TransientError(f"cannot open a connection: {err.strerror or err}") from None
            # nothing listens there (or no such host): no request of the run can succeed
            raise FatalError(f"cannot connect to {self.base_url}: {err.strerror or err} (is the server running?)") from None
        except aiohttp.ClientError as err:
            raise TransientError(f"connection failed: {type(err).__name__}: {err}") from None
        if status == 429 or status >= 500 or status == 408:
            raise TransientError(f"HTTP {status}", retry_after_s=retry_after)
        detail = self.redact(raw[:4096].decode(errors="replace")).strip()[:200]  # redacted before it is cut: no half key
        if status in (401, 403):
            raise FatalError(f"HTTP {status} from {self.base_url}: the server refused the API key ({detail[:120]})")
        if status == 404:
            hint = "" if self.base_url.endswith("/v1") else " (the base URL has no /v1: OpenAI-compatible servers answer under http://HOST:PORT/v1)"
            raise FatalError(f"HTTP 404 from {self.base_url + path}{hint}: {detail[:120]}")
        if status >= 400:
            raise PermanentError(f"HTTP {status}: {detail}")
        if "json" not in content_type:
            raise TransientError(f"response is {content_type or 'untyped'}, not JSON")
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"] if request.messages is not None else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError) as err:  # ValueError: bad JSON or bad encoding
            raise TransientError(f"malformed response ({type(err).__name__})") from None
        usage = data.get("usage") or {}
        return Reply(text or "", usage.get("prompt_tokens"), usage.get("completion_tokens"))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after(headers) -> float | None:
    try:
        return float(headers["retry-after"])
    except (KeyError, ValueError):
        return None


@register_runner("openai")
def _make(model: str, options: RunnerOptions) -> OpenAIRunner:
    return OpenAIRunner(model, options)
