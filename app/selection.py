"""ONE selection - models A/B, clip, reversal, layer, frame pair, method, page - filled by the sidebar,
mirrored in the URL, read by every page.

Two layers:

* **Choices** (``choices()``): plain values in ``st.session_state`` - what the user picked, by name
  ("hf_tsn_demo.safetensors", a sample's file name, ``True`` for reversed...). They outlive the widgets
  that set them: Streamlit forgets a widget's state on a run that does not draw it (another page, another
  clip source), so every widget is *bound* to a choice (``bind``) instead of owning it. A reload or a shared
  link fills the choices from the URL once per session (``restore_from_url``); every run writes them back
  (``sync_url``). The page itself is the URL's path (``/gate_maps``).
* **The selection** (``Selection``): the choices resolved - loaded models, the decoded clip - built by the
  sidebar on every run (``app/sidebar.py``) and read by pages through ``current()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import streamlit as st

from app.loaders import ClipChoice, LoadedModel
from hfnet_core.analysis.true_labels import reversed_label

__all__ = [
    "PAGES", "Selection", "choices", "choice", "set_choices", "bind", "restore_from_url", "url_params",
    "sync_url", "current", "publish", "go_to", "pending_page", "open_clip",
]

#: url path -> page file (relative to app/streamlit_app.py)
PAGES = {
    "clip_lab": "views/clip_lab.py",
    "gate_maps": "views/gate_maps.py",
    "feature_space": "views/feature_space.py",
    "class_comparison": "views/class_comparison.py",
    "attributions": "views/attributions.py",
    "model_cards": "views/model_cards.py",
    "how_hf_works": "views/how_hf_works.py",
}
METHODS = ("gradcam", "ig", "saliency")
SOURCES = ("sample", "upload", "root", "bundle")
OTHER = "other"  # model choice: a typed path
NONE = "none"  # model choice: no model in this slot

_STORE = "_hf_choices"
_SELECTION = "_hf_selection"
_GOTO = "_hf_goto"

#: Every choice and its default. Model choices: a listed file name, OTHER (typed path) or NONE.
DEFAULTS: dict[str, Any] = {
    "model_A": None, "model_A_path": "", "model_A_classes": "", "model_A_frames": 8, "model_A_names_from": "",
    "model_B": None, "model_B_path": "", "model_B_classes": "", "model_B_frames": 8, "model_B_names_from": "",
    "clip_source": "sample", "sample": None, "root_file": "", "bundle_clip": None,
    "reverse": False, "layer": None, "pair": 0, "method": "gradcam", "gate_model": "A", "tour": 0,
    "task": "verb",  # what a multi-task model's bundle is shown as: "verb", "noun" or "action"
    "start": 0.0, "start_for": "",  # where a long file's shown span starts (seconds), and for which file
}


# --------------------------------------------------------------------------------------------------
# Choices


def choices() -> dict[str, Any]:
    """This session's choices (created with the defaults on first use)."""
    if _STORE not in st.session_state:
        st.session_state[_STORE] = dict(DEFAULTS)
    return st.session_state[_STORE]


def choice(name: str) -> Any:
    return choices().get(name, DEFAULTS.get(name))


def set_choices(**values: Any) -> None:
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"unknown choices {sorted(unknown)}")
    choices().update(values)


def _copy_widget(name: str, key: str, convert: Callable[[Any], Any] | None) -> None:
    value = st.session_state.get(key)
    choices()[name] = convert(value) if convert else value


def bind(name: str, options: Sequence[Any] | None = None, convert: Callable[[Any], Any] | None = None,
         fallback: Any = None) -> dict[str, Any]:
    """Keyword arguments that tie a widget to the choice ``name``: ``st.toggle("…", **bind("reverse"))``.

    The widget starts from the stored choice (which is first made valid for ``options``: ``fallback``, else
    the first option) and writes every change back to it. Give the widget no ``value``/``index`` of its own.
    """
    key = f"w_{name}"
    value = choice(name)
    if options is not None and value not in options:
        value = fallback if fallback in options else (options[0] if len(options) else None)
        choices()[name] = value
    st.session_state[key] = value
    return {"key": key, "on_change": _copy_widget, "args": (name, key, convert)}


