"""Train LTM-2 and ship its weights: ``hashhop train --model ltm2`` (or ``python -m hashhop.ltm2.train``).

1. builds the training code corpus (``hashhop/ltm2/data.py``: pinned PyPI packages, never the held-out ones) if
   it is not there;
2. trains the lab config :func:`hashhop.ltm2.config.ltm2_config` through the lab (``train_run``: checkpoints
   every 100 steps, a rerun resumes; torchrun-ready), then its second stage (the auxiliary read loss) from the
   first stage's weights;
3. writes the weights with their run config in the metadata, and a model card next to them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import time

from hashhop.errors import HashHopError
from hashhop.ltm2.config import (
    BATCH,
    CARD,
    COPY_READ_LOSS,
    MIXER,
    READ_CONFUSERS,
    READ_COT_READS,
    READ_FAR,
    READ_FAR_SPAN,
    READ_NEAR_MISS,
    READ_NEEDLE_ASKED,
    READ_NEEDLE_FAR_KEYS,
    READ_NEEDLE_HOLD,
    READ_NEEDLE_READS,
    READ_NEEDLE_SHARE,
    READ_NEGATIVES,
    READ_POINTER,
    READ_POINTER_CANDIDATES,
    READ_POINTER_JITTER,
    READ_POINTER_LENGTH_GAIN,
    READ_POINTER_READ_LOSS,
    READ_QUERIES,
    READ_QUERY_CONFUSERS,
    READ_QUERY_READS,
    READ_QUERY_SHIFT,
    READ_SECOND_READ_COPIES,
    READ_SECOND_READ_JUMPS,
    READ_SEQ_LEN,
    READ_SOUP,
    READ_STEPS,
    READ_TOP_K,
    SEQ_LEN,
    STEPS,
    WEIGHTS,
    ltm2_config,
    resolve_copy_defaults,
)

RUNS = "runs/ltm2"


def cpu_model() -> str:
    """The CPU's model name (a run's floats drift across CPU types: docs/ltm2.md, Training), else its architecture."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {platform.machine()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def card_path(out: str) -> str:
    return CARD if os.path.realpath(out) == os.path.realpath(WEIGHTS) else os.path.splitext(out)[0] + ".card.md"


