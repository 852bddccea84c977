"""How HF works: Eq. 1 on five 1-D "frames" of a moving bump, with the gates under your control."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.figures import teaching_figure, teaching_lines_figure
from app import selection as S
from app.downloads import show_figure
from app.ui import page_title
from hfnet_core.analysis.teaching import consensus, frame_sums, hf_eq1, moving_bump

sel = S.current()
page_title("How HF works")
st.markdown(
    "A CNN for video usually looks at each frame on its own and only averages the frames at the very end "
    "(TSN). **HF** lets neighbouring frames talk after every block. For each position, a learned gate "
    "**G** (between −1 and +1) moves a share of the *next* frame's features into the current frame:"
)
st.latex(r"F_t \;=\; F'_t \;+\; G_t \odot F'_{t+1} \;-\; G_{t-1} \odot F'_t \qquad\text{(paper Eq. 1)}")
st.markdown(
    "- **G > 0 - averaging**: frame *t* is blended with frame *t+1*: features get smoother in time.\n"
    "- **G < 0 - differencing**: frame *t* subtracts frame *t+1*: what changed stands out (like motion).\n"
    "- What frame *t* receives from *t+1*, frame *t+1* gives up: the **sum over frames never changes**."
)
st.caption("Below: 5 frames of a 1-D feature map (12 positions) in which a bump moves 2 positions per frame.")

c1, c2 = st.columns([1, 2])
with c1:
    speed = st.slider("Bump speed (positions per frame)", -2.0, 2.0, 2.0, 0.5, key="teach_speed")
    per_pair = st.toggle("One gate per frame pair", False, key="teach_per_pair")
    if per_pair:
        gates = np.array([st.slider(f"G between frame {t} and {t + 1}", -1.0, 1.0, 0.5, 0.05, key=f"teach_g{t}")
                          for t in range(4)])
    else:
        g = st.slider("Gate G for every pair", -1.0, 1.0, 0.5, 0.05, key="teach_g")
        gates = np.full(4, g)
before = moving_bump(5, 12, start=2.0 if speed >= 0 else 10.0, speed=speed)
after = hf_eq1(before, gates)
sum_before, sum_after = frame_sums(before), frame_sums(after)
drift = float(np.abs(sum_before - sum_after).max())
with c2:
    m1, m2, m3 = st.columns(3)
    m1.metric("Σ over frames and positions, before", f"{sum_before.sum():.4f}")
    m2.metric("… after HF", f"{sum_after.sum():.4f}")
    m3.metric("largest change of Σₜ at any position", f"{drift:.1e}")
    mean_g = float(np.mean(gates))
    mode = ("averaging" if mean_g > 0.05 else "differencing" if mean_g < -0.05 else "hardly any exchange")
    st.markdown(f"With these gates HF mostly does **{mode}**. "
                + ("Each frame now also holds part of the next bump position: the bump is smeared forward in "
                   "time." if mean_g > 0.05 else
                   "Each frame now holds its bump minus the next frame's: positive where the bump *was*, "
                   "negative where it *goes*, a signed motion cue." if mean_g < -0.05 else
                   "The frames pass through unchanged."))

show_figure(teaching_figure(before, after, gates), "teach_heat", sel, {"bump speed": speed, "gates": np.round(gates, 2).tolist()})
show_figure(teaching_lines_figure(before, after), "teach_lines", sel, {"bump speed": speed, "gates": np.round(gates, 2).tolist()})

st.subheader("Why HF after the last block changes nothing for TSN")
st.markdown(
    "TSN classifies a clip by averaging its frames' scores. Global pooling, the classifier and that average "
    "are all **linear**, and HF keeps the sum over frames fixed - so the frame average the classifier sees is "
    "exactly the same with or without an HF module after the *last* block. HF only changes predictions where "
    "non-linear layers (the next block's convolutions and ReLUs) come after it, or with a non-linear consensus "
    "like TRN. We measured this on the real model: a maximum logit difference of 4e-17."
)
avg_before, avg_after = consensus(before), consensus(after)
st.code("TSN average over frames, before HF: " + np.array2string(avg_before, precision=3, max_line_width=200)
        + "\nTSN average over frames, after HF:  " + np.array2string(avg_after, precision=3, max_line_width=200)
        + f"\nlargest difference: {float(np.abs(avg_before - avg_after).max()):.1e}", language=None)
