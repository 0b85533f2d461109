"""``builtin:ltm``: the project's own LTM model (``hashhop/ltm``), run in-process on CPU.
``builtin:ltm2``: LTM-2, the byte-level language model with a learnt memory (``hashhop/ltm2``);
``builtin:ltm2:PATH`` runs other LTM-2 weights (a file from ``hashhop train --model ltm2`` or a lab run folder).

``builtin:ltm`` loads the weights shipped in the package; ``builtin:PATH`` loads a weights file
made by ``hashhop train --out PATH``. Prompts are sized in characters (the model reads characters): a
``--tokenizer`` other than ``chars`` is refused in one line rather than ignored.
The engine keeps the last prefilled contexts, so the queries of one HashHop problem pay one prefill.
"""

from __future__ import annotations

import asyncio

from hashhop.errors import HashHopError
from hashhop.runners.base import BaseRunner, PermanentError, Reply, Request, RunnerOptions, check_model_args, register_runner


class BuiltinRunner(BaseRunner):
    def __init__(self, name: str, options: RunnerOptions) -> None:
        if options.tokenizer not in (None, "chars"):
            raise HashHopError(
                f"builtin:{name} reads characters and sizes prompts in characters: drop --tokenizer "
                f"(or pass --tokenizer chars), got {str(options.tokenizer)[:80]!r}"
            )
        check_model_args(f"builtin:{name}", options.model_args, {})
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


class LTM2Runner(BaseRunner):
    """LTM-2 over raw bytes through :class:`hashhop.ltm2.session.Session`: the queries of one long prompt share its
    prefill (a byte-count prefix cache; nothing reads the prompt's format). ``options.model_args`` may set the
    engine's decoding (:data:`hashhop.ltm2.session.ENGINE_ARGS`, e.g. ``beams=4,length_penalty=2``: a beam search over
    four answers compared by summed log-probability / length**2); it becomes part of the name results record."""

    def __init__(self, path: str | None, options: RunnerOptions) -> None:
        if options.tokenizer not in (None, "chars"):
            raise HashHopError(
                f"builtin:ltm2 reads bytes and sizes prompts in characters: drop --tokenizer (or pass --tokenizer chars), "
                f"got {str(options.tokenizer)[:80]!r}"
            )
        model = "builtin:ltm2" + (f":{path}" if path else "")
        try:
            from hashhop.ltm2.session import Session, engine_args, load_engine, model_name

            args = engine_args(model, options.model_args)
            self.session = Session(load_engine(path, args))
        except ModuleNotFoundError as err:
            raise HashHopError(f"builtin:ltm2 needs torch, safetensors and faiss ({err.name} is missing): pip install -e .") from None
        self.name = model_name(model, args)
        self.chat = False
        self.tokenizer = "chars"
        self.max_context_tokens = options.max_context_tokens
        self.max_concurrency = 1  # CPU-bound
        self._lock = asyncio.Lock()

    @property
    def engine(self):
        return self.session.engine

    @engine.setter
    def engine(self, engine) -> None:  # the ablations swap the network, keeping the session
        from hashhop.ltm2.session import Session

        self.session = Session(engine)

    def continue_text(self, data: bytes) -> None:
        self.session.continue_text(data)

    def _answer(self, request: Request) -> Reply:
        text = request.prompt if request.prompt is not None else (request.messages[-1][1] if request.messages else "")
        try:
            answer = self.session.answer(text, request.max_tokens, request.stop)
        except HashHopError as err:
            raise PermanentError(str(err)) from None
        return Reply(answer.text, len(text.encode("utf-8")), len(answer.text.encode("utf-8")))

    async def complete(self, request: Request) -> Reply:
        async with self._lock:
            return await asyncio.to_thread(self._answer, request)


@register_runner("builtin")
def _make(name: str, options: RunnerOptions) -> BaseRunner:
    if name == "ltm2" or name.startswith("ltm2:"):
        return LTM2Runner(name[5:] or None, options)
    return BuiltinRunner(name, options)
