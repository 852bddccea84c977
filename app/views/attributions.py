"""Attributions: which pixels of which frames each model's class score depends on, side by side.

Integrated Gradients, Saliency or Grad-CAM (at a layer chosen from the model's layers: backbone conv /
BN / ReLU, every Inception block output, every HF output) on the selected clip - and, when the selection
says so, on the clip played backwards - overlaid on the frames exactly as the model sees them.

Nothing is computed until the user presses *Compute*: each map is then a background job of the shared
pool (``hfnet_core.analysis.attribution_jobs``: a worker process at low priority, so every other page and
session keeps answering), shown with its progress, ETA or queue position in a fragment that polls the
pool, cancellable, and cached on disk by (checkpoint, clip, method, target, steps, layer). Changing the
clip or a setting, or leaving the page, cancels this session's jobs that no longer match (``app.background``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import background as bg
from app import selection as S
from app.analysis_figures import attribution_figure
from app.downloads import attribution_files, download_menu, show_figure
from app.loaders import predict, sampled
from app.model_facts import last_block
from app.ui import guard, need_clip, need_models, page_title
from hfnet_core.analysis import attribution_jobs as aj
from hfnet_core.analysis import attributions as attr
from hfnet_core.analysis.jobs import JobStatus
from hfnet_core.analysis.task_view import listed_actions

PAGE = "attributions"
METHODS = {"gradcam": "Grad-CAM", "ig": "Integrated Gradients", "saliency": "Saliency"}
JOB_METHODS = {"gradcam": "grad_cam", "ig": "integrated_gradients", "saliency": "saliency"}
TARGETS = {"top1": "each model's top-1", "true": "the true label", "class": "a class I choose"}
POLL_S = 1.0
_OWN = "_at_own"  # pool keys whose computation this session started (the rest it found done: cached)


@dataclass
class Request:
    """One map the page would show: a model, a direction, its input and target, and its job key."""

    model: Any  # LoadedModel
    reverse: bool
    frames: np.ndarray  # source frame indices
    view: np.ndarray  # (T, H, W, 3) uint8 frames as the model sees them
    x: Any  # (1, T, 3, H, W) model input
    target: int
    how: str
    target_name: str
    prob: float
    pred: Any
    layer: str | None
    clip: str  # sha256 of the model input
    cache_key: str  # attribution_key(...): the map's name on disk

    @property
    def key(self) -> str:
        """The pool's job key (as ``start_attribution`` submits it)."""
        return f"attribution|{self.cache_key}"

    @property
    def way(self) -> str:
        return "backwards" if self.reverse else "forward"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "time left unknown"
    return f"about {seconds:.0f} s left" if seconds < 90 else f"about {seconds / 60:.0f} min left"


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
    chosen_name = c3.selectbox("Class", list(models[0].class_names), key="at_class")
steps = attr.DEFAULT_IG_STEPS
if method == "ig":
    steps = int(c3.slider("IG steps", 8, 64, attr.DEFAULT_IG_STEPS, step=8, key="at_steps",
                          help="More steps = a closer integral (smaller convergence delta), slower."))
alpha = c3.slider("Overlay opacity", 0.0, 1.0, 0.6, 0.05, key="at_alpha")
reverse = c4.toggle("Backwards too", **S.bind("reverse"),
                    help="The same frames in reverse order, shown aligned to the forward frames. For the true-"
                         "label target, the backwards clip's true label is its reversed pair.")


def _target(m, pred, reverse: bool) -> tuple[int, str]:
    """Target output column for model ``m`` and a note on how it was chosen. A multi-task model is read
    as its shown task (sidebar): the column of that task's class (an action: its action classifier's)."""
    index, how = _target_class(m, pred, reverse)
    column = pred.output_column(index)
    if column < 0:  # an action with no action-classifier column: explain the score of its verb
        listed = listed_actions(m.spec)
        pair = int(listed[index]) if index < len(listed) else int(pred.tasks["action"].indices[0])  # UNLISTED: top-1
        return pair // m.spec.num_nouns, f"{how}: its verb (no action classifier column)"
    return column, how


def _target_class(m, pred, reverse: bool) -> tuple[int, str]:
    """Target class (an index into the shown classes, ``m.class_names``) and how it was chosen."""
    names = list(m.class_names)
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


def _import_options(ckpt: Any) -> dict[str, Any]:
    """What a foreign checkpoint needed at import (the worker loads the file itself)."""
    return {} if str(ckpt.path).endswith(".safetensors") else {"num_segments": int(ckpt.config.num_segments)}


# --- what would be shown: one request per model and direction -------------------------------------------
directions = (False, True) if reverse else (False,)
requests: list[Request] = []
layer_cols = st.columns(len(models)) if method == "gradcam" else None
for n, m in enumerate(models):
    ckpt = m.checkpoint
    layer = None
    if layer_cols is not None:
        choices = attr.layer_choices(ckpt.model)
        layer = layer_cols[n].selectbox(
            f"Grad-CAM layer of {m.label}", choices, index=choices.index(last_block(ckpt)), key=f"at_layer_{m.slot}",
            help="`inception_*`: a block's output; `hf.inception_*`: after its HF module; `base_model.*`: a conv / "
                 "BN / ReLU inside the backbone.")
    for rev in directions:
        with guard(f"{m.label} cannot run on this clip") as g:
            idx, view, x = sampled(ckpt, clip, rev)
            pred = predict(m, clip, rev)
        if g.failed:
            break
        target, how = _target(m, pred, rev)
        digest = aj.clip_hash(x)
        prob = pred.column_prob(m.spec, target)
        requests.append(Request(m, rev, np.asarray(idx), np.asarray(view), x, target, how, ckpt.class_names[target],
                                prob, pred, layer, digest,
                                aj.attribution_key(ckpt.sha256, digest, JOB_METHODS[method], target, steps, layer)))

