"""A small language model around any sequence mixer (nanoGPT's shape: embed, blocks, norm, head)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hashhop.errors import HashHopError
from hashhop.lab.mixers import MixerConfig, make_mixer


@dataclass(frozen=True)
class ModelConfig:
    mixer: MixerConfig = field(default_factory=MixerConfig)
    n_layers: int = 2
    vocab_size: int = 8192
    mlp_ratio: int = 4  # 0: mixer-only blocks
    max_len: int | None = None  # learned absolute positions up to max_len (None: none at this level)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.mixer.d_model
        self.norm1 = nn.LayerNorm(d)
        self.mixer = make_mixer(cfg.mixer)
        self.mlp = None
        if cfg.mlp_ratio:
            self.norm2 = nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


class LM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.mixer.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.positions = nn.Embedding(cfg.max_len, d) if cfg.max_len else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        if self.positions is not None:
            if idx.shape[1] > self.cfg.max_len:
                raise HashHopError(
                    f"a context of {idx.shape[1]} tokens is longer than the {self.cfg.max_len} learned positions support: "
                    "use rope, alibi or none, or a larger max_len"
                )
            x = x + self.positions(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def state_bytes(self, length: int) -> int:
        """Per-sequence inference state of all mixers after ``length`` tokens."""
        return sum(block.mixer.state_bytes(length) for block in self.blocks)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
