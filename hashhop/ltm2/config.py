"""LTM-2's training run as one lab config (Zoology style: the run is data), and where its weights live.

``python -m hashhop.ltm2.train`` (or ``hashhop train --model ltm2``) builds the training code corpus if needed,
trains this config through the lab (resumable, torchrun-ready) and ships the weights with a model card.
Torch-free, so the CLI can show its defaults without importing torch."""

from __future__ import annotations

import os

from hashhop.errors import HashHopError

WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "ltm2.safetensors")
CARD = os.path.join(os.path.dirname(WEIGHTS), "MODEL_CARD.md")
STEPS = 1400
SEQ_LEN = 2048  # bytes per training row; the memory spans the row, the local window is MIXER["window"]
BATCH = 8
MIXER = {
    "name": "ltm2",
    "d_model": 128,
    "n_heads": 4,
    "window": 256,
    "conv_kernel": 8,
    "encoder_layers": 2,
    "layers": 2,
    "key_dim": 128,  # 2 heads x 64: a softmax over N near-random unit keys in d dims keeps the right key's share
    # while N << exp(d / 2) (16 dims per head drowned the right key beyond ~10K entries)
    "value_dim": 24,
    "memory_heads": 2,
    "log_length_reads": True,
    "query_shift": False,  # tried in a third run and again on the top-64 stage (`--query-shift`, docs/ltm2.md): no change
}


