"""Training the LTM model on short HashHop problems in the official text format (``hashhop train``).

Each step draws fresh problems from the data engine (seeded): contexts of ``context_chars``
characters, hash lengths and hop counts mixed, with and without chain of thought. The loss is the
answer's log-likelihood under the model (every hash of a chain-of-thought answer is a slot) plus the
controller's continue/stop decision after each slot. The model reads the whole (short) context with
the full softmax: the training-time forward that the long-context engine must reproduce.

``hashhop train --out PATH.safetensors`` writes three files, each atomically (a temporary file renamed over
the target, :func:`hashhop.checkpoint.write_atomically`): the weights at ``PATH.safetensors``, the summary
at ``PATH.json`` and the model card at ``PATH.card.md`` (:func:`card_path`), all named after the weights
so that nothing else in the folder (an unrelated ``MODEL_CARD.md``) is touched. The one exception: the
shipped weights (``hashhop/ltm/weights/ltm.safetensors``) keep their card at ``hashhop/ltm/weights/MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hashhop.checkpoint import save_checkpoint, write_atomically
from hashhop.errors import HashHopError
from hashhop.ltm.config import FORMAT, WEIGHTS, TrainConfig, card_path, summary_path
from hashhop.ltm.memory import entries_from_text
from hashhop.ltm.model import LTM, LTMConfig, Memory, word_logprob
from hashhop.ltm.text import END, find_words, gather_chars, to_bytes
from hashhop.task.generator import plan
from hashhop.task.grammar import completion_header
from hashhop.task.spec import HashHopSpec


@dataclass
class Example:
    context: np.ndarray
    header: np.ndarray  # (M, W)
    queries: np.ndarray  # (Q, W)
    targets: np.ndarray  # (Q, J, W)
    slot_mask: np.ndarray  # (Q, J)
    slots: int


def _words(text: str, width: int) -> np.ndarray:
    data = to_bytes(text)
    starts, lengths = find_words(data)
    return gather_chars(data, starts, lengths, width)


def make_example(spec: HashHopSpec, cfg: LTMConfig) -> Example:
    problem = plan(spec)
    width = cfg.max_word_chars + 1
    slots = spec.hops if spec.chain_of_thought else 1
    if slots > cfg.max_slots or spec.hops > cfg.max_hops:
        raise HashHopError(f"the model answers at most {cfg.max_hops} hops and {cfg.max_slots} slots")
    queries, targets = [], []
    for chain in problem.queries:
        queries.append(chain.query)
        answer = list(chain.hashes[1:]) if spec.chain_of_thought else [chain.hashes[-1]]
        targets.append(answer + [""] * (cfg.max_slots - len(answer)))
    target_chars = np.zeros((len(targets), cfg.max_slots, width), dtype=np.int64)
    for q, answer in enumerate(targets):
        for j, word in enumerate(answer[:slots]):
            target_chars[q, j] = _words(word, width)[0]
    slot_mask = np.zeros((len(targets), cfg.max_slots), dtype=bool)
    slot_mask[:, :slots] = True
    return Example(
        context=to_bytes(problem.prompt + "\n"),
        header=_words(completion_header(spec.hops, spec.chain_of_thought), width),
        queries=np.stack([_words(q, width)[0] for q in queries]),
        targets=target_chars,
        slot_mask=slot_mask,
        slots=slots,
    )


def _pad_stack(tensors: list[torch.Tensor], fill) -> torch.Tensor:
    size = max(t.shape[0] for t in tensors)
    out = []
    for t in tensors:
        pad = torch.full((size - t.shape[0], *t.shape[1:]), fill, dtype=t.dtype)
        out.append(torch.cat([t, pad]))
    return torch.stack(out)


def batch_memory(model: LTM, examples: list[Example]) -> Memory:
    """The padded dense memories of a batch (gradients flow through the encoders)."""
    parts = []
    for ex in examples:
        starts, lengths = find_words(ex.context)
        parts.append(entries_from_text(model, ex.context, starts, lengths, np.arange(len(starts))))
    return Memory(
        keys=_pad_stack([m.keys[0] for m in parts], 0.0),
        roles=_pad_stack([m.roles[0] for m in parts], 0.0),
        mask=_pad_stack([m.mask[0] for m in parts], False),
        neighbour_keys=_pad_stack([m.neighbour_keys[0] for m in parts], 0.0),
        neighbour_chars=_pad_stack([m.neighbour_chars[0] for m in parts], END),
        neighbour_mask=_pad_stack([m.neighbour_mask[0] for m in parts], False),
    )


def loss_and_metrics(model: LTM, examples: list[Example]) -> tuple[torch.Tensor, dict]:
    memory = batch_memory(model, examples)
    queries = torch.from_numpy(np.stack([ex.queries for ex in examples]))
    header = _pad_stack([torch.from_numpy(ex.header) for ex in examples], END)
    targets = torch.from_numpy(np.stack([ex.targets for ex in examples]))
    slot_mask = torch.from_numpy(np.stack([ex.slot_mask for ex in examples]))
    attentions = model.hops(model.encode(queries), memory)
    depth_logp, continue_logits = model.control(model.encode(header), header[..., 0] != END)
    logw = model.components(attentions, depth_logp)
    word_lp = word_logprob(logw, memory, targets)  # (B, Q, J)
    word_loss = -(word_lp.clamp_min(-30) * slot_mask).sum() / slot_mask.sum()
    slots = torch.tensor([ex.slots for ex in examples])
    position = torch.arange(model.cfg.max_slots)
    continue_target = (position[None] < slots[:, None] - 1).float()
    decided = position[None] < slots[:, None]
    continue_loss = F.binary_cross_entropy_with_logits(continue_logits[decided], continue_target[decided])
    with torch.no_grad():
        right = ((word_lp > np.log(0.5)) | ~slot_mask).all(-1)  # every slot's word is the likeliest
        stops = ((continue_logits > 0) == (continue_target > 0)) | ~decided
        exact = (right & stops.all(-1)[:, None]).float().mean().item()
    return word_loss + continue_loss, {"word_loss": word_loss.item(), "continue_loss": continue_loss.item(), "exact": exact}


def example_stream(train: TrainConfig, cfg: LTMConfig, rng: np.random.Generator):
    while True:
        spec = HashHopSpec(
            context_tokens=train.context_chars,
            tokenizer="chars",
            hops=int(rng.choice(train.hops)),
            chain_of_thought=bool(rng.integers(2)),
            hash_length=int(rng.choice(train.hash_lengths)),
            num_queries=train.num_queries,
            seed=int(rng.integers(2**62)),
        )
        yield make_example(spec, cfg)


def train_ltm(
    train_cfg: TrainConfig, model_cfg: LTMConfig | None = None, out: str = WEIGHTS, progress: bool = True, command: str | None = None
) -> dict:
    """Train from scratch, save the weights (a :mod:`hashhop.checkpoint` file, config in its meta) and a model
    card next to them. ``train_cfg`` validated itself when it was made."""
    model_cfg = model_cfg or LTMConfig()
    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    model = LTM(model_cfg)
    # Scalars (temperatures, offset weights) move 10x faster: Adam moves a parameter about lr per step, and a
    # temperature has to travel from 10 to 50+.
    scalars = [p for p in model.parameters() if p.dim() <= 1 and p.numel() <= 8]
    others = [p for p in model.parameters() if not any(p is q for q in scalars)]
    optimizer = torch.optim.AdamW([{"params": others}, {"params": scalars, "lr": 10 * train_cfg.lr}], lr=train_cfg.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / train_cfg.warmup_steps) * 0.5 * (1 + np.cos(np.pi * min(s, train_cfg.steps) / train_cfg.steps)),
    )
    stream = example_stream(train_cfg, model_cfg, rng)
    steps = range(train_cfg.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="train ltm", unit="step")
    started = time.perf_counter()
    history = []
    for step in steps:
        examples = [next(stream) for _ in range(train_cfg.batch_size)]
        loss, metrics = loss_and_metrics(model, examples)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if (step + 1) % train_cfg.log_every == 0 or step + 1 == train_cfg.steps:
            row = {"step": step + 1, "loss": loss.item(), **metrics, "tau": model.tau.item(), "elapsed_s": time.perf_counter() - started}
            history.append(row)
            if progress and hasattr(steps, "set_postfix"):
                steps.set_postfix(loss=f"{row['loss']:.3f}", exact=f"{row['exact']:.2f}")
    elapsed = time.perf_counter() - started
    summary = save(model, train_cfg, out, elapsed, history, command)
    return summary


def save(model: LTM, train_cfg: TrainConfig, out: str, elapsed_s: float, history: list[dict], command: str | None) -> dict:
    """The weights, their summary and their model card, each written atomically (see the module's notes)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    save_checkpoint(out, model, None, {"format": FORMAT, "config": model.cfg.to_dict(), "train": asdict(train_cfg)})
    params = sum(p.numel() for p in model.parameters())
    summary = {
        "weights": os.path.basename(out),
        "parameters": params,
        "train_seconds": round(elapsed_s, 1),
        "final": history[-1] if history else {},
        "command": command or "hashhop train",
        "seed": train_cfg.seed,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} (torch {torch.__version__}, Python {sys.version.split()[0]})",
        "train_config": asdict(train_cfg),
        "model_config": asdict(model.cfg),
    }
    write_atomically(summary_path(out), json.dumps({**summary, "history": history}, indent=1))
    write_model_card(summary, card_path(out))
    return summary


