"""Feature space: t-SNE / UMAP of both models' pooled pre-FC features (the paper's Fig. 3b/c), linked.

Reads the eval bundles of models A and B, projects each once (cached on disk by
``hfnet_core.analysis.embeddings``), and draws them side by side. A box/lasso selection in either plot
rings the same clips in both and lists them, each with a button that opens it in the Clip lab.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.analysis_figures import FeaturePoints, feature_points, projection_figure, selected_clip_ids
from app import selection as S
from app.downloads import download_figure
from app.ui import error_box, need_models, page_title
from hfnet_core.analysis import embeddings as emb
from hfnet_core.analysis.comparison import ClassListMismatch, align, check_same_classes, improved_clip_ids

METHOD_LABELS = {"tsne": "t-SNE", "umap": "UMAP"}
MAX_BUTTONS = 24

sel = S.current()
page_title("Feature space",
           "Each point is one test clip, placed by a 2-D projection of the pooled features the classifier reads "
           "(the paper's Fig. 3b/c). Colour = class; a black cross marks a clip that model gets wrong. Select with "
           "the box or lasso tool in either plot: the same clips are ringed in both and listed below.")
models = need_models(sel)
for m in models:
    if m.bundle is None:
        st.warning(f"Model {m.label} has no eval bundle next to its checkpoint (expected "
                   f"`<checkpoint stem>.test.npz`), so it has no feature plot. Make one with `hfnet eval`.")
sources = [m for m in models if m.bundle is not None and m.bundle_path]
if not sources:
    st.stop()

# --- which clips ------------------------------------------------------------------------------------
linked, classes_ok, pair_note = False, False, ""
ids_by_slot: dict[str, list[str]] = {m.slot: list(m.bundle.clip_ids) for m in sources}
if len(sources) == 2:
    ma, mb = sources
    try:
        check_same_classes(ma.bundle, mb.bundle, ma.label, mb.label)
        classes_ok = True
    except ClassListMismatch as e:
        st.warning(f"{e} The plots are drawn, but the most-improved restriction is off.")
    al = align(ma.bundle, mb.bundle)
    if al.n_matched:
        linked = True
        ids_by_slot = {ma.slot: al.clip_ids, mb.slot: al.clip_ids}
        pair_note = al.describe() + "."
    else:
        error_box("The two eval bundles share no clip id, so their plots cannot be linked.",
                  "Evaluate both models on the same split (`hfnet eval --split test`).")

c1, c2, c3 = st.columns([1.2, 2, 1.6])
method = c1.radio("Projection", list(METHOD_LABELS), format_func=METHOD_LABELS.get, key="fs_method",
                  horizontal=True)
colour_by = c3.radio("Colour by", ["true", "pred"], key="fs_colour", horizontal=True,
                     format_func={"true": "true class", "pred": "that model's prediction"}.get)
can_restrict = linked and classes_ok
restrict = c2.checkbox("Only the most-improved classes (Fig. 3b/c)", key="fs_restrict", disabled=not can_restrict,
                       help="Clips of the classes A corrects most often relative to B (see Class comparison)."
                       + ("" if can_restrict else " Needs two bundles with the same classes and shared clips."))
proj_ids = None
if restrict and can_restrict:
    k1, k2 = c2.columns(2)
    top_k = int(k1.number_input("Classes", 1, 50, 10, key="fs_top_k"))
    reproject = k2.checkbox("Project only these clips", key="fs_reproject", value=False,
                            help="As in the paper: run the projection on these classes alone (computed once, "
                                 "then cached). Off: the same points, cut out of the whole-set projection.")
    classes, sub_ids = improved_clip_ids(sources[0].bundle, sources[1].bundle, top_k)
    if sub_ids:
        ids_by_slot = {m.slot: sub_ids for m in sources}
        names = sources[0].bundle.class_names
        st.caption(f"{len(classes)} most-improved classes ({len(sub_ids)} clips): "
                   + ", ".join(names[c] for c in classes))
        proj_ids = sub_ids if reproject else None
    else:
        st.info(f"{sources[0].label} corrects no clip that {sources[1].label} gets wrong: nothing to restrict to.")
if pair_note:
    st.caption(pair_note)


# --- projections ------------------------------------------------------------------------------------
def _projection(m, method: str):
    """(coords, rows) for a bundle, or None while UMAP is computed in the background."""
    status = emb.projection_status(m.bundle_path, method, clip_ids=proj_ids)
    if status.state != "ready" and method == "tsne":
        with st.spinner(f"Computing the t-SNE of {m.label} (once; then cached on disk)…"):
            coords = emb.project(m.bundle_path, "tsne", clip_ids=proj_ids)
        status = emb.ProjectionStatus("ready", coords)
    if status.state == "ready":
        return status.coords, emb.subset_rows(m.bundle, proj_ids)
    if status.state == "failed":
        error_box(f"UMAP of {m.label} failed: {status.error}")
        if st.button("Try UMAP again", key=f"fs_retry_{m.slot}"):
            emb.project_async(m.bundle_path, "umap", clip_ids=proj_ids, retry=True)
            st.rerun()
    return None


# UMAP for every shown bundle starts in the background as soon as the page sees it (one worker thread).
waiting = []
for m in sources:
    if emb.project_async(m.bundle_path, "umap", clip_ids=proj_ids).state == "running":
        waiting.append(m.label)

shown_method = method
projections = {m.slot: _projection(m, method) for m in sources}
if method == "umap" and any(v is None for v in projections.values()):
    shown_method = "tsne"
    projections = {m.slot: _projection(m, "tsne") for m in sources}
    if waiting:
        st.info(f"UMAP is being computed for {', '.join(waiting)} (a new process first compiles umap's "
                "numba code: 15-30 s, then the fit). Showing t-SNE until it is ready.")

        @st.fragment(run_every=3)
        def _poll_umap() -> None:
            """Reruns the page once no UMAP job of these bundles is running any more."""
            if all(emb.projection_status(m.bundle_path, "umap", clip_ids=proj_ids).state != "running"
                   for m in sources):
                st.rerun()

        _poll_umap()


# --- points and selection ---------------------------------------------------------------------------
def _points(slots: list) -> FeaturePoints:
    srcs = {m.slot: (m.bundle, projections[m.slot][0], projections[m.slot][1]) for m in slots}
    return feature_points(srcs, ids_by_slot[slots[0].slot])


if linked:
    shared = _points(sources)
    points = {m.slot: shared for m in sources}
else:
    points = {m.slot: _points([m]) for m in sources}

@st.cache_data(show_spinner=False, max_entries=32)
def _separation(bundle_sha: str, _bundle, clip_ids: tuple[str, ...]) -> float | None:
    """Silhouette of the bundle's features on ``clip_ids`` (cached: O(M^2) distances)."""
    rows = emb.subset_rows(_bundle, clip_ids)
    return emb.class_separation(_bundle.features[rows], _bundle.labels[rows])


