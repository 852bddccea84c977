"""Plotly figures of the explorer pages (pure functions: data in, ``go.Figure`` out; no streamlit).

Gate colours are fixed on [-1, 1] with a diverging scale: blue = G > 0 (averaging a frame with the next),
red = G < 0 (differencing), grey = 0 (frames left alone). Over a frame the maps are drawn on a desaturated
copy (``gates.gate_overlay``), so the clip's own colours - the demo object is red - never mix with them.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hfnet_core.analysis.gates import AVERAGING_RGB, DIFFERENCING_RGB, gate_matrix, gate_overlay, pair_gates, \
    short_block_name

# Diverging: red (differencing, G=-1) - light grey (G=0, the desaturated frame) - blue (averaging, G=+1);
# the ends are the overlay colours of ``gates.gate_overlay``.
GATE_COLORSCALE = [
    [0.0, "rgb(%d,%d,%d)" % DIFFERENCING_RGB], [0.25, "#d6604d"], [0.45, "#eddcd6"], [0.5, "#e6e6e6"],
    [0.55, "#d3dfe9"], [0.75, "#4393c3"], [1.0, "rgb(%d,%d,%d)" % AVERAGING_RGB],
]
GATE_COLORBAR = dict(
    title=dict(text="gate G", side="right"), tickvals=[-1, -0.5, 0, 0.5, 1],
    ticktext=["−1 differencing", "−0.5", "0 none", "+0.5", "+1 averaging"], len=0.8,
)
COLOR_A, COLOR_B, COLOR_TRUE = "#4C78A8", "#F58518", "#2CA02C"


def frame_uri(frame: np.ndarray, quality: int = 85) -> str:
    """uint8 (H, W, 3) RGB -> a JPEG data URI (compact enough to embed many in one figure)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------------------------------
# Predictions


def top5_figure(pred: Any, title: str, true_label: str | None = None, color: str = COLOR_A,
                height: int = 230, show_title: bool = True) -> go.Figure:
    """Horizontal bars of the top-5 classes (best on top); the true class in green. Class names wrap and the
    left margin grows to fit them (``automargin``), so no label is cut at any width."""
    names = list(pred.top5_names)[::-1]
    probs = [float(p) for p in pred.top5_probs][::-1]
    colors = [COLOR_TRUE if n == true_label else color for n in names]
    fig = go.Figure(go.Bar(
        x=probs, y=[_wrap(n, 24) for n in names], orientation="h", marker_color=colors,
        text=[f"{100 * p:.1f} %" for p in probs], textposition="auto", cliponaxis=False,
        hovertext=names, hovertemplate="%{hovertext}: %{x:.3f}<extra></extra>",
    ))
    fig.update_layout(title=dict(text=title if show_title else "", font=dict(size=14)), height=height,
                      margin=dict(l=4, r=12, t=38 if show_title else 8, b=28),
                      xaxis=dict(range=[0, 1], title=None, tickformat=".0%"),
                      yaxis=dict(automargin=True, tickfont=dict(size=12)), showlegend=False, meta={"title": title})
    return fig


def _wrap(name: str, width: int = 28) -> str:
    words, lines, cur = name.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    return "<br>".join(lines)


# --------------------------------------------------------------------------------------------------
# Gates


