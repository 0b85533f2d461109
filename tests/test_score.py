from hashhop.eval.score import score_text
from hashhop.task.generator import generate
from hashhop.task.grammar import parse_answers
from hashhop.task.spec import HashHopSpec


def test_answers_are_found_in_chatty_output():
    text = "Sure! Here you go:\n\n- abcDEF = 'ghiJKL = mnoPQR'\n**xyz** = ‘uvw’ (I think)\nabcDEF = 'later'"
    assert parse_answers(text) == {"abcDEF": "ghiJKL = mnoPQR", "xyz": "uvw"}


def test_score_is_exact_match_per_query():
    sample = generate(HashHopSpec(context_tokens=2000, tokenizer="chars", hops=2, chain_of_thought=True, num_queries=3))
    perfect = score_text(sample, sample.completion)
    assert all(s.correct for s in perfect)
    first = sample.queries[0]
    partial = sample.completion.replace(first.answer(True), first.hashes[1])  # stopped after one hop
    scores = score_text(sample, partial)
    assert [s.correct for s in scores] == [False, True, True]
    assert scores[0].predicted == first.hashes[1]
    assert [s.predicted for s in score_text(sample, "no idea")] == [None, None, None]


def test_outcomes_are_diagnosed():
    from hashhop.eval.score import score_answer
    from hashhop.task.grammar import prompt_hashes as prompt_hash_set

    sample = generate(HashHopSpec(context_tokens=3000, tokenizer="chars", hops=3, chain_of_thought=False, num_queries=2))
    chain, other = sample.queries
    hashes = prompt_hash_set(sample.prompt)
    letters = sample.spec.alphabet_chars

    def outcome(text, cot=False, prefilled=False):
        return score_answer(chain, cot, text, hashes, letters, prefilled).outcome

    assert outcome(f"{chain.query} = '{chain.hashes[-1]}'") == "correct"
    assert outcome(f"{chain.query} = '{chain.hashes[2]}'") == "stopped_early"
    assert outcome(f"{chain.query} = '{other.hashes[-1]}'") == "other_chain"
    assert outcome(f"{chain.query} = 'abcdefghijklmnopqrstu'") == "hallucinated"
    assert outcome("") == "empty"
    assert outcome("I am not sure.") == "unparseable"
    assert outcome(f"{chain.hashes[-1]}' and more", prefilled=True) == "correct"
    cot = score_answer(chain, True, f"{chain.query} = '{chain.hashes[1]} = {chain.hashes[2]} = {other.hashes[0]}'", hashes, letters)
    assert cot.outcome == "other_chain" and cot.links_right == 2


def test_wilson_interval_and_effective_length():
    from hashhop.eval.score import effective_length, wilson_interval

    low, high = wilson_interval(0, 10)
    assert low == 0 and 0.25 < high < 0.35
    low, high = wilson_interval(10, 10)
    assert high == 1 and 0.65 < low < 0.75
    assert effective_length({1000: 1.0, 4000: 0.9, 16000: 0.5, 64000: 0.9}) == 4000
    assert effective_length({1000: 0.2}) is None


def test_empty_and_placeholder_answers_are_diagnosed():
    """``''`` says nothing (empty, not unparseable); an echoed ``<final string>`` is no answer (unparseable, not hallucinated)."""
    from hashhop.eval.score import score_answer
    from hashhop.task.grammar import prompt_hashes as prompt_hash_set

    sample = generate(HashHopSpec(context_tokens=2000, tokenizer="chars", hops=2, chain_of_thought=False, num_queries=1))
    chain = sample.queries[0]
    hashes, letters = prompt_hash_set(sample.prompt), sample.spec.alphabet_chars

    def outcome(text, cot=False, prefilled=False):
        return score_answer(chain, cot, text, hashes, letters, prefilled).outcome

    for text in ("''", '""', " '' \n", f"{chain.query} = ''", f"**{chain.query}** = \"\""):
        assert outcome(text) == "empty", text
    assert outcome("", prefilled=True) == "empty" and outcome("'", prefilled=True) == "empty"
    for text in (f"{chain.query} = '<final string>'", "<final string>", f"Sure. {chain.query} = '<string 1> = <string 2>'"):
        assert outcome(text) == "unparseable", text
        assert outcome(text, cot=True) == "unparseable", text
    assert outcome("<final string>'", prefilled=True) == "unparseable"
    assert outcome(f"{chain.query} = 'ABCDEFGHIJKLMNOPQRS'") == "hallucinated"  # a real wrong answer stays one