selected: list[str] = list(st.session_state.get("fs_selected", []))


def _remember(key: str) -> None:
    st.session_state["fs_selected"] = selected_clip_ids(st.session_state.get(key))


cols = st.columns(len(sources))
for col, m in zip(cols, sources):
    pts = points[m.slot]
    with col:
        title = f"{m.label}: {METHOD_LABELS[shown_method]} of {len(pts)} clips"
        fig = projection_figure(pts, m.slot, title, selected, colour_by)
        key = f"fs_plot_{m.slot}"
        st.plotly_chart(fig, key=key, on_select=lambda key=key: _remember(key),
                        selection_mode=("points", "box", "lasso"))
        download_figure(fig, f"fs_{m.slot}", sel, {"projection": METHOD_LABELS[shown_method], "colour by": colour_by})
        sep = _separation(emb.bundle_sha256(m.bundle_path), m.bundle, tuple(pts.clip_ids))
        if sep is not None:
            st.caption(f"Class separation of the pooled features (silhouette by true class, on these clips, "
                       f"in the full feature space): **{sep:.3f}**; higher = tighter, better separated classes.")

# --- the selected clips -----------------------------------------------------------------------------
first = points[sources[0].slot]
index = {c: i for i, c in enumerate(first.clip_ids)}
chosen = [c for c in selected if c in index]
st.subheader(f"Selected clips ({len(chosen)})")
if not chosen:
    st.caption("Nothing selected. Use the box or lasso tool of either plot (double-click clears).")
else:
    table = []
    for c in chosen:
        i = index[c]
        y = int(first.labels[i])
        row = {"clip id": c, "true": first.class_names[y] if y >= 0 else "unknown"}
        for slot, p in first.preds.items():
            row[f"{slot} predicts"] = f"{first.pred_names[slot][int(p[i])]} ({100 * first.confs[slot][i]:.0f} %)"
        table.append(row)
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    if st.button("Clear the selection", key="fs_clear"):
        st.session_state["fs_selected"] = []
        st.rerun()
    if len(chosen) > MAX_BUTTONS:
        st.caption(f"Buttons for the first {MAX_BUTTONS} clips; narrow the selection to open the others.")
    bcols = st.columns(3)
    for n, c in enumerate(chosen[:MAX_BUTTONS]):
        if bcols[n % 3].button(f"Open {c} in Clip lab", key=f"fs_open_{c}"):
            S.open_clip(c, first.paths[index[c]] or None)
