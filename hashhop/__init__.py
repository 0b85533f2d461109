"""hashhop: HashHop long-context data, evaluation and models."""

from hashhop.compat import MultiHopEval, MultiHopSample
from hashhop.errors import HashHopError
from hashhop.task import Chain, HashHopSpec, Problem, Sample, generate, generate_many, parse_size, plan

__version__ = "0.1.0"
__all__ = [
    "Chain",
    "HashHopError",
    "HashHopSpec",
    "MultiHopEval",
    "MultiHopSample",
    "Problem",
    "Sample",
    "generate",
    "generate_many",
    "parse_size",
    "plan",
]
