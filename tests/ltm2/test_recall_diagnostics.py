"""The recall benchmark's diagnostic of wrong answers: where the first hash an answer wrote stands in the prompt."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

from ltm2_recall import first_hash_source  # noqa: E402

from hashhop.task.generator import plan  # noqa: E402
from hashhop.task.spec import HashHopSpec  # noqa: E402


def test_first_hash_source_tells_quoted_last_links_from_inner_ones():
    problem = plan(HashHopSpec(context_tokens=4000, tokenizer="chars", hops=2, chain_of_thought=True, hash_length=16, num_queries=3, seed=4))
    for chain in problem.queries:
        h1, h2, h3 = chain.hashes
        assert first_hash_source(problem.prompt, h2 + " = " + h3 + "'", 16) == "unquoted link"  # the first link, H1 = H2
        assert first_hash_source(problem.prompt, h3 + "'", 16) == "quoted link"  # the last link is written H2 = 'H3'
        assert first_hash_source(problem.prompt, h1 + "'", 16) == "no link"  # a chain's first hash is no link's value
        assert first_hash_source(problem.prompt, h2[:5], 16) == "short"
