"""What a context costs: the KV cache and attention FLOPs of any Hugging Face transformer config, side
by side with the built-in LTM's measured figures (``hashhop cost``).

For a transformer with L layers, H query heads, K key/value heads of width D, stored in B bytes:
  KV bytes per token            = 2 (K and V) x L x K x D x B
  attention FLOPs per new token = 4 x H x D x N x L  at context N (q.k over N keys, a.v over N values,
                                  2 FLOPs per multiply-add), the part that grows with the context
Llama 3.1 405B (L 126, H 128, K 8, D 128, bf16): 516,096 bytes/token and 8.26e14 FLOPs at 1e8 tokens.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from hashhop.errors import HashHopError

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")  # hashhop/configs
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "float8": 1, "int8": 1}


@dataclass(frozen=True)
class AttentionCost:
    name: str
    layers: int
    query_heads: int
    kv_heads: int
    head_dim: int
    bytes_per_value: int

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_value

    def decode_flops(self, context_tokens: float) -> float:
        return 4.0 * self.query_heads * self.head_dim * context_tokens * self.layers


def bundled_configs() -> list[str]:
    return sorted(os.path.splitext(f)[0] for f in os.listdir(CONFIGS) if f.endswith(".json"))


MAX_CONFIG_BYTES = 16 << 20
MAX_SIZE = 10**9  # any size field of a real transformer is far below this


def _size(cfg: dict, key: str, path: str, default: int | None = None) -> int:
    """A whole number >= 1 from the config: not a string, a bool, a fraction, nan, 1e400 or a negative."""
    value = cfg.get(key)
    if value is None and default is not None:
        return default
    if value is None:
        raise HashHopError(f"config {path} lacks {key!r}: a transformer's config.json has num_hidden_layers, num_attention_heads, hidden_size")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 4096.0 is 4096; 1e400 (inf), nan and 3.5 are not whole
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise HashHopError(f"config {path}: {key} must be a whole number from 1 to {MAX_SIZE:,}, got {shown}")
    return value


def load_config(name_or_path: str, kv_bytes: int | None = None) -> AttentionCost:
    """An HF ``config.json`` (path) or a bundled name (``llama-3.1-405b``); bad sizes are one-line errors naming the field."""
    path = name_or_path if os.path.exists(name_or_path) else os.path.join(CONFIGS, name_or_path + ".json")
    if not os.path.isfile(path):
        raise HashHopError(f"no config {name_or_path!r}: give a config.json path or one of {', '.join(bundled_configs())}")
    if kv_bytes is not None and (isinstance(kv_bytes, bool) or not isinstance(kv_bytes, int) or not 1 <= kv_bytes <= 64):
        raise HashHopError(f"kv_bytes must be a whole number from 1 to 64, got {kv_bytes!r}")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise HashHopError(f"cannot read config {path}: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise HashHopError(f"config {path} is over {MAX_CONFIG_BYTES >> 20} MB: not a config.json")
    try:
        cfg = json.loads(raw)
    except (ValueError, RecursionError) as err:  # bad JSON, undecodable bytes, a 5,000-digit number, [[[[...
        reason = err.msg if isinstance(err, json.JSONDecodeError) else type(err).__name__
        raise HashHopError(f"config {path} is not readable JSON ({reason})") from None
    if not isinstance(cfg, dict):
        raise HashHopError(f"config {path} is not a JSON object")
    if "num_hidden_layers" not in cfg and isinstance(cfg.get("text_config"), dict):
        cfg = cfg["text_config"]  # multimodal configs nest it
    layers = _size(cfg, "num_hidden_layers", path)
    heads = _size(cfg, "num_attention_heads", path)
    kv_heads = _size(cfg, "num_key_value_heads", path, default=heads)
    if cfg.get("head_dim") is not None:
        head_dim = _size(cfg, "head_dim", path)
    else:
        hidden = _size(cfg, "hidden_size", path)
        if hidden < heads:
            raise HashHopError(f"config {path}: hidden_size {hidden} is smaller than num_attention_heads {heads}")
        head_dim = hidden // heads
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16").replace("torch.", "")
    width = kv_bytes or DTYPE_BYTES.get(dtype, 2)
    name = (
        os.path.splitext(os.path.basename(path))[0]
        if path.startswith(CONFIGS)
        else str(cfg.get("_name_or_path") or cfg.get("model_type") or path)
    )
    return AttentionCost(name.splitlines()[0][:100] if name.strip() else path, layers, heads, kv_heads, head_dim, width)


@dataclass(frozen=True)
class LTMCost:
    bytes_per_token: float  # measured on a prefilled HashHop context
    decode_ms_per_token: float  # measured
    flops_per_token: float  # analytic, at the measured candidate count
    comparisons_per_read: int  # analytic, at the given context
    measured_on_tokens: int


def measure_ltm(context_tokens: float, sample_tokens: int = 1_000_000) -> LTMCost:
    """Prefill a HashHop context of ``sample_tokens`` characters with the shipped model and measure the
    engine's bytes per token and decode time; the operation count is scaled to ``context_tokens``."""
    import time

    import numpy as np
    import torch

    from hashhop.ltm.engine import Engine
    from hashhop.ltm.load import load_ltm
    from hashhop.ltm.memory import PROBE_BITS, ContextMemory
    from hashhop.ltm.model import split_prompt
    from hashhop.ltm.text import to_bytes
    from hashhop.task.generator import plan
    from hashhop.task.grammar import native_request
    from hashhop.task.spec import HashHopSpec

    model = load_ltm()
    problem = plan(HashHopSpec(context_tokens=sample_tokens, tokenizer="chars", hops=2, hash_length=16, num_queries=20, seed=5))
    data = to_bytes(problem.prompt)
    memory = ContextMemory(model, data)
    engine = Engine(model)
    seconds, generated = 0.0, 0
    # The header and query of a request with an empty context: the prefilled context is given separately.
    warm = split_prompt(native_request("", 2, False, problem.queries[0].query), model.cfg.max_word_chars + 1)
    warm.context = data
    engine.decode(memory, warm)  # first-call costs (allocations, lazy init) are not decode costs
    engine.entries_scored.clear()
    for chain in problem.queries:
        request = split_prompt(native_request("", 2, False, chain.query), model.cfg.max_word_chars + 1)
        request.context = data
        started = time.perf_counter()
        answer = engine.decode(memory, request)
        seconds += time.perf_counter() - started
        generated += len(answer.logprobs)
    cfg = model.cfg
    scored = float(np.mean(engine.entries_scored))
    # Per read: every scored entry and its len(value_offsets) neighbours are encoded (one W x c x d projection
    # and a d x d layer), plus the role's S x c x c projection.
    encode = 2 * (cfg.max_word_chars * cfg.d_char * cfg.d_key + cfg.d_key * cfg.d_key)
    role = 2 * cfg.separator_chars * cfg.d_char * cfg.d_char
    per_read = scored * ((1 + len(cfg.value_offsets)) * encode + role)
    reads = cfg.max_hops * len(problem.queries)
    comparisons = 2**PROBE_BITS * 2 * math.ceil(math.log2(max(context_tokens / 19, 2)))  # ~1 word per 19 characters
    del torch
    return LTMCost(memory.nbytes / len(data), 1000 * seconds / generated, per_read * reads / generated, comparisons, len(data))


