"""LTM-2's inference engine: prefill writes the memory with the encoder only; decode runs the deep stack
one byte at a time, reading the memory through a key index.

It computes the trained network (``hashhop/ltm2/model.py``) with two differences, both measured by the
tests against the dense forward: a read scores only the ``top_k`` best keys of each head (plus the sink)
instead of every entry, and keys and values are stored as int8 (``exact=True`` keeps float32 and a flat
index, for checking the computation itself).

What it keeps per context byte: the byte, one int8 key per memory head (in a faiss index), one int8 value
and its fp16 scale: ``1 + key_dim + value_dim + 2`` bytes (59 at the default sizes).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from hashhop.errors import HashHopError
from hashhop.lab.mixers import rotary
from hashhop.lab.model import LM
from hashhop.ltm2.model import LTM2

PREFILL_CHUNK = 1 << 16  # bytes the encoder runs over at once


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - a dependency
        raise HashHopError("LTM-2's engine needs faiss: pip install faiss-cpu") from None
    return faiss


class Memory:
    """The memory entries written so far: keys in one faiss index per head, values in a growing array."""

    def __init__(self, heads: int, head_key_dim: int, value_dim: int, exact: bool = False) -> None:
        faiss = _faiss()
        self.heads, self.head_key_dim, self.value_dim, self.exact = heads, head_key_dim, value_dim, exact
        self.indexes = []
        for _ in range(heads):
            if exact:
                index = faiss.IndexFlatIP(head_key_dim)
            else:  # unit keys: one uniform 8-bit grid over [-1, 1]
                index = faiss.IndexScalarQuantizer(head_key_dim, faiss.ScalarQuantizer.QT_8bit_uniform, faiss.METRIC_INNER_PRODUCT)
                index.train(np.stack([-np.ones(head_key_dim), np.ones(head_key_dim)]).astype(np.float32))
            self.indexes.append(index)
        self.count = 0
        self._values = np.zeros((1024, value_dim), dtype=np.float32 if exact else np.int8)
        self._scales = np.ones(1024, dtype=np.float16)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """keys (n, heads, head_key_dim) unit vectors; values (n, value_dim)."""
        n = len(keys)
        if n == 0:
            return
        for h, index in enumerate(self.indexes):
            index.add(np.ascontiguousarray(keys[:, h], dtype=np.float32))
        need = self.count + n
        if need > len(self._values):
            size = max(need, 2 * len(self._values))
            self._values = np.resize(self._values, (size, self.value_dim))
            self._scales = np.resize(self._scales, size)
        if self.exact:
            self._values[self.count : need] = values
        else:
            scale = np.maximum(np.abs(values).max(axis=1), 1e-8) / 127.0
            self._values[self.count : need] = np.round(values / scale[:, None]).astype(np.int8)
            self._scales[self.count : need] = scale
        self.count = need

    def values(self, ids: np.ndarray) -> np.ndarray:
        if self.exact:
            return self._values[ids]
        return self._values[ids].astype(np.float32) * self._scales[ids].astype(np.float32)[..., None]

    def search(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (heads, head_key_dim) unit -> (scores, ids), each (heads, k); ids -1 where fewer entries."""
        k = min(top_k, self.count)
        if k == 0:
            return np.zeros((self.heads, 0), np.float32), np.zeros((self.heads, 0), np.int64)
        scores, ids = zip(*(index.search(queries[h : h + 1].astype(np.float32), k) for h, index in enumerate(self.indexes)))
        return np.concatenate(scores), np.concatenate(ids)

    def nbytes(self) -> int:
        """Bytes kept per the design: int8 keys, int8 values and their scales (the text is counted by the engine)."""
        return self.count * (self.heads * self.head_key_dim + self.value_dim + 2)


