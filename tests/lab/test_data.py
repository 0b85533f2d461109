import pytest
import torch

from hashhop.errors import HashHopError
from hashhop.eval.score import score_text
from hashhop.lab.data import IGNORE, TASKS, TaskConfig, eval_config, make_batch
from hashhop.task.formats import sample_from_text


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_mqar_targets_are_the_values_of_repeated_keys():
    cfg = TaskConfig(name="mqar", seq_len=64, vocab_size=256, num_pairs=4)
    x, y = make_batch(cfg, 32, gen())
    assert x.shape == y.shape == (32, 64)
    for row in range(32):
        pairs = {int(x[row, 2 * i]): int(x[row, 2 * i + 1]) for i in range(4)}
        positions = (y[row] != IGNORE).nonzero().flatten().tolist()
        assert len(positions) == 4
        for p in positions:
            assert pairs[int(x[row, p])] == int(y[row, p])  # the token at p is a key; its target is that key's value


def test_associative_recall_has_one_value_per_key_and_eval_scores_the_last():
    cfg = TaskConfig(name="ar", seq_len=40, vocab_size=20)
    x, y = make_batch(cfg, 16, gen())
    assert x.shape == (16, 42) and int(x.max()) < 20
    for row in range(16):
        seq = x[row].tolist() + [int(y[row, -1])]
        mapping = {}
        for k, v in zip(seq[0:40:2], seq[1:40:2]):
            assert mapping.setdefault(k, v) == v
        assert seq[-3] == 0 and mapping[seq[-2]] == seq[-1]
    _, y_eval = make_batch(eval_config(cfg), 16, gen())
    assert ((y_eval != IGNORE).sum(1) == 1).all()


def test_induction_and_needle_targets():
    x, y = make_batch(TaskConfig(name="induction", seq_len=64, vocab_size=32), 8, gen())
    for row in range(8):
        first = x[row].tolist().index(0)
        assert int(y[row, -2]) == int(x[row, first + 1]) and int(x[row, -2]) == 0
    x, y = make_batch(TaskConfig(name="needle", seq_len=64, vocab_size=64), 8, gen())
    for row in range(8):
        pos = x[row].tolist().index(1)
        assert int(x[row, pos + 1]) == int(x[row, -2]) and int(y[row, -2]) == int(x[row, pos + 2])


@pytest.mark.parametrize("cot", [False, True])
def test_hashhop_tokens_answers_follow_the_links(cot):
    cfg = TaskConfig(name="hashhop_tokens", vocab_size=100, num_pairs=6, hops=2, num_queries=3, chain_of_thought=cot)
    x, y = make_batch(cfg, 4, gen())
    for row in range(4):
        seq = x[row].tolist()
        links = {seq[i]: seq[i + 2] for i in range(0, 6 * 2 * 4, 4)}
        assert len(set(links) | set(links.values())) == 6 * 3  # distinct hashes
        labelled = [(p, int(y[row, p])) for p in range(len(seq)) if int(y[row, p]) != IGNORE]
        assert len(labelled) == 3 * (2 if cot else 1)


def test_hashhop_tokens_curriculum_mixes_sizes_and_asks_only_present_chains():
    from hashhop.lab.data import eval_config

    cfg = TaskConfig(name="hashhop_tokens", vocab_size=600, num_pairs=40, hops=1, num_queries=4, extra={"min_pairs": 4})
    x, y = make_batch(cfg, 64, gen())
    sizes = []
    for row in range(64):
        seq = x[row].tolist()
        links = {seq[i]: seq[i + 2] for i in range(0, 40 * 4, 4) if seq[i]}
        sizes.append(len(links))
        queries = seq[40 * 4 + 1 :: 4][:4]
        answers = [int(y[row, 40 * 4 + 4 * q + 2]) for q in range(4)]
        assert all(links[k] == v for k, v in zip(queries, answers))  # every asked chain is in the context
    assert min(sizes) >= 4 and max(sizes) <= 40 and len(set(sizes)) > 10
    assert sorted(sizes)[32] <= 16  # log-uniform: half the rows at most ~sqrt(4 x 41) chains
    assert "min_pairs" not in eval_config(cfg).extra  # scored at full size
    with pytest.raises(HashHopError, match="min_pairs"):
        make_batch(TaskConfig(name="hashhop_tokens", vocab_size=600, num_pairs=40, num_queries=4, extra={"min_pairs": 2}), 1, gen())


@pytest.mark.parametrize("hops, cot", [(1, False), (2, True), (2, False)])
def test_hashhop_chars_is_the_official_format_with_answer_masks(hops, cot):
    cfg = TaskConfig(name="hashhop_chars", seq_len=300, hops=hops, chain_of_thought=cot, hash_length=6, num_queries=2)
    x, y = make_batch(cfg, 3, gen())
    for row in range(3):
        text = bytes(v for v in x[row].tolist() if v).decode()
        prompt, completion = text.split("\n\nCOMPLETION:", 1)
        sample = sample_from_text(prompt, "COMPLETION:" + completion)
        assert all(s.correct for s in score_text(sample, "COMPLETION:" + completion))
        answer_chars = "".join(chr(int(t)) for t in y[row] if int(t) != IGNORE)
        assert answer_chars == "".join(c.answer(cot) + "'" for c in sample.queries)


def test_unknown_task_and_impossible_shapes():
    with pytest.raises(HashHopError, match="unknown task"):
        make_batch(TaskConfig(name="nope"), 1, gen())
    with pytest.raises(HashHopError, match="mqar needs"):
        make_batch(TaskConfig(name="mqar", seq_len=8, num_pairs=4), 1, gen())
    assert set(TASKS) >= {"mqar", "ar", "induction", "needle", "hashhop_tokens", "hashhop_chars"}
