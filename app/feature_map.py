"""The Feature space map at the paper's scale: one WebGL trace per plot, colour arrays, a class palette that
never repeats, dimming instead of rings, selections resolved on the full point set.

Why this shape: at 174 classes and 25k clips per plot, one SVG trace per class (and its legend) left a
~170 px plot and took seconds per selection in the browser. Here each plot is one ``go.Scattergl`` whose
``marker.color`` is a *number* per point (class index, or class index + n when dimmed) read through a
discrete colour scale - a compact typed array instead of 25k colour strings - plus two small optional
traces: misclassification rings (open circles, drawn around points, never over them) and the current
clip's star. Figures are pure functions of their inputs, so an unchanged figure serialises to the same
bytes and Streamlit's message cache sends the browser only a reference to it.

Pure numpy / plotly; no streamlit (the page is ``app/views/feature_space.py``).
"""

from __future__ import annotations

import colorsys
import html
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from app.analysis_figures import FeaturePoints
from hfnet_core.analysis.placement import Placement, place
from hfnet_core.analysis.projection_store import ProjectionSet
from hfnet_core.eval_bundle import EvalBundle

__all__ = [
    "LEGEND_MAX_CLASSES",
    "MISCLASS_DEFAULT_MAX",
    "MapOptions",
    "class_palette",
    "clip_placement",
    "frame_selection",
    "map_figure",
    "plot_coords",
    "related_pairs",
    "reported_rows",
    "resolve_selection",
    "selected_rows_csv",
    "FrozenFigure",
    "selected_rows_table",
    "stratified_rows",
]

LEGEND_MAX_CLASSES = 20  # above this a legend is unreadable: the page offers a class picker instead
MISCLASS_DEFAULT_MAX = 2000  # misclassification rings are on by default only up to this many points
_GOLDEN = 0.6180339887498949
_UNKNOWN = "#9a9a9a"
_DIMMED = "rgba(190,190,190,0.18)"


# --- colours ----------------------------------------------------------------------------------------

def related_pairs(bundle: EvalBundle) -> list[tuple[int, int]]:
    """Class index pairs the dataset says belong together (an action and its reverse): the bundle's
    ``metadata["reversed_pairs"]`` where it says so, else SynthSomething's reversed pairs matched by name."""
    k = len(bundle.class_names)
    meta = bundle.metadata.get("reversed_pairs") if isinstance(bundle.metadata, dict) else None
    out: list[tuple[int, int]] = []
    if isinstance(meta, list):
        for p in meta:
            if isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, int) and 0 <= v < k for v in p) \
                    and p[0] != p[1]:
                out.append((int(p[0]), int(p[1])))
        return out
    from hfnet_core.analysis.true_labels import REVERSED_BY_NAME, normalise_class_name

    index = {normalise_class_name(n): i for i, n in enumerate(bundle.class_names)}
    for i, name in enumerate(bundle.class_names):
        j = index.get(normalise_class_name(REVERSED_BY_NAME.get(normalise_class_name(name), "")))
        if j is not None and i < j:
            out.append((i, j))
    return out


def class_palette(n: int, pairs: Sequence[tuple[int, int]] = ()) -> list[str]:
    """``n`` distinct hex colours: hues spaced by the golden angle (so neighbouring classes differ and no
    colour repeats at any n), three lightness/saturation levels; each pair in ``pairs`` shares one hue in a
    dark and a light shade, so an action and its reverse read as related."""
    group = list(range(n))
    second: set[int] = set()
    for a, b in pairs:
        if 0 <= a < n and 0 <= b < n and group[a] == a and group[b] == b and a != b:
            group[b] = a
            second.add(b)
    heads = sorted({group[i] for i in range(n)})
    slot = {g: s for s, g in enumerate(heads)}
    paired_heads = {group[b] for b in second}
    out = []
    for i in range(n):
        s = slot[group[i]]
        hue = (s * _GOLDEN) % 1.0
        level = s % 3
        light, sat = (0.45, 0.75) if level == 0 else (0.33, 0.65) if level == 1 else (0.58, 0.85)
        if group[i] in paired_heads:
            light = 0.32 if i not in second else 0.64  # the pair: one hue, a dark and a light shade
        r, g, b = colorsys.hls_to_rgb(hue, light, sat)
        out.append(f"#{int(round(r * 255)):02x}{int(round(g * 255)):02x}{int(round(b * 255)):02x}")
    # two classes that landed on the very same colour (rounding at huge n): nudge the later one
    seen: dict[str, int] = {}
    for i, c in enumerate(out):
        while c in seen:
            c = f"#{(int(c[1:], 16) + 1) % 0xFFFFFF:06x}"
        seen[c] = i
        out[i] = c
    return out


