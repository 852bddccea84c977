"""Attributions: which pixels of which frames each model's class score depends on (Captum), side by side.

Integrated Gradients, Saliency or Grad-CAM (at a layer chosen from the model's layers: backbone conv /
BN / ReLU, every Inception block output, every HF output) on the clip chosen in the sidebar, overlaid on
the frames exactly as the model sees them. The computations live in ``hfnet_core.analysis.attributions``
and run on a private copy of each model, so other sessions using the cached model are unaffected.
"""

from __future__ import annotations

import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app.analysis_figures import attribution_figure
from app.state import clip_error, get_clip, get_models, predict, sampled_input, sampled_view
from app.ui import download_figure, error_box, no_models_box
from hfnet_core.analysis import attributions as attr

METHODS = {"gradcam": "Grad-CAM", "ig": "Integrated Gradients", "saliency": "Saliency"}
TARGETS = {"top1": "each model's top-1", "true": "the true label", "class": "a class I choose"}

st.title("Attributions")
st.caption(
    "Where in the clip each model's score for a target class comes from. Integrated Gradients and Saliency "
    "are per pixel (|attribution| summed over colour); Grad-CAM weights a layer's activations by the mean "
    "gradient of the class score, per frame, and is upsampled to the frame. Maps are scaled jointly over "
    "the clip, so a dark frame is one the score barely depends on. They show sensitivity, not a causal "
    "explanation: a model can look at the object without using its motion."
)

a, b = get_models()
models = [m for m in (a, b) if m is not None]
if not models:
    no_models_box()
    st.stop()
clip = get_clip()
if clip is None:
    st.info("Choose a clip in the sidebar (a sample, an upload, or a clip opened from another page).")
    if clip_error():
        error_box(clip_error())
    st.stop()
st.markdown(f"Clip: **{clip.name}**" + (f" · true label: **{clip.label_name}**" if clip.label_name else ""))

c1, c2, c3 = st.columns([1.2, 1.6, 1.6])
method = c1.selectbox("Method", list(METHODS), format_func=METHODS.get, key="at_method")
target_mode = c2.radio("Target class", list(TARGETS), format_func=TARGETS.get, key="at_target")
chosen_name = None
if target_mode == "class":
    chosen_name = c3.selectbox("Class", list(models[0].checkpoint.class_names), key="at_class")
steps = attr.DEFAULT_IG_STEPS
if method == "ig":
    steps = int(c3.slider("IG steps", 8, 64, attr.DEFAULT_IG_STEPS, step=8, key="at_steps",
                          help="More steps = a closer integral (smaller convergence delta), slower."))
alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="at_alpha")


@st.cache_data(show_spinner=False, max_entries=48)
def _maps(sha: str, clip_hash: str, method: str, target: int, layer: str | None, steps: int,
          _model, _x) -> tuple[np.ndarray, float]:
    """Attribution maps (T, H, W) and the seconds they took, cached per checkpoint/clip/settings."""
    t0 = time.perf_counter()
    if method == "ig":
        maps = attr.integrated_gradients(_model, _x, target, steps=steps)
    elif method == "saliency":
        maps = attr.saliency(_model, _x, target)
    else:
        maps = attr.grad_cam(_model, _x, target, layer)
    return maps, time.perf_counter() - t0


def _target(m, pred) -> tuple[int, str]:
    """Target class index for model ``m`` and a note on how it was chosen."""
    names = list(m.checkpoint.class_names)
    top1 = int(pred.top5_indices[0])
    if target_mode == "true":
        if clip.label_name in names:
            return names.index(clip.label_name), "true label"
        st.warning(f"{m.label}: this clip has no true label among the model's classes; using its top-1.")
    elif target_mode == "class":
        if chosen_name in names:
            return names.index(chosen_name), "chosen class"
        st.warning(f"{m.label} has no class {chosen_name!r}; using its top-1.")
    return top1, "top-1"


per_frame: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # label -> (frame indices, mean map per frame)
cols = st.columns(len(models))
for col, m in zip(cols, models):
    ckpt = m.checkpoint
    with col:
        st.markdown(f"#### {m.label}")
        try:
            x = sampled_input(ckpt, clip)
            idx, view = sampled_view(ckpt, clip)
            pred = predict(m, clip)
        except Exception as e:  # noqa: BLE001 - a clip this model cannot take becomes a message
            error_box(f"{m.label} cannot run on this clip: {type(e).__name__}: {e}")
            continue
        target, how = _target(m, pred)
        layer = None
        if method == "gradcam":
            choices = attr.layer_choices(ckpt.model)
            default = ckpt.model.base_model.block_names[-1]
            layer = st.selectbox("Grad-CAM layer", choices, index=choices.index(default),
                                 key=f"at_layer_{m.slot}",
                                 help="`inception_*`: a block's output; `hf.inception_*`: after its HF module; "
                                      "`base_model.*`: a conv / BN / ReLU inside the backbone.")
        name = ckpt.class_names[target]
        prob = float(pred.probs[target])
        with st.spinner(f"{METHODS[method]} for {m.label}…"):
            try:
                maps, secs = _maps(ckpt.sha256, clip.clip_hash, method, target, layer, steps, ckpt.model, x)
            except Exception as e:  # noqa: BLE001
                error_box(f"{METHODS[method]} failed for {m.label}: {type(e).__name__}: {e}")
                continue
        st.caption(f"Target ({how}): **{name}** · p = {prob:.2f} · top-1: {pred.top1} "
                   f"({pred.top5_probs[0]:.2f}) · {secs:.1f} s")
        images = attr.overlay(view, maps, alpha)
        title = f"{m.label}: {METHODS[method]}" + (f" at {layer}" if layer else "") + f"<br><sup>for '{name}'</sup>"
        fig = attribution_figure(images, title, [f"frame {int(i)}" for i in idx])
        st.plotly_chart(fig, key=f"at_fig_{m.slot}")
        download_figure(fig, f"attributions_{m.slot}_{method}", key=f"at_{m.slot}")
        per_frame[m.label] = (np.asarray(idx), maps.reshape(maps.shape[0], -1).mean(axis=1))

if per_frame:
    st.subheader("How much each frame matters")
    fig = go.Figure()
    for label, (frames, v) in per_frame.items():
        share = v / v.sum() if v.sum() > 0 else v
        fig.add_trace(go.Bar(x=[f"t={t} · frame {int(f)}" for t, f in enumerate(frames)], y=100 * share,
                             name=label))
    fig.update_layout(barmode="group", xaxis_title="sampled frame", yaxis_title="share of the map (%)",
                      height=300, margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, key="at_per_frame")
    download_figure(fig, f"attributions_per_frame_{method}", key="at_per_frame")
    st.caption("Mean of each frame's (normalised) map, as a share of the clip total: how evenly each model's "
               "score depends on the sampled frames.")
