"""Plotly figures of the temporal operators other than HF (pure functions: data in, figure out; no streamlit).

GSM's gates use HF's diverging colours, and they read the same way: blue (g > 0) = a share of the
features moves to the neighbouring frame and is *added* there (the frames mix), red (g < 0) = a negated
copy moves (the neighbour *subtracts* it: a frame difference), grey = the channels stay. TSM's neighbour
share is one-sided, [0, 1]: grey = nothing came from the neighbours, blue = much did; its scale ends at
twice the share of the channels the shift moves, so "as much signal as channels" sits mid-scale.
The player itself is ``figures.gate_player_figure`` with these scales.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures import BEHAVIOUR_STYLE, GATE_COLORSCALE, MapScale
from hfnet_core.analysis.gates import AVERAGING_RGB
from hfnet_core.analysis.operator_maps import site_short

__all__ = ["GSM_SCALE", "GSM_GATES", "tsm_scale", "frame_labels", "gsm_locality_figure", "gsm_mean_figure",
           "frame_matrix_figure",
           "neighbour_share_figure"]

#: GSM's two maps: name -> how the app names the gate (what moves where).
GSM_GATES = {"gate_backward": "backward shift", "gate_forward": "forward shift"}

GSM_SCALE = MapScale("g", -1.0, 1.0, GATE_COLORSCALE, dict(
    title=dict(text="gate g", side="right"), tickvals=[-1, -0.5, 0, 0.5, 1],
    ticktext=["−1 moves negated", "−0.5", "0 stays", "+0.5", "+1 all moves"], len=0.8))

_SHARE_COLORSCALE = [[0.0, "#e6e6e6"], [0.5, "#4393c3"], [1.0, "rgb(%d,%d,%d)" % AVERAGING_RGB]]


def tsm_scale(channel_share: float) -> MapScale:
    """TSM's neighbour share on [0, min(1, 2 * channel_share)]: the moved channels' share of all channels
    (2/shift_div) sits in the middle of the colour bar."""
    top = float(min(1.0, 2.0 * channel_share)) if channel_share > 0 else 1.0
    mid = top / 2
    return MapScale("from neighbours", 0.0, top, _SHARE_COLORSCALE, dict(
        title=dict(text="from neighbours", side="right"), tickformat=".0%", len=0.8,
        tickvals=[0, mid, top], ticktext=["0 %", f"{mid:.0%} = moved channels' share", f"≥ {top:.0%}"]))


def frame_labels(frames: int) -> list[str]:
    return [str(t) for t in range(frames)]


_GATE_LINE = {"gate_backward": ("#5b3a92", "solid"), "gate_forward": ("#1b7f79", "dash")}


def gsm_locality_figure(rows: dict[str, Sequence[dict[str, Any]]]) -> go.Figure:
    """Per place, for each gate (``rows``: map name -> ``operator_maps.gate_rows``): how much the gate varies
    across positions, coloured by what it does (green local, blue / red fixed ±1, grey uniform / inactive;
    hatched: the forward shift); ⚑ on a place with a fixed gate."""
    fig = go.Figure()
    first = next(iter(rows.values()), [])
    fixed = {r["label"] for rs in rows.values() for r in rs if r["fixed"]}
    ticks = [r["short"] + (" ⚑" if r["label"] in fixed else "") for r in first]
    for name, rs in rows.items():
        word = GSM_GATES.get(name, name)
        fig.add_bar(x=ticks, y=[r["locality"] if np.isfinite(r["locality"]) else 0.0 for r in rs], name=word,
                    marker=dict(color=[BEHAVIOUR_STYLE.get(r["behaviour"], ("#888", ""))[0] for r in rs],
                                pattern=dict(shape="" if name == "gate_backward" else "/", fgcolor="white")),
                    customdata=[[r["behaviour"].replace("_", " "), r["mean"], r["saturation"]] for r in rs],
                    hovertemplate=(f"%{{x}} ({word}): locality %{{y:.2f}}<br>%{{customdata[0]}}, mean g "
                                   "%{customdata[1]:+.2f}, saturated %{customdata[2]:.0%}<extra></extra>"))
    fig.update_layout(barmode="group", height=300, margin=dict(l=10, r=10, t=40, b=40),
                      title=dict(text="How local is each gate's choice? (hatched: forward shift)", font=dict(size=14)),
                      yaxis=dict(title="locality", rangemode="tozero"), xaxis=dict(title=None), showlegend=False)
    return fig


def gsm_mean_figure(rows: dict[str, Sequence[dict[str, Any]]]) -> go.Figure:
    """Per place, for each gate: the mean share that moves (mean g; < 0: a negated copy) and mean |g|."""
    fig = go.Figure()
    for name, rs in rows.items():
        word = GSM_GATES.get(name, name)
        colour, dash = _GATE_LINE.get(name, ("#444", "solid"))
        x = [r["short"] for r in rs]
        fig.add_scatter(x=x, y=[r["mean"] for r in rs], name=f"mean g, {word}", mode="lines+markers",
                        line=dict(color=colour, dash=dash))
        fig.add_scatter(x=x, y=[r["mean_abs"] for r in rs], name=f"mean |g|, {word}", mode="lines",
                        line=dict(color=colour, dash="dot", width=1))
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10),
                      title=dict(text="Mean gate per place: how much of each half moves", font=dict(size=14)),
                      yaxis=dict(range=[-1, 1], zeroline=True, zerolinecolor="#888", title="g"),
                      legend=dict(orientation="h", yanchor="top", y=-0.3, x=0))
    return fig


def frame_matrix_figure(labels: Sequence[str], panels: Sequence[tuple[str, np.ndarray]], title: str,
                        zmin: float, zmax: float, colorscale: Any, colorbar_title: str, value_format: str = ".2f",
                        y_title: str = "site") -> go.Figure:
    """Sites x frames heatmaps side by side (``panels``: (subtitle, (L, T) matrix)), one colour bar: each
    site's map averaged over positions, frame by frame."""
    cols = max(len(panels), 1)
    fig = make_subplots(rows=1, cols=cols, subplot_titles=[t for t, _ in panels], horizontal_spacing=0.06,
                        shared_yaxes=True)
    ticks = [site_short(lb) for lb in labels]
    for i, (sub, m) in enumerate(panels):
        m = np.asarray(m, np.float32)
        fig.add_trace(go.Heatmap(
            z=m, x=[f"frame {t}" for t in range(m.shape[1] if m.ndim == 2 else 0)], y=ticks, zmin=zmin,
            zmax=zmax, colorscale=colorscale, showscale=i == 0, colorbar=dict(title=colorbar_title),
            texttemplate="%{z:" + value_format + "}", textfont=dict(size=10),
            hovertemplate=f"{sub}<br>%{{y}}, %{{x}}: %{{z:{value_format}}}<extra></extra>"), row=1, col=i + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title=y_title, row=1, col=1)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=110 + 28 * max(len(labels), 1),
                      margin=dict(l=10, r=10, t=70, b=40))
    return fig


