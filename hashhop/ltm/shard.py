"""The LTM memory sharded across processes with ``torch.distributed`` (gloo: reads exchange small CPU tensors).

Each process keeps one slice of the context (cut at line ends) plus a halo of the words a value can come
from on each side,
so every indexed word's neighbours (its value) are local; it indexes only the words that start in its
own slice. A read sends the query to every shard; each answers with its candidates (a handful of
entries: keys, roles, values, copy sources), all-gathered; every process then runs the same read over
the union, which is the single-process candidate set in the same order, so answers are the same.

    torchrun --nproc_per_node=2 -m hashhop.ltm.shard --context 1M --hops 2 --out answers.json
    python -m hashhop.ltm.shard --context 1M --hops 2 --out answers.json      # one process, same answers
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from hashhop.errors import HashHopError
from hashhop.ltm.engine import Engine
from hashhop.ltm.memory import ContextMemory, check_memory
from hashhop.ltm.model import LTM, Memory, PromptParts, decode_hops, split_prompt
from hashhop.ltm.text import find_words


def _line_start_after(data: np.ndarray, position: int) -> int:
    """The first line start at or after ``position`` (len(data) if there is none)."""
    if position <= 0:
        return 0
    window = 1 << 16
    while position - 1 < len(data):
        ends = np.flatnonzero(data[position - 1 : position - 1 + window] == 10)
        if len(ends):
            return position + int(ends[0])
        position += window
        window *= 2
    return len(data)


def _halo_start(data: np.ndarray, lo: int, words: int) -> int:
    """Where the ``words``-th word before ``lo`` starts (0 if there are fewer)."""
    if words <= 0:
        return lo
    window = 1 << 12
    while True:
        start = max(0, lo - window)
        starts, _ = find_words(data[start:lo])
        # The first word found may be cut by the window's start: only trust it when the window starts at 0.
        usable = starts if start == 0 else starts[1:]
        if len(usable) >= words:
            return start + int(usable[-words])
        if start == 0:
            return 0
        window *= 2


def _halo_stop(data: np.ndarray, hi: int, words: int) -> int:
    """Where the ``words``-th word after ``hi`` ends (len(data) if there are fewer)."""
    if words <= 0:
        return hi
    window = 1 << 12
    while True:
        stop = min(len(data), hi + window)
        starts, lengths = find_words(data[hi:stop])
        usable = len(starts) if stop == len(data) else len(starts) - 1  # the last may be cut by the window's end
        if usable >= words:
            return hi + int(starts[words - 1] + lengths[words - 1])
        if stop == len(data):
            return len(data)
        window *= 2


def shard_bounds(data: np.ndarray, rank: int, world: int) -> tuple[int, int]:
    """Byte range ``[lo, hi)`` owned by ``rank``: equal slices moved to line starts (never overlapping)."""
    cuts = [0] + [_line_start_after(data, len(data) * r // world) for r in range(1, world)] + [len(data)]
    cuts = np.maximum.accumulate(cuts).tolist()
    return cuts[rank], cuts[rank + 1]


def local_slice(data: np.ndarray, rank: int, world: int, offsets: tuple[int, ...]) -> tuple[int, int, tuple[int, int]]:
    """Bytes ``[start, stop)`` that ``rank`` keeps and the range of its local words it indexes. The halo around
    the owned slice holds the words a value can come from: -min(offsets) before it, max(offsets) after it."""
    lo, hi = shard_bounds(data, rank, world)
    start, stop = _halo_start(data, lo, max(0, -min(offsets))), _halo_stop(data, hi, max(0, max(offsets)))
    starts, _ = find_words(data[start:stop])
    return start, stop, (int(np.searchsorted(starts, lo - start)), int(np.searchsorted(starts, hi - start)))


class ShardedEngine(Engine):
    """``Engine`` whose memory is this process's shard; reads gather candidates from every shard."""

    def __init__(self, model: LTM) -> None:
        super().__init__(model, cache_contexts=1)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def prefill(self, context: np.ndarray, progress: bool = False) -> ContextMemory:
        start, stop, owned = local_slice(context, self.rank, self.world, self.model.cfg.value_offsets)
        check_memory(stop - start)
        local = np.ascontiguousarray(context[start:stop])  # this process keeps only its slice and halo
        return ContextMemory(self.model, local, progress=progress, owned=owned)

    def _gather(self, entries: Memory) -> Memory:
        count = torch.tensor([entries.keys.shape[1]])
        counts = [torch.zeros_like(count) for _ in range(self.world)]
        dist.all_gather(counts, count)
        size = max(int(c) for c in counts)
        fields = {}
        for name, tensor in vars(entries).items():
            t = tensor[0]
            padded = torch.zeros((size, *t.shape[1:]), dtype=t.dtype)
            padded[: t.shape[0]] = t
            parts = [torch.zeros_like(padded) for _ in range(self.world)]
            dist.all_gather(parts, padded)
            fields[name] = torch.cat([p[: int(c)] for p, c in zip(parts, counts)])[None]
        return Memory(**fields)

    def entries_for(self, memory: ContextMemory, query: torch.Tensor) -> Memory:
        return self._gather(memory.entries(memory.candidates(query)))

    @torch.no_grad()  # gloo collectives take plain tensors, not inference-mode ones
    def decode(self, memory: ContextMemory, request: PromptParts):
        return decode_hops(self.model, request, lambda query: self.entries_for(memory, query))


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(description="Answer HashHop queries with the LTM memory sharded over torchrun processes.")
    ap.add_argument("--context", default="1M", help="context size in characters")
    ap.add_argument("--hops", type=int, default=2)
    ap.add_argument("--cot", action="store_true")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except HashHopError as err:
        print(f"hashhop.ltm.shard: error: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from hashhop.ltm.load import load_ltm
    from hashhop.ltm.text import to_bytes
    from hashhop.task.generator import plan
    from hashhop.task.grammar import native_request
    from hashhop.task.spec import HashHopSpec, parse_size

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")  # the reads exchange a few small CPU tensors; gloo carries them on any machine
    model = load_ltm()
    engine = ShardedEngine(model) if distributed else Engine(model)
    spec = HashHopSpec(
        context_tokens=int(parse_size(args.context)),
        tokenizer="chars",
        hops=args.hops,
        chain_of_thought=args.cot,
        hash_length=16,
        num_queries=args.queries,
        seed=args.seed,
    )
    problem = plan(spec)
    data = to_bytes(problem.prompt)
    memory = engine.prefill(data)
    answers = []
    for chain in problem.queries:
        request = split_prompt(native_request("", args.hops, args.cot, chain.query), model.cfg.max_word_chars + 1)  # context given below
        request.context = data
        answers.append(engine.decode(memory, request).text)
    held = [memory.nbytes]
    if distributed:
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, memory.nbytes)
        held = gathered
    if not distributed or dist.get_rank() == 0:
        right = sum(a == c.answer(args.cot) for a, c in zip(answers, problem.queries))
        result = {
            "answers": answers,
            "right": right,
            "asked": len(answers),
            "processes": len(held),
            "bytes_per_process": held,
            "context_chars": len(data),
        }
        with open(args.out, "w") as fh:
            json.dump(result, fh)
        print(f"{right}/{len(answers)} right with the memory on {len(held)} process(es): {', '.join(f'{b / 1e6:.1f} MB' for b in held)}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
