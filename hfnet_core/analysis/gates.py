"""Reading HF gate maps: per-layer summaries, locality, a layer x frame-pair overview, overlays.

A gate map ``G-`` of block *l* has shape (T, H, W) (or (N, T, H, W)); ``G-_t`` decides what frame t takes
from frame t+1 (paper Eq. 1): G > 0 averages the pair, G < 0 subtracts the successor (differencing).
``G-_{T-1}`` is always 0 (no successor) and is left out of every statistic here: there are T-1 pairs.

The paper's claim is a *local* choice: each position decides for itself whether to average or to
difference. ``gate_locality`` measures whether a layer does that, or instead applies one fixed operation
everywhere (a constant one-frame transfer, a constant difference, nothing); ``gate_overlay`` draws gate
maps over desaturated frames so the gate colours never mix with the content's own colours.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "NEUTRAL_EPS", "SATURATION", "INACTIVE_MEAN_ABS", "FIXED_TOLERANCE", "LOCAL_MIN", "BEHAVIOURS",
    "short_block_name", "clip_maps", "pair_gates", "summarise_gates", "gate_locality", "locality_row", "most_local_layer",
    "gate_matrix", "upsample_gate", "gate_colours", "gate_overlay", "AVERAGING_RGB", "DIFFERENCING_RGB",
]

#: |G| below this counts as neither averaging nor differencing.
NEUTRAL_EPS = 0.01
#: |G| above this counts as saturated (the tanh of the gate conv is at its limit).
SATURATION = 0.95
#: A layer whose mean |G| is below this passes every frame through (almost) unchanged: "inactive".
INACTIVE_MEAN_ABS = 0.05
#: A layer within this mean absolute distance of the all-(+1) map is "fixed_averaging"; of the
#: all-(-1) map, "fixed_differencing". Because -1 <= G <= 1, that distance is simply 1 - mean G
#: (resp. 1 + mean G), so the test reads ``mean G >= 0.9`` (resp. ``<= -0.9``).
FIXED_TOLERANCE = 0.1
#: Below this locality the layer applies the same blend everywhere ("uniform"), whatever its strength.
LOCAL_MIN = 0.1

#: ``behaviour`` value -> what it means, in words for people (the app shows these).
BEHAVIOURS: dict[str, str] = {
    "local": "chooses per position: the gate varies across the frame, as the paper intends",
    "fixed_averaging": "G is about +1 everywhere: a fixed one-frame transfer (each frame takes its successor "
                       "in full), not a local choice",
    "fixed_differencing": "G is about -1 everywhere: a fixed frame difference at every position, not a local "
                          "choice",
    "uniform": "the same partial blend at every position (the gate hardly varies across the frame, or the "
               "map has a single position)",
    "inactive": "|G| is about 0: the layer passes frames through unchanged",
}


def short_block_name(block: str) -> str:
    """``inception_3a`` -> ``3a``; other names unchanged."""
    return block.split("inception_", 1)[1] if block.startswith("inception_") else block


def clip_maps(a: Any, min_frames: int = 1, what: str = "maps") -> np.ndarray:
    """One clip's per-frame maps (a gate, an operator's map) as float32 (T, H, W), T >= ``min_frames``;
    accepts a tensor or an array, (T, H, W) or (1, T, H, W)."""
    m = a.detach().cpu().float().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, np.float32)
    if m.ndim == 4:
        if m.shape[0] != 1:
            raise ValueError(f"{what} of one clip expected; got a batch of {m.shape[0]}")
        m = m[0]
    if m.ndim != 3 or m.shape[0] < min_frames:
        raise ValueError(f"expected {what} (T, H, W) with T >= {min_frames}, got {m.shape}")
    return m


def pair_gates(g: Any) -> np.ndarray:
    """The T-1 meaningful gate maps of one clip, float32 (T-1, H, W); accepts (T,H,W) or (1,T,H,W)."""
    return clip_maps(g, 2, "gate maps")[:-1]


def summarise_gates(gates: Mapping[str, Any], eps: float = NEUTRAL_EPS) -> list[dict[str, Any]]:
    """One row per HF layer, in the given (network) order.

    Keys: ``block``, ``short``, ``mean`` (mean G), ``mean_abs`` (mean |G|), ``share_averaging`` (G > eps),
    ``share_differencing`` (G < -eps), ``share_neutral``, ``min``, ``max``, ``pairs``, ``height``, ``width``.
    """
    return [_summary_row(block, pair_gates(g), eps) for block, g in gates.items()]


def _summary_row(block: str, p: np.ndarray, eps: float = NEUTRAL_EPS) -> dict[str, Any]:
    return {
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
    }


def _pairs_of(g: Any) -> np.ndarray:
    """All meaningful pair maps of one clip (T, H, W) or a batch (N, T, H, W): float32 (P, H, W)."""
    a = g.detach().cpu().float().numpy() if isinstance(g, torch.Tensor) else np.asarray(g, np.float32)
    if a.ndim == 4:
        if a.shape[1] < 2:
            raise ValueError(f"expected gate maps (N, T, H, W) with T >= 2, got {a.shape}")
        return a[:, :-1].reshape(-1, *a.shape[2:])
    return pair_gates(a)


def gate_locality(gates: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per HF layer: how much its gate varies across positions, and what the layer does as a whole.

    ``gates``: block name -> G- of one clip (T, H, W) (or a batch (N, T, H, W): every clip's pairs count).
    One row per layer, in the given (network) order, with the keys of ``summarise_gates`` plus:

    * ``locality`` = mean over frame pairs of the spatial standard deviation of G_t, divided by mean |G|.
      The standard deviation is taken *within* each pair's map, so a gate that is the same everywhere
      but changes from pair to pair still scores 0 (that is a global, not a local, decision); dividing
      by mean |G| makes it scale-free, so a layer with small but position-dependent gates counts as
      local and one pinned at +1 counts as fixed. 0 = the same value at every position; 1.15 for gates
      drawn uniformly from [-1, 1] (std 0.577 / mean |G| 0.5); half the positions at +1 and half at -1
      give 1.0. NaN for 1x1 maps (no positions to compare) or when mean |G| is 0.
    * ``saturation``: share of |G| > ``SATURATION`` (0.95).
    * ``spatial_std``: the numerator above (mean per-pair spatial standard deviation).
    * ``behaviour``, decided in this order (thresholds are the module constants):
      ``"inactive"`` if mean |G| < ``INACTIVE_MEAN_ABS`` (0.05);
      ``"fixed_averaging"`` if mean G >= 1 - ``FIXED_TOLERANCE`` (0.9): within 0.1 (mean absolute
      difference) of G = +1 everywhere, i.e. a full one-frame transfer;
      ``"fixed_differencing"`` if mean G <= -0.9 (G = -1 everywhere);
      ``"uniform"`` if locality < ``LOCAL_MIN`` (0.1) or is NaN: one partial blend everywhere;
      ``"local"`` otherwise. ``BEHAVIOURS`` maps each value to a sentence.
    * ``fixed``: True for ``fixed_averaging`` / ``fixed_differencing`` (the flag the issue asks for).
    """
    return [locality_row(block, _pairs_of(g)) for block, g in gates.items()]


