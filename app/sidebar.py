"""The sidebar: widgets that return the user's choice - two models, a clip - and the run's ``Selection``.

Each ``*_ui()`` function draws its widgets (bound to ``app.selection`` choices, so they survive page and
source switches and the URL can restore them) and returns what the user chose, already loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from app import selection as S
from app.loaders import (ClipChoice, LoadedModel, attach_bundle, bundle_clip, file_clip, load_model,
                         read_classes_file, sample_clip, sample_entries, sample_title, shown_task, synth_clip,
                         upload_clip, with_class_names)
from app.settings import (DEFAULT_A, DEFAULT_B, checkpoint_dir, clip_path, data_root, device,
                          list_checkpoints, max_upload_bytes, model_path, user_file)
from app.ui import internal_error_text
from hfnet_core.analysis.task_view import has_action_view
from hfnet_core.errors import HfnetError
from hfnet_core.multitask import TASKS

__all__ = ["render_sidebar", "models_ui", "clip_ui"]

_SOURCE_LABELS = {"sample": "Sample clip", "upload": "Upload a video", "root": "File under the data root",
                  "bundle": "Opened from another page"}
_UPLOAD = "_hf_upload"  # (file_id, ClipChoice | None, error | None): the last upload, kept across source switches


# --------------------------------------------------------------------------------------------------
# Models


def _default_model(slot: str, names: list[str]) -> str:
    if slot == "A":
        if DEFAULT_A in names:
            return DEFAULT_A
        hf = [n for n in names if n.startswith("hf")]
        return hf[0] if hf else (names[0] if names else S.OTHER)
    if DEFAULT_B in names:
        return DEFAULT_B
    rest = [n for n in names if not n.startswith("hf")]
    return rest[0] if rest else S.NONE


def _format_model(option: str) -> str:
    return {S.OTHER: "Other file (type a path)…", S.NONE: "(none)"}.get(option, option)


def _model_ui(slot: str, names: list[str]) -> LoadedModel | None:
    """One model slot: a listed checkpoint, a typed path (+ frames, + class names) or none."""
    sb = st.sidebar
    options = names + [S.OTHER] + ([S.NONE] if slot == "B" else [])
    stored = S.choice(f"model_{slot}")
    if stored not in (None, S.OTHER, S.NONE) and stored not in names:  # a name from a link that is not listed
        S.set_choices(**{f"model_{slot}": S.OTHER, f"model_{slot}_path": stored})
    chosen = sb.selectbox(f"Model {slot}", options, format_func=_format_model,
                          help="`.safetensors` files in the checkpoint folder, or a foreign `.pth` "
                               "(TSN/TSM/GSM/mmaction2), converted in memory.",
                          **S.bind(f"model_{slot}", options, fallback=_default_model(slot, names)))
    if chosen == S.NONE:
        return None
    try:
        options_kw: dict[str, Any] = {}
        classes: Path | None = None
        if chosen == S.OTHER:
            typed = sb.text_input(f"Path of model {slot}", placeholder="my_model.safetensors or tsm_something.pth",
                                  **S.bind(f"model_{slot}_path"))
            if not typed.strip():
                return None
            path = model_path(typed)
            names_file = sb.text_input(
                f"Class names of model {slot} (optional)", placeholder="category.txt or classes.json",
                help="Something-v1 `category.txt` (one name per line) or a JSON list, in classifier order. "
                     "Relative to the checkpoint folder.", **S.bind(f"model_{slot}_classes"))
            if names_file.strip():
                classes = user_file(names_file, (".txt", ".json", ".csv", ".lst"), "class-names file")
            if path.suffix.lower() != ".safetensors":
                options_kw["num_segments"] = int(sb.number_input(
                    f"Frames per clip of model {slot}", 1, 64, step=1,
                    help="Foreign checkpoints do not record how many frames they were trained with.",
                    **S.bind(f"model_{slot}_frames", convert=int)))
        else:
            path = model_path(chosen)
        ckpt = load_model(path, device(), **options_kw)
        source = "checkpoint"
        if classes is not None:
            ckpt = with_class_names(ckpt, read_classes_file(classes, len(ckpt.class_names)))
            source = classes.name
    except HfnetError as e:
        sb.error(f"Model {slot}: {e}")
        return None
    except Exception as e:  # noqa: BLE001 - a bug in loading must not end the session
        sb.error(f"Model {slot}: {internal_error_text(e)}")
        return None
    loaded, warn = attach_bundle(slot, path, ckpt, source)
    if warn:
        sb.warning(warn)
    if ckpt.import_report:
        with sb.expander(f"Import report of model {slot}"):
            st.json(ckpt.import_report, expanded=False)
    return loaded


def _generic_names(names: list[str]) -> bool:
    return all(n.startswith("class_") and n[6:].isdigit() for n in names)


def _adopt_ui(a: LoadedModel | None, b: LoadedModel | None) -> tuple[LoadedModel | None, LoadedModel | None]:
    """Models whose class lists differ but whose counts match: offer (never impose) one's names to the other."""
    if a is None or b is None or a.spec is not None or b.spec is not None:  # multi-task: names are per task
        return a, b
    out = {"A": a, "B": b}
    for slot, other in (("A", "B"), ("B", "A")):
        if S.choice(f"model_{slot}_names_from") == other:
            m, src = out[slot], out[other]
            if len(m.class_names) == len(src.class_names):
                out[slot] = LoadedModel(with_class_names(m.checkpoint, src.class_names), m.slot, m.name, None, None,
                                        f"model {other}")
            else:
                S.set_choices(**{f"model_{slot}_names_from": ""})
    a, b = out["A"], out["B"]
    adopted = [s for s in ("A", "B") if S.choice(f"model_{s}_names_from")]
    if adopted:
        s = adopted[0]
        st.sidebar.caption(f"Model {s} uses model {S.choice(f'model_{s}_names_from')}'s class names.")
        st.sidebar.button(f"Use model {s}'s own class names", key=f"names_reset_{s}",
                          on_click=S.set_choices, kwargs={f"model_{s}_names_from": ""})
    elif a.class_names != b.class_names and len(a.class_names) == len(b.class_names):
        slot = "A" if _generic_names(a.class_names) and not _generic_names(b.class_names) else "B"
        other = "B" if slot == "A" else "A"
        st.sidebar.info(f"Models A and B have {len(a.class_names)} classes each, under different names. If model "
                        f"{slot} was trained on the same classes in the same order, it can use model {other}'s "
                        "names.", icon=":material/help:")
        st.sidebar.button(f"Use model {other}'s class names for model {slot}", key=f"names_adopt_{slot}",
                          on_click=S.set_choices, kwargs={f"model_{slot}_names_from": other})
    return a, b


