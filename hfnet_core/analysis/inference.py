"""One clip through one checkpoint: probabilities, top-5, pooled features and every operator's maps.

``run_clip`` touches no shared mutable state: it runs ``model.inspect`` (which returns everything it
computes) under ``torch.inference_mode()`` and hands back plain numpy arrays, so one cached model can
serve many browser sessions at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["ClipPrediction", "OperatorMaps", "run_clip", "same_classes"]


@dataclass(frozen=True)
class OperatorMaps:
    """What one temporal operator at one site exposed for this clip (any operator: HF, GSM, TSM)."""

    op: str  # "hf", "gsm", "tsm"
    module: str  # the backbone module it sits at ("inception_3a", "inception_3a_1x1", "layer1.0.conv1")
    side: str  # "in" or "out" of that module
    maps: dict[str, np.ndarray]  # map name -> (T, H, W) float32 (e.g. HF "gate", GSM "gate_backward")
    meanings: dict[str, str]  # map name -> what it means (from the operator class)


@dataclass(frozen=True)
class ClipPrediction:
    class_names: list[str]
    logits: np.ndarray  # (K,) float32
    probs: np.ndarray  # (K,) float32, softmax of logits
    top5_indices: list[int]
    top5_names: list[str]
    top5_probs: list[float]
    gates: dict[str, np.ndarray]  # block name -> G- (T, H, W) in [-1, 1]; G-_{T-1} = 0; {} without HF
    pooled_features: np.ndarray  # (D,)
    frame_features: np.ndarray  # (T, D)
    #: every operator's maps, "<op>.<module>" -> OperatorMaps, in network order (HF's are also in ``gates``)
    operator_maps: dict[str, OperatorMaps] = field(default_factory=dict)

    @property
    def top1(self) -> str:
        return self.top5_names[0]


def run_clip(checkpoint: Any, x: torch.Tensor, k: int = 5) -> ClipPrediction:
    """Run ``checkpoint.model.inspect`` on one clip ``x`` of shape (1, T, 3, H, W) (or (T, 3, H, W))."""
    model = checkpoint.model
    if x.dim() == 4:
        x = x.unsqueeze(0)
    if x.dim() != 5 or x.shape[0] != 1:
        raise ValueError(f"run_clip takes one clip (1, T, 3, H, W), got {tuple(x.shape)}")
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.inspect(x.to(device))
        logits = out.logits[0].float()
        probs = torch.softmax(logits, dim=0)
        k = min(k, probs.numel())
        top = torch.topk(probs, k)
        gates = {name: g[0].float().cpu().numpy() for name, g in out.gates.items()}
        ops = {}
        for label, rec in out.temporal.items():
            meanings = dict(type(model.operator_at(rec.op, rec.site)).map_meanings)
            maps = {k: v[0].float().cpu().numpy() for k, v in rec.maps.items() if v.dim() == 4}
            ops[label] = OperatorMaps(rec.op, rec.site.module, rec.site.side, maps, meanings)
        pooled = out.pooled_features[0].float().cpu().numpy()
        frames = out.frame_features[0].float().cpu().numpy()
        logits_np, probs_np = logits.cpu().numpy(), probs.cpu().numpy()
    names = list(checkpoint.class_names)
    idx = [int(i) for i in top.indices.cpu()]
    return ClipPrediction(
        class_names=names,
        logits=logits_np,
        probs=probs_np,
        top5_indices=idx,
        top5_names=[names[i] for i in idx],
        top5_probs=[float(p) for p in top.values.cpu()],
        gates=gates,
        pooled_features=pooled,
        frame_features=frames,
        operator_maps=ops,
    )


def same_classes(a: Any, b: Any) -> bool:
    """Whether two checkpoints (or predictions) share one class list, in order."""
    return list(a.class_names) == list(b.class_names)
