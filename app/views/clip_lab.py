"""Clip lab: one clip, both models - what each predicts, side by side, and whether they agree."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.figures import COLOR_A, COLOR_B, top5_figure
from app.state import ClipChoice, clip_error, get_clip, get_models, predict, sampled_view
from app.ui import DOWNLOAD_NOTE, error_box, no_models_box, show_figure
from hfnet_core.analysis.clips import frames_hash
from hfnet_core.analysis.inference import same_classes
from hfnet_core.data.video import to_browser_mp4

st.title("Clip lab")
st.caption("Pick a clip in the sidebar. Both models see the same frames (TSN sampling: the centre frame of "
           "each of T equal segments) and predict its action.")


@st.cache_data(show_spinner=False, max_entries=32)
def _browser_mp4(clip_hash: str, fps: float, _frames: np.ndarray) -> bytes:
    return to_browser_mp4(_frames, fps=fps)


clip = get_clip()
if clip is None:
    err = clip_error()
    if err:
        error_box(f"This clip cannot be used. {err}", "Choose another file or a shipped sample in the sidebar.")
    else:
        st.info("Choose a clip in the sidebar: a shipped sample, an upload, or a file under the data root.")
    st.stop()

model_a, model_b = get_models()
models = [m for m in (model_a, model_b) if m is not None]

reverse = st.toggle("Play the clip backwards", key="clip_lab_reverse",
                    help="Reversing time turns 'left to right' into 'right to left'. A plain TSN averages its "
                         "frames, so it sees (nearly) the same evidence either way - exactly the same when the "
                         "clip has as many frames as the model samples; an HF model can tell the difference.")
if reverse:
    frames = np.ascontiguousarray(clip.frames_all[::-1])
    clip = ClipChoice(f"{clip.name} (reversed)", frames, None, clip.source, frames_hash(frames), clip.path,
                      clip.fps, None)

left, right = st.columns([2, 3])
with left:
    try:
        st.video(_browser_mp4(clip.clip_hash, float(clip.fps), clip.frames_all), loop=True, autoplay=True,
                 muted=True)
    except Exception as e:  # noqa: BLE001 - the frames below still show the clip
        error_box(f"The clip cannot be shown as a video ({type(e).__name__}: {e}).")
with right:
    t, h, w, _ = clip.frames_all.shape
    st.markdown(f"**{clip.name}**")
    st.markdown(f"{t} frames · {w}×{h} px · {clip.fps:.3g} fps · source: {clip.source}")
    if clip.label_name:
        st.markdown(f"True label: **{clip.label_name}**")
    elif reverse:
        st.markdown("True label: unknown after reversal (for a reversed pair it is the *other* class).")
    else:
        st.markdown("True label: unknown")

if not models:
    no_models_box()
    st.stop()

# What the models actually see.
shown = []
for m in models:
    key = (m.checkpoint.config.num_segments, m.checkpoint.config.input_size)
    if key in [k for k, _ in shown]:
        continue
    shown.append((key, m))
for (segments, size), m in shown:
    idx, view = sampled_view(m.checkpoint, clip)
    who = " and ".join(x.label for x in models if (x.checkpoint.config.num_segments, x.checkpoint.config.input_size)
                       == (segments, size))
    with st.expander(f"The {segments} frames {who} sees ({size}×{size} px)", expanded=True):
        st.image(list(view), caption=[f"t={i} · frame {j}" for i, j in enumerate(idx)], width=96)

preds: dict[str, object] = {}
for m in models:
    try:
        preds[m.slot] = predict(m, clip)
    except Exception as e:  # noqa: BLE001 - one failing model must not hide the other's prediction
        error_box(f"Model {m.label} could not run on this clip ({type(e).__name__}: {e}).")

comparable = model_a is not None and model_b is not None and same_classes(model_a.checkpoint, model_b.checkpoint)
if model_a is not None and model_b is not None and not comparable:
    error_box(
        f"Models A and B have different class lists ({len(model_a.checkpoint.class_names)} vs "
        f"{len(model_b.checkpoint.class_names)} classes"
        + ("" if len(model_a.checkpoint.class_names) != len(model_b.checkpoint.class_names) else ", same count, "
           "different names or order") + "), so their predictions cannot be compared.",
        "Each model's own prediction is still shown below.")

if comparable and "A" in preds and "B" in preds:
    pa, pb = preds["A"], preds["B"]
    if pa.top1 != pb.top1:
        st.warning(f"**The models disagree.** {model_a.label} says *{pa.top1}* ({pa.top5_probs[0]:.0%}); "
                   f"{model_b.label} says *{pb.top1}* ({pb.top5_probs[0]:.0%}).", icon=":material/bolt:")
    else:
        st.success(f"Both models say *{pa.top1}* ({pa.top5_probs[0]:.0%} vs {pb.top5_probs[0]:.0%}).", icon=":material/handshake:")

cols = st.columns(2)
for col, m, color in zip(cols, (model_a, model_b), (COLOR_A, COLOR_B)):
    with col:
        if m is None:
            st.info("No model chosen for this slot.")
            continue
        p = preds.get(m.slot)
        if p is None:
            continue
        verdict = ""
        if clip.label_name and clip.label_name in m.checkpoint.class_names:
            verdict = " :green[:material/check: correct]" if p.top1 == clip.label_name else " :red[:material/close: wrong]"
        st.markdown(f"#### {m.label}{verdict}")
        hf = f"HF after {len(m.checkpoint.model.hf_blocks)} blocks" if m.has_hf else "no HF (plain TSN)"
        st.caption(f"{m.checkpoint.config.consensus.upper()} consensus · {hf}")
        fig = top5_figure(p, f"top-5 of {m.label}", clip.label_name, color)
        show_figure(fig, f"top5_{m.label}_{clip.name}", f"top5_{m.slot}")
        if clip.label_name and clip.label_name in m.checkpoint.class_names and clip.label_name not in p.top5_names:
            i = m.checkpoint.class_names.index(clip.label_name)
            st.caption(f"True class not in the top 5 (p = {float(p.probs[i]):.3f}).")
st.caption(DOWNLOAD_NOTE)
