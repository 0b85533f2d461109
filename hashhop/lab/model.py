"""A small language model around any sequence mixer (nanoGPT's shape: embed, blocks, norm, head)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from hashhop.errors import HashHopError
from hashhop.lab import checks
from hashhop.lab.mixers import MixerConfig, make_mixer


@dataclass(frozen=True)
class ModelConfig:
    mixer: MixerConfig = field(default_factory=MixerConfig)
    n_layers: int = 2
    vocab_size: int = 8192
    mlp_ratio: int = 4  # 0: mixer-only blocks
    max_len: int | None = None  # learned absolute positions up to max_len (None: none at this level)

    def __post_init__(self) -> None:
        """One-line errors naming the field (a run config adds ``model.`` in front); the mixer checked itself."""
        if not isinstance(self.mixer, MixerConfig):
            raise HashHopError(f"mixer must be an object of MixerConfig fields, got {checks.show(self.mixer)}")
        checks.whole("n_layers", self.n_layers, 1, 1000)
        checks.whole("vocab_size", self.vocab_size, 2, 1 << 20)
        checks.whole("mlp_ratio", self.mlp_ratio, 0, 64)
        if self.max_len is not None:
            checks.whole("max_len", self.max_len, 1, checks.MAX_SEQ_LEN)
        # A rough parameter count (embeddings + per layer: the mixer's d x d maps and the MLP) before anything is allocated.
        m = self.mixer
        width = m.d_model * max(1, m.expand)
        params = 2 * self.vocab_size * m.d_model + self.n_layers * (8 * width * m.d_model + 2 * self.mlp_ratio * m.d_model**2)
        if params > checks.MAX_PARAMS:
            raise HashHopError(
                f"mixer.d_model, n_layers and vocab_size make a model of about {params:,} parameters: too large for the lab "
                f"(at most {checks.MAX_PARAMS:,})"
            )


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

    def forward(self, x: torch.Tensor, read_targets: torch.Tensor | None = None, ids: torch.Tensor | None = None, embed: nn.Module | None = None):
        """(b, t, d) -> (b, t, d); with ``read_targets`` (a mixer with memory reads: ltm2) also its auxiliary read
        loss and how many reads it covers, per kind of target. ``ids`` / ``embed``: the token ids and the embedding,
        for a mixer that builds inputs of its own from tokens in training (``mixer.inputs_from_ids``: ltm2's confusers)."""
        aux = None
        if read_targets is None:
            x = x + self.mixer(self.norm1(x))
        else:
            if not getattr(self.mixer, "supervised_reads", False):
                raise HashHopError(f"mixer {self.mixer.__class__.__name__} has no memory reads to supervise: read_loss / copy_read_loss need ltm2")
            extra = {}
            if ids is not None and embed is not None and getattr(self.mixer, "inputs_from_ids", False):
                extra = {"ids": ids, "inputs_of": lambda tokens: self.norm1(embed(tokens))}
            y, *aux = self.mixer(self.norm1(x), read_targets=read_targets, **extra)
            x = x + y
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x if aux is None else (x, *aux)


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

    def forward(self, idx: torch.Tensor, read_targets: torch.Tensor | None = None):
        """Token ids (b, t) -> logits (b, t, vocab). With ``read_targets`` (the lab's auxiliary read loss): also the
        read loss summed over the targeted reads and their number, per kind of target (the targets' second-to-last
        axis), as (logits, loss_sums, reads)."""
        x = self.embed(idx)
        if self.positions is not None:
            if idx.shape[1] > self.cfg.max_len:
                raise HashHopError(
                    f"a context of {idx.shape[1]} tokens is longer than the {self.cfg.max_len} learned positions support: "
                    "use rope, alibi or none, or a larger max_len"
                )
            x = x + self.positions(torch.arange(idx.shape[1], device=idx.device))
        if read_targets is None:
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x))
        aux, count = 0, 0
        for block in self.blocks:
            x, loss, covered = block(x, read_targets, ids=idx if self.positions is None else None, embed=self.embed)
            aux, count = aux + loss, count + covered
        return self.head(self.norm(x)), aux, count

    def state_bytes(self, length: int) -> int:
        """Per-sequence inference state of all mixers after ``length`` tokens."""
        return sum(block.mixer.state_bytes(length) for block in self.blocks)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
