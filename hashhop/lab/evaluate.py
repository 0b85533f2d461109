"""Length generalisation of a trained character-level HashHop model, scored by the harness's scorer.

Each problem is rendered in the official format; the model reads the prompt and the completion
header, is given each query's ``KEY = '`` and writes the answer greedily; :func:`hashhop.eval.score.score_answer`
scores it (exact match, outcome) and the answer is filed under the depth of the query's first link."""

from __future__ import annotations

import os
from dataclasses import replace

import torch

from hashhop.checkpoint import load_checkpoint
from hashhop.errors import HashHopError
from hashhop.eval.score import OUTCOMES, score_answer
from hashhop.lab.config import RunConfig, load_configs
from hashhop.lab.train import build_model
from hashhop.task.generator import plan
from hashhop.task.grammar import answer_line, completion_header, prompt_hashes, query_line
from hashhop.task.spec import HashHopSpec

DEPTH_BINS = 4


def load_run(run_dir: str) -> tuple[RunConfig, torch.nn.Module]:
    """A finished run's config and trained model; a missing, corrupt or mismatched file is a one-line error naming it."""
    config_path, weights_path = os.path.join(run_dir, "config.json"), os.path.join(run_dir, "model.safetensors")
    if not os.path.isdir(run_dir):
        raise HashHopError(f"{run_dir} is not a finished run folder (no such folder)")
    if not os.path.exists(config_path):
        raise HashHopError(f"{run_dir} is not a finished run folder (it has no config.json)")
    if not os.path.exists(weights_path):
        raise HashHopError(f"{run_dir} is not a finished run folder (it has no model.safetensors: train it to the end first)")
    try:
        configs = load_configs(config_path)  # not a regular file, too large, not JSON, [[[[..., a bad field: one line
    except HashHopError as err:
        raise HashHopError(f"{run_dir} is not a finished run folder ({err})") from None
    if len(configs) != 1:
        raise HashHopError(f"{run_dir} is not a finished run folder ({config_path} holds a sweep of {len(configs)} runs, not one run)")
    cfg = configs[0]
    model = build_model(cfg)
    load_checkpoint(weights_path, model, prefix="")  # a corrupt or mismatched file: one line naming it
    model.eval()
    return cfg, model


@torch.no_grad()
def greedy_answer(model: torch.nn.Module, prefix: str, max_chars: int) -> str:
    ids = torch.tensor([list(prefix.encode("ascii"))])
    out = []
    for _ in range(max_chars):
        next_id = int(model(ids)[0, -1].argmax())
        if next_id in (ord("'"), ord("\n"), 0):
            break
        out.append(chr(next_id))
        ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)
    return "".join(out)


def evaluate_lengths(run_dir: str, lengths: list[int], samples: int = 8, seed: int = 12345) -> list[dict]:
    """Per length: exact match, outcomes, and exact match per depth quarter of the first link."""
    cfg, model = load_run(run_dir)
    if cfg.task.name != "hashhop_chars":
        raise HashHopError(f"{run_dir} was trained on {cfg.task.name}; depth evaluation needs hashhop_chars")
    rows = []
    for length in lengths:
        outcomes = dict.fromkeys(OUTCOMES, 0)
        by_depth = [[0, 0] for _ in range(DEPTH_BINS)]
        for i in range(samples):
            spec = HashHopSpec(
                context_tokens=length,
                tokenizer="chars",
                hops=cfg.task.hops,
                chain_of_thought=cfg.task.chain_of_thought,
                hash_length=cfg.task.hash_length,
                num_queries=cfg.task.num_queries,
                seed=seed + i,
            )
            sample = plan(spec).sample()
            hashes = prompt_hashes(sample.prompt)
            prefix = sample.prompt + "\n\n" + completion_header(sample.hops, sample.chain_of_thought)
            for chain in sample.queries:
                answer = chain.answer(sample.chain_of_thought)
                text = greedy_answer(model, prefix + query_line(chain.query), len(answer) + 4)
                score = score_answer(chain, sample.chain_of_thought, text + "'", hashes, spec.alphabet_chars, prefilled=True)
                outcomes[score.outcome] += 1
                depth = min(DEPTH_BINS - 1, int(DEPTH_BINS * chain.lines[0] / max(1, sample.num_lines)))
                by_depth[depth][0] += score.correct
                by_depth[depth][1] += 1
                prefix += answer_line(chain.query, answer) + "\n"  # later queries see the right earlier answers, as in training
        total = sum(outcomes.values())
        rows.append(
            {
                "length": length,
                "answers": total,
                "exact_match": outcomes["correct"] / total,
                "outcomes": outcomes,
                "by_depth": [c / n if n else None for c, n in by_depth],
            }
        )
    return rows


def depth_table(rows: list[dict]) -> str:
    head = " | ".join(f"depth {100 * i // DEPTH_BINS}-{100 * (i + 1) // DEPTH_BINS}%" for i in range(DEPTH_BINS))
    lines = [
        f"| length (chars) | answers | exact match | {head} | wrong: " + ", ".join(OUTCOMES[1:]) + " |",
        "|---|---|---|" + "---|" * DEPTH_BINS + "---|",
    ]
    for r in rows:
        depths = " | ".join("-" if d is None else f"{d:.2f}" for d in r["by_depth"])
        wrong = ", ".join(str(r["outcomes"][o]) for o in OUTCOMES[1:])
        lines.append(f"| {r['length']:,} | {r['answers']} | {r['exact_match']:.3f} | {depths} | {wrong} |")
    return "\n".join(lines)


def with_task_length(cfg: RunConfig, length: int) -> RunConfig:
    return replace(cfg, task=replace(cfg.task, seq_len=length))
