from hashhop.score import parse_answers, score_text
from hashhop.task.generator import generate
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