def parse_read_soup(text: str | None) -> tuple[int, ...] | None:
    """``--read-soup``: None (not given: the config's READ_SOUP), ``none`` (the read stage once), or seeds ``1,2``."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise HashHopError(f"--read-soup takes whole-number seeds separated by commas (e.g. 0,1) or 'none', got {text!r}") from None


def train_ltm2(
    out: str = WEIGHTS,
    runs: str = RUNS,
    corpus: str | None = None,
    steps: int = STEPS,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    command: str = "hashhop train --model ltm2",
    log=print,
    read_steps: int = READ_STEPS,
    read_seq_len: int = READ_SEQ_LEN,
    read_negatives: int = READ_NEGATIVES,
    init_from: str | None = None,
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
    conv_kernel: int | None = None,
    second_read_jumps: bool = READ_SECOND_READ_JUMPS,
    pointer_jitter: float = READ_POINTER_JITTER,
    pointer_read_loss: str = READ_POINTER_READ_LOSS,
    read_confusers: int = READ_CONFUSERS,
    read_query_confusers: float | None = None,
    second_read_copies: int | None = None,
    copy_read_loss: float = COPY_READ_LOSS,
    copy_read_each_head: bool = False,
    read_soup: tuple[int, ...] | None = None,
) -> dict:
    """Build the corpus if needed, train (or resume) the run in ``runs``, write ``out`` and its model card.
    ``init_from`` (weights, e.g. the shipped file): no first stage; the second starts from these.
    ``conv_kernel``: the encoder's convolution width (None: the init weights' with ``init_from``, else the config's).
    ``read_soup``: more seeds for the read stage: it is trained once more from the same start with each (as ``seed``
    would train it), and ``out`` holds the mean of every such run's weights (a uniform model soup); None: the config's
    READ_SOUP runs in all, seeds ``seed + 1``, ... (none without a read stage); (): the read stage once."""
    from hashhop.ltm2.data import HASHHOP_MAX_QUERIES, build_train_corpus

    if not out.endswith(".safetensors"):
        raise HashHopError("--out names the weights file: PATH.safetensors (its model card PATH.card.md goes next to it)")
    if read_soup is None:
        read_soup = tuple(range(seed + 1, seed + READ_SOUP)) if read_steps else ()
    if read_soup and not read_steps:
        raise HashHopError("--read-soup averages read stages: give it --read-steps > 0")
    if len({seed, *read_soup}) != 1 + len(read_soup):
        raise HashHopError(f"--read-soup seeds must differ from each other and from --seed {seed}, got {','.join(map(str, read_soup))}")
    for read_seed in read_soup:  # each soup seed's config checked before stage 1 runs (a bad seed: one line, no work lost)
        ltm2_config("corpus", read_steps, read_seed, threads=threads, stage=2)
    if init_from:  # checked before the corpus is built (minutes on a fresh machine)
        if not read_steps:
            raise HashHopError("--init-from starts the second stage from those weights: give it --read-steps > 0")
        from hashhop.lab.train import init_from_path

        init_from_path(init_from)
    corpus = corpus or os.path.join(runs, "train_corpus.bin")
    os.makedirs(runs, exist_ok=True)
    started = time.time()
    if os.path.exists(corpus):
        corpus_info = {"path": corpus, "bytes": os.path.getsize(corpus), "sha256": _sha256(corpus)}
    else:
        log(f"building the training code corpus at {corpus}")
        corpus_info = build_train_corpus(corpus)
    from hashhop.lab.train import train_run

    second_read_copies, read_query_confusers = resolve_copy_defaults(second_read_copies, copy_read_loss, read_query_confusers, read_confusers)
    if conv_kernel is None:
        conv_kernel = _init_conv_kernel(init_from) if init_from else MIXER["conv_kernel"]
    kernel_name = f"_k{conv_kernel}" if conv_kernel != MIXER["conv_kernel"] else ""
    if init_from:
        init, stages = init_from, []
    else:
        cfg = ltm2_config(corpus, steps=steps, seed=seed, name="ltm2" + kernel_name, threads=threads, conv_kernel=conv_kernel)
        stages = [train_run(cfg, runs, progress=progress, log=log)]
        init = os.path.join(runs, cfg.name)
    if read_steps:
        name = "ltm2_reads" + kernel_name + (f"_{read_seq_len}" if read_seq_len != SEQ_LEN else "") + (f"_far{read_negatives}" if read_negatives != READ_NEGATIVES else "")
        name += (f"_top{read_top_k}" if read_top_k else "") + ("_shift" if query_shift else "") + (f"_ptr{pointer_candidates if pointer_candidates > 1 else ''}" if pointer else "") + (f"_farread{read_far}" if read_far else "") + (f"_span{read_far_span:.0e}".replace("+", "") if read_far and read_far_span != READ_FAR_SPAN else "") + (f"_q{max_queries}" if max_queries != HASHHOP_MAX_QUERIES else "") + (f"_near{near_miss:g}" if near_miss else "") + ("_qreads" if query_reads else "") + ("_creads" if cot_reads else "") + ("_r1jumps" if second_read_jumps else "") + (f"_r1copies{second_read_copies}" if second_read_copies else "") + (f"_closs{copy_read_loss:g}" if copy_read_loss != COPY_READ_LOSS else "") + ("_ceach" if copy_read_each_head else "")
        name += ("_plen" if pointer and pointer_length_gain else "") + (f"_jit{pointer_jitter:g}" if pointer and pointer_jitter != 1 else "") + (f"_ploss{pointer_read_loss}" if pointer and pointer_read_loss != "off" else "") + (f"_conf{read_confusers}" if read_confusers else "") + (f"_qconf{read_query_confusers:g}" if read_confusers and read_query_confusers else "")
        name += (f"_nfar{needle_far_keys:g}" if needle_far_keys else "") + (f"_nq{needle_asked}" if needle_asked != READ_NEEDLE_ASKED else "") + ("_nreads" if needle_reads else "") + ("_nhold" if needle_hold else "") + (f"_ns{needle_share:g}" if needle_share != READ_NEEDLE_SHARE else "")
        read_configs = [
            ltm2_config(  # (the folder names how the stage differs from stage 1; a soup's other seeds, which seed)
                corpus, read_steps, read_seed, name + (f"_seed{read_seed}" if read_seed != seed else ""), threads, stage=2, init_from=init,
                    seq_len=read_seq_len, read_negatives=read_negatives,
                read_top_k=read_top_k, query_shift=query_shift, max_queries=max_queries, pointer=pointer, read_far=read_far,
                read_far_span=read_far_span, pointer_candidates=pointer_candidates, near_miss=near_miss, query_reads=query_reads,
                pointer_length_gain=pointer_length_gain, needle_far_keys=needle_far_keys, needle_asked=needle_asked, needle_reads=needle_reads,
                needle_share=needle_share, needle_hold=needle_hold, cot_reads=cot_reads, conv_kernel=conv_kernel,
                second_read_jumps=second_read_jumps, pointer_jitter=pointer_jitter, pointer_read_loss=pointer_read_loss,
                read_confusers=read_confusers, read_query_confusers=read_query_confusers, second_read_copies=second_read_copies,
                copy_read_loss=copy_read_loss, copy_read_each_head=copy_read_each_head,
            )
            for read_seed in (seed, *read_soup)
        ]
        soup = [train_run(read_cfg, runs, progress=progress, log=log) for read_cfg in read_configs]
        stages.append(soup[0])
        run_dirs = [os.path.join(runs, read_cfg.name) for read_cfg in read_configs]
        return ship(run_dirs, out, stages, corpus_info, command, time.time() - started, soup=soup[1:])
    return ship(os.path.join(runs, cfg.name), out, stages, corpus_info, command, time.time() - started)


def ship(run_dir: str | list[str], out: str, stages: list[dict], corpus_info: dict, command: str, wall_s: float, soup: list[dict] | None = None) -> dict:
    """Write a finished run's weights to ``out`` (format hashhop-ltm2, run config in the metadata) and the card.
    ``stages``: the lab summaries of the stages that made them, the last one's run folder is ``run_dir``. A list of
    run folders (a read-stage soup; ``soup`` the summaries of all but the first): the mean of their weights."""
    summary = stages[-1]
    from hashhop.checkpoint import save_checkpoint, write_atomically
    from hashhop.ltm2.load import FORMAT, load_ltm2

    run_dirs = [run_dir] if isinstance(run_dir, str) else list(run_dir)
    if len(soup or []) != len(run_dirs) - 1:
        raise ValueError(f"ship: {len(run_dirs)} run folders need the summaries of all but the first as soup, got {len(soup or [])}")
    model = average_weights([load_ltm2(d) for d in run_dirs])
    config = json.loads(json.dumps(summary["config"]))
    extra = config["task"]["extra"]
    if extra.get("corpus"):
        extra["corpus"] = os.path.basename(extra["corpus"])  # no machine paths in shipped weights
    if config.get("init_from"):
        config["init_from"] = os.path.basename(os.path.normpath(config["init_from"]))
    steps = sum(stage["steps"] for stage in stages + (soup or []))
    meta = {"format": FORMAT, "config": config, "params": summary["params"], "steps": steps, "stage_steps": [s["steps"] for s in stages + (soup or [])]}
    if len(run_dirs) > 1:
        meta["read_soup_seeds"] = [summary["config"]["seed"]] + [s["config"]["seed"] for s in soup or []]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_checkpoint(out, model, None, meta)
    write_atomically(card_path(out), model_card(stages, corpus_info, command, wall_s, soup or []))
    return {**summary, "steps": steps, "weights": out, "card": card_path(out)}


def average_weights(models: list):
    """The first model with every floating-point tensor replaced by the mean over ``models`` (same architecture)."""
    import torch

    first = models[0]
    if len(models) > 1:
        states = [m.state_dict() for m in models]
        with torch.no_grad():
            for key, tensor in states[0].items():
                if tensor.is_floating_point():
                    tensor.copy_(torch.stack([state[key].float() for state in states]).mean(0).to(tensor.dtype))
    return first


def model_card(stages: list[dict], corpus_info: dict, command: str, wall_s: float, soup: list[dict] | None = None) -> str:
    from hashhop.ltm2.data import DEFAULT_MIX, SHORT_RECALL, TRAIN_PACKAGES

    soup = soup or []
    summary = stages[-1]
    cfg = summary["config"]
    steps = " + ".join(str(s["steps"]) for s in stages) + "".join(f" + {s['steps']}" for s in soup)
    total_steps = sum(s["steps"] for s in stages + soup)
    elapsed_s = sum(s["elapsed_s"] or 0 for s in stages + soup)
    second = (
        f" Stage 2 ({stages[-1]['steps']} steps, seed {cfg['seed']}, lr {cfg['optim']['lr']}) starts from stage 1's"
        f" weights and adds the auxiliary read loss (weight {cfg['read_loss']}): at each jump of a HashHop answer"
        " to a link, -log of the first read's share on that link's entry (without chain of thought: the first read on"
        " the intermediate hash, the second on the next link)."
        + (
            f" The same loss on every other byte of an answer (copied out of a link), averaged apart from the jumps,"
            f" weight {cfg['copy_read_loss']}."
            if cfg.get("copy_read_loss")
            else ""
        )
        if len(stages) > 1
        else ""
    )
    mixer = cfg["model"]["mixer"]
    if len(stages) == 1 and cfg.get("init_from") and cfg.get("read_loss"):
        second = (
            f" This run is the read-loss stage alone ({stages[0]['steps']} steps, seed {cfg['seed']}, lr {cfg['optim']['lr']},"
            f" read loss weight {cfg['read_loss']}), started from the weights `{os.path.basename(os.path.normpath(cfg['init_from']))}`."
            + _init_card_summary(cfg["init_from"])
            + (
                f" The read loss also scores a HashHop answer's copied bytes (all but its jumps: each copied out of a link),"
                f" averaged apart from the jumps, weight {cfg['copy_read_loss']}."
                if cfg.get("copy_read_loss")
                else ""
            )
        )
    if mixer.get("copy_read_each_head"):
        second += (
            " At those copies each head of a read is scored on its own share (the mean of the heads' -log shares), not on"
            " the heads' average share, which one head earns alone."
        )
    if mixer.get("read_top_k"):
        second += (
            f" Its reads keep each query's {mixer['read_top_k']} best entries and the sink (found without autograd, then"
            " scored with it), as the engine reads; rows of"
            f" {cfg['task']['seq_len']:,} bytes"
            + (f", a HashHop row asking up to {cfg['task']['extra']['hashhop_max_queries']} queries." if cfg["task"]["extra"].get("hashhop_max_queries") else ".")
        )
    if mixer.get("pointer"):
        second += (
            " Each read may also follow a pointer: the entry after the one it gave most weight at the previous position"
            " is a candidate whose logit gets a learnt bonus (the previous read's weight on it times a learnt gain, plus a"
            " learnt function of the hidden state; zero at the start of the stage), so a read can copy forward from a"
            " link its own window does not match exactly."
            + (
                f" The pointer has {mixer['pointer_candidates']} candidates, each with its own bonus: the entry after that one, the"
                " same entry again (the query has a byte its link lacks)"
                + (", and the entry after the next (the link has a byte more)." if mixer["pointer_candidates"] > 2 else ".")
                if mixer.get("pointer_candidates", 1) > 1
                else ""
            )
        )
    if mixer.get("pointer_length_ref"):
        second += (
            f" Beyond {mixer['pointer_length_ref']:,} entries (the stage's rows) a pointer's bonus grows by the read's length"
            " gain once more (ln-length, as the reads' sharpness): inactive in training, it extends the bonus learnt against"
            " a row's few near matches to a long memory's many."
        )
    if mixer.get("pointer_jitter", 1) > 1:
        second += (
            f" In training each row's pointer bonuses are multiplied by a factor drawn log-uniformly from [1,"
            f" {mixer['pointer_jitter']:g}], as the length gain multiplies them beyond the stage's rows (1.42x at 1M entries,"
            " 1.90x at 100M): the reads after a pointer are also trained where it is stronger than a 16K row makes it."
        )
    if mixer.get("pointer_read_loss", "off") != "off":
        second += (
            " The auxiliary read loss scores each supervised read as the read computes it, each pointer candidate's logit"
            " with its bonus, so the targets train the bonuses too (and push a bonus down where the target lies off the"
            " entry the pointer follows)"
            + (": only the bonus's part from the hidden state, its part per unit of confidence left to the language-model loss." if mixer["pointer_read_loss"] == "gated" else ".")
        )
    if mixer.get("read_confusers"):
        second += (
            f" Each step, {mixer['read_confusers']:,} confusers join every supervised read's softmax (the loss's, not the"
            " forward read's): windows copied from the reads' target entries with their letters and digits replaced by random"
            " ones of the same kind (other links of the same shape, as a long memory holds by the hundred thousand), encoded"
            " in the same pass, so the keys learn to tell such windows apart."
            + (
                f" {mixer['read_query_confusers']:.0%} of them are drawn instead from the reading positions' own windows, the"
                " trailing run of letters and digits kept (other links laid out as the question is, whose hash starts as the"
                " copy so far)."
                if mixer.get("read_query_confusers")
                else ""
            )
        )
    if mixer.get("read_far"):
        second += (
            f" The reads at answer positions (those with read targets) also see {mixer['read_far']:,} entries (keys and values)"
            " kept from earlier batches' recall rows, as a uniform sample of a longer memory: each row draws its length"
            f" log-uniformly up to {mixer['read_far_span']:,} entries, each far entry's logit counts its share of them and the"
            " reads are as sharp as over that length. Content reads then fail as at length, and the answers must be carried"
            " by what still works there."
        )
    near_miss = cfg["task"]["extra"].get("hashhop_near_miss")
    if near_miss:
        second += (
            f" In {near_miss:.0%} of its HashHop rows a quarter to three quarters of the hashes are rewritten to keep another"
            " hash's first or last 1-8 characters (the rest drawn afresh): the near misses a long context holds."
        )
    if cfg["task"]["extra"].get("hashhop_query_reads"):
        second += (
            " Each HashHop question `H1 = '` has two read targets of its own (as a chain-of-thought answer has after each"
            " hash it writes): after `H1 ` its first link's `=`, after `H1 = ` the link's space after `=`, so a pointer"
            " that stays there (or steps over the last link's quote) can carry the answer's first jump."
        )
    if cfg["task"]["extra"].get("hashhop_cot_reads"):
        second += (
            " In a chain-of-thought answer, the space after each hash it writes (before the last) is a read target too"
            " (both reads), out of the link that hash starts: the pointer must let go of the link the hash was copied from, whose"
            " window ends the same way, so the read is on the next link before its `= ` is written."
        )
    if cfg["task"]["extra"].get("hashhop_second_read_jumps"):
        second += (
            " A chain-of-thought answer's jumps (its first byte; after each hash it writes, the `=` and the next hash's first"
            " byte) are read targets of the second read too, the same entries as the first read's."
        )
    if cfg["task"]["extra"].get("hashhop_second_read_copies"):
        second += (
            f" Each hash's copied bytes 1-{cfg['task']['extra']['hashhop_second_read_copies']} (after its jump) are read targets"
            " of the second read too, the same entries as the first read's."
        )
    extra = cfg["task"]["extra"]
    needle = [
        *([f"ask up to {extra['needle_max_asked']} questions each"] if extra.get("needle_max_asked") else []),
        *(
            [f"in {extra['needle_far_keys']:.0%} of them put an aside between the question's key and the answer (the key 15-50 bytes back; half of those answers start with the space)"]
            if extra.get("needle_far_keys")
            else []
        ),
        *(["make each answer's value a read target (out of its needle)"] if extra.get("needle_reads") else []),
        *(
            ["where a question's text after the key is its needle's, hold the reads over the aside on the needle's byte after its key, then step along the needle to the value"]
            if extra.get("needle_hold")
            else []
        ),
    ]
    if extra.get("mix"):
        second += f" Its mixture: {json.dumps(extra['mix'])}."
    if needle:
        second += " Its needle rows " + "; ".join(needle) + "."
    if mixer.get("read_negatives"):
        second += (
            f" Each supervised read must also beat up to {mixer['read_negatives']:,} keys kept from earlier batches' recall"
            " rows (its softmax sharpened for that many more entries): reads trained as over a long memory."
        )
    if soup:
        seeds = [cfg["seed"]] + [s["config"]["seed"] for s in soup]
        second += (
            f" The weights are a uniform model soup: that read stage was trained {len(seeds)} times from the same start, with"
            f" seeds {', '.join(map(str, seeds))} (everything else the same), and each weight here is the mean of the"
            " runs' weights."
        )
    machine = f"{os.cpu_count()} CPU cores ({cpu_model()}), Python {platform.python_version()}"
    try:
        import torch

        machine += f", torch {torch.__version__}" + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU")
    except ImportError:  # pragma: no cover
        pass
    return f"""# LTM-2 model card

