"""Clip lab: one clip, both models - what each predicts, side by side; the same clip played backwards."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import streamlit as st

from app import selection as S
from app.clip_map import clip_map_section
from app.downloads import download_menu, prediction_files, show_figure
from app.figures import COLOR_A, COLOR_B, top5_figure
from app.loaders import ClipChoice, LoadedModel, predict, sampled_view
from app.model_facts import hf_summary
from app.ui import error_box, guard, need_clip, no_models_message, page_title
from hfnet_core.analysis.inference import ClipPrediction
from hfnet_core.analysis.exports import reversal_comparison
from hfnet_core.analysis.scope import scope_notes, training_dataset
from hfnet_core.analysis.true_labels import reversed_label
from hfnet_core.multitask import TASKS
from hfnet_core.data.video import to_browser_mp4

sel = S.current()
page_title("Clip lab")
clip = need_clip(sel)
models = sel.models


@st.cache_data(show_spinner=False, max_entries=32)
def _browser_mp4(clip_hash: str, fps: float, reverse: bool, _frames: np.ndarray) -> bytes:
    return to_browser_mp4(np.ascontiguousarray(_frames[::-1] if reverse else _frames), fps=fps)


def _verdict(m: LoadedModel, p: ClipPrediction, truth: str | None) -> str:
    if truth and truth in m.class_names:
        return " :green[:material/check: right]" if p.top1 == truth else " :red[:material/close: wrong]"
    return ""


def _agreement(preds: dict[str, ClipPrediction]) -> None:
    pa, pb = preds.get("A"), preds.get("B")
    if not (sel.comparable and pa and pb):
        return
    a, b = sel.a.label, sel.b.label
    if pa.top1 != pb.top1:
        st.warning(f"**The models disagree.** {a} says *{pa.top1}* ({pa.top5_probs[0]:.0%}); {b} says "
                   f"*{pb.top1}* ({pb.top5_probs[0]:.0%}).", icon=":material/bolt:")
    else:
        st.success(f"**Both models say** *{pa.top1}* ({pa.top5_probs[0]:.0%} vs {pb.top5_probs[0]:.0%}).",
                   icon=":material/handshake:")


def _predictions(reverse: bool) -> dict[str, ClipPrediction]:
    out: dict[str, ClipPrediction] = {}
    for m in models:
        with guard(f"Model {m.label} could not run on this clip") as g:
            out[m.slot] = predict(m, clip, reverse)
        if g.failed:
            continue
    return out


def _top5_row(preds: dict[str, ClipPrediction], truth: str | None, reverse: bool) -> None:
    cols = st.columns(2)
    for col, m, color in zip(cols, (sel.a, sel.b), (COLOR_A, COLOR_B)):
        with col:
            if m is None:
                st.info("No model chosen for this slot.")
                continue
            p = preds.get(m.slot)
            if p is None:
                continue
            head, menu = st.columns([5, 1], vertical_alignment="center")
            way = "backwards" if reverse else "forward"
            head.markdown(f"**{m.label}** · {way}{_verdict(m, p, truth)}", help=f"{m.kind}, {hf_summary(m.checkpoint)}")
            if p.tasks and m.spec is not None:
                _task_tops(m, p, _task_truths(m, truth, reverse), color, way, menu)
                continue
            show_figure(top5_figure(p, f"top-5 of {m.label} · {way}", truth, color, show_title=False),
                        f"top5_{m.slot}_{'bwd' if reverse else 'fwd'}", sel, {"clip played": way}, menu_at=menu)
            if truth and truth in m.class_names and truth not in p.top5_names:
                st.caption(f"True class not in the top 5 (p = {float(p.probs[m.class_names.index(truth)]):.3f}).")


def _task_truths(m: LoadedModel, truth: str | None, reverse: bool) -> dict[str, str | None]:
    """The clip's true verb, noun and action for a multi-task model: from its eval bundle when the clip is
    one of the bundle's, else the verb alone when the clip's label names one. Played backwards the noun
    stays (the same object) and the verb becomes its reversed pair, where the dataset says which."""
    spec = m.spec
    verb = noun = None
    src = m.task_source
    row = src.row_of(clip.clip_id) if src is not None and clip.clip_id else None
    if row is not None and 0 <= int(src.labels[row]) < spec.num_verbs * spec.num_nouns:
        v, n = divmod(int(src.labels[row]), spec.num_nouns)
        verb, noun = spec.verb_names[v], spec.noun_names[n]
        if reverse:
            verb = reversed_label(verb, spec.verb_names)[0]
    else:
        if truth in spec.verb_names:
            verb = truth  # already the reversed pair's when reverse (the page passes the backwards truth)
        elif truth in spec.noun_names:
            noun = truth
        if noun is None and clip.noun_name in spec.noun_names:  # a shipped sample names its object
            noun = clip.noun_name
    action = spec.pair_name(verb, noun) if verb and noun else None
    return {"verb": verb, "noun": noun, "action": action}


def _task_tops(m: LoadedModel, p: ClipPrediction, truths: dict[str, str | None], color: str, way: str,
               menu) -> None:
    """A multi-task model's verb, noun and action top-5, one short chart each; the shown task is marked."""
    marks = []
    for task in TASKS:
        t = truths.get(task)
        if t:
            marks.append(f"{task} {'✓' if p.tasks[task].names[0] == t else '✗'}")
    if marks:
        st.caption(" · ".join(marks))
    for n, task in enumerate(TASKS):
        top = p.tasks[task]
        shown = " (the task the other pages show)" if task == m.task else ""
        st.markdown(f"**{task}** top-5{shown}" + (" · ranked by p(verb) × p(noun)" if task == "action" else ""))
        view = SimpleNamespace(top5_names=top.names, top5_probs=top.probs)
        height = 250 if task == "action" else 190  # "<verb> <noun>" wraps to three lines
        show_figure(top5_figure(view, f"{task} top-5 of {m.label} · {way}", truths.get(task), color, height=height,
                                show_title=False),
                    f"top5_{m.slot}_{task}_{'bwd' if way == 'backwards' else 'fwd'}", sel,
                    {"clip played": way, "task": task}, menu_at=menu if n == 0 else None)