def gpus_needed(total_bytes: float, gpu_bytes: float) -> int:
    return max(1, math.ceil(total_bytes / gpu_bytes))


def side_by_side(model: AttentionCost, ltm: LTMCost | None, context_tokens: float, gpu_bytes: float) -> str:
    kv_total = model.kv_bytes_per_token * context_tokens
    flops = model.decode_flops(context_tokens)
    rows = [
        ("memory per context token", f"{model.kv_bytes_per_token:,} B (KV cache)"),
        (f"memory at {context_tokens:,.0f} tokens", f"{kv_total / 1e12:,.2f} TB"),
        (f"GPUs of {gpu_bytes / 1e9:,.0f} GB for that memory", f"{gpus_needed(kv_total, gpu_bytes):,}"),
        ("attention FLOPs per decoded token", f"{flops:.3g}"),
    ]
    lines = [f"| at {context_tokens:,.0f} tokens | {model.name} | builtin:ltm | ratio |", "|---|---|---|---|"]
    if ltm is None:
        lines = [f"| at {context_tokens:,.0f} tokens | {model.name} |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
        return "\n".join(lines)
    ltm_total = ltm.bytes_per_token * context_tokens
    ltm_cells = [
        (f"{ltm.bytes_per_token:.2f} B (measured)", model.kv_bytes_per_token / ltm.bytes_per_token),
        (f"{ltm_total / 1e9:,.2f} GB", kv_total / ltm_total),
        (f"{gpus_needed(ltm_total, gpu_bytes):,} ({100 * ltm_total / gpu_bytes:.1f}% of one)", None),
        (f"{ltm.flops_per_token:.3g} (reads; + {ltm.comparisons_per_read} index comparisons per read)", flops / ltm.flops_per_token),
    ]
    for (label, big), (small, ratio) in zip(rows, ltm_cells):
        lines.append(f"| {label} | {big} | {small} | {f'{ratio:,.3g}x' if ratio else ''} |")
    lines.append(f"| decode time per token (measured, this machine) | | {ltm.decode_ms_per_token:.3f} ms | |")
    return "\n".join(lines)
