"""The training loop: AdamW with warmup and cosine decay, on-the-fly batches, periodic evaluation,
early stop at a target accuracy, safetensors checkpoints (:mod:`hashhop.checkpoint`), metrics as JSONL and CSV, and resume.

Data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU): every rank draws the same global batch
from the step's seed and trains on its slice; the loss is normalised by the global number of answer
tokens, so N processes take exactly the steps one process takes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import torch
import torch.nn.functional as F

from hashhop.checkpoint import load_checkpoint, save_checkpoint, write_atomically
from hashhop.errors import HashHopError
from hashhop.lab.config import RunConfig
from hashhop.lab.data import IGNORE, eval_config, make_batch, task_vocab
from hashhop.lab.model import LM


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def maybe_init_distributed() -> None:
    """Join the torchrun process group when launched by torchrun."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def batch_for(cfg: RunConfig, step: int, stream: int = 0, read_targets: bool = False) -> tuple[torch.Tensor, ...]:
    """The global batch of a step: the same on every rank and every run with this seed. With ``read_targets`` (the
    auxiliary read loss) the task adds a third tensor: the memory entries each read should find."""
    generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + stream * 7_919_977 + step)
    task = replace(cfg.task, extra={**cfg.task.extra, "read_targets": True}) if read_targets else cfg.task
    batch = make_batch(task, cfg.batch_size, generator)
    if read_targets and len(batch) != 3:
        raise HashHopError(f"task {cfg.task.name} gives no read targets: read_loss / copy_read_loss need ltm_mixture")
    return batch


def weighted_read_targets(reads: torch.Tensor, cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's read targets (batch, seq, reads, kinds, sources) with the kinds weighted 0 masked out (they cost
    nothing), and the weight of each kind: (jumps ``cfg.read_loss``, copies ``cfg.copy_read_loss``)."""
    weights = torch.tensor([cfg.read_loss, cfg.copy_read_loss])[: reads.shape[3]]
    return reads.masked_fill((weights == 0)[None, None, None, :, None], -1), weights


def init_from_path(source: str) -> str:
    """``init_from``'s weights file (a .safetensors file, or a finished run's folder's model.safetensors), its header
    read: weights that cannot be read fail in one line before a run builds its data or trains."""
    from safetensors import SafetensorError, safe_open

    path = os.path.join(source, "model.safetensors") if os.path.isdir(source) else source
    try:
        with safe_open(path, "pt"):
            pass
    except (OSError, SafetensorError) as err:
        raise HashHopError(f"init_from {source}: cannot read weights from {path} ({err})") from None
    return path


def initial_weights(model: torch.nn.Module, source: str) -> None:
    """Load ``init_from``: a .safetensors file (a state dict, or shipped weights whose names start ``model.``) or a
    finished run's folder (its model.safetensors), same shapes. A module's ``optional_at_init`` parameters (a
    mechanism that starts switched off) start at zero where the weights lack them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = init_from_path(source)
    try:
        state = load_file(path)
    except (OSError, SafetensorError) as err:
        raise HashHopError(f"init_from {source}: cannot read weights from {path} ({err})") from None
    if state and all(name.startswith("model.") for name in state) and not any(name.startswith("model.") for name in model.state_dict()):
        state = {name.removeprefix("model."): tensor for name, tensor in state.items()}  # a shipped weights file
    # parameters a module adds as a switch that starts off (a read's query shift, zero at init) may be absent: the
    # model then starts as exactly the network the weights came from
    optional = {f"{prefix}.{name}" if prefix else name for prefix, module in model.named_modules() for name in getattr(module, "optional_at_init", ())}
    state = {**{name: torch.zeros_like(tensor) for name, tensor in model.state_dict().items() if name in optional and name not in state}, **state}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise HashHopError(f"init_from {source}: its weights do not fit this model ({first[1].strip() if len(first) > 1 else first[0]})") from None