pool, me = bg.pool(), bg.owner()
current = [r.key for r in requests]
bg.release(PAGE, keep=current)  # another clip / method / target: this session's old jobs stop
own: set[str] = st.session_state.setdefault(_OWN, set())
own &= set(current)  # a map left and come back to is a cached one


def _submit(r: Request, retry: bool = False) -> JobStatus:
    ckpt = r.model.checkpoint
    return aj.start_attribution(ckpt.path, ckpt.sha256, r.x, JOB_METHODS[method], r.target, steps=steps,
                                layer=r.layer, owner=me, pool=pool, clip=r.clip,
                                retry=retry, import_options=_import_options(ckpt))


for r in requests:  # a map already on disk is read, never recomputed: no button needed for it
    if pool.status(r.key).state == "missing" and aj.cache_path(r.cache_key).is_file():
        _submit(r)

what = METHODS[method] + (f" ({steps} steps)" if method == "ig" else "")
b1, b2 = st.columns([1, 3])
if b1.button(f"Compute {what}", key="at_run", type="primary", icon=":material/play_arrow:",
             help="Starts one background job per model (and direction). Other pages keep working meanwhile."):
    for r in requests:
        status = _submit(r, retry=True)
        if status.active:
            own.add(r.key)
        else:
            own.discard(r.key)  # found done (this server or the disk cache): nothing computed
    bg.track(PAGE, current)
b2.caption("Nothing is computed until you press the button. Each model's map is a background job in a small "
           "shared queue; changing the clip or a setting, or leaving this page, cancels this session's jobs.")


def _cancel_mine() -> None:
    for key in bg.tracked(PAGE):
        pool.cancel(key, me)


def _provenance(r: Request, status: JobStatus) -> str:
    res = status.result or {}
    path = aj.cache_path(r.cache_key)
    when = ""
    if path.is_file():
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc)
        when = f" on {stamp:%Y-%m-%d %H:%M} UTC"
    took = f" in {float(res['seconds']):.1f} s" if res.get("seconds") is not None else ""
    if status.cached or r.key not in own:
        return f"cached (computed{when}{took})"
    return f"computed{took}"


def _show_status(r: Request, status: JobStatus) -> None:
    m = r.model
    if status.state == "queued":
        pos = status.queue_position or 1
        st.progress(0.0, text=f"{m.label}, {r.way}: waiting, {_ordinal(pos)} in the queue · {_eta(status.eta_s)}")
    elif status.state == "running":
        st.progress(float(status.fraction), text=f"{m.label}, {r.way}: {status.message or 'running'} · "
                                                 f"{100 * status.fraction:.0f} % · {_eta(status.eta_s)}")
    elif status.state == "failed":
        st.error(f"{METHODS[method]} failed for {m.label} ({r.way}): {status.error}", icon=":material/error:")
    elif status.state == "cancelled":
        st.info(f"{m.label}, {r.way}: cancelled. Press the button to compute it.", icon=":material/cancel:")
    else:
        st.info(f"{m.label}, {r.way}: not computed yet.", icon=":material/hourglass_empty:")


def _results() -> None:
    statuses = {r.key: pool.status(r.key) for r in requests}
    busy = any(s.active for s in statuses.values())
    if busy:
        st.button("Cancel", key="at_cancel", icon=":material/stop:", on_click=_cancel_mine,
                  help="Stops this session's jobs (a job another session also asked for goes on for them).")
    per_frame: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    exported: dict[str, np.ndarray] = {}
    targets: dict[str, str] = {}
    cols = st.columns(len(models))
    for col, m in zip(cols, models):
        with col:
            st.markdown(f"#### {m.label}")
            for r in (r for r in requests if r.model is m):
                status = statuses[r.key]
                prefix = "Backwards (aligned to the forward frames) · " if r.reverse else ""
                if status.state != "done":
                    _show_status(r, status)
                    continue
                res = status.result
                maps, view, idx = np.asarray(res["maps"]), r.view, r.frames
                if r.reverse:  # back to the forward frames' order, so the two rows line up frame by frame
                    maps, view, idx = maps[::-1], view[::-1], idx[::-1]
                extra = f" · convergence delta {float(res['delta']):.3g}" if res.get("delta") is not None else ""
                st.caption(f"{prefix}Target ({r.how}): **{r.target_name}** · p = {r.prob:.2f} · top-1: "
                           f"{r.pred.top1} ({r.pred.top5_probs[0]:.2f}) · {_provenance(r, status)}{extra}")
                images = attr.overlay(view, maps, alpha)
                title = (f"{m.label}: {METHODS[method]}" + (f" at {r.layer}" if r.layer else "")
                         + (" · backwards" if r.reverse else "") + f"<br><sup>for '{r.target_name}'</sup>")
                fig = attribution_figure(images, title, [f"frame {int(i)}" for i in idx])
                show_figure(fig, f"at_fig_{m.slot}{'_bwd' if r.reverse else ''}", sel,
                            {"method": METHODS[method], "layer": r.layer or "-", "target": r.target_name,
                             "direction": r.way})
                label = m.label + (" (backwards)" if r.reverse else "")
                per_frame[f"{m.label}, {r.way}"] = (np.asarray(idx), maps.reshape(maps.shape[0], -1).mean(axis=1))
                exported[label] = np.asarray(maps[::-1] if r.reverse else maps)
                targets[label] = r.target_name
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
    if polling and not busy:  # the last job finished: one full run draws the page without the poller
        st.rerun()


polling = any(pool.status(k).active for k in current)
st.fragment(run_every=POLL_S if polling else None)(_results)()
