"""How a HashHop sample and one of its queries become a model request.

Built in: ``chat`` (an instruction for chat models) and ``native`` (Magic's own completion format,
ending with ``QUERY = '`` so the model writes the answer and the closing quote). A JSON file with
the fields of :class:`Template` defines another; ``user`` and ``system`` are ``str.format`` strings
over {prompt}, {query}, {hops}, {hop_word}, {cot_instruction}, {answer_form}, {completion_header}.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, fields

from hashhop.errors import HashHopError
from hashhop.runners.base import Request
from hashhop.task.grammar import completion_header, query_line
from hashhop.task.sample import Chain

_CHAT_USER = """Below is a list of assignments between random strings, one per line. `A = B` means A points to B; a value in quotes ends a chain.

{prompt}

Start from {query} and follow the assignments for {hops} {hop_word}. {cot_instruction}
Reply with exactly one line of the form: {query} = '{answer_form}'"""


@dataclass(frozen=True)
class Template:
    name: str
    user: str
    system: str | None = None
    native: bool = False  # a raw-text request that ends inside the answer's opening quote
    stop: tuple[str, ...] = ()

    def request(self, prompt: str, chain: Chain, hops: int, chain_of_thought: bool, max_tokens: int, chat: bool) -> Request:
        text = self.render(prompt, chain, hops, chain_of_thought)
        if self.native:
            return Request(max_tokens=max_tokens, prompt=text, stop=self.stop)
        if not chat:  # a base model behind a completion endpoint: the instruction as plain text
            return Request(max_tokens=max_tokens, prompt=text + "\n", stop=self.stop)
        messages = ((("system", self.system),) if self.system else ()) + (("user", text),)
        return Request(max_tokens=max_tokens, messages=messages, stop=self.stop)

    def render(self, prompt: str, chain: Chain, hops: int, chain_of_thought: bool) -> str:
        fields_ = {
            "prompt": prompt,
            "query": chain.query,
            "hops": hops,
            "hop_word": "assignment" if hops == 1 else "assignments",
            "cot_instruction": "Write every string you reach, in order, separated by ' = '."
            if chain_of_thought
            else "Write only the string you reach at the end.",
            "answer_form": " = ".join(f"<string {i}>" for i in range(1, hops + 1)) if chain_of_thought else "<final string>",
            "completion_header": completion_header(hops, chain_of_thought),
        }
        try:
            return self.user.format(**fields_)
        except (KeyError, IndexError, ValueError, AttributeError) as err:
            raise HashHopError(f"template {self.name}: bad field {err} (known: {', '.join(fields_)})") from None


TEMPLATES = {
    "chat": Template(name="chat", user=_CHAT_USER),
    # No stop on the quote: a model that opens with a quote (``'HASH'``) would be cut to nothing. The scorer
    # reads up to the closing quote, and the answer budget bounds the length.
    "native": Template(name="native", user="{prompt}\n\n{completion_header}" + query_line("{query}"), native=True, stop=("\n",)),
}


MAX_TEMPLATE_BYTES = 1 << 20  # a template is a few lines; a larger "template" (/dev/zero, a dataset) is a mistake


def load_template(name: str) -> Template:
    """A built-in template by name, or a JSON file holding a template's fields: a regular file of at most
    1 MB (a device, a FIFO or a folder is refused before anything is read)."""
    if name in TEMPLATES:
        return TEMPLATES[name]
    try:
        info = os.stat(name)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        raise HashHopError(f"unknown template {name!r}: use {', '.join(TEMPLATES)} or the path of a JSON template file") from None
    if stat.S_ISDIR(info.st_mode):
        raise HashHopError(f"template {name} is a folder: name a JSON template file")
    if not stat.S_ISREG(info.st_mode):
        raise HashHopError(f"template {name} is not a regular file: name a JSON template file")
    if info.st_size > MAX_TEMPLATE_BYTES:
        raise HashHopError(f"template file {name} is over {MAX_TEMPLATE_BYTES >> 20} MB: not a template")
    try:
        with open(name, "rb") as handle:
            raw = handle.read(MAX_TEMPLATE_BYTES + 1)  # the file may have grown since stat
    except OSError as err:
        raise HashHopError(f"cannot read template file {name}: {err.strerror or err}") from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise HashHopError(f"template file {name} is over {MAX_TEMPLATE_BYTES >> 20} MB: not a template")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise HashHopError(f"template file {name} is not valid JSON ({err.msg}, line {err.lineno})") from None
    except (ValueError, RecursionError) as err:  # not UTF-8, a 5,000-digit number, [[[[...
        raise HashHopError(f"template file {name} is not valid JSON ({type(err).__name__})") from None
    known = {f.name for f in fields(Template)}
    if not isinstance(data, dict) or "user" not in data or set(data) - known:
        raise HashHopError(f"template file {name} must be a JSON object with 'user' and optionally {', '.join(sorted(known - {'user'}))}")
    data.setdefault("name", name)
    stop = data.get("stop", [])
    types_ok = (
        isinstance(data["name"], str)
        and isinstance(data["user"], str)
        and isinstance(data.get("system") or "", str)
        and isinstance(stop, list)
        and all(isinstance(s, str) for s in stop)
        and isinstance(data.get("native", False), bool)
    )
    if not types_ok:
        raise HashHopError(f"template file {name}: name, user and system are strings, stop a list of strings, native true or false")
    data["stop"] = tuple(stop)
    return Template(**data)
