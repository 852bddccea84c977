"""Gate maps: where each HF layer averages adjacent frames (G > 0) and where it differences them (G < 0)."""

from __future__ import annotations

import streamlit as st

from app.figures import gate_animation_figure, gate_grid_figure, gate_matrix_figure, gate_summary_figure
from app.state import clip_error, get_clip, get_models, predict, sampled_view
from app.ui import DOWNLOAD_NOTE, error_box, no_models_box, show_figure
from hfnet_core.analysis.gates import short_block_name, summarise_gates

st.title("Gate maps")
st.markdown(
    "After every HF layer, each position of frame *t* takes **G × (frame t+1)** from its successor and hands "
    "the same amount back (paper Eq. 1): **blue, G > 0 = averaging** the two frames, **red, G < 0 = "
    "differencing** (a motion-like signal), white = frames left alone. "
    "Read the maps with care: large |G| marks where the layer *mixes time*, which in our demo models is "
    "mostly where the object is - moving or not - rather than only where something moves."
)

clip = get_clip()
models = [m for m in get_models() if m is not None]
if clip is None:
    err = clip_error()
    (error_box(err) if err else st.info("Choose a clip in the sidebar."))
    st.stop()
if not models:
    no_models_box()
    st.stop()

hf_models = [m for m in models if m.has_hf]
for m in models:
    if not m.has_hf:
        st.info(f"Model {m.label} has no HF modules: its frames never interact before the final average "
                "(a plain TSN), so it has no gate maps.", icon=":material/info:")
if not hf_models:
    st.stop()

if len(hf_models) > 1:
    label = st.radio("Model", [m.label for m in hf_models], horizontal=True, key="gate_model")
    model = next(m for m in hf_models if m.label == label)
else:
    model = hf_models[0]

try:
    pred = predict(model, clip)
    idx, view = sampled_view(model.checkpoint, clip)
except Exception as e:  # noqa: BLE001
    error_box(f"Model {model.label} could not run on this clip ({type(e).__name__}: {e}).")
    st.stop()

st.markdown(f"**{clip.name}** through **{model.label}** - predicted *{pred.top1}* ({pred.top5_probs[0]:.0%})"
            + (f", true label *{clip.label_name}*" if clip.label_name else ""))

rows = summarise_gates(pred.gates)
st.subheader("Layer by layer")
show_figure(gate_summary_figure(rows), f"gate_summary_{model.label}_{clip.name}", "gate_summary")
show_figure(gate_matrix_figure(pred.gates, "mean gate per layer and frame pair"),
            f"gate_matrix_{model.label}_{clip.name}", "gate_matrix")
with st.expander("Numbers"):
    st.dataframe([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                 hide_index=True)


@st.fragment
def gate_views() -> None:
    """Controls + maps: changing them reruns only this fragment, not the page (no new inference)."""
    st.subheader("Maps over the frames")
    c1, c2, c3 = st.columns([2, 1, 3])
    opacity = c1.slider("Map opacity over the frame", 0.0, 1.0, 0.6, 0.05, key="gate_opacity")
    smooth = c2.toggle("Smooth", True, key="gate_smooth", help="Bilinear upsampling of the coarse gate maps.")
    names = list(pred.gates)
    chosen = c3.multiselect("Layers", names, default=names, format_func=short_block_name, key="gate_layers")
    if not chosen:
        st.info("Pick at least one layer.")
        return
    frames = view if opacity < 1.0 else None
    tab_time, tab_grid = st.tabs(["Time slider", "All layers × all frame pairs"])
    with tab_time:
        st.caption("Drag the slider or press ▶: each panel is one HF layer, showing G between frame t and "
                   "frame t+1 over frame t (what the model sees).")
        show_figure(gate_animation_figure(pred.gates, frames, opacity, smooth, chosen),
                    f"gate_animation_{model.label}_{clip.name}", "gate_anim")
    with tab_grid:
        st.caption(f"{len(chosen)} layers × {len(idx) - 1} adjacent frame pairs. Early layers (3a, 3b) have "
                   "fine maps; the last blocks are only a few cells wide.")
        show_figure(gate_grid_figure(pred.gates, frames, opacity, smooth, chosen),
                    f"gate_grid_{model.label}_{clip.name}", "gate_grid")


gate_views()
st.caption(DOWNLOAD_NOTE)
