"""LTM-2's training run as one lab config (Zoology style: the run is data), and where its weights live.

``python -m hashhop.ltm2.train`` (or ``hashhop train --model ltm2``) builds the training code corpus if needed,
trains this config through the lab (resumable, torchrun-ready) and ships the weights with a model card.
Torch-free, so the CLI can show its defaults without importing torch."""

from __future__ import annotations

import os

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
    "query_shift": False,  # tried in a third run (docs/ltm2.md): no change on HashHop, so the shipped run is without it
}


def ltm2_config(corpus: str, steps: int = STEPS, seed: int = 0, name: str = "ltm2", threads: int | None = None):
    """The lab RunConfig that trains LTM-2 (byte-level: vocabulary 256, one lab block whose mixer is ltm2)."""
    from hashhop.lab.config import RunConfig

    return RunConfig.from_dict(
        {
            "name": name,
            "task": {"name": "ltm_mixture", "seq_len": SEQ_LEN, "extra": {"corpus": corpus}},
            "model": {"mixer": MIXER, "n_layers": 1, "vocab_size": 256, "mlp_ratio": 0},
            "optim": {"lr": 3e-3, "weight_decay": 0.05, "warmup_steps": 100, "min_lr_ratio": 0.1},
            "steps": steps,
            "batch_size": BATCH,
            "eval_every": 100,
            "eval_batches": 2,
            "seed": seed,
            "threads": threads,
        }
    )
