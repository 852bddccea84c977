"""Class comparison: where model A beats model B, class by class (the paper's Fig. 3a), down to the clips.

Reads both eval bundles, matches clips by id and draws, at any number of classes (Something's 174):
the most-improved classes with a top-N slider and a class search, the clips behind a chosen bar, what A
fixes and breaks over *all* clips, the most confused class pairs of each model and the pairs that changed
most, per-class accuracy, and one full-width confusion heatmap that can be clustered (confused classes
side by side), cut to chosen classes and zoomed. Every caption names the loaded models.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import streamlit as st

from app import selection as S
from app.analysis_figures import ALL_LABELS_UP_TO, accuracy_figure, confusion_figure, most_improved_figure
from app.downloads import download_figure
from app.ui import error_box, need_models, page_title
from hfnet_core.analysis.comparison import (
    ClassListMismatch,
    align,
    check_same_classes,
    cluster_order,
    confused_pairs,
    confusion,
    confusion_view,
    find_classes,
    fixes_breaks,
    flipped_clips,
    most_improved,
    per_class_accuracy,
    same_model_warning,
)
from hfnet_core.eval_bundle import EvalBundle

MAX_BUTTONS = 24
ORDERS = {"cluster": "clustered (confused classes side by side)", "index": "class index",
          "accuracy": "worst recognised first"}


def _clips(n: int) -> str:
    return f"{n} clip" + ("" if n == 1 else "s")


sel = S.current()
a, b = sel.a, sel.b
page_title("Class comparison",
           "Which classes model A gets right where model B does not - the paper's Fig. 3a"
           + (f", here A = {a.name} ({a.kind}) and B = {b.name} ({b.kind})" if a and b else "")
           + ". Clips are matched by id; a bar's label reads *true label (A) / what B predicts instead* "
           "(B's most frequent wrong answer for those clips).")
need_models(sel)
missing = [(slot, m) for slot, m in (("A", a), ("B", b)) if m is None or m.bundle is None]
if missing:
    for slot, m in missing:
        if m is None:
            st.warning(f"Choose a model {slot} in the sidebar: this page compares two models.")
        else:
            st.warning(f"Model {m.label} has no eval bundle next to its checkpoint (expected "
                       "`<checkpoint stem>.test.npz`). Make one with `hfnet eval`.")
    st.stop()
ba, bb = a.bundle, b.bundle


def _stamp(path: str | None) -> tuple[int, int]:
    """The bundle file's (mtime, size): a rewritten file is matched again."""
    try:
        info = os.stat(path) if path else None
    except OSError:
        info = None
    return (info.st_mtime_ns, info.st_size) if info else (0, 0)


def _lean(bundle: EvalBundle, rows: np.ndarray, labels: np.ndarray) -> EvalBundle:
    """The matched rows of a bundle without its features (this page never reads them; at 25k clips x
    1024 dims a copy would cost 100 MB per run)."""
    return EvalBundle([bundle.clip_ids[i] for i in rows], [bundle.paths[i] for i in rows], labels,
                      bundle.logits[rows], np.zeros((len(rows), 0), np.float32), list(bundle.class_names),
                      dict(bundle.metadata))


@st.cache_resource(show_spinner="Matching the two eval bundles…", max_entries=4)
def _matched(key: tuple, _ba: EvalBundle, _bb: EvalBundle) -> dict:
    """Everything about the pair that no widget changes, once per pair of bundle files (shared read-only
    by every session): the alignment, the matched clips, both confusion matrices, fixes / breaks, and
    whether A and B are one model. A clip whose label differs between the bundles counts for neither."""
    al = align(_ba, _bb)
    sa, sb = _lean(_ba, al.rows_a, al.labels), _lean(_bb, al.rows_b, al.labels)
    return {"al": al, "sa": sa, "sb": sb, "ca": confusion(sa), "cb": confusion(sb),
            "fb": fixes_breaks(_ba, _bb) if al.n_matched else None,
            "same": same_model_warning(_ba, _bb, key[0], key[3]) if al.n_matched else None}


