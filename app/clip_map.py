"""The current clip in the feature maps: which projection set a page reads, where the clip lands, its
nearest bundle clips. Shared by Feature space and Clip lab (streamlit side; the maths is
``hfnet_core.analysis.placement`` and ``app.feature_map``).

The projection spec the app reads is ``ProjectionSpec()`` - what ``hfnet project`` writes by default - or
the JSON object in ``HFNET_PROJECTION_SPEC`` (e.g. ``{"seed": 1}``) for sets made with other parameters.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.analysis_figures import FeaturePoints, feature_points
from app.feature_map import MapOptions, clip_placement, class_palette, map_figure, related_pairs
from app.loaders import ClipChoice, LoadedModel, predict
from hfnet_core.analysis import projection_store as store
from hfnet_core.analysis.placement import Placement, neighbour_table
from hfnet_core.analysis.projection_store import ProjectionSet, ProjectionSpec
from hfnet_core.errors import ConfigError, HfnetError

__all__ = ["METHOD_LABELS", "clip_map_section", "map_points", "neighbour_frame", "palette_of", "placements", "projection_spec",
           "session_owner"]

METHOD_LABELS = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}


def projection_spec() -> ProjectionSpec:
    """The spec of the sets the app reads (``HFNET_PROJECTION_SPEC``, JSON; default ``ProjectionSpec()``)."""
    raw = os.environ.get("HFNET_PROJECTION_SPEC", "").strip()
    if not raw:
        return ProjectionSpec()
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return ProjectionSpec.from_dict(doc)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"HFNET_PROJECTION_SPEC is not a JSON object of ProjectionSpec fields ({e}); "
                          "unset it or give e.g. '{\"seed\": 1}'") from e


def session_owner() -> str:
    """This browser session's id: the owner of the background jobs it starts."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return f"session:{ctx.session_id}" if ctx is not None else "session:?"


@st.cache_data(show_spinner=False, max_entries=64)
def palette_of(class_names: tuple[str, ...], pairs: tuple[tuple[int, int], ...]) -> list[str]:
    return class_palette(len(class_names), pairs)


@st.cache_resource(show_spinner=False, max_entries=64)
def _placement_cached(set_key: str, clip_key: str, _ps: ProjectionSet, _bundle: Any, clip_id: str | None,
                      _features: np.ndarray | None) -> Placement:
    return clip_placement(_ps, _bundle, clip_id, _features)


@st.cache_resource(show_spinner=False, max_entries=16)
def _points_cached(key: str, _sources: dict[str, tuple[Any, Any, Any]], _clip_ids: list[str]) -> FeaturePoints:
    return feature_points(_sources, _clip_ids)


def map_points(models: list[LoadedModel], sets: dict[str, ProjectionSet], method: str,
               clip_ids: list[str] | None, spec: ProjectionSpec, set_ids: list[str] | None = None
               ) -> tuple[str, FeaturePoints]:
    """(key, the joined points of ``models``' ``method`` maps on ``clip_ids`` (default: the first set's
    clips)), built once per process for each set file and clip list (shared by every session, never
    written); the key names them in figure caches."""
    first = models[0]
    ids = clip_ids if clip_ids is not None else [first.bundle.clip_ids[int(r)] for r in sets[first.slot].rows]
    key = "|".join([method, store.subset_digest(ids) or ""]
                   + [_set_key(m, spec, set_ids) for m in models])
    sources = {m.slot: (m.bundle, sets[m.slot].coords[method], sets[m.slot].rows) for m in models}
    return key, _points_cached(key, sources, list(ids))


def _set_key(m: LoadedModel, spec: ProjectionSpec, clip_ids: list[str] | None) -> str:
    """The projection set file as ``m`` shows it: file, version and, for a multi-task model, the task (its
    labels and predictions differ per task; the positions do not)."""
    path = store.set_path(m.bundle_path, spec, clip_ids)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = 0
    return f"{path}|{stamp}|{m.task or ''}"


