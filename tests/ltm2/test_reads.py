"""The auxiliary read loss: the data says where HashHop answers jump to a link, the model's loss is -log of the
read's share there (checked against the softmax written out), and the lab trains it, from given weights."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashhop.errors import HashHopError
from hashhop.lab.config import RunConfig
from hashhop.lab.data import IGNORE, TaskConfig
from hashhop.lab.mixers import MixerConfig
from hashhop.lab.model import LM, ModelConfig
from hashhop.lab.train import train_run, weighted_read_targets
from hashhop.ltm2 import data as d
from hashhop.ltm2.model import POINTER_OFFSETS, read_gain
from hashhop.task.generator import plan
from hashhop.task.spec import HashHopSpec


def small_lm(seed: int = 0, **mixer) -> LM:
    torch.manual_seed(seed)
    fields = {"name": "ltm2", "d_model": 32, "n_heads": 2, "window": 16, "conv_kernel": 4, "key_dim": 16, "value_dim": 8} | mixer
    return LM(ModelConfig(mixer=MixerConfig(**fields), vocab_size=256, n_layers=1, mlp_ratio=0))


@pytest.mark.parametrize("hops,cot", [(1, True), (1, False), (2, True), (3, True), (2, False), (3, False)])
def test_hashhop_read_targets_point_at_the_links_an_answer_jumps_to_and_copies_from(hops, cot):
    problem = plan(HashHopSpec(context_tokens=400, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=6, num_queries=2, seed=hops))
    text = problem.prompt + "\n\n"
    for chain in problem.queries:
        start = len(text) + len(chain.query) + 4  # after `Q = '`
        reads = d.hashhop_reads(chain, cot, 0, start)
        answer = chain.answer(cot)
        text += f"{chain.query} = '{answer}'\n"
        h = chain.hashes
        jumps = [r for r in reads if r[3] == d.JUMP]
        copies = [r for r in reads if r[3] == d.COPY]
        assert len(jumps) + len(copies) == len(reads) and len({(b, r) for b, r, _, _ in reads}) == len(reads)
        # every copy, for the first read, from a source byte equal to the answer's byte
        for byte, read, sources, _ in copies:  # the byte before matches too: the source is inside the right link
            assert read == 0 and sources and all(text[source - 1 : source + 1] == text[byte - 1 : byte + 1] for source in sources)
        written = {b - start for b, _, _, _ in reads}
        if not cot and hops > 1:  # composition: the first read on the intermediate, the second on the next link
            assert [(b - start, r) for b, r, _, _ in jumps] == [(0, 0), (0, 1)]
            assert text[jumps[0][2][0] - 3 : jumps[0][2][0] + len(h[1])] == f" = {h[1]}"
            assert text[jumps[1][2][0] - 3 - (hops == 2) : jumps[1][2][0] + len(h[2])] == f" = {chr(39) * (hops == 2)}{h[2]}"
            assert written == set(range(len(answer) + 1))  # then the rest of the answer and its closing quote copied
            continue
        # every answer byte and the closing quote but the space after each written hash (ambiguous: see the docstring)
        spaces = {len(h[1]) + (m - 1) * (3 + len(h[1])) for m in range(1, hops)}
        assert written == set(range(len(answer) + 1)) - spaces
        assert len(jumps) == 1 + 2 * (hops - 1)
        for byte, read, (source,), _ in jumps:
            assert read == 0 and text[source] == text[byte]
        link = text[jumps[0][2][0] - len(h[0]) - 3 - (hops == 1) : jumps[0][2][0]]
        assert link == f"{h[0]} = " + "'" * (hops == 1)  # H2 out of `H1 = H2` (`H1 = 'H2'` when it is the last link)
        for m in range(1, hops):  # "=" and the next hash out of the link that starts with the hash just written
            _, _, (equals,), _ = jumps[2 * m - 1]
            assert text[equals - len(h[m]) - 1 : equals + 1] == f"{h[m]} ="
            _, _, (value,), _ = jumps[2 * m]
            assert text[value - len(h[m]) - 3 - (m == hops - 1) : value + len(h[m + 1])].endswith(h[m + 1])
            assert text[value - len(h[m]) - 3 - (m == hops - 1) : value].startswith(h[m])


@pytest.mark.parametrize("hops,cot", [(1, True), (2, True), (3, True), (2, False)])
def test_query_reads_point_the_question_at_its_first_link(hops, cot):
    """hashhop_reads(query_reads=True): the same targets plus two jumps inside the question ``H1 = '``: after ``H1 ``
    to the first link's ``=`` (the same window), after ``H1 = `` to the byte after the link's ``= `` (its value, or
    the last link's quote); the entries read are one byte before (a read at p predicts byte p + 1)."""
    problem = plan(HashHopSpec(context_tokens=400, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=6, num_queries=2, seed=hops + 7))
    text = problem.prompt + "\n\n"
    for chain in problem.queries:
        start = len(text) + len(chain.query) + 4  # after `Q = '`
        text += f"{chain.query} = '{chain.answer(cot)}'\n"
        plain = d.hashhop_reads(chain, cot, 0, start)
        asked = d.hashhop_reads(chain, cot, 0, start, query_reads=True)
        extra = [r for r in asked if r not in plain]
        assert len(asked) == len(plain) + 2 and len(extra) == 2 and all(r[1] == 0 and r[3] == d.JUMP for r in extra)
        (equals_at, _, (equals,), _), (quote_at, _, (after,), _) = sorted(extra)
        h1 = chain.hashes[0]
        assert text[equals_at - len(h1) - 1 : equals_at + 1] == f"{h1} =" == text[equals - len(h1) - 1 : equals + 1]
        assert text[quote_at - len(h1) - 3 : quote_at + 1] == f"{h1} = '" and text[after - len(h1) - 3 : after] == f"{h1} = "
        assert text[after] == ("'" if hops == 1 else chain.hashes[1][0])  # the link the answer's first jump reads
        line = after - len(h1) - 3
        assert equals < start and after < start and (line == 0 or text[line - 1] == "\n")  # in the prompt, a link's line


@pytest.mark.parametrize("hops,cot", [(1, True), (2, True), (3, True), (4, True), (2, False), (3, False)])
def test_cot_reads_point_the_space_after_each_written_hash_at_the_link_it_starts(hops, cot):
    """hashhop_reads(cot_reads=True): the same targets plus one jump per hash a CoT answer writes before the last (for
    each read), at the space after it, out of the link that hash starts (a space at a line's start + the hash); the link the hash was
    copied from holds another byte there. No chain of thought, or one hop: nothing added."""
    problem = plan(HashHopSpec(context_tokens=600, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=6, num_queries=2, seed=hops + 11))
    text = problem.prompt + "\n\n"
    for chain in problem.queries:
        start = len(text) + len(chain.query) + 4  # after `Q = '`
        text += f"{chain.query} = '{chain.answer(cot)}'\n"
        plain = d.hashhop_reads(chain, cot, 0, start, query_reads=True)
        added = d.hashhop_reads(chain, cot, 0, start, query_reads=True, cot_reads=True)
        extra = sorted(r for r in added if r not in plain)
        assert [r for r in added if r in plain] == plain  # every earlier target kept, in order
        if not cot or hops == 1:
            assert extra == []
            continue
        assert len(added) == len(plain) + 2 * (hops - 1) and all(r[3] == d.JUMP for r in extra)
        assert [r[1] for r in extra] == [0, 1] * (hops - 1) and extra[::2] == [(b, 0, s, k) for b, _, s, k in extra[1::2]]
        h = chain.hashes
        for m, (byte, _, (source,), _) in enumerate(extra[::2], start=1):
            assert text[byte - len(h[m]) : byte + 1] == f"{h[m]} "  # the answer's space after the hash it wrote
            line = source - len(h[m])
            assert source < start and text[line : source + 3] == f"{h[m]} = " and (line == 0 or text[line - 1] == "\n")
            copied_from = text.index(f" = {h[m]}") + 3 + len(h[m])  # the link whose value it is (never the quoted last)
            assert text[copied_from] != " "  # ... holds a newline there (or the last link's quote), not the space
        # the targets not added are where they were: the space after a written hash had none before
        assert not {b for b, _, _, _ in plain} & {b for b, _, _, _ in extra}


@pytest.mark.parametrize("hops,cot", [(1, True), (2, True), (3, True), (4, True), (2, False), (3, False)])
def test_second_read_jumps_give_the_second_read_the_first_reads_jumps(hops, cot):
    """hashhop_reads(second_read_jumps=True): every earlier target kept, in order, plus the answer's JUMPs of the first
    read (not the question's) for the second read, the same bytes and entries; without chain of thought (hops > 1,
    where the second read has a target of its own) nothing added."""
    problem = plan(HashHopSpec(context_tokens=600, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=6, num_queries=2, seed=hops + 17))
    text = problem.prompt + "\n\n"
    for chain in problem.queries:
        start = len(text) + len(chain.query) + 4  # after `Q = '`
        text += f"{chain.query} = '{chain.answer(cot)}'\n"
        plain = d.hashhop_reads(chain, cot, 0, start, query_reads=True)
        added = d.hashhop_reads(chain, cot, 0, start, query_reads=True, second_read_jumps=True)
        extra = [r for r in added if r not in plain]
        assert [r for r in added if r in plain] == plain
        if not cot and hops > 1:
            assert extra == []
            continue
        answer_jumps = [(b, 1, s, k) for b, read, s, k in plain if read == 0 and k == d.JUMP and b >= start]
        assert sorted(extra) == sorted(answer_jumps) and len(extra) == 1 + 2 * (hops - 1)
        assert all(s[0] < start for _, _, s, _ in extra)  # out of the prompt's links


@pytest.mark.parametrize("hops,cot", [(1, True), (2, True), (3, True), (2, False)])
def test_second_read_copies_give_the_second_read_each_hashs_first_copied_bytes(hops, cot):
    """hashhop_reads(second_read_copies=N): every earlier target kept, in order, plus for each hash the answer writes
    the first read's COPYs of its bytes 1..N for the second read, the same bytes and entries (each entry the byte
    before the one to write, in a link of the prompt)."""
    problem = plan(HashHopSpec(context_tokens=600, tokenizer="chars", hops=hops, chain_of_thought=cot, hash_length=6, num_queries=2, seed=hops + 23))
    text = problem.prompt + "\n\n"
    for chain in problem.queries:
        start = len(text) + len(chain.query) + 4  # after `Q = '`
        text += f"{chain.query} = '{chain.answer(cot)}'\n"
        plain = d.hashhop_reads(chain, cot, 0, start, query_reads=True, second_read_jumps=True)
        added = d.hashhop_reads(chain, cot, 0, start, query_reads=True, second_read_jumps=True, second_read_copies=3)
        extra = [r for r in added if r not in plain]
        assert [r for r in added if r in plain] == plain
        written = hops if cot else 1  # hashes the answer writes
        assert len(extra) == 3 * written and all(read == 1 and kind == d.COPY for _, read, _, kind in extra)
        first_copies = {(b, s) for b, read, s, kind in plain if read == 0 and kind == d.COPY}
        assert all((b, s) in first_copies for b, _, s, _ in extra)
        for b, _, sources, _ in extra:  # the byte to write follows each target entry in the prompt
            assert all(text[source + 1] == text[b + 1] for source in sources) and all(source < start for source in sources)
    assert d.hashhop_reads(chain, cot, 0, start, second_read_copies=99) == d.hashhop_reads(chain, cot, 0, start, second_read_copies=5)  # at most a hash's bytes


def test_mixture_read_targets_are_the_same_rows_with_copied_bytes(tmp_path):
    corpus = tmp_path / "corpus.bin"
    corpus.write_bytes(b"def f(x):\n    return x + 1\n\n" * 2000)
    base = {"corpus": str(corpus)}
    x, y = d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra=base), 16, torch.Generator().manual_seed(2))
    x2, y2, r = d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra={**base, "read_targets": True}), 16, torch.Generator().manual_seed(2))
    assert torch.equal(x, x2) and torch.equal(y, y2) and r.shape == (16, 1024, d.READS, d.KINDS, d.SOURCES)
    first, second = r[:, :, 0, d.JUMP, 0], r[:, :, 1, d.JUMP, 0]
    assert int((first >= 0).sum()) > 10
    assert ((y[first >= 0] != IGNORE).all())  # targets only on trained answer bytes
    p = torch.arange(1024)
    assert (first[first >= 0] <= p.expand_as(first)[first >= 0] - 15).all()  # the entries are readable there
    # read 1 has targets only where read 0 composes (no chain of thought): the intermediate, not the answer byte
    source = torch.gather(x, 1, (first + 1).clamp(min=0, max=1023))
    copied = (first >= 0) & (second < 0)
    assert torch.equal(source[copied], y[copied])
    assert (second >= 0).sum() == ((first >= 0) & (second >= 0)).sum()
    # copies: the first read only, on trained bytes, each source (either of two) holding the byte predicted
    copy = r[:, :, :, d.COPY]
    assert int((copy[:, :, 1] >= 0).sum()) == 0 and int((copy[:, :, 0, 0] >= 0).sum()) > 10 * int((first >= 0).sum()) // 2
    assert not ((copy[:, :, 0] >= 0).any(-1) & (first >= 0)).any()  # one kind per position
    for source in range(d.SOURCES):
        entry = copy[:, :, 0, source]
        found = torch.gather(x, 1, (entry + 1).clamp(min=0, max=1023))
        assert torch.equal(found[entry >= 0], y[entry >= 0]) and (y[entry >= 0] != IGNORE).all()
    # hashhop_query_reads: the same rows, and each question's two jumps on top (bytes given, not trained)
    extra = {**base, "read_targets": True, "hashhop_query_reads": True}
    x3, y3, r3 = d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra=extra), 16, torch.Generator().manual_seed(2))
    first3 = r3[:, :, 0, d.JUMP, 0]
    added = (first3 >= 0) & (first < 0)
    assert torch.equal(x3, x) and torch.equal(y3, y) and torch.equal(first3[first >= 0], first[first >= 0])
    assert int(added.sum()) > 10 and (y[added] == IGNORE).all() and (first3[added] <= p.expand_as(first)[added] - 15).all()
    # read at the question's spaces (`H1 ` and `H1 = `), each from the link's entry with the same window: a space too
    assert (x[added] == ord(" ")).all() and (torch.gather(x, 1, first3.clamp(min=0))[added] == ord(" ")).all()
    with pytest.raises(HashHopError, match="hashhop_query_reads"):
        d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra={**extra, "hashhop_query_reads": 1}), 1, torch.Generator())
    # hashhop_cot_reads: the same rows and targets, and a jump at the space after each hash a CoT answer writes (trained)
    x4, y4, r4 = d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra={**extra, "hashhop_cot_reads": True}), 16, torch.Generator().manual_seed(2))
    first4 = r4[:, :, 0, d.JUMP, 0]
    spaces = (first4 >= 0) & (first3 < 0)
    assert torch.equal(x4, x) and torch.equal(y4, y) and torch.equal(first4[first3 >= 0], first3[first3 >= 0])
    assert torch.equal(r4[:, :, :, d.COPY], r3[:, :, :, d.COPY]) and torch.equal(r4[:, :, 1][~spaces], r3[:, :, 1][~spaces])
    assert torch.equal(r4[:, :, 1, d.JUMP, 0][spaces], first4[spaces])  # the second read has the same target there
    assert int(spaces.sum()) > 0 and (y[spaces] == ord(" ")).all()  # trained bytes: the space the answer writes
    assert (torch.gather(x, 1, (first4 + 1).clamp(min=0, max=1023))[spaces] == ord(" ")).all()  # out of a link's space
    assert (first4[spaces] <= p.expand_as(first4)[spaces] - 15).all()
    with pytest.raises(HashHopError, match="hashhop_cot_reads"):
        d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra={**extra, "hashhop_cot_reads": "yes"}), 1, torch.Generator())
    # hashhop_second_read_jumps: the same rows and first-read targets; the second read gets the first's jumps where it had none
    x5, y5, r5 = d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra={**extra, "hashhop_second_read_jumps": True}), 16, torch.Generator().manual_seed(2))
    second3, second5 = r3[:, :, 1, d.JUMP, 0], r5[:, :, 1, d.JUMP, 0]
    new = (second5 >= 0) & (second3 < 0)
    assert torch.equal(x5, x) and torch.equal(y5, y) and torch.equal(r5[:, :, 0], r3[:, :, 0]) and torch.equal(r5[:, :, :, d.COPY], r3[:, :, :, d.COPY])
    assert torch.equal(second5[second3 >= 0], second3[second3 >= 0]) and int(new.sum()) > 10
    assert torch.equal(second5[new], first3[new])  # the first read's own targets there
    with pytest.raises(HashHopError, match="hashhop_second_read_jumps"):
        d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra={**extra, "hashhop_second_read_jumps": 1}), 1, torch.Generator())
    # hashhop_second_read_copies: the same rows and first-read targets; the second read's copies are the first read's
    x6, y6, r6 = d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra={**extra, "hashhop_second_read_copies": 2}), 16, torch.Generator().manual_seed(2))
    copies6 = r6[:, :, 1, d.COPY, 0]
    assert torch.equal(x6, x) and torch.equal(y6, y) and torch.equal(r6[:, :, 0], r3[:, :, 0]) and int((copies6 >= 0).sum()) > 10
    assert torch.equal(copies6[copies6 >= 0], r3[:, :, 0, d.COPY, 0][copies6 >= 0]) and (r3[:, :, 1, d.COPY, 0] < 0).all()
    for bad in (-1, True, 65):
        with pytest.raises(HashHopError, match="hashhop_second_read_copies"):
            d.mixture_batch(TaskConfig(name="ltm_mixture", seq_len=1024, extra={**extra, "hashhop_second_read_copies": bad}), 1, torch.Generator())