@st.cache_data(show_spinner=False, max_entries=32)
def _improved(key: tuple, query: str, _sa: EvalBundle, _sb: EvalBundle) -> list[dict]:
    return most_improved(_sa, _sb, top_k=None, search=query or None)


@st.cache_data(show_spinner=False, max_entries=64)
def _flipped(key: tuple, class_index: int, _sa: EvalBundle, _sb: EvalBundle) -> list[dict]:
    return flipped_clips(_sa, _sb, class_index)


try:
    check_same_classes(ba, bb, a.label, b.label)
except ClassListMismatch as e:
    multi = [m.label for m in (a, b) if m.task]
    error_box(str(e), (f"{' and '.join(multi)} shows its {a.task or b.task}s: a multi-task model compares with a "
                       "single-task one through the task they share (the sidebar's *Multi-task models show*; at "
                       "SynthSomething the verbs are the motions). " if multi and len(multi) == 1 else "")
              + "Pick two models trained on the same dataset in the sidebar.")
    st.stop()
key = (a.label, a.view_key, _stamp(a.bundle_path), b.label, b.view_key, _stamp(b.bundle_path))
match = _matched(key, ba, bb)
al, sa, sb = match["al"], match["sa"], match["sb"]  # sa / sb: the matched clips only, in the same order
if al.n_matched == 0:
    error_box("The two eval bundles share no clip id, so no clip can be compared.",
              "Evaluate both models on the same split (`hfnet eval --split test`).")
    st.stop()
if match["same"]:
    st.warning(match["same"], icon=":material/content_copy:")
    st.stop()
st.caption(al.describe().replace(" in A,", f" in {a.label},").replace(" in B)", f" in {b.label})") + ".")
names = list(ba.class_names)
k = len(names)

# --- what A fixes and breaks, over every clip ------------------------------------------------------
fb = match["fb"]
m1, m2, m3 = st.columns(3)
m1.metric(f"Clips {a.label} fixes", f"{fb.fixed}", help=f"{a.label} right, {b.label} wrong, over all {fb.n} "
          "matched clips with a label.")
m2.metric(f"Clips {a.label} breaks", f"{fb.broken}", help=f"{b.label} right, {a.label} wrong, over all {fb.n} "
          "matched clips with a label - every class counts, also those where A fixes nothing.")
m3.metric(f"Net gain of {a.label} over {b.label}", f"{fb.net:+d}",
          help=f"Both right: {fb.both_right}, both wrong: {fb.both_wrong}.")

# --- Fig. 3a ----------------------------------------------------------------------------------------
st.subheader("Most improved classes")
c1, c2 = st.columns([1, 2])
top_k = int(c1.slider("Classes shown", 1, min(50, max(1, k)), min(10, k), key="cc_top_k"))
query = c2.text_input("Find classes", key="cc_search", placeholder="words of a class name, e.g. 'left right'",
                      help="Classes whose name contains every word (any order, any case). The ranking, the "
                           "tables and the accuracy chart below keep only those classes.").strip()
found = find_classes(names, query) if query else None
if found is not None:
    if found:
        st.caption(f"{len(found)} of {k} classes match '{query}'.")
    else:
        st.warning(f"No class name contains every word of '{query}'.")
all_improved = _improved(key, query, sa, sb)
rows = all_improved[:top_k]

if not rows:
    st.info(f"{a.label} gets no clip right that {b.label} gets wrong"
            + (f" among the classes matching '{query}'." if query else "."))
    chosen = None