def placements(models: list[LoadedModel], sets: dict[str, ProjectionSet], clip: ClipChoice,
               spec: ProjectionSpec, clip_ids: list[str] | None = None) -> tuple[dict[str, Placement], list[str]]:
    """(slot -> where ``clip`` lands in that model's set, one-line problems). A clip of the bundle keeps
    its own stored place; any other clip is run through the model (Clip lab's cached inference) and placed
    from its pooled features."""
    out: dict[str, Placement] = {}
    problems: list[str] = []
    for m in models:
        ps = sets.get(m.slot)
        if ps is None or m.bundle is None:
            continue
        cid = clip.clip_id if clip.clip_id and m.bundle.row_of(clip.clip_id) is not None else None
        try:
            feats = None if cid is not None else np.asarray(predict(m, clip).pooled_features)
            out[m.slot] = _placement_cached(_set_key(m, spec, clip_ids), f"{clip.clip_hash}|{cid}", ps,
                                            m.bundle, cid, feats)
        except HfnetError as e:
            problems.append(f"{m.label}: {e.one_line()}")
    return out, problems


def neighbour_frame(placement: Placement, m: LoadedModel, others: list[LoadedModel]) -> pd.DataFrame:
    """The clip's nearest bundle clips in ``m``'s space: clip id, distance, true label and every model's
    prediction (the other model's of the same clip id, "-" where its bundle lacks it)."""
    table = neighbour_table(placement, m.bundle, others={o.slot: o.bundle for o in others if o.bundle is not None})
    rows = []
    for r in table:
        row = {"#": r["rank"], "clip id": r["clip_id"], "distance": round(r["distance"], 3), "true": r["label_name"],
               f"{m.slot} predicts": r["pred_name"] + (" ✓" if r["pred"] == r["label"] else " ✗")}
        for o in others:
            name = r.get(f"pred_{o.slot}_name")
            row[f"{o.slot} predicts"] = "-" if name is None else name + (
                " ✓" if r.get(f"pred_{o.slot}") == r["label"] else " ✗")
        rows.append(row)
    return pd.DataFrame(rows)


def clip_map_section(models: list[LoadedModel], clip: ClipChoice, method: str = "tsne") -> None:
    """Clip lab's small section: the clip as a star in each model's stored map, and its neighbours."""
    spec = projection_spec()
    with_bundle = [m for m in models if m.bundle is not None and m.bundle_path]
    if not with_bundle:
        st.caption("No eval bundle next to the models, so there is no map to place this clip in.")
        return
    sets = {m.slot: store.shared_set(m.bundle_path, spec) for m in with_bundle}
    ready = [m for m in with_bundle if sets[m.slot] is not None and sets[m.slot].has(method)]
    if not ready:
        st.caption("The bundles have no stored projections yet: open Feature space (it computes them in the "
                   "background) or run `hfnet project` on the bundles.")
        return
    where, problems = placements(ready, sets, clip, spec)
    for p in problems:
        st.caption(f"Cannot place this clip: {p}")
    cols = st.columns(len(ready))
    for col, m in zip(cols, ready):
        pl = where.get(m.slot)
        if pl is None:
            continue
        with col:
            _, pts = map_points([m], sets, method, None, spec)
            palette = palette_of(tuple(m.bundle.class_names), tuple(related_pairs(m.bundle)))
            xy = pl.coords[method][0]
            fig = map_figure(pts, m.slot, f"{m.label}: {METHOD_LABELS[method]}", palette,
                             MapOptions(max_points=4000, height=360), marker=(float(xy[0]), float(xy[1])),
                             marker_name=clip.name)
            st.plotly_chart(fig, key=f"clip_map_{m.slot}", config={"displayModeBar": False})
            st.caption(f"Nearest clips of {m.label}'s bundle (in its PCA space):")
            st.dataframe(neighbour_frame(pl, m, [o for o in models if o.slot != m.slot]), hide_index=True,
                         width="stretch")