# --------------------------------------------------------------------------------------------------
# URL


def _model_param(slot: str) -> str | None:
    c = choices()
    value = c[f"model_{slot}"]
    if value == NONE:
        return NONE
    if value == OTHER:
        return c[f"model_{slot}_path"] or None
    return value


def url_params() -> dict[str, str]:
    """The choices as URL query parameters (only what differs from an empty session's defaults)."""
    c = choices()
    out: dict[str, str] = {}
    for slot in ("A", "B"):
        v = _model_param(slot)
        if v:
            out[slot.lower()] = v
        if c[f"model_{slot}"] == OTHER:
            if c[f"model_{slot}_classes"]:
                out[f"{slot.lower()}_classes"] = c[f"model_{slot}_classes"]
            out[f"{slot.lower()}_frames"] = str(int(c[f"model_{slot}_frames"]))
        if c[f"model_{slot}_names_from"]:
            out[f"{slot.lower()}_names"] = c[f"model_{slot}_names_from"]
    src = c["clip_source"]
    out["src"] = src
    clip = {"sample": c["sample"], "root": c["root_file"],
            "bundle": (c["bundle_clip"] or {}).get("clip_id")}.get(src)
    if clip:
        out["clip"] = str(clip)
    if float(c["start"] or 0) > 0 and src in ("root", "upload"):
        out["t"] = f"{float(c['start']):g}"
    if c["reverse"]:
        out["rev"] = "1"
    if c["layer"]:
        out["layer"] = str(c["layer"])
    if int(c["pair"] or 0):
        out["pair"] = str(int(c["pair"]))
    if c["method"] != DEFAULTS["method"]:
        out["method"] = c["method"]
    if c["gate_model"] != DEFAULTS["gate_model"]:
        out["gate"] = c["gate_model"]
    if c["task"] != DEFAULTS["task"]:
        out["task"] = c["task"]
    return out


def _int(text: str, default: int, lo: int, hi: int) -> int:
    try:
        return min(max(int(text), lo), hi)
    except (TypeError, ValueError):
        return default


def restore_from_url() -> None:
    """Fill this session's choices from the URL, once per session (a reload or a shared link).

    Unknown or malformed values are ignored (the default stays); names are checked later, where they are
    used (a model path by the path policy, a sample against the shipped list).
    """
    if _STORE in st.session_state:
        return
    q = {k: st.query_params.get(k) for k in st.query_params.keys()}
    c = choices()
    for slot in ("A", "B"):
        v = q.get(slot.lower())
        if v:
            if v == NONE and slot == "B":
                c["model_B"] = NONE
            elif "/" in v or not v.endswith(".safetensors"):
                c[f"model_{slot}"], c[f"model_{slot}_path"] = OTHER, v
            else:
                c[f"model_{slot}"] = v  # a listed name; the sidebar falls back to a typed path if it is not listed
        if q.get(f"{slot.lower()}_classes"):
            c[f"model_{slot}_classes"] = q[f"{slot.lower()}_classes"]
        if q.get(f"{slot.lower()}_frames"):
            c[f"model_{slot}_frames"] = _int(q[f"{slot.lower()}_frames"], 8, 1, 64)
        if q.get(f"{slot.lower()}_names") in ("A", "B"):
            c[f"model_{slot}_names_from"] = q[f"{slot.lower()}_names"]
    src = q.get("src")
    if src in SOURCES:
        c["clip_source"] = src
    clip = q.get("clip")
    if clip:
        if c["clip_source"] == "sample":
            c["sample"] = clip
        elif c["clip_source"] == "root":
            c["root_file"] = clip
        elif c["clip_source"] == "bundle":
            c["bundle_clip"] = {"clip_id": clip, "path": None}  # the path comes from the bundle, never the URL
    if c["clip_source"] == "bundle" and not c["bundle_clip"]:
        c["clip_source"] = "sample"
    if q.get("t") and c["clip_source"] == "root":
        try:
            c["start"], c["start_for"] = max(0.0, float(q["t"])), f"root:{c['root_file'].strip()}"
        except ValueError:
            pass
    c["reverse"] = q.get("rev") in ("1", "true", "yes")
    if q.get("layer"):
        c["layer"] = q["layer"]
    if q.get("pair"):
        c["pair"] = _int(q["pair"], 0, 0, 1023)
    if q.get("method") in METHODS:
        c["method"] = q["method"]
    if q.get("gate") in ("A", "B"):
        c["gate_model"] = q["gate"]
    if q.get("task") in ("verb", "noun", "action"):
        c["task"] = q["task"]
    c["_from_url"] = bool(q)


