"""LTM-2 on one GPU: the encoder's prefill over 100M bytes (target >= 2M bytes/s) and a short training run at
scale (batch 64 x 8 KB rows). Writes its section of RESULTS.md naming the device. Run by benchmarks/gpu_ltm2.sh.

Usage: python benchmarks/ltm2_gpu.py [--weights PATH] [--context 100M] [--train-steps 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import update_section  # noqa: E402

from hashhop.ltm2.config import WEIGHTS, ltm2_config  # noqa: E402
from hashhop.ltm2.load import load_ltm2  # noqa: E402
from hashhop.task.spec import parse_size  # noqa: E402


@torch.inference_mode()
def prefill_rate(lm, total: int, chunk: int = 1 << 22) -> tuple[float, float]:
    """(bytes/s, seconds) writing keys and values for ``total`` random bytes, chunk by chunk, results on the host
    (int8 keys and values, what the engine keeps) so the transfer is counted."""
    net, device = lm.blocks[0].mixer, next(lm.parameters()).device
    heads = net.cfg.memory_heads
    torch.cuda.synchronize()
    started = time.perf_counter()
    for a in range(0, total, chunk):
        ids = torch.randint(0, 256, (1, min(chunk, total - a)), device=device)
        x = lm.blocks[0].norm1(lm.embed(ids))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            states = net.encoder(x)
            keys = F.normalize(net.key(states).float().view(-1, heads, net.cfg.key_dim // heads), dim=-1)
            values = net.value(states).float()
        (keys * 127).round().to(torch.int8).cpu()
        values.to(torch.float16).cpu()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return total / seconds, seconds


def train_rate(steps: int, batch: int, seq_len: int) -> tuple[float, float]:
    from hashhop.lab.train import _optimizer, build_model

    cfg = ltm2_config("", steps=steps).replace(**{"task.seq_len": seq_len, "batch_size": batch, "task.extra": {"mix": {"hashhop": 0.5, "kv": 0.5, "code": 0.0}}})
    from hashhop.lab.data import make_batch

    model = build_model(cfg).cuda()
    opt = _optimizer(model, cfg)
    generator = torch.Generator().manual_seed(0)
    batches = [make_batch(cfg.task, batch, generator) for _ in range(4)]
    torch.cuda.synchronize()
    started = time.perf_counter()
    for step in range(steps):
        inputs, targets = (t.cuda() for t in batches[step % 4])
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(inputs).float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return steps * batch * seq_len / seconds, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--context", default="100M")
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument("--section", default="ltm2_gpu")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA device")
    device = torch.cuda.get_device_name(0)
    lm = load_ltm2(args.weights).cuda()
    total = parse_size(args.context)
    rate, seconds = prefill_rate(lm, total)
    train_bps, train_s = train_rate(args.train_steps, 64, 8192)
    lines = [
        f"LTM-2 on {device}. Command: `python benchmarks/ltm2_gpu.py {' '.join(sys.argv[1:])}`.",
        "",
        "| what | target | measured |",
        "|---|---|---|",
        f"| prefill (encoder, keys and values to the host as int8) over {total:,} bytes | >= 2M bytes/s | {rate:,.0f} bytes/s ({seconds:.0f} s) |",
        f"| training, {args.train_steps} steps x 64 rows x 8,192 bytes, bf16 | - | {train_bps:,.0f} bytes/s ({train_s:.0f} s) |",
    ]
    print("\n".join(lines))
    update_section(args.section, "\n".join(lines))


if __name__ == "__main__":
    main()
