"""The sharded memory: torchrun with 2 processes answers as one process does."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hashhop.ltm.shard import shard_bounds
from hashhop.ltm.text import to_bytes
from hashhop.task.generator import plan
from hashhop.task.spec import HashHopSpec


def test_shards_cover_the_context_once_at_line_starts():
    data = to_bytes(plan(HashHopSpec(context_tokens=50_000, tokenizer="chars", hops=2, hash_length=16, seed=1)).prompt)
    for world in (1, 2, 3, 7):
        bounds = [shard_bounds(data, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(lo == 0 or data[lo - 1] == 10 for lo, _ in bounds)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is missing")
@pytest.mark.parametrize("hops,cot", [(2, False), (3, True)])
def test_torchrun_two_processes_give_the_single_process_answers(tmp_path, hops, cot):
    args = ["--context", "300k", "--hops", str(hops), "--queries", "30", "--seed", "4"] + (["--cot"] if cot else [])
    one = subprocess.run(
        [sys.executable, "-m", "hashhop.ltm.shard", *args, "--out", str(tmp_path / "one.json")], capture_output=True, text=True, timeout=300
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "hashhop.ltm.shard",
            *args,
            "--out",
            str(tmp_path / "two.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert a["answers"] == b["answers"] and a["right"] == a["asked"] == 30
    assert b["processes"] == 2 and max(b["bytes_per_process"]) < 0.6 * a["bytes_per_process"][0]
    assert np.isclose(sum(b["bytes_per_process"]), a["bytes_per_process"][0], rtol=0.02)


def test_sparse_line_ends_still_give_disjoint_shards():
    data = np.full(3_300_000, ord("a"), dtype=np.uint8)
    data[100] = data[2_200_100] = 10
    bounds = [shard_bounds(data, r, 3) for r in range(3)]
    assert bounds[0][0] == 0 and bounds[-1][1] == len(data)
    assert all(lo <= hi for lo, hi in bounds) and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("world", [2, 3])
def test_every_shard_entry_equals_the_single_process_entry(world):
    """Blank lines and word-less lines near a cut must not hide a value's neighbours from its shard."""
    from hashhop.ltm.load import WEIGHTS, load_ltm
    from hashhop.ltm.memory import ContextMemory, dense_memory
    from hashhop.ltm.shard import local_slice
    from hashhop.ltm.text import find_words

    model = load_ltm(WEIGHTS)
    lines = [f"k{i} = 'v{i}'" for i in range(12)] + ["", "", "--", "''", "", "", "", ""] + [f"k{i} = v{i}" for i in range(12, 20)]
    data = to_bytes("\n".join(lines) + "\n")
    whole = dense_memory(model, data)
    global_starts, _ = find_words(data)
    covered = 0
    for rank in range(world):
        start, stop, (first, last) = local_slice(data, rank, world, model.cfg.value_offsets)
        local = ContextMemory(model, np.ascontiguousarray(data[start:stop]), owned=(first, last))
        words = np.arange(first, last)
        part = local.entries(words)
        ids = np.searchsorted(global_starts, local.starts[words] + start)
        covered += len(ids)
        assert torch.equal(part.neighbour_mask[0], whole.neighbour_mask[0, ids])
        assert torch.equal(part.neighbour_chars[0], whole.neighbour_chars[0, ids])
        assert torch.allclose(part.neighbour_keys[0], whole.neighbour_keys[0, ids], atol=1e-6)
        assert torch.allclose(part.roles[0], whole.roles[0, ids], atol=1e-5)
    assert covered == len(global_starts)