def _class_list_warning() -> None:
    a, b = sel.a, sel.b
    if a is None or b is None or sel.comparable:
        return
    multi = [m for m in (a, b) if m.task]
    if len(multi) == 1:  # a multi-task model shown as another task than the plain model's classes
        st.info(f"{multi[0].label} is shown as its **{multi[0].task}s**, which the other model does not predict. "
                "Choose *verb* under *Multi-task models show* in the sidebar to compare the two (at SynthSomething "
                "the verbs are the motions). Each model's own answer is shown below.", icon=":material/info:")
        return
    same_count = len(a.class_names) == len(b.class_names)
    error_box(f"Models A and B have different class lists ({len(a.class_names)} vs {len(b.class_names)} classes"
              + (", same count, different names or order" if same_count else "") + "), so their predictions "
              "cannot be compared.", "Each model's own prediction is still shown below."
              + (" If both were trained on the same classes, the sidebar offers to use one model's names for the "
                 "other." if same_count else ""))


def _scope(preds: dict[str, ClipPrediction]) -> None:
    """One notice listing why an answer may mean little, each reason once with the models it applies to."""
    reasons: dict[str, list[str]] = {}
    for m in models:
        p = preds.get(m.slot)
        if p is None:
            continue
        cfg = m.checkpoint.config
        info = clip.info
        seen_s = (info.span_s[1] - info.span_s[0]) if info.span_s else info.duration_s  # what the models sample
        for note in scope_notes(input_size=int(cfg.input_size), num_segments=int(cfg.num_segments),
                                class_names=m.class_names, trained_on=training_dataset(m.checkpoint.metadata),
                                clip_dataset=clip.dataset, width=info.width, height=info.height,
                                duration_s=seen_s, num_frames=info.read_frames, top_probs=p.top5_probs):
            reasons.setdefault(note, []).append(m.slot)
    if reasons:
        lines = [f"- {note} ({' and '.join(slots)})" for note, slots in reasons.items()]
        st.warning("**Read these answers with care:**\n" + "\n".join(lines), icon=":material/explore_off:")


def _reversal_summary(fwd: dict[str, ClipPrediction], bwd: dict[str, ClipPrediction]) -> None:
    truth_f, truth_b = clip.label_name, sel.reversed_label
    rows = []
    change = reversal_comparison(fwd, bwd)
    for m in models:
        pf, pb = fwd.get(m.slot), bwd.get(m.slot)
        if pf is None or pb is None:
            continue
        delta = change[m.slot]["max_abs_logit_diff"]
        # float32 rounding of a sum over frames in another order: ~1e-7 relative to the logits' size
        blind = delta <= 1e-5 * (1.0 + float(np.abs(pf.logits).max()))

        def mark(p: ClipPrediction, truth: str | None) -> str:
            return "" if not truth or truth not in m.class_names else (" ✓" if p.top1 == truth else " ✗")

        rows.append({"model": m.label, "forward says": f"{pf.top1} ({pf.top5_probs[0]:.0%}){mark(pf, truth_f)}",
                     "backwards says": f"{pb.top1} ({pb.top5_probs[0]:.0%}){mark(pb, truth_b)}",
                     "max |Δlogit|": f"{delta:.1e}", "order": "blind" if blind else "seen"})
    if rows:  # a static table: its cells wrap, so nothing is cut on a narrow screen
        st.table(rows, hide_index=True)
    proof = [r for r in rows if r["order"] == "blind"]
    for r in proof:
        st.caption(f"{r['model']}: the same frames in reverse order give the same logits (max |Δlogit| = "
                   f"{r['max |Δlogit|']}, float rounding). It averages its frames, so order cannot matter.")
    truth_words = (f"the reversed clip's true label is **{truth_b}** (the dataset's reversed pair of *{truth_f}*)"
                   if truth_b and truth_b != truth_f else
                   f"this class reads the same backwards: the true label stays **{truth_b}**" if truth_b else
                   "the reversed clip's true label is **unknown**: this clip's dataset does not say which class a "
                   "clip becomes when played backwards")
    st.caption(f"Backwards = the same sampled frames in reverse order; {truth_words}.")


