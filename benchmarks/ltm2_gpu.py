"""LTM-2 on one GPU, in a few minutes: (1) the encoder's prefill over a 100M-byte context (target >= 2M bytes/s), its
bf16 keys checked against fp32; (2) a training run at scale: the read-loss stage of ``python -m hashhop.ltm2.train``
(stage 2, the lab's own ``train_run``) from the shipped weights on rows of 16K bytes, 16 rows a step. That is also the
experiment the 2-core CPU cannot afford: reads trained over 8x the entries of the shipped run (a 16K-byte row costs
30 s a step there). Its run folder (config.json, model.safetensors) loads with ``load_ltm2`` for the CPU's HashHop
benchmarks (``benchmarks/ltm2_recall.py --weights RUN``). Writes its RESULTS.md section naming the device.

Usage: python benchmarks/ltm2_gpu.py --corpus runs/ltm2_train_corpus.bin [--context 100M] [--train-seconds 180]
       [--runs runs/gpu] [--device cuda]      (``--device cpu`` with small sizes: a smoke test of this script)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import run_script, update_section  # noqa: E402

from hashhop.errors import HashHopError  # noqa: E402
from hashhop.ltm2.config import WEIGHTS, ltm2_config  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.spec import parse_size  # noqa: E402

CHECK_BYTES = 1 << 18  # the bf16 memory is checked against float32 on this many bytes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _write_memory(lm, ids: torch.Tensor, half: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Bytes (1, t) on the device -> the memory's unit keys (t, heads, head_dim) and values (t, value_dim), float32.
    ``half``: encoder and projections in bf16 (autocast), as a GPU prefill runs them."""
    net = lm.blocks[0].mixer
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=half):
        x = lm.blocks[0].norm1(lm.embed(ids))
        keys, values = net.write(x, net.encoder(x))
    return keys[0].transpose(0, 1).float(), values[0].float()


@torch.inference_mode()
def prefill_rate(lm, text: np.ndarray, total: int, chunk: int, device: torch.device) -> dict:
    """Write the memory of ``total`` bytes (``text`` repeated), ``chunk`` bytes at a time: bytes to the device, encoder
    and key/value projections in bf16, keys (int8) and values (fp16) back to the host, the transfers counted. The
    engine's index (product-quantised keys, inverted lists) is built on the host and is not timed here. Also the
    bf16 keys against float32 ones on the first chunk."""
    source = torch.from_numpy(np.resize(text, total))
    first = source[: min(chunk, CHECK_BYTES)].long()[None]
    keys16, values16 = (t.cpu() for t in _write_memory(lm, first.to(device), half=device.type == "cuda"))
    keys32, values32 = _write_memory(copy.deepcopy(lm).cpu(), first, half=False)  # float32 on the CPU: no TF32
    codes16, codes32 = (torch.round(k * 127).to(torch.int8) for k in (keys16, keys32))
    check = {
        "key_error": float((keys16 - keys32).norm() / keys32.norm()),
        "value_error": float((values16 - values32).norm() / values32.norm()),
        "codes_within_one": float(((codes16.int() - codes32.int()).abs() <= 1).float().mean()),
    }
    _write_memory(lm, source[:chunk].to(device).long()[None], half=device.type == "cuda")  # warm-up at the timed shape
    _sync(device)
    started = time.perf_counter()
    for at in range(0, total, chunk):
        part = source[at % len(source) :][: min(chunk, total - at)]
        ids = part.to(device, non_blocking=True).long()[None]
        keys, values = _write_memory(lm, ids, half=device.type == "cuda")
        (keys * 127).round().to(torch.int8).cpu()
        values.to(torch.float16).cpu()
    _sync(device)
    seconds = time.perf_counter() - started
    return {"bytes_per_s": total / seconds, "seconds": seconds, **check}


