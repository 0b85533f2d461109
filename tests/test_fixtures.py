"""Format compatibility with Magic's generator, proved on samples it produced (../shared/fixtures)."""

import json

import pytest

from hashhop import MultiHopEval, MultiHopSample
from hashhop.errors import HashHopError
from hashhop.eval.score import accuracy, score_text
from hashhop.task.formats import all_chains, parse_prompt, read_jsonl, sample_from_text


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_official_samples_parse_score_and_round_trip(fixtures_path):
    recs = records(fixtures_path)
    assert len(recs) == 12
    for rec, sample in zip(recs, read_jsonl(fixtures_path)):
        params = rec["params"]
        assert sample.hops == params["hops"]
        assert sample.chain_of_thought == params["chain_of_thought"]
        assert len(sample.queries) == params["num_queries"]
        # re-emitted from the parsed structure, byte for byte
        assert sample.prompt == rec["prompt"]
        assert sample.completion == rec["completion"]
        # the completion scores 100% against itself
        assert accuracy(score_text(sample, rec["completion"])) == 1.0
        # every chain of the prompt gives Magic's targets exactly
        cot = params["chain_of_thought"]
        targets = {c[0]: " = ".join(c[1:]) if cot else c[-1] for c in all_chains(rec["prompt"])}
        assert targets == rec["targets"]
        for chain in sample.queries:
            assert len(chain.hashes) == params["hops"] + 1
            for offset, line in zip(chain.offsets, chain.lines):
                assert rec["prompt"].split("\n")[line] == rec["prompt"][offset:].split("\n")[0]


def test_a_wrong_answer_scores_zero(fixtures_path):
    rec = records(fixtures_path)[0]
    sample = sample_from_text(rec["prompt"], rec["completion"])
    wrong = rec["completion"].replace(sample.queries[0].hashes[-1], "x" * len(sample.queries[0].hashes[-1]))
    scores = score_text(sample, wrong)
    assert [s.correct for s in scores] == [False] + [True] * (len(scores) - 1)


def test_make_one_matches_magics_signature_and_fields():
    one = MultiHopEval.make_one(n_chars_problem=3000, num_queries=5, hops=2, hash_pair_str_length=16, chain_of_thought=True, seed=3)
    assert isinstance(one, MultiHopSample)
    assert len(one.prompt) <= 3000
    links = parse_prompt(one.prompt)
    assert len(one.targets) == len(links) // 2  # every chain, as Magic's
    sample = sample_from_text(one.prompt, one.completion)
    assert list(one.targets.items())[:5] == list(sample.targets.items())  # queried chains first
    assert all(len(v.split(" = ")) == 2 for v in one.targets.values())
    again = MultiHopEval.make_one(3000, 5, 2, 16, True, seed=3)
    assert (again.prompt, again.completion, again.targets) == (one.prompt, one.completion, one.targets)
    assert MultiHopEval.make_one(3000, 5, 2, 16, True).prompt != MultiHopEval.make_one(3000, 5, 2, 16, True).prompt


def test_make_one_without_cot_answers_with_the_last_hash():
    one = MultiHopEval.make_one(2000, 2, 3, 8, False, seed=1)
    chains = {c[0]: c for c in all_chains(one.prompt)}
    assert all(chains[k][-1] == v and len(chains[k]) == 4 for k, v in one.targets.items())


@pytest.mark.parametrize(
    "prompt, completion, message",
    [
        ("abc = def\nnot a link", "COMPLETION:\nHops=1\n\nCoT=False\n\nabc = 'def'\n", "not a HashHop link"),
        ("abc = 'def'", "Hops=1\nabc = 'def'\n", "header"),
        ("abc = 'def'", "COMPLETION:\nHops=1\n\nCoT=False\n\nabc = 'xyz'\n", "does not follow"),
        ("abc = 'def'", "COMPLETION:\nHops=2\n\nCoT=False\n\nabc = 'def'\n", "does not end after exactly 2"),
        ("abc = 'def'\nabc = 'ghi'", "COMPLETION:\nHops=1\n\nCoT=False\n\nabc = 'def'\n", "starts two prompt lines"),
    ],
)
def test_malformed_text_gets_a_clear_error(prompt, completion, message):
    with pytest.raises(HashHopError, match=message):
        sample_from_text(prompt, completion)


