"""LTM-2's model and engine: the engine computes the dense forward (same log-probabilities, same greedy bytes)."""

import numpy as np
import pytest
import torch

from hashhop.errors import HashHopError
from hashhop.lab.mixers import MixerConfig
from hashhop.lab.model import LM, ModelConfig
from hashhop.ltm2 import engine as engine_module
from hashhop.ltm2.engine import PQ_DIMS_PER_BYTE, Engine


def small_lm(seed: int = 0, **mixer) -> LM:
    torch.manual_seed(seed)
    fields = {"name": "ltm2", "d_model": 32, "n_heads": 2, "window": 16, "conv_kernel": 4, "key_dim": 16, "value_dim": 8} | mixer
    lm = LM(ModelConfig(mixer=MixerConfig(**fields), vocab_size=256, n_layers=1, mlp_ratio=0)).eval()
    for block in lm.blocks[0].mixer.blocks:  # sharp, strong reads, so that a wrong read would show
        block.read.log_scale.data.fill_(3.0)
        block.read.out.weight.data.normal_(0, 0.5)
        block.read.value.weight.data.normal_(0, 0.5)
        if block.read.shift is not None:  # a strong shift, so that a wrong previous state would show
            block.read.shift.data.fill_(1.5)
            block.read.shift_gate.weight.data.normal_(0, 0.3)  # and one that varies with the hidden state
        if block.read.pointer_gain is not None:  # a strong pointer, so that a wrong candidate or bonus would show
            block.read.pointer_gain.data.fill_(0.2)
            block.read.pointer_gate.bias.data.fill_(1.0)
    lm.blocks[0].mixer.value.weight.data.normal_(0, 0.5)
    return lm