def _task_ui(a: LoadedModel | None, b: LoadedModel | None) -> tuple[LoadedModel | None, LoadedModel | None]:
    """Multi-task models (verb / noun / action): which task every page shows them as; one choice for both
    slots, so two multi-task models - or a multi-task model's verbs and a plain model - compare."""
    multi = [m for m in (a, b) if m is not None and m.spec is not None]
    if not multi:
        return a, b
    sb = st.sidebar
    task = sb.segmented_control(
        "Multi-task models show", list(TASKS),
        help="A multi-task model (EPIC-Kitchens style) predicts a verb, a noun and their pair, the action. "
             "Clip lab shows all three; the other pages show the task chosen here. Actions are ranked by "
             "p(verb) × p(noun), as the EPIC-Kitchens challenge scores them.",
        **S.bind("task", list(TASKS), fallback="verb")) or S.choice("task") or "verb"
    out = []
    for m in (a, b):
        if m is None or m.spec is None:
            out.append(m)
            continue
        mine = task
        if task == "action" and not has_action_view(m.spec):
            mine = "verb"
            sb.caption(f"Model {m.slot} has no action classifier and {m.spec.num_verbs} × {m.spec.num_nouns} "
                       "verb-noun pairs, too many to show as classes: its verbs are shown (Clip lab still "
                       "ranks its actions).")
        try:
            out.append(shown_task(m, mine))
        except HfnetError as e:
            sb.warning(f"Model {m.slot}: {e} Its eval bundle is not used.")
            out.append(dataclasses.replace(m, bundle=None, bundle_path=None, task=mine))
    return out[0], out[1]


def models_ui() -> tuple[LoadedModel | None, LoadedModel | None]:
    """Model A and B pickers; returns the loaded models (None where none is chosen or loading failed)."""
    sb = st.sidebar
    sb.markdown("### Models")
    names = [p.name for p in list_checkpoints()]
    if not names:
        sb.info(f"No `.safetensors` checkpoints in `{checkpoint_dir()}`. Run `make demo-checkpoints`, "
                "or choose “Other file” and type a path.")
    a = _model_ui("A", names)
    b = _model_ui("B", names)
    a, b = _adopt_ui(a, b)
    a, b = _task_ui(a, b)
    sb.caption(f"Device: **{device()}**" + ("" if torch.cuda.is_available() else " (no CUDA GPU found)"))
    return a, b


# --------------------------------------------------------------------------------------------------
# Clip


def _sample_ui() -> ClipChoice | None:
    entries = sample_entries()
    if entries:
        by_file = {str(e["file"]): e for e in entries}
        files = list(by_file)
        chosen = st.sidebar.selectbox("Sample", files, format_func=lambda f: sample_title(by_file[f]),
                                      **S.bind("sample", files))
        return sample_clip(by_file[chosen])
    st.sidebar.caption("No shipped samples found; showing generated SynthSomething test clips.")
    from hfnet_core.data.synthetic import SYNTH_CLASSES

    ids = [f"synth/test/{i:06d}" for i in range(len(SYNTH_CLASSES))]
    cid = st.sidebar.selectbox("SynthSomething clip", ids, **S.bind("sample", ids))
    clip = synth_clip(cid)
    return ClipChoice(clip.name, clip.frames, clip.label_name, "sample", clip.clip_hash, clip.info, None, cid,
                      "synth")


