"""Reading the maps of any temporal operator (GSM's two gates, TSM's neighbour share): one row per site,
a site x frame overview, the backwards clip aligned to the forward frames, and exports.

HF's gate has its own reading (``gates.py``: T-1 *pair* maps, averaging vs differencing, whose last map
is 0 by construction). The maps here belong to a *frame*, and every frame counts:

* GSM ``gate_backward`` / ``gate_forward`` (tanh, in [-1, 1]) at frame t: the share of frame t's first /
  second channel half that leaves it for frame t-1 / t+1 (the neighbour receives g*x, the frame keeps
  (1-g)*x). g < 0 sends a negated copy: the neighbour *subtracts* |g|*x and the frame keeps (1+|g|)*x, a
  frame difference. At the clip's ends the moved part has no neighbour and is dropped (frame 0's backward
  share, the last frame's forward share); the frame still loses it, so those maps count too.
* TSM ``from_neighbours`` (in [0, 1]) at frame t: the share of frame t's feature magnitude (sum of |x| over
  channels, after the shift) that came from frames t-1 and t+1. Which channels move is fixed (2 * fold of
  C, fold = C // shift_div); the map says how much signal they carry. At the first and last frame half of
  the moved channels are zeros (nothing lies beyond the clip), so the share there is lower:
  ``mean_inner`` leaves those two frames out and is the number to set beside the channel share.

``ops`` everywhere is ``ClipPrediction.operator_maps`` ("<op>.<module>" -> ``OperatorMaps``), or any
mapping of labels to objects with ``op`` and ``maps`` (map name -> (T, H, W) or (1, T, H, W)).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from hfnet_core.analysis.exports import _csv_bytes, _npz_bytes, _plain, _settings_cell, _strs, provenance
from hfnet_core.analysis.gates import clip_maps, locality_row, short_block_name

__all__ = [
    "GATE_BEHAVIOURS", "site_short", "frame_maps", "of_kind", "map_names", "gate_rows", "most_local_site",
    "neighbour_rows", "frame_matrix", "backward_aligned", "operator_summary_csv", "operator_maps_npz",
]

#: ``behaviour`` of a GSM gate row (``gates.locality_row`` decides it with HF's thresholds: mean >= 0.9 is
#: "fixed_averaging", <= -0.9 "fixed_differencing", ...) -> what it means for a share that moves.
GATE_BEHAVIOURS: dict[str, str] = {
    "local": "the share varies across the frame: each position decides how much of its features moves",
    "fixed_averaging": "about all of the channel half moves at every position: a fixed shift of the whole half "
                       "(what TSM does with its channels), not a local choice",
    "fixed_differencing": "about all of the channel half moves negated at every position: the neighbour subtracts "
                          "it everywhere, a fixed frame difference, not a local choice",
    "uniform": "the same share moves at every position (the gate hardly varies across the frame, or the map "
               "has a single position)",
    "inactive": "|g| is about 0: nothing moves, the channels stay in their frame",
}


def site_short(label: str) -> str:
    """``gsm.inception_3a_1x1`` -> ``3a_1x1``; ``tsm.conv2_3x3_reduce`` -> ``conv2_3x3_reduce``."""
    return short_block_name(label.split(".", 1)[1] if "." in label else label)


def frame_maps(a: Any) -> np.ndarray:
    """One clip's maps as float32 (T, H, W); accepts (T, H, W) or (1, T, H, W)."""
    return clip_maps(a, 1, "operator maps")


def of_kind(ops: Mapping[str, Any], op: str) -> dict[str, Any]:
    """The sites of one operator kind, in network order."""
    return {label: o for label, o in ops.items() if o.op == op}


def map_names(ops: Mapping[str, Any]) -> list[str]:
    """Map names the sites expose, in first-seen order (GSM: ``gate_backward``, ``gate_forward``)."""
    return list(dict.fromkeys(name for o in ops.values() for name in o.maps))


def gate_rows(ops: Mapping[str, Any], map_name: str) -> list[dict[str, Any]]:
    """One row per site for a gate in [-1, 1] whose every frame counts (GSM's): ``gates.locality_row`` over
    all T maps - ``mean``, ``mean_abs``, ``locality``, ``saturation``, ``behaviour`` (``GATE_BEHAVIOURS``),
    ``fixed`` ... - with its averaging / differencing shares renamed for a share that moves:
    ``share_moves`` (g > 0.01), ``share_negated`` (g < -0.01); plus ``label``, ``module``, ``map``,
    ``frames`` and ``per_frame_mean`` (T,)."""
    rows = []
    for label, o in ops.items():
        if map_name not in o.maps:
            continue
        m = frame_maps(o.maps[map_name])
        row = locality_row(label, m)
        row["share_moves"] = row.pop("share_averaging")
        row["share_negated"] = row.pop("share_differencing")
        row.pop("pairs", None)
        row.update(label=label, module=o.module, short=site_short(label), map=map_name, frames=int(m.shape[0]),
                   per_frame_mean=m.mean(axis=(1, 2)))
        rows.append(row)
    return rows