# Stage 2 (``read_steps`` > 0): from stage 1's weights, the same mixture with the auxiliary read loss: HashHop answers'
# jumps to a link (and, without chain of thought, the intermediate hash for the first read) are the reads' targets.
READ_STEPS = 300
READ_SOUP = 3  # stage 2 is trained this many times from the same start, seeds --seed, --seed + 1, ..., and the weights
# written are the mean of the runs' (a uniform model soup; `--read-soup`): at 10M characters, two / three hops CoT, two
# seeds' soup answered 107 of 120 against its members' 90 and 83 (thirty-first session); on fresh prompts three seeds'
# 114 against two seeds' 109 (thirty-second session), and at 100M two hops 9 against 7 of 10 (docs/ltm2.md)
READ_SEQ_LEN = 16384  # stage 2: one row of 16K bytes a step (the same bytes per step): reads trained over 16K entries
READ_LOSS = 0.3
COPY_READ_LOSS = 0.1  # the copies after each jump, weighted apart (0: copies unsupervised, the recipe before the thirtieth
# session; 0.1 alone in a sixth run: no change). With READ_SECOND_READ_COPIES and READ_QUERY_CONFUSERS the shipped recipe
# since the thirtieth session: 10M two- and three-hop CoT 108 of 120 against 94 (RESULTS.md, ltm2_recall_10m_30q[_s1]_r1scl)
READ_LR = 1e-3
READ_NEGATIVES = 0  # stage 2: keys of earlier batches each supervised read must also beat (MixerConfig.read_negatives)
READ_QUERIES = 64  # stage 2: a HashHop row asks up to 64 queries (the data's default, 16, is sized for 2K rows): 3.6x
# the supervised jumps at the same bytes (RESULTS.md, ltm2_read_targets); 10K 2 / 3 / 4 hops CoT 27 / 26 / 25 of 30
# against 21 / 21 / 23 (ltm2_recall_q64_30q, ltm2_recall_s2g_30q)
READ_POINTER = True  # stage 2: reads may follow a pointer (MixerConfig.pointer; docs/ltm2.md): 10M characters 1 hop
# 0 -> 7 of 10 (RESULTS.md, ltm2_recall_10m_ptr against ltm2_recall_10m_q64)
READ_POINTER_CANDIDATES = 3  # stage 2: the pointer's candidates (MixerConfig.pointer_candidates: 1 the next entry; 3
# also the same one and the one after the next)
READ_POINTER_LENGTH_GAIN = True  # stage 2: beyond the stage's row length a pointer's bonus grows by the read's length
# gain once more (MixerConfig.pointer_length_ref = the row length; inactive in training, so the weights are the same):
# the bonus learnt on 16K rows is just enough there, not against a 10M memory's near matches. Shipped weights' 10M probe,
# a chain's first jump: 1 -> 10 of 10 (RESULTS.md, ltm2_quote_probe_plen)
READ_FAR = 0  # stage 2: far entries (keys and values of earlier batches) the reads at answer positions also see, as a
# sample of a memory of up to READ_FAR_SPAN entries (MixerConfig.read_far); 0: off
READ_FAR_SPAN = 100_000_000
READ_NEAR_MISS = 0.5  # stage 2: the share of HashHop rows whose hashes are rewritten so that many share their first or
# last characters with another (task.extra.hashhop_near_miss; hashhop.ltm2.data.near_miss_hashes); 0: Magic's random hashes
READ_QUERY_READS = True  # stage 2: read targets inside each HashHop question too (task.extra.hashhop_query_reads):
# `H1 = '` reads its first link's `=` and the space after it, as a CoT answer does after each hash it writes.
# With both (thirteenth session): 1M 2 / 3 hops CoT 4 / 4 -> 5 / 8 of 10, 10M 1 hop 8 -> 10 (RESULTS.md, ltm2_recall_nq,
# ltm2_recall_10m_nq against ltm2_recall_cand3, ltm2_recall_3cot_1m_cand3, ltm2_recall_10m_cand3)
READ_COT_READS = False  # stage 2: read targets (both reads) at the space after each hash a CoT answer writes (before the last),
# out of the link that hash starts (task.extra.hashhop_cot_reads): the pointer lets go of the link the hash came from.
# Tried (seventeenth session): 1M 2 / 3 hops CoT 75 / 68 of 90 against the control's 78 / 79 (docs/ltm2.md)
READ_SECOND_READ_JUMPS = True  # stage 2: a CoT answer's jumps are targets of the second read too
# (task.extra.hashhop_second_read_jumps; hashhop.ltm2.data.hashhop_reads). Alone (twenty-second session) no gain; with
# READ_CONFUSERS the shipped recipe since the twenty-seventh session: two training seeds answer 109 and 110 of 120 two-
# and three-hop CoT questions at 1M against the earlier recipe's 102 (RESULTS.md, ltm2_recall_1m_30q_r1jcf, _r1jcf2)
READ_SECOND_READ_COPIES = 3  # stage 2: each hash's copied bytes 1..N are targets of the second read too
# (task.extra.hashhop_second_read_copies; they count only with COPY_READ_LOSS > 0, so 0 where that is 0): with
# COPY_READ_LOSS 0.1 and READ_QUERY_CONFUSERS 0.5 the shipped recipe since the thirtieth session (docs/ltm2.md)
READ_POINTER_JITTER = 1.0  # stage 2, with pointer: each row's pointer bonuses times a factor drawn log-uniformly from
# [1, this] in training (MixerConfig.pointer_jitter; 1: off): tried in the twenty-third session (docs/ltm2.md)
READ_POINTER_READ_LOSS = "off"  # stage 2, with pointer: the read loss scores reads with the pointer's bonuses ("bonus";
# "gated": reaching their hidden-state part only; MixerConfig.pointer_read_loss): tried in the twenty-fourth session (docs/ltm2.md)
READ_CONFUSERS = 8192  # stage 2: per step, this many windows like the read targets' entries with fresh random hash
# characters, whose keys (encoded in the same pass) every supervised read must also beat (MixerConfig.read_confusers;
# 0: off; excludes READ_NEGATIVES and READ_FAR). Alone (twenty-fifth session) no gain at 10M; with READ_SECOND_READ_JUMPS
# the shipped recipe (above; docs/ltm2.md)
READ_QUERY_CONFUSERS = 0.5  # stage 2: this share of the confusers drawn from the reading positions' own windows,
# the trailing run kept (MixerConfig.read_query_confusers; 0 where READ_CONFUSERS is 0): part of the shipped recipe
# since the thirtieth session (above)
READ_NEEDLE_FAR_KEYS = 0.0  # stage 2: the share of needle rows whose questions put an aside between the key and the
# answer (task.extra.needle_far_keys; hashhop.ltm2.data.NEEDLE_ASIDES): the query must come from the key 15-50 bytes back
READ_NEEDLE_ASKED = 2  # stage 2: a needle row asks up to this many questions (task.extra.needle_max_asked; 2: the first stage's)
READ_NEEDLE_READS = False  # stage 2: needle answers' values are read targets too (task.extra.needle_reads)
READ_NEEDLE_HOLD = False  # stage 2, with needle reads and asides: the reads from the question's key to the answer too,
# held on the needle's byte after its key while the aside passes, then stepping along the needle (task.extra.needle_hold)
READ_NEEDLE_SHARE = 0.12  # stage 2: the needle rows' share of the mixture (taken from or given to the code rows; 0.12:
# the first stage's mixture, hashhop.ltm2.data.DEFAULT_MIX)
READ_QUERY_SHIFT = False  # stage 2: a read's query may take in the previous position's key (MixerConfig.query_shift)
READ_TOP_K = 64  # stage 2: reads over each query's 64 best entries (MixerConfig.read_top_k; 0: dense), as the engine
# reads: a 16K-byte row costs 5.7x less a step than with dense reads (benchmarks/RESULTS.md, ltm2_train_cost_gathered)


