"""Training tasks as batched tensors, generated on the fly: ``make_batch(task, batch, generator)``
returns ``(inputs, targets)`` LongTensors of shape (batch, length); targets hold -100 wherever no
loss is taken (the answer tokens only, unless a task trains on every next token).

* ``mqar``           Zoology's multi-query associative recall (keys, values, power-law query gaps).
* ``ar``             H3's associative recall (vocab 20, length 40: key-value pairs, then ``=> key value``).
* ``induction``      Mamba's induction-head task: a special token announces the needle; copy what followed it.
* ``needle``         needle in a haystack: one ``key value`` pair hidden in noise, asked at the end.
* ``hashhop_tokens`` HashHop with one token per hash (chains of distinct hash tokens, shuffled links).
* ``hashhop_chars``  HashHop at character level in the official text format, from the data engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from hashhop.errors import HashHopError
from hashhop.lab import checks

IGNORE = -100


@dataclass(frozen=True)
class TaskConfig:
    name: str = "mqar"
    seq_len: int = 64  # total sequence length (chars for hashhop_chars: the prompt's size)
    vocab_size: int = 8192
    num_pairs: int = 4  # key-value pairs (mqar, hashhop_tokens chains)
    hops: int = 1
    chain_of_thought: bool = False
    hash_length: int = 8  # hashhop_chars
    num_queries: int = 4
    power_a: float = 0.01  # mqar query gaps
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """One-line errors naming the field (a run config adds ``task.`` in front)."""
        checks.choice("name", self.name, tuple(TASKS), "task")
        checks.whole("seq_len", self.seq_len, 1, checks.MAX_SEQ_LEN)
        checks.whole("vocab_size", self.vocab_size, 2, 1 << 20)
        checks.whole("num_pairs", self.num_pairs, 1, 1 << 20)
        checks.whole("hops", self.hops, 1, 1000)
        checks.flag("chain_of_thought", self.chain_of_thought)
        checks.whole("hash_length", self.hash_length, 1, 1000)
        checks.whole("num_queries", self.num_queries, 1, 1 << 20)
        checks.number("power_a", self.power_a, 0, 1, low_open=True)
        if not isinstance(self.extra, dict):
            raise HashHopError(f"extra must be an object, got {checks.show(self.extra)}")


def _choice_no_replace(generator: torch.Generator, batch: int, population: int, size: int, offset: int = 0) -> torch.Tensor:
    """``size`` distinct values from ``[offset, offset + population)`` per row."""
    scores = torch.rand(batch, population, generator=generator)
    return scores.topk(size, dim=1).indices + offset


def mqar(cfg: TaskConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys from the first half of the vocabulary, values from the second; the query key reappears after a
    power-law gap and the target is its value, at the position after it (next-token style)."""
    pairs, length, vocab = cfg.num_pairs, cfg.seq_len, cfg.vocab_size
    context = 2 * pairs
    if context * 2 > length or vocab <= length:
        raise HashHopError(f"mqar needs seq_len >= 4 x num_pairs and vocab_size > seq_len (got {length}, {pairs}, {vocab})")
    keys = _choice_no_replace(generator, batch, vocab // 2 - 1, pairs, offset=1)
    values = _choice_no_replace(generator, batch, vocab - vocab // 2, pairs, offset=vocab // 2)
    space = (length - context) // 2
    weights = cfg.power_a * torch.arange(1, space + 1, dtype=torch.float64) ** (cfg.power_a - 1)
    gaps = torch.multinomial(weights.expand(batch, space), pairs, replacement=False, generator=generator)
    inputs = torch.randint(vocab, (batch, length + 1), generator=generator)
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    query_pos = context + 2 * gaps
    inputs.scatter_(1, query_pos, keys)
    targets = torch.full((batch, length + 1), IGNORE)
    targets.scatter_(1, query_pos + 1, values)
    return inputs[:, :-1], targets[:, 1:]


def associative_recall(cfg: TaskConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """H3's setup: vocab = 2 specials (``=>`` = 0, ``.`` = 1) + keys + values; each key has one value per
    sequence; ``seq_len // 2`` pairs drawn with replacement, then ``=> key value``. Trained on every next
    token (as in the reference setup); scored on the final value (``extra['eval'] = True`` masks the rest)."""
    vocab, length = cfg.vocab_size, cfg.seq_len
    n_keys = (vocab - 2) // 2
    n_values = vocab - 2 - n_keys
    mapping = torch.randint(n_values, (batch, n_keys), generator=generator) + 2 + n_keys
    n_pairs = length // 2
    seq_keys = torch.randint(n_keys, (batch, n_pairs), generator=generator)
    query = seq_keys.gather(1, torch.randint(n_pairs, (batch, 1), generator=generator))
    seq = torch.empty((batch, 2 * n_pairs + 3), dtype=torch.long)
    seq[:, 0 : 2 * n_pairs : 2] = seq_keys + 2
    seq[:, 1 : 2 * n_pairs : 2] = mapping.gather(1, seq_keys)
    seq[:, -3] = 0
    seq[:, -2] = query[:, 0] + 2
    seq[:, -1] = mapping.gather(1, query)[:, 0]
    inputs, targets = seq[:, :-1], seq[:, 1:].clone()
    if cfg.extra.get("eval"):
        targets[:, :-1] = IGNORE
    return inputs, targets


def induction(cfg: TaskConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens; a special token (0) appears once, followed by the needle; the sequence ends with the
    special token again and the target is the needle."""
    vocab, length = cfg.vocab_size, cfg.seq_len
    seq = torch.randint(1, vocab, (batch, length), generator=generator)
    pos = torch.randint(0, length - 3, (batch, 1), generator=generator)
    seq.scatter_(1, pos, 0)
    needle = seq.gather(1, pos + 1)
    seq[:, -2] = 0
    seq[:, -1] = needle[:, 0]
    targets = torch.full_like(seq, IGNORE)
    targets[:, -2] = needle[:, 0]
    return seq, targets


def needle(cfg: TaskConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise tokens from the upper half of the vocabulary; one ``marker key value`` triple (marker = 1) at a
    random depth; the sequence ends ``marker key`` and the target is the value."""
    vocab, length = cfg.vocab_size, cfg.seq_len
    half = vocab // 2
    seq = torch.randint(half, vocab, (batch, length), generator=generator)
    key = torch.randint(2, half, (batch, 1), generator=generator)
    value = torch.randint(2, half, (batch, 1), generator=generator)
    pos = torch.randint(0, length - 6, (batch, 1), generator=generator)
    seq.scatter_(1, pos, 1)
    seq.scatter_(1, pos + 1, key)
    seq.scatter_(1, pos + 2, value)
    seq[:, -3] = 1
    seq[:, -2] = key[:, 0]
    seq[:, -1] = value[:, 0]
    targets = torch.full_like(seq, IGNORE)
    targets[:, -2] = value[:, 0]
    return seq, targets


# hashhop_tokens vocabulary: 0 pad, 1 '=' (link), 2 '\n' (line end), 3 '?' (query), 4 '>' (answer separator), 5.. hashes
_EQ, _NL, _Q, _SEP, _FIRST_HASH = 1, 2, 3, 4, 5


def hashhop_tokens(cfg: TaskConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """HashHop with one token per hash: ``num_pairs`` chains of ``hops`` links as ``K = V \\n`` triples in
    shuffled order, then per query ``? H1 > answer`` (all intermediate hashes with chain of thought)."""
    chains, hops = cfg.num_pairs, cfg.hops
    n_hashes = chains * (hops + 1)
    if cfg.vocab_size - _FIRST_HASH < n_hashes:
        raise HashHopError(f"hashhop_tokens needs vocab_size >= {n_hashes + _FIRST_HASH} for {chains} chains of {hops} hops")
    if cfg.num_queries > chains:
        raise HashHopError(f"{cfg.num_queries} queries need at least as many chains (num_pairs={chains})")
    hashes = _choice_no_replace(generator, batch, cfg.vocab_size - _FIRST_HASH, n_hashes, offset=_FIRST_HASH).view(batch, chains, hops + 1)
    links = torch.stack(
        [hashes[:, :, :-1], torch.full_like(hashes[:, :, :-1], _EQ), hashes[:, :, 1:], torch.full_like(hashes[:, :, :-1], _NL)], dim=-1
    ).view(batch, chains * hops, 4)
    order = torch.rand(batch, chains * hops, generator=generator).argsort(dim=1)
    links = links.gather(1, order[:, :, None].expand(-1, -1, 4)).reshape(batch, -1)
    active = torch.full((batch, 1), chains)
    min_chains = int(cfg.extra.get("min_pairs", chains))
    if min_chains < chains:
        # A mixture of difficulties (Zoology trains on mixed sizes): row r keeps its first ``active[r]`` chains
        # and blanks the other links to padding, so easy rows give a retrieval signal from the first steps.
        if not cfg.num_queries <= min_chains <= chains:
            raise HashHopError(f"min_pairs must be between num_queries ({cfg.num_queries}) and num_pairs ({chains})")
        # Log-uniform sizes: half the rows hold at most sqrt(min * max) chains, where retrieval is learnt first.
        low, high = np.log(min_chains), np.log(chains + 1)
        active = (
            (low + (high - low) * torch.rand(batch, 1, generator=generator, dtype=torch.float64)).exp().long().clamp(min_chains, chains)
        )
        link_chain = torch.arange(chains).repeat_interleave(hops).expand(batch, -1).gather(1, order)
        blank = (link_chain >= active).repeat_interleave(4, dim=1)
        links = links.masked_fill(blank, 0)
    scores = torch.rand(batch, chains, generator=generator) + (torch.arange(chains) >= active).float()
    queried = scores.argsort(dim=1)[:, : cfg.num_queries]
    chosen = hashes.gather(1, queried[:, :, None].expand(-1, -1, hops + 1))
    answer = chosen[:, :, 1:] if cfg.chain_of_thought else chosen[:, :, -1:]
    a_len = answer.shape[-1]
    query_block = torch.cat(
        [torch.full((batch, cfg.num_queries, 1), _Q), chosen[:, :, :1], torch.full((batch, cfg.num_queries, 1), _SEP), answer], dim=-1
    )
    seq = torch.cat([links, query_block.reshape(batch, -1)], dim=1)
    targets = torch.full_like(seq, IGNORE)
    block = 3 + a_len
    start = links.shape[1]
    for q in range(cfg.num_queries):
        first = start + q * block + 3  # the first answer token's position
        targets[:, first - 1 : first - 1 + a_len] = seq[:, first : first + a_len]
    return seq, targets


def hashhop_chars(cfg: TaskConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """HashHop in the official text format at character level (ASCII codes), one problem per row, made by
    the data engine: prompt, ``\\n\\n``, completion. Loss on the answers (with chain of thought, every hash
    of the chain) and their closing quotes; rows are right-padded with 0."""
    from hashhop.task.generator import plan
    from hashhop.task.grammar import answer_line, completion_header, query_line
    from hashhop.task.spec import HashHopSpec

    seeds = torch.randint(0, 2**62, (batch,), generator=generator).tolist()
    rows, masks = [], []
    for seed in seeds:
        spec = HashHopSpec(
            context_tokens=cfg.seq_len,
            tokenizer="chars",
            hops=cfg.hops,
            chain_of_thought=cfg.chain_of_thought,
            hash_length=cfg.hash_length,
            num_queries=cfg.num_queries,
            seed=seed,
            alphabet=cfg.extra.get("alphabet", "letters"),
        )
        problem = plan(spec)
        prompt = problem.prompt
        text = prompt + "\n\n" + problem.completion
        data = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        mask = np.zeros(len(data), dtype=bool)
        offset = len(prompt) + 2 + len(completion_header(cfg.hops, cfg.chain_of_thought))
        for chain in problem.queries:
            answer = chain.answer(cfg.chain_of_thought)
            start = offset + len(query_line(chain.query))
            mask[start : start + len(answer) + 1] = True  # the answer and its closing quote
            offset += len(answer_line(chain.query, answer)) + 1  # the line and its newline
        rows.append(torch.from_numpy(data.astype(np.int64)))
        masks.append(torch.from_numpy(mask))
    width = max(len(r) for r in rows)
    seq = torch.zeros((batch, width), dtype=torch.long)
    targets = torch.full((batch, width), IGNORE)
    for i, (row, mask) in enumerate(zip(rows, masks)):
        seq[i, : len(row)] = row
        labelled = torch.where(mask, row, torch.full_like(row, IGNORE))
        targets[i, : len(row) - 1] = labelled[1:]
    return seq, targets


TASKS = {
    "mqar": mqar,
    "ar": associative_recall,
    "induction": induction,
    "needle": needle,
    "hashhop_tokens": hashhop_tokens,
    "hashhop_chars": hashhop_chars,
}
VOCAB = {"hashhop_chars": 128, "ltm_mixture": 256}


def _register_ltm_mixture() -> None:
    """LTM-2's byte-level training mixture (hashhop/ltm2/data.py): code, HashHop, other layouts, needles, variables."""
    from hashhop.ltm2.data import mixture_batch

    TASKS["ltm_mixture"] = mixture_batch


_register_ltm_mixture()


def task_vocab(cfg: TaskConfig) -> int:
    return VOCAB.get(cfg.name, cfg.vocab_size)


def make_batch(cfg: TaskConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return TASKS[cfg.name](cfg, batch, generator)


def eval_config(cfg: TaskConfig, **changes) -> TaskConfig:
    """The same task as evaluated (``ar`` is scored on its final answer only), optionally resized."""
    extra = {**cfg.extra, "eval": True} if cfg.name == "ar" else dict(cfg.extra)
    extra.pop("min_pairs", None)  # a training curriculum; always scored at full size
    return replace(cfg, extra=extra, **changes)