class Engine:
    """Greedy decoding and next-byte log-probabilities of an LTM-2 language model over a long context."""

    def __init__(self, lm: LM, top_k: int = 64, exact: bool = False) -> None:
        if not isinstance(lm.blocks[0].mixer, LTM2) or len(lm.blocks) != 1 or lm.blocks[0].mlp is not None:
            raise HashHopError("the engine runs LTM-2 models: one lab block whose mixer is ltm2 and no block MLP")
        self.lm = lm.eval()
        self.net: LTM2 = lm.blocks[0].mixer
        self.cfg = self.net.cfg
        self.top_k, self.exact = top_k, exact
        self.reach = self.net.encoder.reach
        self.reset()

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        cfg = self.cfg
        self.memory = Memory(cfg.memory_heads, cfg.key_dim // cfg.memory_heads, cfg.value_dim, self.exact)
        self.text = bytearray()
        self.window = deque(maxlen=self.reach)  # normalised embeddings of the last `reach` bytes
        self.pending_keys: dict[int, np.ndarray] = {}
        self.pending_values: dict[int, np.ndarray] = {}
        self.caches = [deque() for _ in self.net.blocks]  # per block: (position, k, v) of the local window
        self.logits: torch.Tensor | None = None

    @property
    def position(self) -> int:
        return len(self.text)

    def bytes_per_context_byte(self) -> float:
        return (len(self.text) + self.memory.nbytes()) / max(1, len(self.text))

    # -- prefill -----------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, data: bytes, progress: bool = False) -> torch.Tensor:
        """Start over with ``data`` as the context; return the next-byte logits after it. The encoder writes
        the memory over all but the last chunks; those run through the deep stack byte by byte."""
        self.reset()
        if not data:
            raise HashHopError("the context is empty: give at least one byte")
        w, layers, reach = self.cfg.window, len(self.net.blocks), self.reach
        n = len(data)
        tail_start = max(0, ((n - 1) // w - layers) * w)
        buf = np.frombuffer(bytes(data), dtype=np.uint8)
        bar = None
        if progress and tail_start > PREFILL_CHUNK:
            from tqdm import tqdm

            bar = tqdm(total=tail_start, unit="B", unit_scale=True, desc="prefill", leave=False)
        carry = np.zeros((0, self.cfg.memory_heads, self.cfg.key_dim // self.cfg.memory_heads), np.float32)
        for a in range(0, tail_start, PREFILL_CHUNK):
            b = min(tail_start, a + PREFILL_CHUNK)
            lo = max(0, a - reach + 1)
            x = self._embed(torch.from_numpy(buf[lo:b].astype(np.int64)))
            states = self.net.encoder(x[None])[0, a - lo :]  # positions a .. b-1
            # the state at p completes entry p - reach + 1: entries before a keep their keys in `carry`
            keys = np.concatenate([carry, self._keys(states)])  # entries max(0, a-reach+1) .. b-1
            # entry e's value: value(state at e + reach - 1) + next_value(embedding at e + 1)
            projected = self.net.value(states)[max(0, reach - 1 - a) :]
            first = max(0, a - reach + 1)
            following = self.net.next_value(x[first + 1 - lo : first + 1 - lo + len(projected)])
            values = (projected + following).numpy()
            done = len(values)
            self.memory.add(keys[:done], values)
            carry = keys[done:]
            if bar is not None:
                bar.update(b - a)
        if bar is not None:
            bar.close()
        self.text += data[:tail_start]
        self.pending_keys = {tail_start - len(carry) + i: key for i, key in enumerate(carry)}
        for p in range(max(0, tail_start - reach + 1), tail_start):
            self.window.append(self._embed(torch.tensor([buf[p]], dtype=torch.long))[0])
        logits = None
        for byte in data[tail_start:]:
            logits = self.step(byte)
        return logits

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.blocks[0].norm1(self.lm.embed(ids))

    def _keys(self, states: torch.Tensor) -> np.ndarray:
        heads = self.cfg.memory_heads
        return F.normalize(self.net.key(states).view(len(states), heads, -1), dim=-1).numpy()

    # -- decode ------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self, byte: int) -> torch.Tensor:
        """Feed one byte (at position ``self.position``); return the logits of the byte after it."""
        q = self.position
        self.text.append(byte)
        embedded = self.lm.embed(torch.tensor([byte]))
        self.window.append(self.lm.blocks[0].norm1(embedded)[0])
        window = torch.stack(list(self.window))[None]
        state = self.net.encoder(window)[0, -1:]  # (1, d)
        self.pending_keys[q] = self._keys(state)[0]
        if q - self.reach + 1 >= 0:
            value = self.net.value(state) + self.net.next_value(window[:, 1])
            self.pending_values[q - self.reach + 1] = value.numpy()[0]
        ready = q - self.reach  # entries a query at q may read: t <= q - reach
        if ready >= 0 and ready in self.pending_values:
            self.memory.add(self.pending_keys.pop(ready)[None], self.pending_values.pop(ready)[None])
        h = state
        for block, cache in zip(self.net.blocks, self.caches):
            h = h + self._local(block.local, block.norm_local(h), cache, q)
            if self.net.memory_enabled:
                h = h + self._read(block.read, block.norm_read(h), q)
            h = h + block.mlp(block.norm_mlp(h))
        out = embedded + h
        self.logits = self.lm.head(self.lm.norm(out))[0]
        return self.logits

    def _local(self, attn, x: torch.Tensor, cache: deque, q: int) -> torch.Tensor:
        w, heads = attn.window, attn.heads
        d = x.shape[-1]
        qv, k, v = attn.qkv(x).view(3, heads, d // heads)
        cache.append((q, k, v))
        while cache[0][0] <= q - w:  # the dense forward's window: the last w positions
            cache.popleft()
        base = cache[0][0]
        ks = torch.stack([c[1] for c in cache], dim=1)[None]  # (1, heads, n, dh)
        vs = torch.stack([c[2] for c in cache], dim=1)[None]
        # RoPE depends on offsets only: rotate from the window's first position, never from 1e8
        ks = rotary(ks)
        qr = _rotary_at(qv[None, :, None], q - base)
        y = F.scaled_dot_product_attention(qr, ks, vs)
        return attn.out(y.reshape(1, d))

    def _read(self, read, x: torch.Tensor, q: int) -> torch.Tensor:
        heads = read.heads
        scale = read.log_scale.exp().clamp(max=100.0)
        unit = F.normalize((self.net.key(x) + read.query(x)).view(heads, -1), dim=-1)
        scores, ids = self.memory.search(unit.numpy(), self.top_k)
        sink = (unit * read.sink_keys()).sum(-1) * scale + math.log(min(q + 1, self.net.delay))
        outs = []
        for h in range(heads):
            valid = ids[h] >= 0
            logits = torch.cat([torch.from_numpy(scores[h][valid]) * scale[h], sink[h : h + 1]])
            weights = torch.softmax(logits, dim=0)[:-1]
            if valid.any():
                vals = read.value(torch.from_numpy(self.memory.values(ids[h][valid])))  # (k, value_dim)
                per_head = vals.view(len(vals), heads, -1)[:, h]
                outs.append(weights @ per_head)
            else:
                outs.append(torch.zeros(self.cfg.value_dim // heads))
        return read.out(torch.cat(outs)[None])

    @torch.inference_mode()
    def generate(self, max_bytes: int, stop: bytes | None = None) -> bytes:
        """Greedy bytes after what was fed, until ``stop`` appears or ``max_bytes``."""
        if self.logits is None:
            raise HashHopError("nothing to continue: prefill a context first")
        out = bytearray()
        for _ in range(max_bytes):
            byte = int(self.logits.argmax())
            out.append(byte)
            if stop and out.endswith(stop):
                break
            self.step(byte)
        return bytes(out)

    def feed(self, data: bytes) -> torch.Tensor:
        """Continue the context with ``data`` (a prompt after a prefilled corpus)."""
        logits = self.logits
        for byte in data:
            logits = self.step(byte)
        return logits


def _rotary_at(x: torch.Tensor, position: int) -> torch.Tensor:
    """RoPE of a single position (the one the dense forward gives index ``position``)."""
    padded = F.pad(x, (0, 0, position, 0))
    return rotary(padded)[:, :, -1:]
