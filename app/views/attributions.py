"""Attributions: which pixels of which frames each model's class score depends on (Captum), side by side.

Integrated Gradients, Saliency or Grad-CAM (at a layer chosen from the model's layers: backbone conv /
BN / ReLU, every Inception block output, every HF output) on the selected clip - and, when the selection
says so, on the clip played backwards - overlaid on the frames exactly as the model sees them. The
computations live in ``hfnet_core.analysis.attributions`` and run on a private copy of each model, so other
sessions using the cached model are unaffected.
"""

from __future__ import annotations

import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import selection as S
from app.analysis_figures import attribution_figure
from app.downloads import attribution_files, download_menu, show_figure
from app.loaders import predict, sampled
from app.model_facts import last_block
from app.ui import guard, need_clip, need_models, page_title
from hfnet_core.analysis import attributions as attr

METHODS = {"gradcam": "Grad-CAM", "ig": "Integrated Gradients", "saliency": "Saliency"}
TARGETS = {"top1": "each model's top-1", "true": "the true label", "class": "a class I choose"}

sel = S.current()
page_title("Attributions",
           "Where in the clip each model's score for a target class comes from. Integrated Gradients and Saliency "
           "are per pixel (|attribution| summed over colour); Grad-CAM weights a layer's activations by the mean "
           "gradient of the class score, per frame, and is upsampled to the frame. Maps are scaled jointly over "
           "the clip, so a dark frame is one the score barely depends on. They show sensitivity, not a causal "
           "explanation: a model can look at the object without using its motion.")
models = need_models(sel)
clip = need_clip(sel)
st.markdown(f"Clip: **{clip.name}**" + (f" · true label: **{clip.label_name}**" if clip.label_name else ""))

c1, c2, c3, c4 = st.columns([1.2, 1.6, 1.6, 1.2])
method = c1.selectbox("Method", list(METHODS), format_func=METHODS.get, **S.bind("method", list(METHODS)))
target_mode = c2.radio("Target class", list(TARGETS), format_func=TARGETS.get, key="at_target")
chosen_name = None
if target_mode == "class":
    chosen_name = c3.selectbox("Class", list(models[0].checkpoint.class_names), key="at_class")
steps = attr.DEFAULT_IG_STEPS
if method == "ig":
    steps = int(c3.slider("IG steps", 8, 64, attr.DEFAULT_IG_STEPS, step=8, key="at_steps",
                          help="More steps = a closer integral (smaller convergence delta), slower."))
alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="at_alpha")
reverse = c4.toggle("Backwards too", **S.bind("reverse"),
                    help="The same frames in reverse order, shown aligned to the forward frames. For the true-"
                         "label target, the backwards clip's true label is its reversed pair.")


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


def _target(m, pred, reverse: bool) -> tuple[int, str]:
    """Target class index for model ``m`` and a note on how it was chosen."""
    names = list(m.checkpoint.class_names)
    top1 = int(pred.top5_indices[0])
    truth = sel.true_label(reverse)
    if target_mode == "true":
        if truth in names:
            return names.index(truth), "true label"
        st.warning(f"{m.label}: the {'backwards ' if reverse else ''}clip has no known true label among the "
                   "model's classes; using its top-1.")
    elif target_mode == "class":
        if chosen_name in names:
            return names.index(chosen_name), "chosen class"
        st.warning(f"{m.label} has no class {chosen_name!r}; using its top-1.")
    return top1, "top-1"


per_frame: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # "A · x, forward" -> (frame indices, mean map per frame)
exported: dict[str, np.ndarray] = {}  # "A · x" / "A · x (backwards)" -> maps (T, H, W) as the model saw them
targets: dict[str, str] = {}
directions = (False, True) if reverse else (False,)
cols = st.columns(len(models))
for col, m in zip(cols, models):
    ckpt = m.checkpoint
    with col:
        st.markdown(f"#### {m.label}")
        layer = None
        if method == "gradcam":
            choices = attr.layer_choices(ckpt.model)
            default = last_block(ckpt)
            layer = st.selectbox("Grad-CAM layer", choices, index=choices.index(default),
                                 key=f"at_layer_{m.slot}",
                                 help="`inception_*`: a block's output; `hf.inception_*`: after its HF module; "
                                      "`base_model.*`: a conv / BN / ReLU inside the backbone.")
        for rev in directions:
            way = "backwards" if rev else "forward"
            with guard(f"{m.label} cannot run on this clip") as g:
                idx, view, x = sampled(ckpt, clip, rev)
                pred = predict(m, clip, rev)
            if g.failed:
                break
            target, how = _target(m, pred, rev)
            name = ckpt.class_names[target]
            prob = float(pred.probs[target])
            with st.spinner(f"{METHODS[method]} for {m.label} ({way})…"):
                with guard(f"{METHODS[method]} failed for {m.label}") as g:
                    maps, secs = _maps(m.key, clip.clip_hash + ("-rev" if rev else ""), method, target, layer,
                                       steps, ckpt.model, x)
            if g.failed:
                continue
            if rev:  # back to the forward frames' order, so the two rows line up frame by frame
                maps, view, idx = maps[::-1], view[::-1], idx[::-1]
            prefix = "Backwards (aligned to the forward frames) · " if rev else ""
            st.caption(f"{prefix}Target ({how}): **{name}** · p = {prob:.2f} · top-1: {pred.top1} "
                       f"({pred.top5_probs[0]:.2f}) · {secs:.1f} s")
            images = attr.overlay(view, maps, alpha)
            title = (f"{m.label}: {METHODS[method]}" + (f" at {layer}" if layer else "")
                     + (" · backwards" if rev else "") + f"<br><sup>for '{name}'</sup>")
            fig = attribution_figure(images, title, [f"frame {int(i)}" for i in idx])
            show_figure(fig, f"at_fig_{m.slot}{'_bwd' if rev else ''}", sel,
                        {"method": METHODS[method], "layer": layer or "-", "target": name, "direction": way})
            key = m.label + (" (backwards)" if rev else "")
            per_frame[f"{m.label}, {way}"] = (np.asarray(idx), maps.reshape(maps.shape[0], -1).mean(axis=1))
            exported[key] = np.asarray(maps[::-1] if rev else maps)
            targets[key] = name

if exported:
    download_menu(attribution_files(sel, exported, method, targets, {"steps": steps} if method == "ig" else {}),
                  "attributions", label="Download the attribution maps")

if per_frame:
    st.subheader("How much each frame matters")
    fig = go.Figure()
    for label, (frames, v) in per_frame.items():
        share = v / v.sum() if v.sum() > 0 else v
        order = np.argsort(frames)
        fig.add_trace(go.Bar(x=[f"frame {int(f)}" for f in frames[order]], y=100 * share[order], name=label))
    fig.update_layout(barmode="group", xaxis_title="sampled frame (source index)",
                      yaxis_title="share of the map (%)", height=300, margin=dict(l=10, r=10, t=30, b=10))
    show_figure(fig, "at_per_frame", sel, {"method": METHODS[method]})
    st.caption("Mean of each frame's (normalised) map, as a share of the clip total: how evenly each model's "
               "score depends on the sampled frames"
               + ("; forward and backwards bars of one model stand on the same source frame." if reverse else "."))