def answer_runs(targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Label each position with the id (>= 1) of the answer it belongs to: a maximal run of labelled
    positions is one answer (one query). Returns (ids with 0 where unlabelled, number of answers)."""
    labelled = targets != IGNORE
    starts = labelled & ~F.pad(labelled[:, :-1], (1, 0), value=False)
    ids = torch.cumsum(starts.flatten(), 0).view_as(targets) * labelled
    return ids, int(starts.sum())


@torch.no_grad()
@torch.no_grad()
def evaluate_batches(model: torch.nn.Module, cfg: RunConfig, batches: int, task=None, stream: int = 1) -> dict:
    """Token accuracy and exact match per answer (every token of a query's answer right) on fresh batches."""
    task = task or eval_config(cfg.task)
    eval_cfg = replace(cfg, task=task)
    model.eval()
    correct_tokens = total_tokens = exact = answers = 0
    loss_sum = 0.0
    for i in range(batches):
        inputs, targets = batch_for(eval_cfg, i, stream=stream)
        device = next(model.parameters()).device
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs)
        labelled = targets != IGNORE
        loss_sum += F.cross_entropy(logits[labelled], targets[labelled], reduction="sum").item()
        right = (logits.argmax(-1) == targets) & labelled
        correct_tokens += int(right.sum())
        total_tokens += int(labelled.sum())
        ids, count = answer_runs(targets)
        wrong = torch.bincount(ids[labelled & ~right].flatten(), minlength=count + 1)[1:]
        exact += int((wrong == 0).sum())
        answers += count
    model.train()
    return {
        "loss": loss_sum / max(1, total_tokens),
        "token_accuracy": correct_tokens / max(1, total_tokens),
        "exact_match": exact / max(1, answers),
        "answers": answers,
    }


def lr_at(cfg: RunConfig, step: int) -> float:
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def build_model(cfg: RunConfig) -> LM:
    model_cfg = replace(cfg.model, vocab_size=task_vocab(cfg.task))
    torch.manual_seed(cfg.seed)
    return LM(model_cfg)


def _optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas)


