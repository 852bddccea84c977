"""Consensus heads: how per-frame features become one clip prediction.

* ``TSNHead``: dropout, a linear classifier per frame, then the average over frames (TSN's average
  consensus). Because averaging and the classifier are linear, TSN is blind to frame order.
* ``TRNHead``: TRN's multi-scale temporal relation: for every scale k = T..2, MLPs over ordered k-tuples
  of frames, summed over scales. Order-aware. Training samples a few tuples per scale (as TRN does);
  evaluation uses all of them, so eval-mode outputs are deterministic.
"""

from __future__ import annotations

import itertools
import random

import torch
from torch import Tensor, nn


class TSNHead(nn.Module):
    """Average consensus. Parameter names (``new_fc``) follow TSN-pytorch so its checkpoints map 1:1."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.new_fc = nn.Linear(in_features, num_classes)

    def forward(self, frame_features: Tensor) -> Tensor:
        """(N, T, D) -> logits (N, num_classes)."""
        return self.new_fc(self.dropout(frame_features)).mean(dim=1)


class TRNHead(nn.Module):
    """Multi-scale temporal relation network head (Zhou et al., ECCV 2018)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_segments: int,
        dropout: float = 0.5,
        img_feature_dim: int = 256,
        bottleneck: int = 256,
        subsample: int = 3,
    ) -> None:
        super().__init__()
        if num_segments < 2:
            raise ValueError("TRN needs at least 2 segments")
        self.num_segments = num_segments
        self.subsample = subsample
        self.dropout = nn.Dropout(dropout)
        self.new_fc = nn.Linear(in_features, img_feature_dim)
        self.scales = list(range(num_segments, 1, -1))
        self.relations = [list(itertools.combinations(range(num_segments), k)) for k in self.scales]
        self.fc_fusion_scales = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                nn.Linear(k * img_feature_dim, bottleneck),
                nn.ReLU(),
                nn.Linear(bottleneck, num_classes),
            )
            for k in self.scales
        )

    def forward(self, frame_features: Tensor) -> Tensor:
        n, t, _ = frame_features.shape
        if t != self.num_segments:
            raise ValueError(f"TRN head built for {self.num_segments} segments, got {t}")
        x = self.new_fc(self.dropout(frame_features))
        out = 0
        for rels, mlp in zip(self.relations, self.fc_fusion_scales):
            if self.training and len(rels) > self.subsample:
                rels = random.sample(rels, self.subsample)
            idx = torch.tensor(rels, device=x.device)  # (R, k)
            tuples = x[:, idx].reshape(n, len(rels), -1)  # (N, R, k*D)
            out = out + mlp(tuples).mean(dim=1)
        return out


def build_head(kind: str, in_features: int, num_classes: int, num_segments: int, dropout: float) -> nn.Module:
    if kind in ("avg", "tsn"):
        return TSNHead(in_features, num_classes, dropout)
    if kind == "trn":
        return TRNHead(in_features, num_classes, num_segments, dropout)
    raise ValueError(f"unknown consensus {kind!r}; choose 'avg' (TSN) or 'trn'")
