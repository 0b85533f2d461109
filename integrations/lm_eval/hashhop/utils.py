"""lm-evaluation-harness glue: the grid comes from hashhop (installed), sized by the metadata's tokenizer."""

import datasets

from hashhop.eval.export import grid_rows, score_row
from hashhop.eval.grid import Grid
from hashhop.task.spec import parse_size

_COT = {"both": (False, True), "on": (True,), "off": (False,)}
_TRUTH = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}


def _list(value):
    return list(value) if isinstance(value, (list, tuple)) else [part for part in str(value).split(",") if part.strip()]


def _cot(value):
    """[false, true], "both", "on", "off", or a single bool ("false" is False, not a non-empty string)."""
    if isinstance(value, str) and value.strip().lower() in _COT:
        return _COT[value.strip().lower()]
    values = []
    for x in _list(value):
        if not isinstance(x, bool) and str(x).strip().lower() not in _TRUTH:
            raise ValueError(f"metadata cot: {x!r} is not true or false (or use both, on, off)")
        values.append(x if isinstance(x, bool) else _TRUTH[str(x).strip().lower()])
    return tuple(values)


def load(
    lengths=(1000, 4000), hops=(1, 2), cot=(False, True), samples=2, queries=2, hash_length=16, tokenizer="cl100k_base", seed=0, **_ignored
):
    grid = Grid(
        lengths=tuple(parse_size(str(x).strip()) for x in _list(lengths)),
        hops=tuple(int(x) for x in _list(hops)),
        cot=_cot(cot),
        samples=int(samples),
        queries=int(queries),
        hash_length=int(hash_length),
        seed=int(seed),
    )
    return {"test": datasets.Dataset.from_list(grid_rows(grid, tokenizer=tokenizer))}


def process_results(doc, results):
    scores = score_row(doc, results[0])
    return {"exact_match": scores["exact_match"], "links_right": scores["links_right"]}