def test_target_loss_is_minus_log_of_the_reads_share_on_its_targets():
    lm = small_lm(log_length_reads=True)
    net = lm.blocks[0].mixer
    read = net.blocks[0].read
    read.log_scale.data.fill_(2.0)
    x = torch.randint(0, 256, (2, 60))
    targets = torch.full((2, 60, 2, 2, 2), -1)  # (row, position, read, kind, sources)
    targets[0, 40, 0, 0] = torch.tensor([3, 17])
    targets[1, 59, 0, 1, 0] = 44
    targets[1, 30, 1, 0, 0] = 5
    logits, loss, count = lm(x, read_targets=targets)
    assert count.tolist() == [2, 1] and torch.allclose(logits, lm(x))
    # written out: the first block's read at those positions, softmax over its sink slots and visible entries
    with torch.no_grad():
        keys, q = first_read_inputs(lm, x)
        delay = net.delay

        def share(row, pos, entries):
            scaled = q[row, :, pos] * read_gain(pos - delay + 1, True)
            slots = torch.cat([read.sink_keys()[:, None].expand(-1, delay, -1), keys[row]], 1)[:, : pos + 1]
            weights = F.softmax((slots * scaled[:, None]).sum(-1), -1)
            return weights[:, [e + delay for e in entries]].sum(-1).mean()

        jump_want, copy_want = -math.log(share(0, 40, [3, 17])), -math.log(share(1, 59, [44]))
        want = jump_want + copy_want
    # the second block's read (row 1, position 30) adds its own term: check the first block's part alone
    only_first = targets.clone()
    only_first[:, :, 1] = -1
    _, loss_first, count_first = lm(x, read_targets=only_first)
    assert count_first.tolist() == [1, 1]
    assert abs(float(loss_first[0].detach()) - jump_want) < 1e-4  # each kind summed apart
    assert abs(float(loss_first[1].detach()) - copy_want) < 1e-4
    assert abs(float(loss_first.sum().detach()) - want) < 1e-4
    assert float(loss[0].detach()) > float(loss_first[0].detach()) and float(loss[1].detach()) == float(loss_first[1].detach())
    loss.sum().backward()
    assert read.query.weight.grad is not None and read.query.weight.grad.abs().sum() > 0


