"""Feature space: t-SNE / UMAP / PCA of both models' pooled pre-FC features (the paper's Fig. 3b/c), linked,
at the paper's scale (174 classes, 25k clips per plot).

Projection sets are read memory-mapped and shared by every session (``projection_store.shared_set``);
a missing one is computed by a background job (``precompute.start_projection``) whose progress, ETA and
queue position a polling fragment shows while the rest of the page works. Each plot is one WebGL trace
(``app.feature_map``), and both are drawn by plotly.js in one long-lived component frame
(``app.linked_maps``): a changed figure is redrawn in place, an unchanged one is left alone, and a box or
lasso comes back as its geometry only. The frame and the selected-clips table live in one fragment, so a
selection reruns only them. A selection (box / lasso in either plot) is resolved on the full point set,
keeps those clips bright in both plots and lists them; the current clip (Clip lab's) is a star in both
maps with its nearest bundle clips.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from app import selection as S
from app.clip_map import METHOD_LABELS, map_points, neighbour_frame, palette_of, placements, projection_spec, \
    session_owner
from app.downloads import download_figure
from app.feature_map import (LEGEND_MAX_CLASSES, MISCLASS_DEFAULT_MAX, MapOptions, frame_selection, map_figure,
                             related_pairs, selected_rows_csv, selected_rows_table)
from app.linked_maps import MapSpec, linked_maps
from app.ui import error_box, need_models, page_title
from hfnet_core.analysis import precompute as pre
from hfnet_core.analysis import projection_store as store
from hfnet_core.analysis.comparison import ClassListMismatch, align, check_same_classes, improved_clip_ids, \
    most_improved
from hfnet_core.errors import HfnetError

MAX_BUTTONS = 24
MAX_TABLE_ROWS = 500  # rows of the selected-clips table sent to the browser; the CSV has all
POLL_S = 2.0
MAPS_KEY = "fs_maps"

sel = S.current()
page_title("Feature space",
           "Each point is one test clip, placed by a 2-D projection of the pooled features the classifier reads "
           "(the paper's Fig. 3b/c). Colour = class (an action and its reverse share a hue). Select with the box "
           "or lasso tool in either plot: the same clips stay bright in both, the rest dims, and they are listed "
           "below.")
models = need_models(sel)
for m in models:
    if m.bundle is None:
        st.warning(f"Model {m.label} has no eval bundle next to its checkpoint (expected "
                   f"`<checkpoint stem>.test.npz`), so it has no feature plot. Make one with `hfnet eval`.")
sources = [m for m in models if m.bundle is not None and m.bundle_path]
if not sources:
    st.stop()
try:
    spec = projection_spec()
except HfnetError as e:
    error_box(e.one_line())
    st.stop()

# --- which clips ------------------------------------------------------------------------------------
linked, classes_ok, pair_note = False, False, ""
ids_by_slot: dict[str, list[str] | None] = {m.slot: None for m in sources}
if len(sources) == 2:
    ma, mb = sources
    try:
        check_same_classes(ma.bundle, mb.bundle, ma.label, mb.label)
        classes_ok = True
    except ClassListMismatch as e:
        st.warning(f"{e} The plots are drawn, but the most-improved classes are off.")
    al = align(ma.bundle, mb.bundle)
    if al.n_matched:
        linked = True
        ids_by_slot = {ma.slot: al.clip_ids, mb.slot: al.clip_ids}
        pair_note = al.describe() + "."
    else:
        error_box("The two eval bundles share no clip id, so their plots cannot be linked.",
                  "Evaluate both models on the same split (`hfnet eval --split test`).")
class_names = list(sources[0].bundle.class_names)
n_classes = len(class_names)

c1, c2, c3 = st.columns([1.4, 2, 1.6])
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
                            help="As in the paper: run the projection on these classes alone (computed once in "
                                 "the background, then stored). Off: the same points, cut out of the whole-set "
                                 "projection.")
    classes, sub_ids = improved_clip_ids(sources[0].bundle, sources[1].bundle, top_k)
    if sub_ids:
        ids_by_slot = {m.slot: sub_ids for m in sources}
        st.caption(f"{len(classes)} most-improved classes ({len(sub_ids)} clips): "
                   + ", ".join(class_names[c] for c in classes))
        proj_ids = sub_ids if reproject else None
    else:
        st.info(f"{sources[0].label} corrects no clip that {sources[1].label} gets wrong: nothing to restrict to.")
if pair_note:
    st.caption(pair_note)


# --- projection sets: shared, or computed in the background -------------------------------------------
def _want() -> dict[str, object]:
    """slot -> the shared set when it has ``method``, else the status of the job computing it."""
    out: dict[str, object] = {}
    for m in sources:
        ps = store.shared_set(m.bundle_path, spec, proj_ids)
        if ps is not None and ps.has(method):
            out[m.slot] = ps
            continue
        status = pre.start_projection(m.bundle_path, spec, proj_ids, owner=session_owner())
        ps = store.shared_set(m.bundle_path, spec, proj_ids) if status.state == "done" else None
        out[m.slot] = ps if ps is not None and ps.has(method) else status
    return out


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating the time left"
    return f"about {seconds:.0f} s left" if seconds < 90 else f"about {seconds / 60:.1f} min left"


def _job_line(m, status) -> str:
    where = f", queue position {status.queue_position}" if status.state == "queued" and status.queue_position else ""
    what = status.message or ("waiting for a worker" if status.state == "queued" else "starting")
    return f"{m.label}: projections of {len(m.bundle.clip_ids):,} clips, {what} ({_eta(status.eta_s)}{where})"


state = _want()
sets = {slot: v for slot, v in state.items() if isinstance(v, store.ProjectionSet)}
pending = [m for m in sources if m.slot not in sets]

if pending:
    @st.fragment(run_every=POLL_S)
    def _progress() -> None:
        """Shows the jobs' progress; reruns the whole page once none is queued or running any more."""
        statuses = {m.slot: pre.projection_job_status(m.bundle_path, spec, proj_ids) for m in pending}
        for m in pending:
            status = statuses[m.slot]
            if status.state == "failed":
                error_box(f"The projections of {m.label} failed: {status.error or 'unknown error'}",
                          "Try again, or run `hfnet project` on the bundle.")
                if st.button(f"Try the projections of {m.label} again", key=f"fs_retry_{m.slot}"):
                    pre.start_projection(m.bundle_path, spec, proj_ids, owner=session_owner(), retry=True)
                    st.rerun(scope="app")
            elif status.active:
                st.progress(min(1.0, max(0.0, float(status.fraction))), text=_job_line(m, status))
        if not any(s.active or s.state == "failed" for s in statuses.values()):
            st.rerun(scope="app")

    st.info(f"Computing the {METHOD_LABELS[method]} map (and the other projections) in the background, once; "
            "then they are stored beside the bundle. The rest of the page works meanwhile.",
            icon=":material/hourglass_top:")
    _progress()