def read_stage_config(corpus: str, steps: int, seq_len: int, batch: int, init_from: str, name: str, copy_read_loss: float | None = None):
    """Stage 2 of the shipped recipe (read loss, its learning rate and schedule) at ``seq_len``-byte rows, ``batch`` a step;
    ``copy_read_loss``: the weight of the copy reads' targets (None: the recipe's)."""
    cfg = ltm2_config(corpus, steps=steps, stage=2, init_from=init_from, seq_len=seq_len, name=name)
    cfg = cfg.replace(batch_size=batch, eval_every=max(1, steps // 4))
    return cfg if copy_read_loss is None else cfg.replace(copy_read_loss=copy_read_loss)


def train_at_scale(args, device: torch.device) -> dict:
    """Calibrate (a few steps), then as many steps as fit ``--train-seconds``; returns the run's numbers."""
    from safetensors.torch import save_file

    from hashhop.lab.train import train_run

    os.makedirs(args.runs, exist_ok=True)
    init = os.path.join(args.runs, "init_from_shipped.safetensors")
    save_file({k: v.contiguous() for k, v in load_ltm2(args.weights).state_dict().items()}, init)
    torch.backends.cuda.matmul.allow_tf32 = True  # float32 weights and softmax; TF32 products on the GPU
    torch.backends.cudnn.allow_tf32 = True
    name = f"ltm2_gpu_reads_{args.seq_len}"
    for old in ("calibrate", name):  # this benchmark's own scratch runs: a rerun starts them over
        shutil.rmtree(os.path.join(args.runs, old), ignore_errors=True)
    while True:  # a batch the device cannot hold is halved (the table says which batch ran)
        calibrate = read_stage_config(args.corpus, args.calibrate_steps, args.seq_len, args.batch, init, "calibrate", args.copy_read_loss)
        started = time.perf_counter()
        try:
            summary = train_run(calibrate, args.runs, progress=False, log=lambda *_: None)
            break
        except torch.OutOfMemoryError:
            shutil.rmtree(os.path.join(args.runs, "calibrate"), ignore_errors=True)
            if args.batch == 1:
                raise
            print(f"batch {args.batch} x {args.seq_len} bytes does not fit: halving it", flush=True)
            args.batch //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
    calibrate_s = time.perf_counter() - started
    step_s = summary["elapsed_s"] / args.calibrate_steps  # excludes the evaluation
    steps = max(args.calibrate_steps, min(args.max_steps, int(args.train_seconds / step_s)))
    cfg = read_stage_config(args.corpus, steps, args.seq_len, args.batch, init, name, args.copy_read_loss)
    started = time.perf_counter()
    train_run(cfg, args.runs, progress=False, log=lambda *_: None)
    wall_s = time.perf_counter() - started
    with open(os.path.join(args.runs, name, "metrics.jsonl")) as handle:
        history = [json.loads(line) for line in handle if line.strip()]
    return {
        "run": os.path.join(args.runs, name),
        "steps": steps,
        "calibrate_s": calibrate_s,
        "wall_s": wall_s,
        "train_s": history[-1]["elapsed_s"],
        "bytes_per_s": steps * args.batch * args.seq_len / history[-1]["elapsed_s"],
        "history": history,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS, help="the weights to prefill with and to start stage 2 from")
    ap.add_argument("--corpus", required=True, help="the training code corpus (python -m hashhop.ltm2.data --out FILE)")
    ap.add_argument("--context", default="100M", help="bytes to prefill (the corpus repeated)")
    ap.add_argument("--chunk", default="4M", help="bytes per prefill chunk")
    ap.add_argument("--seq-len", type=int, default=16384, help="bytes per training row")
    ap.add_argument("--batch", type=int, default=16, help="rows per training step")
    ap.add_argument("--train-seconds", type=float, default=180.0, help="training time to fill (steps chosen from a calibration)")
    ap.add_argument("--calibrate-steps", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--copy-read-loss", type=float, default=None, help="weight of the copy reads' targets (default: the recipe's)")
    ap.add_argument("--runs", default=os.path.join("runs", "gpu"), help="where the run folders go")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--section", default="ltm2_gpu", help='RESULTS.md section ("" writes none)')
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise HashHopError("no CUDA device (--device cpu runs this script's smoke test)")
    if not os.path.isfile(args.corpus) or os.path.getsize(args.corpus) < args.seq_len + 1:
        raise HashHopError(f"--corpus {args.corpus}: not a training corpus (build one: python -m hashhop.ltm2.data --out FILE)")
    if args.seq_len < 1024 or args.seq_len % 256 or args.batch < 1 or args.calibrate_steps < 1:
        raise HashHopError("--seq-len must be a multiple of 256 from 1024 on, --batch and --calibrate-steps at least 1")
    total, chunk = parse_size(args.context), parse_size(args.chunk)
    if total < 1 or chunk < 1024:
        raise HashHopError("--context must be positive and --chunk at least 1K bytes")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    lm = load_ltm2(args.weights).to(device)
    text = np.fromfile(args.corpus, dtype=np.uint8)
    prefill = prefill_rate(lm, text, total, min(chunk, total), device)
    del lm
    print(f"prefill: {prefill['bytes_per_s']:,.0f} bytes/s over {total:,} bytes ({prefill['seconds']:.1f} s); "
          f"bf16 vs fp32 keys {prefill['key_error']:.2e}, values {prefill['value_error']:.2e}", flush=True)
    train = train_at_scale(args, device)
    first, last = train["history"][0], train["history"][-1]
    lines = [
        f"LTM-2 on {name} (torch {torch.__version__}). Command: `python benchmarks/ltm2_gpu.py {' '.join(sys.argv[1:])}`.",
        "",
        "| what | target | measured |",
        "|---|---|---|",
        f"| prefill: bytes to the GPU, encoder and key/value projections in bf16, keys (int8) and values (fp16) back to"
        f" the host, over {total:,} bytes of code (the training corpus repeated; the engine's index build on the host not"
        f" included) | >= 2M bytes/s | **{prefill['bytes_per_s']:,.0f} bytes/s** ({prefill['seconds']:.1f} s) |",
        f"| the same, bf16 against float32 (on the CPU) on the first {min(chunk, total, CHECK_BYTES):,} bytes | - | keys {prefill['key_error']:.1e},"
        f" values {prefill['value_error']:.1e} relative error; int8 key codes within 1: {prefill['codes_within_one']:.4f} |",
        f"| training at scale: stage 2 (read loss{'' if args.copy_read_loss is None else f', copy reads weighted {args.copy_read_loss:g}'})"
        f" from the shipped weights, {args.batch} rows x {args.seq_len:,} bytes a"
        f" step, float32 (TF32 products), {train['steps']} steps (as many as fit {args.train_seconds:.0f} s after a"
        f" {args.calibrate_steps}-step calibration) | - | **{train['bytes_per_s']:,.0f} bytes/s** ({train['train_s']:.0f} s"
        f" training, {train['wall_s']:.0f} s with evaluations) |",
        f"| its losses, step {first['step']} -> {last['step']} | - | loss {first['train_loss']:.3f} -> {last['train_loss']:.3f},"
        f" jump read loss {first.get('train_read_loss', float('nan')):.2f} -> {last.get('train_read_loss', float('nan')):.2f},"
        + (f" copy read loss {first.get('train_copy_read_loss', float('nan')):.2f} -> {last.get('train_copy_read_loss', float('nan')):.2f}," if args.copy_read_loss else "")
        + f" held-out batch exact match {first.get('exact_match', float('nan')):.3f} -> {last.get('exact_match', float('nan')):.3f} |",
    ]
    print("\n".join(lines))
    print(f"run folder: {train['run']}")
    if args.section:
        update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    run_script(main)
