"""Plotly figures of the analysis pages (Feature space, Class comparison, Attributions).

Pure functions of numpy arrays and eval bundles - no streamlit - so the pages stay thin and the
benchmark (``benchmarks/bench_feature_space.py``) can time exactly what a page draws.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from hfnet_core.analysis.comparison import ConfusionView, top_probability
from hfnet_core.eval_bundle import EvalBundle

__all__ = [
    "FeaturePoints",
    "accuracy_figure",
    "attribution_figure",
    "confusion_figure",
    "feature_points",
    "heat_colourscale",
    "most_improved_figure",
    "unique_labels",
]


def _short(name: str, n: int = 38) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


# --- Feature space ----------------------------------------------------------------------------------

@dataclass
class FeaturePoints:
    """The clips a Feature space plot shows, one row per clip, with each model's coordinates."""

    clip_ids: list[str]
    paths: list[str]
    labels: np.ndarray  # (M,) true class index into ``class_names``; -1 unknown
    class_names: list[str]
    xy: dict[str, np.ndarray] = field(default_factory=dict)  # slot -> (M, 2)
    preds: dict[str, np.ndarray] = field(default_factory=dict)  # slot -> (M,) predicted class index
    confs: dict[str, np.ndarray] = field(default_factory=dict)  # slot -> (M,) probability of it
    pred_names: dict[str, list[str]] = field(default_factory=dict)  # slot -> that model's class names
    #: slot -> (M,) true class index into that model's own class list (``pred_names[slot]``): what its
    #: right / wrong marks use when the two models' class lists differ (``labels`` are the first model's)
    own_labels: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clip_ids)


def feature_points(sources: dict[str, tuple[EvalBundle, np.ndarray, np.ndarray]],
                   clip_ids: Sequence[str]) -> FeaturePoints:
    """Join projections of one or two bundles on ``clip_ids``.

    ``sources``: slot ("A"/"B") -> (bundle, coords (R, 2), rows of the bundle those coords belong to).
    Every clip id must be among each source's projected rows. Labels and class names come from the first
    source.
    """
    first = next(iter(sources.values()))[0]
    ids = list(clip_ids)
    pts = FeaturePoints(ids, [], np.zeros(len(ids), dtype=np.int64), list(first.class_names))
    for n, (slot, (bundle, coords, rows)) in enumerate(sources.items()):
        where = {bundle.clip_ids[int(r)]: i for i, r in enumerate(rows)}
        try:
            pos = np.asarray([where[c] for c in ids], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"clip {e.args[0]!r} is not in the projection of model {slot}") from e
        brow = np.asarray(rows, dtype=np.int64)[pos] if len(pos) else np.zeros(0, dtype=np.int64)
        logits = bundle.logits[brow]
        pts.xy[slot] = np.asarray(coords, dtype=np.float32)[pos] if len(pos) else np.zeros((0, 2), np.float32)
        pts.preds[slot] = logits.argmax(axis=1) if len(brow) else np.zeros(0, dtype=np.int64)
        pts.confs[slot] = top_probability(logits) if len(brow) else np.zeros(0, dtype=np.float32)
        pts.pred_names[slot] = list(bundle.class_names)
        pts.own_labels[slot] = bundle.labels[brow] if len(brow) else np.zeros(0, dtype=np.int64)
        if n == 0:
            pts.labels = bundle.labels[brow]
            pts.paths = [bundle.paths[int(r)] for r in brow]
    return pts





# --- Class comparison -------------------------------------------------------------------------------

