"""The recall benchmark's diagnostic of wrong answers: where the first hash an answer wrote stands in the prompt."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

from ltm2_recall import first_hash_source, hashhop_rows, make_variant  # noqa: E402

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


def test_each_table_says_which_memory_its_variants_kept():
    """The engine's default index depends on the prefilled length, so a table names the memory each variant kept
    (the 1M rows were once read as compact when their prefill, just under 1,000,000 bytes, had kept the flat one)."""
    notes = {}
    for index in ("auto", "ivf"):
        runners = {"trained": make_variant("trained", None, index), "memory off": make_variant("memory off", None, index)}
        memory = {}
        rows = hashhop_rows(runners, 9_000, [(1, False)], 16, "letters", 1, 0, None, memory)
        assert set(rows[(1, False)]) == {"trained", "memory off"}
        assert set(memory) == {"trained"}  # memory off keeps no long-term memory to describe
        notes[index] = memory["trained"]
    assert notes["auto"].startswith("8-bit keys, flat scan, 155 B")
    assert notes["ivf"].startswith("product-quantised keys in inverted lists")
    assert int(notes["ivf"].split(", ")[1].split()[0]) <= 64  # the bound, which the flat memory exceeds
