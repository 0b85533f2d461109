"""Sequence mixers behind one interface, in plain PyTorch that runs on a CPU.

Every mixer maps (batch, length, d_model) to the same shape causally, and reports
``state_bytes(length)``: what it must keep per sequence to continue generating after ``length``
tokens (fp32): the KV cache for attention, the recurrent state for the others. Build one with
``make_mixer(MixerConfig(name=...))``; add one with ``@register_mixer("name")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hashhop.errors import HashHopError
from hashhop.lab import checks

FP32 = 4
POINTER_READ_LOSSES = ("off", "bonus", "gated")  # MixerConfig.pointer_read_loss
POSITIONS = ("rope", "alibi", "none")


@dataclass(frozen=True)
class MixerConfig:
    name: str = "attention"
    d_model: int = 64
    n_heads: int = 2
    positions: str = "rope"  # attention: rope | alibi | none
    window: int = 64  # sliding_window
    conv_kernel: int = 4  # short_conv, hybrid, mamba
    state_dim: int = 16  # s4d and mamba: states per channel
    expand: int = 2  # mamba
    chunk: int = 64  # linear_attention, deltanet
    inner: str = "attention"  # hybrid: the mixer after the short convolution
    # ltm2 (hashhop/ltm2/model.py): conv encoder layers writing the memory, deep blocks, key size, read heads
    encoder_layers: int = 2
    layers: int = 2
    key_dim: int = 32
    value_dim: int = 24
    memory_heads: int = 2
    memory: bool = True  # False: the memory-off ablation (local window only)
    log_length_reads: bool = False  # a read's sharpness grows with ln(entries it sees) (trained in, not a test-time trick)
    query_shift: bool = False  # a read's query may include the previous position's memory key (learnt share, zero at init)
    pointer: bool = False  # a read may follow the entry after the one its previous position read (learnt bonus, zero at init)
    # pointer: how many entries near the last read's are candidates: 1 the next one; 2 also the same one (the query has
    # a byte its link lacks, as `K = 'V` asked of `K = V`); 3 also the one after the next (the link has a byte more)
    pointer_candidates: int = 1
    # pointer: the entries the bonuses were trained over (the read stage's row length; 0: none). Beyond it a bonus grows
    # by the read's length gain once more (ltm2.model.pointer_gain): a row of 16K entries never asks a pointer to beat
    # the crowd of near matches a 10M memory holds, so the bonus learnt there is just enough there. Inactive on
    # training rows up to that length, so it changes no trained weight (read_far's reads, which stand for a longer
    # memory, get it as they would at that length)
    pointer_length_ref: int = 0
    # pointer, training only: each row's pointer bonuses times a factor drawn log-uniformly from [1, pointer_jitter]
    # (1: off), as the length gain above multiplies them past pointer_length_ref (1.42x at 1M, 1.66x at 10M, 1.90x at
    # 100M): a row of 16K entries then also trains the reads after a pointer stronger than it ever is there
    pointer_jitter: float = 1.0
    # pointer, training only: "bonus": the auxiliary read loss scores each supervised read as the read computes it,
    # each pointer candidate's logit with its bonus; "gated": the same, its gradients reaching only the bonus's part
    # from the hidden state; "off": content logits alone (only the language-model loss trains the bonuses). Where a
    # target lies off the entry a pointer follows (a copied hash's end: its link's next byte is a newline), the loss
    # pushes that bonus down where the hidden state says so
    pointer_read_loss: str = "off"
    # training only: keys kept from earlier batches that each supervised read must also beat (its softmax then spans
    # the row plus these, sharpened for that many entries): reads trained as over a long memory at a short row's cost
    read_negatives: int = 0
    # training only: entries (keys and values) kept from earlier batches that the reads at answer positions also see,
    # in the forward pass, as a uniform sample of a longer memory: each row draws a memory length log-uniformly up to
    # read_far_span entries, each far entry stands for its share of it (its logit + ln(share)) and those reads are as
    # sharp as over that length. Content reads then fail as they do at length, so what carries an answer there (a
    # pointer) is trained where it matters. 0: off
    read_far: int = 0
    read_far_span: int = 100_000_000
    # training only: confusers, made fresh each step: windows copied from the supervised reads' target entries with
    # their letters and digits replaced by random ones of the same kind (other links of the same shape, as a long
    # memory holds by the hundred thousand), encoded in the same pass; every supervised read must also beat their
    # keys (its softmax spans the row plus these, sharpened for that many entries), and the gradients reach the
    # encoder and key map through them, so the keys learn to tell such windows apart. 0: off
    read_confusers: int = 0
    # training only, with read_confusers: this share of them drawn instead from the reading positions' own windows
    # (the reach bytes ending where a supervised read queries), letters and digits replaced as above except the
    # trailing run being written (a copied hash's first bytes): the keys of other links laid out as the question is
    # (`Y = 'AB` against the question's `X = 'AB`), which a long memory holds by the thousand for a copy's first bytes
    # while the link to copy from differs from the question by a quote. 0: none
    read_query_confusers: float = 0.0
    # training only: the read loss at copy targets (the lab's copy_read_loss) scores every head of a read, each on its
    # own share (the mean of their -log shares), not the heads' average share (which one head earns alone): a head
    # whose read a copy's first bytes send to other links laid out as the question is then learns to follow too
    copy_read_each_head: bool = False
    # reads keep the read_top_k best entries per query and head (found without autograd, a chunk of queries at a time,
    # then scored exactly with it) and the sink, as the engine's reads do: long rows at a fraction of the dense read's
    # time and memory. 0: every visible entry (dense)
    read_top_k: int = 0

    def __post_init__(self) -> None:
        """One-line errors naming the field (a run config adds ``model.mixer.`` in front)."""
        checks.choice("name", self.name, tuple(mixer_names()), "mixer")
        checks.whole("d_model", self.d_model, 1, 1 << 16)
        checks.whole("n_heads", self.n_heads, 1, self.d_model)
        if self.d_model % self.n_heads:
            raise HashHopError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}: pick sizes that divide")
        checks.choice("positions", self.positions, POSITIONS, "positions")
        checks.whole("window", self.window, 1, checks.MAX_SEQ_LEN)
        checks.whole("conv_kernel", self.conv_kernel, 1, 1024)
        checks.whole("state_dim", self.state_dim, 1, 4096)
        checks.whole("expand", self.expand, 1, 64)
        checks.whole("chunk", self.chunk, 1, checks.MAX_SEQ_LEN)
        checks.whole("encoder_layers", self.encoder_layers, 1, 64)
        checks.whole("layers", self.layers, 1, 64)
        checks.whole("key_dim", self.key_dim, 1, 4096)
        checks.whole("value_dim", self.value_dim, 1, 4096)
        checks.whole("memory_heads", self.memory_heads, 1, min(self.key_dim, self.value_dim))
        if self.key_dim % self.memory_heads or self.value_dim % self.memory_heads:
            raise HashHopError(
                f"key_dim {self.key_dim} and value_dim {self.value_dim} must be divisible by memory_heads {self.memory_heads}: pick sizes that divide"
            )
        checks.flag("memory", self.memory)
        checks.flag("log_length_reads", self.log_length_reads)
        checks.flag("query_shift", self.query_shift)
        checks.flag("pointer", self.pointer)
        checks.whole("pointer_candidates", self.pointer_candidates, 1, 3)
        checks.whole("pointer_length_ref", self.pointer_length_ref, 0, 1 << 40)
        checks.number("pointer_jitter", self.pointer_jitter, 1.0, 16.0)
        checks.choice("pointer_read_loss", self.pointer_read_loss, POINTER_READ_LOSSES, "pointer read loss")
        checks.whole("read_negatives", self.read_negatives, 0, 1 << 24)
        checks.whole("read_far", self.read_far, 0, 1 << 24)
        checks.whole("read_far_span", self.read_far_span, 1, 1 << 40)
        checks.whole("read_confusers", self.read_confusers, 0, 1 << 20)
        if sum(map(bool, (self.read_far, self.read_negatives, self.read_confusers))) > 1:
            raise HashHopError("read_far, read_negatives and read_confusers each add keys to the supervised reads: pick one")
        checks.number("read_query_confusers", self.read_query_confusers, 0.0, 1.0)
        if self.read_query_confusers and not self.read_confusers:
            raise HashHopError("read_query_confusers is a share of read_confusers: set read_confusers too")
        checks.flag("copy_read_each_head", self.copy_read_each_head)
        checks.whole("read_top_k", self.read_top_k, 0, 1 << 16)
        checks.choice("inner", self.inner, tuple(n for n in mixer_names() if n != "hybrid"), "inner mixer")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


_MIXERS: dict[str, Callable[[MixerConfig], nn.Module]] = {}


def register_mixer(name: str):
    def decorate(factory):
        _MIXERS[name] = factory
        return factory

    return decorate


def mixer_names() -> list[str]:
    return sorted(_MIXERS)


def make_mixer(cfg: MixerConfig) -> nn.Module:
    """The mixer ``cfg`` names (a :class:`MixerConfig` checked itself when it was made)."""
    return _MIXERS[cfg.name](cfg)


# -- attention ---------------------------------------------------------------------------------
def rope_tables(length: int, dim: int, base: float = 10000.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE's cos and sin (length, dim // 2) for positions 0 .. length - 1."""
    half = dim // 2
    freqs = base ** (-torch.arange(half, device=device, dtype=torch.float32) / half)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * freqs[None]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs (i, i + head_dim/2) of x (..., length, head_dim) by angles whose cos / sin are (length, half)."""
    half = cos.shape[-1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([rotated, x[..., 2 * half :]], dim=-1) if x.shape[-1] % 2 else rotated


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE on (batch, heads, length, head_dim), rotating feature pairs (i, i + head_dim/2)."""
    return apply_rope(x, *rope_tables(x.shape[2], x.shape[3], base, x.device))