def gate_summary_figure(rows: Sequence[dict[str, Any]], title: str = "") -> go.Figure:
    """Per layer: share of averaging / differencing / neutral positions (bars) and mean G, mean |G| (lines)."""
    x = [r["short"] for r in rows]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
                        subplot_titles=("share of positions (all frame pairs)", "mean gate per layer"))
    fig.add_bar(x=x, y=[r["share_averaging"] for r in rows], name="averaging (G > 0)", marker_color="#2166ac",
                row=1, col=1)
    fig.add_bar(x=x, y=[r["share_differencing"] for r in rows], name="differencing (G < 0)",
                marker_color="#b2182b", row=1, col=1)
    fig.add_bar(x=x, y=[r["share_neutral"] for r in rows], name="≈ 0 (|G| ≤ 0.01)", marker_color="#bbbbbb",
                row=1, col=1)
    fig.add_scatter(x=x, y=[r["mean"] for r in rows], name="mean G", mode="lines+markers",
                    line=dict(color="#444444"), row=1, col=2)
    fig.add_scatter(x=x, y=[r["mean_abs"] for r in rows], name="mean |G|", mode="lines+markers",
                    line=dict(color="#9467bd", dash="dot"), row=1, col=2)
    fig.update_layout(barmode="stack", height=340, title=title or None, margin=dict(l=10, r=10, t=60, b=40),
                      legend=dict(orientation="h", y=-0.2))
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(range=[-1, 1], zeroline=True, zerolinecolor="#888", row=1, col=2)
    fig.update_xaxes(title="HF layer (block)", row=1, col=1)
    fig.update_xaxes(title="HF layer (block)", row=1, col=2)
    return fig


def gate_matrix_figure(gates: dict[str, Any], title: str = "") -> go.Figure:
    """Layers x frame pairs: the mean G of each map (the whole gate grid at a glance)."""
    names, m = gate_matrix(gates)
    pairs = [f"{t}→{t + 1}" for t in range(m.shape[1])]
    fig = go.Figure(go.Heatmap(
        z=m, x=pairs, y=[short_block_name(n) for n in names], zmin=-1, zmax=1, colorscale=GATE_COLORSCALE,
        colorbar=GATE_COLORBAR, texttemplate="%{z:.2f}",
        hovertemplate="layer %{y}, frames %{x}: mean G %{z:.3f}<extra></extra>",
    ))
    fig.update_layout(title=title or None, height=80 + 28 * max(len(names), 1), margin=dict(l=10, r=10, t=40, b=40),
                      xaxis_title="frame pair (t → t+1)", yaxis=dict(autorange="reversed", title="HF layer"))
    return fig


