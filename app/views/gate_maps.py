"""Gate maps: what each temporal operator does with time, position by position, on the clip and on the clip
played backwards. HF: where each layer averages adjacent frames (G > 0) and where it differences them
(G < 0), and whether a layer chooses locally at all. GSM: the share of each channel half that its two gates
move one frame back / forward. TSM, which has no gate: how much of each layer's features came from the
neighbouring frames. A model with several operator kinds gets a selector; a plain TSN / TRN a note."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from app import selection as S
from app.downloads import download_menu, figure_context, gate_files, show_figure
from app.figures import (BEHAVIOUR_STYLE, GATE_COLORSCALE, GatePanel, backward_aligned, gate_difference_figure,
                         gate_grid_figure, gate_matrix_figure, gate_player_figure, gate_summary_figure, locality_figure)
from app.loaders import predict, sampled_view
from app.model_facts import OPERATOR_NAMES, mixing_words, operator_kinds, tsm_channel_shares, tsm_shift_divs
from app.operator_figures import (GSM_GATES, GSM_SCALE, frame_labels, frame_matrix_figure, gsm_locality_figure,
                                  gsm_mean_figure, neighbour_share_figure, tsm_scale)
from app.ui import guard, need_clip, need_models, page_title, slug
from hfnet_core.analysis import operator_maps as om
from hfnet_core.analysis.gates import BEHAVIOURS, gate_locality, most_local_layer, pair_gates, short_block_name

sel = S.current()
page_title("Gate maps", "How each model mixes time, position by position: HF's and GSM's gates, what TSM's shift "
           "brings in. Frames are shown in grey so their own colours never mix with the maps'.")
clip = need_clip(sel)
models = need_models(sel)

mapped = [m for m in models if operator_kinds(m.checkpoint)]
plain = [m for m in models if not operator_kinds(m.checkpoint)]
if not mapped:
    for m in plain:
        st.info(f"Model {m.label} has no HF modules and no other temporal operator (GSM, TSM): its frames never "
                f"interact before {mixing_words(m.checkpoint)}, so it has no gate maps.", icon=":material/info:")
    st.stop()

c1, c2 = st.columns([3, 2], vertical_alignment="center")
if len(mapped) > 1:
    slots = [m.slot for m in mapped]
    slot = c1.radio("Model", slots, horizontal=True, format_func=lambda s: next(m.label for m in mapped
                                                                                 if m.slot == s),
                    **S.bind("gate_model", slots))
    model = next(m for m in mapped if m.slot == slot)
else:
    model = mapped[0]
reverse = c2.toggle("Backwards too (side by side)", **S.bind("reverse"),
                    help="The same frames in reverse order. Both panels then show the same frames: left the "
                         "map on the clip, right the map when the clip runs backwards.")

kinds = operator_kinds(model.checkpoint)
kind = kinds[0]
if len(kinds) > 1:
    # The layer in the selection (and the URL) names the operator too: "gsm.inception_3a_1x1", "tsm.…";
    # a bare block name is HF's. The selector starts there.
    layer_choice = str(S.choice("layer") or "")
    named = layer_choice.split(".", 1)[0] if "." in layer_choice else ("hf" if layer_choice else "")
    if st.session_state.get("gate_op") not in kinds:
        st.session_state["gate_op"] = named if named in kinds else kinds[0]
    kind = st.radio("Operator", kinds, horizontal=True, key="gate_op",
                    format_func=lambda k: OPERATOR_NAMES.get(k, k.upper()),
                    help="This model has several kinds of temporal operator; each has its own maps.")

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
st.markdown(line + "".join(f"  \n{m.label} is a plain {m.kind}: no temporal operator, nothing to map."
                           for m in plain))


def _pick_site(noun: str, labels: list[str], default: str, flags: dict[str, str]) -> str:
    """The site pills, bound to the selection's layer (a link may name a site short: "3a_1x1", "gsm.3a_1x1")."""
    if S.choice("layer") not in labels:
        short = {}
        for lb in labels:
            op, _, module = lb.partition(".")
            short.update({module: lb, om.site_short(lb): lb, f"{op}.{om.site_short(lb)}": lb})
        S.set_choices(layer=short.get(str(S.choice("layer")), default))
    return st.pills(noun, labels,
                    format_func=lambda lb: om.site_short(lb) + (f" {flags[lb]}" if flags.get(lb) else ""),
                    **S.bind("layer", labels, fallback=default)) or default


