"""A grid as plain rows, for the outside world: Hugging Face datasets, lm-evaluation-harness, inspect_ai.

Each row is one request of the grid (the same ids, prompts and sizing as ``hashhop eval``) with what
is needed to score an answer to it without hashhop's objects."""

from __future__ import annotations

from dataclasses import dataclass

from hashhop.harness import Grid, build_items
from hashhop.score import prompt_hash_set, score_answer
from hashhop.task.sample import Chain
from hashhop.templates import load_template


@dataclass
class _Target:
    """The model side of sizing, for a grid built without a runner."""

    tokenizer: str
    chat: bool = True
    max_context_tokens: int | None = None
    name: str = "export"


def grid_rows(
    grid: Grid, tokenizer: str = "cl100k_base", template: str = "chat", max_context_tokens: int | None = None, overflow: str = "error"
) -> list[dict]:
    tmpl = load_template(template)
    items = build_items(grid, _Target(tokenizer, max_context_tokens=max_context_tokens), tmpl, overflow)
    rows = []
    for item in items:
        if item.status == "skipped":
            continue
        request = item.request
        text = request.messages[-1][1] if request.messages is not None else request.prompt
        rows.append(
            {
                "id": item.id,
                "length": item.length,
                "hops": item.hops,
                "cot": item.cot,
                "sample": item.sample_index,
                "query": item.query_index,
                "text": text,
                "expected": item.chain.answer(item.cot),
                "chain": list(item.chain.hashes),
                "prompt_tokens": item.prompt_tokens,
                "max_tokens": request.max_tokens,
                "tokenizer": tokenizer,
                "template": tmpl.name,
                "prefilled": tmpl.native,
                "alphabet": item.sample.spec.alphabet_chars,
            }
        )
    return rows


def score_row(row: dict, response: str) -> dict:
    """Score a model's response to an exported row: exact match, links right, outcome."""
    chain = Chain(tuple(row["chain"]), (), ())
    result = score_answer(chain, row["cot"], response, prompt_hash_set(row["text"]), row["alphabet"], prefilled=row["prefilled"])
    return {"exact_match": float(result.correct), "links_right": result.links_right / row["hops"], "outcome": result.outcome}
