"""What a person takes away: figures (PNG, SVG, HTML) and data (CSV, JSON, NPZ), each naming its clip,
models and settings inside (``hfnet_core.analysis.exports``).

Every file is built only when its button is clicked (``data`` is a callable; the click does not rerun
the page), so a page with many figures costs nothing until someone downloads one.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import streamlit as st

from app.ui import slug

__all__ = ["figure_context", "show_figure", "download_figure", "figure_html", "download_menu", "prediction_files", "gate_files", "attribution_files"]

_MIME = {"png": "image/png", "svg": "image/svg+xml", "html": "text/html", "csv": "text/csv",
         "json": "application/json", "npz": "application/octet-stream"}


def figure_context(sel: Any, settings: Mapping[str, Any] | None = None) -> tuple[str, list[str], dict[str, Any]]:
    """(clip, model names, settings) that every exported file of this page names inside."""
    clip = sel.clip.name if sel.clip is not None else "no clip"
    models = [m.label for m in sel.models]
    return clip, models, {**({"clip played": "backwards"} if sel.reverse else {}), **dict(settings or {})}


def download_menu(items: Sequence[tuple[str, Callable[[], bytes | str], str]], key: str,
                  label: str = "Download") -> None:
    """A small "Download" popover holding one button per (label, build, file name) item (``label=""``: the
    icon alone, for tight spots)."""
    with st.popover(label or "", icon=":material/download:", help="Download" if not label else None):
        for i, (text, build, name) in enumerate(items):
            ext = name.rsplit(".", 1)[-1].lower()
            st.download_button(text, data=build, file_name=name, mime=_MIME.get(ext, "application/octet-stream"),
                               key=f"dl_{key}_{i}", on_click="ignore", width="stretch")


def _figure_items(fig: Any, base: str, clip: str, models: list[str], settings: dict[str, Any]
                  ) -> list[tuple[str, Callable[[], bytes | str], str]]:
    from hfnet_core.analysis import exports

    def html() -> str:
        return figure_html(fig, clip, models, settings)

    return [("PNG image", lambda: exports.figure_png(fig, clip, models, settings), f"{base}.png"),
            ("SVG (vector)", lambda: exports.figure_svg(fig, clip, models, settings), f"{base}.svg"),
            ("Interactive HTML (works offline)", html, f"{base}.html")]


def figure_html(fig: Any, clip: str, models: list[str], settings: Mapping[str, Any]) -> str:
    """The figure as a standalone interactive HTML file (works offline: plotly.js inside), still playable
    (sliders, ▶), with the provenance line under the plot and as the page title."""
    import copy
    import html as html_lib

    import plotly.io as pio

    from hfnet_core.analysis.figure_export import provenance_line

    d = copy.deepcopy(fig.to_dict() if hasattr(fig, "to_dict") else dict(fig))
    layout = d.setdefault("layout", {})
    line = provenance_line(clip, models, settings)
    margin = dict(layout.get("margin") or {})
    margin["b"] = int(margin.get("b", 80) or 0) + 36
    layout["margin"] = margin
    layout["height"] = int(layout.get("height") or 450) + 36
    layout["annotations"] = list(layout.get("annotations") or []) + [{
        "text": html_lib.escape(line, quote=False), "xref": "paper", "yref": "paper", "x": 0, "y": 0,
        "xanchor": "left", "yanchor": "top", "yshift": -margin["b"] + 30, "showarrow": False,
        "font": {"size": 11, "color": "#555"}}]
    page = pio.to_html(d, include_plotlyjs=True, full_html=True, validate=False, auto_play=False)
    return page.replace("<head>", f"<head>\n<title>{html_lib.escape(line)}</title>", 1)


def download_figure(fig: Any, key: str, sel: Any, settings: Mapping[str, Any] | None = None,
                    where: Any = None) -> None:
    """The download menu of a figure drawn elsewhere (a chart with selection events), in ``where``
    (a container; default: here)."""
    clip, models, s = figure_context(sel, settings)
    with where if where is not None else st.container():
        download_menu(_figure_items(fig, slug(f"{key}_{clip}"), clip, models, s), key,
                      "" if where is not None else "Download")


def show_figure(fig: Any, key: str, sel: Any, settings: Mapping[str, Any] | None = None, download: bool = True,
                menu_at: Any = None, **chart: Any) -> None:
    """``st.plotly_chart`` plus a download menu (PNG / SVG / HTML naming clip, models and settings), under
    the chart or in ``menu_at`` (a container drawn earlier, e.g. beside a heading)."""
    st.plotly_chart(fig, key=f"fig_{key}", **chart)
    if download:
        download_figure(fig, key, sel, settings, menu_at)


def prediction_files(sel: Any, forward: Mapping[str, Any], backward: Mapping[str, Any] | None = None
                     ) -> list[tuple[str, Callable[[], bytes | str], str]]:
    """CSV / JSON / NPZ of both models' predictions on the clip (and on it backwards, when shown)."""
    from hfnet_core.analysis import exports

    clip, _, settings = figure_context(sel)
    infos = [exports.model_info(m.checkpoint, m.label, m.class_names, m.task) for m in sel.models]

    def records() -> list[dict[str, Any]]:
        out = [exports.prediction_record(clip, _named(sel, forward), true_label=sel.clip.label_name, direction="forward", path=sel.clip.path)]
        if backward:
            out.append(exports.prediction_record(clip, _named(sel, backward), true_label=sel.reversed_label,
                                                 true_label_source="reversed pair map" if sel.reversed_label else None,
                                                 direction="reversed", path=sel.clip.path))
        return out

    def as_json() -> bytes:
        rev = {clip: exports.reversal_comparison(_named(sel, forward), _named(sel, backward))} if backward else None
        return exports.predictions_json(records(), infos, settings, reversal=rev)

    base = slug(f"predictions_{clip}")
    return [("CSV", lambda: exports.predictions_csv(records(), settings), f"{base}.csv"),
            ("JSON", as_json, f"{base}.json"),
            ("NPZ (numpy)", lambda: exports.predictions_npz(records(), infos, settings), f"{base}.npz")]


