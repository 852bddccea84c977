"""What a person can take away: predictions, gate values and attributions as CSV / JSON / NPZ, and figures.

Every function is pure (it returns ``bytes``) except ``write_export`` (atomic, ``hfnet_core.atomic``), so
the app can hand the bytes to a download button and the CLI can write them to disk. Every file names
what it was computed from *inside* the file, so it still makes sense when it is renamed or mailed:

* JSON: top-level ``format``, ``format_version``, ``hfnet_version``, ``clip``, ``models``, ``settings``.
* NPZ: the same as one JSON string in the ``metadata`` array (load with ``allow_pickle=False``; no
  pickled objects are ever stored). Strings are numpy unicode arrays.
* CSV: one self-contained row per value - every row carries ``clip`` and ``model`` columns, and the
  settings as a compact ``settings`` column (``key=value;key=value``), so no row depends on a header
  comment that CSV readers drop.
* Figures (PNG/SVG, ``figure_png`` / ``figure_svg``, from ``figure_export``): a visible line naming clip,
  models and settings, and the same provenance as PNG text chunks / SVG ``<metadata>``.

Predictions are exchanged as *records* (``prediction_record``): one clip seen in one direction
(``"forward"`` or ``"reversed"``) by one or more models - top-k, the logits, whether the top-1 is right
when the true label is known, and how the models agree. ``hfnet predict`` builds them; the app can build
the same from its own ``ClipPrediction`` objects.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from hfnet_core import __version__
from hfnet_core.analysis.figure_export import figure_engine, figure_png, figure_svg, provenance_line
from hfnet_core.analysis.gates import gate_locality, short_block_name
from hfnet_core.atomic import write_bytes_atomic

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "model_info",
    "provenance",
    "prediction_record",
    "agreement",
    "reversal_comparison",
    "predictions_json",
    "predictions_csv",
    "predictions_npz",
    "gates_json",
    "gates_csv",
    "gate_summary_csv",
    "gates_npz",
    "attributions_json",
    "attributions_csv",
    "attributions_npz",
    "figure_png",
    "figure_svg",
    "figure_engine",
    "provenance_line",
    "write_export",
]

EXPORT_FORMAT_VERSION = 1


# --- provenance ---------------------------------------------------------------------------------------

def model_info(checkpoint: Any, name: str | None = None, class_names: Sequence[str] | None = None,
               task: str | None = None) -> dict[str, Any]:
    """What identifies a model in an export: display name, file, sha256, architecture, input and its
    class list (the order of every ``logits`` vector of its records).

    ``checkpoint`` is a ``LoadedCheckpoint`` (anything with ``config``, ``class_names``, ``sha256``,
    ``path``); ``name`` defaults to the file's stem. A multi-task model's predictions exported as one task
    (``ClipPrediction.for_task``) give that ``task`` and its ``class_names``.
    """
    cfg = getattr(checkpoint, "config", None)
    path = str(getattr(checkpoint, "path", "") or "")
    names = list(class_names) if class_names is not None else list(getattr(checkpoint, "class_names", []) or [])
    info = {
        "name": name or (Path(path).stem if path else getattr(cfg, "name", "") or "model"),
        "file": Path(path).name if path else "",
        "sha256": str(getattr(checkpoint, "sha256", "") or ""),
        "architecture": str(getattr(cfg, "name", "") or getattr(cfg, "backbone", "")),
        "num_segments": int(getattr(cfg, "num_segments", 0) or 0),
        "input_size": int(getattr(cfg, "input_size", 0) or 0),
        "num_classes": len(names),
        "class_names": [str(c) for c in names],
    }
    if task:
        info["task"] = task
    return info


def _model_names(models: Sequence[Any]) -> list[str]:
    return [m["name"] if isinstance(m, Mapping) else str(m) for m in models]


def provenance(kind: str, clip: str | Sequence[str], models: Sequence[Any],
               settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The header every JSON/NPZ export starts with. ``models``: names or ``model_info`` dicts."""
    return {
        "format": f"hfnet-{kind}",
        "format_version": EXPORT_FORMAT_VERSION,
        "hfnet_version": __version__,
        "clip": clip if isinstance(clip, str) else list(clip),
        "models": [dict(m) if isinstance(m, Mapping) else {"name": str(m)} for m in models],
        "settings": _plain(dict(settings or {})),
    }