def _colour_scale(palette: Sequence[str]) -> list[list[Any]]:
    """Discrete scale over integer values 0..2n: ``palette`` (0..n-1), their dimmed grey (n..2n-1),
    unknown class (2n)."""
    colours = list(palette) + [_DIMMED] * len(palette) + [_UNKNOWN]
    top = max(1, len(colours) - 1)
    return [[i / top, c] for i, c in enumerate(colours)]


# --- which points ----------------------------------------------------------------------------------

def stratified_rows(labels: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """At most ``max_points`` point indices (sorted), each class keeping its share and at least one point
    (so a rare class never disappears; with more classes than points, the largest classes get one each);
    all indices when there are not more than ``max_points``."""
    labels = np.asarray(labels)
    m = len(labels)
    if max_points <= 0 or m <= max_points:
        return np.arange(m)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = np.maximum(1, np.floor(counts * (max_points / m)).astype(np.int64))
    if len(classes) > max_points:  # more classes than points: one point each for the largest classes
        quota = np.zeros_like(quota)
        quota[np.argsort(-counts, kind="stable")[:max_points]] = 1
    while quota.sum() > max_points:  # the minimum of one pushed it over: take from the biggest quotas
        quota[int(np.argmax(quota))] -= 1
    spare = max_points - int(quota.sum())
    if spare > 0:  # hand the rounding remainder to the largest classes
        room = counts - quota
        for c in np.argsort(-room, kind="stable")[:spare]:
            if room[c] > 0:
                quota[c] += 1
    keep = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        keep.append(members if quota[c] >= len(members) else rng.choice(members, int(quota[c]), replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _inside_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd rule (ray casting) for every point against one polygon."""
    inside = np.zeros(len(x), dtype=bool)
    n = len(px)
    for i in range(n):
        x0, y0, x1, y1 = px[i], py[i], px[(i + 1) % n], py[(i + 1) % n]
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < at)
    return inside


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` of a selection state read as a mapping or as attributes (Streamlit gives either)."""
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def resolve_selection(event: object, xy: np.ndarray, clip_ids: Sequence[str],
                      among: np.ndarray | None = None) -> list[str]:
    """Clip ids a ``st.plotly_chart`` selection means, over *all* points of the plot (not only the drawn
    ones, when the plot is downsampled): the points it reports (their ``customdata``, the row) plus every
    point inside its boxes and lasso paths (limited to ``among``, a bool per point, e.g. the classes
    shown), in plot order."""
    sel = _field(event, "selection")
    hit = np.zeros(len(clip_ids), dtype=bool)
    xy = np.asarray(xy, dtype=np.float64)

    for box in (_field(sel, "box") or []) if sel is not None else []:
        bx, by = _field(box, "x") or [], _field(box, "y") or []
        if len(bx) >= 2 and len(by) >= 2:
            hit |= ((xy[:, 0] >= min(bx)) & (xy[:, 0] <= max(bx)) & (xy[:, 1] >= min(by)) & (xy[:, 1] <= max(by)))
    for lasso in (_field(sel, "lasso") or []) if sel is not None else []:
        lx, ly = np.asarray(_field(lasso, "x") or [], float), np.asarray(_field(lasso, "y") or [], float)
        if len(lx) >= 3 and len(lx) == len(ly):
            hit |= _inside_polygon(xy[:, 0], xy[:, 1], lx, ly)
    if among is not None:
        hit &= np.asarray(among, dtype=bool)
    for row in reported_rows(event):
        if row < len(hit):
            hit[row] = True
    return [c for c, h in zip(clip_ids, hit) if h]


def frame_selection(event: object, points: Mapping[str, FeaturePoints],
                    only_classes: Sequence[int] = ()) -> list[str] | None:
    """The clip ids an event of Feature space's maps frame (``{"slot", "seq", "selection": {"box",
    "lasso"}}``, boxes and lassos in plot units) means, resolved on every point of that slot's map (limited
    to ``only_classes`` when given); None for an event that names no plot shown."""
    slot = _field(event, "slot") if isinstance(event, Mapping) else None
    if not isinstance(slot, str) or slot not in points:
        return None
    pts = points[slot]
    among = np.isin(np.asarray(pts.labels), list(only_classes)) if only_classes else None
    return resolve_selection(event, plot_coords(pts.xy[slot]), pts.clip_ids, among)


def reported_rows(event: object) -> list[int]:
    """The rows (``customdata``, an int per point of ``map_figure``'s traces) of the points a selection
    state reports, once each, in report order; anything else in it is ignored."""
    sel = _field(event, "selection")
    points = _field(sel, "points") if sel else None
    out: list[int] = []
    seen: set[int] = set()
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(cd, (list, tuple)) and len(cd) == 1:
            cd = cd[0]
        if isinstance(cd, (int, float)) and not isinstance(cd, bool) and float(cd).is_integer() and cd >= 0 \
                and int(cd) not in seen:
            seen.add(int(cd))
            out.append(int(cd))
    return out


# --- the figure -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MapOptions:
    """Everything a map figure depends on besides its points (hashable: part of the figure's cache key)."""

    colour_by: str = "true"  # "true" | "pred"
    show_wrong: bool = False
    max_points: int = 0  # 0 = draw every point; else stratified by class
    only_classes: tuple[int, ...] = ()  # draw only clips of these true classes (empty: all)
    height: int = 620
    revision: int = 0  # a new one gives the plot a fresh UI state (zoom, plotly's own selection)


def _short(name: str, n: int = 30) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


_GRID = 65535  # plot coordinates: a 16-bit grid over the map's extent (typed uint16 arrays, half of float32)


def _grid_transform(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low corner, scale) mapping the map's extent onto [0, _GRID] on both axes."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    finite = xy[np.isfinite(xy).all(axis=1)]
    if not len(finite):
        return np.zeros(2), np.ones(2)
    lo, hi = finite.min(axis=0), finite.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return lo, _GRID / span


def plot_coords(xy: np.ndarray) -> np.ndarray:
    """The positions ``map_figure`` draws (and a selection's boxes and lassos come back in): the map on a
    16-bit grid - lossless at any plot size a screen shows, and half the bytes of float32 per point."""
    lo, scale = _grid_transform(xy)
    grid = np.rint((np.nan_to_num(np.asarray(xy, dtype=np.float64).reshape(-1, 2), nan=lo[0]) - lo) * scale)
    return np.clip(grid, 0, _GRID).astype(np.uint16)


def _literal(text: str) -> str:
    """``text`` safe inside a hover template: HTML-escaped, and never read as a ``%{...}`` variable."""
    return html.escape(text, quote=False).replace("%{", "%\u200b{")


def map_figure(pts: FeaturePoints, slot: str, title: str, palette: Sequence[str], options: MapOptions,
               focus: np.ndarray | None = None, marker: tuple[float, float] | None = None,
               marker_name: str = "this clip") -> go.Figure:
    """One model's map: a single WebGL trace of every (or a stratified sample of the) point(s) with a colour
    value per point (a shared colour axis). Per point: ``customdata`` = its row (a typed array, read back by
    selections), ``text`` = the clip id, ``hovertext`` = true class and prediction ("✓" alone when it is
    right). One trace, not one per class: plotly.js pays per trace, and 175 WebGL traces drew slower than
    one of 25k points (docs/scale.md). ``focus`` (bool per point) keeps those bright and dims the rest into
    a grey trace below with positions and colours only (a selection re-sends it; selections find its points
    by geometry). With ``options.only_classes`` only clips of those classes are drawn. Misclassification
    rings (of the bright points) and the current clip's star on request."""
    m = len(pts)
    n = len(palette)
    xy = plot_coords(pts.xy[slot])
    labels_all = np.asarray(pts.labels)
    colour_idx = np.asarray(pts.labels if options.colour_by == "true" else pts.preds[slot], dtype=np.int64)
    drawn = np.arange(m)
    if options.only_classes:
        drawn = np.flatnonzero(np.isin(labels_all, options.only_classes))
    if options.max_points and len(drawn) > options.max_points:
        drawn = drawn[stratified_rows(labels_all[drawn], options.max_points)]
    value = np.where(colour_idx >= 0, colour_idx, 2 * n).astype(np.int16)
    dimmed = np.zeros(0, dtype=np.int64)
    if focus is not None:
        dimmed, drawn = drawn[~focus[drawn]], drawn[focus[drawn]]
        value = np.where(focus | (value == 2 * n), value, value + n).astype(np.int16)
    preds_all = np.asarray(pts.preds[slot])
    pred_names = [_literal(_short(c)) for c in pts.pred_names[slot]]

    def ids(rows: np.ndarray) -> list[str]:  # escaped only where drawn with text (a selection: a few)
        if len(rows) > len(pts.clip_ids) // 2:
            every = _escaped_ids(pts.clip_ids)  # most of them: once for both plots of a pair
            return [every[i] for i in rows]
        return [_literal(pts.clip_ids[i]) for i in rows]

    slot_txt = _literal(slot)
    own = np.asarray(pts.own_labels.get(slot, labels_all))  # this model's own truth (its class list)
    wrong = (preds_all[drawn] != own[drawn]) & (own[drawn] >= 0)
    total = len(drawn) + len(dimmed)
    size = 7 if total <= 3000 else 5 if total <= 12000 else 4
    scale = dict(coloraxis="coloraxis", size=size, line=dict(width=0))  # one colour scale for every trace
    traces: list[dict[str, Any]] = []  # validated once, by go.Figure (trace objects would be validated twice)
    if len(dimmed):  # the rest, under the focused points: positions and colours only (a selection re-sends
        # this trace; selections find its points by geometry, so it needs neither rows nor hover text)
        traces.append(dict(
            type="scattergl", x=xy[dimmed, 0], y=xy[dimmed, 1], mode="markers", showlegend=False,
            name=f"{len(dimmed):,} other clips (dimmed)", marker=dict(color=value[dimmed], **scale),
            hoverinfo="skip",
        ))
    if len(drawn):
        lab, prd = own[drawn].tolist(), preds_all[drawn].tolist()
        hover = [f"{pred_names[y]}<br>{slot_txt}: " + ("✓" if p == y else f"{pred_names[p]} ✗") if y >= 0
                 else f"unknown<br>{slot_txt}: {pred_names[p]}" for y, p in zip(lab, prd)]
        traces.append(dict(
            type="scattergl", x=xy[drawn, 0], y=xy[drawn, 1], mode="markers", showlegend=False,
            name=f"{len(drawn):,} clips" if not len(dimmed) else f"{len(drawn):,} highlighted clips",
            marker=dict(color=value[drawn], **scale), customdata=drawn.astype(np.int32),
            text=ids(drawn), hovertext=hover,
            hovertemplate="<b>%{text}</b><br>true: %{hovertext}<extra></extra>",
        ))
    if n <= LEGEND_MAX_CLASSES:  # a legend still reads at this size: one legend-only entry per class shown
        legend_names = pts.class_names if options.colour_by == "true" else pts.pred_names[slot]
        for c in np.unique(colour_idx[np.concatenate([drawn, dimmed])]):
            traces.append(dict(
                type="scattergl", x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=True,
                name=_short(legend_names[c]) if c >= 0 else "unknown",
                marker=dict(color=palette[c] if c >= 0 else _UNKNOWN, size=8)))
    if options.show_wrong and wrong.any():
        w = drawn[wrong]
        traces.append(dict(
            type="scattergl", x=xy[w, 0], y=xy[w, 1], mode="markers", showlegend=True,
            name=f"✗ {slot} is wrong ({int(wrong.sum()):,})",
            marker=dict(symbol="circle-open", size=size + 4, color="rgba(20,20,20,0.55)", line=dict(width=1)),
            customdata=w.astype(np.int32), text=ids(w), hovertemplate="%{text}<extra></extra>",
        ))
    if marker is not None:
        lo, grid_scale = _grid_transform(pts.xy[slot])
        marker = tuple((np.asarray(marker, dtype=np.float64) - lo) * grid_scale)  # may lie outside the grid
        traces.append(dict(
            type="scattergl", x=[float(marker[0])], y=[float(marker[1])], mode="markers", showlegend=True,
            name=f"★ {marker_name}", hovertemplate=f"<b>{_literal(marker_name)}</b><extra></extra>",
            marker=dict(symbol="star", size=20, color="#ffd400", line=dict(width=1.5, color="#111")),
        ))
    layout_dict = _layout(title, options.height, f"{slot}/{options.revision}", tuple(palette))
    return FrozenFigure({"data": [_typed_arrays(t) for t in traces], "layout": layout_dict})


_ESCAPED: list[tuple[Sequence[str], list[str]]] = []  # (the clip id list itself, its escaped ids), newest last


def _escaped_ids(clip_ids: Sequence[str]) -> list[str]:
    """Every clip id of a point set, escaped for hover text, once per list (the two plots of a pair share
    theirs). Entries hold the list itself, so an id() is never reused while cached."""
    for ref, escaped in _ESCAPED:
        if ref is clip_ids:
            return escaped
    escaped = [_literal(c) for c in clip_ids]
    _ESCAPED.append((clip_ids, escaped))
    del _ESCAPED[:-4]
    return escaped


def _layout(title: str, height: int, uirevision: str, palette: tuple[str, ...]) -> dict[str, Any]:
    """A map's layout: the validated part shared per (height, palette), then its title and UI revision."""
    return {**_layout_base(height, palette), "title": {"text": title}, "uirevision": uirevision}


@lru_cache(maxsize=16)
def _layout_base(height: int, palette: tuple[str, ...]) -> dict[str, Any]:
    """Everything of a map's layout but its title and revision, validated by plotly once per (height,
    palette) and shared (read only): the 348-colour scale alone took ~45 ms to validate, on every
    selection, for each plot."""
    n = len(palette)
    axis = dict(showticklabels=False, title=None, zeroline=False)
    layout = go.Layout(
        height=height, margin=dict(l=10, r=10, t=50, b=10), dragmode="select",
        legend=dict(orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0, font=dict(size=10)),
        hovermode="closest", xaxis=axis, yaxis=axis,
        coloraxis=dict(colorscale=_colour_scale(palette), cmin=0, cmax=2 * n, showscale=False),
    )
    # The traces are built in map_figure from a fixed set of properties (the tests read them back) and go
    # out as they are: plotly's validation and to_dict walked every one of the 25k hover strings three
    # times, ~0.8 s per figure at full scale - the server's largest share of a selection.
    return go.Figure(layout=layout).to_dict()["layout"]  # with the default template, as before


def _typed_arrays(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with every numpy array (also in nested dicts) in plotly's own wire form (a typed array where
    plotly.js has one). Only the arrays are visited: plotly's ``convert_to_base64`` would also walk every
    element of the 25k-long hover string lists."""
    from _plotly_utils.utils import to_typed_array_spec

    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = _typed_arrays(v)
        elif isinstance(v, np.ndarray):
            spec = to_typed_array_spec(v)
            out[k] = spec.tolist() if isinstance(spec, np.ndarray) else spec
        else:
            out[k] = v
    return out


class FrozenFigure(go.Figure):
    """A finished figure held as its plotly dict (arrays already typed-array encoded): ``to_dict`` hands
    that out at once. Streamlit calls ``to_dict`` on every rerun of every shown chart - for a 25k-point map
    a deep copy and a walk over every hover string, ~0.3 s per plot per rerun, even when the figure itself
    is cached. What it returns is shared: never modify it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self._frozen = {"data": spec.get("data", []), "layout": spec.get("layout", {})}

    def to_dict(self) -> dict[str, Any]:
        return dict(self._frozen)

    def to_plotly_json(self) -> dict[str, Any]:
        return dict(self._frozen)

    def _frozen_error(self, *_a: Any, **_k: Any) -> Any:
        raise TypeError("a FrozenFigure does not change; build a new one (map_figure)")

    update_layout = add_trace = add_traces = update_traces = _frozen_error


# --- tables and the current clip --------------------------------------------------------------------

def selected_rows_table(pts: FeaturePoints, clip_ids: Sequence[str]) -> list[dict[str, str]]:
    """One row per chosen clip (in ``clip_ids`` order, unknown ids skipped): clip id, true class and every
    model's prediction with its probability."""
    index = {c: i for i, c in enumerate(pts.clip_ids)}
    rows = []
    for c in clip_ids:
        i = index.get(c)
        if i is None:
            continue
        y = int(pts.labels[i])
        row = {"clip id": c, "true": pts.class_names[y] if y >= 0 else "unknown"}
        for slot, p in pts.preds.items():
            row[f"{slot} predicts"] = f"{pts.pred_names[slot][int(p[i])]} ({100 * pts.confs[slot][i]:.0f} %)"
        rows.append(row)
    return rows


def selected_rows_csv(rows: Sequence[Mapping[str, str]]) -> str:
    """``selected_rows_table``'s rows as CSV (every one of them; the page's table shows the first few)."""
    import csv
    import io

    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return out.getvalue()


def clip_placement(ps: ProjectionSet, bundle: EvalBundle, clip_id: str | None, features: np.ndarray | None,
                   k: int = 10) -> Placement:
    """Where the current clip sits: a clip of the set itself keeps its stored map position and stored
    neighbours (exact; itself excluded); any other clip (an upload, a clip from elsewhere) is placed from its
    pooled ``features`` (``hfnet_core.analysis.placement.place``). Raises ``BundleError`` for features of
    another width."""
    row = bundle.row_of(clip_id) if clip_id else None
    rows = np.asarray(ps.rows)
    where = np.flatnonzero(rows == row) if row is not None else np.zeros(0, dtype=np.int64)
    if len(where):
        i = int(where[0])
        nb = np.asarray(ps.knn_indices[i])
        dist = np.asarray(ps.knn_distances[i])
        keep = nb != i
        nb, dist = nb[keep][:k], dist[keep][:k]
        coords = {mth: np.asarray(ps.coords[mth][i:i + 1], dtype=np.float32) for mth in ps.methods}
        return Placement(coords, rows[nb][None, :], dist[None, :].astype(np.float32),
                         np.asarray(ps.reduced[i:i + 1], dtype=np.float32))
    if features is None:
        from hfnet_core.errors import BundleError

        raise BundleError("this clip is not in the bundle and has no features to place it with")
    return place(ps, features, k=k)