def test_a_broken_jsonl_file_names_the_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "abc = \'def\'", "completion": "COMPLETION:\\nHops=1\\n\\nCoT=False\\n\\nabc = \'def\'\\n"}\n{oops\n')
    with pytest.raises(HashHopError, match="broken.jsonl:2"):
        list(read_jsonl(str(path)))


# make_one's bytes, pinned: computed by the implementation before it was vectorised (plan, then the
# sample, then every chain as Python strings); the same seed must keep giving the same sample.
MAKE_ONE_PINNED = [
    ((3000, 5, 2, 16, True, 3), "1ec06d68408cdf30c5b2c99e2f6904270075adff186a7d7b7a702ae552ad80e9"),
    ((2000, 2, 3, 8, False, 1), "50be33b328eab004bd989571427dede9b66fda2a98d8b845146bf53f54b8eb8c"),
    ((50_000, 5, 2, 16, False, 0), "f65855753999d5f0c41d509fd48953e3572d05f30773c344723001ba525fe1fc"),
    ((20_011, 3, 1, 16, True, 7), "8bcb7f53c9f9a731b63aff5d54c726ceae5cb4942757ddab8d19b59fe3931e43"),
    ((100_000, 4, 4, 12, True, 123456789), "40ad6da708aacefdc315090b0970b72a9e6e7b0f5da0fe553aa46acdb47bd4b0"),
    ((5000, 2, 2, 4, False, 5), "dc9c952a655faacc8d1c467ccf02f5e0fe6438529c6a24e9f6703713a29507e7"),
    ((9000, 3, 5, 6, True, 2**62), "7607470d6841be7e960ac164439bd67b35cfbbef3e16430a67a67839998cc3d4"),
]


@pytest.mark.parametrize("args, digest", MAKE_ONE_PINNED)
def test_make_one_bytes_are_pinned(args, digest):
    import hashlib

    one = MultiHopEval.make_one(*args[:5], seed=args[5])
    assert hashlib.sha256(json.dumps([one.prompt, one.completion, list(one.targets.items())]).encode()).hexdigest() == digest


def reference_make_one(n_chars, num_queries, hops, length, cot, seed):
    """make_one as it was first written: the streamed sample, then every chain as Python strings."""
    from hashhop.task.generator import plan
    from hashhop.task.spec import HashHopSpec

    problem = plan(HashHopSpec(context_tokens=n_chars, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=length, num_queries=num_queries, seed=seed))
    sample = problem.sample()
    targets = dict(sample.targets)
    for chain in problem.all_chains():
        targets.setdefault(chain[0], " = ".join(chain[1:]) if cot else chain[-1])
    return sample.prompt, sample.completion, list(targets.items())


@pytest.mark.parametrize("args", [(300_000, 7, 3, 10, True, 11), (150_000, 1, 1, 20, False, 2), (200_000, 3, 6, 5, False, 99)])
def test_make_one_equals_the_reference_several_blocks_and_chunks(monkeypatch, args):
    from hashhop import compat
    from hashhop.task import generator

    monkeypatch.setattr(compat, "_BLOCK", 1000)  # many blocks of targets
    monkeypatch.setattr(compat, "_LINES_PER_CHUNK", 777)  # many chunks of prompt
    monkeypatch.setattr(compat, "_WORKERS", 2)  # hashes on threads
    monkeypatch.setattr(generator, "_PERMUTE_LINES", 2000)  # many groups of lines
    one = MultiHopEval.make_one(*args[:5], seed=args[5])
    assert (one.prompt, one.completion, list(one.targets.items())) == reference_make_one(*args)