def alibi_bias(heads: int, length: int, device) -> torch.Tensor:
    """ALiBi: a per-head linear penalty on distance, with the causal mask folded in."""
    slopes = torch.tensor([2 ** (-8 * (h + 1) / heads) for h in range(heads)], device=device)
    pos = torch.arange(length, device=device)
    distance = (pos[:, None] - pos[None, :]).float()
    bias = -slopes[:, None, None] * distance[None]
    return bias.masked_fill(distance[None] < 0, float("-inf"))


@register_mixer("attention")
class Attention(nn.Module):
    """Causal softmax attention (scaled_dot_product_attention), with RoPE, ALiBi or no positions."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def _heads(self, x: torch.Tensor):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.cfg.n_heads, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        if self.cfg.positions == "rope":
            q, k = rotary(q), rotary(k)
        return q, k, v

    def attend(self, q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None and self.cfg.positions != "alibi":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        bias = alibi_bias(self.cfg.n_heads, q.shape[2], q.device) if self.cfg.positions == "alibi" else 0.0
        if mask is not None:
            bias = bias + torch.zeros_like(mask, dtype=q.dtype).masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        y = self.attend(*self._heads(x), self.mask(t, x.device))
        return self.out(y.transpose(1, 2).reshape(b, t, d))

    def mask(self, length: int, device) -> torch.Tensor | None:
        return None

    def state_bytes(self, length: int) -> int:
        return 2 * length * self.cfg.d_model * FP32


@register_mixer("sliding_window")
class SlidingWindowAttention(Attention):
    """Attention to the last ``window`` tokens only: a fixed-size KV cache."""

    def mask(self, length: int, device) -> torch.Tensor:
        pos = torch.arange(length, device=device)
        distance = pos[:, None] - pos[None, :]
        return (distance >= 0) & (distance < self.cfg.window)

    def state_bytes(self, length: int) -> int:
        return 2 * min(length, self.cfg.window) * self.cfg.d_model * FP32


# -- convolutions ------------------------------------------------------------------------------
class CausalConv(nn.Module):
    """Depthwise causal convolution over the sequence."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, padding=kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, t, c)
        return self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)