ready = [m for m in sources if m.slot in sets]
if linked and len(ready) == 2:
    shared = map_points(ready, sets, method, ids_by_slot[ready[0].slot], spec, proj_ids)
    points_keyed = {m.slot: shared for m in ready}
else:
    points_keyed = {m.slot: map_points([m], sets, method, ids_by_slot[m.slot], spec, proj_ids) for m in ready}
points = {slot: pts for slot, (_, pts) in points_keyed.items()}
n_points = max([len(p) for p in points.values()], default=max(len(m.bundle.clip_ids) for m in sources))

# --- classes, marks, sampling -----------------------------------------------------------------------
pairs = tuple(related_pairs(sources[0].bundle))
palette = palette_of(tuple(class_names), pairs)


def _most_improved_classes() -> None:
    rows = most_improved(sources[0].bundle, sources[1].bundle, 10)
    st.session_state["fs_classes"] = [r["class_index"] for r in rows]


p1, p2, p3 = st.columns([3, 1.2, 1.2], vertical_alignment="bottom")
picked = p1.multiselect(
    "Classes to show", list(range(n_classes)), key="fs_classes", format_func=lambda c: class_names[c],
    placeholder=f"All {n_classes} classes - type to search",
    help="Picked classes stay bright, the others dim (or, with 'only these', disappear). "
         + (f"With more than {LEGEND_MAX_CLASSES} classes the plots have no legend: pick classes here instead."
            if n_classes > LEGEND_MAX_CLASSES else ""))