def _nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(P, h, w) -> (P, H, W) by repeating cells (no smoothing: the gate's real resolution)."""
    h, w = maps.shape[1:]
    rows = np.arange(size[0]) * h // size[0]
    cols = np.arange(size[1]) * w // size[1]
    return maps[:, rows][:, :, cols]


def overlay_images(frames: np.ndarray, maps: np.ndarray, opacity: float, smooth: bool) -> np.ndarray:
    """Gate maps (P, h, w) over the first P frames, desaturated (``gates.gate_overlay``): uint8 (P, H, W, 3)."""
    frames = np.asarray(frames)[: len(maps)]
    if not smooth:
        maps = _nearest(np.asarray(maps, np.float32), frames.shape[1:3])
    return gate_overlay(frames, maps, opacity=opacity)


@dataclass(frozen=True)
class MapScale:
    """How a player's maps are coloured and named: HF's gate G (``GATE_SCALE``), or another operator's map
    (``app/operator_figures.py``). Values in [zmin, zmax]; the overlay colours |value| / ``span`` (blue for
    > 0, red for < 0, as ``gates.gate_overlay``), so a [0, 0.5] map reaches full colour at 0.5."""

    symbol: str
    zmin: float
    zmax: float
    colorscale: list[list[Any]]
    colorbar: dict[str, Any]

    @property
    def span(self) -> float:
        return max(abs(self.zmin), abs(self.zmax)) or 1.0


GATE_SCALE = MapScale("G", -1.0, 1.0, GATE_COLORSCALE, GATE_COLORBAR)


def _panel_traces(src: str | None, g: np.ndarray, size: int, showscale: bool, label: str,
                  axis: str = "", scale: MapScale = GATE_SCALE) -> list[dict[str, Any]]:
    """One panel: the overlaid frame (an image) and the gate map as a see-through heatmap that carries the
    values for hover and the colour bar. Plain trace dicts (no Plotly validation): a 10 x 7 grid builds in
    milliseconds, not a second."""
    h, w = g.shape
    ax = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
    traces: list[dict[str, Any]] = []
    if src is not None:
        traces.append({"type": "image", "source": src, "hoverinfo": "skip", **ax})
    heat: dict[str, Any] = {
        "type": "heatmap", "z": np.round(g, 3).tolist(), "x0": 0.5 * size / w - 0.5, "dx": size / w,
        "y0": 0.5 * size / h - 0.5, "dy": size / h, "zmin": scale.zmin, "zmax": scale.zmax,
        "colorscale": scale.colorscale, "opacity": 0.001 if src is not None else 1.0, "zsmooth": False,
        "showscale": showscale, "hovertemplate": label + f"<br>{scale.symbol} = %{{z:.2f}}<extra></extra>", **ax,
    }
    if showscale:
        heat["colorbar"] = scale.colorbar
    traces.append(heat)
    return traces


def _grid_axes(rows: int, cols: int, size: int, hgap: float, vgap: float, top: float = 1.0
               ) -> tuple[dict[str, Any], list[tuple[float, float, float, float]]]:
    """Layout axes for a rows x cols grid of square image panels: (layout entries, cell domains)."""
    layout: dict[str, Any] = {}
    cells = []
    cw = (1.0 - hgap * (cols - 1)) / cols
    rh = (top - vgap * (rows - 1)) / rows
    for i in range(rows):
        for j in range(cols):
            k = i * cols + j + 1
            x0 = j * (cw + hgap)
            y1 = top - i * (rh + vgap)
            cells.append((x0, x0 + cw, y1 - rh, y1))
            sfx = "" if k == 1 else str(k)
            layout[f"xaxis{sfx}"] = {"domain": [x0, min(x0 + cw, 1.0)], "anchor": f"y{sfx}", "visible": False,
                                     "range": [-0.5, size - 0.5], "constrain": "domain"}
            layout[f"yaxis{sfx}"] = {"domain": [max(y1 - rh, 0.0), y1], "anchor": f"x{sfx}", "visible": False,
                                     "range": [size - 0.5, -0.5], "scaleanchor": f"x{sfx}", "scaleratio": 1,
                                     "constrain": "domain", "constraintoward": "top"}
    return layout, cells


@dataclass
class GatePanel:
    """One panel of a gate figure: a title, the frames under the maps (or None: bare maps) and the
    T-1 pair maps (P, h, w); ``pair_labels`` name each pair ("0→1")."""

    title: str
    frames: np.ndarray | None
    maps: np.ndarray


def _panel_sources(p: GatePanel, opacity: float, smooth: bool, scale: MapScale = GATE_SCALE) -> list[str | None]:
    if p.frames is None:
        return [None] * len(p.maps)
    maps = p.maps if scale.span == 1.0 else np.asarray(p.maps, np.float32) / scale.span
    return [frame_uri(f) for f in overlay_images(p.frames, maps, opacity, smooth)]


def _size_of(panels: Sequence[GatePanel]) -> int:
    for p in panels:
        if p.frames is not None:
            return int(p.frames.shape[1])
    return max((int(p.maps.shape[1]) for p in panels), default=1)


def gate_grid_figure(gates: dict[str, Any], frames: np.ndarray | None, opacity: float = 0.75,
                     smooth: bool = True, blocks: Sequence[str] | None = None) -> dict[str, Any]:
    """Every HF layer (rows) x every adjacent frame pair (columns): G_t drawn over (grey) frame t.

    ``frames``: the model's input frames (T, S, S, 3) uint8, or None for bare maps. Returns a Plotly
    figure dict (``st.plotly_chart`` and ``plotly.io.to_html`` take it as is).
    """
    blocks = [b for b in (blocks or list(gates)) if b in gates]
    panels = [GatePanel(short_block_name(b), frames, pair_gates(gates[b])) for b in blocks]
    pairs = len(panels[0].maps) if panels else 0
    size = _size_of(panels)
    rows, cols = max(len(panels), 1), max(pairs, 1)
    top = 1.0 - 0.35 / rows
    layout, cells = _grid_axes(rows, cols, size, 0.006, 0.01, top)
    data: list[dict[str, Any]] = []
    for i, p in enumerate(panels):
        srcs = _panel_sources(p, opacity, smooth)
        for t in range(pairs):
            k = i * cols + t + 1
            data += _panel_traces(srcs[t], p.maps[t], size, k == 1, f"layer {p.title}, frames {t}→{t + 1}",
                                  "" if k == 1 else str(k))
    ann = [{"text": f"{t}→{t + 1}", "x": (cells[t][0] + cells[t][1]) / 2, "y": 1.0, "xref": "paper",
            "yref": "paper", "showarrow": False, "yanchor": "bottom", "font": {"size": 11}} for t in range(pairs)]
    ann += [{"text": p.title, "x": -0.005, "y": (cells[i * cols][2] + cells[i * cols][3]) / 2,
             "xref": "paper", "yref": "paper", "showarrow": False, "xanchor": "right", "font": {"size": 11}}
            for i, p in enumerate(panels)]
    layout.update(height=70 + 100 * rows, margin={"l": 40, "r": 10, "t": 30, "b": 10}, annotations=ann,
                  plot_bgcolor="white")
    return {"data": data, "layout": layout}


def gate_player_figure(panels: Sequence[GatePanel], opacity: float = 0.75, smooth: bool = True,
                       pair_labels: Sequence[str] | None = None, start: int = 0, per_row: int = 5,
                       panel_px: int = 210, frame_ms: int = 700, scale: MapScale = GATE_SCALE,
                       step_prefix: str = "frame pair ", hover_prefix: str = "frames ") -> dict[str, Any]:
    """Panels side by side, all on the same frame pair, with a scrubber (slider) and a large ▶ / ❚❚.

    The slider and the animation run in the browser (Plotly animation frames): scrubbing or playing never
    reruns the Streamlit script. ``start``: the pair shown first (the selection's frame pair). ``scale``,
    ``step_prefix`` and ``hover_prefix`` ("frame ") let the same player show another operator's per-frame maps.
    """
    panels = list(panels)
    pairs = min((len(p.maps) for p in panels), default=0)
    labels = list(pair_labels) if pair_labels is not None else [f"{t}→{t + 1}" for t in range(pairs)]
    start = min(max(int(start), 0), max(pairs - 1, 0))
    size = _size_of(panels)
    ncols = min(per_row, max(len(panels), 1))
    nrows = max(1, -(-len(panels) // ncols))
    title_px = 24  # room for each panel's title
    plot_px = panel_px * nrows
    top = 1.0 - title_px / plot_px
    layout, cells = _grid_axes(nrows, ncols, size, 0.02, (title_px + 6) / plot_px, top)
    srcs = [_panel_sources(p, opacity, smooth, scale) for p in panels]

    def traces_at(t: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, p in enumerate(panels):
            out += _panel_traces(srcs[i][t], p.maps[t], size, i == 0, f"{p.title}, {hover_prefix}{labels[t]}",
                                 "" if i == 0 else str(i + 1), scale)
        return out

    ann = [{"text": p.title, "x": (cells[i][0] + cells[i][1]) / 2, "y": cells[i][3], "xref": "paper",
            "yref": "paper", "showarrow": False, "yanchor": "bottom", "font": {"size": 13}}
           for i, p in enumerate(panels)]
    layout.update(height=10 + plot_px + title_px * nrows, margin={"l": 10, "r": 10, "t": 4, "b": 10},
                  annotations=ann)
    fig: dict[str, Any] = {"data": traces_at(start) if pairs else [], "layout": layout}
    if pairs:
        fig["frames"] = [{"name": str(t), "data": traces_at(t)} for t in range(pairs)]
        steps = [{"method": "animate", "label": labels[t],
                  "args": [[str(t)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                      "transition": {"duration": 0}}]} for t in range(pairs)]
        layout["sliders"] = [{"active": start, "steps": steps, "currentvalue": {"prefix": step_prefix,
                                                                               "font": {"size": 14}},
                              # the rail starts right of the ▶ / ❚❚ buttons (in pixels, so at any width)
                              "pad": {"t": 12, "l": 120}, "y": 0, "yanchor": "top", "x": 0, "len": 1,
                              "font": {"size": 12}}]
        layout["updatemenus"] = [{
            "type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "y": 0, "xanchor": "left",
            "yanchor": "top", "pad": {"t": 22, "r": 6}, "font": {"size": 20}, "buttons": [
                {"label": "▶", "method": "animate",
                 "args": [None, {"frame": {"duration": frame_ms, "redraw": True}, "fromcurrent": True,
                                 "transition": {"duration": 0}}]},
                {"label": "❚❚", "method": "animate",
                 "args": [[None], {"mode": "immediate", "frame": {"duration": 0, "redraw": True}}]},
            ]}]
        layout["margin"]["b"] = 95
        layout["height"] += 85
    return fig


def gate_animation_figure(gates: dict[str, Any], frames: np.ndarray | None, opacity: float = 0.75,
                          smooth: bool = True, blocks: Sequence[str] | None = None, per_row: int = 5) -> dict[str, Any]:
    """All chosen layers side by side for one frame pair, with a scrubber and a play button."""
    blocks = [b for b in (blocks or list(gates)) if b in gates]
    panels = [GatePanel(f"layer {short_block_name(b)}", frames, pair_gates(gates[b])) for b in blocks]
    return gate_player_figure(panels, opacity, smooth, per_row=per_row)


def backward_aligned(gates: dict[str, Any]) -> dict[str, np.ndarray]:
    """Gates computed on the reversed clip, re-indexed by the forward clip's frame pairs.

    Reversed pair s holds forward frames (T-1-s, T-2-s), i.e. forward pair t = T-2-s: the maps in reverse
    order. Each map sits on the reversed pair's first frame, forward frame t+1.
    """
    return {b: pair_gates(g)[::-1].copy() for b, g in gates.items()}


#: Behaviour of a layer (``gates.gate_locality``) -> bar colour and a short flag for figures and pills.
BEHAVIOUR_STYLE = {
    "local": ("#3a923a", ""),
    "fixed_averaging": ("#2166ac", "⚑ fixed +1"),
    "fixed_differencing": ("#b2182b", "⚑ fixed −1"),
    "uniform": ("#9a9a9a", "uniform"),
    "inactive": ("#d0d0d0", "inactive"),
}


def locality_figure(rows: Sequence[dict[str, Any]], rows_backward: Sequence[dict[str, Any]] | None = None
                    ) -> go.Figure:
    """Per layer: how much the gate varies across positions (``locality``), coloured by what the layer does
    (green local, blue fixed +1, red fixed −1, grey uniform / inactive); the layer names of fixed layers carry
    a ⚑. With ``rows_backward``: the same for the reversed clip, as lighter bars beside."""
    fig = go.Figure()
    ticks = [r["short"] + (" ⚑" if r.get("fixed") else "") for r in rows]
    series = [("forward", rows, 1.0)] + ([("backwards", rows_backward, 0.45)] if rows_backward else [])
    for name, rs, alpha in series:
        loc = [r["locality"] if np.isfinite(r["locality"]) else 0.0 for r in rs]
        fig.add_bar(
            x=ticks, y=loc, name=name, opacity=alpha,
            marker_color=[BEHAVIOUR_STYLE.get(r["behaviour"], ("#888", ""))[0] for r in rs],
            customdata=[[r["behaviour"].replace("_", " "), r["mean"], r["mean_abs"], r["saturation"]] for r in rs],
            hovertemplate=("layer %{x} (" + name + "): locality %{y:.2f}<br>%{customdata[0]}<br>mean G "
                           "%{customdata[1]:.2f}, mean |G| %{customdata[2]:.2f}, saturated %{customdata[3]:.0%}"
                           "<extra></extra>"))
    top = max([r["locality"] for rs in (rows, rows_backward or []) for r in rs if np.isfinite(r["locality"])]
              + [0.5])
    fig.update_layout(barmode="group", height=280, margin=dict(l=10, r=10, t=36, b=40), showlegend=False,
                      title=dict(text="How local is each layer's choice?" + (" (light bars: backwards)"
                                                                             if rows_backward else ""),
                                 font=dict(size=14)),
                      yaxis=dict(title="locality", range=[0, top * 1.15]), xaxis=dict(title="HF layer"))
    return fig


def gate_difference_figure(forward: dict[str, Any], backward: dict[str, Any]) -> go.Figure:
    """Layers x frame pairs: mean G forward minus mean G backwards on the same two frames."""
    names, mf = gate_matrix(forward)
    aligned = backward_aligned(backward)
    mb = np.stack([aligned[b].mean(axis=(1, 2)) for b in names]) if names else np.zeros((0, 0))
    d = mf - mb
    lim = float(max(np.abs(d).max() if d.size else 0.0, 0.05))
    pairs = [f"{t}↔{t + 1}" for t in range(d.shape[1] if d.ndim == 2 else 0)]
    fig = go.Figure(go.Heatmap(
        z=d, x=pairs, y=[short_block_name(n) for n in names], zmin=-lim, zmax=lim, colorscale="PuOr",
        texttemplate="%{z:.2f}", colorbar=dict(title="Δ mean G"),
        hovertemplate="layer %{y}, frames %{x}: forward − backwards = %{z:.3f}<extra></extra>"))
    fig.update_layout(title=dict(text="Forward − backwards: mean G on the same frame pair", font=dict(size=14)),
                      height=80 + 28 * max(len(names), 1), margin=dict(l=10, r=10, t=40, b=40),
                      xaxis_title="frame pair", yaxis=dict(autorange="reversed", title="HF layer"))
    return fig


# --------------------------------------------------------------------------------------------------
# Teaching (Eq. 1 on 1-D frames)


def teaching_figure(before: np.ndarray, after: np.ndarray, gates_t: np.ndarray) -> go.Figure:
    """F' (before HF) and F (after) as T stacked 1-D rows, plus the gate of each pair."""
    t, p = before.shape
    lim = float(max(np.abs(before).max(), np.abs(after).max(), 1e-6))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("F′ — block output (before HF)", "F — after HF (Eq. 1)"),
                        horizontal_spacing=0.08)
    for col, data in ((1, before), (2, after)):
        fig.add_trace(go.Heatmap(
            z=data, x=list(range(p)), y=[f"frame {i}" for i in range(t)], zmin=-lim, zmax=lim,
            colorscale="PuOr_r", showscale=col == 2, colorbar=dict(title="feature"),
            text=np.round(data, 2), texttemplate="%{text}", textfont=dict(size=9),
            hovertemplate="%{y}, position %{x}: %{z:.3f}<extra></extra>",
        ), row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="position", dtick=1)
    fig.update_layout(height=120 + 48 * t, margin=dict(l=10, r=10, t=40, b=40))
    return fig


def teaching_lines_figure(before: np.ndarray, after: np.ndarray) -> go.Figure:
    """Each frame as a line before (dashed) and after (solid) HF, and the frame sums (conserved)."""
    t, p = before.shape
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.08,
                        subplot_titles=("frames before (dashed) and after (solid) HF", "Σₜ over frames: before vs after"))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    x = list(range(p))
    for i in range(t):
        c = palette[i % len(palette)]
        fig.add_scatter(x=x, y=before[i], mode="lines", line=dict(color=c, dash="dash", width=1.5),
                        name=f"F′ frame {i}", legendgroup=str(i), showlegend=False, row=1, col=1)
        fig.add_scatter(x=x, y=after[i], mode="lines+markers", line=dict(color=c, width=2.5),
                        name=f"frame {i}", legendgroup=str(i), row=1, col=1)
    fig.add_scatter(x=x, y=before.sum(0), mode="lines", line=dict(color="#444", width=6), opacity=0.35,
                    name="Σₜ F′ₜ (before)", row=1, col=2)
    fig.add_scatter(x=x, y=after.sum(0), mode="lines+markers", line=dict(color="#d62728", width=2, dash="dot"),
                    name="Σₜ Fₜ (after)", row=1, col=2)
    fig.update_xaxes(title="position", dtick=1)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=40), legend=dict(orientation="h", y=-0.25))
    return fig
