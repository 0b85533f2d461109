"""``builtin:ltm``: the project's own LTM model (``hashhop/ltm``), run in-process on CPU.

``builtin:ltm`` loads the weights shipped in the package; ``builtin:PATH`` loads a weights file
made by ``hashhop train --out PATH``. Prompts are sized in characters (the model reads characters): a
``--tokenizer`` other than ``chars`` is refused in one line rather than ignored.
The engine keeps the last prefilled contexts, so the queries of one HashHop problem pay one prefill.
"""

from __future__ import annotations

import asyncio

from hashhop.errors import HashHopError
from hashhop.runners.base import BaseRunner, PermanentError, Reply, Request, RunnerOptions, register_runner


class BuiltinRunner(BaseRunner):
    def __init__(self, name: str, options: RunnerOptions) -> None:
        if options.tokenizer not in (None, "chars"):
            raise HashHopError(
                f"builtin:{name} reads characters and sizes prompts in characters: drop --tokenizer "
                f"(or pass --tokenizer chars), got {str(options.tokenizer)[:80]!r}"
            )
        try:
            from hashhop.ltm.engine import Engine
            from hashhop.ltm.load import WEIGHTS, load_ltm
        except ModuleNotFoundError:
            raise HashHopError("the builtin runner needs torch and safetensors: pip install -e '.[hf]'") from None
        path = WEIGHTS if name == "ltm" else name
        self.engine = Engine(load_ltm(path))
        self.name = f"builtin:{name}"
        self.chat = False
        self.tokenizer = "chars"
        self.max_context_tokens = options.max_context_tokens
        self.max_concurrency = 1  # CPU-bound
        self._lock = asyncio.Lock()

    def _answer(self, request: Request) -> Reply:
        # A chat request (another template) still gets an answer: its last message is read as the text.
        text = request.prompt if request.prompt is not None else (request.messages[-1][1] if request.messages else "")
        try:
            answer = self.engine.answer(text).text[: request.max_tokens]
        except HashHopError as err:  # a context beyond this machine's memory: recorded as failed, not retried
            raise PermanentError(str(err)) from None
        for stop in request.stop:
            if stop and stop in answer:
                answer = answer[: answer.index(stop)]
        return Reply(answer, len(text), len(answer))

    async def complete(self, request: Request) -> Reply:
        async with self._lock:
            return await asyncio.to_thread(self._answer, request)


@register_runner("builtin")
def _make(name: str, options: RunnerOptions) -> BuiltinRunner:
    return BuiltinRunner(name, options)