def neighbour_share_figure(rows: Sequence[dict[str, Any]], rows_backward: Sequence[dict[str, Any]] | None = None
                           ) -> go.Figure:
    """Per TSM site: the share of its features that came from the neighbouring frames (inner frames, where
    both neighbours exist), beside the share of channels the shift moves (the black ticks); with
    ``rows_backward`` the same for the clip played backwards, as lighter bars."""
    fig = go.Figure()
    x = [r["short"] for r in rows]
    series = [("forward", rows, 1.0)] + ([("backwards", rows_backward, 0.45)] if rows_backward else [])
    for name, rs, alpha in series:
        fig.add_bar(x=x, y=[r["mean_inner"] for r in rs], name=f"features from neighbours ({name})", opacity=alpha,
                    marker_color="rgb(%d,%d,%d)" % AVERAGING_RGB,
                    customdata=[[r["mean"], r["min"], r["max"], r["ratio"] if r["ratio"] is not None else float("nan")]
                                for r in rs],
                    hovertemplate=(f"%{{x}} ({name}): %{{y:.1%}} of the feature magnitude came from the "
                                   "neighbours<br>all frames %{customdata[0]:.1%}, range %{customdata[1]:.0%}–"
                                   "%{customdata[2]:.0%}<br>× %{customdata[3]:.2f} the moved channels' share"
                                   "<extra></extra>"))
    shares = [r["channel_share"] for r in rows]
    if any(s is not None for s in shares):
        fig.add_scatter(x=x, y=shares, name="channels the shift moves (fixed)", mode="markers",
                        marker=dict(symbol="line-ew", size=28, line=dict(width=3, color="#222")),
                        hovertemplate="%{x}: the shift moves %{y:.1%} of the channels<extra></extra>")
    top = max([r["mean_inner"] for rs in (rows, rows_backward or []) for r in rs] + [s or 0 for s in shares] + [0.1])
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=40, b=40),
                      title=dict(text="How much of each layer's features came from the neighbouring frames",
                                 font=dict(size=14)),
                      yaxis=dict(title="share of the feature magnitude", tickformat=".0%",
                                 range=[0, min(1.0, top * 1.25)]),
                      xaxis=dict(title="TSM site (input of)"), legend=dict(orientation="h", y=-0.3))
    return fig
