"""The recall benchmark's diagnostic of wrong answers: where the first hash an answer wrote stands in the prompt."""

import os
import sys

import numpy as np

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


def test_jump_reads_trace_each_heads_read_at_a_cot_answers_jumps():
    """benchmarks/ltm2_jump_reads.py: the link's separator is found for middle and last (quoted) links, and the engine's
    trace gives every block and head one read per jump, with weights that are shares of a read; off after the step."""
    from ltm2_jump_reads import copied_from, jump_reads, link_span

    problem = plan(HashHopSpec(context_tokens=6000, tokenizer="chars", hops=3, chain_of_thought=True, hash_length=16, num_queries=2, seed=5))
    for chain in problem.queries:
        h1, h2, h3, h4 = chain.hashes
        first, end = link_span(problem.prompt, h2)  # middle link `H2 = H3`: from H2's last byte to the space after =
        assert problem.prompt[first:end] == h2[-1] + " = " and problem.prompt[end : end + 16] == h3
        first, end = link_span(problem.prompt, h3)  # last link `H3 = 'H4'`: up to its quote
        assert problem.prompt[first:end] == h3[-1] + " = '" and problem.prompt[end : end + 16] == h4
        first, end = copied_from(problem.prompt, h2)  # the link H2 was copied from, `H1 = H2`: H2's last byte, newline
        assert problem.prompt[first:end] == h2[-1] + "\n" and problem.prompt[first - 34 : first - 15] == h1 + " = "
    runner = make_variant("trained", None)
    cells = jump_reads(runner, 6000, 3, 2, 5)
    assert set(cells) == {
        "middle link", "last link (quoted)", "end of the copied hash, middle link next", "end of the copied hash, last link (quoted) next"
    } and runner.engine.read_trace is None
    blocks, heads = len(runner.engine.net.blocks), runner.engine.cfg.memory_heads
    for label, cell in cells.items():
        assert cell["asked"] == 2 and 0 <= cell["right"] + cell["newline"] <= 2
        reads = {key: got for key, got in cell.items() if isinstance(key, tuple)}
        assert set(reads) == {(b, h) for b in range(blocks) for h in range(heads)}
        assert all(len(got) == 2 and all(0 <= w <= 1 + 1e-6 for w, _, _, _ in got) for got in reads.values())
        there = [t for got in reads.values() for _, _, _, t in got]  # the copied-from link's share: only at hash ends
        assert all(np.isnan(t) for t in there) if not label.startswith("end") else all(0 <= t <= 1 + 1e-6 for t in there)


def test_copy_reads_find_a_first_hashs_sources_and_the_question_shaped_entries():
    """ltm2_jump_reads --copy-bytes: a first hash H2 stands as the value of `H1 = H2` and as the key of `H2 = 'H3'`;
    the question-shaped entries for bytes written so far end `= '` plus those bytes in some quoted link; each traced
    step gives every block and head its shares of the read."""
    from ltm2_jump_reads import hash_starts, jump_reads, question_shaped, quote_ends

    problem = plan(HashHopSpec(context_tokens=6000, tokenizer="chars", hops=2, chain_of_thought=True, hash_length=16, num_queries=2, seed=5))
    text = np.frombuffer(problem.prompt.encode(), dtype=np.uint8)
    quotes = quote_ends(text)
    assert len(quotes) == problem.prompt.count("= '") and all(problem.prompt[q - 2 : q + 1] == "= '" for q in quotes)
    for chain in problem.queries:
        h1, h2, h3 = chain.hashes
        starts = sorted(hash_starts(problem.prompt, h2))
        assert len(starts) == 2 and all(problem.prompt[s : s + 16] == h2 for s in starts)
        assert any(problem.prompt[s - 1] == "\n" for s in starts) and any(problem.prompt[s - 3 : s] == " = " for s in starts)
        ends = question_shaped(quotes, text, h3[:2].encode())
        assert problem.prompt.index(" = '" + h3) + 5 in ends.tolist()  # H3's own quoted link, at its second byte
        assert all(problem.prompt[e - 4 : e + 1] == "= '" + h3[:2] for e in ends)
    runner = make_variant("trained", None)
    cells = jump_reads(runner, 6000, 2, 2, 5, copy_bytes=2)
    assert {"first hash, byte 0", "first hash, byte 1"} <= set(cells) and runner.engine.read_trace is None
    for label in ("first hash, byte 0", "first hash, byte 1"):
        cell = cells[label]
        assert cell["asked"] == 2 and len(cell["wrong"]) == 2 - cell["right"]
        reads = [got for key, got in cell.items() if isinstance(key, tuple)]
        assert all(0 <= on <= 1 + 1e-6 and 0 <= near <= 1 + 1e-6 and on + near <= 1 + 1e-6 for got in reads for on, _, _, near in got)