else:
    options = [r["class_index"] for r in all_improved]
    if st.session_state.get("cc_class") not in options:
        st.session_state["cc_class"] = options[0]

    def _on_bar_click() -> None:
        points = (st.session_state.get("cc_bars") or {}).get("selection", {}).get("points", [])
        for p in points:
            cd = p.get("customdata")
            if isinstance(cd, (list, tuple)) and cd and int(cd[0]) in options:
                st.session_state["cc_class"] = int(cd[0])

    fig = most_improved_figure(rows, a.label, b.label, highlight=st.session_state["cc_class"])
    st.plotly_chart(fig, key="cc_bars", on_select=_on_bar_click, selection_mode="points")
    download_figure(fig, "cc_bars", sel, {"top": top_k, **({"search": query} if query else {})})
    if len(all_improved) > top_k:
        st.caption(f"The top {top_k} of {len(all_improved)} classes where {a.label} fixes at least one clip.")

    # --- drill-down ---------------------------------------------------------------------------------
    by_index = {r["class_index"]: r for r in all_improved}
    chosen = st.selectbox(
        "Clips behind a bar (click a bar, or choose here)", options, key="cc_class",
        format_func=lambda c: f"{by_index[c]['label']} ({_clips(by_index[c]['n_improved'])})",
    )
    flips = _flipped(key, int(chosen), sa, sb)
    st.markdown(f"**{_clips(len(flips))} of '{names[chosen]}'** that {a.label} gets right and {b.label} gets "
                "wrong, most confidently wrong first:")
    st.dataframe(pd.DataFrame([{
        "clip id": f["clip_id"],
        f"{b.label} predicts": f["pred_b_name"],
        f"{b.label} confidence": round(f["conf_b"], 3),
        f"{b.label} p(true)": round(f["prob_b_true"], 3),
        f"{a.label} p(true)": round(f["conf_a"], 3),
    } for f in flips]), hide_index=True, width="stretch")
    if len(flips) > MAX_BUTTONS:
        st.caption(f"Buttons for the first {MAX_BUTTONS} clips.")
    bcols = st.columns(3)
    for n, f in enumerate(flips[:MAX_BUTTONS]):
        if bcols[n % 3].button(f"Open {f['clip_id']} in Clip lab", key=f"cc_open_{f['clip_id']}"):
            S.open_clip(f["clip_id"], f["path"] or None)

# --- most confused pairs ----------------------------------------------------------------------------
st.subheader("Most confused class pairs")
n_pairs = int(st.slider("Pairs listed", 5, 50, 15, step=5, key="cc_pairs_n"))
st.caption("A pair is (true class → what the model predicts instead), counted on the matched clips"
           + (f", among pairs that involve a class matching '{query}'." if query else "."))


def _pairs_table(pairs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"true class": p["true_name"], "predicted as": p["predicted_name"], "clips": p["count"],
                          "share of the class": f"{100 * p['share']:.1f} %"} for p in pairs],
                        columns=["true class", "predicted as", "clips", "share of the class"])


tab_a, tab_b, tab_changed = st.tabs([f"{a.label} ({a.kind})", f"{b.label} ({b.kind})",
                                     f"Changed most between {a.label} and {b.label}"])
for tab, bundle in ((tab_a, sa), (tab_b, sb)):
    with tab:
        st.dataframe(_pairs_table(confused_pairs(bundle, n_pairs, found)), hide_index=True, width="stretch")
change = (match["ca"] - match["cb"]).astype(np.int64)  # every (true, predicted) pair, not only the top ones
np.fill_diagonal(change, 0)
if found is not None:
    involved = np.zeros(k, bool)
    involved[found] = True
    change = np.where(involved[:, None] | involved[None, :], change, 0)
t_idx, p_idx = np.nonzero(change)
top = np.lexsort((p_idx, t_idx, -np.abs(change[t_idx, p_idx])))[:n_pairs]
ca, cb = match["ca"], match["cb"]
with tab_changed:
    st.caption(f"Negative change: {a.label} confuses the pair less than {b.label}.")
    st.dataframe(pd.DataFrame([{"true class": names[t_idx[i]], "predicted as": names[p_idx[i]],
                                a.label: int(ca[t_idx[i], p_idx[i]]), b.label: int(cb[t_idx[i], p_idx[i]]),
                                "change": int(change[t_idx[i], p_idx[i]]), "clips of the class": int(ca[t_idx[i]].sum())}
                               for i in top],
                              columns=["true class", "predicted as", a.label, b.label, "change", "clips of the class"]),
                 hide_index=True, width="stretch")

