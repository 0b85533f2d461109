"""LTM-2's training data: a byte-level mixture of real code and synthetic long-range recall, one sample per row.

The lab task ``ltm_mixture`` (:func:`mixture_batch`) draws each row from a mixture of five components, each a
plain function ``component(rng, length, corpus=None) -> (text_bytes, loss_mask)`` returning exactly ``length``
bytes and a mask that is True on the bytes whose prediction is trained:

* ``code``     a random window of the training code corpus (pinned PyPI sources, never the held-out ones);
               loss on every byte.
* ``hashhop``  Magic's HashHop format from the data engine (``hashhop.task``), randomised per sample (hops,
               chain of thought, hash length, alphabet, queries); loss on the answers and their closing quotes,
               never on the prompt's random hashes (incompressible).
* ``kv``       key-value recall in other layouts (``K -> V``, ``K: V``, JSON, Python, ``K = V;``), some 2-hop
               chains answered with the intermediate written out; loss on the answers.
* ``needle``   needle sentences in a haystack of code or word-list prose, asked at the end; loss on the answers.
* ``vartrack`` variable-assignment chains in a haystack, the question asks which variables hold a value;
               loss on the answer (the variables in chain order).

Every sample is real text of exactly the requested length (no padding): a component sizes its content to fit
and fills what is left with haystack (code or prose) *before* the content, so answers come last.

The surface forms avoid RULER's exact strings (``One of the special magic ...``, ``VAR ABCDE = 12345``, its noise
sentences and questions): RULER is LTM-2's held-out evaluation and must stay unseen.

The training code corpus (:func:`build_train_corpus`) holds the ``.py`` files of pinned packages
(:data:`TRAIN_PACKAGES`) and refuses any package of the held-out corpus (``hashhop.lab.corpus``)::

    python -m hashhop.ltm2.data --out PATH [--packages sympy==1.13.3] [--progress]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hashhop.errors import HashHopError
from hashhop.lab.corpus import HELD_OUT_PACKAGES, STDLIB, build_corpus, package_files

if TYPE_CHECKING:
    import torch

    from hashhop.lab.data import TaskConfig

TASK_NAME = "ltm_mixture"
IGNORE = -100  # hashhop.lab.data.IGNORE (not imported: that module imports torch)
DEFAULT_MIX: dict[str, float] = {"code": 0.35, "hashhop": 0.35, "kv": 0.12, "needle": 0.12, "vartrack": 0.06}
TRAIN_PACKAGES: tuple[str, ...] = ("sympy==1.13.3",)
# A curriculum inside every batch: this share of the recall rows hold a shorter task (log-uniform from MIN_SEQ_LEN
# to the full length) after a code or prose window, so reads first learn among few entries (a retrieval plateau
# at full size is long: probe in docs/ltm2.md) while the full-size rows teach them to stay sharp among many.
SHORT_RECALL = 0.5
MIN_SEQ_LEN = 256  # every component fits its smallest sample (one needle, one chain ...) in this many bytes
READS = 2  # read targets are given for the first two memory reads (blocks 1 and 2)
KINDS = 2  # kinds of read target, weighted apart in the loss: JUMP (to a link) and COPY (the bytes that follow one)
JUMP, COPY = 0, 1
SOURCES = 2  # context bytes per read target, the loss accepts either (a hash's bytes are in `A = B` and `B = C`)
BUILD_HINT = "build it with python -m hashhop.ltm2.data --out PATH and set task.extra.corpus to PATH"

Rng = np.random.Generator
Sample = tuple[bytes, np.ndarray]

# Hash alphabets: the data engine's names plus two base64-like literal ones (no space, quote, '=' or backslash,
# which HashHop's format forbids; no ';', ':' or '"' either, which the kv layouts use as delimiters).
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"
HASH_ALPHABETS: dict[str, str] = {
    "letters": _LETTERS,
    "digits": _DIGITS,
    "hex": "0123456789abcdef",
    "alnum": _LETTERS + _DIGITS,
    "base64": _LETTERS + _DIGITS + "+/",
    "urlsafe": _LETTERS + _DIGITS + "_-",
}

# A small built-in word list for prose haystacks and word-like keys and values (no downloads).
WORDS: tuple[str, ...] = tuple(
    """
    able about above across after again against almost alone along already also always among animal answer
    apple area around autumn basket beach bench between bird black blanket board boat book bottle bread bridge
    bright brother build button cabin candle carry castle chair change cheese circle city clean clock cloud coast
    coffee cold corner cotton country course cover cup dance dark desk dinner doctor door dream drive early earth
    engine evening every family farm father field finger fire floor flower follow forest friend garden gentle glass
    gold harbor heavy hill history horse house island journey kettle kitchen ladder lake lamp large later leaf letter
    light little long machine market meadow middle minute mirror morning mountain music narrow near never night
    north number ocean office orange paper pencil people piano picture plain planet pocket quiet rabbit railway
    river road rock round saddle sand school season second shadow shelf ship short silver simple sister slow small
    snow soft south spoon spring square station stone story street strong summer table tall teacher thread through
    tiny today tower town train travel under valley village voice wagon walk warm water weather west window winter
    wood yellow young
    """.split()
)

# RULER's exact surface forms, never to appear in a training sample (checked by the tests).
RULER_STRINGS: tuple[str, ...] = (
    "special magic",
    "The grass is green. The sky is blue.",
    "Find all variables that are assigned the value",
    "Memorize and track the chain of variable assignments",
    "mentioned in the provided text",
)


# -- segments: text pieces that know whether they are trained --------------------------------------------------
@dataclass
class Built:
    """A sample as it is assembled: byte pieces, each trained (True) or not, and what a test needs to check it."""

    parts: list[tuple[bytes, bool]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    # Read targets (the auxiliary read loss): (byte, read, sources, kind) = the byte at index ``byte`` of the sample
    # is a copy of the context byte at any index in ``sources``, and memory read number ``read`` (0: the first
    # block's) should find it there; ``kind`` JUMP or COPY. A read finds byte c in the entry c - 1 (an entry's value
    # holds the byte after it).
    reads: list[tuple[int, int, tuple[int, ...], int]] = field(default_factory=list)

    def add(self, text: str | bytes, trained: bool = False) -> None:
        if text:
            self.parts.append((text.encode("ascii") if isinstance(text, str) else text, trained))

    def __len__(self) -> int:
        return sum(len(p) for p, _ in self.parts)

    def render(self, length: int) -> Sample:
        data = b"".join(p for p, _ in self.parts)
        if len(data) != length:  # a sizing bug, never bad input
            raise RuntimeError(f"built {len(data)} bytes where {length} were asked ({self.meta.get('component')})")
        mask = np.zeros(length, dtype=bool)
        at = 0
        for piece, trained in self.parts:
            if trained:
                mask[at : at + len(piece)] = True
            at += len(piece)
        return data, mask

    def read_sources(self, length: int) -> np.ndarray:
        """(length, READS, KINDS, SOURCES) int64: for each byte of the sample, each read and each kind of target, the
        context bytes it copies (-1: none), from :attr:`reads`."""
        sources = np.full((length, READS, KINDS, SOURCES), -1, dtype=np.int64)
        for byte, read, found, kind in self.reads:
            found = found[:SOURCES]
            sources[byte, read, kind, : len(found)] = found
        return sources


def _rng(rng: Rng | int) -> Rng:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_length(length: int) -> None:
    if not isinstance(length, int) or length < MIN_SEQ_LEN:
        raise HashHopError(f"a sample needs at least {MIN_SEQ_LEN} bytes, got {length!r}: raise seq_len")


# -- haystacks ---------------------------------------------------------------------------------------------------
def _prose(rng: Rng, n: int) -> bytes:
    """``n`` bytes of sentences of random words from :data:`WORDS`, a few sentences per line."""
    out: list[str] = []
    size = 0
    while size < n:
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), int(rng.integers(4, 13)))]
        sentence = " ".join(words).capitalize() + ("." if rng.random() < 0.85 else "?")
        sentence += "\n" if rng.random() < 0.35 else " "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:n].encode("ascii")


def _window(rng: Rng, corpus: np.ndarray, n: int) -> bytes:
    if len(corpus) < n:
        raise HashHopError(f"the code corpus holds {len(corpus):,} bytes, fewer than one sample's {n:,}: {BUILD_HINT}")
    start = int(rng.integers(0, len(corpus) - n + 1))
    return corpus[start : start + n].tobytes()


def _filler(rng: Rng, n: int, corpus: np.ndarray | None) -> bytes:
    """``n`` bytes of haystack ending in a newline (so what follows starts a line): a code window when there is a
    corpus (half the time), else prose."""
    if n <= 0:
        return b""
    body = _window(rng, corpus, n - 1) if corpus is not None and rng.random() < 0.5 else _prose(rng, n - 1)
    return body + b"\n"


def _insert_lines(hay: bytes, lines: list[bytes], rng: Rng) -> tuple[bytes, list[int]]:
    """``lines`` inserted, in their order, at random line starts of ``hay`` (which ends in a newline); also where
    each line starts in the result."""
    starts = np.concatenate([[0], np.flatnonzero(np.frombuffer(hay, dtype=np.uint8) == 10) + 1])
    where = np.sort(rng.choice(starts, size=len(lines)))  # sorted: the lines keep their order
    pieces, prev, at, offsets = [], 0, 0, []
    for pos, line in zip(where.tolist(), lines):
        at += pos - prev
        offsets.append(at)
        at += len(line) + 1
        pieces += [hay[prev:pos], line, b"\n"]
        prev = pos
    pieces.append(hay[prev:])
    return b"".join(pieces), offsets


# -- random names and values -------------------------------------------------------------------------------------
def _hash(rng: Rng, alphabet: str, length: int) -> str:
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), length))


def _word(rng: Rng) -> str:
    return WORDS[int(rng.integers(len(WORDS)))]


def _distinct(make: Callable[[], str], used: set[str]) -> str:
    """A fresh string from ``make`` (not in ``used``, which it joins): recall needs unambiguous keys."""
    for _ in range(1000):
        text = make()
        if text not in used:
            used.add(text)
            return text
    raise RuntimeError(f"no fresh key or value after 1000 draws ({len(used)} used)")  # the caps keep this far off


def _log_uniform(rng: Rng, low: int, high: int) -> int:
    return int(np.exp(rng.uniform(np.log(low), np.log(high + 1))))


def _maker(rng: Rng, identifier: bool = False) -> Callable[[], str]:
    """A random kind of key or value for one sample: hashes (one alphabet, lengths in a range), word-like
    (``user_4821``, ``amber-falcon``) or numbers. ``identifier``: only valid Python names."""
    kinds = ["hash", "word_num", "word_word", "number"] if not identifier else ["ident", "word_num", "word_word_"]
    kind = kinds[int(rng.integers(len(kinds)))]
    name = list(HASH_ALPHABETS)[int(rng.integers(len(HASH_ALPHABETS)))]
    alphabet = HASH_ALPHABETS[name] if kind == "hash" else HASH_ALPHABETS["alnum"]
    low = _log_uniform(rng, 4, 24)
    high = low + int(rng.integers(0, 9))
    if kind == "hash":
        return lambda: _hash(rng, alphabet, int(rng.integers(low, high + 1)))
    if kind == "ident":
        return lambda: _hash(rng, _LETTERS, 1) + _hash(rng, alphabet, int(rng.integers(low, high + 1)) - 1)
    if kind == "word_num":
        return lambda: f"{_word(rng)}_{int(rng.integers(10, 10 ** int(rng.integers(2, 7))))}"
    if kind == "word_word":
        return lambda: f"{_word(rng)}-{_word(rng)}"
    if kind == "word_word_":
        return lambda: f"{_word(rng)}_{_word(rng)}"
    return lambda: str(int(rng.integers(10 ** (low % 6 + 1), 10 ** (low % 6 + 4))))


def _needle_value(rng: Rng, kind: str) -> str:
    if kind == "number":
        digits = int(rng.integers(5, 10))
        return str(int(rng.integers(10 ** (digits - 1), 10**digits)))
    if kind == "uuid":
        return str(uuid.UUID(bytes=rng.bytes(16), version=4))
    if kind == "word":
        return _word(rng)
    return _hash(rng, HASH_ALPHABETS["hex"], int(rng.integers(6, 13)))


def _needle_key(rng: Rng, kind: str) -> str:
    if kind == "word_num":
        return f"{_word(rng)}_{int(rng.integers(100, 100000))}"
    if kind == "word_word":
        return f"{_word(rng)}-{_word(rng)}"
    return f"{_hash(rng, 'ABCDEFGHJKLMNPQRSTUVWXYZ', 2)}-{int(rng.integers(100, 10000))}"


# -- components ----------------------------------------------------------------------------------------------------
def code_sample(rng: Rng | int, length: int, corpus: np.ndarray | None = None) -> Sample:
    """A random window of the training code corpus; every byte trained."""
    if corpus is None:
        raise HashHopError(f"the code component needs the training code corpus: {BUILD_HINT}")
    data = _window(_rng(rng), corpus, length)
    return data, np.ones(length, dtype=bool)


HASHHOP_MAX_QUERIES = 16  # queries per HashHop row: 2 .. this (task.extra.hashhop_max_queries), as many as fit
HASHHOP_HOPS = (1, 2, 3, 4)
HASHHOP_HOP_WEIGHTS = (0.4, 0.35, 0.15, 0.1)
HASHHOP_ALPHABETS = ("letters", "digits", "hex", "alnum", HASH_ALPHABETS["base64"], HASH_ALPHABETS["urlsafe"])


def _hash_capacity(radix: int, length: int) -> int:
    """Distinct hashes the data engine's HashFamily offers (``hashhop.task.keyed``)."""
    space = radix**length
    return space if space <= 1 << 32 else min(1 << ((radix.bit_length() - 1) * length), 1 << 64)