def test_copy_read_each_head_scores_every_heads_share_at_copies_only():
    """copy_read_each_head: at copy targets the loss is the mean over heads of -log each head's share (not -log of
    their average share); jump targets keep the average. Written out from each head's softmax as above."""
    lm = small_lm(log_length_reads=True, copy_read_each_head=True)
    net = lm.blocks[0].mixer
    read = net.blocks[0].read
    read.log_scale.data.fill_(2.0)
    x = torch.randint(0, 256, (2, 60))
    targets = torch.full((2, 60, 2, 2, 2), -1)
    targets[0, 40, 0, 0] = torch.tensor([3, 17])
    targets[1, 59, 0, 1, 0] = 44
    _, loss, count = lm(x, read_targets=targets)
    assert count.tolist() == [1, 1]
    with torch.no_grad():
        keys, q = first_read_inputs(lm, x)
        delay = net.delay

        def shares(row, pos, entries):  # each head's share on the entries
            scaled = q[row, :, pos] * read_gain(pos - delay + 1, True)
            slots = torch.cat([read.sink_keys()[:, None].expand(-1, delay, -1), keys[row]], 1)[:, : pos + 1]
            weights = F.softmax((slots * scaled[:, None]).sum(-1), -1)
            return weights[:, [e + delay for e in entries]].sum(-1)

        jump, copy = shares(0, 40, [3, 17]), shares(1, 59, [44])
    assert len(copy) > 1 and not torch.allclose(copy, copy.mean().expand_as(copy))  # heads differ: the two rules differ
    assert abs(float(loss[0].detach()) + math.log(jump.mean())) < 1e-4  # jumps: the average share
    assert abs(float(loss[1].detach()) + float(torch.log(copy).mean())) < 1e-4  # copies: each head's
    assert float(loss[1].detach()) > -math.log(copy.mean()) + 1e-6  # (Jensen: stricter than the average's)


def test_read_targets_need_a_mixer_with_reads():
    lm = LM(ModelConfig(mixer=MixerConfig(name="attention", d_model=32, n_heads=2), vocab_size=256, n_layers=1))
    with pytest.raises(HashHopError, match="no memory reads to supervise"):
        lm(torch.zeros(1, 8, dtype=torch.long), read_targets=torch.full((1, 8, 2, 2, 1), -1))


def mixture_run(corpus: str, **changes) -> RunConfig:
    mixer = {"name": "ltm2", "d_model": 32, "n_heads": 2, "window": 32, "conv_kernel": 4, "key_dim": 16, "value_dim": 8}
    data = {
        "name": "reads",
        "task": {"name": "ltm_mixture", "seq_len": 512, "extra": {"corpus": corpus, "mix": {"hashhop": 1.0}}},
        "model": {"mixer": mixer, "n_layers": 1, "vocab_size": 256, "mlp_ratio": 0},
        "steps": 3,
        "batch_size": 2,
        "eval_every": 3,
        "eval_batches": 1,
        "threads": 1,
    }
    return RunConfig.from_dict(data).replace(**changes)


