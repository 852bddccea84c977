"""The start of every page: a short header (the app, what A and B are) and the three-step guided tour.

The header is built from the loaded models (their file names and architecture), never from assumptions
about which demo model sits in which slot. The tour runs on the shipped demo setting - samples whose
classes the models know and that have a reversed partner: pick a clip, play it backwards, look at the gate
maps. Each step sets the selection (and the page) through ``app.selection``; nothing is special-cased on
the pages.
"""

from __future__ import annotations

import html
from typing import Any

import streamlit as st

from app import selection as S
from app.loaders import LoadedModel, sample_entries
from app.model_facts import hf_summary, scale_words
from hfnet_core.analysis.true_labels import reversed_label

__all__ = ["render_header", "tour_clip", "TOUR_STEPS"]

TOUR_STEPS = 3


def _who(m: LoadedModel | None, slot: str) -> str:
    chip = f'<span class="hf-chip {slot.lower()}">{slot}</span>'
    if m is None:
        return f'<span class="hf-who">{chip}<i>no model</i></span>'
    return (f'<span class="hf-who">{chip}<b>{html.escape(m.name)}</b>: {html.escape(m.kind)}, '
            f"{html.escape(hf_summary(m.checkpoint))}</span>")


def header_text(sel: S.Selection) -> str:
    """One line: the app, model A, model B, and their scale (once when both share it)."""
    scales = {scale_words(m.checkpoint) for m in sel.models}
    shared = len(scales) == 1
    parts = [_who(m, slot) + ("" if shared or m is None else f" ({html.escape(scale_words(m.checkpoint))})")
             for m, slot in ((sel.a, "A"), (sel.b, "B"))]
    scale = f" · {html.escape(next(iter(scales)))}" if shared else ""
    return ('<div class="hf-header"><b class="hf-app">hfnet explorer</b> — how a video CNN mixes time. '
            + " &nbsp; ".join(parts) + scale + "</div>")


def tour_clip(sel: S.Selection) -> dict[str, Any] | None:
    """The sample the tour starts from: the first one whose class the models know and that has a reversed
    partner ("Moving something from left to right" on the demo pair); None when there is none."""
    if not sel.models:
        return None
    names = sel.class_names
    for e in sample_entries():
        label = e.get("label")
        if label in names and reversed_label(label, names)[0] not in (None, label):
            return e
    return None


def _start(file: str) -> None:
    S.set_choices(tour=1, clip_source="sample", sample=file, reverse=False)
    S.go_to("clip_lab")


def _step(n: int, page: str | None = None, **values: Any) -> None:
    S.set_choices(tour=n, **values)
    if page:
        S.go_to(page)


def _tour_text(step: int, sel: S.Selection, entry: dict[str, Any]) -> str:
    label = entry.get("label")
    back = reversed_label(label, sel.class_names)[0]
    hf = [m for m in sel.models if m.has_hf]
    plain = [m for m in sel.models if not m.has_hf]
    hf_words = f"**{hf[0].label}** ({hf[0].kind})" if hf else "an HF model"
    plain_words = f"**{plain[0].label}** ({plain[0].kind})" if plain else "a plain TSN"
    if step == 1:
        return (f"**Tour 1/3 · One clip, two models.** The sample *{label}* is chosen. Both models see the same "
                "frames (the strip below) and give their top-5 side by side.")
    if step == 2:
        return (f"**Tour 2/3 · Play it backwards.** The same frames in reverse order are *{back}*. {hf_words} "
                f"mixes neighbouring frames in order and can tell; {plain_words} averages its frames, so its "
                "logits do not move - see max |Δlogit|.")
    return (f"**Tour 3/3 · Where HF mixes time.** {hf_words}'s gates, forward and backward side by side: per "
            "position, blue = averaging neighbouring frames, red = differencing them. Scrub or press ▶.")


def _tour_ui(sel: S.Selection, text_at: Any, button_at: Any) -> None:
    entry = tour_clip(sel)
    step = int(S.choice("tour") or 0)
    if entry is None:
        if step:
            S.set_choices(tour=0)
        return
    if not step:
        if not S.choice("_from_url") and sel.page == "clip_lab":  # a first visit, not a shared link
            text_at.caption("New here? Three steps show what HF adds to a TSN on the shipped demo pair.")
        button_at.button("▶ Guided tour (3 steps)", key="tour_start", on_click=_start, args=(str(entry["file"]),),
                         width="stretch")
        return
    box = st.container(border=True)
    text, buttons = box.columns([3, 2], vertical_alignment="center")
    text.markdown(_tour_text(step, sel, entry))
    row = buttons.container(horizontal=True, horizontal_alignment="right")  # buttons wrap, never cut
    if step == 1:
        row.button("Next: play it backwards →", key="tour_next", type="primary", on_click=_step,
                   args=(2, "clip_lab"), kwargs={"reverse": True, "clip_source": "sample", "sample": str(entry["file"])})
    elif step == 2:
        row.button("Next: gate maps →", key="tour_next", type="primary", on_click=_step, args=(3, "gate_maps"),
                   kwargs={"reverse": True})
    else:
        row.button("Back to Clip lab", key="tour_next", on_click=_step, args=(0, "clip_lab"))
    row.button("End tour", key="tour_end", on_click=_step, args=(0,))


def render_header(sel: S.Selection) -> None:
    """The app, what A and B are, and the guided tour (offered, or the current step)."""
    text, button = st.columns([5, 1.4], vertical_alignment="center")
    text.markdown(header_text(sel), unsafe_allow_html=True)
    _tour_ui(sel, text, button)