def test_first_wrong_step_names_each_byte_of_real_answers():
    """first_wrong_step against real answers (the generator's chains) read byte by byte: a hash's first byte is a
    jump, its next three an early copy, the rest a copy, the space before ` = ` the hash end, `= ` the separator and
    the byte after the answer the closing quote; the step counts of ltm2_failure_steps.py name every step."""
    from ltm2_failure_steps import section_failures
    from ltm2_recall import FIRST_WRONG_STEPS, first_wrong_step, step_counts

    for hops, cot, hash_length in ((3, True, 16), (2, True, 8), (2, False, 16), (1, True, 12)):
        problem = plan(HashHopSpec(context_tokens=3000, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=hash_length, num_queries=2, seed=1))
        expected = problem.queries[0].answer(cot) + "'"
        hashes = set(problem.queries[0].hashes)
        for at in range(len(expected)):
            start = max((i for i in range(at + 1) if expected[i : i + hash_length] in hashes and (i == 0 or expected[i - 1] == " ")), default=None)
            if at == len(expected) - 1:
                want = "closing quote"
            elif start is not None and at - start < hash_length:
                want = "jump" if at == start else "early copy" if at - start <= 3 else "copy"
            else:
                want = "hash end" if expected[at : at + 2] == " =" else "separator"
            assert first_wrong_step(hops, cot, hash_length, at) == want, (hops, cot, at, expected)
    assert list(step_counts(2, True, 16, [0, 2, 16, 16, 35])) == list(FIRST_WRONG_STEPS)
    assert step_counts(2, True, 16, [0, 2, 16, 16, 35]) == {"jump": 1, "early copy": 1, "copy": 0, "hash end": 2, "separator": 0, "closing quote": 1}
    text = "<!-- s:begin -->\n- trained, 1,000 chars, 2 hops CoT, 16 letters: 2 wrong; x; right bytes before the first wrong one: 0, 16; y\n<!-- s:end -->"
    assert section_failures(text, "s") == [("trained", 1000, 2, True, 16, [0, 16])]
    dotted = text.replace("- trained,", "- bonus x1.25,")  # variant names with numbers in them (benchmarks' "bonus xF")
    assert section_failures(dotted, "s") == [("bonus x1.25", 1000, 2, True, 16, [0, 16])]


def test_failures_carry_the_log_probabilities_at_their_first_wrong_byte():
    """Each wrong answer records the network's log-probabilities of the right byte and of the one it wrote at its first
    wrong byte; greedy decoding wrote the likeliest byte, so the written one is never the less likely of the two."""
    import pytest

    from hashhop.errors import HashHopError

    failures = []
    runner = make_variant("memory off", None)  # (the local window alone: quick, and it cannot answer)
    assert runner.engine.beams == 1 and make_variant("beam 2", None).engine.beams == 2
    per_byte = make_variant("beam 3 per byte", None).engine
    assert (per_byte.beams, per_byte.length_penalty, make_variant("beam 2", None).engine.length_penalty) == (3, 1.0, 0.0)
    hashhop_rows({"memory off": runner}, 9_000, [(2, True)], 16, "letters", 3, 0, failures)
    assert len(failures) == 3
    for f in failures:
        right, written = f["first_wrong_logprobs"]
        assert written >= right and -np.log(256) - 30 < right <= 0 and written > -np.log(256)
    with pytest.raises(HashHopError, match="beam takes a whole number"):
        make_variant("beam x", None)
    with pytest.raises(HashHopError, match="beam N per byte"):
        make_variant("beam 2 per word", None)