def _settings_cell(settings: Mapping[str, Any] | None) -> str:
    return ";".join(f"{k}={_plain(v)}" for k, v in (settings or {}).items())


def _plain(x: Any) -> Any:
    """JSON-ready: numpy scalars/arrays to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, Path):
        return str(x)
    return x


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(_plain(obj), indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for v in r])
    return buf.getvalue().encode("utf-8")


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _strs(xs: Sequence[str]) -> np.ndarray:
    return np.array([str(x) for x in xs], dtype=np.str_) if len(xs) else np.zeros(0, dtype="<U1")


# --- predictions ---------------------------------------------------------------------------------------

def prediction_record(clip: str, predictions: Mapping[str, Any], *, true_label: str | None = None,
                      true_label_source: str | None = None, direction: str = "forward", k: int = 5,
                      path: str | None = None, include_logits: bool = True) -> dict[str, Any]:
    """One clip in one direction through one or more models, as plain data.

    ``predictions``: model name -> ``ClipPrediction`` (``hfnet_core.analysis.inference``), in display
    order. Per model: ``top_k`` (rank, class, index, prob, logit), ``top1``, ``top1_prob``, ``correct``
    (top-1 equals ``true_label``; None when the label is unknown or not one of the model's classes),
    ``true_rank`` (1-based, None when unknown), ``true_prob`` and, with ``include_logits``, ``logits``:
    all of them, in the order of the model's class list (``model_info(...)["class_names"]``; kept out
    of the record so a 25k-clip export does not repeat 174 names per clip). ``agreement`` compares the
    models (see ``agreement``).
    """
    per_model = []
    for name, p in predictions.items():
        names = list(p.class_names)
        probs = np.asarray(p.probs, np.float64)
        logits = np.asarray(p.logits, np.float64)
        kk = min(int(k), len(names))
        order = np.argsort(-probs, kind="stable")[:kk]
        known = true_label is not None and true_label in names
        true_idx = names.index(true_label) if known else None
        rank = int((probs > probs[true_idx]).sum()) + 1 if true_idx is not None else None
        per_model.append({
            "model": name,
            "top1": names[int(order[0])],
            "top1_prob": float(probs[order[0]]),
            "top_k": [{"rank": r + 1, "class": names[int(i)], "index": int(i), "prob": float(probs[i]),
                       "logit": float(logits[i])} for r, i in enumerate(order)],
            "correct": (names[int(order[0])] == true_label) if known else None,
            "true_rank": rank,
            "true_prob": float(probs[true_idx]) if true_idx is not None else None,
        })
        if include_logits:
            per_model[-1]["logits"] = [float(v) for v in logits]
        if getattr(p, "tasks", None):  # a multi-task model: which task ``top_k`` is, and all three top-5s
            per_model[-1]["task"] = getattr(p, "task", None)
            per_model[-1]["tasks"] = {t: [{"class": c, "prob": float(q)} for c, q in zip(top.names, top.probs)]
                                      for t, top in p.tasks.items()}
    return {"clip": clip, "path": path or clip, "direction": direction, "true_label": true_label,
            "true_label_source": true_label_source, "k": int(k), "models": per_model,
            "agreement": agreement(predictions, k)}


def agreement(predictions: Mapping[str, Any], k: int = 5) -> dict[str, Any]:
    """How the models agree on one clip.

    ``top1_all_agree``: every model has the same top-1 class name (None with fewer than two models);
    ``pairs``: for each pair of models, ``top1_agree``, ``topk_overlap`` (classes shared by the two
    top-k lists, by name), ``same_classes`` (identical class lists, in order) and ``js_divergence``
    (Jensen-Shannon divergence of the two probability vectors in bits, 0 = identical, 1 = disjoint;
    None when the class lists differ, since the vectors then do not line up).
    """
    items = list(predictions.items())
    tops = {n: p.top5_names[0] if len(p.top5_names) else None for n, p in items}
    pairs = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (na, pa), (nb, pb) = items[i], items[j]
            same = list(pa.class_names) == list(pb.class_names)
            ka, kb = _topk_names(pa, k), _topk_names(pb, k)
            pairs.append({"a": na, "b": nb, "top1_agree": tops[na] == tops[nb],
                          "topk_overlap": len(set(ka) & set(kb)), "k": int(k), "same_classes": same,
                          "js_divergence": _js_bits(pa.probs, pb.probs) if same else None})
    return {"top1": tops, "top1_all_agree": (len(set(tops.values())) == 1) if len(items) > 1 else None,
            "pairs": pairs}


def _topk_names(p: Any, k: int) -> list[str]:
    probs = np.asarray(p.probs)
    order = np.argsort(-probs, kind="stable")[: min(int(k), len(probs))]
    return [p.class_names[int(i)] for i in order]


def _js_bits(p: Any, q: Any) -> float:
    p = np.clip(np.asarray(p, np.float64), 0, None)
    q = np.clip(np.asarray(q, np.float64), 0, None)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / b[nz])).sum())

    return max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))


def reversal_comparison(forward: Mapping[str, Any], reversed_: Mapping[str, Any]) -> dict[str, Any]:
    """Per model, what playing the clip backwards changed: ``max_abs_logit_diff`` (0 up to float
    rounding for a frame-order-blind model such as TSN: the proof that it cannot tell the two apart),
    ``top1_forward`` / ``top1_reversed`` and ``top1_changed``."""
    out = {}
    for name, pf in forward.items():
        pr = reversed_.get(name)
        if pr is None:
            continue
        diff = float(np.max(np.abs(np.asarray(pf.logits, np.float64) - np.asarray(pr.logits, np.float64))))
        out[name] = {"max_abs_logit_diff": diff, "top1_forward": pf.top5_names[0],
                     "top1_reversed": pr.top5_names[0], "top1_changed": pf.top5_names[0] != pr.top5_names[0]}
    return out


def _records_clips(records: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        seen.setdefault(str(r["clip"]), None)
    return list(seen)


def predictions_json(records: Sequence[Mapping[str, Any]], models: Sequence[Any],
                     settings: Mapping[str, Any] | None = None, skipped: Sequence[Mapping[str, str]] = (),
                     reversal: Mapping[str, Any] | None = None) -> bytes:
    """All records as one JSON document: provenance, ``records``, ``skipped`` ({path, reason}) and
    ``reversal`` (clip -> ``reversal_comparison``) when the clips were also played backwards."""
    clips = _records_clips(records)
    doc = provenance("predictions", clips[0] if len(clips) == 1 else clips, models, settings)
    doc.update(records=list(records), skipped=list(skipped), counts={
        "clips": len(clips), "records": len(records), "skipped": len(skipped)})
    if reversal:
        doc["reversal"] = dict(reversal)
    return _json_bytes(doc)


PREDICTION_CSV_COLUMNS = ("clip", "direction", "true_label", "model", "rank", "class", "prob", "logit",
                          "correct", "top1_all_agree", "settings")


def predictions_csv(records: Sequence[Mapping[str, Any]], settings: Mapping[str, Any] | None = None) -> bytes:
    """One row per (clip, direction, model, rank): ``PREDICTION_CSV_COLUMNS``. ``correct`` (the model's
    top-1 is right) and ``top1_all_agree`` are repeated on every rank row of the model; empty = unknown."""
    cell = _settings_cell(settings)
    rows = []
    for r in records:
        agree = r["agreement"]["top1_all_agree"]
        for m in r["models"]:
            for t in m["top_k"]:
                rows.append([r["clip"], r["direction"], r["true_label"], m["model"], t["rank"], t["class"],
                             t["prob"], t["logit"], m["correct"], agree, cell])
    return _csv_bytes(PREDICTION_CSV_COLUMNS, rows)


def predictions_npz(records: Sequence[Mapping[str, Any]], models: Sequence[Any],
                    settings: Mapping[str, Any] | None = None) -> bytes:
    """Arrays: ``clips``, ``directions``, ``true_labels`` ("" = unknown) of the M records; per model i
    (``model_names[i]``): ``logits_i`` (M, K_i) float32 (NaN rows where the record has no logits),
    ``class_names_i`` (from ``model_info`` dicts), ``topk_indices_i`` (M, k); ``metadata``: provenance
    (without the class lists, stored as arrays) + per-record agreement as JSON."""
    names = _model_names(models)
    clips = _records_clips(records)
    classes_of = {_model_names([m])[0]: list(m.get("class_names") or []) if isinstance(m, Mapping) else []
                  for m in models}
    slim = [{k: v for k, v in m.items() if k != "class_names"} if isinstance(m, Mapping) else m for m in models]
    meta = provenance("predictions", clips[0] if len(clips) == 1 else clips, slim, settings)
    meta["agreement"] = [r["agreement"] for r in records]
    arrays: dict[str, np.ndarray] = {
        "clips": _strs([r["clip"] for r in records]),
        "directions": _strs([r["direction"] for r in records]),
        "true_labels": _strs([r["true_label"] or "" for r in records]),
        "model_names": _strs(names),
    }
    for i, name in enumerate(names):
        per = [next((m for m in r["models"] if m["model"] == name), None) for r in records]
        got = [m for m in per if m is not None]
        width = max([len(m.get("logits") or []) for m in got] + [len(classes_of.get(name, []))])
        k = max((len(m["top_k"]) for m in got), default=0)
        logits = np.full((len(records), width), np.nan, np.float32)
        top = np.full((len(records), k), -1, np.int64)
        for row, m in enumerate(per):
            if m is not None:
                if m.get("logits"):
                    logits[row] = m["logits"]
                top[row, : len(m["top_k"])] = [t["index"] for t in m["top_k"]]
        arrays[f"logits_{i}"] = logits
        arrays[f"class_names_{i}"] = _strs(classes_of.get(name, []))
        arrays[f"topk_indices_{i}"] = top
    arrays["metadata"] = np.array(json.dumps(_plain(meta)))
    return _npz_bytes(arrays)


# --- gates ---------------------------------------------------------------------------------------------

def _gate_arrays(gates: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for b, g in gates.items():
        a = np.asarray(g.detach().cpu().float().numpy() if hasattr(g, "detach") else g, np.float32)
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 3:
            raise ValueError(f"gate map {b}: expected (T, H, W), got {a.shape}")
        out[b] = a
    return out


def gates_json(gates: Mapping[str, Any], clip: str, model: Any, settings: Mapping[str, Any] | None = None) -> bytes:
    """Per layer: the ``gate_locality`` row (summary, locality, behaviour) and ``maps`` - the T-1
    meaningful pair maps (T-1, H, W) as nested lists (the last frame's map is always 0 and left out)."""
    arrays = _gate_arrays(gates)
    doc = provenance("gates", clip, [model], settings)
    rows = gate_locality(arrays)
    doc["layers"] = [{**row, "maps": arrays[row["block"]][:-1]} for row in rows]
    return _json_bytes(doc)


def gate_summary_csv(gates: Mapping[str, Any], clip: str, model: Any,
                     settings: Mapping[str, Any] | None = None) -> bytes:
    """One row per layer: clip, model, then every ``gate_locality`` key, then settings."""
    rows = gate_locality(_gate_arrays(gates))
    keys = list(rows[0]) if rows else ["block"]
    name = _model_names([model])[0]
    cell = _settings_cell(settings)
    return _csv_bytes(["clip", "model", *keys, "settings"], ([clip, name, *[r[k] for k in keys], cell] for r in rows))


GATE_CSV_COLUMNS = ("clip", "model", "block", "short", "pair", "y", "x", "gate", "settings")


def gates_csv(gates: Mapping[str, Any], clip: str, model: Any, settings: Mapping[str, Any] | None = None) -> bytes:
    """Every gate value, long format: ``GATE_CSV_COLUMNS``; ``pair`` t is the map G-_t (frame t takes
    from frame t+1), t = 0 .. T-2."""
    name = _model_names([model])[0]
    cell = _settings_cell(settings)

    def rows() -> Iterable[list[Any]]:
        for b, a in _gate_arrays(gates).items():
            p = a[:-1]
            tt, yy, xx = np.meshgrid(np.arange(p.shape[0]), np.arange(p.shape[1]), np.arange(p.shape[2]),
                                     indexing="ij")
            for t, y, x, v in zip(tt.ravel(), yy.ravel(), xx.ravel(), p.ravel()):
                yield [clip, name, b, short_block_name(b), int(t), int(y), int(x), float(v), cell]

    return _csv_bytes(GATE_CSV_COLUMNS, rows())


def gates_npz(gates: Mapping[str, Any], clip: str, model: Any, settings: Mapping[str, Any] | None = None) -> bytes:
    """Arrays ``gate/<block>`` (T, H, W) float32 exactly as the model returned them (last frame 0),
    ``blocks`` (network order) and ``metadata`` (provenance + the ``gate_locality`` rows) as JSON."""
    arrays = _gate_arrays(gates)
    meta = provenance("gates", clip, [model], settings)
    meta["layers"] = gate_locality(arrays)
    out: dict[str, np.ndarray] = {f"gate/{b}": a for b, a in arrays.items()}
    out["blocks"] = _strs(list(arrays))
    out["metadata"] = np.array(json.dumps(_plain(meta)))
    return _npz_bytes(out)


# --- attributions --------------------------------------------------------------------------------------

def _attr_arrays(maps: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, m in maps.items():
        a = np.asarray(m, np.float32)
        if a.ndim != 3:
            raise ValueError(f"attribution maps of {name}: expected (T, H, W), got {a.shape}")
        out[name] = a
    return out


def attributions_json(maps: Mapping[str, Any], clip: str, method: str, targets: Mapping[str, str],
                      settings: Mapping[str, Any] | None = None, models: Sequence[Any] | None = None) -> bytes:
    """``maps``: model name -> per-frame maps (T, H, W) in [0, 1] (``hfnet_core.analysis.attributions``);
    ``targets``: model name -> the class explained. One entry per model with ``maps`` as nested lists."""
    arrays = _attr_arrays(maps)
    doc = provenance("attributions", clip, list(models) if models else list(arrays), {**(settings or {}),
                                                                                     "method": method})
    doc["method"] = method
    doc["attributions"] = [{"model": n, "target": targets.get(n), "shape": list(a.shape), "maps": a}
                           for n, a in arrays.items()]
    return _json_bytes(doc)


ATTRIBUTION_CSV_COLUMNS = ("clip", "model", "method", "target", "frame", "y", "x", "value", "settings")


def attributions_csv(maps: Mapping[str, Any], clip: str, method: str, targets: Mapping[str, str],
                     settings: Mapping[str, Any] | None = None) -> bytes:
    """Every attribution value, long format: ``ATTRIBUTION_CSV_COLUMNS`` (``frame`` = the model's t)."""
    cell = _settings_cell(settings)

    def rows() -> Iterable[list[Any]]:
        for n, a in _attr_arrays(maps).items():
            tt, yy, xx = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), np.arange(a.shape[2]),
                                     indexing="ij")
            for t, y, x, v in zip(tt.ravel(), yy.ravel(), xx.ravel(), a.ravel()):
                yield [clip, n, method, targets.get(n), int(t), int(y), int(x), float(v), cell]

    return _csv_bytes(ATTRIBUTION_CSV_COLUMNS, rows())


def attributions_npz(maps: Mapping[str, Any], clip: str, method: str, targets: Mapping[str, str],
                     settings: Mapping[str, Any] | None = None, models: Sequence[Any] | None = None) -> bytes:
    """Arrays ``attr/<model>`` (T, H, W) float32, ``model_names``, ``targets`` (same order) and
    ``metadata`` (provenance incl. method) as JSON."""
    arrays = _attr_arrays(maps)
    meta = provenance("attributions", clip, list(models) if models else list(arrays),
                      {**(settings or {}), "method": method})
    meta.update(method=method, targets={n: targets.get(n) for n in arrays})
    out: dict[str, np.ndarray] = {f"attr/{n}": a for n, a in arrays.items()}
    out["model_names"] = _strs(list(arrays))
    out["targets"] = _strs([targets.get(n) or "" for n in arrays])
    out["metadata"] = np.array(json.dumps(_plain(meta)))
    return _npz_bytes(out)


# --- files ---------------------------------------------------------------------------------------------

def write_export(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write export bytes to ``path`` atomically (the file is complete or absent, never truncated)."""
    return write_bytes_atomic(path, data)
