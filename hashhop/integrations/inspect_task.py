"""inspect_ai task ``hashhop/hashhop``, registered through the ``inspect_ai`` entry point.

OPENAI_BASE_URL=http://HOST/v1 OPENAI_API_KEY=KEY inspect eval hashhop/hashhop --model openai/NAME -M responses_api=false \
    -T lengths=1000,4000 -T hops=1,2 -T cot=both

``-M responses_api=false``: inspect would otherwise call the Responses API for a model name it does not
know, which local OpenAI-compatible servers answer with HTTP 404.
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState, generate

from hashhop.eval.export import grid_rows, score_row
from hashhop.eval.grid import Grid
from hashhop.task.spec import parse_size

_COT = {"both": (False, True), "on": (True,), "off": (False,), "true": (True,), "false": (False,)}


def _cot(value) -> tuple[bool, ...]:
    # inspect reads -T values as YAML: cot=on arrives as True and cot=off as False
    if isinstance(value, bool):
        return (value,)
    try:
        return _COT[str(value).strip().lower()]
    except KeyError:
        raise ValueError(f"cot={value!r}: use both, on or off") from None


def _ints(value, size: bool = False) -> tuple[int, ...]:
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(parse_size(str(p).strip()) if size else int(p) for p in parts if str(p).strip())


@scorer(metrics=[accuracy(), stderr()])
def hashhop_scorer():
    async def score(state: TaskState, target: Target) -> Score:
        result = score_row(state.metadata, state.output.completion)
        return Score(
            value=CORRECT if result["exact_match"] else INCORRECT,
            answer=state.output.completion,
            explanation=result["outcome"],
            metadata=result,
        )

    return score


@task
def hashhop(lengths="1000,4000", hops="1,2", cot="both", samples=2, queries=2, hash_length=16, tokenizer="cl100k_base", seed=0) -> Task:
    grid = Grid(
        lengths=_ints(lengths, size=True),
        hops=_ints(hops),
        cot=_cot(cot),
        samples=int(samples),
        queries=int(queries),
        hash_length=int(hash_length),
        seed=int(seed),
    )
    rows = grid_rows(grid, tokenizer=tokenizer)
    dataset = MemoryDataset([Sample(input=row["text"], target=row["expected"], id=row["id"], metadata=row) for row in rows])
    return Task(dataset=dataset, solver=generate(), scorer=hashhop_scorer())