p2.button("10 most improved classes", key="fs_top10", on_click=_most_improved_classes, disabled=not can_restrict,
          help="The classes A corrects most often relative to B (the paper's Fig. 3b/c).", width="stretch")
only = p3.toggle("Only these", key="fs_only", disabled=not picked,
                 help="Draw only the picked classes (else they are highlighted and the rest dimmed).")
q1, q2, q3 = st.columns([1.4, 1.4, 2], vertical_alignment="bottom")
show_wrong = q1.toggle("Mark misclassified clips", key="fs_wrong", value=n_points <= MISCLASS_DEFAULT_MAX,
                       help="A thin ring around every clip that plot's model gets wrong (off by default above "
                            f"{MISCLASS_DEFAULT_MAX:,} points).")
sample = q2.toggle("Thin out the points", key="fs_sample", value=False,
                   help="Draw at most N points per plot, stratified by class (every class keeps its share and "
                        "at least one point). Selections still find every clip inside the box or lasso.")
max_points = int(q3.number_input("At most N points per plot", 500, 100_000, 5000, step=500, key="fs_max_points",
                                 disabled=not sample)) if sample else 0
show_clip = sel.clip is not None and st.toggle(
    f"Show the current clip ({sel.clip.name}) in the maps", key="fs_show_clip", value=True,
    help="Clip lab's clip as a star in both maps: a bundle clip at its own place, any other clip (an upload) "
         "placed from its pooled features; with its nearest clips of the bundle below.")

where: dict[str, object] = {}
if show_clip and ready:
    where, problems = placements(ready, sets, sel.clip, spec, proj_ids)
    for p in problems:
        st.caption(f"The current clip cannot be placed: {p}")


# --- the plots and the selected clips (one fragment: a selection reruns only this) -------------------
only_classes = tuple(int(c) for c in picked) if only and picked else ()


def _remember() -> None:
    """A box or lasso drawn in the maps' frame: the clips inside it, found on the full point set."""
    ids = frame_selection(st.session_state.get(MAPS_KEY), points, only_classes)
    if ids is not None:
        st.session_state["fs_selected"] = ids


def _clear_selection() -> None:
    """Empties the selection; a new revision, so no chart comes back with the box plotly drew in it."""
    st.session_state.update(fs_selected=[], fs_revision=st.session_state.get("fs_revision", 0) + 1)


@st.cache_resource(show_spinner=False, max_entries=24)
def _figure(points_key: str, slot: str, title: str, options: MapOptions, focus_key: str,
            marker: tuple[float, float] | None, marker_name: str, _pts, _palette, _focus):
    """The figure of one plot, built once per process for (points, options, focus, marker): shared and
    never modified, so an unchanged plot is the same message and the browser gets only its hash."""
    return map_figure(_pts, slot, title, _palette, options, _focus, marker, marker_name)