def locality_row(name: str, maps: np.ndarray) -> dict[str, Any]:
    """``gate_locality``'s row for maps in [-1, 1] that ALL count, (P, H, W): what it computes on HF's T-1
    pair maps, and on operators whose every frame's map is meaningful (GSM's gates: ``operator_maps``)."""
    p = np.asarray(maps, np.float32)
    row = _summary_row(name, p)
    spatial = float(p.reshape(p.shape[0], -1).std(axis=1).mean())
    single = p.shape[1] * p.shape[2] == 1
    locality = float("nan") if single or row["mean_abs"] == 0.0 else spatial / row["mean_abs"]
    row.update(locality=locality, spatial_std=spatial, saturation=float((np.abs(p) > SATURATION).mean()))
    row["behaviour"] = _behaviour(row["mean"], row["mean_abs"], locality)
    row["fixed"] = row["behaviour"] in ("fixed_averaging", "fixed_differencing")
    return row


def _behaviour(mean: float, mean_abs: float, locality: float) -> str:
    if mean_abs < INACTIVE_MEAN_ABS:
        return "inactive"
    if mean >= 1.0 - FIXED_TOLERANCE:
        return "fixed_averaging"
    if mean <= -1.0 + FIXED_TOLERANCE:
        return "fixed_differencing"
    if not np.isfinite(locality) or locality < LOCAL_MIN:
        return "uniform"
    return "local"


