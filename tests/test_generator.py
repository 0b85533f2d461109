import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashhop.errors import HashHopError
from hashhop.task import generator
from hashhop.task.formats import parse_prompt, sample_from_text
from hashhop.task.generator import EOL_JSON, Problem, generate, plan
from hashhop.task.spec import ALPHABETS, HashHopSpec
from hashhop.task.tokens import get_tokenizer

spec_fields = st.fixed_dictionaries(
    dict(
        context_tokens=st.integers(300, 12_000),
        tokenizer=st.just("chars"),
        hops=st.integers(1, 4),
        chain_of_thought=st.booleans(),
        hash_length=st.integers(4, 20),
        alphabet=st.sampled_from(list(ALPHABETS)),
        num_queries=st.integers(1, 3),
        seed=st.integers(0, 2**63 - 1),
    )
)


def check_invariants(spec: HashHopSpec, sample) -> None:
    links = parse_prompt(sample.prompt)
    hashes = {h for key, value, _ in links for h in (key, value)}
    num_chains = len(links) // spec.hops
    assert len(links) == num_chains * spec.hops == sample.num_lines
    # all hashes distinct: each chain contributes hops + 1 new ones
    assert len(hashes) == num_chains * (spec.hops + 1)
    alphabet = set(spec.alphabet_chars)
    assert all(len(h) == spec.hash_length and set(h) <= alphabet for h in hashes)
    # the queried chains: exactly hops links each, found where the sample says they are
    assert len(sample.queries) == spec.num_queries
    assert len({c.query for c in sample.queries}) == spec.num_queries
    for chain in sample.queries:
        assert len(chain.hashes) == spec.hops + 1 and len(chain.lines) == spec.hops
        for hop, (line, offset) in enumerate(zip(chain.lines, chain.offsets)):
            key, value, last = links[line]
            assert (key, value, last) == (chain.hashes[hop], chain.hashes[hop + 1], hop == spec.hops - 1)
            assert sample.prompt.startswith(f"{key} = ", offset)
    # the parse of our own text gives back the same queries, positions and completion
    reparsed = sample_from_text(sample.prompt, sample.completion)
    assert reparsed.prompt == sample.prompt and reparsed.completion == sample.completion
    assert [c.lines for c in reparsed.queries] == [c.lines for c in sample.queries]
    assert [c.offsets for c in reparsed.queries] == [c.offsets for c in sample.queries]


@given(fields=spec_fields)
@settings(max_examples=80, deadline=None)
def test_invariants_and_exact_character_size(fields):
    try:
        spec = HashHopSpec(**fields)  # the spec refuses what cannot fit, exactly, before any work
    except HashHopError as err:  # too small for one chain, or fewer chains than queries
        assert "too small" in str(err) or "queries need" in str(err)
        chain_chars = fields["hops"] * (2 * fields["hash_length"] + 4) + 2
        assert fields["context_tokens"] < fields["num_queries"] * chain_chars
        return
    sample = generate(spec)  # what the spec accepts, the generator makes
    check_invariants(spec, sample)
    # exact: never over the target, and one more chain would not fit
    assert len(sample.prompt) == sample.prompt_tokens <= spec.context_tokens
    assert len(sample.prompt) + spec.chain_chars() > spec.context_tokens
    assert generate(spec).prompt == sample.prompt  # deterministic