reverse = st.toggle("Play the clip backwards too", **S.bind("reverse"),
                    help="Reversing time turns 'left to right' into 'right to left'. A plain TSN averages its "
                         "frames, so the same frames in reverse order give it the same logits; an HF model "
                         "mixes neighbouring frames in order and can tell the difference.")
if models:
    _class_list_warning()
    forward = _predictions(False)
    backward = _predictions(True) if reverse else {}
    if reverse:
        _reversal_summary(forward, backward)
    else:
        _agreement(forward)
    _top5_row(forward, clip.label_name, False)
    if reverse:
        _top5_row(backward, sel.reversed_label, True)
    _scope(forward)
    if forward:
        download_menu(prediction_files(sel, forward, backward or None), "predictions",
                      label="Download the predictions")
else:
    no_models_message()


def _clip_facts(c: ClipChoice) -> None:
    info = c.info
    st.markdown(f"**{c.name}** · source: {c.source}")
    st.markdown(f"The file: {info.source_words()}  \nRead for display: {info.read_words()}")
    for note in info.notes:
        st.caption(f"· {note}")
    seen = sorted({(int(m.checkpoint.config.num_segments), int(m.checkpoint.config.input_size)) for m in models})
    st.markdown("The models see: " + "; ".join(
        f"{n} frames at {s}×{s} px ({' and '.join(m.slot for m in models if (m.checkpoint.config.num_segments, m.checkpoint.config.input_size) == (n, s))})"
        for n, s in seen))
    truth = f"True label: **{c.label_name}**" if c.label_name else "True label: unknown"
    if c.noun_name and any(m.spec is not None for m in models) and c.noun_name != c.label_name:
        truth += f" · its object (the noun): **{c.noun_name}**"
    if reverse:
        truth += f" · backwards: **{sel.reversed_label or 'unknown'}**"
    st.markdown(truth)


left, right = st.columns([2, 3])
with left:
    with guard("The clip cannot be shown as a video (the frames below still show it)"):
        st.video(_browser_mp4(clip.clip_hash, float(clip.info.playback_fps), False, clip.frames), loop=True,
                 autoplay=True, muted=True)
    if reverse:
        with guard("The reversed clip cannot be shown as a video"):
            st.caption("Backwards:")
            st.video(_browser_mp4(clip.clip_hash, float(clip.info.playback_fps), True, clip.frames), loop=True,
                     autoplay=True, muted=True)
with right:
    _clip_facts(clip)

shown: list[tuple[tuple[int, int], LoadedModel]] = []
for m in models:
    key = (int(m.checkpoint.config.num_segments), int(m.checkpoint.config.input_size))
    if key not in [k for k, _ in shown]:
        shown.append((key, m))
for (segments, size), m in shown:
    who = " and ".join(x.label for x in models
                       if (x.checkpoint.config.num_segments, x.checkpoint.config.input_size) == (segments, size))
    with st.expander(f"The {segments} frames {who} sees ({size}×{size} px)", expanded=True):
        for rev in ((False, True) if reverse else (False,)):
            with guard(f"The frames {who} sees cannot be drawn"):
                idx, view = sampled_view(m.checkpoint, clip, rev)
                if reverse:
                    st.caption("backwards (the same frames, last first)" if rev else "forward")
                st.image(list(view), caption=[f"t={i} · frame {j}" for i, j in enumerate(idx)], width=88)

if models and st.toggle("Where this clip lies in the feature maps", key="cl_clip_map", value=False,
                        help="The clip as a star in each model's stored t-SNE map, with its nearest clips of the "
                             "bundle (clip ids, labels, both predictions). Needs the bundles' projections "
                             "(`hfnet project`, or a visit to Feature space)."):
    with guard("This clip cannot be placed in the feature maps"):
        clip_map_section(models, clip)
