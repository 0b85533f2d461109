"""The HashHop task: spec -> problem -> sample, and its text formats."""

from hashhop.task.generator import Problem, generate, generate_many, plan
from hashhop.task.sample import Chain, Sample
from hashhop.task.spec import HashHopSpec, parse_size

__all__ = ["Chain", "HashHopSpec", "Problem", "Sample", "generate", "generate_many", "parse_size", "plan"]
