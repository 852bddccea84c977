"""Reading HF gate maps: per-layer summaries, a layer x frame-pair overview, upsampling for overlays.

A gate map ``G-`` of block *l* has shape (T, H, W) (or (N, T, H, W)); ``G-_t`` decides what frame t takes
from frame t+1 (paper Eq. 1): G > 0 averages the pair, G < 0 subtracts the successor (differencing).
``G-_{T-1}`` is always 0 (no successor) and is left out of every statistic here: there are T-1 pairs.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["NEUTRAL_EPS", "short_block_name", "pair_gates", "summarise_gates", "gate_matrix", "upsample_gate"]

#: |G| below this counts as neither averaging nor differencing.
NEUTRAL_EPS = 0.01


def short_block_name(block: str) -> str:
    """``inception_3a`` -> ``3a``; other names unchanged."""
    return block.split("inception_", 1)[1] if block.startswith("inception_") else block


def pair_gates(g: Any) -> np.ndarray:
    """The T-1 meaningful gate maps of one clip, float32 (T-1, H, W); accepts (T,H,W) or (1,T,H,W)."""
    a = g.detach().cpu().float().numpy() if isinstance(g, torch.Tensor) else np.asarray(g, np.float32)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"pair_gates takes one clip; got a batch of {a.shape[0]}")
        a = a[0]
    if a.ndim != 3 or a.shape[0] < 2:
        raise ValueError(f"expected gate maps (T, H, W) with T >= 2, got {a.shape}")
    return a[:-1]


def summarise_gates(gates: Mapping[str, Any], eps: float = NEUTRAL_EPS) -> list[dict[str, Any]]:
    """One row per HF layer, in the given (network) order.

    Keys: ``block``, ``short``, ``mean`` (mean G), ``mean_abs`` (mean |G|), ``share_averaging`` (G > eps),
    ``share_differencing`` (G < -eps), ``share_neutral``, ``min``, ``max``, ``pairs``, ``height``, ``width``.
    """
    rows = []
    for block, g in gates.items():
        p = pair_gates(g)
        rows.append({
            "block": block,
            "short": short_block_name(block),
            "mean": float(p.mean()),
            "mean_abs": float(np.abs(p).mean()),
            "share_averaging": float((p > eps).mean()),
            "share_differencing": float((p < -eps).mean()),
            "share_neutral": float((np.abs(p) <= eps).mean()),
            "min": float(p.min()),
            "max": float(p.max()),
            "pairs": int(p.shape[0]),
            "height": int(p.shape[1]),
            "width": int(p.shape[2]),
        })
    return rows


def gate_matrix(gates: Mapping[str, Any], stat: str = "mean") -> tuple[list[str], np.ndarray]:
    """(block names, (L, T-1) matrix) of the mean G (``stat="mean"``) or mean |G| per layer and pair."""
    names = list(gates)
    if not names:
        return [], np.zeros((0, 0), np.float32)
    rows = []
    for b in names:
        p = pair_gates(gates[b])
        rows.append(np.abs(p).mean(axis=(1, 2)) if stat == "mean_abs" else p.mean(axis=(1, 2)))
    return names, np.stack(rows).astype(np.float32)


def upsample_gate(g: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of gate maps (..., H, W) to ``size`` for overlays on the input frames."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    a = np.asarray(g, np.float32)
    lead = a.shape[:-2]
    x = torch.from_numpy(np.ascontiguousarray(a.reshape(-1, 1, *a.shape[-2:])))
    y = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
    return y.reshape(*lead, *hw).numpy()