@register_mixer("short_conv")
class BaseConv(nn.Module):
    """BaseConv (Zoology): a linear projection gated by a short causal convolution."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.conv = CausalConv(cfg.d_model, cfg.conv_kernel)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.proj(x) * self.conv(x))

    def state_bytes(self, length: int) -> int:
        return (self.cfg.conv_kernel - 1) * self.cfg.d_model * FP32


@register_mixer("s4d")
class S4D(nn.Module):
    """A linear time-invariant diagonal state space model (S4D-Lin), run as a long FFT convolution."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, n = cfg.d_model, cfg.state_dim
        self.log_dt = nn.Parameter(torch.rand(d) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        self.log_a_real = nn.Parameter(torch.log(0.5 * torch.ones(d, n)))
        self.a_imag = nn.Parameter(math.pi * torch.arange(n).float().repeat(d, 1))
        self.c = nn.Parameter(torch.randn(d, n, 2) * 0.5**0.5)
        self.skip = nn.Parameter(torch.randn(d))
        self.out = nn.Linear(d, d)

    def kernel(self, length: int) -> torch.Tensor:
        dt = self.log_dt.exp()[:, None]
        a = -self.log_a_real.exp() + 1j * self.a_imag
        dta = a * dt
        c = torch.view_as_complex(self.c) * (dta.exp() - 1.0) / a
        powers = dta[..., None] * torch.arange(length, device=dta.device)
        return 2 * torch.einsum("dn,dnl->dl", c, powers.exp()).real

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        k = self.kernel(t)
        u = x.transpose(1, 2)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * t) * torch.fft.rfft(k, n=2 * t), n=2 * t)[..., :t]
        y = y + u * self.skip[:, None]
        return self.out(F.gelu(y.transpose(1, 2)))

    def state_bytes(self, length: int) -> int:
        return self.cfg.d_model * self.cfg.state_dim * 2 * FP32  # complex states