def _player_controls(steps: int, pairs: bool = False) -> tuple[float, bool, int]:
    """Overlay strength, smoothing and where the player starts (the selection's ``pair``): a frame pair
    (HF's maps, "t→t+1") or a frame (GSM's and TSM's)."""
    k1, k2, k3 = st.columns([2, 1, 3], vertical_alignment="center")
    opacity = k1.slider("Overlay strength", 0.1, 1.0, 0.75, 0.05, key="gate_opacity")
    smooth = k2.toggle("Smooth", True, key="gate_smooth", help="Bilinear upsampling of the coarse maps; off shows "
                       "their real cells.")
    start = k3.select_slider("Start at frame pair" if pairs else "Start at frame", list(range(steps)),
                             format_func=(lambda t: f"{t}→{t + 1}") if pairs else str,
                             **S.bind("pair", list(range(steps))))
    S.sync_url()  # fragment reruns do not reach the entry script's sync
    return opacity, smooth, int(start)


def _operator_files(ops: dict[str, Any], rows: list[dict[str, Any]], direction: str) -> list[tuple[str, Any, str]]:
    """Per-site summary (CSV) and every map (NPZ) of one model's operator on the clip."""
    from hfnet_core.analysis.exports import model_info

    clip_name, _, s = figure_context(sel, {"direction": direction})
    info = model_info(model.checkpoint, model.label, model.class_names, model.task)
    base = slug(f"{kind}_maps_{model.name}_{clip_name}" + ("_backwards" if direction == "backwards" else ""))
    what = "Backwards: " if direction == "backwards" else ""
    return [(f"{what}Per-site summary (CSV)", lambda: om.operator_summary_csv(rows, clip_name, info, s),
             f"{base}_sites.csv"),
            (f"{what}Every map (NPZ)", lambda: om.operator_maps_npz(ops, clip_name, info, s, rows), f"{base}.npz")]


def _gate_words(row: dict[str, Any]) -> str:
    """What one GSM gate does at a place, in words, with its mean and locality."""
    return (f"{om.GATE_BEHAVIOURS.get(row['behaviour'], row['behaviour'])} (mean g {row['mean']:+.2f}, "
            f"locality {row['locality']:.2f})")


def _numbers(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    with st.expander("Numbers"):
        st.dataframe([{k: (round(v, 3) if isinstance(v, float) and np.isfinite(v) else v) for k, v in r.items()
                       if k in keys} for r in rows], hide_index=True)


# --------------------------------------------------------------------------------------------------
# HF: averaging vs differencing, per layer


@st.cache_data(show_spinner="Drawing every map…", max_entries=16)
def _grid(model_key: str, clip_hash: str, _gates: dict, _view: np.ndarray) -> dict:
    """The all-layers grid (70 overlays on the demo models): built once per model and clip."""
    return gate_grid_figure(_gates, _view, 0.75, True)


def hf_view() -> None:
    st.caption("Blue, G > 0: the layer averages frame t with frame t+1 at that position; red, G < 0: it "
               "differences them (a motion-like signal); grey: leaves them alone (paper Eq. 1).")
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

    @st.fragment
    def player() -> None:
        """Scrubber + play over the chosen layer; its controls rerun only this fragment (no new inference)."""
        pairs = len(idx) - 1
        opacity, smooth, pair = _player_controls(pairs, pairs=True)
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
               "(0 = the same value everywhere; ≈1.15 for gates spread uniformly over [−1, 1]). Green: a local "
               "choice; blue / red: G ≈ +1 / −1 everywhere (⚑); grey: one uniform blend, or inactive.")
    show_figure(gate_summary_figure(rows), "gate_summary", sel, {"model": model.label})
    show_figure(gate_matrix_figure(pred.gates, "mean gate per layer and frame pair (forward)"), "gate_matrix", sel,
                {"model": model.label})
    if pred_b is not None:
        show_figure(gate_difference_figure(pred.gates, pred_b.gates), "gate_difference", sel, {"model": model.label})
        st.caption("Positive: the layer averages this pair more when the clip runs forward; negative: more when it "
                   "runs backwards. A TSN has no gates; an HF layer that ignored order would show zeros.")
    _numbers(rows, ("short", "behaviour", "locality", "mean", "mean_abs", "saturation", "share_averaging",
                    "share_differencing", "height", "width"))
    files = gate_files(sel, model, pred.gates, {"direction": "forward"})
    if pred_b is not None:
        files += [(f"Backwards: {text}", build, name.replace("gates_", "gates_backwards_", 1))
                  for text, build, name in gate_files(sel, model, pred_b.gates, {"direction": "backwards"})]
    download_menu(files, "gate_values", label="Download the gate values")

    st.subheader("All layers × all frame pairs")
    if st.toggle(f"Show all {len(blocks)} layers × {len(idx) - 1} frame pairs (forward)", key="gate_grid_on",
                 help="Every map at once, over grey frames. Early layers (3a, 3b) have fine maps; the last blocks "
                      "are only a few cells wide."):
        show_figure(_grid(model.key, clip.clip_hash, pred.gates, view), "gate_grid", sel, {"model": model.label})