@pytest.mark.parametrize("tokenizer", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize("target", [700, 5_000, 40_000])
def test_exact_token_size(tokenizer, target):
    spec = HashHopSpec(context_tokens=target, tokenizer=tokenizer, hops=2, num_queries=1, seed=target)
    problem = plan(spec)
    counted = get_tokenizer(tokenizer).count(problem.prompt)  # whole, not chunked
    assert counted == problem.prompt_tokens <= target
    # one more chain would not fit
    assert counted + get_tokenizer(tokenizer).count(problem.chain_text(problem.num_chains)) > target
    check_invariants(spec, problem.sample())


def test_one_million_cl100k_tokens_within_a_tenth_of_a_percent():
    problem = plan(HashHopSpec(context_tokens=1_000_000, tokenizer="cl100k_base", hops=2, hash_length=16))
    counted = get_tokenizer("cl100k_base").count(problem.prompt)
    assert counted <= 1_000_000
    assert (1_000_000 - counted) / 1_000_000 < 0.001


def test_chunk_boundaries_do_not_change_the_text(monkeypatch):
    spec = HashHopSpec(context_tokens=20_000, tokenizer="chars", hops=3, seed=5)
    whole = plan(spec).prompt
    monkeypatch.setattr(generator, "LINES_PER_CHUNK", 7)
    assert plan(spec).prompt == whole
    json_text = b"".join(plan(spec).prompt_chunks(eol=EOL_JSON)).decode()
    assert json_text == json.dumps(whole)[1:-1]


def test_queried_chains_are_drawn_at_random():
    # Magic's generator always queries the first chains it made; here every chain is equally likely.
    counts = [0] * 20
    spec = HashHopSpec(context_tokens=20 * HashHopSpec(hops=1).chain_chars(), tokenizer="chars", hops=1, num_queries=1)
    for seed in range(600):
        problem = Problem(HashHopSpec(**{**spec.to_dict(), "seed": seed}), 20)
        chain_index = problem.all_chains().index(list(problem.queries[0].hashes))
        counts[chain_index] += 1
    assert min(counts) > 10 and max(counts) < 55  # expected 30 each


def test_seed_changes_everything():
    a = generate(HashHopSpec(context_tokens=3000, tokenizer="chars", seed=1))
    b = generate(HashHopSpec(context_tokens=3000, tokenizer="chars", seed=2))
    assert set(parse_prompt(a.prompt)).isdisjoint(parse_prompt(b.prompt))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hops=0), "hops must be"),
        (dict(num_queries=0), "queries must be"),
        (dict(hash_length=0), "hash length must be"),
        (dict(alphabet="ab cd"), "cannot hold"),
        (dict(alphabet="aa"), "repeats"),
        (dict(alphabet="a"), "2 to 94"),
        (dict(context_tokens=0), "context size"),
    ],
)
def test_bad_specs_are_refused(kwargs, message):
    with pytest.raises(HashHopError, match=message):
        HashHopSpec(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(context_tokens=20, tokenizer="chars"), "too small for one chain"),
        (dict(context_tokens=20), "too small for one chain"),
        (dict(context_tokens=1000, tokenizer="chars", num_queries=50), "50 queries need 50 chains"),
        (dict(context_tokens=10_000, tokenizer="chars", hash_length=2, alphabet="hex"), "distinct hashes"),
        (dict(context_tokens=100_000, hash_length=3, alphabet="hex"), "distinct hashes"),
        (dict(tokenizer="no-such-tokenizer"), "unknown tokenizer"),
    ],
)
def test_impossible_problems_are_refused(kwargs, message):
    with pytest.raises(HashHopError, match=message):
        plan(HashHopSpec(**kwargs))