def most_improved_figure(rows: list[dict], name_a: str, name_b: str, highlight: int | None = None) -> go.Figure:
    """The paper's Fig. 3a: horizontal bars of corrected clips per class, labelled "true (A) / predicted
    (B)", most improved on top; ``customdata`` = class index."""
    rows = list(reversed(rows))  # plotly draws the first category at the bottom
    labels = unique_labels([f"{_both_ends(r['class_name'], 44)} / {_both_ends(r['b_prediction_name'], 44)}"
                            for r in rows], 92)
    colours = ["#d62728" if r["class_index"] == highlight else "#1f77b4" for r in rows]
    fig = go.Figure(go.Bar(
        x=[r["n_improved"] for r in rows], y=labels, orientation="h", marker_color=colours,
        customdata=[[r["class_index"]] for r in rows],
        hovertext=[
            f"<b>{r['class_name']}</b><br>{r['n_improved']} clips {name_a} gets right and {name_b} wrong"
            f"<br>{name_b} predicts '{r['b_prediction_name']}' for {r['b_prediction_count']} of them"
            f"<br>opposite flips: {r['n_worsened']}<br>accuracy on {r['n_clips']} clips: "
            f"{name_a} {100 * r['acc_a']:.0f} %, {name_b} {100 * r['acc_b']:.0f} %"
            for r in rows
        ],
        hoverinfo="text", text=[r["n_improved"] for r in rows], textposition="auto",
    ))
    fig.update_layout(
        title=f"Most improved classes: true label ({name_a}) / predicted label ({name_b})",
        xaxis_title=f"clips {name_a} gets right and {name_b} gets wrong", yaxis=dict(automargin=True),
        height=max(260, 34 * len(rows) + 110), margin=dict(l=10, r=10, t=50, b=40),
    )
    return fig


def _both_ends(name: str, n: int, tail: int | None = None) -> str:
    """``name`` in at most ``n`` characters, keeping its start and its last ``tail`` (default: half):
    Something-Something names often differ only at the end ("Pretending to put… onto something")."""
    if len(name) <= n:
        return name
    tail = (n - 1) // 2 if tail is None else tail
    return name[: n - 1 - tail].rstrip() + "…" + name[-tail:].lstrip()


def unique_labels(names: Sequence[str], n: int = 40) -> list[str]:
    """Class names shortened to ``n`` characters (start and end kept) and kept distinct: Plotly merges
    equal category labels, and long Something-Something names share long stretches. Names whose short
    forms collide keep a longer end: just past the ending they share ("…into something" / "…onto something")."""
    names = [str(x) for x in names]
    labels = [_both_ends(x, n) for x in names]
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    for members in (g for g in groups.values() if len(g) > 1):
        for i in members:
            shared = max(len(os.path.commonprefix([names[i][::-1], names[j][::-1]])) for j in members if j != i)
            labels[i] = _both_ends(names[i], n, min(n - 5, shared + 1))
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if label in seen:
            labels[i] = label = f"{_short(names[i], n - 6)} #{i}"
        seen.add(label)
    return labels


def accuracy_figure(class_names: list[str], acc_a: np.ndarray, acc_b: np.ndarray, name_a: str,
                    name_b: str, counts: np.ndarray | None = None, sort_by_gain: bool = False,
                    classes: Sequence[int] | None = None) -> go.Figure:
    """Grouped bars: per-class accuracy of A and B (classes without clips are left out; ``classes``:
    only those)."""
    keep = ~(np.isnan(acc_a) & np.isnan(acc_b))
    if classes is not None:
        chosen = np.zeros(len(class_names), bool)
        chosen[[int(c) for c in classes]] = True
        keep &= chosen
    idx = np.flatnonzero(keep)
    if sort_by_gain:
        gain = np.nan_to_num(acc_a[idx]) - np.nan_to_num(acc_b[idx])
        idx = idx[np.argsort(-gain, kind="stable")]
    labels = unique_labels(class_names, 32)
    names = [labels[i] for i in idx]
    extra = [f"<br>{int(counts[i])} clips" if counts is not None else "" for i in idx]
    fig = go.Figure()
    for acc, name, colour in ((acc_a, name_a, "#1f77b4"), (acc_b, name_b, "#ff7f0e")):
        fig.add_trace(go.Bar(
            x=names, y=100 * acc[idx], name=name, marker_color=colour,
            hovertext=[f"{class_names[i]}<br>{name}: {100 * acc[i]:.1f} %{e}" for i, e in zip(idx, extra)],
            hoverinfo="text",
        ))
    fig.update_layout(barmode="group", title=f"Per-class accuracy: {name_a} and {name_b}",
                      yaxis_title="accuracy (%)", yaxis_range=[0, 100], height=460,
                      margin=dict(l=10, r=10, t=50, b=10), xaxis=dict(tickangle=-40, automargin=True))
    return fig


#: Up to this many classes a confusion heatmap names every row and column; beyond, Plotly thins the
#: labels (zoom in to see them all) and a cell's hover names both classes.
ALL_LABELS_UP_TO = 40