# -- linear attention and DeltaNet ---------------------------------------------------------------
class _Recurrent(nn.Module):
    """Shared projections of the linear-attention family: per-head q, k, v of head_dim."""

    def __init__(self, cfg: MixerConfig, beta: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.beta = nn.Linear(cfg.d_model, cfg.n_heads) if beta else None
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm = nn.LayerNorm(cfg.head_dim)

    def split(self, x: torch.Tensor):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.cfg.n_heads, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v  # (b, h, t, dh)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        b, h, t, dh = y.shape
        return self.out(self.norm(y).transpose(1, 2).reshape(b, t, h * dh))

    def state_bytes(self, length: int) -> int:
        return self.cfg.n_heads * self.cfg.head_dim * self.cfg.head_dim * FP32


def _chunks(t: int, size: int):
    for start in range(0, t, size):
        yield slice(start, min(start + size, t))


@register_mixer("linear_attention")
class LinearAttention(_Recurrent):
    """Causal linear attention with the elu+1 feature map, chunkwise: exact within a chunk, a
    (head_dim x head_dim) state across chunks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(x)
        q, k = F.elu(q) + 1, F.elu(k) + 1
        b, h, t, dh = q.shape
        state = q.new_zeros(b, h, dh, dh)
        norm = q.new_zeros(b, h, dh)
        out = []
        for part in _chunks(t, self.cfg.chunk):
            qc, kc, vc = q[:, :, part], k[:, :, part], v[:, :, part]
            scores = (qc @ kc.transpose(-1, -2)).tril()
            num = qc @ state + scores @ vc
            den = (qc * norm[:, :, None]).sum(-1) + scores.sum(-1)
            out.append(num / (den[..., None] + 1e-6))
            state = state + kc.transpose(-1, -2) @ vc
            norm = norm + kc.sum(2)
        return self.merge(torch.cat(out, dim=2))

    def state_bytes(self, length: int) -> int:
        return super().state_bytes(length) + self.cfg.n_heads * self.cfg.head_dim * FP32


def delta_rule_recurrent(q, k, v, beta):
    """Reference DeltaNet: S <- S - beta (S k - v) k^T, o = S q; one step at a time."""
    b, h, t, dk = k.shape
    state = q.new_zeros(b, h, v.shape[-1], dk)
    out = []
    for i in range(t):
        ki, vi, bi = k[:, :, i], v[:, :, i], beta[:, :, i, None]
        state = state - bi[..., None] * ((state @ ki[..., None]).squeeze(-1) - vi)[..., None] * ki[:, :, None, :]
        out.append((state @ q[:, :, i, :, None]).squeeze(-1))
    return torch.stack(out, dim=2)


def delta_rule_chunkwise(q, k, v, beta, chunk: int):
    """DeltaNet in chunks (the WY/UT form of Yang et al. 2024): per chunk, T = (I + tril(diag(b) K K^T, -1))^-1 diag(b),
    W = T K, U = T V; pseudo-values V' = U - W S^T; O = Q S^T + tril(Q K^T) V'; S <- S + V'^T K."""
    b, h, t, dk = k.shape
    state = q.new_zeros(b, h, v.shape[-1], dk)
    out = []
    for part in _chunks(t, chunk):
        qc, kc, vc, bc = q[:, :, part], k[:, :, part], v[:, :, part], beta[:, :, part]
        c = kc.shape[2]
        eye = torch.eye(c, device=q.device, dtype=q.dtype)
        lower = (bc[..., None] * (kc @ kc.transpose(-1, -2))).tril(-1)
        t_mat = torch.linalg.solve_triangular(eye + lower, torch.diag_embed(bc), upper=False)
        w, u = t_mat @ kc, t_mat @ vc
        pseudo = u - w @ state.transpose(-1, -2)
        out.append(qc @ state.transpose(-1, -2) + (qc @ kc.transpose(-1, -2)).tril() @ pseudo)
        state = state + pseudo.transpose(-1, -2) @ kc
    return torch.cat(out, dim=2)


@register_mixer("deltanet")
class DeltaNet(_Recurrent):
    """DeltaNet: linear attention whose state is corrected by the delta rule (keys L2-normalised,
    a learned write strength beta per token and head). Chunkwise on CPU; flash-linear-attention's
    kernel on CUDA when installed."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__(cfg, beta=True)
        self.conv = CausalConv(3 * cfg.d_model, cfg.conv_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        qkv = F.silu(self.conv(self.qkv(x)))
        q, k, v = qkv.view(b, t, 3, self.cfg.n_heads, self.cfg.head_dim).permute(2, 0, 3, 1, 4)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.beta(x)).transpose(1, 2)  # (b, h, t)
        fast = _fla_delta_rule() if x.is_cuda else None
        if fast is not None:
            y = fast(q, k, v, beta)
        else:
            y = delta_rule_chunkwise(q, k, v, beta, self.cfg.chunk)
        return self.merge(y)


def _fla_delta_rule():
    try:
        from fla.ops.delta_rule import chunk_delta_rule
    except ImportError:
        return None

    def run(q, k, v, beta):
        # fla takes (batch, length, heads, dim) in 16-bit floats only, and scales queries by dim ** -0.5 unless told
        # otherwise: ours are unscaled (scale 1), as in delta_rule_chunkwise
        dtype = q.dtype
        half = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        args = (x.transpose(1, 2).to(half).contiguous() for x in (q, k, v, beta))
        o, _ = chunk_delta_rule(*args, scale=1.0)
        return o.transpose(1, 2).to(dtype)

    return run


# -- selective state space (Mamba) ---------------------------------------------------------------
def selective_scan_sequential(u, delta, a, b, c, d):
    """Reference selective scan, one step at a time: h_t = exp(delta_t a) h_{t-1} + delta_t b_t u_t;
    y_t = c_t . h_t + d u_t. u, delta: (batch, channels, length); a: (channels, states); b, c: (batch, states, length)."""
    batch, channels, length = u.shape
    decay = torch.exp(delta[..., None] * a[None, :, None, :])  # (batch, channels, length, states)
    drive = (delta * u)[..., None] * b.transpose(1, 2)[:, None]
    h = u.new_zeros(batch, channels, a.shape[1])
    ys = []
    for i in range(length):
        h = decay[:, :, i] * h + drive[:, :, i]
        ys.append((h * c[:, None, :, i]).sum(-1))
    return torch.stack(ys, dim=-1) + u * d[None, :, None]


def selective_scan(u, delta, a, b, c, d):
    """The same scan in log2(length) parallel steps (Hillis-Steele over the associative pairs
    (decay, drive)): h_t = decay_t h_{t-1} + drive_t composes as (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2)."""
    decay = torch.exp(delta[..., None] * a[None, :, None, :])  # (batch, channels, length, states)
    h = (delta * u)[..., None] * b.transpose(1, 2)[:, None]
    length = u.shape[-1]
    step = 1
    while step < length:
        h = torch.cat([h[:, :, :step], h[:, :, step:] + decay[:, :, step:] * h[:, :, :-step]], dim=2)
        decay = torch.cat([decay[:, :, :step], decay[:, :, step:] * decay[:, :, :-step]], dim=2)
        step *= 2
    return (h * c.transpose(1, 2)[:, None]).sum(-1) + u * d[None, :, None]


@register_mixer("mamba")
class Mamba(nn.Module):
    """A Mamba block: expand, short causal conv, input-dependent (delta, B, C) selective scan, SiLU gate.
    The reference scan on CPU; mamba-ssm's fused kernel on CUDA when installed."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        inner, n = cfg.expand * cfg.d_model, cfg.state_dim
        self.dt_rank = max(1, math.ceil(cfg.d_model / 16))
        self.in_proj = nn.Linear(cfg.d_model, 2 * inner, bias=False)
        self.conv = CausalConv(inner, cfg.conv_kernel)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        dt = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.a_log = nn.Parameter(torch.log(torch.arange(1, n + 1).float()).repeat(inner, 1))
        self.d = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.cfg.state_dim
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv(u))
        dt, b, c = self.x_proj(u).split([self.dt_rank, n, n], dim=-1)
        delta = F.softplus(self.dt_proj(dt)).transpose(1, 2)
        a = -self.a_log.exp()
        scan = _mamba_scan() if x.is_cuda else None
        args = (u.transpose(1, 2), delta, a, b.transpose(1, 2), c.transpose(1, 2), self.d)
        y = scan(*args) if scan is not None else selective_scan(*args)
        return self.out_proj(y.transpose(1, 2) * F.silu(z))

    def state_bytes(self, length: int) -> int:
        inner = self.cfg.expand * self.cfg.d_model
        return (inner * self.cfg.state_dim + inner * (self.cfg.conv_kernel - 1)) * FP32


def _mamba_scan():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return lambda u, delta, a, b, c, d: selective_scan_fn(u, delta, a, b.contiguous(), c.contiguous(), d.float())


# -- hybrids -----------------------------------------------------------------------------------
@register_mixer("hybrid")
class Hybrid(nn.Module):
    """A short causal convolution in front of any mixer (``inner``): local features (the previous few
    tokens) for the mixer to match on, as in the induction circuits of H3 and Based."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.conv = CausalConv(cfg.d_model, cfg.conv_kernel)
        self.inner = make_mixer(MixerConfig(**{**cfg.__dict__, "name": cfg.inner}))
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + self.conv(x))

    def state_bytes(self, length: int) -> int:
        return self.inner.state_bytes(length) + (self.cfg.conv_kernel - 1) * self.cfg.d_model * FP32


# LTM-2's mixer lives in its own file (hashhop/ltm2/model.py) and registers itself here.
from hashhop.ltm2 import model as _ltm2  # noqa: E402,F401
