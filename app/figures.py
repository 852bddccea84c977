"""Plotly figures of the explorer pages (pure functions: data in, ``go.Figure`` out; no streamlit).

Gate colours are fixed on [-1, 1] with a diverging scale: blue = G > 0 (averaging a frame with the next),
red = G < 0 (differencing), white = 0 (frames left alone).
"""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hfnet_core.analysis.gates import gate_matrix, pair_gates, short_block_name

# Diverging: red (differencing, G=-1) - white (G=0) - blue (averaging, G=+1).
GATE_COLORSCALE = [
    [0.0, "#b2182b"], [0.25, "#ef8a62"], [0.45, "#fddbc7"], [0.5, "#f7f7f7"],
    [0.55, "#d1e5f0"], [0.75, "#67a9cf"], [1.0, "#2166ac"],
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


def top5_figure(pred: Any, title: str, true_label: str | None = None, color: str = COLOR_A) -> go.Figure:
    """Horizontal bars of the top-5 classes (best on top); the true class in green."""
    names = list(pred.top5_names)[::-1]
    probs = [float(p) for p in pred.top5_probs][::-1]
    colors = [COLOR_TRUE if n == true_label else color for n in names]
    fig = go.Figure(go.Bar(
        x=probs, y=[_wrap(n) for n in names], orientation="h", marker_color=colors,
        text=[f"{100 * p:.1f} %" for p in probs], textposition="auto",
        hovertemplate="%{y}: %{x:.3f}<extra></extra>",
    ))
    fig.update_layout(title=dict(text=title, font=dict(size=15)), height=300, margin=dict(l=10, r=10, t=45, b=30),
                      xaxis=dict(range=[0, 1], title="probability", tickformat=".0%"), showlegend=False)
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


def _overlay_traces(frame_src: str | None, g: np.ndarray, size: int, opacity: float, smooth: bool,
                    showscale: bool, label: str, axis: str = "") -> list[dict[str, Any]]:
    """A frame image and its gate map drawn over it (gate cells stretched to the frame's pixel grid).

    Plain trace dicts (no Plotly object validation): a 10 x 7 grid builds in milliseconds, not a second.
    """
    h, w = g.shape
    ax = {"xaxis": f"x{axis}", "yaxis": f"y{axis}"}
    traces: list[dict[str, Any]] = []
    if frame_src is not None:
        traces.append({"type": "image", "source": frame_src, "hoverinfo": "skip", **ax})
    heat: dict[str, Any] = {
        "type": "heatmap", "z": np.round(g, 3).tolist(), "x0": 0.5 * size / w - 0.5, "dx": size / w,
        "y0": 0.5 * size / h - 0.5, "dy": size / h, "zmin": -1, "zmax": 1, "colorscale": GATE_COLORSCALE,
        "opacity": opacity if frame_src is not None else 1.0, "zsmooth": "best" if smooth else False,
        "showscale": showscale, "hovertemplate": label + "<br>G = %{z:.2f}<extra></extra>", **ax,
    }
    if showscale:
        heat["colorbar"] = GATE_COLORBAR
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


def _prepare(gates: dict[str, Any], frames: np.ndarray | None, blocks: Sequence[str] | None
             ) -> tuple[list[str], dict[str, np.ndarray], int, int, list[str | None]]:
    blocks = [b for b in (blocks or list(gates)) if b in gates]
    maps = {b: pair_gates(gates[b]) for b in blocks}
    pairs = next(iter(maps.values())).shape[0] if maps else 0
    size = int(frames.shape[1]) if frames is not None else max((m.shape[1] for m in maps.values()), default=1)
    srcs: list[str | None] = [frame_uri(f) for f in frames[:pairs]] if frames is not None else [None] * pairs
    return blocks, maps, pairs, size, srcs


def gate_grid_figure(gates: dict[str, Any], frames: np.ndarray | None, opacity: float = 0.6,
                     smooth: bool = True, blocks: Sequence[str] | None = None) -> dict[str, Any]:
    """Every HF layer (rows) x every adjacent frame pair (columns): G_t drawn over frame t.

    ``frames``: the model's input frames (T, S, S, 3) uint8, or None for bare maps. Returns a Plotly
    figure dict (``st.plotly_chart`` and ``plotly.io.to_html`` take it as is).
    """
    blocks, maps, pairs, size, srcs = _prepare(gates, frames, blocks)
    rows, cols = max(len(blocks), 1), max(pairs, 1)
    top = 1.0 - 0.35 / rows
    layout, cells = _grid_axes(rows, cols, size, 0.006, 0.01, top)
    data: list[dict[str, Any]] = []
    for i, b in enumerate(blocks):
        for t in range(pairs):
            k = i * cols + t + 1
            data += _overlay_traces(srcs[t], maps[b][t], size, opacity, smooth, k == 1,
                                    f"layer {short_block_name(b)}, frames {t}→{t + 1}", "" if k == 1 else str(k))
    ann = [{"text": f"frames {t}→{t + 1}", "x": (cells[t][0] + cells[t][1]) / 2, "y": 1.0, "xref": "paper",
            "yref": "paper", "showarrow": False, "yanchor": "bottom", "font": {"size": 11}} for t in range(pairs)]
    ann += [{"text": short_block_name(b), "x": -0.005, "y": (cells[i * cols][2] + cells[i * cols][3]) / 2,
             "xref": "paper", "yref": "paper", "showarrow": False, "xanchor": "right", "font": {"size": 11}}
            for i, b in enumerate(blocks)]
    layout.update(height=70 + 100 * rows, margin={"l": 40, "r": 10, "t": 30, "b": 10}, annotations=ann,
                  plot_bgcolor="white")
    return {"data": data, "layout": layout}


def gate_animation_figure(gates: dict[str, Any], frames: np.ndarray | None, opacity: float = 0.6,
                          smooth: bool = True, blocks: Sequence[str] | None = None, per_row: int = 5) -> dict[str, Any]:
    """All chosen layers side by side for one frame pair, with a time slider and a play button.

    The slider runs in the browser (Plotly animation frames): moving it never reruns the Streamlit script.
    """
    blocks, maps, pairs, size, srcs = _prepare(gates, frames, blocks)
    ncols = min(per_row, max(len(blocks), 1))
    nrows = max(1, -(-len(blocks) // ncols))
    top = 1.0 - 0.3 / nrows
    layout, cells = _grid_axes(nrows, ncols, size, 0.02, 0.12 / nrows, top)

    def traces_at(t: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, b in enumerate(blocks):
            out += _overlay_traces(srcs[t], maps[b][t], size, opacity, smooth, i == 0,
                                   f"layer {short_block_name(b)}, frames {t}→{t + 1}", "" if i == 0 else str(i + 1))
        return out

    ann = [{"text": f"layer {short_block_name(b)}", "x": (cells[i][0] + cells[i][1]) / 2, "y": cells[i][3],
            "xref": "paper", "yref": "paper", "showarrow": False, "yanchor": "bottom", "font": {"size": 12}}
           for i, b in enumerate(blocks)]
    layout.update(height=140 + 210 * nrows, margin={"l": 20, "r": 20, "t": 30, "b": 10}, annotations=ann)
    fig: dict[str, Any] = {"data": traces_at(0) if pairs else [], "layout": layout}
    if pairs:
        fig["frames"] = [{"name": str(t), "data": traces_at(t)} for t in range(pairs)]
        steps = [{"method": "animate", "label": f"{t}→{t + 1}",
                  "args": [[str(t)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                      "transition": {"duration": 0}}]} for t in range(pairs)]
        layout["sliders"] = [{"active": 0, "steps": steps, "currentvalue": {"prefix": "frame pair "},
                              "pad": {"t": 10}, "y": 0, "yanchor": "top", "x": 0.08, "len": 0.92}]
        layout["updatemenus"] = [{
            "type": "buttons", "showactive": False, "x": 0.0, "y": 0, "xanchor": "left", "yanchor": "top",
            "pad": {"t": 18}, "buttons": [
                {"label": "▶", "method": "animate",
                 "args": [None, {"frame": {"duration": 800, "redraw": True}, "fromcurrent": True,
                                 "transition": {"duration": 0}}]},
                {"label": "❚❚", "method": "animate",
                 "args": [[None], {"mode": "immediate", "frame": {"duration": 0, "redraw": True}}]},
            ]}]
        layout["margin"]["b"] = 90
        layout["height"] += 80
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