def most_local_layer(gates: Mapping[str, Any]) -> str | None:
    """The layer with the highest locality among those that behave ``"local"`` (else the highest
    locality overall; None without gates): the default layer to show, because it is where the gate
    actually makes a per-position choice."""
    rows = [r for r in gate_locality(gates) if np.isfinite(r["locality"])]
    if not rows:
        return next(iter(gates), None)
    local = [r for r in rows if r["behaviour"] == "local"] or rows
    return max(local, key=lambda r: r["locality"])["block"]


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


#: Overlay colours: G = +1 (averaging) is this blue, G = -1 (differencing) this red; 0 leaves the frame
#: grey. The ends of ColorBrewer's RdBu, the diverging scale the app's gate heatmaps use.
AVERAGING_RGB = (33, 102, 172)
DIFFERENCING_RGB = (178, 24, 43)


def gate_colours(g: np.ndarray) -> np.ndarray:
    """Gate values (...) in [-1, 1] -> RGB float (..., 3): blue for G > 0, red for G < 0 (fully
    saturated colour; ``gate_overlay`` sets the opacity from |G|)."""
    a = np.asarray(g, np.float32)[..., None]
    return np.where(a >= 0, np.asarray(AVERAGING_RGB, np.float32), np.asarray(DIFFERENCING_RGB, np.float32))


def gate_overlay(frames_uint8: np.ndarray, gate_maps: np.ndarray, opacity: float = 0.75,
                 desaturate: float = 1.0, dim: float = 0.35) -> np.ndarray:
    """Gate maps drawn over desaturated frames: uint8 (T, H, W, 3).

    ``frames_uint8``: (T, H, W, 3) RGB, the frames the model saw. ``gate_maps``: (T, h, w) - frame t gets
    G-_t, what it takes from frame t+1 - or (T-1, h, w) (the last frame, which has no successor, then
    gets no colour); maps are upsampled bilinearly to the frame size. Each pixel is first turned to grey
    (``desaturate`` = 1: fully; luminance, Rec. 601) and lightened towards white by ``dim`` so dark
    content cannot hide the colour; then blue (G > 0, averaging) or red (G < 0, differencing) is laid on
    with opacity ``opacity * |G|``. The frame underneath is grey, so a red object or a blue sky can never
    be mistaken for a gate, and G = 0 leaves the grey frame as it is.
    """
    if not (0.0 <= float(opacity) <= 1.0 and 0.0 <= float(desaturate) <= 1.0 and 0.0 <= float(dim) <= 1.0):
        raise ValueError(f"opacity, desaturate and dim must lie in [0, 1], got {opacity}, {desaturate}, {dim}")
    frames = np.asarray(frames_uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    maps = np.asarray(gate_maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"gate maps must be (T, h, w) or (T-1, h, w), got {maps.shape}")
    t = frames.shape[0]
    if maps.shape[0] == t - 1:
        maps = np.concatenate([maps, np.zeros((1, *maps.shape[1:]), np.float32)])
    if maps.shape[0] != t:
        raise ValueError(f"{maps.shape[0]} gate maps for {t} frames (expected {t} or {t - 1})")
    if maps.shape[1:] != frames.shape[1:3]:
        maps = upsample_gate(maps, frames.shape[1:3])
    maps = np.clip(np.nan_to_num(maps), -1.0, 1.0)
    rgb = frames.astype(np.float32)
    grey = rgb @ np.asarray([0.299, 0.587, 0.114], np.float32)
    base = rgb * (1.0 - desaturate) + grey[..., None] * desaturate
    base = base * (1.0 - dim) + 255.0 * dim
    w = (float(opacity) * np.abs(maps))[..., None]
    out = base * (1.0 - w) + gate_colours(maps) * w
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
