"""Loading LTM weights: the shipped ones (``builtin:ltm``) or any file ``hashhop train --out`` wrote.

The weights are a :mod:`hashhop.checkpoint` file whose meta holds ``{"format": "hashhop-ltm",
"config": {...LTMConfig...}}``; the model is built from that config, so nothing here needs training code.
"""

from __future__ import annotations

import os

from hashhop.checkpoint import load_checkpoint, read_checkpoint_meta
from hashhop.errors import HashHopError
from hashhop.ltm.config import FORMAT, WEIGHTS
from hashhop.ltm.model import LTM, LTMConfig

__all__ = ["FORMAT", "WEIGHTS", "load_ltm"]


def _config(path: str, meta: dict) -> LTMConfig:
    config = meta.get("config")
    try:
        return LTMConfig.from_json(config) if isinstance(config, str) else LTMConfig.from_dict(config)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise HashHopError(f"LTM weights {path} do not match the model (bad config: {str(err).splitlines()[0][:100]})") from None


def _legacy(path: str) -> bool:
    """Weights written before the shared format: the LTM's metadata at the top level, tensors unprefixed."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT
    except Exception:
        return False


def load_ltm(path: str = WEIGHTS) -> LTM:
    """The LTM stored at ``path``, in eval mode. Missing, corrupt or mismatched files are one-line errors."""
    if not os.path.exists(path):
        raise HashHopError(f"no LTM weights at {path}: train them with `hashhop train`")
    meta = read_checkpoint_meta(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        if _legacy(path):
            raise HashHopError(
                f"{path} is a hashhop LTM checkpoint in the layout before hashhop/checkpoint.py: retrain it with `hashhop train`"
            )
        raise HashHopError(f"{path} is not a hashhop LTM checkpoint (no hashhop-ltm metadata)")
    model = LTM(_config(path, meta))
    load_checkpoint(path, model)  # tensors that do not fit: "checkpoint PATH does not fit this model: its tensors do not match"
    return model.eval()
