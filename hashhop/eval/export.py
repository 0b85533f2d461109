"""A grid as plain rows, for the outside world: Hugging Face datasets, lm-evaluation-harness, inspect_ai.

Each row is one request of the grid (the same ids, prompts and sizing as ``hashhop eval``) with what
is needed to score an answer to it without hashhop's objects."""

from __future__ import annotations

from hashhop.eval.grid import Grid, build_items
from hashhop.eval.score import score_answer
from hashhop.eval.templates import load_template
from hashhop.runners.base import BaseRunner
from hashhop.task.grammar import prompt_hashes
from hashhop.task.sample import Chain


class _Target(BaseRunner):
    """The model side of sizing, for a grid built without a model (the rows are answered elsewhere)."""

    def __init__(self, tokenizer: str, chat: bool = True, max_context_tokens: int | None = None) -> None:
        self.name, self.tokenizer, self.chat, self.max_context_tokens = "export", tokenizer, chat, max_context_tokens


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
    result = score_answer(chain, row["cot"], response, prompt_hashes(row["text"]), row["alphabet"], prefilled=row["prefilled"])
    return {"exact_match": float(result.correct), "links_right": result.links_right / row["hops"], "outcome": result.outcome}
