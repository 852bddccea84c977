"""Class comparison: where model A beats model B, class by class (the paper's Fig. 3a), down to the clips.

Reads both eval bundles, matches clips by id and draws: the most-improved classes ("true label (A) /
predicted label (B)"), the clips behind a chosen bar, per-class accuracy and both confusion matrices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.analysis_figures import accuracy_figure, confusion_figure, most_improved_figure
from app import selection as S
from app.downloads import download_figure
from app.ui import error_box, need_models, page_title
from hfnet_core.analysis.comparison import (
    ClassListMismatch,
    align,
    check_same_classes,
    confusion,
    flipped_clips,
    most_improved,
    per_class_accuracy,
    take,
)

MAX_BUTTONS = 24


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
try:
    check_same_classes(ba, bb, a.label, b.label)
except ClassListMismatch as e:
    error_box(str(e), "Pick two models trained on the same dataset in the sidebar.")
    st.stop()
al = align(ba, bb)
if al.n_matched == 0:
    error_box("The two eval bundles share no clip id, so no clip can be compared.",
              "Evaluate both models on the same split (`hfnet eval --split test`).")
    st.stop()
st.caption(al.describe() + ".")
sa, sb = take(ba, al.rows_a), take(bb, al.rows_b)  # the matched clips only, in the same order
names = list(ba.class_names)

# --- Fig. 3a ----------------------------------------------------------------------------------------
st.subheader("Most improved classes")
c1, c2 = st.columns([1, 3])
top_k = int(c1.slider("Classes shown", 3, min(50, max(3, len(names))), min(10, len(names)), key="cc_top_k"))
all_improved = most_improved(ba, bb, top_k=len(names))
rows = all_improved[:top_k]
n_fixed = sum(r["n_improved"] for r in all_improved)
n_broken = sum(r["n_worsened"] for r in all_improved)
c2.metric(f"Clips {a.label} fixes / breaks (relative to {b.label})", f"{n_fixed} / {n_broken}",
          help="Fixes: A right, B wrong. Breaks: B right, A wrong. Over all matched clips.")

if not rows:
    st.info(f"{a.label} gets no clip right that {b.label} gets wrong.")
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
    download_figure(fig, "cc_bars", sel)

    # --- drill-down ---------------------------------------------------------------------------------
    by_index = {r["class_index"]: r for r in all_improved}
    chosen = st.selectbox(
        "Clips behind a bar (click a bar, or choose here)", options, key="cc_class",
        format_func=lambda c: f"{by_index[c]['label']} ({_clips(by_index[c]['n_improved'])})",
    )
    flips = flipped_clips(ba, bb, chosen)
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

# --- per-class accuracy -----------------------------------------------------------------------------
st.subheader("Per-class accuracy")
sort_gain = st.checkbox("Sort by A's gain over B", key="cc_sort_gain", value=False)
acc_a, acc_b = per_class_accuracy(sa), per_class_accuracy(sb)
counts = np.bincount(al.labels[al.labels >= 0], minlength=len(names))
st.caption(f"On the {al.n_matched} matched clips: {a.label} {100 * sa.accuracy:.1f} %, "
           f"{b.label} {100 * sb.accuracy:.1f} %.")
fig = accuracy_figure(names, acc_a, acc_b, a.label, b.label, counts, sort_by_gain=sort_gain)
st.plotly_chart(fig, key="cc_accuracy")
download_figure(fig, "cc_accuracy", sel)

# --- confusion matrices -----------------------------------------------------------------------------
st.subheader("Confusion matrices")
normalize = st.checkbox("Normalise rows (share of each true class)", key="cc_normalize", value=True)
cols = st.columns(2)
for col, m, bundle in zip(cols, (a, b), (sa, sb)):
    with col:
        fig = confusion_figure(confusion(bundle, normalize), names, f"{m.label}", normalize)
        st.plotly_chart(fig, key=f"cc_confusion_{m.slot}")
        download_figure(fig, f"cc_confusion_{m.slot}", sel, {"normalised": normalize})