def sync_url() -> None:
    """Write the choices into the URL (only when they changed, so a rerun sends nothing new)."""
    want = url_params()
    have = {k: st.query_params.get(k) for k in st.query_params.keys()}
    if have != want:
        st.query_params.from_dict(want)


# --------------------------------------------------------------------------------------------------
# The resolved selection


@dataclass(frozen=True)
class Selection:
    """What every page looks at, resolved on this run."""

    a: LoadedModel | None
    b: LoadedModel | None
    clip: ClipChoice | None
    clip_error: str | None
    reverse: bool
    layer: str | None
    pair: int
    method: str
    page: str

    @property
    def models(self) -> list[LoadedModel]:
        return [m for m in (self.a, self.b) if m is not None]

    @property
    def class_names(self) -> list[str]:
        return self.models[0].class_names if self.models else []

    @property
    def comparable(self) -> bool:
        """Both models loaded and sharing one class list, in order."""
        return self.a is not None and self.b is not None and self.a.class_names == self.b.class_names

    @property
    def reversed_label(self) -> str | None:
        """The true label of the clip played backwards, when the dataset's pair map knows it. A multi-task
        model shown as nouns keeps the noun (the same object); as actions, the verb reverses, the noun stays."""
        if self.clip is None:
            return None
        first = self.models[0] if self.models else None
        spec = first.spec if first is not None and first.task in ("noun", "action") else None
        if spec is None:
            return reversed_label(self.clip.label_name, self.class_names)[0]
        label = self.clip.label_name
        if not label:
            return None
        if label in spec.noun_names:
            return label
        if label in spec.verb_names or first.task == "noun":  # a clip labelled by its motion
            return reversed_label(label, spec.verb_names)[0]
        pair = spec.split_action_name(label)
        verb = reversed_label(pair[0], spec.verb_names)[0] if pair else None
        return spec.pair_name(verb, pair[1]) if verb else None

    def true_label(self, reverse: bool) -> str | None:
        if self.clip is None:
            return None
        return self.reversed_label if reverse else self.clip.label_name


def publish(selection: Selection) -> None:
    st.session_state[_SELECTION] = selection


def current() -> Selection:
    """The selection the sidebar resolved on this run (``app/streamlit_app.py`` draws it first)."""
    sel = st.session_state.get(_SELECTION)
    if sel is None:
        raise RuntimeError("no selection yet: pages run inside the explorer, `streamlit run app/streamlit_app.py`")
    return sel


def go_to(page: str) -> None:
    """Ask for another page from a widget callback (callbacks cannot switch pages themselves)."""
    if page not in PAGES:
        raise KeyError(page)
    st.session_state[_GOTO] = page


def pending_page() -> str | None:
    """The page file a callback asked for (once), or None."""
    page = st.session_state.pop(_GOTO, None)
    return PAGES.get(page) if page else None


def open_clip(clip_id: str, path: str | None = None) -> None:
    """Open a clip of an eval bundle (``synth/test/000123``, or a real clip with its path) in Clip lab."""
    set_choices(clip_source="bundle", bundle_clip={"clip_id": str(clip_id), "path": path})
    st.switch_page(PAGES["clip_lab"])