# --------------------------------------------------------------------------------------------------
# GSM: two gates per place, the share of each channel half that moves one frame back / forward


def gsm_view() -> None:
    ops = om.of_kind(pred.operator_maps, "gsm")
    ops_b = om.of_kind(pred_b.operator_maps, "gsm") if pred_b is not None else None
    names = [n for n in GSM_GATES if n in om.map_names(ops)]
    if not names:
        st.info("This model's GSM exposed no gate maps on this clip.", icon=":material/info:")
        return
    rows = {n: om.gate_rows(ops, n) for n in names}
    rows_b = {n: om.gate_rows(ops_b, n) for n in names} if ops_b is not None else None
    labels = list(ops)
    meanings = next(iter(ops.values())).meanings
    st.caption(" ".join(f"**{GSM_GATES[n].capitalize()}** (`{n}`): {meanings.get(n, '')}." for n in names)
               + " The map at frame t is computed on frame t: how much of its features leave it. Blue, g > 0: "
               "that share moves and is *added* to the neighbour's features (the frames mix); red, g < 0: a negated "
               "copy moves, so the neighbour *subtracts* it (a frame difference) and the frame keeps more than it "
               "had; grey: the channels stay. GSM sits between a convolution and its BatchNorm, once in each "
               "Inception block.")
    flags = {}
    for n in names:
        for r in rows[n]:
            if r["fixed"]:
                flags[r["label"]] = "⚑"
    default = om.most_local_site([r for n in names for r in rows[n]]) or labels[0]
    place = _pick_site("Place", labels, default, flags)
    short = om.site_short(place)
    frames = len(idx)

    @st.fragment
    def player() -> None:
        opacity, smooth, start = _player_controls(frames)
        panels = []
        for n in names:
            # with reversal: one row per gate, so the titles name the gate and the direction (the place is
            # in the pills and the caption; the panels are too narrow for all three)
            title = f"{GSM_GATES[n]} · forward" if ops_b is not None else f"{short} · {GSM_GATES[n]}"
            panels.append(GatePanel(title, view, om.frame_maps(ops[place].maps[n])))
            if ops_b is not None:
                panels.append(GatePanel(f"{GSM_GATES[n]} · backwards", view, om.backward_aligned(ops_b, n)[place]))
        fig = gate_player_figure(panels, opacity, smooth, frame_labels(frames), start=start, per_row=2,
                                 panel_px=260 if ops_b is not None else 300, scale=GSM_SCALE, step_prefix="frame ",
                                 hover_prefix="frame ")
        show_figure(fig, "gsm_player", sel, {"model": model.label, "place": place, "overlay strength": opacity},
                    config={"displayModeBar": False})
        said = "; ".join(f"{GSM_GATES[n]}: {_gate_words(r)}" for n in names for r in rows[n] if r["label"] == place)
        st.caption(f"Place {short}: {said}. Press ▶ or drag the scrubber; hover a panel for g at a position."
                   + (" Each row is one gate: left on the clip, right on the clip played backwards, on the same "
                      "frame. Played backwards, the backward shift moves features towards the frame that is "
                      "*later* in the original clip." if ops_b is not None else ""))

    player()

    st.subheader("Place by place")
    fixed = [f"{r['short']} ({GSM_GATES[n]})" for n in names for r in rows[n] if r["fixed"]]
    if fixed:
        st.warning("**⚑ Not a local choice** at " + ", ".join(fixed) + ": the gate is about ±1 at every position, "
                   "so the whole channel half moves (or moves negated) - a fixed shift like TSM's.",
                   icon=":material/flag:")
    show_figure(gsm_locality_figure(rows), "gsm_locality", sel, {"model": model.label})
    st.caption("Locality = how much g varies across the positions of a frame, relative to mean |g| (0 = the same "
               "share everywhere). Green: a local choice; blue / red: g ≈ +1 / −1 everywhere (⚑); grey: one uniform "
               "share, or inactive. Solid bars: the backward shift; hatched: the forward shift.")
    show_figure(gsm_mean_figure(rows), "gsm_mean", sel, {"model": model.label})
    panels = [(f"{GSM_GATES[n]} (forward)", om.frame_matrix(ops, n)[1]) for n in names]
    show_figure(frame_matrix_figure(labels, panels, "mean gate per place and frame", -1, 1, GATE_COLORSCALE, "g",
                                    y_title="GSM place"), "gsm_matrix", sel, {"model": model.label})
    if ops_b is not None:
        diff = [(f"{GSM_GATES[n]}: forward − backwards",
                 om.frame_matrix(ops, n)[1] - np.stack([om.backward_aligned(ops_b, n)[lb].mean(axis=(1, 2))
                                                        for lb in labels])) for n in names]
        lim = float(max(max(np.abs(d).max() for _, d in diff), 0.05))
        show_figure(frame_matrix_figure(labels, diff, "Forward − backwards: mean g on the same frame", -lim, lim,
                                        "PuOr", "Δ mean g", y_title="GSM place"), "gsm_difference", sel,
                    {"model": model.label})
        st.caption("Positive: more of that half moves at this frame when the clip runs forward; negative: more "
                   "when it runs backwards. A gate that ignored order would show zeros.")
    flat = [r for n in names for r in rows[n]]
    _numbers([{**r, "gate": GSM_GATES[r["map"]]} for r in flat],
             ("short", "gate", "behaviour", "locality", "mean", "mean_abs", "share_moves", "share_negated",
              "saturation", "height", "width"))
    files = _operator_files(ops, flat, "forward")
    if ops_b is not None:
        files += _operator_files(ops_b, [r for n in names for r in rows_b[n]], "backwards")
    download_menu(files, "gsm_values", label="Download the gate values")