def _named(sel: Any, preds: Mapping[str, Any] | None) -> dict[str, Any]:
    """slot -> prediction, re-keyed by model label in display order."""
    return {m.label: preds[m.slot] for m in sel.models if preds and m.slot in preds}


def gate_files(sel: Any, model: Any, gates: Mapping[str, Any], settings: Mapping[str, Any] | None = None
               ) -> list[tuple[str, Callable[[], bytes | str], str]]:
    """Gate values of one model on the clip: per-layer summary CSV, every value CSV, JSON, NPZ."""
    from hfnet_core.analysis import exports

    clip, _, s = figure_context(sel, settings)
    info = exports.model_info(model.checkpoint, model.label, model.class_names, model.task)
    base = slug(f"gates_{model.name}_{clip}" + ("_backwards" if s.get("clip played") == "backwards" else ""))
    return [("Per-layer summary (CSV)", lambda: exports.gate_summary_csv(gates, clip, info, s), f"{base}_layers.csv"),
            ("Every gate value (CSV)", lambda: exports.gates_csv(gates, clip, info, s), f"{base}.csv"),
            ("JSON", lambda: exports.gates_json(gates, clip, info, s), f"{base}.json"),
            ("NPZ (numpy)", lambda: exports.gates_npz(gates, clip, info, s), f"{base}.npz")]


def attribution_files(sel: Any, maps: Mapping[str, Any], method: str, targets: Mapping[str, str],
                      settings: Mapping[str, Any] | None = None) -> list[tuple[str, Callable[[], bytes | str], str]]:
    """Attribution maps of the models shown (model label -> (T, H, W)): CSV, JSON, NPZ."""
    from hfnet_core.analysis import exports

    clip, _, s = figure_context(sel, settings)
    infos = [exports.model_info(m.checkpoint, m.label, m.class_names, m.task) for m in sel.models if m.label in maps]
    base = slug(f"attributions_{method}_{clip}")
    return [("CSV", lambda: exports.attributions_csv(maps, clip, method, targets, s), f"{base}.csv"),
            ("JSON", lambda: exports.attributions_json(maps, clip, method, targets, s, infos), f"{base}.json"),
            ("NPZ (numpy)", lambda: exports.attributions_npz(maps, clip, method, targets, s, infos), f"{base}.npz")]