def _start_for(identity: str) -> float:
    """The span start chosen for this file (seconds); 0 for a file seen for the first time."""
    if S.choice("start_for") != identity:
        S.set_choices(start=0.0, start_for=identity)
    return float(S.choice("start") or 0.0)


def _span_ui(clip: ClipChoice | None, can_move: bool = True) -> None:
    """For a file longer than what the explorer keeps: where the shown span starts."""
    info = clip.info if clip is not None else None
    if info is None or not info.duration_s or (info.span_s is None and not S.choice("start")):
        return
    if not can_move:
        st.sidebar.caption("Upload the file again to look at another span of it.")
        return
    st.sidebar.number_input("Show the clip from (seconds)", 0.0, float(info.duration_s), step=1.0, format="%.1f",
                            help="A long file is shown from here, at its real frame rate, as far as the explorer "
                                 "keeps frames; the models sample this span.",
                            **S.bind("start", convert=float))


def _upload_ui() -> ClipChoice | None:
    sb = st.sidebar
    up = sb.file_uploader("Video file (mp4, webm, avi, mov, mkv, gif)", key="w_upload",
                          help=f"At most {max_upload_bytes() // 2**20} MB. The file is decoded from a private "
                               "temporary folder and deleted right away.")
    kept = st.session_state.get(_UPLOAD)
    start = _start_for(f"upload:{up.file_id}") if up is not None else float(S.choice("start") or 0.0)
    if up is not None and (kept is None or kept[0] != (up.file_id, start)):
        try:
            kept = ((up.file_id, start), upload_clip(up.name, up.getvalue(), start or None), None)
        except HfnetError as e:
            kept = ((up.file_id, start), None, str(e))
        st.session_state[_UPLOAD] = kept
    if kept is None:
        return None
    if up is None:  # the uploader forgot the file (another source was shown meanwhile): the upload is kept
        if kept[1] is not None:
            sb.caption(f"Your upload **{kept[1].name}** is kept; upload another file to replace it.")
        if sb.button("Forget this upload", key="upload_forget"):
            st.session_state.pop(_UPLOAD, None)
            st.rerun()
    if kept[2]:
        raise _ShownError(kept[2])
    _span_ui(kept[1], can_move=up is not None)
    return kept[1]


def _root_ui() -> ClipChoice | None:
    root = data_root()
    rel = st.sidebar.text_input("File under the data root", help=f"A path relative to {root}; nothing outside "
                                "it (after following links) can be opened.", **S.bind("root_file"))
    if not rel.strip():
        st.sidebar.caption(f"Data root: `{root}`")
        return None
    path = clip_path(rel)
    clip = file_clip(path, _start_for(f"root:{rel.strip()}") or None)
    _span_ui(clip)
    return clip


def _opened_ui(models: list[LoadedModel]) -> ClipChoice | None:
    req = S.choice("bundle_clip")
    key = (req["clip_id"], req.get("path"), tuple((m.key, m.view_key) for m in models))  # a task's own label
    cached = st.session_state.get("_hf_opened_clip")
    if cached is None or cached[0] != key:
        cached = (key, bundle_clip(req["clip_id"], req.get("path"), models))
        st.session_state["_hf_opened_clip"] = cached
    clip = cached[1]
    st.sidebar.caption(f"Opened **{clip.name}**" + (f" · true label: {clip.label_name}" if clip.label_name else ""))
    return clip


class _ShownError(Exception):
    """An error already worded for the user (kept from an earlier run)."""


def clip_ui(models: list[LoadedModel]) -> tuple[ClipChoice | None, str | None]:
    """Clip source + clip; returns (clip, why it cannot be used)."""
    sb = st.sidebar
    sb.markdown("### Clip")
    sources = ["sample", "upload"] + (["root"] if data_root() else []) + (["bundle"] if S.choice("bundle_clip") else [])
    source = sb.radio("Clip source", sources, format_func=_SOURCE_LABELS.get, **S.bind("clip_source", sources))
    try:
        if source == "sample":
            return _sample_ui(), None
        if source == "upload":
            return _upload_ui(), None
        if source == "root":
            return _root_ui(), None
        return _opened_ui(models), None
    except (HfnetError, _ShownError) as e:
        error = str(e)
    except Exception as e:  # noqa: BLE001 - any decoding surprise becomes a message, the session goes on
        error = internal_error_text(e)
    sb.error(error)
    return None, error


# --------------------------------------------------------------------------------------------------


def render_sidebar(page: str) -> S.Selection:
    """Draw the sidebar and publish this run's selection (``selection.current()``)."""
    S.restore_from_url()
    a, b = models_ui()
    clip, error = clip_ui([m for m in (a, b) if m is not None])
    c = S.choices()
    sel = S.Selection(a, b, clip, error, bool(c["reverse"]), c["layer"], int(c["pair"] or 0), str(c["method"]), page)
    S.publish(sel)
    return sel
