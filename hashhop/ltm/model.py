"""The LTM reference model: a character-level memory network that answers multi-hop lookups over a
context of any length with a fixed amount of work per query.

How it reads (``docs/ltm.md`` has the diagram and the reasoning):

* **Words.** The text is cut into words (runs of letters and digits) and the separators after them,
  like a tokenizer's pre-tokenizer. A learned character encoder maps a word's characters to a unit
  vector (its key); a second one maps the separator after a word to a scalar (its role score: is
  this word followed by `` = '`` or by ``'\\n``?). Both are local: the key of a word depends on that
  word alone, so prefill is a constant amount of work per character.
* **Memory.** Every context word is an entry: its key, its role score and, as value, a learned
  mixture of the keys of its neighbours (``value_offsets``; training puts the weight on the next word).
* **Hops.** A query word's key reads the memory by content (softmax of ``tau * q.k + role``); the
  read value, normalised, is the next query. Hop ``d`` is ``d`` reads in a row, so a two-hop answer is
  composed from two one-hop lookups by construction rather than learnt from scratch.
* **Answer.** A small controller reads the completion header (``Hops=2``, ``CoT=False``) through the
  same content addressing and chooses, per answer slot, which hop depth to copy and whether another
  slot follows (`` = ``). The answer's characters are copied from the words the read points at:
  a mixture of pointers, decoded character by character (each character conditioned on the ones
  already written), so the model is an ordinary character-level language model over the answer.

Trained with the full softmax over the memory (this file, ``dense`` reads); at long contexts the
engine (:mod:`hashhop.ltm.engine`) reads the same memory through an index of the keys' sign codes
(:mod:`hashhop.ltm.memory`), scoring only the entries whose code matches, which gives the same answers.

This file also holds the decode that every engine shares: a native request cut into its parts
(:func:`split_prompt`), the hop loop (:func:`decode_hops`) and the answer's characters
(:func:`answer_from_reads`, :func:`greedy_decode`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hashhop.ltm.text import END, find_words, gather_chars, to_bytes
from hashhop.task.grammar import CONTEXT_END

CHARS = 128
MARKER = CONTEXT_END.encode()  # what ends the context of a native request


@dataclass(frozen=True)
class LTMConfig:
    d_char: int = 32  # character embedding width
    d_key: int = 64  # key width; the engine's index code is the key's 64 sign bits
    max_word_chars: int = 32  # a word's first 32 characters make its key
    separator_chars: int = 4  # characters after a word that make its role score
    max_hops: int = 4  # deepest read the controller can choose
    max_slots: int = 4  # most hashes an answer can hold (chain of thought: one per hop)
    value_offsets: tuple[int, ...] = (-1, 0, 1, 2)  # neighbours a value can come from
    controller_width: int = 64
    tau_init: float = 10.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["value_offsets"] = list(self.value_offsets)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> LTMConfig:
        data = dict(data)
        data["value_offsets"] = tuple(data["value_offsets"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> LTMConfig:
        return cls.from_dict(json.loads(text))


@dataclass
class Memory:
    """Entries as tensors with leading batch dims (B, N): everything a read needs, dense."""

    keys: torch.Tensor  # (B, N, d)
    roles: torch.Tensor  # (B, N)
    mask: torch.Tensor  # (B, N) bool, True where an entry exists
    neighbour_keys: torch.Tensor  # (B, N, O, d), zero where the neighbour does not exist
    neighbour_chars: torch.Tensor  # (B, N, O, W), END-padded words
    neighbour_mask: torch.Tensor  # (B, N, O) bool


class LTM(nn.Module):
    def __init__(self, cfg: LTMConfig | None = None) -> None:
        cfg = cfg or LTMConfig()
        super().__init__()
        self.cfg = cfg
        width = cfg.max_word_chars
        self.char_embed = nn.Embedding(CHARS, cfg.d_char, padding_idx=END)
        # A per-position projection of each character: a convolution whose kernel spans the whole word.
        self.word_proj = nn.Parameter(torch.randn(width, cfg.d_char, cfg.d_key) / (cfg.d_char * width) ** 0.5)
        self.word_out = nn.Linear(cfg.d_key, cfg.d_key)
        self.sep_embed = nn.Embedding(CHARS, cfg.d_char, padding_idx=END)
        self.sep_proj = nn.Parameter(torch.randn(cfg.separator_chars, cfg.d_char, cfg.d_char) / (cfg.d_char * cfg.separator_chars) ** 0.5)
        self.sep_out = nn.Linear(cfg.d_char, 1)
        self.log_tau = nn.Parameter(torch.tensor(float(cfg.tau_init)).log())
        self.offset_logits = nn.Parameter(torch.zeros(len(cfg.value_offsets)))
        # The controller's two learnt questions to the completion header (which word follows "Hops", "CoT").
        self.header_queries = nn.Parameter(torch.randn(2, cfg.d_key) / cfg.d_key**0.5)
        # Its own, soft temperature: a sharp read at a random word at init would pass no gradient to the other words.
        self.log_header_tau = nn.Parameter(torch.tensor(0.0))
        self.controller = nn.Sequential(
            nn.Linear(2 * cfg.d_key, cfg.controller_width),
            nn.GELU(),
            nn.Linear(cfg.controller_width, cfg.max_slots * (cfg.max_hops + 1)),
        )

    # -- local encoders -------------------------------------------------------------------------
    def encode(self, chars: torch.Tensor) -> torch.Tensor:
        """(..., W) character codes of words -> (..., d_key) unit keys; all-END rows give zero."""
        width = self.cfg.max_word_chars
        chars = chars[..., :width]
        x = self.char_embed(chars)  # (..., W, c)
        h = torch.einsum("...wc,wcd->...d", x, self.word_proj[: chars.shape[-1]])
        key = F.normalize(self.word_out(F.gelu(h)), dim=-1)
        return key * (chars[..., :1] != END)

    def role(self, separators: torch.Tensor) -> torch.Tensor:
        """(..., S) separator codes -> (...) role scores."""
        x = self.sep_embed(separators[..., : self.cfg.separator_chars])
        h = torch.einsum("...sc,scd->...d", x, self.sep_proj[: x.shape[-2]])
        return self.sep_out(F.gelu(h)).squeeze(-1)

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    def offset_weights(self) -> torch.Tensor:
        return self.offset_logits.softmax(-1)

    # -- reads ----------------------------------------------------------------------------------
    def read(self, query: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """One content-addressed read. query (B, Q, d) -> attention (B, Q, N), next query (B, Q, d)."""
        scores = self.tau * torch.einsum("bqd,bnd->bqn", query, memory.keys) + memory.roles[:, None, :]
        scores = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        attention = torch.nan_to_num(scores.softmax(-1), nan=0.0)  # an empty memory reads nothing
        values = torch.einsum("bnod,o->bnd", memory.neighbour_keys, self.offset_weights())
        return attention, F.normalize(torch.einsum("bqn,bnd->bqd", attention, values), dim=-1)

    def hops(self, query: torch.Tensor, memory: Memory) -> list[torch.Tensor]:
        """Attention of the reads at depth 1..max_hops, each read's value being the next query."""
        attentions = []
        for _ in range(self.cfg.max_hops):
            attention, query = self.read(query, memory)
            attentions.append(attention)
        return attentions

    def control(self, header_keys: torch.Tensor, header_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Completion-header words (B, M, d) -> per-slot hop-depth log-probabilities (B, J, D) and
        continue logits (B, J): whether another `` = HASH`` follows slot j."""
        cfg = self.cfg
        scores = self.log_header_tau.exp() * torch.einsum("hd,bmd->bhm", self.header_queries, header_keys)
        next_exists = torch.zeros_like(header_mask)
        next_exists[:, :-1] = header_mask[:, 1:]
        scores = scores.masked_fill(~next_exists[:, None, :], float("-inf"))
        attention = torch.nan_to_num(scores.softmax(-1), nan=0.0)
        following = torch.zeros_like(header_keys)
        following[:, :-1] = header_keys[:, 1:]
        features = torch.einsum("bhm,bmd->bhd", attention, following).flatten(1)
        out = self.controller(features).view(-1, cfg.max_slots, cfg.max_hops + 1)
        return out[..., :-1].log_softmax(-1), out[..., -1]

    def components(self, attentions: list[torch.Tensor], depth_logp: torch.Tensor) -> torch.Tensor:
        """Log-weights of every copy source per slot: (B, Q, J, D, N, O) over (depth, entry, offset)."""
        attention = torch.stack(attentions, dim=2)  # (B, Q, D, N)
        offsets = self.offset_weights()
        logw = attention.clamp_min(1e-30).log()[:, :, None, :, :, None] + offsets.log()[None, None, None, None, None, :]
        logw = logw + depth_logp[:, None, :, :, None, None]
        return logw.masked_fill(attention[:, :, None, :, :, None] == 0, float("-inf"))


def word_logprob(logw: torch.Tensor, memory: Memory, target: torch.Tensor) -> torch.Tensor:
    """log P(target word) under the mixture of pointers. logw (B, Q, J, D, N, O), target (B, Q, J, W)."""
    chars = memory.neighbour_chars  # (B, N, O, W)
    width = min(chars.shape[-1], target.shape[-1])
    same = (chars[:, None, None, :, :, :width] == target[:, :, :, None, None, :width]).all(-1)  # (B, Q, J, N, O)
    same = same & memory.neighbour_mask[:, None, None]
    logw = logw.masked_fill(~same[:, :, :, None], float("-inf"))
    return logw.flatten(3).logsumexp(-1)


def char_logprobs(logw: torch.Tensor, chars: torch.Tensor, valid: torch.Tensor, prefix: list[int]) -> torch.Tensor:
    """log P(next character | characters written so far in this slot) for one slot of one query.

    logw (S,) source log-weights, chars (S, W) their words, valid (S,) bool. Returns (CHARS,); the END
    code is the probability that the word is complete."""
    keep = valid.clone()
    for k, code in enumerate(prefix):
        keep &= chars[:, k] == code if k < chars.shape[1] else torch.zeros_like(keep)
    position = len(prefix)
    nxt = chars[:, position] if position < chars.shape[1] else torch.full_like(chars[:, 0], END)
    weights = logw.masked_fill(~keep, float("-inf"))
    if torch.isinf(weights).all():  # nothing to copy (an empty read): the word ends here
        out = torch.full((CHARS,), float("-inf"), dtype=logw.dtype)
        out[END] = 0.0
        return out
    return _logsumexp_by_code(weights, nxt)


def _logsumexp_by_code(weights: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    top = weights.max()
    mass = torch.zeros(CHARS, dtype=weights.dtype).index_add(0, codes, (weights - top).exp())
    return mass.log() + top - mass.sum().log()


def greedy_decode(
    logw: torch.Tensor, chars: torch.Tensor, valid: torch.Tensor, continue_logits: torch.Tensor
) -> tuple[str, list[torch.Tensor]]:
    """Greedy decoding of one query's answer. logw (J, S), chars (S, W), valid (S,), continue (J,).
    Returns the text (without the closing quote) and the per-character log-probability rows used."""
    text, rows = [], []
    slots = logw.shape[0]
    for slot in range(slots):
        prefix: list[int] = []
        while True:
            row = char_logprobs(logw[slot], chars, valid, prefix)
            rows.append(row)
            code = int(row.argmax())
            if code == END or len(prefix) >= chars.shape[1]:
                break
            prefix.append(code)
        text.append("".join(map(chr, prefix)))
        if slot + 1 >= slots or continue_logits[slot] <= 0 or not prefix:
            break
    return " = ".join(text), rows


# -- decoding a native request ------------------------------------------------------------------
@dataclass
class PromptParts:
    """A native HashHop request cut into its parts: context bytes, completion-header words, query word."""

    context: np.ndarray  # uint8
    header: np.ndarray  # (M, W) chars of the words after the context, before the query word
    query: np.ndarray  # (1, W) chars of the query word (all END when the text has no word)


MAX_HEADER_WORDS = 32  # completion-header words the controller reads (a native header has 5: COMPLETION Hops N CoT B)


def split_prompt(text: str | bytes, width: int) -> PromptParts:
    """The context is everything before the last ``\\n\\nCOMPLETION:`` (or before the last line when
    there is none); the query is the last word; the words between are the completion header, of which
    the first ``MAX_HEADER_WORDS`` are kept (a header of a million words costs what a native one does).
    Cost: a few passes over the bytes (encode, check, find the marker), no copy of the context."""
    if isinstance(text, str):
        raw = text.encode("utf-8", "replace")
    elif isinstance(text, bytes):
        raw = text
    else:
        raw = to_bytes(text).tobytes()
    data = to_bytes(raw)  # a view of raw unless it holds NUL or non-ASCII bytes (those become 127; the marker has neither)
    cut = raw.rfind(MARKER)
    if cut < 0:
        cut = raw.rstrip(b"\n").rfind(b"\n")
        cut = max(cut, 0)
    if cut < len(data) and data[cut] == 10:
        cut += 1  # the context keeps its last line's end, as in training (the last word's separator is "'\n")
    context, tail = data[:cut], data[cut:]
    starts, lengths = find_words(tail)
    if len(starts) == 0:
        return PromptParts(context, np.zeros((0, width), dtype=np.int64), np.zeros((1, width), dtype=np.int64))
    header = gather_chars(tail, starts[:-1][:MAX_HEADER_WORDS], lengths[:-1][:MAX_HEADER_WORDS], width)
    return PromptParts(context, header, gather_chars(tail, starts[-1:], lengths[-1:], width))


@dataclass
class Answer:
    text: str
    logprobs: list[torch.Tensor]  # one (CHARS,) row per generated character step


def answer_from_reads(model: LTM, request: PromptParts, reads: list[tuple[torch.Tensor, Memory]]) -> Answer:
    """Decode the answer from the reads at each depth (attention (1, 1, N_d) over memory_d)."""
    header = torch.from_numpy(request.header)
    header_keys = model.encode(header)[None]
    header_mask = torch.from_numpy(request.header[:, 0] != END)[None]
    depth_logp, continue_logits = model.control(header_keys, header_mask)  # (1, J, D), (1, J)
    offsets = model.offset_weights().log()
    logws, chars, valid = [], [], []
    for depth, (attention, memory) in enumerate(reads):
        lw = attention[0, 0].clamp_min(1e-30).log()[:, None] + offsets[None, :]  # (N, O)
        lw = lw.masked_fill(attention[0, 0][:, None] == 0, float("-inf"))
        logws.append(lw.reshape(1, -1) + depth_logp[0, :, depth : depth + 1])  # (J, N*O)
        chars.append(memory.neighbour_chars[0].reshape(-1, memory.neighbour_chars.shape[-1]))
        valid.append(memory.neighbour_mask[0].reshape(-1))
    text, rows = greedy_decode(torch.cat(logws, 1), torch.cat(chars), torch.cat(valid), continue_logits[0])
    return Answer(text, rows)


def decode_hops(model: LTM, request: PromptParts, entries_for: Callable[[torch.Tensor], Memory]) -> Answer:
    """``max_hops`` reads in a row, each over ``entries_for(query)``, then the answer from them."""
    query = model.encode(torch.from_numpy(request.query))  # (1, d)
    reads = []
    for _ in range(model.cfg.max_hops):
        entries = entries_for(query[0])
        attention, nxt = model.read(query[None], entries)
        reads.append((attention, entries))
        query = nxt[0]
    return answer_from_reads(model, request, reads)