def most_local_site(rows: Sequence[dict[str, Any]]) -> str | None:
    """The site whose gate (any of its maps) is most local among rows behaving ``"local"`` (else the most
    local overall; else the first site): where the operator makes a per-position choice."""
    finite = [r for r in rows if np.isfinite(r["locality"])]
    pool = [r for r in finite if r["behaviour"] == "local"] or finite
    if not pool:
        return rows[0]["label"] if rows else None
    return max(pool, key=lambda r: r["locality"])["label"]


def neighbour_rows(ops: Mapping[str, Any], channel_share: Mapping[str, float] | None = None,
                   map_name: str = "from_neighbours") -> list[dict[str, Any]]:
    """One row per TSM site: how much of its features came from the neighbouring frames.

    Keys: ``label``, ``module``, ``short``, ``mean`` (all frames), ``mean_inner`` (frames 1 .. T-2, where
    both neighbours exist; ``mean`` when T < 3), ``min``, ``max``, ``spatial_std`` (mean over frames of the
    standard deviation across positions), ``per_frame_mean`` (T,), ``frames``, ``height``, ``width``, and
    with ``channel_share`` (label -> the share of channels the site moves, 2 * fold / C):
    ``channel_share`` and ``ratio`` = mean_inner / channel_share (1: the moved channels carry exactly their
    share of the signal; None without a channel share).
    """
    rows = []
    for label, o in ops.items():
        if map_name not in o.maps:
            continue
        m = frame_maps(o.maps[map_name])
        per_frame = m.mean(axis=(1, 2))
        inner = float(per_frame[1:-1].mean()) if m.shape[0] >= 3 else float(per_frame.mean())
        share = None if channel_share is None else channel_share.get(label)
        rows.append({
            "label": label, "module": o.module, "short": site_short(label), "mean": float(m.mean()),
            "mean_inner": inner, "min": float(m.min()), "max": float(m.max()),
            "spatial_std": float(m.reshape(m.shape[0], -1).std(axis=1).mean()), "per_frame_mean": per_frame,
            "frames": int(m.shape[0]), "height": int(m.shape[1]), "width": int(m.shape[2]),
            "channel_share": share, "ratio": inner / share if share else None,
        })
    return rows


def frame_matrix(ops: Mapping[str, Any], map_name: str) -> tuple[list[str], np.ndarray]:
    """(site labels, (L, T) matrix): the mean of each site's map at every frame."""
    labels = [label for label, o in ops.items() if map_name in o.maps]
    if not labels:
        return [], np.zeros((0, 0), np.float32)
    return labels, np.stack([frame_maps(ops[lb].maps[map_name]).mean(axis=(1, 2)) for lb in labels]).astype(np.float32)


def backward_aligned(ops: Mapping[str, Any], map_name: str) -> dict[str, np.ndarray]:
    """Maps computed on the reversed clip, re-indexed by the forward clip's frames: reversed frame s is
    forward frame T-1-s, so the maps in reverse order. (A GSM gate that moves features one frame *back*
    on the reversed clip moves them towards the frame that is *later* in the forward clip.)"""
    return {label: frame_maps(o.maps[map_name])[::-1].copy() for label, o in ops.items() if map_name in o.maps}


_SKIP_CSV = ("per_frame_mean",)


def operator_summary_csv(rows: Sequence[dict[str, Any]], clip: str, model: Any,
                         settings: Mapping[str, Any] | None = None) -> bytes:
    """One row per site (and map): clip, model, every key of ``gate_rows`` / ``neighbour_rows`` except the
    per-frame vector, then the per-frame means as ``frame_0 ...``, then settings."""
    keys = [k for k in (rows[0] if rows else {"label": None}) if k not in _SKIP_CSV]
    frames = max((len(r.get("per_frame_mean", ())) for r in rows), default=0)
    name = model["name"] if isinstance(model, Mapping) else str(model)
    cell = _settings_cell(settings)

    def line(r: dict[str, Any]) -> list[Any]:
        per = [float(v) for v in r.get("per_frame_mean", ())]
        return [clip, name, *[r.get(k) for k in keys], *(per + [None] * (frames - len(per))), cell]

    return _csv_bytes(["clip", "model", *keys, *[f"frame_{t}" for t in range(frames)], "settings"],
                      (line(r) for r in rows))


def operator_maps_npz(ops: Mapping[str, Any], clip: str, model: Any, settings: Mapping[str, Any] | None = None,
                      rows: Sequence[dict[str, Any]] = ()) -> bytes:
    """Arrays ``<map name>/<label>`` (T, H, W) float32 exactly as the model returned them, ``sites`` (labels
    in network order) and ``metadata`` (provenance, each map's meaning, the summary ``rows``) as JSON."""
    arrays: dict[str, np.ndarray] = {}
    meanings: dict[str, str] = {}
    for label, o in ops.items():
        for name, a in o.maps.items():
            arrays[f"{name}/{label}"] = frame_maps(a)
        meanings.update(getattr(o, "meanings", {}) or {})
    meta = provenance("operator-maps", clip, [model], settings)
    meta["meanings"] = meanings
    meta["sites"] = [dict(r) for r in rows]
    arrays["sites"] = _strs(list(ops))
    arrays["metadata"] = np.array(json.dumps(_plain(meta)))
    return _npz_bytes(arrays)