NEAR_MISS_SHARED = 8  # a near-miss hash shares 1 .. this many leading or trailing characters with another hash


def near_miss_hashes(rng: Rng, hashes: Sequence[str], alphabet: str) -> dict[str, str]:
    """A rewrite of some of a problem's ``hashes`` (all distinct, one length) into near misses of others: each
    rewritten hash keeps the first or the last k characters (k from 1 to :data:`NEAR_MISS_SHARED`, less than the
    length) of another hash, kept as it is, and draws the rest afresh. A random context of millions of characters
    holds many hashes that share a few characters with the one asked for, which a 16K-byte row of random hashes
    hardly ever does: keys and copies trained on such rows need not look past two or three characters.
    Returns ``{old: new}`` for the rewritten ones (still all distinct; a hash with no fresh relative stays)."""
    length = len(hashes[0])
    share = float(rng.uniform(0.25, 0.75))
    picked = rng.random(len(hashes)) < share
    parents = [h for h, p in zip(hashes, picked) if not p]
    if not parents or length < 2:
        return {}
    used = set(hashes)
    out = {}
    for old in (h for h, p in zip(hashes, picked) if p):
        parent = parents[int(rng.integers(len(parents)))]
        k = int(rng.integers(1, min(length - 1, NEAR_MISS_SHARED) + 1))
        for _ in range(20):  # small alphabets and short hashes may have no fresh relative: the hash stays
            fresh = _hash(rng, alphabet, length - k)
            new = parent[:k] + fresh if rng.random() < 0.5 else fresh + parent[-k:]
            if new not in used:
                used.add(new)
                out[old] = new
                break
    return out