def confusion_figure(view: ConfusionView, counts: np.ndarray, title: str, hide_diagonal: bool = False
                     ) -> go.Figure:
    """Heatmap of a ``comparison.confusion_view`` (rows = true class, columns = predicted class).

    ``counts`` (R, C) are the clip counts behind the view (the hover says both); ``hide_diagonal`` blanks
    the correct predictions so the confusions get the whole colour scale. Axes are categorical with
    distinct labels, so box-zoom works and shows every label once few enough rows are in view."""
    rows = unique_labels(view.row_labels)
    cols = [rows[list(view.rows).index(c)] if c >= 0 else "(other classes)" for c in view.cols]
    z = np.asarray(view.matrix, dtype=np.float64).copy()
    if hide_diagonal:
        for i, c in enumerate(view.rows):
            j = np.flatnonzero(view.cols == c)
            if j.size:
                z[i, j[0]] = np.nan
    share = "%{z:.1%} of the true class" if view.normalized else "%{z:.0f} clips"
    fig = go.Figure(go.Heatmap(
        z=z, x=cols, y=rows, customdata=np.asarray(counts, dtype=np.int64), colorscale="Blues", zmin=0,
        zmax=1 if view.normalized and not hide_diagonal else None, hoverongaps=False,
        hovertemplate="true: %{y}<br>predicted: %{x}<br>" + share
                      + ("<br>%{customdata} clips" if view.normalized else "") + "<extra></extra>",
        colorbar=dict(title="share of the<br>true class" if view.normalized else "clips"),
    ))
    n = max(len(rows), len(cols))
    every = n <= ALL_LABELS_UP_TO
    font = 11 if every else 8
    axis = dict(automargin=True, tickfont=dict(size=font), type="category")
    if every:
        fig.update_xaxes(tickmode="array", tickvals=cols, ticktext=cols)
        fig.update_yaxes(tickmode="array", tickvals=rows, ticktext=rows)
    fig.update_layout(title=title, height=int(max(480, min(1300, (22 if every else 6) * n + 260))),
                      margin=dict(l=10, r=10, t=50, b=10),
                      xaxis=dict(title="predicted", tickangle=-50, **axis),
                      yaxis=dict(title="true", autorange="reversed", **axis))
    return fig


# --- Attributions -----------------------------------------------------------------------------------

def heat_colourscale(n: int = 11) -> list[list[Any]]:
    """The attribution overlay's colour ramp (``attributions.heat_colours``) as a Plotly colour scale."""
    from hfnet_core.analysis.attributions import heat_colours

    rgb = heat_colours(np.linspace(0.0, 1.0, n)[:, None])[:, 0]
    return [[i / (n - 1), f"rgb({int(r)},{int(g)},{int(b)})"] for i, (r, g, b) in enumerate(np.rint(rgb))]


def attribution_figure(images: np.ndarray, title: str, frame_labels: Sequence[str] | None = None,
                       cols: int = 4, scale_title: str = "attribution<br>(1 = the clip's<br>strongest)"
                       ) -> go.Figure:
    """Grid of uint8 RGB frames (T, H, W, 3) (frames with the attribution map blended in), with a colour
    bar of the map's ramp: an image trace has no colour scale, so an empty scatter carries it."""
    t = images.shape[0]
    cols = max(1, min(cols, t))
    rows = (t + cols - 1) // cols
    labels = list(frame_labels) if frame_labels is not None else [f"frame {i}" for i in range(t)]
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=rows, cols=cols, subplot_titles=labels, horizontal_spacing=0.01,
                        vertical_spacing=0.12 / rows)
    for i in range(t):
        fig.add_trace(go.Image(z=images[i], hoverinfo="skip"), row=i // cols + 1, col=i % cols + 1)
    fig.add_trace(go.Scatter(
        x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip", name="colour scale",
        marker=dict(color=[0.0], cmin=0.0, cmax=1.0, colorscale=heat_colourscale(), showscale=True,
                    colorbar=dict(title=dict(text=scale_title, font=dict(size=11)), thickness=12, len=0.9,
                                  tickvals=[0, 0.5, 1], x=1.0, xpad=4)),
    ), row=1, col=1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    h, w = images.shape[1:3]
    fig.update_layout(title=title, height=int(rows * (20 + 150 * h / max(w, 1))) + 70,
                      margin=dict(l=5, r=5, t=70, b=5))
    fig.update_annotations(font_size=11)
    return fig
