"""inspect_ai task ``hashhop/hashhop``, registered through the ``inspect_ai`` entry point.

inspect eval hashhop/hashhop --model openai/gpt-4o-mini -T lengths=1000,4000 -T hops=1,2 -T cot=both
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState, generate

from hashhop.eval.export import grid_rows, score_row
from hashhop.eval.grid import Grid
from hashhop.task.spec import parse_size

_COT = {"both": (False, True), "on": (True,), "off": (False,)}


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
        cot=_COT[str(cot)],
        samples=int(samples),
        queries=int(queries),
        hash_length=int(hash_length),
        seed=int(seed),
    )
    rows = grid_rows(grid, tokenizer=tokenizer)
    dataset = MemoryDataset([Sample(input=row["text"], target=row["expected"], id=row["id"], metadata=row) for row in rows])
    return Task(dataset=dataset, solver=generate(), scorer=hashhop_scorer())