A byte-level causal language model (256 symbols in, 256 out) with a learnt long-term memory
(`hashhop/ltm2/model.py`): a causal convolution encoder (width {mixer['conv_kernel']}, {mixer['encoder_layers']} layers: each key sees the last
{1 + mixer['encoder_layers'] * (mixer['conv_kernel'] - 1)} bytes) writes one key and one value per byte of context;
every position of a small deep stack (local attention over {mixer['window']} bytes, a memory read, an MLP; {mixer['layers']}
blocks) reads the memory with a learnt query, softmax over every earlier entry plus a sink. Nothing in the network,
engine or server parses the text.{second}

| | |
|---|---|
| parameters | {summary['params']:,} |
| command | `{command}` (it trains the lab config `hashhop/ltm2/config.py`, or finishes and ships a run folder that already holds it) |
| seed | {stages[0]['config']['seed']}{f" (stage 1), {cfg['seed']} (stage 2)" if len(stages) > 1 else ""}{"".join(f", {s['config']['seed']}" for s in soup)}{" (the read stages averaged)" if soup else ""} |
| steps x batch x bytes | {f'({steps})' if len(stages) + len(soup) > 1 else steps} x {cfg['batch_size']} x {cfg['task']['seq_len']} ({total_steps * cfg['batch_size'] * cfg['task']['seq_len']:,} bytes) |
| training time | {elapsed_s:.0f} s (the lab runs' own clocks, resumes included; written {datetime.date.today()}) |
| machine | {machine} |
| final eval on the mixture (2 batches) | {_final(summary)}{f" (the seed-{cfg['seed']} run's, before averaging)" if soup else ""} |

## Data
Generated on the fly (`hashhop/ltm2/data.py`, mixture {json.dumps(DEFAULT_MIX)}; {SHORT_RECALL:.0%} of the recall rows
hold a shorter task after a code window):
- code: the Python sources of {', '.join(TRAIN_PACKAGES)} ({corpus_info.get('bytes', 0):,} bytes, sha256
  `{corpus_info.get('sha256', '?')}`), random windows;
- HashHop in Magic's format (hops 1-4, CoT on and off, hash lengths 4-64, six alphabets), other key-value layouts
  (`->`, `:`, JSON, Python, `;`), needle sentences in code or prose, variable chains; loss on the answers only.

Never trained on or tuned against: the held-out code (CPython's standard library, torch, numpy, matplotlib,
networkx: `hashhop/lab/corpus.py`), RULER's needle sentence and `VAR` form, and the layouts of the
"never trained on" rows of `benchmarks/RESULTS.md`.

## What its numbers mean
Every number is in `benchmarks/RESULTS.md` (sections `ltm2_recall`, `ltm2_code`, `ltm2_engine`) beside the
same table for the untrained network and for the trained network with its memory switched off. Where those
ablations score as well as the trained weights, the number is about the wiring, not about learning.
"""


def _init_card_summary(init_from: str) -> str:
    """What the card next to the weights a stage started from says they are (its steps and time rows), if one is there."""
    path = card_path(init_from) if init_from.endswith(".safetensors") else ""
    if not path or not os.path.exists(path):
        return ""
    rows = {}
    with open(path) as handle:
        for line in handle:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 2 and cells[0] in ("steps x batch x bytes", "training time", "seed", "command"):
                rows[cells[0]] = cells[1]
    if "training time" not in rows:
        return ""
    return (
        f" Those weights' own card: steps x rows x bytes {rows.get('steps x batch x bytes', '?')}, seed {rows.get('seed', '?')},"
        f" training time {rows['training time']}, command {rows.get('command', '?').split(' (')[0]}."
    )


def _init_conv_kernel(init_from: str) -> int:
    """The encoder's convolution width of the weights a second stage starts from (the config's if they do not say)."""
    from hashhop.checkpoint import read_checkpoint_meta

    config_path = os.path.join(init_from, "config.json")
    try:
        if os.path.isdir(init_from):
            with open(config_path) as handle:
                config = json.load(handle)
        else:
            config = read_checkpoint_meta(init_from).get("config") or {}
        kernel = config["model"]["mixer"]["conv_kernel"]
    except (OSError, ValueError, KeyError, TypeError, HashHopError):
        return MIXER["conv_kernel"]  # unreadable weights fail with their own message when the stage loads them
    return kernel if isinstance(kernel, int) and not isinstance(kernel, bool) else MIXER["conv_kernel"]


def _final(summary: dict) -> str:
    def show(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    return f"answer exact match {show(summary.get('exact_match'))}, byte accuracy {show(summary.get('token_accuracy'))}"


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    import sys

    from hashhop.cli.common import Parser

    ap = Parser(prog="python -m hashhop.ltm2.train", description=__doc__.split("\n\n")[0])  # one-line errors, exit 2
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--read-steps", type=int, default=READ_STEPS, help="steps of the second stage (auxiliary read loss); 0: none")
    ap.add_argument("--read-seq-len", type=int, default=READ_SEQ_LEN, help="bytes per row in the second stage (the memory its reads span; same bytes per step)")
    ap.add_argument("--read-negatives", type=int, default=READ_NEGATIVES, help="second stage: keys of earlier batches each supervised read must also beat (0: none)")
    ap.add_argument("--read-top-k", type=int, default=READ_TOP_K, help="second stage: each read keeps its k best entries, as the engine's do (0: every entry)")
    ap.add_argument(
        "--query-shift", action=argparse.BooleanOptionalAction, default=READ_QUERY_SHIFT,
        help="second stage: each read's query may take in the previous position's key (a learnt share, zero at the start)",
    )
    ap.add_argument(
        "--pointer", action=argparse.BooleanOptionalAction, default=READ_POINTER,
        help="second stage: each read may follow the entry after the one it read at the previous position (a learnt bonus, zero at the start)",
    )
    ap.add_argument(
        "--read-far", type=int, default=READ_FAR,
        help="second stage: far entries of earlier batches the reads at answer positions also see, as a sample of a longer memory (0: none)",
    )
    ap.add_argument("--read-far-span", type=int, default=READ_FAR_SPAN, help="second stage: the longest memory (entries) the far entries stand for")
    ap.add_argument(
        "--pointer-candidates", type=int, default=READ_POINTER_CANDIDATES,
        help="second stage: the pointer's candidates: 1 the entry after the last read's; 2 also the same one; 3 also the one after the next",
    )
    ap.add_argument(
        "--near-miss", type=float, default=READ_NEAR_MISS,
        help="second stage: the share of HashHop rows whose hashes share their first or last characters with another's (0: none)",
    )
    ap.add_argument(
        "--query-reads", action=argparse.BooleanOptionalAction, default=READ_QUERY_READS,
        help="second stage: read targets inside each HashHop question too (its first link's = and the entry before the value)",
    )
    ap.add_argument(
        "--cot-reads", action=argparse.BooleanOptionalAction, default=READ_COT_READS,
        help="second stage: a read target at the space after each hash a chain-of-thought answer writes (out of the link it starts)",
    )
    ap.add_argument(
        "--second-read-jumps", action=argparse.BooleanOptionalAction, default=READ_SECOND_READ_JUMPS,
        help="second stage: a chain-of-thought answer's jumps are read targets of the second block's read too",
    )
    ap.add_argument(
        "--pointer-jitter", type=float, default=READ_POINTER_JITTER,
        help="second stage, with --pointer: each row's pointer bonuses times a factor drawn log-uniformly from [1, this] in training (1: off)",
    )
    ap.add_argument(
        "--pointer-read-loss", choices=("off", "bonus", "gated"), default=READ_POINTER_READ_LOSS,
        help="second stage, with --pointer: the read loss scores reads with the pointer's bonuses, so its targets train them too (gated: only their part from the hidden state)",
    )
    ap.add_argument(
        "--read-confusers", type=int, default=READ_CONFUSERS,
        help="second stage: per step, this many windows like the read targets' with fresh random hash characters, whose keys (same pass) every supervised read must also beat (0: none)",
    )
    ap.add_argument(
        "--read-query-confusers", type=float, default=None, metavar="SHARE",
        help=f"second stage, with --read-confusers: this share of them drawn from the reading positions' own windows, the trailing run of letters and digits kept (0: none; default {READ_QUERY_CONFUSERS:g}, 0 with --read-confusers 0)",
    )
    ap.add_argument(
        "--second-read-copies", type=int, default=None, metavar="N",
        help=f"second stage: each hash's copied bytes 1..N (after its jump) are read targets of the second block's read too (0: none; default {READ_SECOND_READ_COPIES}, 0 with --copy-read-loss 0)",
    )
    ap.add_argument(
        "--copy-read-loss", type=float, default=COPY_READ_LOSS, metavar="W",
        help=f"second stage: the weight of the copy read targets in the read loss (default {COPY_READ_LOSS:g}; 0: copies unsupervised; --second-read-copies needs > 0)",
    )
    ap.add_argument(
        "--copy-read-each-head", action="store_true",
        help="second stage: the copy read targets score each head on its own share, not the heads' average (needs --copy-read-loss > 0)",
    )
    ap.add_argument(
        "--pointer-length-gain", action=argparse.BooleanOptionalAction, default=READ_POINTER_LENGTH_GAIN,
        help="second stage, with --pointer: beyond the stage's row length a pointer's bonus grows by the read's length gain once more",
    )
    ap.add_argument(
        "--needle-far-keys", type=float, default=READ_NEEDLE_FAR_KEYS,
        help="second stage: the share of needle rows whose questions put an aside between the key and the answer (0: none)",
    )
    ap.add_argument("--needle-asked", type=int, default=READ_NEEDLE_ASKED, help="second stage: a needle row asks up to this many questions")
    ap.add_argument(
        "--needle-reads", action=argparse.BooleanOptionalAction, default=READ_NEEDLE_READS,
        help="second stage: each needle answer's value is a read target (out of its needle)",
    )
    ap.add_argument(
        "--needle-hold", action=argparse.BooleanOptionalAction, default=READ_NEEDLE_HOLD,
        help="second stage, with --needle-reads and --needle-far-keys: read targets from the question's key to the answer (held over the aside)",
    )
    ap.add_argument(
        "--needle-share", type=float, default=READ_NEEDLE_SHARE,
        help=f"second stage: the needle rows' share of the mixture, the code rows' moving by as much (default {READ_NEEDLE_SHARE}: the first stage's)",
    )
    ap.add_argument("--read-queries", type=int, default=READ_QUERIES, help="second stage: a HashHop row asks up to this many queries")
    ap.add_argument("--init-from", default=None, help="weights (e.g. the shipped file) to start the second stage from: no first stage")
    ap.add_argument(
        "--conv-kernel", type=int, default=None,
        help=f"the encoder's convolution width (each key sees 1 + {MIXER['encoder_layers']} x (width - 1) bytes); default {MIXER['conv_kernel']}, or the --init-from weights' own",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--read-soup", default=None, metavar="SEEDS",
        help=(
            "more seeds for the read stage, comma-separated: it is trained once more with each from the same start, and the weights"
            f" written are the mean of all the runs' (a uniform model soup); 'none': the read stage once; default: {READ_SOUP} runs in all, seeds --seed, --seed + 1, ..."
        ),
    )
    ap.add_argument("--out", default=WEIGHTS)
    ap.add_argument("--runs", default=RUNS, help="the lab run folder (checkpoints; rerun to resume)")
    ap.add_argument("--corpus", default=None, help="training code corpus (built there if missing)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.read_steps < 0:
        ap.error(f"--read-steps must be a whole number >= 0 (0: no second stage), got {args.read_steps}")
    if not 0 <= args.read_negatives <= 1 << 24:
        ap.error(f"--read-negatives must be a whole number from 0 to {1 << 24}, got {args.read_negatives}")
    if not 0 <= args.read_far <= 1 << 24:
        ap.error(f"--read-far must be a whole number from 0 to {1 << 24}, got {args.read_far}")
    if not 1 <= args.read_far_span <= 1 << 40:
        ap.error(f"--read-far-span must be a whole number from 1 to {1 << 40}, got {args.read_far_span}")
    if args.read_far and args.read_negatives:
        ap.error("--read-far and --read-negatives both keep far keys: pick one")
    if not 1 <= args.pointer_candidates <= 3:
        ap.error(f"--pointer-candidates must be 1, 2 or 3, got {args.pointer_candidates}")
    if not 0 <= args.near_miss <= 1:
        ap.error(f"--near-miss must be a number from 0 to 1, got {args.near_miss:g}")
    if not 0 <= args.needle_far_keys <= 1:
        ap.error(f"--needle-far-keys must be a number from 0 to 1, got {args.needle_far_keys:g}")
    if not 0 <= args.needle_share <= 0.47:
        ap.error(f"--needle-share must be a number from 0 to 0.47 (the code rows' share gives what it takes), got {args.needle_share:g}")
    if not 2 <= args.needle_asked <= 256:
        ap.error(f"--needle-asked must be a whole number from 2 to 256, got {args.needle_asked}")
    if args.needle_hold and not (args.needle_reads and args.needle_far_keys):
        ap.error("--needle-hold holds the needle reads through the asides: give it --needle-reads and --needle-far-keys > 0")
    if not 0 <= args.read_top_k <= 1 << 16:
        ap.error(f"--read-top-k must be a whole number from 0 to {1 << 16} (0: every entry), got {args.read_top_k}")
    if not 2 <= args.read_queries <= 4096:
        ap.error(f"--read-queries must be a whole number from 2 to 4096, got {args.read_queries}")
    if args.conv_kernel is not None and not 2 <= args.conv_kernel <= 64:
        ap.error(f"--conv-kernel must be a whole number from 2 to 64, got {args.conv_kernel}")
    if (args.read_negatives or args.read_far) and args.read_confusers:
        ap.error(
            f"--read-confusers ({args.read_confusers}; the read stage's default is {READ_CONFUSERS}) and --read-negatives / --read-far each add"
            " keys to the supervised reads: pass --read-confusers 0 with them"
        )
    if args.second_read_copies is not None and not 0 <= args.second_read_copies <= 64:
        ap.error(f"--second-read-copies must be a whole number from 0 to 64, got {args.second_read_copies}")
    if not 0 <= args.copy_read_loss <= 100:
        ap.error(f"--copy-read-loss must be a number from 0 to 100, got {args.copy_read_loss:g}")
    if args.second_read_copies and not args.copy_read_loss:
        ap.error("--second-read-copies adds copy read targets, which count only with --copy-read-loss W > 0 (0 leaves copies unsupervised)")
    if args.copy_read_each_head and not args.copy_read_loss:
        ap.error("--copy-read-each-head scores the copy read targets, which count only with --copy-read-loss W > 0")
    if args.read_query_confusers is not None and not 0 <= args.read_query_confusers <= 1:
        ap.error(f"--read-query-confusers is a share from 0 to 1, got {args.read_query_confusers:g}")
    if args.read_query_confusers and not args.read_confusers:
        ap.error("--read-query-confusers is a share of --read-confusers: give --read-confusers N > 0 too")
    try:
        read_soup = parse_read_soup(args.read_soup)
    except HashHopError as err:
        ap.error(str(err))
    from hashhop.ltm2.data import MIN_SEQ_LEN

    if not MIN_SEQ_LEN <= args.read_seq_len <= BATCH * SEQ_LEN or BATCH * SEQ_LEN % args.read_seq_len:
        ap.error(f"--read-seq-len must divide {BATCH * SEQ_LEN} (bytes per step) and be at least {MIN_SEQ_LEN}, got {args.read_seq_len}")
    try:
        summary = train_ltm2(
            args.out,
            args.runs,
            args.corpus,
            args.steps,
            args.seed,
            args.threads,
            not args.no_progress,
            read_steps=args.read_steps,
            read_seq_len=args.read_seq_len,
            read_negatives=args.read_negatives,
            init_from=args.init_from,
            read_top_k=args.read_top_k,
            query_shift=args.query_shift,
            max_queries=args.read_queries,
            pointer=args.pointer,
            read_far=args.read_far,
            read_far_span=args.read_far_span,
            pointer_candidates=args.pointer_candidates,
            near_miss=args.near_miss,
            query_reads=args.query_reads,
            pointer_length_gain=args.pointer_length_gain,
            needle_far_keys=args.needle_far_keys,
            needle_asked=args.needle_asked,
            needle_reads=args.needle_reads,
            needle_share=args.needle_share,
            needle_hold=args.needle_hold,
            cot_reads=args.cot_reads,
            conv_kernel=args.conv_kernel,
            second_read_jumps=args.second_read_jumps,
            pointer_jitter=args.pointer_jitter,
            pointer_read_loss=args.pointer_read_loss,
            read_confusers=args.read_confusers,
            read_query_confusers=args.read_query_confusers,
            second_read_copies=args.second_read_copies,
            copy_read_loss=args.copy_read_loss,
            copy_read_each_head=args.copy_read_each_head,
            read_soup=read_soup,
            command="python -m hashhop.ltm2.train " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        )
    except HashHopError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {summary['weights']} and {summary['card']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