def text(length: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return bytes(rng.integers(97, 105, length).tolist())


def dense_logprobs(lm: LM, data: bytes) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(lm(torch.tensor(list(data))[None])[0], -1)


def engine_logprobs(engine: Engine, data: bytes, prefix: int) -> torch.Tensor:
    outs = [engine.prefill(data[:prefix])] + [engine.step(b) for b in data[prefix:-1]]
    return torch.log_softmax(torch.stack(outs), -1)


@pytest.mark.parametrize(
    "prefix,log_length,shift", [(1, False, False), (40, False, False), (150, False, False), (1, True, False), (150, True, False), (1, True, True), (40, False, True), (150, True, True)]
)
def test_exact_engine_matches_dense_forward(prefix, log_length, shift):
    lm = small_lm(log_length_reads=log_length, query_shift=shift)
    data = text(220)
    dense = dense_logprobs(lm, data)[prefix - 1 : -1]
    got = engine_logprobs(Engine(lm, top_k=10**6, exact=True), data, prefix)
    assert (got - dense).abs().max() < 1e-4


@pytest.mark.parametrize("kernel,prefix", [(16, 1), (16, 150), (12, 40)])
def test_exact_engine_matches_dense_forward_with_a_wide_encoder(kernel, prefix):
    """`--conv-kernel`: keys that see the last 1 + 2 x (kernel - 1) bytes; the engine's prefill and steps keep as many."""
    lm = small_lm(conv_kernel=kernel, pointer=True, pointer_candidates=3)
    assert lm.blocks[0].mixer.encoder.reach == 1 + 2 * (kernel - 1)
    data = text(220, seed=2)
    dense = dense_logprobs(lm, data)[prefix - 1 : -1]
    got = engine_logprobs(Engine(lm, top_k=10**6, exact=True), data, prefix)
    assert (got - dense).abs().max() < 1e-4


def test_int8_memory_stays_close():
    """int8 keys and values (the memory the engine keeps) move log-probabilities little, greedy bytes rarely."""
    lm = small_lm()
    data = text(300, seed=1)
    dense = dense_logprobs(lm, data)[199:-1]
    got = engine_logprobs(Engine(lm, top_k=10**6), data, 200)
    assert (got - dense).abs().max() < 0.1
    assert (got.argmax(-1) == dense.argmax(-1)).float().mean() >= 0.95


def test_top_k_is_the_dense_read_when_reads_are_sharp():
    lm = small_lm()
    for block in lm.blocks[0].mixer.blocks:
        block.read.log_scale.data.fill_(5.0)  # scale 100 (the cap): a trained read's sharpness
    data = text(300, seed=1)
    dense = dense_logprobs(lm, data)[199:-1]
    got = engine_logprobs(Engine(lm, top_k=16, exact=True), data, 200)
    assert (got - dense).abs().max() < 0.05
    assert (got.argmax(-1) == dense.argmax(-1)).all()


@pytest.mark.parametrize("log_length,shift", [(False, False), (True, False), (True, True)])
def test_engine_top_k_is_the_trained_top_k_read(log_length, shift):
    """A network trained with read_top_k = k (MixerConfig) reads in its forward pass what the engine's decode steps
    read over an exact index with top_k = k: each query's k best entries and the sink."""
    lm = small_lm(log_length_reads=log_length, query_shift=shift, read_top_k=8)
    data = text(220, seed=4)
    top = dense_logprobs(lm, data)[:-1]
    engine = Engine(lm, exact=True)  # top_k: the network's read_top_k by default
    assert engine.top_k == 8 and Engine(small_lm()).top_k == 64
    got = engine_logprobs(engine, data, 1)
    assert (got - top).abs().max() < 1e-4
    every = small_lm(log_length_reads=log_length, query_shift=shift)  # the same weights reading every entry
    assert (dense_logprobs(every, data)[:-1] - top).abs().max() > 1e-2


def test_memory_off_matches_dense_memory_off():
    lm = small_lm()
    lm.blocks[0].mixer.memory_enabled = False
    data = text(200, seed=2)
    got = engine_logprobs(Engine(lm, top_k=10**6, exact=True), data, 120)
    assert (got - dense_logprobs(lm, data)[119:-1]).abs().max() < 1e-4


def test_memory_off_sees_only_its_window():
    """With the memory off, the output depends on the last 2 local windows and the encoder's reach only (the
    benchmarks score the memory-off ablation on those bytes of a prompt, not 10M bytes)."""
    lm = small_lm()
    assert Engine(lm).context_reach is None
    lm.blocks[0].mixer.memory_enabled = False
    data = text(400, seed=3)
    reach = Engine(lm).context_reach
    assert reach == 2 * 16 + 7
    assert torch.allclose(Engine(lm).prefill(data), Engine(lm).prefill(data[-reach:]), atol=1e-5)


def test_reads_change_the_output():
    """The test above would pass trivially if reads did nothing: switching memory off must change the output."""
    lm = small_lm()
    data = text(200, seed=3)
    on = dense_logprobs(lm, data)
    lm.blocks[0].mixer.memory_enabled = False
    off = dense_logprobs(lm, data)
    assert (on - off).abs().max() > 1e-2


def test_prefill_in_chunks(monkeypatch):
    """The encoder's chunked prefill (entries carried across chunk boundaries) equals one pass."""
    import hashhop.ltm2.engine as engine_module

    lm = small_lm()
    data = text(400, seed=4)
    whole = engine_logprobs(Engine(lm, top_k=10**6, exact=True), data, 330)
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK", 37)
    chunked = engine_logprobs(Engine(lm, top_k=10**6, exact=True), data, 330)
    assert (whole - chunked).abs().max() < 1e-5


def test_generate_is_greedy_dense_decoding():
    lm = small_lm()
    prompt = text(100, seed=5)
    engine = Engine(lm, top_k=10**6, exact=True)
    engine.prefill(prompt)
    out = engine.generate(12)
    seq = bytearray(prompt)
    for _ in range(12):
        seq.append(int(dense_logprobs(lm, bytes(seq))[-1].argmax()))
    assert out == bytes(seq[100:])


def test_memory_kept_per_byte():
    lm = small_lm()
    engine = Engine(lm)
    engine.prefill(text(5000))
    cfg = lm.blocks[0].mixer.cfg
    assert engine.bytes_per_context_byte() <= 1 + cfg.key_dim + cfg.value_dim + 2 + 1e-9
    assert engine.memory.count == 5000 - lm.blocks[0].mixer.delay


def test_errors():
    with pytest.raises(HashHopError):
        Engine(small_lm()).prefill(b"")
    with pytest.raises(HashHopError):
        Engine(small_lm()).generate(3)
    with pytest.raises(HashHopError, match="ltm2"):
        Engine(LM(ModelConfig(mixer=MixerConfig(name="attention", d_model=16, n_heads=2), vocab_size=256)))


@pytest.mark.parametrize(
    "prefix,chunk,log_length,shift",
    [(1, 37, False, False), (20, 16, False, False), (200, 1024, False, False), (20, 16, True, False), (200, 64, True, False), (1, 37, True, True), (200, 64, False, True)],
)
def test_chunked_feed_matches_dense_forward(prefix, chunk, log_length, shift):
    """feed_chunks (a chunk's positions together, its reads as one batched search plus a dense read over its own
    new entries) computes what step() and the dense forward compute."""
    lm = small_lm(log_length_reads=log_length, query_shift=shift)
    data = text(300, seed=6)
    engine = Engine(lm, top_k=10**6, exact=True)
    engine.prefill(data[:prefix])
    rows = engine.feed_chunks(data[prefix:], chunk=chunk)
    assert (torch.log_softmax(rows[:-1], -1) - dense_logprobs(lm, data)[prefix:-1]).abs().max() < 1e-4


@pytest.mark.parametrize("shift,pointer", [(False, False), (True, False), (False, True)])
def test_snapshot_restore_continues_like_a_fresh_prefill(shift, pointer):
    lm = small_lm(query_shift=shift, pointer=pointer)
    context, first, second = text(400, seed=7), text(30, seed=8), text(25, seed=9)
    engine = Engine(lm, top_k=10**6, exact=True)
    engine.prefill(context)
    snap = engine.snapshot()
    after_first = engine.feed(first).clone()
    engine.restore(snap)
    after_second = engine.feed(second)
    fresh = Engine(lm, top_k=10**6, exact=True)
    assert torch.allclose(after_second, fresh.prefill(context + second), atol=1e-4)
    assert torch.allclose(after_first, fresh.prefill(context + first), atol=1e-4)


def test_pointer_keys_recomputed_once_and_never_from_an_earlier_context():
    """The exact keys a pointer read recomputes from the text are kept for the step's other heads and blocks (and later
    steps), and forgotten with the context: an engine reused on other text and after a restore computes what a fresh
    one computes."""
    lm = small_lm(read_top_k=4, pointer=True)
    first, second, tail = text(300, seed=21), text(300, seed=22), text(40, seed=23)
    engine = Engine(lm, exact=True)
    engine.prefill(first)
    engine.feed(tail)
    engine.prefill(second)
    snap = engine.snapshot()
    engine.feed(tail)
    engine.restore(snap)
    looked_up, recomputed = [], []
    entry_key, compute = engine._entry_key, engine._compute_exact_keys
    engine._entry_key = lambda entry: looked_up.append(entry) or entry_key(entry)
    engine._compute_exact_keys = lambda entries: recomputed.extend(entries.tolist()) or compute(entries)
    got = engine.feed(tail[::-1])
    fresh = Engine(lm, exact=True)
    fresh.prefill(second)
    assert torch.allclose(got, fresh.feed(tail[::-1]), atol=1e-5)
    # each looked-up entry is recomputed at most once (the request's own entries are kept exactly anyway)
    assert looked_up and 0 < len(recomputed) == len(set(recomputed)) <= len(set(looked_up)) < len(looked_up)


def test_inverted_lists_find_what_the_flat_scan_finds():
    """From 1M bytes the engine searches inverted lists (IVF). Probing every list with exact codes, it is the flat
    scan (the plumbing: training, ids, values); how much probing fewer lists loses is measured on the trained
    model (benchmarks/ltm2_code.py), since a random network's keys have no near-exact matches to find."""
    lm = small_lm()
    data = text(6000, seed=10)
    flat, ivf = Engine(lm, index="flat", exact=True), Engine(lm, index="ivf", nprobe=100_000, exact=True)
    a, b = flat.prefill(data), ivf.prefill(data)
    assert ivf.memory.quantizers and not flat.memory.quantizers
    assert (torch.log_softmax(a, -1) - torch.log_softmax(b, -1)).abs().max() < 5e-3  # IVF's exact keys are fp16
    assert flat.generate(20) == ivf.generate(20)


def test_compact_codes_under_inverted_lists():
    """Long contexts keep product-quantised keys and 4-bit values: under 64 bytes per context byte at the shipped
    sizes, and close to the 8-bit flat memory (the random network's reads are blurred, so this checks the codes
    and their plumbing, not retrieval: retrieval is measured on the trained model)."""
    lm = small_lm(key_dim=32, value_dim=8)  # 16 key dimensions per head
    data = text(12000, seed=10)
    flat, ivf = Engine(lm, index="flat"), Engine(lm, index="ivf", nprobe=100_000, rescore=0)  # the codes' own reads
    a, b = flat.prefill(data), ivf.prefill(data)
    assert ivf.memory.compact and not flat.memory.compact
    # 4 key dimensions per 8-bit code move a random network's blurred reads by ~0.15 (2 per code: ~0.1); wrong ids or
    # values would move them by whole nats
    assert (torch.log_softmax(a, -1) - torch.log_softmax(b, -1)).abs().max() < 0.3
    heads, hk, dv = 2, 16, 8
    per_entry = heads * (hk // PQ_DIMS_PER_BYTE + 8) + dv // 2 + 2  # PQ codes and ids per head, packed values, their scale
    assert ivf.memory.nbytes() == ivf.memory.count * per_entry
    values = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    from hashhop.ltm2.engine import _pack4, _unpack4

    coded = np.clip(np.round(values / np.abs(values).max(1, keepdims=True) * 7), -7, 7).astype(np.int8)
    assert np.array_equal(_unpack4(_pack4(coded), 7), coded.astype(np.float32))


@pytest.mark.parametrize("rotate", [False, True])
def test_decode_searches_and_scan_cap(tmp_path, rotate, monkeypatch):
    """A decode step's search (one query, one OpenMP thread) finds what a batched search finds; the compact index
    caps the codes a read scans (unequal lists), and the cap survives a save and a memory-mapped load."""
    from hashhop.ltm2.engine import LIST_ENTRIES, SCAN_CAP_LISTS, _inverted

    monkeypatch.setattr(engine_module, "PQ_ROTATION", rotate)
    lm = small_lm(key_dim=32, value_dim=8)
    engine = Engine(lm, index="ivf", nprobe=8)
    engine.prefill(text(12000, seed=13))
    memory = engine.memory
    assert memory.compact and _inverted(memory.indexes[0]).max_codes == SCAN_CAP_LISTS * 8 * LIST_ENTRIES
    queries = np.random.default_rng(1).normal(size=(20, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    batch_scores, batch_ids = memory.search_batch(1, queries, 10)
    for i in (0, 7, 19):
        scores, ids = memory.search_batch(1, queries[i : i + 1], 10)
        assert np.array_equal(ids[0], batch_ids[i]) and np.allclose(scores[0], batch_scores[i], atol=1e-5)
    engine.save(str(tmp_path / "ctx"))
    loaded = Engine(lm, index="ivf", nprobe=8)
    loaded.load(str(tmp_path / "ctx"))
    assert _inverted(loaded.memory.indexes[1]).max_codes == _inverted(memory.indexes[1]).max_codes
    assert len(loaded.memory.quantizers) == 2
    assert np.array_equal(loaded.memory.search_batch(1, queries, 10)[1], batch_ids)
    # a smaller cap (the engine's, applied to a loaded context too) scans fewer codes: faiss stops between lists
    import faiss

    stats = faiss.cvar.indexIVF_stats
    scanned = {}
    for cap in (SCAN_CAP_LISTS, 0.05):
        capped = Engine(lm, index="ivf", nprobe=8, scan_cap_lists=cap)
        capped.load(str(tmp_path / "ctx"))
        assert _inverted(capped.memory.indexes[0]).max_codes == int(cap * 8 * LIST_ENTRIES)
        stats.reset()
        capped.memory.search_batch(1, queries, 10)
        scanned[cap] = stats.ndis / len(queries)
    largest_list = max(_inverted(memory.indexes[1]).invlists.list_size(i) for i in range(_inverted(memory.indexes[1]).nlist))
    assert scanned[0.05] < scanned[SCAN_CAP_LISTS] and scanned[0.05] <= int(0.05 * 8 * LIST_ENTRIES) + largest_list
    with pytest.raises(HashHopError, match="scan_cap_lists must be positive"):
        Engine(lm, scan_cap_lists=0)


def test_saved_context_is_mapped_back_and_continues_the_same(tmp_path):
    lm = small_lm(query_shift=True)  # its last encoder state is saved too
    context, prompt = text(3000, seed=11), text(40, seed=12)
    for index in ("flat", "ivf"):
        engine = Engine(lm, index=index)
        engine.prefill(context)
        engine.save(str(tmp_path / index))
        expected = engine.feed(prompt).clone()
        again = engine.generate(10)
        loaded = Engine(lm, index=index)
        loaded.load(str(tmp_path / index))
        assert isinstance(loaded.memory._values, np.memmap)
        assert torch.allclose(loaded.feed(prompt), expected, atol=1e-5)
        assert loaded.generate(10) == again
    with pytest.raises(HashHopError, match="other LTM-2 weights"):
        Engine(small_lm(seed=1)).load(str(tmp_path / "flat"))
    with pytest.raises(HashHopError, match="no saved LTM-2 context"):
        Engine(lm).load(str(tmp_path / "nothing"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.pt").write_bytes(b"not a saved state")  # a damaged folder: one line, no traceback
    with pytest.raises(HashHopError, match="no saved LTM-2 context"):
        Engine(lm).load(str(tmp_path / "broken"))


def test_log_length_reads_are_the_learnt_sharpness_at_the_reference_length():
    """log_length_reads: a read over LENGTH_REF entries has exactly the learnt sharpness, sharper beyond, softer
    before (the dense forward and the engine agree on it: test_exact_engine_matches_dense_forward)."""
    from hashhop.ltm2.model import LENGTH_REF, read_gain

    assert read_gain(LENGTH_REF, True) == pytest.approx(1.0) and read_gain(10**8, False) == 1.0
    assert read_gain(10**6, True) > 1.5 and read_gain(0, True) == 0.0
    lm_fixed, lm_scaled = small_lm(), small_lm(log_length_reads=True)
    data = text(300, seed=13)
    assert (dense_logprobs(lm_fixed, data) - dense_logprobs(lm_scaled, data)).abs().max() > 1e-2


@pytest.mark.parametrize("layers,kernel", [(1, 4), (2, 8), (3, 5)])
def test_encoder_over_byte_table_is_the_convolution(layers, kernel):
    """The prefill's encoder: the first convolution as a sum of per-byte tap rows gives the dense encoder's states."""
    lm = small_lm(encoder_layers=layers, conv_kernel=kernel)
    encoder = lm.blocks[0].mixer.encoder
    ids = torch.tensor(list(text(500, seed=14)))
    with torch.no_grad():
        inputs = lm.blocks[0].norm1(lm.embed(torch.arange(256)))
        x = inputs[ids]
        fast = encoder.forward_symbols(ids, x, encoder.tap_table(inputs))
        assert (fast - encoder(x[None])[0]).abs().max() < 1e-5


def test_encoder_last_state_is_the_forward_at_the_last_position():
    """A decode step's encoder state (only the positions each layer needs, padded before the first byte) is the
    full convolution's state there, at the start of a text as later on, with more layers and other kernels too."""
    for layers, kernel in ((2, 4), (3, 3), (1, 5)):
        lm = small_lm(encoder_layers=layers, conv_kernel=kernel)
        engine = Engine(lm)
        encoder = lm.blocks[0].mixer.encoder
        data = text(40, seed=layers)
        with torch.no_grad():
            dense = encoder(engine.byte_inputs[torch.tensor(list(data))][None])[0]
            for q in range(len(data)):
                last = list(data[max(0, q + 1 - encoder.reach) : q + 1])
                ids = torch.tensor([256] * (encoder.reach - len(last)) + last)
                got = encoder.last_state(ids, engine.padded_inputs, engine.tap_table)
                assert (got[0] - dense[q]).abs().max() < 1e-5, (layers, kernel, q)


def pointer_lm(candidates: int, **mixer) -> LM:
    """A small LTM-2 whose reads follow a pointer with ``candidates`` candidates, with bonuses that matter."""
    lm = small_lm(pointer=True, pointer_candidates=candidates, **mixer)
    for block in lm.blocks[0].mixer.blocks:
        block.read.pointer_gain.data.fill_(0.2)
        if candidates > 1:
            block.read.pointer_gain_more.data.uniform_(-0.2, 0.3)
    return lm


@pytest.mark.parametrize(
    "prefix,log_length,candidates,reference",
    [(1, False, 1, 0), (40, True, 1, 0), (150, False, 1, 0), (150, True, 1, 0), (40, True, 3, 0), (150, False, 2, 0), (1, True, 3, 16), (150, True, 1, 16), (40, True, 3, 16)],
)
def test_pointer_engine_matches_dense_forward(prefix, log_length, candidates, reference):
    """Reads with a pointer (MixerConfig.pointer, with 1 to 3 candidates): decode steps and chunks carry each block's
    and head's pointer from position to position and compute the dense forward. With ``reference``
    (MixerConfig.pointer_length_ref: beyond that many entries the bonus grows, pointer_gain) 16, the rule acts over
    most of the 220 bytes, and the engine computes it too."""
    lm = pointer_lm(candidates, log_length_reads=log_length, pointer_length_ref=reference)
    data = text(220, seed=11 + 2 * bool(reference))
    dense = dense_logprobs(lm, data)
    got = engine_logprobs(Engine(lm, top_k=10**6, exact=True), data, prefix)
    assert (got - dense[prefix - 1 : -1]).abs().max() < 1e-4
    engine = Engine(lm, top_k=10**6, exact=True)
    engine.prefill(data[:prefix])
    rows = engine.feed_chunks(data[prefix:], chunk=37)
    assert (torch.log_softmax(rows[:-1], -1) - dense[prefix:-1]).abs().max() < 1e-4
    # the pointer changes the output; the rule changes it again (the same weights without the reference)
    plain = small_lm(log_length_reads=log_length, **({"pointer": True, "pointer_candidates": candidates} if reference else {}))
    plain.load_state_dict(lm.state_dict(), strict=False)
    assert (dense_logprobs(plain, data) - dense).abs().max() > 1e-2


@pytest.mark.parametrize("candidates", [1, 3])
def test_pointer_engine_top_k_is_the_trained_top_k_read(candidates):
    """With read_top_k = 8 the pointer's entries are often not among a query's 8 best: the engine scores them with
    their exact keys, recomputed from the text (decode steps over an exact index, as trained)."""
    lm = pointer_lm(candidates, read_top_k=8)
    data = text(220, seed=12)
    engine = Engine(lm, exact=True)
    calls = []
    entry_key = engine._entry_key
    engine._entry_key = lambda entry: calls.append(entry) or entry_key(entry)
    got = engine_logprobs(engine, data, 1)
    assert len(calls) > 20  # the exact-key path ran
    assert (got - dense_logprobs(lm, data)[:-1]).abs().max() < 1e-4


def test_a_steps_pointer_candidates_cost_one_encoder_call_per_block():
    """The pointer's candidates the search did not return are scored with exact keys recomputed from the text: a decode
    step computes every head's in one batch of encoder windows per block (with the rescored entries' when rescoring),
    not one call per candidate, and computes the same log-probabilities as the one-at-a-time path (1e-5)."""
    lm = pointer_lm(3, read_top_k=8)
    data = text(220, seed=12)

    def run(batched: bool) -> tuple[torch.Tensor, list[int]]:
        engine = Engine(lm, exact=True)
        if not batched:  # the candidates computed one at a time, when _follow asks for each
            engine._pointer_misses = lambda block, ids, q: np.zeros(0, np.int64)
        calls, compute, step = [0], engine._compute_exact_keys, engine.step  # calls[0]: the prefill's
        engine._compute_exact_keys = lambda entries: calls.__setitem__(-1, calls[-1] + 1) or compute(entries)
        engine.step = lambda byte: calls.append(0) or step(byte)
        return engine_logprobs(engine, data, 1), calls[1:]

    (batched, per_step), (single, per_step_single) = run(True), run(False)
    assert (batched - single).abs().max() < 1e-5
    assert max(per_step) <= len(lm.blocks[0].mixer.blocks) < max(per_step_single) and sum(per_step) < sum(per_step_single)


def test_pointer_gain_is_the_read_gain_within_its_reference():
    from hashhop.ltm2.model import pointer_gain, read_gain

    for reference in (16384, 93, 4096):
        entries = torch.arange(0, reference + 1)
        assert torch.equal(pointer_gain(entries, True, reference), read_gain(entries, True))  # training rows: unchanged
        assert (pointer_gain(torch.arange(reference + 1, reference + 50), True, reference) > read_gain(torch.arange(reference + 1, reference + 50), True)).all()
    assert pointer_gain(10**7, True, 0) == read_gain(10**7, True) and pointer_gain(10**7, False, 16384) == 1.0
    beyond = pointer_gain(10**7, True, 16384)
    assert beyond == pytest.approx(read_gain(10**7, True) ** 2 / read_gain(16384, True))
    assert 1.6 < beyond / read_gain(10**7, True) < 1.7  # at 10M entries: 1.66x the read's own gain
    grown = [pointer_gain(n, True, 16384) / read_gain(n, True) for n in (10**5, 10**6, 10**7, 10**8)]
    assert grown == sorted(grown) and grown[0] > 1.0


@pytest.mark.parametrize("pointer", [False, True])
def test_rescored_reads_compute_the_dense_forward(pointer):
    """Rescoring replaces the index's scores of a read's best entries with exact ones, keys recomputed from the text:
    on the exact engine (float keys) it must change nothing, through decode steps and chunked feeds alike, so each
    score lands on its own entry; the recomputed keys are the dense forward's, padding before byte 0 included."""
    lm = small_lm(pointer=pointer, pointer_candidates=3 if pointer else 1)
    data = text(300, seed=11)
    dense = dense_logprobs(lm, data)
    stepped = engine_logprobs(Engine(lm, top_k=10**6, exact=True, rescore=7), data, 150)
    assert (stepped - dense[149:-1]).abs().max() < 1e-4
    engine = Engine(lm, top_k=10**6, exact=True, rescore=10**6)
    engine.prefill(data[:40])
    rows = engine.feed_chunks(data[40:], chunk=64)
    assert (torch.log_softmax(rows[:-1], -1) - dense[40:-1]).abs().max() < 1e-4
    net = lm.blocks[0].mixer
    with torch.no_grad():
        x = engine._embed(torch.tensor(list(data))[None])
        keys = net.write(x, net.encoder(x))[0][0].transpose(0, 1).numpy()  # (t, heads, hk)
        entries = np.array([0, 1, engine.reach - 2, engine.reach, 150, 299])
        engine._exact_key_cache.clear()  # the reads above kept some
        assert np.abs(engine._exact_keys(entries) - keys[entries]).max() < 1e-5
        again = np.array([299, 151, 150, 0])  # partly from the cache, partly computed
        assert 150 in engine._exact_key_cache and 151 not in engine._exact_key_cache
        assert np.abs(engine._exact_keys(again) - keys[again]).max() < 1e-5


def test_decode_steps_search_the_heads_side_by_side(monkeypatch):
    """On inverted lists with two cores, generate() and a short feed() run torch on one thread and the memory heads'
    searches on two; the bytes and logits are the serial steps', and torch's threads come back (after an error too)."""
    lm = small_lm(key_dim=32, value_dim=8)
    data = text(12000, seed=10)
    import threading

    seen = []  # (split_heads, torch threads) at each step's search
    threads_of_heads = set()  # (head, the thread that searched it)
    search, search_batch = engine_module.Memory.search, engine_module.Memory.search_batch

    def spy(memory, queries, top_k):
        seen.append((memory.split_heads, torch.get_num_threads()))
        return search(memory, queries, top_k)

    def spy_batch(memory, head, queries, top_k):
        threads_of_heads.add((head, threading.current_thread().name.startswith("ltm2-search")))
        return search_batch(memory, head, queries, top_k)

    monkeypatch.setattr(engine_module.Memory, "search", spy)
    monkeypatch.setattr(engine_module.Memory, "search_batch", spy_batch)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runs = {}
        for cores in (2, 1):
            monkeypatch.setattr(engine_module, "_cores", lambda cores=cores: cores)
            engine = Engine(lm, index="ivf", nprobe=8)
            engine.prefill(data)
            assert engine.memory.quantizers
            seen.clear()
            threads_of_heads.clear()
            runs[cores] = (engine.generate(24), engine.feed(b"abc").clone())
            assert seen and set(seen) == ({(True, 1)} if cores == 2 else {(False, 2)})
            assert threads_of_heads == ({(0, False), (1, True)} if cores == 2 else {(0, False), (1, False)})  # head 1 on the worker
            assert torch.get_num_threads() == 2 and not engine.memory.split_heads
        assert runs[2][0] == runs[1][0]
        assert (runs[2][1] - runs[1][1]).abs().max() < 1e-4
        monkeypatch.setattr(engine_module, "_cores", lambda: 2)
        monkeypatch.setattr(Engine, "step", lambda self, byte: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            engine.generate(4)
        assert torch.get_num_threads() == 2 and not engine.memory.split_heads
    finally:
        torch.set_num_threads(threads)


def test_rescoring_gives_the_compact_memorys_best_entries_exact_scores():
    """The compact memory scores entries from product-quantised keys; rescoring replaces the scores of each row's
    best ``rescore`` entries with the exact ones and leaves the others as the index gave them."""
    lm = small_lm(key_dim=32, value_dim=8)
    engine = Engine(lm, index="ivf", nprobe=100_000, rescore=5)
    engine.prefill(text(12000, seed=10))
    assert engine.memory.compact
    queries = torch.nn.functional.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(0)), dim=-1).numpy()
    for head in range(2):
        scores, ids = engine.memory.search_batch(head, queries, 20)
        with torch.no_grad():
            rescored = engine._rescore(np.full(6, head), queries, scores, ids)
            exact = np.einsum("nd,nkd->nk", queries, engine._exact_keys(ids.reshape(-1)).reshape(6, 20, 2, -1)[:, :, head])
        best = np.argsort(-scores, axis=1)[:, :5]
        changed = np.zeros_like(scores, bool)
        np.put_along_axis(changed, best, True, 1)
        assert np.allclose(rescored[changed], exact[changed], atol=1e-5)
        assert np.array_equal(rescored[~changed], scores[~changed])
        assert np.abs(scores[changed] - exact[changed]).max() > 1e-3  # the codes were approximate: the test can fail
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(HashHopError, match="rescore"):
            Engine(lm, rescore=bad)


def test_reads_on_the_compact_memory_are_rescored_by_default(tmp_path, monkeypatch):
    """By default every entry of a read is rescored on the compact memory (product-quantised keys) and none on 8-bit
    keys; the default follows the memory through reset and a memory-mapped load, a setting overrides it. The exact
    keys kept from earlier reads give what recomputing every one gives."""
    lm = small_lm(key_dim=32, value_dim=8)
    data, prompt = text(12000, seed=10), text(30, seed=3)
    engine = Engine(lm, index="ivf", nprobe=100_000)
    assert engine.rescore == 0  # nothing prefilled yet: no compact memory
    engine.prefill(data)
    assert engine.memory.compact and engine.rescore == engine.top_k
    engine.save(str(tmp_path / "ctx"))
    rescored = torch.log_softmax(engine.feed(prompt), -1)
    engine.rescore = 0
    engine.load(str(tmp_path / "ctx"))
    assert engine.rescore == 0  # the setting stays through a load
    codes = torch.log_softmax(engine.feed(prompt), -1)
    default = Engine(lm, index="ivf", nprobe=100_000)
    default.load(str(tmp_path / "ctx"))
    assert default.rescore == default.top_k
    explicit = Engine(lm, index="ivf", nprobe=100_000, rescore=default.top_k)
    explicit.load(str(tmp_path / "ctx"))
    # (exact keys batched differently round differently: 1e-5)
    assert (torch.log_softmax(default.feed(prompt), -1) - rescored).abs().max() < 1e-5
    assert (torch.log_softmax(explicit.feed(prompt), -1) - rescored).abs().max() < 1e-5
    assert (rescored - codes).abs().max() > 1e-4  # rescoring moved the reads: the default is not the codes
    cached = default.generate(24)
    assert len(default._exact_key_cache) > 0
    monkeypatch.setattr(engine_module, "EXACT_KEYS_CACHED", 0)
    uncached = Engine(lm, index="ivf", nprobe=100_000)
    uncached.load(str(tmp_path / "ctx"))
    assert (torch.log_softmax(uncached.feed(prompt), -1) - rescored).abs().max() < 1e-5
    assert uncached.generate(24) == cached and not uncached._exact_key_cache
    flat = Engine(lm, index="flat")
    flat.prefill(data)
    assert not flat.memory.compact and flat.rescore == 0
    engine.rescore = None
    assert engine.rescore == engine.top_k


def test_pointer_jitter_scales_training_bonuses_only(monkeypatch):
    """MixerConfig.pointer_jitter (training only): in train mode a row's pointer bonuses are multiplied by
    exp(u ln jitter), u uniform in [0, 1) per row; u -> 1 is the same network with every pointer parameter doubled
    (jitter 2), u -> 0 the network without jitter; in eval mode (what the engine computes) it changes nothing."""
    data = torch.tensor(list(text(120, seed=5)))[None].repeat(2, 1)

    def lm(jitter: float, doubled: bool = False) -> LM:
        net = pointer_lm(3, log_length_reads=True, pointer_length_ref=16, pointer_jitter=jitter)
        if doubled:
            for block in net.blocks[0].mixer.blocks:
                for name, p in block.read.named_parameters():
                    if name.startswith("pointer_"):
                        p.data *= 2
        return net

    plain, jittered, doubled = lm(1.0), lm(2.0), lm(1.0, doubled=True)
    with torch.no_grad():
        assert torch.equal(jittered(data), plain(data))  # eval mode: no jitter
        plain.train(), jittered.train(), doubled.train()
        monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.ones(*shape))
        top = jittered(data)
        assert (top - doubled(data)).abs().max() < 1e-4 and (top - plain(data)).abs().max() > 1e-2
        monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.zeros(*shape))
        assert (jittered(data) - plain(data)).abs().max() < 1e-5
    with pytest.raises(HashHopError, match="pointer_jitter"):
        MixerConfig(name="ltm2", pointer_jitter=0.5)


def dense_beam_search(lm: LM, prompt: bytes, max_bytes: int, width: int, stops: tuple[bytes, ...] = (), power: float = 0.0) -> bytes:
    """The beam search Engine.generate(beams=width) documents, written over the dense forward: the reference
    (``power``: the engine's length_penalty, outputs compared by summed log-probability / length ** power)."""
    live, finished = [(0.0, b"")], []
    for _ in range(max_bytes):
        grown = []
        for score, out in live:
            top = dense_logprobs(lm, prompt + out)[-1].topk(width)
            grown += [(score + lp, out + bytes([b])) for lp, b in zip(top.values.tolist(), top.indices.tolist())]
        grown.sort(key=lambda c: -c[0])
        live = []
        for score, out in grown[:width]:
            (finished if len(out) == max_bytes or any(out.endswith(s) for s in stops) else live).append((score, out))
        if not live or (not power and finished and max(f[0] for f in finished) >= live[0][0]):
            break
    return max(finished + live, key=lambda c: c[0] / len(c[1]) ** power)[1]


@pytest.mark.parametrize("pointer,width", [(False, 3), (True, 2), (True, 4)])
def test_beam_search_is_the_dense_forwards_beam_search(pointer, width):
    """generate(beams=W) returns what a beam search of width W over the dense forward returns (each output on its own
    copy of the decode state), leaves the engine in the chosen output's state, and keeps the index untouched."""
    lm = small_lm(pointer=pointer, log_length_reads=True)
    prompt = text(150, seed=12)  # a text where every width here finds another output than greedy decoding's
    engine = Engine(lm, top_k=10**6, exact=True)
    engine.prefill(prompt)
    snap = engine.snapshot()
    greedy = engine.generate(10)
    engine.restore(snap)
    assert engine._beam_search(10, (), 1) == greedy  # width 1 is greedy decoding
    engine.restore(snap)
    indexed = engine.memory.count
    out = engine.generate(10, beams=width)
    assert out == dense_beam_search(lm, prompt, 10, width)
    assert out != greedy
    assert engine.memory.frozen == indexed and len(engine.memory.recent) == len(out) - 1
    # the engine continues from the chosen output (its last byte not fed yet, as after greedy decoding)
    after = engine.step(out[-1])
    assert (torch.log_softmax(after, -1) - dense_logprobs(lm, prompt + out)[-1]).abs().max() < 1e-4
    engine.restore(snap)
    stops = (out[3:5],)  # a stop the search meets: the output ends with it
    stopped = engine.generate(10, stops, beams=width)
    assert stopped == dense_beam_search(lm, prompt, 10, width, stops) and stopped.endswith(stops[0])


def test_exact_keys_evicted_from_a_full_cache_stay_right(monkeypatch):
    """The cache of recomputed exact keys keeps the newest EXACT_KEYS_CACHED in a fixed slab: once full, each new key
    takes the oldest one's row, and every key it returns (hits, new ones, one named twice) is the recomputed one."""
    monkeypatch.setattr(engine_module, "EXACT_KEYS_CACHED", 5)
    lm = small_lm(key_dim=32, value_dim=8)
    engine = Engine(lm, index="ivf", nprobe=100_000)
    engine.prefill(text(12000, seed=10))
    engine._exact_key_cache.clear()
    with torch.no_grad():
        truth = engine._compute_exact_keys(np.arange(40))
        for entries in ([3, 4, 5], [5, 6, 7, 8], [3, 9, 9, 10], [4, 11, 3], list(range(20, 32)), [31, 30, 2]):
            got = engine._exact_keys(np.array(entries))
            assert np.abs(got - truth[entries]).max() < 1e-5  # (batched differently, rounded differently)
            assert len(engine._exact_key_cache) <= 5 and set(engine._exact_key_cache.values()) <= set(range(5))
            assert len(set(engine._exact_key_cache.values())) == len(engine._exact_key_cache)
            assert all(np.abs(engine._exact_key_slab[slot] - truth[entry]).max() < 1e-5 for entry, slot in engine._exact_key_cache.items())
    assert list(engine._exact_key_cache) == [28, 29, 30, 31, 2]  # first in, first out (a hit does not refresh)
    with torch.no_grad():  # emptied from outside (as tests do): a row's old owner, kept again since, stays
        engine._exact_key_cache.clear()
        engine._exact_keys(np.array([29]))  # the row after the last one written; 29's old row is the one after it
        engine._exact_keys(np.array([6, 7]))
        assert list(engine._exact_key_cache) == [29, 6, 7]
        assert all(np.abs(engine._exact_key_slab[slot] - truth[entry]).max() < 1e-5 for entry, slot in engine._exact_key_cache.items())


def test_beam_search_on_the_compact_memory_keeps_the_exact_keys_it_recomputed(monkeypatch):
    """On the compact memory (reads rescored with exact keys recomputed from the text), the beams share the cache of
    recomputed keys: the same output as recomputing every key, and the engine's width is the default of generate."""
    lm = small_lm(key_dim=32, value_dim=8, pointer=True)
    data = text(12000, seed=12)
    engine = Engine(lm, index="ivf", nprobe=100_000, beams=3)
    engine.prefill(data)
    assert engine.memory.compact and engine.rescore
    snap = engine.snapshot()
    cached = engine.generate(12)
    assert engine._exact_key_cache
    engine.restore(snap)
    assert engine.generate(12, beams=3) == cached
    monkeypatch.setattr(engine_module, "EXACT_KEYS_CACHED", 0)
    engine.restore(snap)
    assert engine.generate(12) == cached and not engine._exact_key_cache


def test_beam_search_per_byte_is_the_dense_forwards_and_runs_past_early_stops():
    """With a length penalty the search compares outputs by log-probability per byte (to that power): the dense
    reference's output for every stop tried, and past a stop where the summed search ends early, a longer output."""
    lm = small_lm(pointer=True, log_length_reads=True)
    prompt = text(150, seed=3)
    engine = Engine(lm, top_k=10**6, exact=True, beams=3)
    engine.prefill(prompt)
    snap = engine.snapshot()
    summed = engine.generate(10)
    longer = 0
    for stop in sorted({summed[i : i + 1] for i in range(len(summed))}):  # each byte the summed search writes, as a stop
        got = {}
        for power in (0.0, 1.0):
            engine.restore(snap)
            engine.length_penalty = power
            got[power] = engine.generate(10, (stop,))
            assert got[power] == dense_beam_search(lm, prompt, 10, 3, (stop,), power), (stop, power)
        longer += len(got[1.0]) > len(got[0.0])
    assert longer  # per byte, a longer output beats an early stop the summed search takes
    for bad in (-0.5, 5, "1", True):
        with pytest.raises(HashHopError, match="length_penalty must be"):
            engine.length_penalty = bad


def test_beam_trace_holds_the_outputs_every_length_penalty_chooses_from():
    """One search with a length penalty records its final outputs; comparing them by sum / length**a gives the output
    a search with that penalty writes, for every a tried, and a = 0's (the sum: its early stop drops no better one)."""
    lm = small_lm(pointer=True, log_length_reads=True)
    prompt = text(150, seed=3)
    engine = Engine(lm, top_k=10**6, exact=True, beams=3)
    engine.prefill(prompt)
    snap = engine.snapshot()
    for stop in (b"", bytes([text(150, seed=3)[5]])):
        engine.restore(snap)
        engine.length_penalty, engine.beam_trace = 1.0, []
        engine.generate(10, (stop,))
        (outputs,) = engine.beam_trace
        engine.beam_trace = None
        assert len(outputs) >= 3 and all(isinstance(o, bytes) and isinstance(f, bool) for _, o, f in outputs)
        for power in (0.0, 0.5, 1.0, 2.0):
            engine.restore(snap)
            engine.length_penalty = power
            chosen = max(outputs, key=lambda c: c[0] / max(len(c[1]), 1) ** power)[1]
            assert engine.generate(10, (stop,)) == chosen, (stop, power)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_beam_width_errors(bad):
    with pytest.raises(HashHopError, match="beams must be a whole number"):
        Engine(small_lm(), beams=bad)
    engine = Engine(small_lm())
    engine.prefill(text(50))
    with pytest.raises(HashHopError, match="beams must be a whole number"):
        engine.generate(3, beams=bad)


def test_reads_off_skips_the_named_blocks_reads_in_steps_and_chunks():
    """The diagnostic ``reads_off``: every block's read skipped is the memory-off network, decode steps and chunked
    feeds alike; one block's skipped is neither that nor the whole network."""
    lm = small_lm(pointer=True)
    data = text(400, seed=13)

    def run(reads_off=frozenset(), memory=True) -> torch.Tensor:
        engine = Engine(lm, top_k=10**6, exact=True)
        engine.reads_off = frozenset(reads_off)
        engine.net.memory_enabled = memory
        try:
            engine.prefill(data[:200])
            chunked = engine.feed_chunks(data[200:300], chunk=37)
            stepped = torch.stack([engine.step(b) for b in data[300:340]])
            return torch.cat([chunked, stepped])
        finally:
            engine.net.memory_enabled = True

    whole, off, none = run(), run(memory=False), run({0, 1})
    second = run({1})
    assert (none - off).abs().max() < 1e-5
    assert (second - whole).abs().max() > 1e-3 and (second - off).abs().max() > 1e-3


def test_scripted_encoder_windows_compute_what_the_encoder_does():
    """The decode's exact keys, its encoder state and its block MLPs come from TorchScript functions (window_keys,
    window_states, mlp_residual):
    they compute the encoder's last_states and the key map as the model's modules do, for windows with and without
    the padding before the first byte, and batches of fewer than KEY_BATCH_MIN windows are padded, so a key comes
    out the same alone as beside others. The scripted and the Python functions agree too."""
    lm = small_lm(key_dim=32, value_dim=8)
    engine = Engine(lm, index="ivf", nprobe=100_000)
    engine.prefill(text(4000, seed=3))
    net = engine.net
    entries = np.array([0, 3, engine.reach - 1, 100, 2500, 3999, 1234])
    data = np.frombuffer(bytes(engine.text), np.uint8)
    offsets = entries[:, None] + np.arange(1 - engine.reach, 1)
    ids = torch.from_numpy(np.where(offsets >= 0, data[np.maximum(offsets, 0)].astype(np.int64), 256))
    with torch.inference_mode():
        states = net.encoder.last_states(ids, engine.padded_inputs, engine.tap_table)
        expected = torch.nn.functional.normalize(net.key(states).view(len(ids), engine.cfg.memory_heads, -1), dim=-1).numpy()
        scripted = engine_module._scripted(engine_module.window_states)
        assert scripted is not engine_module.window_states  # compiled here
        for function in (scripted, engine_module.window_states):
            assert (function(ids, *engine._encoder_args()) - states).abs().max() < 1e-6
        batch = engine._compute_exact_keys(entries)
        assert np.abs(batch - expected).max() < 1e-6
        for size in (1, 2, 3):  # padded to KEY_BATCH_MIN windows
            assert np.abs(engine._compute_exact_keys(entries[:size]) - batch[:size]).max() < 1e-6
        h = torch.randn(3, engine.cfg.d_model)
        for i, block in enumerate(net.blocks):  # the step's block MLP
            assert (engine_module._scripted(engine_module.mlp_residual)(h, *engine._mlp_args(i)) - (h + block.mlp(block.norm_mlp(h)))).abs().max() < 1e-6