def test_hugging_face_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([generate(HashHopSpec(context_tokens=20_000, tokenizer="chars")).prompt], trainer)
    path = str(tmp_path / "tokenizer.json")
    tokenizer.save(path)
    spec = HashHopSpec(context_tokens=3_000, tokenizer=path, hops=2, num_queries=2)
    problem = plan(spec)
    counted = get_tokenizer(path).count(problem.prompt)
    assert counted == problem.prompt_tokens <= 3_000
    assert counted + get_tokenizer(path).count(problem.chain_text(problem.num_chains)) > 3_000
    assert get_tokenizer(str(tmp_path)).count(problem.prompt) == counted  # a folder holding tokenizer.json works too


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hops=10**9, context_tokens=1000), "hops must be at most 1,000,000 (--hops)"),
        (dict(hash_length=10**8), "hash length must be at most 4,096 (--hash-length)"),
        (dict(num_queries=10**7), "queries must be at most 1,000,000 (--queries)"),
        (dict(context_tokens=10**13), "context size must be at most"),
        (dict(hops=True), "hops must be a whole number"),
        (dict(context_tokens=1000, hops=100_000), "too small for one chain, which takes at least"),
        (dict(context_tokens=1000, tokenizer="chars", hash_length=4096), "too small for one chain, which takes 16,393"),
        (dict(context_tokens=1000, tokenizer="chars", num_queries=14), "14 queries need 14 chains, which take 1,035 characters"),
        (dict(context_tokens=1000, num_queries=500), "500 queries need 500 chains"),
        (dict(context_tokens=1000, tokenizer="estimate:1", hops=1000), "too small for one chain"),
    ],
)
def test_absurd_specs_are_refused_at_once(kwargs, message):
    with pytest.raises(HashHopError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HashHopSpec(**kwargs)


def test_the_spec_bound_is_exact_for_characters_and_lenient_for_tokens():
    chain = HashHopSpec(hops=2).chain_chars()
    HashHopSpec(context_tokens=13 * chain - 1, tokenizer="chars", num_queries=13)  # exactly fits
    with pytest.raises(HashHopError, match="queries need"):
        HashHopSpec(context_tokens=13 * chain - 2, tokenizer="chars", num_queries=13)
    # token tokenizers: only what cannot fit at 32 characters a token is refused here
    HashHopSpec(context_tokens=1000, hops=800, num_queries=1)
    HashHopSpec(context_tokens=500, tokenizer="estimate:100", hops=1000, num_queries=1)  # 36,002 characters: 361 tokens
    # the grid's check (default tokenizer, the grid's queries) stays as lenient as it was
    from hashhop.eval.grid import Grid

    Grid(lengths=(500, 1000, 4000), hops=(1, 2, 3), queries=5)


def test_ascii_string_equals_join_and_decode():
    chunks = [b"abc\n", b"", bytearray(b"de = 'f'"), b"\n" * 3]
    assert generator.ascii_string(iter(chunks), 15) == b"".join(chunks).decode()
    with pytest.raises(ValueError, match="not 15|14 bytes promised"):
        generator.ascii_string(iter(chunks), 14)
    with pytest.raises(ValueError, match="not 16"):
        generator.ascii_string(iter(chunks), 16)
    with pytest.raises(ValueError):  # UnicodeDecodeError
        generator.ascii_string(iter([b"caf\xc3\xa9"]), 5)
    text = generator.ascii_string(iter([b"x" * 1000]), 1000)
    assert text == "x" * 1000 and hash(text) == hash("x" * 1000) and {text: 1}["x" * 1000] == 1
    # the buffer and the decode apart (make_one frees the hashes in between); plain str and bytes only
    buffer = generator.fill_buffer(iter([b"ab", b"cd"]), 4)
    assert generator.decode_ascii(buffer) == "abcd" and type(generator.decode_ascii(buffer)) is str


def test_the_engine_fills_no_string_in_place():
    # The prompt is built with plain Python: no ctypes, so no half-filled or shared string can exist.
    import inspect

    from hashhop import compat

    for module in (generator, compat):
        assert "ctypes" not in inspect.getsource(module)


@pytest.mark.parametrize("hops, length, alphabet", [(1, 11, "alnum"), (3, 11, "alnum"), (2, 4, "hex"), (2, 16, "letters")])
def test_chunks_threads_and_text_hashes_do_not_change_the_prompt(hops, length, alphabet):
    spec = HashHopSpec(context_tokens=60_000, tokenizer="chars", hops=hops, hash_length=length, alphabet=alphabet, seed=4)
    whole = plan(spec).prompt
    problem = plan(spec)
    digits, text = problem.hash_digits(), problem.hash_digits(workers=2, text=True)
    assert np.array_equal(np.frombuffer(spec.alphabet_chars.encode(), dtype=np.uint8)[digits], text)
    for lines, workers in [(50, 1), (50, 2), (4096, 1), (333, 3)]:
        for hashes, as_text in [(None, False), (digits, False), (text, True)]:
            chunks = problem.prompt_chunks(hashes=hashes, text=as_text, lines_per_chunk=lines, workers=workers)
            assert b"".join(chunks).decode() == whole, (lines, workers, as_text)
    json_text = b"".join(problem.prompt_chunks(eol=EOL_JSON, hashes=text, text=True, lines_per_chunk=77)).decode()
    assert json_text == json.dumps(whole)[1:-1]
    # written in place (make_one's path): the same bytes, and one newline after the last line
    for lines in (1, 77, 1 << 14):
        buffer = problem.prompt_text(text, lines)
        assert generator.decode_ascii(buffer[:-1]) == whole and buffer[-1] == ord("\n")


def test_planning_a_huge_character_context_is_constant_work(monkeypatch):
    # 1e12 characters: planning, the summary and the completion touch a few lines and hashes, never
    # an array that grows with the context, and count no tokens (sizing in characters is arithmetic).
    from hashhop.cli.generate import summary
    from hashhop.task import keyed, tokens

    largest = []
    for cls, name in [(keyed.KeyedPermutation, "__call__"), (keyed.KeyedPermutation, "inverse"), (keyed.HashFamily, "digits")]:
        original = getattr(cls, name)

        def spy(self, x, *args, _original=original, **kwargs):
            largest.append(np.size(x))
            return _original(self, x, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
    monkeypatch.setattr(tokens.CharTokenizer, "count", lambda self, text: pytest.fail("counted tokens"))
    monkeypatch.setattr(Problem, "_line_offsets", lambda self, positions: pytest.fail("a pass over the lines"))
    spec = HashHopSpec(context_tokens=10**12, tokenizer="chars", hops=2, num_queries=5)
    problem = plan(spec)
    assert problem.num_chains == (10**12 + 1) // spec.chain_chars() and problem.prompt_chars <= 10**12
    text = summary(problem, 0.0)
    assert problem.completion.count("\n") == 5 + 5 and len(problem.targets) == 5
    assert "999,999,999,961 characters" in text and len(largest) < 100 and max(largest) <= 16


def test_link_offsets_are_computed_when_first_asked_for():
    from hashhop.task.sample import Chain

    spec = HashHopSpec(context_tokens=40_000, tokenizer="chars", hops=3, num_queries=3, seed=2)
    problem = plan(spec)
    lazy = problem.queries
    assert all(c._offsets is None for c in lazy)  # the queries alone cost no pass over the prompt
    eager = sample_from_text(problem.prompt, problem.completion).queries
    assert lazy == eager and [c.offsets for c in lazy] == [c.offsets for c in eager]
    assert hash(lazy[0]) == hash(eager[0]) and repr(lazy[0]) == repr(eager[0])
    import pickle

    assert pickle.loads(pickle.dumps(lazy[0])) == lazy[0]
    with pytest.raises(AttributeError):
        lazy[0].hashes = ()
    with pytest.raises(TypeError):
        Chain(("a", "b"), (0,))


def test_importing_the_spec_loads_neither_the_generator_nor_numpy():
    import subprocess
    import sys

    code = (
        "import sys, hashhop.task.spec, hashhop.task.grammar; "
        "assert not {'numpy', 'hashhop.task.generator', 'hashhop.task.keyed'} & set(sys.modules), sorted(sys.modules); "
        "from hashhop.task import plan, HashHopSpec; assert plan.__module__ == 'hashhop.task.generator'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_queries_offsets_are_the_same_before_and_after_rendering(monkeypatch):
    monkeypatch.setattr(generator, "LINES_PER_CHUNK", 50)
    spec = HashHopSpec(context_tokens=40_000, tokenizer="chars", hops=3, num_queries=4, seed=9)
    fresh = plan(spec).queries
    problem = plan(spec)
    prompt = problem.prompt  # rendering records each chunk's chain ends; the offsets then use them
    assert problem._chain_ends and problem.queries == fresh
    for chain in problem.queries:
        for line, offset in zip(chain.lines, chain.offsets):
            assert prompt.split("\n")[line] == prompt[offset:].split("\n")[0]


def test_a_long_chain_in_a_small_token_context_fails_before_probing(monkeypatch):
    counted = []
    monkeypatch.setattr(generator, "count_prompt_tokens", lambda problem, tok: counted.append(problem.num_chains) or 0)
    with pytest.raises(HashHopError, match="too small for one chain"):
        plan(HashHopSpec(context_tokens=2000, hops=600, num_queries=1))
    assert counted == []