# --------------------------------------------------------------------------------------------------
# TSM: no gate - how much of each layer's features came from the neighbouring frames


def tsm_view() -> None:
    ops = om.of_kind(pred.operator_maps, "tsm")
    ops_b = om.of_kind(pred_b.operator_maps, "tsm") if pred_b is not None else None
    shares = tsm_channel_shares(model.checkpoint)
    rows = om.neighbour_rows(ops, shares)
    if not rows:
        st.info("This model's TSM exposed no maps on this clip.", icon=":material/info:")
        return
    rows_b = om.neighbour_rows(ops_b, shares) if ops_b is not None else None
    labels = list(ops)
    divs = tsm_shift_divs(model.checkpoint)
    d = "/".join(str(v) for v in divs)
    st.info(f"**TSM has no gate.** At each of its {len(labels)} sites the shift is fixed: 2/{d} of the channels "
            f"({', '.join(f'{v:.0%}' for v in sorted(set(shares.values())))}) move - 1/{d} comes from the next frame, "
            f"1/{d} from the previous one - at every position and for every clip (zeros come in beyond the clip's "
            "ends). It learns nothing about *where* to mix. What differs is how much signal those channels carry: "
            "the maps show, per position, the share of the feature magnitude (the sum of |feature| over channels) "
            "that came from the neighbouring frames.", icon=":material/info:")
    default = max(rows, key=lambda r: r["spatial_std"])["label"]  # where the share varies most
    site = _pick_site("Site", labels, default, {})
    short = om.site_short(site)
    row = next(r for r in rows if r["label"] == site)
    scale = tsm_scale(shares.get(site, 2 / divs[0]))
    frames = len(idx)

    @st.fragment
    def player() -> None:
        opacity, smooth, start = _player_controls(frames)
        maps = om.frame_maps(ops[site].maps["from_neighbours"])
        panels = [GatePanel("forward" if ops_b is not None else f"site {short}", view, maps)]
        if ops_b is not None:  # the site is in the pills and the caption; the panels are narrow
            panels.append(GatePanel("backwards", view, om.backward_aligned(ops_b, "from_neighbours")[site]))
        fig = gate_player_figure(panels, opacity, smooth, frame_labels(frames), start=start, per_row=2,
                                 panel_px=300, scale=scale, step_prefix="frame ", hover_prefix="frame ")
        show_figure(fig, "tsm_player", sel, {"model": model.label, "site": site, "overlay strength": opacity},
                    config={"displayModeBar": False})
        ratio = f" (× {row['ratio']:.2f} the channels' share)" if row["ratio"] is not None else ""
        st.caption(f"Site {short} (the input of {row['module']}): the shift moves {row['channel_share']:.0%} of the "
                   f"channels; at the inner frames {row['mean_inner']:.0%} of the feature magnitude came from the "
                   f"neighbours{ratio}, at the first and last frame less (half the moved channels are zeros "
                   "there). Press ▶ or drag the scrubber; hover a panel for the share at a position."
                   + (" Right: the same frame when the clip runs backwards (the previous and next frame swap)."
                      if ops_b is not None else ""))

    player()

    st.subheader("Layer by layer")
    show_figure(neighbour_share_figure(rows, rows_b), "tsm_share", sel, {"model": model.label})
    st.caption("Bars: the share of each layer's features (by magnitude) that came from the neighbouring frames, "
               "at the inner frames" + (" (light: the clip played backwards)" if rows_b else "")
               + ". Black ticks: the share of the channels the shift moves, the same for every clip. A bar above its "
               "tick: the moved channels carry more than their share of the signal; below: less.")
    panels = [("forward", om.frame_matrix(ops, "from_neighbours")[1])]
    if ops_b is not None:
        panels.append(("backwards (same frame)", np.stack([om.backward_aligned(ops_b, "from_neighbours")[lb]
                                                           .mean(axis=(1, 2)) for lb in labels])))
    show_figure(frame_matrix_figure(labels, panels, "share from the neighbours per site and frame", 0.0, scale.zmax,
                                    scale.colorscale, "from neighbours", ".0%", y_title="TSM site"), "tsm_matrix",
                sel, {"model": model.label})
    _numbers(rows, ("short", "module", "channel_share", "mean_inner", "mean", "ratio", "min", "max", "spatial_std",
                    "height", "width"))
    files = _operator_files(ops, rows, "forward")
    if ops_b is not None:
        files += _operator_files(ops_b, rows_b, "backwards")
    download_menu(files, "tsm_values", label="Download the maps")


# --------------------------------------------------------------------------------------------------
# Any other operator: what its maps mean, and each map per site and frame


def other_view() -> None:
    ops = om.of_kind(pred.operator_maps, kind)
    if not ops:
        st.info(f"{kind.upper()} exposed no maps on this clip.", icon=":material/info:")
        return
    meanings = next(iter(ops.values())).meanings
    for n in om.map_names(ops):
        labels, m = om.frame_matrix(ops, n)
        lim = float(max(np.abs(m).max(), 1e-6))
        st.markdown(f"**{n}**: {meanings.get(n, 'no description')}")
        show_figure(frame_matrix_figure(labels, [(n, m)], f"{n}: mean per site and frame", -lim, lim, "PuOr", n),
                    f"{kind}_{n}_matrix", sel, {"model": model.label})


{"hf": hf_view, "gsm": gsm_view, "tsm": tsm_view}.get(kind, other_view)()
