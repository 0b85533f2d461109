"""lm-evaluation-harness glue: the grid comes from hashhop (installed), sized by the metadata's tokenizer."""

import datasets

from hashhop.eval.export import grid_rows, score_row
from hashhop.eval.grid import Grid


def load(
    lengths=(1000, 4000), hops=(1, 2), cot=(False, True), samples=2, queries=2, hash_length=16, tokenizer="cl100k_base", seed=0, **_ignored
):
    grid = Grid(
        lengths=tuple(int(x) for x in lengths),
        hops=tuple(int(x) for x in hops),
        cot=tuple(bool(x) for x in cot),
        samples=int(samples),
        queries=int(queries),
        hash_length=int(hash_length),
        seed=int(seed),
    )
    return {"test": datasets.Dataset.from_list(grid_rows(grid, tokenizer=tokenizer))}


def process_results(doc, results):
    scores = score_row(doc, results[0])
    return {"exact_match": scores["exact_match"], "links_right": scores["links_right"]}
