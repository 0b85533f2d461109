"""hashhop's one checkpoint format, shared by the lab and the LTM: safetensors only (no pickle).

On disk: the model's tensors as ``model.<name>``, the optimiser's moments (when saved) as
``optim.<parameter name>.<state key>``, and one metadata entry ``{"meta": json.dumps(meta)}``. The
LTM's weights put ``{"format": "hashhop-ltm", "config": {...LTMConfig...}, ...}`` in ``meta``.

Files are written atomically by :func:`write_atomically` (a temporary file in the same folder, flushed to
disk, then renamed over the target) with an ordinary file's permissions (0666 less the umask: 0644
usually). Corrupt or mismatched files, and failed writes, are one-line :class:`HashHopError`\\ s.
"""

from __future__ import annotations

import json
import os

import torch

from hashhop.errors import HashHopError

MODEL_PREFIX = "model."
OPTIM_PREFIX = "optim."


def _first_line(err: BaseException, limit: int = 100) -> str:
    lines = str(err).splitlines()
    return (lines[0] if lines else type(err).__name__)[:limit]


def write_atomically(path: str, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically and durably: the one way the lab and the LTM write
    files (checkpoints, weights, configs, summaries, model cards, metrics). Built on
    :func:`hashhop.task.formats.atomic_output` (a temporary file in the same folder, renamed over the target;
    a symbolic link's target is replaced; any OSError is a one-line HashHopError naming ``path``), plus a
    flush to disk before the rename and of the folder after it."""
    from hashhop.task.formats import atomic_output

    with atomic_output(path) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    try:  # make the rename itself durable
        dir_fd = os.open(os.path.dirname(os.path.abspath(os.path.realpath(path))), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, meta: dict) -> None:
    """Write ``model``'s weights (and ``optimizer``'s moments, when given) and ``meta`` to ``path``."""
    from safetensors.torch import save

    tensors = {f"{MODEL_PREFIX}{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if optimizer is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                for key, value in optimizer.state.get(p, {}).items():
                    if torch.is_tensor(value):
                        tensors[f"{OPTIM_PREFIX}{names[id(p)]}.{key}"] = value.detach().contiguous().cpu().reshape(value.shape)
    write_atomically(path, save(tensors, metadata={"meta": json.dumps(meta)}))


def _open(path: str, tensors: bool) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            raw = (handle.metadata() or {}).get("meta", "{}")
            loaded = {k: handle.get_tensor(k) for k in handle.keys()} if tensors else {}
    except FileNotFoundError:
        raise HashHopError(f"no checkpoint at {path}") from None
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise HashHopError(f"checkpoint {path} is corrupt or not safetensors ({_first_line(err)})") from None
    try:
        meta = json.loads(raw)
    except ValueError:
        raise HashHopError(f"checkpoint {path} is corrupt or not safetensors (its metadata is not JSON)") from None
    if not isinstance(meta, dict):
        raise HashHopError(f"checkpoint {path} is corrupt or not safetensors (its metadata is not a JSON object)")
    return meta, loaded


def read_checkpoint_meta(path: str) -> dict:
    """The ``meta`` dict of a checkpoint (``{}`` when it has none), without reading its tensors."""
    return _open(path, tensors=False)[0]


def load_checkpoint(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, prefix: str = MODEL_PREFIX) -> dict:
    """Load weights (and optimiser moments) into ``model``; returns the checkpoint's ``meta``.

    ``prefix``: the tensor-name prefix of the weights (``""`` reads a plain ``save_file`` of a state dict)."""
    meta, tensors = _open(path, tensors=True)
    weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix) and not k.startswith(OPTIM_PREFIX)}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        lines = str(err).splitlines() or [""]
        detail = lines[1 if len(lines) > 1 else 0].strip()
        raise HashHopError(f"checkpoint {path} does not fit this model: its tensors do not match ({detail[:120]})") from None
    if optimizer is not None:
        params = dict(model.named_parameters())
        for key, value in tensors.items():
            if key.startswith(OPTIM_PREFIX):
                name, state_key = key[len(OPTIM_PREFIX) :].rsplit(".", 1)
                if name not in params:
                    raise HashHopError(f"checkpoint {path} does not fit this model: optimiser state for unknown parameter {name!r}")
                optimizer.state[params[name]][state_key] = value
    return meta