def _rewrite_hashes(prompt: str, rewrite: dict[str, str]) -> str:
    """Magic's prompt with each hash replaced by ``rewrite``'s (lines ``K = V`` and ``K = 'V'``; one length, so
    every line keeps its offset)."""
    lines = []
    for line in prompt.split("\n"):
        key, value = line.split(" = ")
        quoted = value.startswith("'")
        value = value.strip("'")
        value = rewrite.get(value, value)
        lines.append(f"{rewrite.get(key, key)} = " + (f"'{value}'" if quoted else value))
    return "\n".join(lines)


def build_hashhop(
    rng: Rng | int,
    length: int,
    corpus: np.ndarray | None = None,
    max_queries: int = HASHHOP_MAX_QUERIES,
    near_miss: float = 0.0,
    query_reads: bool = False,
    cot_reads: bool = False,
    second_read_jumps: bool = False,
    second_read_copies: int = 0,
) -> Built:
    """:func:`hashhop_sample` with its parts: ``meta`` holds the prompt and completion exactly as written. With
    probability ``near_miss`` the row's hashes are rewritten so that many share a few first or last characters with
    another (:func:`near_miss_hashes`): the same format, with the crowd of near misses a long context holds.
    ``query_reads``: read targets in each question too; ``cot_reads``: at the space after each hash a chain-of-thought
    answer writes too; ``second_read_jumps`` / ``second_read_copies``: an answer's jumps / each hash's first copied bytes
    are targets of the second read too (:func:`hashhop_reads`); the text is the same."""
    from hashhop.task.generator import plan
    from hashhop.task.grammar import completion_header, format_completion, query_line
    from hashhop.task.sample import Chain
    from hashhop.task.spec import HashHopSpec, resolve_alphabet

    rng = _rng(rng)
    _check_length(length)
    hops = int(rng.choice(HASHHOP_HOPS, p=HASHHOP_HOP_WEIGHTS))
    cot = bool(rng.random() < 0.7)
    # Hash length: mostly 8-16 (Magic's 16 and shorter), the rest log-uniform over 4-64.
    hash_length = int(rng.integers(8, 17)) if rng.random() < 0.6 else _log_uniform(rng, 4, 64)
    alphabet = HASHHOP_ALPHABETS[int(rng.integers(len(HASHHOP_ALPHABETS)))]
    radix = len(resolve_alphabet(alphabet))
    wanted = int(rng.integers(2, max_queries + 1))
    header = completion_header(hops, cot)

    def completion_chars(queries: int) -> int:
        answer = hops * hash_length + 3 * (hops - 1) if cot else hash_length
        return len(header) + queries * (len(query_line("x" * hash_length)) + answer + 2)  # answer, quote, newline

    def chain_chars() -> int:
        return hops * (2 * hash_length + 4) + 2

    # As many queries as fit (down to one); when even one chain and its answer do not fit, shorter hashes, fewer
    # hops. Short hashes over a small alphabet may run out of distinct hashes for a long context: longer ones.
    for _ in range(200):
        queries = wanted
        while queries > 1 and queries * chain_chars() - 1 > length - 2 - completion_chars(queries):
            queries -= 1
        context = length - 2 - completion_chars(queries)
        if queries * chain_chars() - 1 > context:
            if hash_length > 4:
                hash_length = max(4, hash_length // 2)
            elif hops > 1:
                hops -= 1
                header = completion_header(hops, cot)
            else:  # unreachable for length >= MIN_SEQ_LEN
                raise HashHopError(f"a HashHop sample does not fit in {length} bytes")
        elif _hash_capacity(radix, hash_length) < ((context + 1) // chain_chars() + 1) * (hops + 1):
            hash_length += 1
        else:
            break
    else:  # unreachable: sizes settle in a few steps
        raise RuntimeError(f"HashHop sizing did not settle for {length} bytes")
    spec = HashHopSpec(
        context_tokens=context,
        tokenizer="chars",
        hops=hops,
        chain_of_thought=cot,
        hash_length=hash_length,
        alphabet=alphabet,
        num_queries=queries,
        seed=int(rng.integers(0, 2**62)),
    )
    problem = plan(spec)
    prompt, completion, queries = problem.prompt, problem.completion, problem.queries
    if near_miss > 0 and rng.random() < near_miss:
        rewrite = near_miss_hashes(rng, [h for chain in problem.all_chains() for h in chain], resolve_alphabet(alphabet))
        prompt = _rewrite_hashes(prompt, rewrite)
        queries = tuple(Chain(tuple(rewrite.get(h, h) for h in c.hashes), c.lines, offsets=c.offsets) for c in queries)
        completion = format_completion(hops, cot, [(c.query, c.answer(cot)) for c in queries])
    built = Built(meta={"component": "hashhop", "spec": spec, "prompt": prompt, "completion": completion, "queries": queries})
    built.meta["filler"] = length - len(prompt) - 2 - len(completion)
    built.add(_filler(rng, built.meta["filler"], corpus))
    prompt_at = len(built)
    built.add(prompt + "\n\n" + header)
    for chain in queries:  # the completion, piece by piece: loss on each answer and its closing quote
        answer = chain.answer(cot)
        built.add(query_line(chain.query))
        built.reads += hashhop_reads(chain, cot, prompt_at, len(built), query_reads, cot_reads, second_read_jumps, second_read_copies)
        built.add(answer + "'", trained=True)
        built.add("\n")
    return built


def hashhop_reads(
    chain, cot: bool, prompt_at: int, answer_at: int, query_reads: bool = False, cot_reads: bool = False, second_read_jumps: bool = False,
    second_read_copies: int = 0,
) -> list[tuple[int, int, tuple[int, ...], int]]:
    """Where each byte of a HashHop answer is read from, for :attr:`Built.reads`: ``chain`` a
    :class:`hashhop.task.formats.Chain` (hashes H1 .. Hk+1, its links' offsets in the prompt), ``prompt_at`` /
    ``answer_at`` where the prompt and the answer start in the sample.

    Two kinds, weighted apart by the trainer (the copies outnumber the jumps 15 to 1 with 16-byte hashes; in one
    pool they drowned the jumps' signal: docs/ltm2.md). JUMP, where the answer moves to a link: with chain of
    thought (``H2 = H3 = ... = Hk+1``, or one hop) the first byte of H2 (out of the first link ``H1 = H2``, whose
    text differs from the query ``H1 = '`` by the quote), the ``=`` after each written hash (out of the link it
    starts) and the first byte of each later hash (the last link's is after a quote the answer does not have);
    without chain of thought (``Hk+1``) the answer's first byte is where the chain composes, so the first read is
    pointed at the first link's value (H2, the intermediate) and the second read at the second link's. COPY, every
    other byte of the answer, for the first read: a hash's later bytes out of its link (the first 15 are asked one
    byte off after a quote-skipped jump) or out of the next link, which starts with the hash (either entry is right),
    the space after each ``=`` and the closing quote. The space right after a written hash is left out: the two
    links that hold it show the same 15 bytes there, then a newline in one and the space in the other.

    ``query_reads``: two more JUMPs in the question ``H1 = '`` itself (given, not trained as bytes), as a CoT answer
    has them after each hash it writes: the read after ``H1 `` at the first link's ``=``, and the read after
    ``H1 = `` at the link's space after ``=`` (its window is the question's, without the quote), so a pointer that
    stays on it (unquoted link: the value follows) or steps once (quoted: over the quote) carries the first jump.

    ``cot_reads``: one more JUMP in a chain-of-thought answer, for both reads, the space right after each hash it
    writes before the last, out of the link that hash starts (its space). The windows of the two links that hold the
    hash end the same way there (hashes of 15+ bytes), but only that link holds a space next; the other, where the copy
    came from, holds a newline. A content read cannot tell them apart: the pointer, on the link the hash was copied
    from, must let go (its learnt bonus from the hidden state; the second read's state holds what the first returned
    there, that link's newline), and the read then lands on the next link before ``= `` is written, so the pointer can
    carry the jump. Tried once (seventeenth session), not shipped: 3 hops CoT at 1M fell (docs/ltm2.md).

    ``second_read_jumps``: a chain-of-thought answer's JUMPs (its first byte and, after each hash it writes, the ``=`` and
    the next hash's first byte) are targets of the second read too, the same entries. Unsupervised, the second block's
    read learnt to find a link by its hash's last few bytes and the ``= '`` after them, enough among a 16K row's links
    and fooled at 1M+ by another link whose hash ends the same way; its read decides the answer's byte there
    (benchmarks/ltm2_jump_reads.py). The near-miss rows (hashes sharing their last 1-8 characters) make that shortcut fail
    in training too.

    ``second_read_copies`` N: the COPYs of each hash's bytes 1..N (the copy's first bytes after its jump) are targets
    of the second read too, the same entries. There the first read's heads find the link (one of them suffices for
    the loss), while at 10M the second block's read, unsupervised, often takes the entries laid out as the question
    (another quoted link whose value starts as the copy so far) in the answers that go wrong
    (benchmarks/ltm2_jump_reads.py --copy-bytes)."""
    hashes, hops = chain.hashes, len(chain.hashes) - 1
    link_at = [prompt_at + offset for offset in chain.offsets]  # link m (0-based): H(m+1) = H(m+2)
    asked = []
    if query_reads:  # the question ends `H1 = '` right before answer_at
        equals = link_at[0] + len(hashes[0]) + 1
        asked = [(answer_at - 3, 0, (equals,), JUMP), (answer_at - 1, 0, (equals + 2,), JUMP)]

    def value_at(m: int) -> int:  # where link m's value starts (after the opening quote of the last link)
        return link_at[m] + len(hashes[m]) + 3 + (m == hops - 1)

    def copies(at: int, m: int) -> list[tuple[int, int, tuple[int, ...], int]]:
        """Bytes 1.. of link m's value, written from ``at`` on (its byte 0, a jump, at ``at``)."""
        targets = [(value_at(m) + j, *((link_at[m + 1] + j,) if m + 1 < hops else ())) for j in range(len(hashes[m + 1]))]
        first = [(at + j, 0, targets[j], COPY) for j in range(1, len(hashes[m + 1]))]
        return first + [(at + j, 1, targets[j], COPY) for j in range(1, min(second_read_copies + 1, len(hashes[m + 1])))]

    def closing_quote(at: int) -> tuple[int, int, tuple[int, ...], int]:
        return (at, 0, (value_at(hops - 1) + len(hashes[-1]),), COPY)

    if not cot and hops > 1:
        reads = [*asked, (answer_at, 0, (value_at(0),), JUMP), (answer_at, 1, (value_at(1),), JUMP)]
        return reads + copies(answer_at, hops - 1) + [closing_quote(answer_at + len(hashes[-1]))]
    reads = [*asked, (answer_at, 0, (value_at(0),), JUMP), *copies(answer_at, 0)]
    at = answer_at + len(hashes[1])
    for m in range(1, hops):  # " = H(m+2)" out of link m, which starts with the hash just written
        if cot_reads:  # both reads: the second sees what the first read returned (the copied link ends here)
            reads += [(at, read, (link_at[m] + len(hashes[m]),), JUMP) for read in (0, 1)]
        reads.append((at + 1, 0, (link_at[m] + len(hashes[m]) + 1,), JUMP))
        reads.append((at + 2, 0, (link_at[m] + len(hashes[m]) + 2,), COPY))
        reads.append((at + 3, 0, (value_at(m),), JUMP))
        reads += copies(at + 3, m)
        at += 3 + len(hashes[m + 1])
    if second_read_jumps and (cot or hops == 1):  # (without CoT the second read has a target of its own already)
        reads += [(position, 1, targets, JUMP) for position, read, targets, kind in reads[len(asked) :] if read == 0 and kind == JUMP]
    return reads + [closing_quote(at)]


def hashhop_sample(
    rng: Rng | int, length: int, corpus: np.ndarray | None = None, max_queries: int = HASHHOP_MAX_QUERIES, near_miss: float = 0.0
) -> Sample:
    """Magic's HashHop text (prompt, blank line, completion) made by the data engine, sized to fit ``length``,
    haystack filling the rest in front; trained on the answers and their closing quotes. 2 .. ``max_queries``
    queries (as many as fit); ``near_miss``: the share of rows whose hashes are rewritten into near misses."""
    return build_hashhop(rng, length, corpus, max_queries, near_miss).render(length)


KV_MAX_ITEMS = 1000  # pairs or chains per sample: every key and value kind has over 9,000 distinct strings
# Layouts: (pair line, query prefix, chain joiner for 2-hop answers or None, closing text of an answer).
KV_LAYOUTS: dict[str, tuple[str, str, str | None, str]] = {
    "arrow": ("{k} -> {v}", "{k} -> ", " -> ", "\n"),
    "colon": ("{k}: {v}", "{k}: ", ": ", "\n"),
    "python": ('{k} = "{v}"', 'assert {k} == "', None, '"'),
    "semicolon": ("{k} = {v};", "{k} = ", " = ", ";"),
    "json": ('"{k}": "{v}"', 'data["{k}"] == "', None, '"'),
}


def build_kv(rng: Rng | int, length: int, corpus: np.ndarray | None = None) -> Built:
    """:func:`kv_sample` with its parts: ``meta`` holds the layout, the pairs and the queries with answers."""
    rng = _rng(rng)
    _check_length(length)
    layout = list(KV_LAYOUTS)[int(rng.integers(len(KV_LAYOUTS)))]
    line_fmt, query_fmt, joiner, close = KV_LAYOUTS[layout]
    used: set[str] = set()
    new_key = _maker(rng, identifier=layout == "python")
    new_value = _maker(rng)
    chain_share = float(rng.choice([0.0, 0.15, 0.4])) if joiner else 0.0
    json_indent = int(rng.choice([0, 2, 4]))
    # Entries: one pair (k, v), or a 2-hop chain (a, b, c) whose middle is a key too.
    items: list[tuple[str, ...]] = []
    costs: list[int] = []
    while sum(costs) < length and len(items) < KV_MAX_ITEMS:  # beyond the cap, haystack fills long samples
        if rng.random() < chain_share:
            item = (_distinct(new_key, used), _distinct(new_key, used), _distinct(new_value, used))
        else:
            item = (_distinct(new_key, used), _distinct(new_value, used))
        items.append(item)
        costs.append(sum(len(line_fmt.format(k=a, v=b)) + 6 for a, b in zip(item, item[1:])))  # +6: newline, JSON indent
    order = rng.permutation(len(items)).tolist()
    asked = order[: int(rng.integers(2, 9))]

    def query_parts(item: tuple[str, ...]) -> tuple[str, str]:
        answer = joiner.join(item[1:]) if joiner else item[1]
        return query_fmt.format(k=item[0]), answer + close

    def query_cost(i: int) -> int:
        prefix, answer = query_parts(items[i])
        return len(prefix) + len(answer) + (0 if close == "\n" else 1)

    # Keep the asked items; drop the others from the end (they are in random order) until everything fits, and
    # ask fewer questions rather than leave fewer unasked pairs than asked ones (recall needs distractors).
    kept = list(range(len(items)))
    overhead = 1 + 16  # the blank line before the queries; JSON's "data = {" and "}"

    def total() -> int:
        return sum(costs[i] for i in kept) + sum(query_cost(i) for i in asked) + overhead

    asked_set = set(asked)
    while total() > length:
        droppable = [i for i in kept if i not in asked_set]
        if len(asked) > 1 and len(droppable) <= len(asked):
            asked_set.discard(asked.pop())  # its pair stays, unasked
        elif droppable:
            kept.remove(droppable[-1])
        else:  # unreachable for length >= MIN_SEQ_LEN
            raise HashHopError(f"a key-value sample does not fit in {length} bytes")
    pairs = [(a, b) for i in kept for a, b in zip(items[i], items[i][1:])]
    rng.shuffle(pairs)
    lines = [line_fmt.format(k=k, v=v) for k, v in pairs]
    if layout == "json":
        if json_indent:
            pad = " " * json_indent
            context = "data = {\n" + ",\n".join(pad + line for line in lines) + "\n}\n"
        else:
            context = "data = {" + ", ".join(lines) + "}\n"
    else:
        context = "\n".join(lines) + "\n"
    queries = [query_parts(items[i]) for i in asked]
    query_chars = sum(len(p) + len(a) + (0 if close == "\n" else 1) for p, a in queries)
    built = Built(meta={"component": "kv", "layout": layout, "pairs": dict(pairs), "queries": queries})
    built.add(_filler(rng, length - len(context) - 1 - query_chars, corpus))
    built.add(context + "\n")
    for prefix, answer in queries:
        built.add(prefix)
        built.add(answer, trained=True)
        if close != "\n":
            built.add("\n")
    return built


def kv_sample(rng: Rng | int, length: int, corpus: np.ndarray | None = None) -> Sample:
    """Key-value recall in one of :data:`KV_LAYOUTS` (random keys and values, shuffled, some 2-hop chains), then
    queries in the layout's style; trained on the answers (2-hop: the intermediate too) and their closing text."""
    return build_kv(rng, length, corpus).render(length)


# Needle templates: (statement, question, closing text of the answer). Not RULER's sentence.
NEEDLE_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("The passcode for {key} is {value}.", "What is the passcode for {key}? The passcode for {key} is ", "."),
    ("# config: {key} = {value}", "# config lookup: {key} = ", "\n"),
    ("Remember: the {key} number is {value}.", "Question: what is the {key} number? Answer: the {key} number is ", "."),
    ("Note that {key} was assigned the value {value}.", "Which value was assigned to {key}? The value assigned to {key} is ", "."),
    ("[{key}] secret = {value}", "Recall the secret of [{key}]. [{key}] secret = ", "\n"),
    ("log: stored {value} under key {key}", "log: fetch key {key} -> ", "\n"),
    ("{key} access code: {value}", "Enter the access code for {key}: ", "\n"),
    ("The hidden token attached to {key} reads {value}.", "What does the hidden token attached to {key} read? It reads ", "."),
)
NEEDLE_VALUES = ("number", "uuid", "word", "hash")
NEEDLE_KEYS = ("word_num", "word_word", "code")


# Asides a question may put between its last mention of the key and the answer (``far_keys``): the key then sits
# 15-50 bytes before the answer, as in questions that restate what they ask about; every template above asks with
# the key in the answer's last 15 bytes. Ours, not RULER's wording.
NEEDLE_ASIDES: tuple[str, ...] = (
    " as given above",
    ", as it was written earlier,",
    " (look it up in the text above)",
    " that was stated earlier in this file",
    ", per the notes you read before this question,",
    " from the lines above",
    " which appeared somewhere in the context",
    ", the one recorded in this document,",
)
NEEDLE_ASKED = 2  # questions per needle sample: 1 or 2 (task.extra.needle_max_asked raises it for long rows)


def needle_question(question: str, aside: str = "", lead: str = "") -> str:
    """A needle template's question with ``aside`` after its last ``{key}``, less the ``lead`` its answer starts
    with instead (the space before the value: the question then ends in a word, as a sentence to complete does)."""
    head, _, tail = question.rpartition("{key}")
    if not tail.endswith(lead):
        raise ValueError(f"question {question!r} does not end with {lead!r}")
    tail = tail[: len(tail) - len(lead)]
    return f"{head}{{key}}{aside}{tail}"


def build_needle(
    rng: Rng | int,
    length: int,
    corpus: np.ndarray | None = None,
    far_keys: float = 0.0,
    max_asked: int = NEEDLE_ASKED,
    reads: bool = False,
    hold: bool = False,
) -> Built:
    """:func:`needle_sample` with its parts: ``meta`` holds the template, the needles, the asked keys, the aside and
    the answer's lead. ``far_keys``: the share of samples whose questions put an aside (:data:`NEEDLE_ASIDES`)
    after the key, half of them with the space before the value in the answer; ``max_asked`` > 2: 1 .. that many
    questions about up to twice as many needles; ``reads``: read targets (:attr:`Built.reads`): each answer's value
    is a JUMP to the needle's value, its later bytes COPYs (none where the template writes the value before the key:
    nothing in front of the value tells the needles apart); ``hold`` (with ``reads``): where a question has an aside
    and its text after the key is the needle's (:func:`needle_holds`), the reads from the key to the answer too: each
    byte of the aside is read out of the needle's byte after its key (found from the question's key, then held while
    the aside passes, as a pointer's "same" candidate does), the question's tail and the value step on along the
    needle from there, one entry a byte; all JUMPs."""
    rng = _rng(rng)
    _check_length(length)
    template = int(rng.integers(len(NEEDLE_TEMPLATES)))
    statement, question, close = NEEDLE_TEMPLATES[template]
    value_kind = NEEDLE_VALUES[int(rng.integers(len(NEEDLE_VALUES)))]
    key_kind = NEEDLE_KEYS[int(rng.integers(len(NEEDLE_KEYS)))]
    used: set[str] = set()
    count = int(rng.integers(1, 5)) if max_asked <= NEEDLE_ASKED else int(rng.integers(1, 2 * max_asked + 1))
    needles = [
        (_distinct(lambda: _needle_key(rng, key_kind), used), _distinct(lambda: _needle_value(rng, value_kind), used)) for _ in range(count)
    ]
    if max_asked <= NEEDLE_ASKED:
        asked = needles[: 1 if count == 1 or rng.random() < 0.7 else 2]  # the rest are distractors with other keys
    else:
        asked = needles[: int(rng.integers(1, min(count, max_asked) + 1))]
    rng.shuffle(needles)
    aside, lead = "", ""
    if far_keys and rng.random() < far_keys:  # (no draw without far_keys: the samples stay as they were)
        aside = NEEDLE_ASIDES[int(rng.integers(len(NEEDLE_ASIDES)))]
        lead = " " if question.endswith(" ") and rng.random() < 0.5 else ""
    asking = needle_question(question, aside, lead)

    def fixed() -> int:
        lines = sum(len(statement.format(key=k, value=v)) + 1 for k, v in needles)
        asks = sum(len(asking.format(key=k)) + len(lead) + len(v) + len(close) + (0 if close == "\n" else 1) for k, v in asked)
        return lines + asks

    while fixed() > length:  # only with very short samples: drop distractors, then the later questions
        extra = [n for n in needles if n not in asked]
        if extra:
            needles.remove(extra[-1])
        elif len(asked) > 1:
            asked = asked[:-1]
            needles = [n for n in needles if n in asked]
        else:  # unreachable for length >= MIN_SEQ_LEN
            raise HashHopError(f"a needle sample does not fit in {length} bytes")
    lines = [statement.format(key=k, value=v).encode("ascii") for k, v in needles]
    hay, offsets = _insert_lines(_filler(rng, length - fixed(), corpus), lines, rng)
    value_in_line = statement[: statement.index("{value}")]
    keyed = statement.index("{key}") < statement.index("{value}")
    value_at = {k: at + len(value_in_line.format(key=k)) for (k, _), at in zip(needles, offsets)}
    built = Built(meta={"component": "needle", "template": template, "needles": needles, "asked": asked, "aside": aside, "lead": lead})
    built.add(hay)
    holds = hold and bool(aside) and needle_holds(template)
    between = len(statement.split("{key}")[1].split("{value}")[0])  # bytes from the needle's key to its value
    for key, value in asked:
        key_end = len(built) + len(asking.rpartition("{key}")[0].format(key=key)) + len(key)  # the aside's first byte
        built.add(asking.format(key=key))
        answer_at = len(built) + len(lead)
        built.add(lead + value + close, trained=True)
        if close != "\n":
            built.add("\n")
        if reads and keyed:
            source = value_at[key]
            if holds:  # the aside held on the needle's byte after its key, then one step a byte up to the value
                after_key = source - between
                built.reads += [(key_end + i, 0, (after_key,), JUMP) for i in range(len(aside))]
                built.reads += [(key_end + len(aside) + j, 0, (after_key + j,), JUMP) for j in range(between)]
            built.reads += [(answer_at, 0, (source,), JUMP)] + [(answer_at + j, 0, (source + j,), COPY) for j in range(1, len(value))]
    return built


def needle_holds(template: int) -> bool:
    """Whether :data:`NEEDLE_TEMPLATES` ``[template]``'s question ends, after its last key, with the needle's own text
    between its key and its value (`` is `` in both): then the answer can be read by holding on the needle's key and
    stepping along it (:func:`build_needle`'s ``hold``)."""
    statement, question, _ = NEEDLE_TEMPLATES[template]
    if statement.index("{key}") > statement.index("{value}"):
        return False
    return question.rpartition("{key}")[2] == statement.split("{key}")[1].split("{value}")[0]


def needle_sample(rng: Rng | int, length: int, corpus: np.ndarray | None = None, far_keys: float = 0.0, max_asked: int = NEEDLE_ASKED) -> Sample:
    """1-4 needle sentences (one of :data:`NEEDLE_TEMPLATES`, distinct keys) in a code or prose haystack, then a
    question about one or two of them in the same style; trained on the values and their closing text.
    ``far_keys`` / ``max_asked``: :func:`build_needle`."""
    return build_needle(rng, length, corpus, far_keys, max_asked).render(length)


# Variable-tracking styles: (first assignment, copy). Not RULER's ``VAR ABCDE = 12345``.
VARTRACK_STYLES: dict[str, tuple[str, str]] = {
    "python": ("{name} = {value}", "{name} = {src}"),
    "js": ("let {name} = {value};", "let {name} = {src};"),
    "shell": ("{name}={value}", "{name}=${src}"),
    "walrus": ("{name} := {value}", "{name} := {src}"),
}
VARTRACK_QUESTIONS: tuple[str, ...] = (
    "Question: which variables end up holding {value}? In assignment order: ",
    "# variables equal to {value}, in the order they were set: ",
    "Q: list every variable whose value is {value}. A: ",
)


def build_vartrack(rng: Rng | int, length: int, corpus: np.ndarray | None = None) -> Built:
    """:func:`vartrack_sample` with its parts: ``meta`` holds the style, the chains and the asked values."""
    rng = _rng(rng)
    _check_length(length)
    style = list(VARTRACK_STYLES)[int(rng.integers(len(VARTRACK_STYLES)))]
    first, copy = VARTRACK_STYLES[style]
    question = VARTRACK_QUESTIONS[int(rng.integers(len(VARTRACK_QUESTIONS)))]
    used: set[str] = set()
    values: set[str] = set()

    def name() -> str:
        return _hash(rng, "xyzuvwabcpqr", 1) + "_" + _hash(rng, HASH_ALPHABETS["letters"][:26], int(rng.integers(3, 6)))

    def value() -> str:
        return str(int(rng.integers(10, 10 ** int(rng.integers(3, 8)))))

    chains = []  # (value, [names in chain order])
    for _ in range(1 if rng.random() < 0.6 else 2):
        chains.append((_distinct(value, values), [_distinct(name, used) for _ in range(int(rng.integers(1, 6)) + 1)]))
    asked = chains[: 1 if len(chains) == 1 or rng.random() < 0.7 else 2]

    def chain_lines(chain: tuple[str, list[str]]) -> list[str]:
        val, names = chain
        return [first.format(name=names[0], value=val)] + [copy.format(name=b, src=a) for a, b in zip(names, names[1:])]

    def asks() -> list[tuple[str, str]]:
        return [(question.format(value=val), ", ".join(names) + "\n") for val, names in asked]

    def fixed() -> int:
        return sum(len(line) + 1 for c in chains for line in chain_lines(c)) + sum(len(q) + len(a) for q, a in asks())

    while fixed() > length:  # only with very short samples: drop the unasked chain, then shorten chains
        if len(chains) > len(asked):
            chains = list(asked)
        elif len(asked) > 1:
            chains = asked = asked[:1]
        elif len(chains[0][1]) > 2:
            chains = asked = [(chains[0][0], chains[0][1][:-1])]
        else:  # unreachable for length >= MIN_SEQ_LEN
            raise HashHopError(f"a variable-tracking sample does not fit in {length} bytes")
    # Each chain's lines keep their order; the chains interleave at random.
    per_chain = [chain_lines(c) for c in chains]
    owners = rng.permutation(np.repeat(np.arange(len(chains)), [len(p) for p in per_chain])).tolist()
    cursor = [0] * len(chains)
    lines = []
    for owner in owners:
        lines.append(per_chain[owner][cursor[owner]].encode("ascii"))
        cursor[owner] += 1
    hay, _ = _insert_lines(_filler(rng, length - fixed(), corpus), lines, rng)
    built = Built(meta={"component": "vartrack", "style": style, "chains": chains, "asked": asked})
    built.add(hay)
    for ask, answer in asks():
        built.add(ask)
        built.add(answer, trained=True)
    return built


def vartrack_sample(rng: Rng | int, length: int, corpus: np.ndarray | None = None) -> Sample:
    """1-2 variable-assignment chains (1-5 copies each) in a code or prose haystack, then the question which
    variables hold a chain's value; trained on the answer: the variables in chain order, and the newline."""
    return build_vartrack(rng, length, corpus).render(length)


COMPONENTS: dict[str, Callable[[Rng | int, int, np.ndarray | None], Sample]] = {
    "code": code_sample,
    "hashhop": hashhop_sample,
    "kv": kv_sample,
    "needle": needle_sample,
    "vartrack": vartrack_sample,
}
# Components that can say where their answers are copied from (read targets for the auxiliary read loss).
BUILDERS: dict[str, Callable[[Rng | int, int, np.ndarray | None], Built]] = {"hashhop": build_hashhop, "needle": build_needle}


# -- the lab task ------------------------------------------------------------------------------------------------
def load_train_corpus(path: str) -> np.memmap:
    """The training code corpus as a read-only uint8 memory map (mapped once per path and file version)."""
    try:
        info = os.stat(path)
    except OSError:
        raise HashHopError(f"the training code corpus {path!r} cannot be read: {BUILD_HINT}") from None
    return _map_corpus(path, info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=4)
def _map_corpus(path: str, mtime_ns: int, size: int) -> np.memmap:
    if size == 0 or not os.path.isfile(path):
        raise HashHopError(f"the training code corpus {path!r} is empty or not a file: {BUILD_HINT}")
    try:
        return np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as err:
        raise HashHopError(f"cannot read the training code corpus {path!r} ({err.strerror or err}): {BUILD_HINT}") from None


def mixture_weights(mix: object) -> tuple[list[str], np.ndarray]:
    """The components and their probabilities from a ``{name: weight}`` mix (weights >= 0, not all 0)."""
    if not isinstance(mix, dict) or not mix:
        raise HashHopError(f"mix must be an object of component weights such as {DEFAULT_MIX}, got {mix!r}")
    unknown = sorted(set(mix) - set(COMPONENTS))
    if unknown:
        raise HashHopError(f"unknown mixture component(s) {', '.join(map(str, unknown))}: known are {', '.join(COMPONENTS)}")
    names = [n for n in COMPONENTS if n in mix]
    weights = []
    for n in names:
        w = mix[n]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w) or w < 0:
            raise HashHopError(f"mixture weight of {n} must be a number >= 0, got {w!r}")
        weights.append(float(w))
    total = sum(weights)
    if total <= 0:
        raise HashHopError(f"mixture weights {mix} are all zero: give at least one component a positive weight")
    return names, np.asarray(weights) / total