# --- per-class accuracy -----------------------------------------------------------------------------
st.subheader("Per-class accuracy")
sort_gain = st.checkbox(f"Sort by {a.label}'s gain over {b.label}", key="cc_sort_gain", value=False)
acc_a, acc_b = per_class_accuracy(sa), per_class_accuracy(sb)
counts = np.bincount(al.labels[al.labels >= 0], minlength=k)
st.caption(f"On the {al.n_matched} matched clips: {a.label} {100 * sa.accuracy:.1f} %, "
           f"{b.label} {100 * sb.accuracy:.1f} %" + (f"; showing the classes matching '{query}'." if found else "."))
fig = accuracy_figure(names, acc_a, acc_b, a.label, b.label, counts, sort_by_gain=sort_gain,
                      classes=found or None)
st.plotly_chart(fig, key="cc_accuracy")
download_figure(fig, "cc_accuracy", sel)

# --- confusion heatmap --------------------------------------------------------------------------------
st.subheader("Confusion matrix")


@st.cache_data(show_spinner=False, max_entries=8)
def _cluster(key: tuple[str, ...], _counts: np.ndarray) -> np.ndarray:
    """One class order for both models (clustered on A's and B's confusions together), so switching
    the model keeps every class where it was."""
    return cluster_order(_counts)


h1, h2, h3 = st.columns([1.2, 1.4, 1.4])
shown = h1.radio("Model", [a.slot, b.slot], format_func=lambda s: (a if s == a.slot else b).label,
                 key="cc_heat_model", horizontal=True)
order_name = h2.selectbox("Order", list(ORDERS), format_func=ORDERS.get, key="cc_order")
normalize = h3.checkbox("Row shares (of each true class)", key="cc_normalize", value=True)
hide_diag = h3.checkbox("Hide the diagonal (correct clips)", key="cc_hide_diag", value=False,
                        help="The confusions then get the whole colour scale.")
picked = st.multiselect("Only these classes (empty: all)", list(range(k)), format_func=lambda c: names[c],
                        key="cc_heat_classes", placeholder="Type to find classes…",
                        help="Rows and columns of the chosen classes, plus an 'other classes' column for the "
                             "rest of each row.")
if found:
    st.button(f"Show the {len(found)} classes matching '{query}'", key="cc_heat_from_search",
              on_click=lambda: st.session_state.update(cc_heat_classes=list(found)))
m = a if shown == a.slot else b
bundle = sa if m is a else sb
if order_name == "cluster":
    order = _cluster((a.key, b.key, a.view_key, b.view_key, str(al.n_matched)),
                     match["ca"] + match["cb"])
else:
    order = order_name
counts_view = confusion_view(bundle, normalize=False, order=order, classes=picked or None)
view = confusion_view(bundle, normalize=True, order=order, classes=picked or None) if normalize else counts_view
n_shown = len(view.rows)
fig = confusion_figure(view, counts_view.matrix, f"Confusion of {m.label} ({m.kind}), {n_shown} of {k} classes, "
                       f"{ORDERS[order_name]}", hide_diagonal=hide_diag)
st.plotly_chart(fig, key=f"cc_confusion_{m.slot}")
download_figure(fig, f"cc_confusion_{m.slot}", sel, {"normalised": normalize, "order": order_name,
                                                     "classes": n_shown})
st.caption(("Every class is named on the axes. " if n_shown <= ALL_LABELS_UP_TO else
            f"{n_shown} classes: the axes name some of them - drag a box to zoom in (double-click to zoom "
            f"out) and every label in view appears; a cell's hover names both classes. ")
           + f"Rows: true class; columns: what {m.label} predicts. The order is the same for {a.label} and "
             f"{b.label}, so switching the model keeps every class in place.")