def ltm2_config(
    corpus: str,
    steps: int = STEPS,
    seed: int = 0,
    name: str = "ltm2",
    threads: int | None = None,
    stage: int = 1,
    init_from: str | None = None,
    seq_len: int | None = None,
    read_negatives: int = READ_NEGATIVES,
    read_top_k: int = READ_TOP_K,
    query_shift: bool = READ_QUERY_SHIFT,
    max_queries: int = READ_QUERIES,
    pointer: bool = READ_POINTER,
    read_far: int = READ_FAR,
    read_far_span: int = READ_FAR_SPAN,
    pointer_candidates: int = READ_POINTER_CANDIDATES,
    near_miss: float = READ_NEAR_MISS,
    query_reads: bool = READ_QUERY_READS,
    pointer_length_gain: bool = READ_POINTER_LENGTH_GAIN,
    needle_far_keys: float = READ_NEEDLE_FAR_KEYS,
    needle_asked: int = READ_NEEDLE_ASKED,
    needle_reads: bool = READ_NEEDLE_READS,
    needle_share: float = READ_NEEDLE_SHARE,
    needle_hold: bool = READ_NEEDLE_HOLD,
    cot_reads: bool = READ_COT_READS,
    conv_kernel: int = MIXER["conv_kernel"],
    second_read_jumps: bool = READ_SECOND_READ_JUMPS,
    pointer_jitter: float = READ_POINTER_JITTER,
    pointer_read_loss: str = READ_POINTER_READ_LOSS,
    read_confusers: int = READ_CONFUSERS,
    read_query_confusers: float | None = None,
    second_read_copies: int | None = None,
    copy_read_loss: float = COPY_READ_LOSS,
    copy_read_each_head: bool = False,
):
    """The lab RunConfig that trains LTM-2 (byte-level: vocabulary 256, one lab block whose mixer is ltm2).
    ``stage`` 2: the read-supervised stage, ``steps`` more from ``init_from`` (stage 1's run folder), seed + 1 (new
    batches), its own warmup and decay. ``seq_len``: bytes per row (the memory a read spans in training), at
    the same bytes per step (BATCH x SEQ_LEN). ``read_negatives`` (stage 2): far keys each supervised read must beat;
    ``read_top_k`` (stage 2): each read keeps its k best entries (0: all); ``query_shift`` (stage 2): its reads' queries
    may take in the previous position's key (a learnt share per head, zero at the start); ``max_queries`` (stage 2): a HashHop row asks up to this many
    queries; ``pointer`` (stage 2): each read may follow the entry after the one it read at the previous position
    (a learnt bonus, zero at the start); ``read_far`` / ``read_far_span`` (stage 2): the reads at answer positions also
    see that many far entries standing for a memory of up to that span (MixerConfig.read_far); ``pointer_candidates``
    (stage 2, with ``pointer``): MixerConfig.pointer_candidates; ``near_miss`` (stage 2): the share of HashHop rows
    whose hashes are near misses of each other (task.extra.hashhop_near_miss); ``query_reads`` (stage 2): read targets
    in each HashHop question too (task.extra.hashhop_query_reads); ``cot_reads`` (stage 2): read targets at the space
    after each hash a CoT answer writes (task.extra.hashhop_cot_reads); ``second_read_jumps`` (stage 2): a CoT answer's
    jumps are targets of the second read too (task.extra.hashhop_second_read_jumps); ``second_read_copies`` (stage 2):
    task.extra.hashhop_second_read_copies, which count only with ``copy_read_loss`` (stage 2: the copy targets' weight in
    the read loss; COPY_READ_LOSS by default, 0: copies unsupervised); ``second_read_copies`` / ``read_query_confusers``
    None: READ_SECOND_READ_COPIES / READ_QUERY_CONFUSERS, or 0 where ``copy_read_loss`` / ``read_confusers`` is 0 (which
    they need); ``copy_read_each_head`` (stage 2, with ``copy_read_loss``):
    MixerConfig.copy_read_each_head; ``pointer_length_gain`` (stage 2, with ``pointer``):
    beyond the row length a pointer's bonus grows by the read's length gain once more (MixerConfig.pointer_length_ref);
    ``pointer_jitter`` / ``pointer_read_loss`` (stage 2, with ``pointer``): MixerConfig.pointer_jitter / pointer_read_loss;
    ``read_confusers`` / ``read_query_confusers`` (stage 2): MixerConfig.read_confusers / read_query_confusers;
    ``needle_far_keys`` / ``needle_asked`` / ``needle_reads`` / ``needle_hold`` (stage 2): task.extra.needle_far_keys /
    needle_max_asked / needle_reads / needle_hold (hashhop.ltm2.data.build_needle); ``needle_share`` (stage 2): the needle rows' share of the mixture,
    the code rows' share moving by as much. ``conv_kernel`` (both stages): the encoder's convolution width, so each key
    sees the last 1 + encoder_layers x (conv_kernel - 1) bytes (the stage-2 value must be the stage-1 weights')."""
    from hashhop.lab.config import RunConfig

    second_read_copies, read_query_confusers = resolve_copy_defaults(second_read_copies, copy_read_loss, read_query_confusers, read_confusers)
    if stage == 2 and second_read_copies and not copy_read_loss:
        raise HashHopError(
            "second_read_copies adds copy targets, which the read loss weighs by copy_read_loss (0 here: copies"
            " unsupervised): set copy_read_loss > 0 with it"
        )
    if stage == 2 and copy_read_each_head and not copy_read_loss:
        raise HashHopError("copy_read_each_head scores the copy read targets, which count only with copy_read_loss > 0: set it too")
    lr, warmup = (3e-3, 100) if stage == 1 else (READ_LR, 50)
    mixer = {**MIXER, "conv_kernel": conv_kernel}
    seq_len = seq_len or (SEQ_LEN if stage == 1 else READ_SEQ_LEN)
    return RunConfig.from_dict(
        {
            "name": name,
            "task": {"name": "ltm_mixture", "seq_len": seq_len, "extra": {"corpus": corpus, **({"hashhop_max_queries": max_queries} if stage == 2 else {}), **({"hashhop_near_miss": near_miss} if stage == 2 and near_miss else {}), **({"hashhop_query_reads": True} if stage == 2 and query_reads else {}), **({"hashhop_cot_reads": True} if stage == 2 and cot_reads else {}), **({"hashhop_second_read_jumps": True} if stage == 2 and second_read_jumps else {}), **({"hashhop_second_read_copies": second_read_copies} if stage == 2 and second_read_copies else {}), **(needle_extra(needle_far_keys, needle_asked, needle_reads, needle_share, needle_hold) if stage == 2 else {})}},
            "model": {"mixer": mixer if stage == 1 else {**mixer, "read_negatives": read_negatives, "read_top_k": read_top_k, "query_shift": query_shift, **({"pointer": True, "pointer_candidates": pointer_candidates, **({"pointer_length_ref": seq_len} if pointer_length_gain else {}), **({"pointer_jitter": pointer_jitter} if pointer_jitter != 1 else {}), **({"pointer_read_loss": pointer_read_loss} if pointer_read_loss != "off" else {})} if pointer else {}), **({"read_far": read_far, "read_far_span": read_far_span} if read_far else {}), **({"read_confusers": read_confusers, **({"read_query_confusers": read_query_confusers} if read_query_confusers else {})} if read_confusers else {}), **({"copy_read_each_head": True} if copy_read_each_head else {})}, "n_layers": 1, "vocab_size": 256, "mlp_ratio": 0},
            "optim": {"lr": lr, "weight_decay": 0.05, "warmup_steps": warmup, "min_lr_ratio": 0.1},
            "steps": steps,
            "batch_size": max(1, BATCH * SEQ_LEN // seq_len),
            "eval_every": 100,
            "eval_batches": 2,
            "seed": seed + (stage - 1),
            "threads": threads,
            "read_loss": 0.0 if stage == 1 else READ_LOSS,
            "copy_read_loss": 0.0 if stage == 1 else copy_read_loss,
            "init_from": init_from,
        }
    )


def resolve_copy_defaults(
    second_read_copies: int | None, copy_read_loss: float, read_query_confusers: float | None, read_confusers: int
) -> tuple[int, float]:
    """The read stage's second-read copies and question-shaped confusers: each None takes its default, or 0 where the
    option it is a part of is off (copies weighted 0, no confusers), so switching that off needs no second option."""
    if second_read_copies is None:
        second_read_copies = READ_SECOND_READ_COPIES if copy_read_loss else 0
    if read_query_confusers is None:
        read_query_confusers = READ_QUERY_CONFUSERS if read_confusers else 0.0
    return second_read_copies, read_query_confusers


def needle_extra(far_keys: float, asked: int, reads: bool, share: float = READ_NEEDLE_SHARE, hold: bool = READ_NEEDLE_HOLD) -> dict:
    """The stage-2 task extras for needle rows, only those that differ from the first stage's rows."""
    from hashhop.ltm2.data import DEFAULT_MIX

    moved = share - DEFAULT_MIX["needle"]
    return {
        **({"mix": {**DEFAULT_MIX, "needle": share, "code": round(DEFAULT_MIX["code"] - moved, 6)}} if moved else {}),
        **({"needle_far_keys": far_keys} if far_keys else {}),
        **({"needle_max_asked": asked} if asked != READ_NEEDLE_ASKED else {}),
        **({"needle_reads": True} if reads else {}),
        **({"needle_hold": True} if hold else {}),
    }


MAX_BEAMS = 256  # a beam keeps at most this many outputs: each one's next bytes are its 256 likeliest at most


def check_beams(value) -> int:
    """A beam search's width, checked: a whole number from 1 (greedy decoding) to MAX_BEAMS."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BEAMS:
        raise HashHopError(f"beams must be a whole number from 1 to {MAX_BEAMS}, got {value!r}")
    return value


def check_length_penalty(value) -> float:
    """A beam search's length penalty, checked: outputs compared by summed log-probability / length ** it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 4:
        raise HashHopError(
            f"length_penalty must be a number from 0 to 4 (outputs compared by summed log-probability / length**it), got {value!r}"
        )
    return float(value)
