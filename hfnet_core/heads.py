"""Consensus heads: how per-frame features become one clip prediction.

* ``TSNHead``: dropout, a linear classifier per frame, then the average over frames (TSN's average
  consensus). Because averaging and the classifier are linear, TSN is blind to frame order.
* ``TRNHead``: TRN's multi-scale temporal relation (Zhou et al., ECCV 2018), with TRN-pytorch's layout and
  arithmetic: for every scale k = T .. 2 an MLP over ordered k-tuples of frames; the largest scale uses
  its single tuple (all frames), each smaller scale the *sum* over ``subsample`` (3) tuples, and the
  scales are summed. Order-aware.

  TRN-pytorch draws those tuples at random in training *and in evaluation*, so its scores vary from run
  to run. hfnet draws at random in training and, in evaluation, computes the expectation of that draw:
  ``subsample`` x the mean over the scale's tuples - deterministic, and equal on average to what the
  original computes. A scale with more than ``max_eval_relations`` tuples (C(16, 8) = 12,870 at 16
  frames) averages a fixed, evenly spaced subset of them in lexicographic order instead of all.
  Tuples are never listed eagerly: they are computed from their lexicographic rank, so a head for many
  frames costs nothing to build.
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .errors import ConfigError

#: TRN-pytorch's ``subsample_num``: tuples drawn per scale (except the largest).
TRN_SUBSAMPLE = 3
#: Evaluation averages at most this many tuples per scale (exact expectation up to 8 frames).
TRN_MAX_EVAL_RELATIONS = 128


class TSNHead(nn.Module):
    """Average consensus. Parameter names (``new_fc``) follow TSN-pytorch so its checkpoints map 1:1."""

    needs_fixed_segments = False

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.new_fc = nn.Linear(in_features, num_classes)

    def forward(self, frame_features: Tensor) -> Tensor:
        """(N, T, D) -> logits (N, num_classes)."""
        return self.new_fc(self.dropout(frame_features)).mean(dim=1)


def combination_by_rank(n: int, k: int, rank: int) -> tuple[int, ...]:
    """The ``rank``-th k-subset of range(n) in lexicographic order (as ``itertools.combinations`` lists them)."""
    out = []
    start = 0
    for remaining in range(k, 0, -1):
        for v in range(start, n):
            count = math.comb(n - v - 1, remaining - 1)
            if rank < count:
                out.append(v)
                start = v + 1
                break
            rank -= count
    return tuple(out)


class TRNHead(nn.Module):
    """Multi-scale temporal relation head with TRN-pytorch's parameter names.

    Keys: ``new_fc`` (D -> img_feature_dim, after dropout) and ``fc_fusion_scales.{i}.{1,3}`` (index 0 =
    the largest scale, T frames): ReLU, Linear(k * img_feature_dim, bottleneck), ReLU, Linear(bottleneck, K).
    """

    needs_fixed_segments = True

    def __init__(self, in_features: int, num_classes: int, num_segments: int, dropout: float = 0.5,
                 img_feature_dim: int = 256, bottleneck: int = 256, subsample: int = TRN_SUBSAMPLE,
                 max_eval_relations: int = TRN_MAX_EVAL_RELATIONS) -> None:
        super().__init__()
        if num_segments < 2:
            raise ConfigError("TRN needs at least 2 segments")
        self.num_segments = num_segments
        self.subsample = subsample
        self.dropout = nn.Dropout(dropout)
        self.new_fc = nn.Linear(in_features, img_feature_dim)
        self.scales = list(range(num_segments, 1, -1))
        self.counts = [math.comb(num_segments, k) for k in self.scales]
        self.fc_fusion_scales = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Linear(k * img_feature_dim, bottleneck), nn.ReLU(),
                          nn.Linear(bottleneck, num_classes))
            for k in self.scales
        )
        # Tuples averaged in evaluation (index tensors, not parameters: not saved, rebuilt from T).
        self._eval_relations = []
        for k, count in zip(self.scales, self.counts):
            m = min(count, max_eval_relations)
            ranks = range(count) if m == count else [(i * count) // m for i in range(m)]
            self._eval_relations.append(torch.tensor([combination_by_rank(num_segments, k, r) for r in ranks]))

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, subsample={self.subsample}"

    def forward(self, frame_features: Tensor) -> Tensor:
        n, t, _ = frame_features.shape
        if t != self.num_segments:
            raise ValueError(f"TRN head built for {self.num_segments} segments, got {t}")
        x = self.new_fc(self.dropout(frame_features))
        out = 0
        for i, (k, count, mlp) in enumerate(zip(self.scales, self.counts, self.fc_fusion_scales)):
            draws = 1 if i == 0 else min(self.subsample, count)
            if self.training:
                ranks = random.sample(range(count), draws) if draws < count else range(count)
                idx = torch.tensor([combination_by_rank(t, k, r) for r in ranks], device=x.device)
                out = out + mlp(x[:, idx].reshape(n, len(idx), -1)).sum(dim=1)
            else:
                idx = self._eval_relations[i].to(x.device)
                out = out + draws * mlp(x[:, idx].reshape(n, len(idx), -1)).mean(dim=1)
        return out


def build_head(kind: str, in_features: int, num_classes: int, num_segments: int, dropout: float,
               args: Mapping[str, Any] | None = None) -> nn.Module:
    """The consensus head ``kind`` ("avg" / "tsn" or "trn") with its options ``args``."""
    args = dict(args or {})
    if kind in ("avg", "tsn"):
        if args:
            raise ConfigError(f"the average consensus takes no options, got {sorted(args)}")
        return TSNHead(in_features, num_classes, dropout)
    if kind == "trn":
        allowed = {"img_feature_dim", "bottleneck", "subsample", "max_eval_relations"}
        if set(args) - allowed:
            raise ConfigError(f"trn: unknown options {sorted(set(args) - allowed)}; options: {sorted(allowed)}")
        for key, value in args.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65536:
                raise ConfigError(f"trn: {key} must be an integer in 1..65536, got {value!r}")
        return TRNHead(in_features, num_classes, num_segments, dropout, **args)
    raise ConfigError(f"unknown consensus {kind!r}; choose 'avg' (TSN) or 'trn'")