def test_lab_trains_the_read_loss_from_given_weights(tmp_path):
    corpus = tmp_path / "corpus.bin"
    corpus.write_bytes(b"x = 1\n" * 1000)
    first = train_run(mixture_run(str(corpus), name="first"), str(tmp_path), progress=False, log=lambda *_: None)
    assert first["steps"] == 3
    # stage 2 starts from stage 1's weights: a zero-step-like check through the lab's own loader
    second_cfg = mixture_run(str(corpus), name="second", read_loss=0.5, copy_read_loss=0.1, init_from=str(tmp_path / "first"))
    train_run(second_cfg, str(tmp_path), progress=False, log=lambda *_: None)
    record = json.loads((tmp_path / "second" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["train_read_loss"] > 0 and np.isfinite(record["train_read_loss"])
    assert record["train_copy_read_loss"] > 0 and np.isfinite(record["train_copy_read_loss"])
    jumps_only = mixture_run(str(corpus), name="jumps", read_loss=0.5, init_from=str(tmp_path / "first"))
    train_run(jumps_only, str(tmp_path), progress=False, log=lambda *_: None)
    record = json.loads((tmp_path / "jumps" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["train_read_loss"] > 0 and "train_copy_read_loss" not in record
    from hashhop.lab.train import build_model, initial_weights

    model = build_model(second_cfg)
    initial_weights(model, str(tmp_path / "first"))
    from safetensors.torch import load_file

    assert all(torch.equal(v, load_file(str(tmp_path / "first" / "model.safetensors"))[k]) for k, v in model.state_dict().items())
    # a read's query shift starts switched off: weights trained without it load, and compute the same network
    shifted = build_model(second_cfg.replace(**{"model.mixer.query_shift": True}))
    initial_weights(shifted, str(tmp_path / "first"))
    shifts = {k: v for k, v in shifted.state_dict().items() if ".read.shift" in k}
    assert len(shifts) == 3 * len(shifted.blocks[0].mixer.blocks) and all(not v.any() for v in shifts.values())
    x = torch.randint(0, 256, (1, 96))
    assert torch.allclose(shifted.eval()(x), model.eval()(x), atol=1e-5)
    torch.nn.init.ones_(next(iter(p for n, p in shifted.named_parameters() if n.endswith(".read.shift"))))
    assert not torch.allclose(shifted(x), model(x), atol=1e-5)  # the shift is wired in: it changes the output
    from safetensors.torch import save_file

    # so does a read's pointer (its gain and gate zero): with every entry a candidate, the same network
    pointed = build_model(second_cfg.replace(**{"model.mixer.pointer": True}))
    torch.nn.init.ones_(next(iter(p for n, p in pointed.named_parameters() if n.endswith(".read.pointer_gate.weight"))))
    initial_weights(pointed, str(tmp_path / "first"))
    pointer_params = {k: v for k, v in pointed.state_dict().items() if ".read.pointer_" in k}
    assert len(pointer_params) == 3 * len(pointed.blocks[0].mixer.blocks) and all(not v.any() for v in pointer_params.values())
    assert torch.allclose(pointed.eval()(x), model(x), atol=1e-5)
    torch.nn.init.constant_(next(iter(p for n, p in pointed.named_parameters() if n.endswith(".read.pointer_gain"))), 0.5)
    assert not torch.allclose(pointed(x), model(x), atol=1e-5)  # the pointer is wired in
    save_file(shifted.state_dict(), str(tmp_path / "shifted.safetensors"))
    with pytest.raises(HashHopError, match="do not fit this model"):  # only a missing switch is filled in, never an extra one
        initial_weights(build_model(second_cfg), str(tmp_path / "shifted.safetensors"))
    with pytest.raises(HashHopError, match="init_from .*cannot read weights"):
        train_run(mixture_run(str(corpus), name="third", init_from=str(tmp_path / "nowhere.safetensors")), str(tmp_path), progress=False)
    assert not (tmp_path / "third").exists()  # nothing written for a run that cannot start
    bigger = mixture_run(str(corpus), name="fourth", init_from=str(tmp_path / "first")).replace(**{"model.mixer.d_model": 64})
    with pytest.raises(HashHopError, match="do not fit this model") as err:
        train_run(bigger, str(tmp_path), progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(HashHopError, match="gives no read targets"):
        train_run(RunConfig.from_dict({"name": "ar", "task": {"name": "ar", "seq_len": 64}, "read_loss": 0.5, "steps": 1, "batch_size": 2}), str(tmp_path), progress=False)


def test_kinds_weighted_zero_cost_nothing():
    reads = torch.arange(2 * 3 * d.READS * d.KINDS * d.SOURCES).view(2, 3, d.READS, d.KINDS, d.SOURCES)
    wanted, weights = weighted_read_targets(reads, mixture_run("corpus.bin", read_loss=0.3))
    assert weights.tolist() == pytest.approx([0.3, 0.0])
    assert torch.equal(wanted[:, :, :, d.JUMP], reads[:, :, :, d.JUMP]) and (wanted[:, :, :, d.COPY] == -1).all()
    wanted, weights = weighted_read_targets(reads, mixture_run("corpus.bin", copy_read_loss=0.1))
    assert (wanted[:, :, :, d.JUMP] == -1).all() and torch.equal(wanted[:, :, :, d.COPY], reads[:, :, :, d.COPY])


def first_read_inputs(lm: LM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The memory's unit keys (b, heads, t, hk) and the first block's scaled queries (b, heads, t, hk), written out."""
    net = lm.blocks[0].mixer
    h0 = lm.blocks[0].norm1(lm.embed(x))
    states = net.encoder(h0)
    keys, _ = net.write(h0, states)
    h = states + net.blocks[0].local(net.blocks[0].norm_local(states))
    return keys, net.blocks[0].read.queries(net.blocks[0].norm_read(h), net.key)


def written_out_far_loss(lm: LM, x: torch.Tensor, row: int, far: torch.Tensor, pos: int = 40, target: int = 3) -> float:
    """The first block's read loss at ``pos`` of row ``row`` written out: one softmax over the row's visible slots
    (the sink's, then the entries) and the far keys, the query as sharp as over len(far) more entries; -log of the
    heads' mean share on entry ``target``."""
    net = lm.blocks[0].mixer
    read = net.blocks[0].read
    with torch.no_grad():
        keys, q = first_read_inputs(lm, x)
        delay = net.delay
        scaled = q[row, :, pos] * read_gain(pos - delay + 1 + far.shape[1], True)
        slots = torch.cat([read.sink_keys()[:, None].expand(-1, delay, -1), keys[row]], 1)[:, : pos + 1]
        weights = F.softmax(torch.cat([(slots * scaled[:, None]).sum(-1), (far * scaled[:, None]).sum(-1)], 1), -1)
        return -math.log(weights[:, target + delay].mean())


def test_far_keys_join_each_supervised_reads_softmax_sharpened_for_their_count():
    lm = small_lm(log_length_reads=True, read_negatives=50)
    net = lm.blocks[0].mixer
    read = net.blocks[0].read
    read.log_scale.data.fill_(2.0)
    x = torch.randint(0, 256, (1, 60))
    targets = torch.full((1, 60, 2, 2, 2), -1)
    targets[0, 40, 0, 0, 0] = 3
    lm.eval()  # no keys are kept outside training
    _, plain, _ = lm(x, read_targets=targets)
    assert net.far_keys.shape[1] == 0
    far = F.normalize(torch.randn(read.heads, 30, 8), dim=-1)
    net.far_keys = far.clone()
    _, loss, count = lm(x, read_targets=targets)
    assert count.tolist() == [1, 0] and torch.equal(net.far_keys, far)
    want = written_out_far_loss(lm, x, 0, far)  # the row's visible slots and the far keys, gain for 30 more entries
    assert abs(float(loss[0].detach()) - want) < 1e-4 and float(loss[0].detach()) > float(plain[0].detach())


def test_training_keeps_far_keys_from_recall_rows_only_newest_last():
    lm = small_lm(read_negatives=50).train()
    net = lm.blocks[0].mixer
    x = torch.randint(0, 256, (3, 40))
    targets = torch.full((3, 40, 2, 2, 2), -1)
    lm(x, read_targets=targets)  # no recall rows: nothing kept
    assert net.far_keys.shape[1] == 0
    targets[1, 30, 0, 0, 0] = 2
    lm(x, read_targets=targets)
    assert net.far_keys.shape == (2, 20, 8)  # half of the one recall row's 40 positions
    with torch.no_grad():
        h0 = lm.blocks[0].norm1(lm.embed(x))
        keys, _ = net.write(h0, net.encoder(h0))
    row = keys[1]  # (heads, t, hk): every kept key is one of row 1's
    assert all(any(torch.allclose(k, r) for r in row[head]) for head in range(2) for k in net.far_keys[head])
    for _ in range(3):
        lm(x, read_targets=targets)
    assert net.far_keys.shape == (2, 50, 8)  # capped, oldest dropped
    assert "far_keys" not in lm.state_dict()  # training state, never saved with the weights


def test_read_stage_alone_from_shipped_weights(tmp_path, capsys):
    from hashhop.ltm2.config import WEIGHTS
    from hashhop.ltm2.train import main

    corpus = tmp_path / "corpus.bin"
    corpus.write_bytes(b"def f(x):\n    return x + 1\n" * 2000)
    out = tmp_path / "w.safetensors"
    args = ["--init-from", WEIGHTS, "--read-steps", "1", "--read-negatives", "64", "--read-confusers", "0", "--read-top-k", "16", "--pointer", "--pointer-candidates", "3", "--read-soup", "none"]
    args += ["--needle-far-keys", "0.5", "--needle-asked", "16", "--needle-reads", "--needle-hold", "--needle-share", "0.2", "--cot-reads"]
    assert main([*args, "--runs", str(tmp_path / "runs"), "--out", str(out), "--corpus", str(corpus), "--threads", "1", "--no-progress"]) == 0
    from hashhop.ltm2.load import load_ltm2

    trained = load_ltm2(str(out))
    assert trained.blocks[0].mixer.cfg.read_negatives == 64 and trained.blocks[0].mixer.cfg.read_top_k == 16
    assert trained.blocks[0].mixer.cfg.pointer and (tmp_path / "runs" / "ltm2_reads_16384_far64_top16_ptr3_q64_near0.5_qreads_creads_r1jumps_r1copies3_plen_nfar0.5_nq16_nreads_nhold_ns0.2").is_dir()
    assert len(list((tmp_path / "runs").iterdir())) == 1  # --read-soup none: the read stage once
    assert trained.blocks[0].mixer.cfg.pointer_candidates == 3 and trained.blocks[0].mixer.cfg.pointer_length_ref == 16384
    card = (tmp_path / "w.card.md").read_text()
    assert "follow a pointer" in card and "3 candidates" in card
    assert "read-loss stage alone (1 steps" in card and "`ltm2.safetensors`" in card and "64 keys" in card and "16 best entries" in card
    assert "`python -m hashhop.ltm2.train --init-from " in card  # the command that ran, not the default one
    assert "Those weights' own card: steps x rows x bytes" in card  # what the starting weights are, from their card
    assert "a HashHop row asking up to 64 queries" in card  # the read stage's default rows
    assert "In 50% of its HashHop rows" in card and "two read targets of its own" in card  # near misses, question reads
    assert "Beyond 16,384 entries (the stage's rows) a pointer's bonus grows" in card  # the pointer's length gain
    assert "the space after each hash it writes (before the last) is a read target too" in card  # --cot-reads
    from hashhop.ltm2.train import cpu_model

    assert f"CPU cores ({cpu_model()})" in card and cpu_model()  # the CPU model: runs drift across CPU types
    assert "Its needle rows ask up to 16 questions each; in 50% of them put an aside" in card and "a read target (out of its needle); where a question's text" in card and "step along the needle to the value." in card
    assert 'Its mixture: {"code": 0.27, "hashhop": 0.35, "kv": 0.12, "needle": 0.2, "vartrack": 0.06}.' in card
    for bad in (["--read-top-k", "-1"], ["--read-queries", "1"], ["--pointer-candidates", "4"], ["--read-far", "-1"], ["--read-far-span", "0"], ["--read-far", "8", "--read-negatives", "8"], ["--read-negatives", "8"], ["--near-miss", "1.5"], ["--near-miss", "nan"], ["--needle-far-keys", "2"], ["--needle-asked", "1"], ["--needle-share", "0.5"], ["--needle-hold"], ["--needle-hold", "--needle-reads"], ["--conv-kernel", "1"], ["--conv-kernel", "65"], ["--read-query-confusers", "1.5"], ["--read-query-confusers", "0.5", "--read-confusers", "0"], ["--second-read-copies", "-1"], ["--second-read-copies", "3", "--copy-read-loss", "0"], ["--copy-read-loss", "-1"], ["--copy-read-each-head", "--copy-read-loss", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(bad)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and bad[0] in error  # one line naming the option
    capsys.readouterr()
    assert main(["--init-from", "x.safetensors", "--read-steps", "0", "--runs", str(tmp_path / "r2"), "--corpus", str(corpus)]) == 2
    error = capsys.readouterr().err  # no read stage: no default soup to refuse, the --init-from error itself
    assert error.count("\n") == 1 and "--init-from starts the second stage" in error
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    for source in (str(junk), str(tmp_path / "missing.safetensors"), str(tmp_path)):  # a folder without model.safetensors
        fresh = tmp_path / "r3"
        assert main(["--init-from", source, "--read-steps", "1", "--runs", str(fresh)]) == 2
        error = capsys.readouterr().err  # before the corpus is built (minutes): one line, nothing written
        assert error.count("\n") == 1 and "cannot read weights" in error and not fresh.exists()


def test_read_soup_ships_the_mean_of_the_read_stages_of_each_seed(tmp_path, capsys):
    """The read stage's default soup (READ_SOUP runs, seeds --seed, --seed + 1, --seed + 2) and --read-soup SEEDS: the read stage
    once more per extra seed from the same start (its own folder, its own seed as --seed would give it), the weights
    written the mean of every run's; the card and metadata say which seeds; bad seeds are one-line errors before
    anything trains."""
    from safetensors import safe_open

    from hashhop.ltm2.config import WEIGHTS
    from hashhop.ltm2.load import load_ltm2
    from hashhop.ltm2.train import main

    corpus = tmp_path / "corpus.bin"
    corpus.write_bytes(b"def f(x):\n    return x + 1\n" * 2000)
    out, runs = tmp_path / "soup.safetensors", tmp_path / "runs"
    common = ["--init-from", WEIGHTS, "--read-steps", "1", "--read-seq-len", "2048", "--corpus", str(corpus), "--threads", "1", "--no-progress"]
    from hashhop.ltm2.config import READ_SOUP

    assert READ_SOUP == 3  # the shipped weights' recipe: three read stages averaged
    default_out = tmp_path / "default.safetensors"
    assert main([*common, "--seed", "2", "--runs", str(tmp_path / "default"), "--out", str(default_out)]) == 0
    assert sorted(p.name for p in (tmp_path / "default").iterdir())[1].endswith("_seed3")  # the default: --seed 2, then 3 and 4
    with safe_open(str(default_out), "pt") as handle:
        assert json.loads(handle.metadata()["meta"])["read_soup_seeds"] == [3, 4, 5]  # as --seed 2 / 3 / 4 train them
    assert main([*common, "--seed", "2", "--read-soup", "0", "--runs", str(runs), "--out", str(out)]) == 0
    folders = sorted(p.name for p in runs.iterdir())
    assert len(folders) == 2 and folders[1] == folders[0] + "_seed0"
    members = [load_ltm2(str(runs / name)) for name in folders]
    assert [json.loads((runs / name / "config.json").read_text())["seed"] for name in folders] == [3, 1]  # as --seed 2 / 0 train them
    soup = load_ltm2(str(out)).state_dict()
    states = [m.state_dict() for m in members]
    moved = 0
    for key, tensor in soup.items():
        assert torch.allclose(tensor, (states[0][key] + states[1][key]) / 2, atol=1e-6), key
        moved += not torch.equal(states[0][key], states[1][key])
    assert moved  # the two seeds trained different weights: the mean is neither
    with safe_open(str(out), "pt") as handle:
        assert json.loads(handle.metadata()["meta"])["read_soup_seeds"] == [3, 1]
    card = (tmp_path / "soup.card.md").read_text()
    assert "uniform model soup" in card and "seeds 3, 1" in card and "| seed | 3, 1 (the read stages averaged) |" in card
    assert "`python -m hashhop.ltm2.train --init-from" in card and "--read-soup 0" in card
    capsys.readouterr()
    for bad in (["--seed", "2", "--read-soup", "2"], ["--read-soup", "1,1"], ["--read-soup", "a"], ["--read-soup", "none,1"], ["--read-soup", "1", "--read-steps", "0"]):
        try:
            code = main([*common, *bad, "--runs", str(tmp_path / "bad"), "--out", str(tmp_path / "bad.safetensors")])
        except SystemExit as exit_info:  # the parser's own errors
            code = exit_info.code
        error = capsys.readouterr().err
        assert code == 2 and error.count("\n") == 1 and "--read-soup" in error, (bad, error)
        assert not (tmp_path / "bad.safetensors").exists() and not (tmp_path / "bad").exists()


def test_encoder_width_trains_both_stages_and_a_second_stage_keeps_it(tmp_path, capsys):
    """--conv-kernel: stage 1 and stage 2 at that width (folders and card say so); a later read stage from those
    weights takes their width; a width that does not fit the weights is a one-line error."""
    from hashhop.ltm2.load import load_ltm2
    from hashhop.ltm2.train import main

    corpus = tmp_path / "corpus.bin"
    corpus.write_bytes(b"def f(x):\n    return x + 1\n" * 2000)
    common = ["--corpus", str(corpus), "--threads", "1", "--no-progress", "--read-seq-len", "2048"]
    out = tmp_path / "k12.safetensors"
    assert main(["--steps", "1", "--read-steps", "1", "--conv-kernel", "12", "--runs", str(tmp_path / "r1"), "--out", str(out), *common]) == 0
    assert (tmp_path / "r1" / "ltm2_k12").is_dir() and any(p.name.startswith("ltm2_reads_k12_") for p in (tmp_path / "r1").iterdir())
    assert load_ltm2(str(out)).blocks[0].mixer.encoder.reach == 23
    assert "encoder (width 12, 2 layers: each key sees the last\n23 bytes)" in (tmp_path / "k12.card.md").read_text()
    assert "uniform model soup" in (tmp_path / "k12.card.md").read_text()  # stage 1, then the default soup of read stages
    again = tmp_path / "again.safetensors"
    assert main(["--init-from", str(out), "--read-steps", "1", "--runs", str(tmp_path / "r2"), "--out", str(again), *common]) == 0
    assert load_ltm2(str(again)).blocks[0].mixer.cfg.conv_kernel == 12
    capsys.readouterr()
    assert main(["--init-from", str(out), "--conv-kernel", "8", "--read-steps", "1", "--runs", str(tmp_path / "r3"), "--out", str(tmp_path / "x.safetensors"), *common]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "do not fit this model" in error and not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("chunk", [7, 1024])
def test_top_k_read_is_the_read_over_each_querys_best_entries_values_and_gradients(chunk):
    """MemoryRead.top_k_read against the read written out: every visible entry's logit, all but the query's k best
    set to -inf, the `delay` sink slots, a softmax, the values. Outputs and gradients (queries, keys, values, the sink's
    key) agree; chunks of 7 queries split the backward pass's gathers and scatters too."""
    from hashhop.ltm2.model import MemoryRead

    torch.manual_seed(3)
    read = MemoryRead(d_model=16, key_dim=16, value_dim=8, heads=2)
    b, heads, t, hk, vh, delay, k = 2, 2, 60, 8, 4, 5, 6
    leaves = [torch.randn(b, heads, t, hk) * 3, F.normalize(torch.randn(b, heads, t, hk), dim=-1), torch.randn(b, heads, t, vh)]
    q, keys, v = (x.clone().requires_grad_() for x in leaves)
    got = read.top_k_read(q, keys, v, delay, k, chunk=chunk)

    q2, keys2, v2 = (x.clone().requires_grad_() for x in leaves)
    pos = torch.arange(t)
    logits = (q2 @ keys2.transpose(-1, -2)).masked_fill(pos[None, :] > pos[:, None] - delay, float("-inf"))
    kth = logits.detach().topk(k, dim=-1).values[..., -1:]  # the k-th best visible logit (-inf where fewer are visible)
    logits = logits.masked_fill(logits.detach() < kth, float("-inf"))
    sink = (q2 * read.sink_keys()[None, :, None, :]).sum(-1, keepdim=True) + torch.log(torch.clamp(pos + 1, max=delay).float())[:, None]
    weights = torch.softmax(torch.cat([logits, sink], dim=-1), dim=-1)[..., :t]
    want = weights @ v2
    assert (pos - delay + 1 > k).any() and (got - want).abs().max() < 1e-5
    assert got[:, :, :delay].abs().max() == 0  # before any entry is visible: the sink, whose value is zero
    probe = torch.randn_like(want)
    (got * probe).sum().backward()
    mine_sink = read.sink_key.grad.clone()
    read.sink_key.grad = None
    (want * probe).sum().backward()
    for mine, theirs in ((q, q2), (keys, keys2), (v, v2)):
        assert (mine.grad - theirs.grad).abs().max() < 1e-4
    assert mine_sink.abs().max() > 0 and (mine_sink - read.sink_key.grad).abs().max() < 1e-4
    assert (v.grad.abs().sum(-1) > 0).float().mean() < 1.0  # entries no query kept get no gradient


def test_top_k_training_read_changes_long_rows_only():
    """read_top_k in the model: rows where no query sees more than k entries read exactly as the dense model; longer
    ones differ (the engine's read: tests/ltm2/test_engine.py), and the loss trains through it."""
    dense, top = small_lm(seed=5), small_lm(seed=5, read_top_k=24)
    for lm in (dense, top):  # strong reads (as trained ones are), so that reading other entries would show
        torch.manual_seed(6)
        for block in lm.blocks[0].mixer.blocks:
            block.read.out.weight.data.normal_(0, 0.5)
            block.read.value.weight.data.normal_(0, 0.5)
        lm.blocks[0].mixer.value.weight.data.normal_(0, 0.5)
    short, long = torch.randint(0, 256, (2, 24 + 6)), torch.randint(0, 256, (2, 120))
    assert torch.allclose(dense(short), top(short), atol=1e-6)
    assert (dense(long) - top(long)).abs().max() > 1e-3
    loss = F.cross_entropy(top(long)[:, :-1].reshape(-1, 256), long[:, 1:].reshape(-1))
    loss.backward()
    assert all(p.grad is not None for p in top.blocks[0].mixer.key.parameters())


def reference_pointer_read(q, keys, v, sink, delay, k, gated, per_confidence, far=None):
    """The pointer read written out, one query at a time: each query's k best visible entries; the entry after (and with
    more candidates, the entries POINTER_OFFSETS from) the one the previous query gave most weight (if not the sink, and visible; no pointer where ``gated`` is None) joins them with its logit plus the bonus
    gated + per_confidence x that weight (taken as a constant); a softmax with the sink; the values. ``far`` (keys
    (heads, n, hk), values (heads, n, vh), at (b, t), offset (b,)): where ``at``, the k best are taken among the visible
    entries and these (entry t + j, logit q . key + offset); a far entry is never followed."""
    b, heads, t, _ = q.shape
    if gated is not None:  # (b, heads, t[, m]) and (heads or b, heads, t[, m]) -> (b, heads, t, m)
        gated = gated if gated.dim() == 4 else gated[..., None]
        per_confidence = (per_confidence if per_confidence.dim() == gated.dim() else per_confidence[..., None]).expand_as(gated)
    offsets = POINTER_OFFSETS[: 1 if gated is None else gated.shape[-1]]
    rows = []
    for r in range(b):
        for h in range(heads):
            pointer, confidence = -1, 0.0
            outs = []
            for p in range(t):
                visible = p - delay + 1
                if visible <= 0:
                    outs.append(v.new_zeros(v.shape[-1]))
                    continue
                logits = q[r, h, p] @ keys[r, h, :visible].T
                values, count = v[r, h, :visible], visible
                if far is not None and far[2][r, p]:
                    logits = torch.cat([logits, torch.full((t - visible,), float("-inf")), q[r, h, p] @ far[0][h].T + far[3][r]])
                    values, count = torch.cat([v[r, h], far[1][h]]), visible + far[0].shape[1]
                best = logits.detach().topk(min(k, count)).indices.tolist()
                candidates = {j: logits[j] for j in best}
                for j, offset in enumerate(offsets):
                    nxt = pointer + offset
                    if gated is not None and pointer >= 0 and nxt < visible:
                        candidates[nxt] = logits[nxt] + gated[r, h, p, j] + per_confidence[r, h, p, j] * confidence
                ids = list(candidates)
                weights = torch.softmax(torch.stack([*candidates.values(), sink[r, h, p]]), 0)
                outs.append((weights[:-1, None] * values[ids]).sum(0))
                winner = max(ids, key=lambda j: candidates[j].item())
                if candidates[winner].item() > sink[r, h, p].item():
                    pointer, confidence = winner, weights[ids.index(winner)].item()
                else:
                    pointer, confidence = -1, 0.0
            rows.append(torch.stack(outs))
    return torch.stack(rows).view(b, heads, t, -1)


def pointer_leaves(b: int, heads: int, t: int, hk: int, vh: int, candidates: int = 0) -> list[torch.Tensor]:
    """Random inputs of a pointer read: scaled queries, unit keys, values, the bonus's gated part and its part per unit
    of confidence ((b, heads, t) and (heads, t); with ``candidates``, (b, heads, t, m) and (1, heads, t, m))."""
    extra = (candidates,) if candidates else ()
    return [
        torch.randn(b, heads, t, hk) * 3,
        F.normalize(torch.randn(b, heads, t, hk), dim=-1),
        torch.randn(b, heads, t, vh),
        torch.randn(b, heads, t, *extra) * (2 if candidates else 1),
        torch.rand(*((1,) if candidates else ()), heads, t, *extra) * 4,
    ]


@pytest.mark.parametrize("k", [4, 1000])
def test_pointer_read_follows_the_entry_after_the_last_read(k):
    """MemoryRead.top_k_read with a pointer against the read written out (reference_pointer_read): outputs, and
    gradients to the queries, keys, values and both parts of the bonus."""
    from hashhop.ltm2.model import MemoryRead

    torch.manual_seed(4)
    read = MemoryRead(d_model=16, key_dim=16, value_dim=8, heads=2, pointer=True)
    b, heads, t, hk, vh, delay = 2, 2, 40, 8, 4, 5
    k = min(k, t - delay)
    leaves = pointer_leaves(b, heads, t, hk, vh)
    q, keys, v, gated, per_confidence = (x.clone().requires_grad_() for x in leaves)
    got = read.top_k_read(q, keys, v, delay, k, pointer=(gated, per_confidence))
    q2, keys2, v2, gated2, per_confidence2 = (x.clone().requires_grad_() for x in leaves)
    pos = torch.arange(t)
    sink = (q2 * read.sink_keys()[None, :, None, :]).sum(-1) + torch.log(torch.clamp(pos + 1, max=delay).float())
    want = reference_pointer_read(q2, keys2, v2, sink, delay, k, gated2, per_confidence2)
    assert (got - want).abs().max() < 1e-5
    probe = torch.randn_like(want)
    (got * probe).sum().backward()
    (want * probe).sum().backward()
    for mine, theirs in ((q, q2), (keys, keys2), (v, v2), (gated, gated2), (per_confidence, per_confidence2)):
        assert theirs.grad.abs().max() > 0 and (mine.grad - theirs.grad).abs().max() < 1e-4
    without = read.top_k_read(*(x.detach() for x in leaves[:3]), delay, k)
    assert (got - without).abs().max() > 1e-2  # the pointer changes the read


@pytest.mark.parametrize("pointer", [True, False])
def test_far_entries_join_the_reads_at_answer_positions(pointer):
    """read_far's forward read (MemoryRead.top_k_read with ``far``) against the read written out: where ``at``, each
    query's k best come from its visible entries and the far ones (their logits + the row's offset), with or without a
    pointer (never following a far entry); elsewhere the row alone. Outputs and gradients, far values included."""
    from hashhop.ltm2.model import MemoryRead

    torch.manual_seed(7)
    read = MemoryRead(d_model=16, key_dim=16, value_dim=8, heads=2, pointer=pointer)
    b, heads, t, hk, vh, delay, n, k = 2, 2, 40, 8, 4, 5, 9, 6
    leaves = [
        torch.randn(b, heads, t, hk) * 3,
        F.normalize(torch.randn(b, heads, t, hk), dim=-1),
        torch.randn(b, heads, t, vh),
        torch.randn(b, heads, t),
        torch.rand(b, heads, t) * 4,
        F.normalize(torch.randn(heads, n, hk), dim=-1),
        torch.randn(heads, n, vh),
    ]
    at, offset = torch.rand(b, t) < 0.5, torch.tensor([0.5, 2.0])
    at[:, : delay + 3] = False
    mine, theirs = [x.clone().requires_grad_() for x in leaves], [x.clone().requires_grad_() for x in leaves]
    q, keys, v, gated, per_confidence, far_keys, far_values = mine
    got = read.top_k_read(q, keys, v, delay, k, pointer=(gated, per_confidence) if pointer else None, far=(far_keys, far_values, at, offset))
    q2, keys2, v2, gated2, per_confidence2, far_keys2, far_values2 = theirs
    pos = torch.arange(t)
    sink = (q2 * read.sink_keys()[None, :, None, :]).sum(-1) + torch.log(torch.clamp(pos + 1, max=delay).float())
    if not pointer:
        gated2 = per_confidence2 = None
    want = reference_pointer_read(q2, keys2, v2, sink, delay, k, gated2, per_confidence2, far=(far_keys2, far_values2, at, offset))
    assert (got - want).abs().max() < 1e-5
    probe = torch.randn_like(want)
    (got * probe).sum().backward()
    (want * probe).sum().backward()
    for a, z in zip(mine, theirs):
        if z.grad is not None:
            assert (a.grad - z.grad).abs().max() < 1e-4
    assert far_values.grad.abs().max() > 0  # some far entry was read
    without = read.top_k_read(*(x.detach() for x in leaves[:3]), delay, k, pointer=(leaves[3], leaves[4]) if pointer else None)
    first = int(at.any(0).nonzero()[0])  # before any `at` position: the row alone (after it a pointer may carry on)
    assert first > delay and (got - without)[:, :, :first].abs().max() < 1e-6
    if not pointer:  # without one, every position outside `at` reads the row alone
        assert (got - without)[:, :, ~at.any(0)].abs().max() < 1e-6
    assert (got - without).abs().max() > 1e-2


def test_training_reads_far_entries_at_answer_positions_only():
    """read_far in the model: training keeps recall rows' keys and values; the next batch's reads at positions with
    read targets also see them (as sharp as over the longer memory), so outputs before the first such position equal
    the plain read's; the supervised share is then over the row and the far keys, written out here."""
    lm = small_lm(log_length_reads=True, read_far=50, read_far_span=1, read_top_k=8, pointer=True).train()
    net = lm.blocks[0].mixer
    for block in net.blocks:  # strong reads (as trained ones are), so that what they read shows
        block.read.out.weight.data.normal_(0, 0.5)
        block.read.value.weight.data.normal_(0, 0.5)
    x = torch.randint(0, 256, (2, 60))
    targets = torch.full((2, 60, 2, 2, 2), -1)
    targets[1, 40, 0, 0, 0] = 3
    targets[1, 45, 0, 1, 0] = 4
    plain, _, _ = lm(x, read_targets=targets)  # the pool was empty: nothing far yet; now it holds row 1's
    assert net.far_keys.shape == (2, 30, 8) and net.far_values.shape == (30, 8)
    with torch.no_grad():
        h0 = lm.blocks[0].norm1(lm.embed(x))
        keys, values = net.write(h0, net.encoder(h0))
    assert all(any(torch.allclose(v, r) for r in values[1]) for v in net.far_values)
    pool = net.far_keys.clone()
    # the span (1) is below the pool's 30 entries: they stand for themselves (offset 0, sharpness for 30 more entries)
    out, loss, count = lm(x, read_targets=targets)
    assert count.tolist() == [1, 1] and net.far_keys.shape == (2, 50, 8)
    assert torch.allclose(out[0], plain[0], atol=1e-6) and torch.allclose(out[1, :40], plain[1, :40], atol=1e-6)
    assert (out[1, 40:] - plain[1, 40:]).abs().max() > 1e-4
    assert abs(float(loss[0].detach()) - written_out_far_loss(lm, x, 1, pool)) < 1e-4
    lm.eval()  # outside training nothing far is read
    assert torch.allclose(lm(x)[1], plain[1], atol=1e-6)


def test_far_entries_stand_for_a_memory_drawn_up_to_the_span():
    lm = small_lm(read_far=50, read_far_span=10**8)
    net = lm.blocks[0].mixer
    net.far_keys, net.far_values = torch.zeros(2, 40, 8), torch.zeros(40, 8)
    targets = torch.full((64, 10, 2, 2, 2), -1)
    targets[:, 3, 0, 0, 0] = 1
    _, _, at, stands_for = net.far_entries(targets)
    assert at.sum() == 64 and at[:, 3].all()
    assert stands_for.min() >= 40 and stands_for.max() <= 10**8 and stands_for.max() > 10**6 and stands_for.min() < 10**3
    with pytest.raises(HashHopError, match="pick one"):
        MixerConfig(name="ltm2", read_far=10, read_negatives=10)


@pytest.mark.parametrize("k", [4, 1000])
def test_pointer_read_with_three_candidates(k):
    """pointer_candidates 3: the entries 1, 0 and 2 after the one the previous query read most are candidates, each with
    its own bonus; against the read written out, outputs and gradients to both bonus parts of each."""
    from hashhop.ltm2.model import MemoryRead

    torch.manual_seed(8)
    read = MemoryRead(d_model=16, key_dim=16, value_dim=8, heads=2, pointer=True, pointer_candidates=3)
    b, heads, t, hk, vh, delay = 2, 2, 40, 8, 4, 5
    k = min(k, t - delay)
    leaves = pointer_leaves(b, heads, t, hk, vh, candidates=3)
    mine, theirs = [x.clone().requires_grad_() for x in leaves], [x.clone().requires_grad_() for x in leaves]
    got = read.top_k_read(*mine[:3], delay, k, pointer=(mine[3], mine[4]))
    pos = torch.arange(t)
    sink = (theirs[0] * read.sink_keys()[None, :, None, :]).sum(-1) + torch.log(torch.clamp(pos + 1, max=delay).float())
    want = reference_pointer_read(*theirs[:3], sink, delay, k, theirs[3], theirs[4])
    assert (got - want).abs().max() < 1e-5
    probe = torch.randn_like(want)
    (got * probe).sum().backward()
    (want * probe).sum().backward()
    for a, z in zip(mine, theirs):
        assert z.grad.abs().max() > 0 and (a.grad - z.grad).abs().max() < 1e-4
    for j in range(3):  # each candidate's bonus is used
        assert mine[3].grad[..., j].abs().max() > 0
    one = read.top_k_read(*(x.detach() for x in leaves[:3]), delay, k, pointer=(leaves[3][..., :1], leaves[4][..., :1]))
    assert (got - one).abs().max() > 1e-2  # the other candidates change the read


def test_pointer_candidates_parameters_start_at_zero_and_load_one_candidate_weights():
    """pointer_candidates 3 adds its own bonus parameters (optional at init: zero where the weights a stage starts from
    lack them), so weights trained with one candidate load unchanged; the bonus parts come out per candidate."""
    one, three = small_lm(pointer=True), small_lm(pointer=True, pointer_candidates=3)
    read = three.blocks[0].mixer.blocks[0].read
    assert read.pointer_gain_more.abs().max() == 0 and read.pointer_gain_more.shape == (4,)
    assert set(read.optional_at_init) >= {"pointer_gain_more", "pointer_more.weight", "pointer_more.bias"}
    missing = three.load_state_dict(one.state_dict(), strict=False).missing_keys
    assert missing and all("pointer_more" in m or "pointer_gain_more" in m for m in missing)
    read.pointer_gain_more.data = torch.tensor([1.0, 2.0, 3.0, 4.0])  # (candidate 2: heads 0, 1; candidate 3: heads 0, 1)
    gated, gains = read.pointer_bonus_parts(torch.zeros(5, 32))
    assert gated.shape == (5, 2, 3) and gains.tolist() == [[0.0, 1.0, 3.0], [0.0, 2.0, 4.0]]
    with pytest.raises(HashHopError, match="pointer_candidates"):
        MixerConfig(name="ltm2", pointer_candidates=4)


def test_pointer_length_gain_reference_is_the_stage_rows():
    """--pointer-length-gain (the default) sets the pointer's reference to the read stage's row length; off, or without
    a pointer, there is none (the rule then never acts)."""
    from hashhop.ltm2.config import ltm2_config

    def mixer(**options):
        return ltm2_config("c.bin", stage=2, init_from="w", **options).model.mixer

    assert mixer().pointer_length_ref == 16384 and mixer(seq_len=4096).pointer_length_ref == 4096
    assert mixer(pointer_length_gain=False).pointer_length_ref == 0 and mixer(pointer=False).pointer_length_ref == 0
    assert ltm2_config("c.bin").model.mixer.pointer_length_ref == 0  # stage 1: no pointer
    assert mixer().pointer_jitter == 1.0 and mixer(pointer_jitter=2.0).pointer_jitter == 2.0  # (--pointer-jitter)
    assert mixer(pointer=False, pointer_jitter=2.0).pointer_jitter == 1.0


def test_needle_options_are_stage_two_task_extras():
    """The read stage's needle options reach its task (the defaults add nothing: the shipped recipe's rows); the first
    stage never has them."""
    from hashhop.ltm2.config import ltm2_config

    def extra(stage=2, **options):
        return ltm2_config("c.bin", stage=stage, init_from="w", **options).task.extra

    from hashhop.ltm2.data import DEFAULT_MIX

    names = {"needle_far_keys", "needle_max_asked", "needle_reads", "needle_hold", "mix"}
    assert not names & set(extra())
    chosen = extra(needle_far_keys=0.5, needle_asked=16, needle_reads=True, needle_share=0.2, needle_hold=True)
    assert (chosen["needle_far_keys"], chosen["needle_max_asked"], chosen["needle_reads"], chosen["needle_hold"]) == (0.5, 16, True, True)
    assert chosen["mix"] == {**DEFAULT_MIX, "needle": 0.2, "code": 0.27} and abs(sum(chosen["mix"].values()) - 1) < 1e-9
    assert not names & set(extra(stage=1, needle_far_keys=0.5, needle_reads=True, needle_share=0.2, needle_hold=True))
    assert "hashhop_cot_reads" not in extra() and extra(cot_reads=True)["hashhop_cot_reads"] is True
    assert "hashhop_cot_reads" not in extra(stage=1, cot_reads=True)
    assert extra()["hashhop_second_read_jumps"] is True and "hashhop_second_read_jumps" not in extra(second_read_jumps=False)  # the default
    assert "hashhop_second_read_jumps" not in extra(stage=1, second_read_jumps=True)
    # the shipped recipe (thirtieth session): copies weighted 0.1, bytes 1-3 second-read targets too
    assert extra()["hashhop_second_read_copies"] == 3 and extra(second_read_copies=5)["hashhop_second_read_copies"] == 5
    assert "hashhop_second_read_copies" not in extra(second_read_copies=0)
    assert "hashhop_second_read_copies" not in extra(copy_read_loss=0)  # copies unsupervised: their default follows
    assert "hashhop_second_read_copies" not in extra(stage=1, second_read_copies=3)
    assert ltm2_config("c.bin", stage=2, init_from="w").copy_read_loss == 0.1 and ltm2_config("c.bin", stage=2, init_from="w", copy_read_loss=0).copy_read_loss == 0
    assert ltm2_config("c.bin", stage=1).copy_read_loss == 0  # stage 1 has no read loss
    with pytest.raises(HashHopError, match="copy_read_loss"):  # copies weighted 0: the option would do nothing
        extra(second_read_copies=3, copy_read_loss=0)
    mixer = ltm2_config("c.bin", stage=2, init_from="w", copy_read_each_head=True).model.mixer
    assert mixer.copy_read_each_head is True and ltm2_config("c.bin", stage=2, init_from="w").model.mixer.copy_read_each_head is False
    with pytest.raises(HashHopError, match="copy_read_loss"):  # copies weighted 0: nothing for it to score
        extra(copy_read_each_head=True, copy_read_loss=0)


def test_shipped_stage_one_is_the_recipe_stage_one_and_carries_its_card():
    """The stage-1 file next to the shipped weights (what the read stage starts from) is the recipe's first stage:
    the config's network, steps and seed; it loads, and its card says how it was written."""
    import json
    import os

    from safetensors import safe_open

    from hashhop.lab.mixers import MixerConfig
    from hashhop.ltm2.config import MIXER, STEPS, WEIGHTS
    from hashhop.ltm2.load import load_ltm2
    from hashhop.ltm2.train import card_path

    stage1 = os.path.join(os.path.dirname(WEIGHTS), "ltm2_stage1.safetensors")
    with safe_open(stage1, "pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
    stored = MixerConfig(**meta["config"]["model"]["mixer"])  # (options added since take their defaults)
    assert {k: getattr(stored, k) for k in MIXER} == MIXER
    assert (meta["config"]["steps"], meta["config"]["seed"], meta["config"].get("read_loss", 0.0)) == (STEPS, 0, 0.0)
    assert sum(p.numel() for p in load_ltm2(stage1).parameters()) == meta["params"]
    card = open(card_path(stage1)).read()
    assert "stage 1 of the shipped weights" in card and "`hashhop train --model ltm2`" in card and "| seed | 0 |" in card


@pytest.mark.parametrize("candidates", [1, 3])
def test_pointer_read_loss_is_minus_log_of_the_reads_own_share(candidates):
    """MixerConfig.pointer_read_loss: with the candidates top_k_read followed (``keep_pointer``), target_loss scores
    the read as it was computed, bonuses included. Values one-hot per entry make the read's output its weights, so
    the loss must be -log of the (head-averaged) weight the read put on each target; without the candidates it is
    not (the bonuses matter), and only with them do the bonuses get gradients."""
    from hashhop.ltm2.model import MemoryRead

    torch.manual_seed(7)
    read = MemoryRead(d_model=16, key_dim=16, value_dim=8, heads=2, pointer=True, pointer_candidates=candidates)
    b, heads, t, hk, delay = 2, 2, 36, 8, 4
    q, keys, _, gated, per_confidence = pointer_leaves(b, heads, t, hk, 1, candidates if candidates > 1 else 0)
    gated = (gated + 3).requires_grad_()  # strong bonuses: the pointer's candidates carry much of each read
    v = torch.eye(t).expand(b, heads, t, t)  # entry j's value is e_j: the read's output is its weight per entry
    y, (ids, gated_part, confidence_part) = read.top_k_read(q, keys, v, delay, t - delay, pointer=(gated, per_confidence), keep_pointer=True)
    assert ids.shape == gated_part.shape == confidence_part.shape == (b, heads, t, candidates)
    followed = (ids, gated_part + confidence_part)
    targets = torch.full((b, t, 1, 2), -1, dtype=torch.long)
    asked = [(0, 12, (3,)), (0, 20, (5, 9)), (1, 30, (25,)), (1, 35, (0, 31))]
    for row, pos, entries in asked:
        targets[row, pos, 0, : len(entries)] = torch.tensor(entries)
    k = torch.cat([read.sink_keys()[None, :, None, :].expand(b, -1, delay, -1), keys], dim=2)[:, :, :t]
    loss, count = read.target_loss(q, k, targets, delay, followed=followed)
    want = -sum(torch.log(y[row, :, pos][:, list(entries)].sum(-1).mean()) for row, pos, entries in asked)
    assert count.tolist() == [len(asked)] and abs(loss.item() - want.item()) < 1e-4
    content_only, _ = read.target_loss(q, k, targets, delay)
    assert abs(content_only.item() - want.item()) > 1e-2  # without the bonuses it scores another read
    loss.sum().backward()
    assert gated.grad.abs().max() > 0  # the read loss now reaches the bonuses
    assert read.top_k_read(q, keys, v, delay, t - delay, pointer=(gated, per_confidence)).shape == y.shape  # (one tensor without keep_pointer)


@pytest.mark.parametrize("mode", ["off", "bonus", "gated"])
def test_pointer_read_loss_modes_reach_the_bonus_parts_they_name(mode):
    """Through the whole network: the read loss alone gives the last read's pointer gradients in its hidden-state part (its gate)
    with "bonus" and "gated", to its part per unit of confidence (pointer_gain) with "bonus" only, and to neither
    with "off"; the loss itself is the same with "bonus" and "gated" and differs from "off"."""
    def loss_of(mode: str):
        lm = small_lm(pointer=True, pointer_candidates=3, pointer_read_loss=mode)
        for block in lm.blocks[0].mixer.blocks:
            block.read.pointer_gain.data.fill_(0.2)
            block.read.pointer_gate.bias.data.fill_(1.0)
        x = torch.tensor(list(b"k1 = v1\nab = cd\nk1 = v1\nab = cd\nk1 = v1\nab = cd\nk1 = v"))[None]
        targets = torch.full((1, x.shape[1], 2, 1, 1), -1)
        for pos in range(40, x.shape[1]):
            targets[0, pos, :, 0, 0] = pos - 16  # the same byte one repeat earlier
        _, loss, _ = lm(x, read_targets=targets)
        loss.sum().backward()
        read = lm.blocks[0].mixer.blocks[-1].read  # the last read: its bonuses reach no later read's loss
        grads = [0.0 if p.grad is None else p.grad.abs().sum().item() for p in (read.pointer_gate.weight, read.pointer_gain)]
        return loss.sum().item(), *grads

    loss, gate_grad, gain_grad = loss_of(mode)
    assert (gate_grad > 0) == (mode != "off") and (gain_grad > 0) == (mode == "bonus")
    if mode != "off":
        assert abs(loss - loss_of("off")[0]) > 1e-3 and abs(loss - loss_of("bonus" if mode == "gated" else "gated")[0]) < 1e-5


def test_pointer_read_loss_is_a_stage_two_pointer_option():
    from hashhop.ltm2.config import ltm2_config

    def mixer(**options) -> dict:
        return ltm2_config("corpus.bin", steps=1, stage=2, init_from="w", **options).model.mixer

    assert mixer().pointer_read_loss == "off" and mixer(pointer_read_loss="gated").pointer_read_loss == "gated"
    assert mixer(pointer=False, pointer_read_loss="bonus").pointer_read_loss == "off"
    with pytest.raises(HashHopError, match="pointer_read_loss"):
        MixerConfig(name="ltm2", pointer_read_loss=True)


def test_confusers_are_target_windows_with_fresh_letters_and_digits():
    """read_confusers: windows copied from the target entries' (the reach bytes ending at each), letters and digits
    replaced by random ones of the same kind, the rest kept; their keys join every supervised read's softmax (the
    loss's), with gradients, in training only."""
    lm = small_lm(log_length_reads=True, read_confusers=300).train()
    net = lm.blocks[0].mixer
    reach = net.encoder.reach
    row = b"xx\nQwerTy19 = 'ab7Z'\nKLm3 = nOp9\n" * 3
    ids = torch.tensor([list(row)])
    targets = torch.full((1, len(row), 2, 2, 2), -1)
    targets[0, 60, 0, 0, 0] = 14  # entry 14: its window is the bytes reach - 1 before it up to it
    windows = net.confuser_windows(ids, targets)
    source = ids[0, 14 - reach + 1 : 15]
    assert windows.shape == (300, reach)
    for src, column in zip(source.tolist(), windows.T):
        kind = next((k for k in ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789") if chr(src) in k), None)
        if kind is None:
            assert (column == src).all()  # separators, quotes and newlines kept
        else:
            assert all(chr(c) in kind for c in column.tolist()) and len(set(column.tolist())) > len(kind) // 2  # fresh, same kind
    targets[0, 60, 0, 0, 0] = 1  # an entry whose window starts before the row: padding kept there
    assert (net.confuser_windows(ids, targets)[:, : reach - 2] == 256).all()
    targets[0, 60, 0, 0, 0] = 14
    inputs_of = lambda tokens: lm.blocks[0].norm1(lm.embed(tokens))  # noqa: E731
    torch.manual_seed(3)
    keys = net.confuser_keys(ids, targets, inputs_of)
    assert keys.shape == (net.cfg.memory_heads, 300, net.cfg.key_dim // net.cfg.memory_heads) and keys.requires_grad
    torch.manual_seed(3)
    _, loss, count = lm(ids, read_targets=targets)  # the lab's LM passes the ids and input map through
    want = written_out_far_loss(lm, ids, 0, keys.detach(), pos=60, target=14)
    assert count.tolist() == [1, 0] and abs(float(loss[0].detach()) - want) < 1e-4
    lm.eval()
    _, plain, _ = lm(ids, read_targets=targets)  # outside training: no confusers
    assert float(loss[0].detach()) > float(plain[0].detach()) + 1e-3
    lm.train()
    torch.manual_seed(3)
    _, loss, _ = lm(ids, read_targets=targets)
    loss[0].backward()
    assert lm.blocks[0].mixer.encoder.convs[0].weight.grad.abs().sum() > 0
    with pytest.raises(HashHopError, match="read_confusers builds windows"):
        net(lm.blocks[0].norm1(lm.embed(ids)), read_targets=targets)
    with pytest.raises(HashHopError, match="pick one"):
        MixerConfig(name="ltm2", read_confusers=10, read_negatives=10)


def test_query_confusers_are_the_reading_positions_windows_with_the_written_run_kept():
    """read_query_confusers: that share of the confusers comes from the windows ending where a supervised read
    queries (the question's own bytes), letters and digits fresh except the run a copy has written so far."""
    lm = small_lm(log_length_reads=True, read_confusers=200, read_query_confusers=0.25).train()
    net = lm.blocks[0].mixer
    reach = net.encoder.reach
    row = b"xx\nQwerTy19 = ab7Z\nKLm3 = nOp9\n" * 3 + b"QwerTy19 = 'ab"
    ids = torch.tensor([list(row)])
    at = len(row) - 1  # the read that writes the hash's third byte, after `= 'ab`
    targets = torch.full((1, len(row), 2, 2, 2), -1)
    targets[0, at, 0, 1, 0] = 15  # the link's entry before `7`
    torch.manual_seed(5)
    windows = net.confuser_windows(ids, targets)
    assert windows.shape == (200, reach)
    from_targets, from_queries = windows[:150], windows[150:]
    assert not (from_targets[:, -2:] == ids[0, 14:16]).all(1).all()  # a target window's own hash bytes are fresh
    query = ids[0, at - reach + 1 : at + 1]
    assert (from_queries[:, -2:] == query[-2:]).all()  # `ab`, written so far, kept
    for src, column in zip(query[:-2].tolist(), from_queries[:, :-2].T):
        kind = next((k for k in ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789") if chr(src) in k), None)
        if kind is None:
            assert (column == src).all()  # the quote, spaces, `=` and newlines kept
        else:
            assert all(chr(c) in kind for c in column.tolist()) and len(set(column.tolist())) > 1  # fresh, same kind
    assert float(lm(ids, read_targets=targets)[1][1].detach()) > 0  # their keys join the copy read's loss
    with pytest.raises(HashHopError, match="share of read_confusers"):
        MixerConfig(name="ltm2", read_query_confusers=0.5)
    with pytest.raises(HashHopError, match="read_query_confusers"):
        MixerConfig(name="ltm2", read_confusers=8, read_query_confusers=1.5)


def test_read_confusers_is_a_stage_two_option():
    from hashhop.ltm2.config import ltm2_config

    def mixer(**options) -> MixerConfig:
        return ltm2_config("corpus.bin", steps=1, stage=2, init_from="w", **options).model.mixer

    assert mixer().read_confusers == 8192 and mixer(read_confusers=0).read_confusers == 0  # the read stage's default
    assert mixer().read_query_confusers == 0.5 and mixer(read_query_confusers=0).read_query_confusers == 0  # the shipped recipe's
    assert mixer(read_query_confusers=0.25).read_query_confusers == 0.25
    assert mixer(read_confusers=0).read_query_confusers == 0  # no confusers: their question-shaped share follows
    assert ltm2_config("corpus.bin", steps=1, read_confusers=4096).model.mixer.read_confusers == 0  # stage 1: none
    with pytest.raises(HashHopError, match="read_confusers"):
        MixerConfig(name="ltm2", read_confusers=-1)
