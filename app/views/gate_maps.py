"""Gate maps: where each HF layer averages adjacent frames (G > 0) and where it differences them (G < 0),
on the clip and on the clip played backwards, and whether a layer chooses locally at all."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import selection as S
from app.downloads import download_menu, gate_files, show_figure
from app.figures import (BEHAVIOUR_STYLE, GatePanel, backward_aligned, gate_difference_figure, gate_grid_figure,
                         gate_matrix_figure, gate_player_figure, gate_summary_figure, locality_figure)
from app.loaders import predict, sampled_view
from app.ui import guard, need_clip, need_models, page_title
from hfnet_core.analysis.gates import BEHAVIOURS, gate_locality, most_local_layer, pair_gates, short_block_name

sel = S.current()
page_title("Gate maps", "Blue, G > 0: the layer averages frame t with frame t+1 at that position; red, G < 0: it "
           "differences them (a motion-like signal); grey: leaves them alone (paper Eq. 1). Frames are shown in grey "
           "so their own colours never mix with the gates'.")
clip = need_clip(sel)
models = need_models(sel)

hf_models = [m for m in models if m.has_hf]
plain = [m for m in models if not m.has_hf]
if not hf_models:
    for m in plain:
        st.info(f"Model {m.label} has no HF modules: its frames never interact before the final average "
                f"(a plain {m.kind}), so it has no gate maps.", icon=":material/info:")
    st.stop()

c1, c2 = st.columns([3, 2], vertical_alignment="center")
if len(hf_models) > 1:
    slots = [m.slot for m in hf_models]
    slot = c1.radio("Model", slots, horizontal=True, format_func=lambda s: next(m.label for m in hf_models
                                                                                 if m.slot == s),
                    **S.bind("gate_model", slots))
    model = next(m for m in hf_models if m.slot == slot)
else:
    model = hf_models[0]
reverse = c2.toggle("Backwards too (side by side)", **S.bind("reverse"),
                    help="The same frames in reverse order. Both panels then show the same two frames: left the "
                         "gate on the clip, right the gate when the clip runs backwards.")

with guard(f"Model {model.label} could not run on this clip") as g:
    pred = predict(model, clip)
    pred_b = predict(model, clip, True) if reverse else None
    idx, view = sampled_view(model.checkpoint, clip)
if g.failed:
    st.stop()

def _said(p, truth: str | None) -> str:
    mark = "" if not truth or truth not in model.class_names else (" ✓" if p.top1 == truth else " ✗")
    return f"*{p.top1}* ({p.top5_probs[0]:.0%}){mark}"


line = f"**{model.label}** on **{clip.name}**: {_said(pred, clip.label_name)}"
if pred_b is not None:
    line += f" · backwards: {_said(pred_b, sel.reversed_label)}"
st.markdown(line + "".join(f"  \n{m.label} is a plain {m.kind}: no HF modules, no gates." for m in plain))

rows = gate_locality(pred.gates)
rows_b = gate_locality(pred_b.gates) if pred_b is not None else None
blocks = list(pred.gates)
style = {r["block"]: BEHAVIOUR_STYLE.get(r["behaviour"], ("", ""))[1] for r in rows}
default_layer = most_local_layer(pred.gates) or blocks[0]
if S.choice("layer") not in blocks:  # the link may name a short block ("4a"), or a layer of another model
    short = {short_block_name(b): b for b in blocks}
    S.set_choices(layer=short.get(str(S.choice("layer")), default_layer))
layer = st.pills("Layer", blocks, format_func=lambda b: short_block_name(b) + (f" {style[b]}" if style[b] else ""),
                 help="⚑ marks a layer whose gate is about +1 (or −1) at every position: a fixed shift or "
                      "difference of whole frames, not the paper's local choice. The default is the most local "
                      "layer.", **S.bind("layer", blocks, fallback=default_layer)) or default_layer
row = next(r for r in rows if r["block"] == layer)


@st.cache_data(show_spinner="Drawing every map…", max_entries=16)
def _grid(model_key: str, clip_hash: str, _gates: dict, _view: np.ndarray) -> dict:
    """The all-layers grid (70 overlays on the demo models): built once per model and clip."""
    return gate_grid_figure(_gates, _view, 0.75, True)


@st.fragment
def player() -> None:
    """Scrubber + play over the chosen layer; its controls rerun only this fragment (no new inference)."""
    k1, k2, k3 = st.columns([2, 1, 3], vertical_alignment="center")
    opacity = k1.slider("Overlay strength", 0.1, 1.0, 0.75, 0.05, key="gate_opacity")
    smooth = k2.toggle("Smooth", True, key="gate_smooth", help="Bilinear upsampling of the coarse gate maps; "
                       "off shows the gate's real cells.")
    pairs = len(idx) - 1
    pair = k3.select_slider("Start at frame pair", list(range(pairs)), format_func=lambda t: f"{t}→{t + 1}",
                            **S.bind("pair", list(range(pairs))))
    S.sync_url()  # fragment reruns do not reach the entry script's sync
    g = pair_gates(pred.gates[layer])
    panels = [GatePanel(f"layer {short_block_name(layer)} · forward", view, g)]
    labels = [f"{t}→{t + 1}" for t in range(pairs)]
    if pred_b is not None:
        panels.append(GatePanel(f"layer {short_block_name(layer)} · backwards", view[1:],
                                backward_aligned(pred_b.gates)[layer]))
        labels = [f"{t}↔{t + 1}" for t in range(pairs)]
    fig = gate_player_figure(panels, opacity, smooth, labels, start=pair, per_row=2, panel_px=300)
    show_figure(fig, "gate_player", sel, {"model": model.label, "layer": layer, "overlay strength": opacity},
                config={"displayModeBar": False})
    st.caption(f"Layer {short_block_name(layer)}: {BEHAVIOURS.get(row['behaviour'], row['behaviour'])} "
               f"(locality {row['locality']:.2f}, mean G {row['mean']:+.2f}, {row['saturation']:.0%} of positions "
               "saturated). Press ▶ or drag the scrubber; hover a panel for G at a position."
               + (" Both panels show the same two frames; right: the gate computed when the clip runs "
                  "backwards (it sits on the later frame)." if pred_b is not None else ""))


player()

st.subheader("Layer by layer")
flagged: dict[str, list[str]] = {}
for r in rows:
    if r["fixed"]:
        flagged.setdefault(r["behaviour"], []).append(r["short"])
if flagged:
    st.warning("**⚑ Not a local choice.** The paper's claim is a per-position choice between averaging and "
               "differencing; " + "; ".join(f"layer{'s' if len(b) > 1 else ''} {', '.join(b)}: {BEHAVIOURS[k]}"
                                            for k, b in flagged.items()) + ".", icon=":material/flag:")
show_figure(locality_figure(rows, rows_b), "gate_locality", sel, {"model": model.label})
st.caption("Locality = how much G varies across the positions of a frame pair, relative to mean |G| "
           "(0 = the same value everywhere; ≈1.15 for gates spread uniformly over [−1, 1]). Green: a local choice; "
           "blue / red: G ≈ +1 / −1 everywhere (⚑); grey: one uniform blend, or inactive.")
show_figure(gate_summary_figure(rows), "gate_summary", sel, {"model": model.label})
show_figure(gate_matrix_figure(pred.gates, "mean gate per layer and frame pair (forward)"), "gate_matrix", sel,
            {"model": model.label})
if pred_b is not None:
    show_figure(gate_difference_figure(pred.gates, pred_b.gates), "gate_difference", sel, {"model": model.label})
    st.caption("Positive: the layer averages this pair more when the clip runs forward; negative: more when it "
               "runs backwards. A TSN has no gates; an HF layer that ignored order would show zeros.")
with st.expander("Numbers"):
    keys = ("short", "behaviour", "locality", "mean", "mean_abs", "saturation", "share_averaging",
            "share_differencing", "height", "width")
    st.dataframe([{k: (round(v, 3) if isinstance(v, float) and np.isfinite(v) else v) for k, v in r.items()
                   if k in keys} for r in rows], hide_index=True)
files = gate_files(sel, model, pred.gates, {"direction": "forward"})
if pred_b is not None:
    files += [(f"Backwards: {text}", build, name.replace("gates_", "gates_backwards_", 1))
              for text, build, name in gate_files(sel, model, pred_b.gates, {"direction": "backwards"})]
download_menu(files, "gate_values", label="Download the gate values")

st.subheader("All layers × all frame pairs")
if st.toggle(f"Show all {len(blocks)} layers × {len(idx) - 1} frame pairs (forward)", key="gate_grid_on",
             help="Every map at once, over grey frames. Early layers (3a, 3b) have fine maps; the last blocks are "
                  "only a few cells wide."):
    show_figure(_grid(model.key, clip.clip_hash, pred.gates, view), "gate_grid", sel, {"model": model.label})