# What the card says the model is: written into every card, so retraining reproduces it.
WHAT_ITS_NUMBERS_MEAN = """## What its numbers mean
`builtin:ltm` is a hand-built retrieval baseline with a few learnt switches: an upper bound for HashHop, not a learnt long-context model. Its scores come from its wiring: words are cut at `[0-9A-Za-z]`, a value is the next word, it makes a fixed 4 reads, and the `Hops=`/`CoT=` header is read from its words; its long-context engine works as an exact-match hash table on the query's word. The same network with every weight set by hand and no training scores 240/240 at 100K and 1M characters, as does a 10-line Python dict (the trained weights: 240/240). It fails hashes containing `+`, `/` or `_` (8-11/20), hashes of 64+ characters (0/20) and 4 or 5 hops (0/20); off distribution the indexed engine and the dense network agree on 0/20 absent or one-typo keys. Ablations: `python benchmarks/ltm_ablations.py` (benchmarks/RESULTS.md) and docs/ltm.md.
"""


def write_model_card(summary: dict, path: str) -> None:
    """The model card (atomically): how the weights were made, and what their numbers mean."""
    t = summary["train_config"]
    final = summary["final"]
    text = f"""# hashhop LTM reference model

A {summary["parameters"]:,}-parameter character-level memory network (``hashhop/ltm/model.py``,
design in ``docs/ltm.md``), trained by this project's own command:

    {summary["command"]}

| | |
|---|---|
| weights | `{summary["weights"]}` (safetensors in the `hashhop/checkpoint.py` format; the model config is in its metadata) |
| seed | {summary["seed"]} |
| machine | {summary["machine"]} |
| training time | {summary["train_seconds"]} s |
| steps x batch | {t["steps"]} x {t["batch_size"]} problems |
| data | fresh HashHop problems from hashhop's data engine, official text format, {t["context_chars"]}-character contexts, hash lengths {t["hash_lengths"]}, hops {t["hops"]}, with and without chain of thought, {t["num_queries"]} queries each |
| final training batch | loss {final.get("loss", float("nan")):.4f}, exact match {final.get("exact", float("nan")):.3f}, temperature {final.get("tau", float("nan")):.1f} |

Evaluated at 1K to 10M+ characters by ``benchmarks/ltm_scale.py`` (numbers in ``benchmarks/RESULTS.md``);
the harness runs it as ``--model builtin:ltm``.

{WHAT_ITS_NUMBERS_MEAN}"""
    write_atomically(path, text)
