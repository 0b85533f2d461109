"""Load LTM-2 weights: the shipped file (``hashhop train --model ltm2``), a lab run folder, or its checkpoint."""

from __future__ import annotations

import json
import os

from hashhop.errors import HashHopError
from hashhop.ltm2.config import WEIGHTS

FORMAT = "hashhop-ltm2"  # the checkpoint meta's format for shipped LTM-2 weights


def load_ltm2(path: str = WEIGHTS, random_init: bool = False):
    """An LTM-2 language model (the lab's ``LM`` with the ``ltm2`` mixer) in eval mode.

    ``path``: a weights file written by :func:`hashhop.ltm2.train.ship` (its run config in the metadata), or a lab
    run folder (``config.json`` + ``model.safetensors``, or its ``checkpoint.safetensors`` while training).
    ``random_init``: the same network with the seed's untrained weights (the random-init ablation)."""
    from hashhop.checkpoint import load_checkpoint, read_checkpoint_meta
    from hashhop.lab.config import RunConfig
    from hashhop.lab.train import build_model

    if os.path.isdir(path):
        config_path = os.path.join(path, "config.json")
        weights = next((os.path.join(path, f) for f in ("model.safetensors", "checkpoint.safetensors") if os.path.exists(os.path.join(path, f))), None)
        if not os.path.exists(config_path) or weights is None:
            raise HashHopError(f"{path} is not an LTM-2 run folder (config.json and model.safetensors)")
        try:
            with open(config_path) as handle:
                config = RunConfig.from_dict(json.load(handle))
        except (OSError, ValueError) as err:
            raise HashHopError(f"cannot read {config_path}: {err}") from None
        prefix = "" if weights.endswith("model.safetensors") else "model."
    else:
        if not os.path.exists(path):
            hint = " (train them: hashhop train --model ltm2)" if os.path.realpath(path) == os.path.realpath(WEIGHTS) else ""
            raise HashHopError(f"no LTM-2 weights at {path}{hint}")
        meta = read_checkpoint_meta(path)
        if meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
            raise HashHopError(f"{path} is not an LTM-2 weights file (its metadata has no {FORMAT} run config)")
        config = RunConfig.from_dict(meta["config"])
        weights, prefix = path, "model."
    if config.model.mixer.name != "ltm2":
        raise HashHopError(f"{path} holds a {config.model.mixer.name} model, not LTM-2")
    model = build_model(config)
    if not random_init:
        load_checkpoint(weights, model, prefix=prefix)
    return model.eval()