@st.fragment
def _plots_and_selection() -> None:
    if not ready:
        return
    selected = [c for c in st.session_state.get("fs_selected", [])]
    revision = int(st.session_state.get("fs_revision", 0))
    specs, figures = [], {}
    for m in ready:
        pts = points[m.slot]
        chosen = set(selected)
        is_sel = np.fromiter((c in chosen for c in pts.clip_ids), dtype=bool, count=len(pts)) if chosen else None
        focus = is_sel if is_sel is not None and is_sel.any() else None
        if focus is None and picked and not only_classes:
            focus = np.isin(np.asarray(pts.labels), picked)
        opts = MapOptions(colour_by, bool(show_wrong), max_points, only_classes, revision=revision)
        pl = where.get(m.slot)
        marker = tuple(float(v) for v in pl.coords[method][0]) if pl is not None and method in pl.coords else None
        if marker is not None and not all(np.isfinite(marker)):
            marker = None  # a placement that failed numerically: no star (NaN is not JSON)
        title = f"{m.label}: {METHOD_LABELS[method]} of {len(pts)} clips"
        fkey = "" if focus is None else store.subset_digest([c for c, f in zip(pts.clip_ids, focus) if f]) or ""
        pkey = points_keyed[m.slot][0]
        key = (pkey, m.slot, title, opts, fkey, marker, sel.clip.name if marker else "")  # all the figure is of
        figures[m.slot] = _figure(*key, pts, palette, focus)
        specs.append(MapSpec(m.slot, hashlib.sha256(repr(key).encode()).hexdigest()[:20], figures[m.slot]))
    try:
        linked_maps(specs, key=MAPS_KEY, on_change=_remember, config={"scrollZoom": True})
    except OSError as e:  # the frame's folder could not be made (linked_maps says where it tried)
        error_box(f"The maps cannot be drawn: {e}", "Set HFNET_CACHE_DIR to a folder this user can write.")
    for col, m in zip(st.columns(len(ready)), ready):
        with col:
            download_figure(figures[m.slot], f"fs_{m.slot}", sel,
                            {"projection": METHOD_LABELS[method], "colour by": colour_by})
            sil = sets[m.slot].silhouette
            if sil:
                how = "exact" if sil.get("exact") else \
                    f"on a class-stratified sample of {sil['n']:,} of {sil['of']:,} clips"
                by = str(sets[m.slot].info.get("grouped_by") or "class")  # a multi-task bundle: its verbs,
                # whatever task the sidebar shows (a projection's grouping is fixed when it is computed)
                st.caption(f"Class separation of the pooled features (silhouette by true {by} over the "
                           f"{sets[m.slot].n:,} projected clips, full feature space, {how}): **{sil['value']:.3f}**; "
                           f"higher = tighter, better separated {'classes' if by == 'class' else by + 's'}.")

    first = points[ready[0].slot]
    rows = selected_rows_table(first, selected)
    st.subheader(f"Selected clips ({len(rows):,})")
    if not rows:
        st.caption("Nothing selected. Use the box or lasso tool of either plot (double-click clears).")
        return
    st.dataframe(pd.DataFrame(rows[:MAX_TABLE_ROWS]), hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    c1.button("Clear the selection", key="fs_clear", on_click=_clear_selection)
    c2.download_button(f"Download all {len(rows):,} as CSV", data=lambda: selected_rows_csv(rows),
                       file_name="selected_clips.csv", mime="text/csv", key="fs_csv", on_click="ignore",
                       icon=":material/download:")
    if len(rows) > MAX_TABLE_ROWS:
        st.caption(f"The table shows the first {MAX_TABLE_ROWS:,} of the {len(rows):,} selected clips (a bigger "
                   "table is slow to send and no easier to read); the CSV holds them all.")
    if len(rows) > MAX_BUTTONS:
        st.caption(f"Buttons for the first {MAX_BUTTONS} clips; narrow the selection to open the others.")
    index = {c: i for i, c in enumerate(first.clip_ids)}
    bcols = st.columns(3)
    for n, r in enumerate(rows[:MAX_BUTTONS]):
        c = r["clip id"]
        if bcols[n % 3].button(f"Open {c} in Clip lab", key=f"fs_open_{c}"):
            S.open_clip(c, first.paths[index[c]] or None)


_plots_and_selection()

# --- the current clip's neighbours ------------------------------------------------------------------
if where:
    st.subheader(f"Nearest clips to {sel.clip.name}")
    ncols = st.columns(len(where))
    for col, m in zip(ncols, [m for m in ready if m.slot in where]):
        with col:
            st.caption(f"In {m.label}'s feature space (PCA of its pooled features):")
            st.dataframe(neighbour_frame(where[m.slot], m, [o for o in sources if o.slot != m.slot]),
                         hide_index=True, width="stretch")