def mixture_batch(cfg: TaskConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The lab task ``ltm_mixture``: each row one sample of ``cfg.seq_len + 1`` bytes from the mixture
    ``cfg.extra['mix']`` (default :data:`DEFAULT_MIX`), split into inputs and next-byte targets (-100 where no loss
    is taken). Deterministic given ``generator``'s state; the code corpus is ``cfg.extra['corpus']``; a HashHop row
    asks 2 .. ``cfg.extra['hashhop_max_queries']`` (default :data:`HASHHOP_MAX_QUERIES`) queries, as many as fit.

    With ``cfg.extra['read_targets']`` a third tensor (batch, seq_len, READS, KINDS, SOURCES): for the input at
    position p, the memory entries (-1: none) each read should find to predict byte p + 1, per kind of target (:meth:`Built.read_sources`;
    HashHop rows have them, and needle rows with ``cfg.extra['needle_reads']``). The rows are the same with and without it.
    ``cfg.extra['needle_far_keys']`` / ``['needle_max_asked']`` / ``['needle_hold']``: :func:`build_needle`'s
    ``far_keys`` / ``max_asked`` / ``hold``."""
    import torch

    names, probs = mixture_weights(cfg.extra.get("mix", DEFAULT_MIX))
    path = cfg.extra.get("corpus")
    needs_corpus = "code" in names and probs[names.index("code")] > 0
    if needs_corpus and not path:
        raise HashHopError(f"the ltm_mixture task's code component needs task.extra.corpus: {BUILD_HINT}")
    corpus = load_train_corpus(str(path)) if path else None  # given without code weight: haystacks use it
    length = cfg.seq_len + 1
    _check_length(length)
    short = cfg.extra.get("short_recall", SHORT_RECALL)
    if isinstance(short, bool) or not isinstance(short, (int, float)) or not 0 <= short <= 1:
        raise HashHopError(f"task.extra.short_recall must be a number from 0 to 1, got {short!r}")
    max_queries = cfg.extra.get("hashhop_max_queries", HASHHOP_MAX_QUERIES)
    if isinstance(max_queries, bool) or not isinstance(max_queries, int) or not 2 <= max_queries <= 4096:
        raise HashHopError(f"task.extra.hashhop_max_queries must be a whole number from 2 to 4096, got {max_queries!r}")
    query_reads = cfg.extra.get("hashhop_query_reads", False)
    if not isinstance(query_reads, bool):
        raise HashHopError(f"task.extra.hashhop_query_reads must be true or false, got {query_reads!r}")
    cot_reads = cfg.extra.get("hashhop_cot_reads", False)
    if not isinstance(cot_reads, bool):
        raise HashHopError(f"task.extra.hashhop_cot_reads must be true or false, got {cot_reads!r}")
    second_read_jumps = cfg.extra.get("hashhop_second_read_jumps", False)
    if not isinstance(second_read_jumps, bool):
        raise HashHopError(f"task.extra.hashhop_second_read_jumps must be true or false, got {second_read_jumps!r}")
    second_read_copies = cfg.extra.get("hashhop_second_read_copies", 0)
    if isinstance(second_read_copies, bool) or not isinstance(second_read_copies, int) or not 0 <= second_read_copies <= 64:
        raise HashHopError(f"task.extra.hashhop_second_read_copies must be a whole number from 0 to 64, got {second_read_copies!r}")
    near_miss = cfg.extra.get("hashhop_near_miss", 0.0)
    if isinstance(near_miss, bool) or not isinstance(near_miss, (int, float)) or not 0 <= near_miss <= 1:
        raise HashHopError(f"task.extra.hashhop_near_miss must be a number from 0 to 1, got {near_miss!r}")
    far_keys = cfg.extra.get("needle_far_keys", 0.0)
    if isinstance(far_keys, bool) or not isinstance(far_keys, (int, float)) or not 0 <= far_keys <= 1:
        raise HashHopError(f"task.extra.needle_far_keys must be a number from 0 to 1, got {far_keys!r}")
    max_asked = cfg.extra.get("needle_max_asked", NEEDLE_ASKED)
    if isinstance(max_asked, bool) or not isinstance(max_asked, int) or not NEEDLE_ASKED <= max_asked <= 256:
        raise HashHopError(f"task.extra.needle_max_asked must be a whole number from {NEEDLE_ASKED} to 256, got {max_asked!r}")
    needle_reads = cfg.extra.get("needle_reads", False)
    if not isinstance(needle_reads, bool):
        raise HashHopError(f"task.extra.needle_reads must be true or false, got {needle_reads!r}")
    needle_hold = cfg.extra.get("needle_hold", False)
    if not isinstance(needle_hold, bool):
        raise HashHopError(f"task.extra.needle_hold must be true or false, got {needle_hold!r}")
    if needle_hold and not (needle_reads and far_keys):
        raise HashHopError("task.extra.needle_hold needs needle_reads and needle_far_keys > 0 (it holds reads through the asides)")
    options = {  # per component: its builder's knobs
        "hashhop": {"max_queries": max_queries, "near_miss": float(near_miss)},
        "needle": {"far_keys": float(far_keys), "max_asked": max_asked},
    }
    built_options = {  # read targets only: the same text
        "hashhop": {**options["hashhop"], "query_reads": query_reads, **({"cot_reads": True} if cot_reads else {}), **({"second_read_jumps": True} if second_read_jumps else {}), **({"second_read_copies": second_read_copies} if second_read_copies else {})},
        "needle": {**options["needle"], "reads": needle_reads, **({"hold": True} if needle_hold else {})},
    }
    # One seed per row from the torch generator: the rows are independent and reproducible.
    seeds = torch.randint(0, 2**62, (batch,), generator=generator).tolist()
    want_reads = bool(cfg.extra.get("read_targets", False))
    rows = np.empty((batch, length), dtype=np.int64)
    masks = np.empty((batch, length), dtype=bool)
    sources = np.full((batch, length, READS, KINDS, SOURCES), -1, dtype=np.int64) if want_reads else None

    def sample(name: str, rng: Rng, size: int, row: int, lead: int) -> Sample:
        if want_reads and name in BUILDERS:  # the same sample, built with its read targets
            built = BUILDERS[name](rng, size, corpus, **built_options.get(name, options.get(name, {})))
            found = built.read_sources(size)
            sources[row, lead:] = np.where(found >= 0, found + lead, -1)
            return built.render(size)
        return COMPONENTS[name](rng, size, corpus, **options.get(name, {}))

    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        name = names[int(rng.choice(len(names), p=probs))]
        if short > 0 and name != "code" and length > MIN_SEQ_LEN and rng.random() < short:
            inner = _log_uniform(rng, MIN_SEQ_LEN, length - 1)
            lead = length - inner
            data, mask = sample(name, rng, inner, i, lead)
            if corpus is not None:  # real code before the task, trained like any code
                data, mask = _window(rng, corpus, lead) + data, np.concatenate([np.ones(lead, bool), mask])
            else:
                data, mask = _prose(rng, lead - 1) + b"\n" + data, np.concatenate([np.zeros(lead, bool), mask])
        else:
            data, mask = sample(name, rng, length, i, 0)
        rows[i] = np.frombuffer(data, dtype=np.uint8)
        masks[i] = mask
    inputs = rows[:, :-1]
    targets = np.where(masks[:, 1:], rows[:, 1:], IGNORE)  # target t is byte t + 1 where byte t + 1 is trained
    if sources is None:
        return torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(targets)
    # input p predicts byte p + 1; a copy of context byte c is read from entry c - 1
    entries = np.where(sources[:, 1:] >= 0, sources[:, 1:] - 1, -1)
    return torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(targets), torch.from_numpy(np.ascontiguousarray(entries))


# -- the training code corpus ---------------------------------------------------------------------------------------
def _parse_pin(pin: str) -> tuple[str, str]:
    if not isinstance(pin, str) or pin.count("==") != 1:
        raise HashHopError(f"training package {pin!r} must be pinned as NAME==VERSION (e.g. {TRAIN_PACKAGES[0]})")
    name, version = (part.strip() for part in pin.split("=="))
    if not name or not version:
        raise HashHopError(f"training package {pin!r} must be pinned as NAME==VERSION (e.g. {TRAIN_PACKAGES[0]})")
    return name, version


def held_out(name: str) -> bool:
    """Whether ``name`` is part of the held-out corpus (``hashhop.lab.corpus``): the standard library or one
    of its packages. Those must never be trained on."""
    module = name.lower().replace("-", "_")
    return module == STDLIB or module in HELD_OUT_PACKAGES or module in sys.stdlib_module_names


def build_train_corpus(out_path: str, packages: Sequence[str] = TRAIN_PACKAGES, progress: bool = False) -> dict:
    """Write the training code corpus to ``out_path`` atomically: the ``.py`` files of the pinned ``packages``,
    in sorted ``package/relpath`` order, each after a line ``# file: package/relpath`` (the held-out corpus's
    layout). Refuses held-out packages, and packages missing or at another version. Returns the stats."""
    if isinstance(packages, str):
        packages = [p for p in packages.split(",") if p.strip()]
    pins = [_parse_pin(p) for p in packages]
    if not pins:
        raise HashHopError(f"no training packages given: name some, e.g. {TRAIN_PACKAGES[0]}")
    for name, _ in pins:  # before anything is read: a held-out package never reaches the corpus
        if held_out(name):
            raise HashHopError(f"{name} is in the held-out corpus (stdlib, {', '.join(HELD_OUT_PACKAGES)}): it must never be trained on")
    files = []
    for name, version in pins:
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise HashHopError(f"training package {name} is not installed: pip install {name}=={version}") from None
        if installed != version:
            raise HashHopError(f"training package {name} is {installed}, the corpus pins {version}: pip install {name}=={version}")
        files.extend(package_files(name.lower().replace("-", "_")))
    files.sort(key=lambda f: f.name)
    info = build_corpus(out_path, files, progress=progress)
    return {
        "path": info.path,
        "files": info.files,
        "bytes": info.total_bytes,
        "sha256": info.sha256,
        "packages": [f"{name}=={version}" for name, version in pins],
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        self.exit(2, " ".join(f"{self.prog}: error: {message} (see --help)".split()) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m hashhop.ltm2.data", description="Build LTM-2's training code corpus.")
    parser.add_argument("--out", required=True, help="the corpus file to write (atomically)")
    parser.add_argument("--packages", default=",".join(TRAIN_PACKAGES), help="comma-separated NAME==VERSION pins")
    parser.add_argument("--progress", action="store_true", help="report progress on stderr")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        stats = build_train_corpus(args.out, args.packages, progress=args.progress)
    except HashHopError as err:
        print(" ".join(f"{parser.prog}: error: {err}".split()), file=sys.stderr)
        return 2
    print(f"files {stats['files']}")
    print(f"bytes {stats['bytes']}")
    print(f"sha256 {stats['sha256']}")
    print(f"seconds {time.monotonic() - started:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