def train_run(cfg: RunConfig, out_dir: str, progress: bool = True, log=print) -> dict:
    """Train one run into ``out_dir/cfg.name``; a finished run is not redone, an interrupted one resumes."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world = _dist()
    run_dir = os.path.join(out_dir, cfg.name)
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary_path):
        summary = _read_summary(summary_path)
        if summary.get("config") == json.loads(json.dumps(cfg.to_dict())):
            return summary
        raise HashHopError(f"{run_dir} holds a finished run of another config: use another name or out dir")
    if cfg.batch_size % world:
        raise HashHopError(f"batch size {cfg.batch_size} does not divide over {world} processes")
    if cfg.init_from and not os.path.exists(os.path.join(run_dir, "checkpoint.safetensors")):
        initial_weights(build_model(cfg), cfg.init_from)  # a bad init_from fails before the run folder is written
    if rank == 0:
        os.makedirs(run_dir, exist_ok=True)
        write_atomically(os.path.join(run_dir, "config.json"), cfg.to_json())
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    model = build_model(cfg).to(device)
    optimizer = _optimizer(model, cfg)
    ckpt = os.path.join(run_dir, "checkpoint.safetensors")
    start, elapsed_s, history = 0, 0.0, []
    if os.path.exists(ckpt):
        meta = load_checkpoint(ckpt, model, optimizer)
        start, elapsed_s = meta.get("step"), meta.get("elapsed_s", 0.0)
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= cfg.steps:
            raise HashHopError(
                f"checkpoint {ckpt} is not one of this run's checkpoints (its step is {str(start)[:40]}): remove it to start over"
            )
        history = _read_metrics(os.path.join(run_dir, "metrics.jsonl"), start, rewrite=rank == 0)
    elif cfg.init_from:
        initial_weights(model, cfg.init_from)
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=cfg.name, unit="step", leave=False)
    tokens_seen, t0 = 0, time.perf_counter()
    reached = None
    step = start
    # The next batch is made on a thread while this one trains (torch releases the GIL in its kernels).
    prefetch = ThreadPoolExecutor(1)
    supervise = cfg.read_loss > 0 or cfg.copy_read_loss > 0  # per kind of target, each averaged over its own
    upcoming = prefetch.submit(batch_for, cfg, start, 0, supervise)
    read_loss = None
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, step)
        inputs, targets, *reads = upcoming.result()
        if step + 1 < cfg.steps:
            upcoming = prefetch.submit(batch_for, cfg, step + 1, 0, supervise)
        n_labelled = int((targets != IGNORE).sum())
        shard = slice(rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world)
        inputs, targets = inputs[shard].to(device), targets[shard].to(device)
        if supervise:  # normalised by the global batch's supervised reads, as the loss is by its labelled tokens
            wanted, read_weights = weighted_read_targets(reads[0], cfg)
            n_reads = (wanted >= 0).any(-1).sum(dim=(0, 1, 2)).to(device)  # per kind
            logits, read_sums, _ = ddp(inputs, read_targets=wanted[shard].to(device))
            read_losses = read_sums * world / n_reads.clamp(min=1)
            read_loss = (read_weights.to(device) * read_losses).sum()
        else:
            logits = ddp(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum") * world / max(1, n_labelled)
        if read_loss is not None:
            loss = loss + read_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        tokens_seen += inputs.numel() * world
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item() / world:.3f}", **({"read": f"{read_losses[0].item() / world:.2f}"} if cfg.read_loss > 0 else {}))
        last = step + 1 == cfg.steps
        if (step + 1) % cfg.eval_every == 0 or last:
            now = time.perf_counter()
            result = evaluate_batches(model, cfg, cfg.eval_batches)
            record = {
                "step": step + 1,
                "train_loss": loss.item() / world,
                **({"train_read_loss": read_losses[0].item() / world} if cfg.read_loss > 0 else {}),
                **({"train_copy_read_loss": read_losses[1].item() / world} if cfg.copy_read_loss > 0 else {}),
                "lr": lr_at(cfg, step),
                **result,
                "tokens_per_s": tokens_seen / max(1e-9, now - t0),
                "elapsed_s": elapsed_s + now - t0,
            }
            history.append(record)
            if rank == 0:
                with open(metrics_path, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                save_checkpoint(ckpt, model, optimizer, {"step": step + 1, "elapsed_s": record["elapsed_s"]})
            if cfg.target_accuracy is not None and result["exact_match"] >= cfg.target_accuracy:
                reached = record
                break
    prefetch.shutdown(cancel_futures=True)
    if bar is not None:
        bar.close()
    final = history[-1] if history else {}
    lengths = {}
    for length in cfg.eval_lengths:
        lengths[str(length)] = evaluate_batches(model, cfg, cfg.eval_batches, task=eval_config(cfg.task, seq_len=length), stream=2)["exact_match"]
    summary = {
        "name": cfg.name,
        "config": json.loads(json.dumps(cfg.to_dict())),
        "params": model.num_params(),
        "state_bytes": model.state_bytes(cfg.task.seq_len),
        "steps": final.get("step", step + 1),
        "exact_match": final.get("exact_match"),
        "token_accuracy": final.get("token_accuracy"),
        "reached_target_step": reached["step"] if reached else None,
        "reached_target_s": reached["elapsed_s"] if reached else None,
        "tokens_per_s": final.get("tokens_per_s"),
        "elapsed_s": final.get("elapsed_s"),
        "length_generalisation": lengths,
    }
    if rank == 0:
        from safetensors.torch import save

        write_atomically(os.path.join(run_dir, "model.safetensors"), save({k: v.contiguous().cpu() for k, v in model.state_dict().items()}))
        _write_csv(history, os.path.join(run_dir, "metrics.csv"))
        write_atomically(summary_path, json.dumps(summary, indent=2))  # last: a summary means the run is finished
        if os.path.exists(ckpt):
            os.remove(ckpt)
        log(
            f"{cfg.name}: exact match {summary['exact_match']:.3f} after {summary['steps']} steps "
            f"({summary['elapsed_s']:.0f} s, {summary['tokens_per_s']:.0f} tokens/s)"
        )
    return summary


def _read_summary(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            summary = json.loads(handle.read(16 << 20))
    except OSError as err:
        raise HashHopError(f"cannot read {path}: {err.strerror or err}") from None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, [[[[...
        summary = None
    if not isinstance(summary, dict):
        raise HashHopError(f"{path} is not a run summary: remove it to train the run again")
    return summary


def _read_metrics(path: str, up_to_step: int, rewrite: bool = True, warn=None) -> list[dict]:
    """The evaluations logged up to ``up_to_step`` (the checkpoint's); later ones are dropped from the file
    (atomically), since they will be redone. It is a log: a line that is not an evaluation record (a line cut
    by a crash, a corrupt one) is skipped with a one-line warning on stderr."""
    if not os.path.exists(path):
        return []
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    kept, skipped = [], []
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    record = None
                step = record.get("step") if isinstance(record, dict) else None
                if isinstance(step, bool) or not isinstance(step, int):
                    skipped.append(number)
                elif step <= up_to_step:
                    kept.append(record)
    except OSError as err:
        raise HashHopError(f"cannot read {path}: {err.strerror or err}") from None
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
        warn(f"{path}: skipped {len(skipped)} line(s) that are not evaluation records (line {shown})")
    if rewrite:
        write_atomically(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _write_csv(history: list[dict], path: str) -> None:
    if not history:
        return
    keys = list(dict.fromkeys(key for record in history for key in record))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_atomically(path, buffer.getvalue())
