"""Shared explorer state: which two models and which clip every page looks at.

Pages import from here (``from app.state import get_models, get_clip, ...``) and stay thin: read state,
call ``hfnet_core``, draw. ``streamlit_app.py`` calls ``render_sidebar()`` on every run before the page.

Caching (safe for many browser sessions at once):
* ``load_model`` - ``st.cache_resource``: one model per (file, mtime, device) per process, shared by all
  sessions. Models are only ever used under ``torch.inference_mode()`` and return what they compute
  (``model.inspect``), so sharing is safe.
* ``load_bundle``, decoded sample files, ``sampled_input`` and ``predict`` - ``st.cache_data``: keyed by
  path + mtime or by checkpoint sha256 + clip hash; each caller gets its own copy.
* Per-session choices live in ``st.session_state`` (keys prefixed ``hf_`` / ``_hf_``).

Environment: ``HFNET_CHECKPOINT_DIR`` (default ``checkpoints/``), ``HFNET_SAMPLES_DIR`` (default
``checkpoints/samples/``), ``HFNET_DATA_ROOT`` (clips may be opened only from under it),
``HFNET_MAX_UPLOAD_MB`` (default 100), ``HFNET_TORCH_THREADS`` (default 1, see ``configure_torch``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from hfnet_core.analysis.clips import ClipError, decode_video, frames_hash, resolve_clip, safe_join, sampled_frames
from hfnet_core.analysis.inference import ClipPrediction, run_clip
from hfnet_core.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from hfnet_core.eval_bundle import BundleError, EvalBundle

__all__ = [
    "LoadedModel",
    "ClipChoice",
    "render_sidebar",
    "get_models",
    "get_clip",
    "clip_error",
    "load_model",
    "load_bundle",
    "find_bundle",
    "sampled_input",
    "sampled_view",
    "predict",
    "request_clip",
    "device",
    "configure_torch",
    "checkpoint_dir",
    "samples_dir",
    "data_root",
]

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_A = "hf_tsn_demo.safetensors"
DEFAULT_B = "tsn_demo.safetensors"
MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".tar", ".ckpt")
_OTHER = "Other file (type a path)…"
_NONE = "(none)"
SRC_SAMPLE, SRC_UPLOAD, SRC_ROOT, SRC_OPENED = "Sample clip", "Upload a video", "File under the data root", "Opened from another page"


# --------------------------------------------------------------------------------------------------
# Data types


@dataclass
class LoadedModel:
    checkpoint: LoadedCheckpoint
    label: str  # "A · hf_tsn_demo"
    bundle: EvalBundle | None = None  # the test-split eval bundle next to the checkpoint, if any
    bundle_path: str | None = None
    slot: str = "A"

    @property
    def has_hf(self) -> bool:
        return bool(self.checkpoint.model.hf_blocks)


@dataclass
class ClipChoice:
    name: str
    frames_all: np.ndarray  # uint8 (T, H, W, 3) RGB, for display
    label_name: str | None
    source: str  # "sample" | "upload" | "data_root" | "bundle"
    clip_hash: str
    path: str | None = None
    fps: float = 12.0
    clip_id: str | None = None


# --------------------------------------------------------------------------------------------------
# Configuration


def checkpoint_dir() -> Path:
    return Path(os.environ.get("HFNET_CHECKPOINT_DIR") or REPO_ROOT / "checkpoints").expanduser()


def samples_dir() -> Path:
    return Path(os.environ.get("HFNET_SAMPLES_DIR") or REPO_ROOT / "checkpoints" / "samples").expanduser()


def data_root() -> Path | None:
    root = os.environ.get("HFNET_DATA_ROOT")
    return Path(root).expanduser().resolve() if root else None


def max_upload_bytes() -> int:
    return int(float(os.environ.get("HFNET_MAX_UPLOAD_MB", "100")) * 1024 * 1024)


def configure_torch() -> None:
    """One intra-op thread per inference (``HFNET_TORCH_THREADS``, default 1).

    The server runs each browser session in its own thread; on a small shared CPU, several sessions each
    asking torch for every core oversubscribe it. Measured on this 2-core machine under load: two demo
    ``inspect`` passes took 1.7-2.8 s with 2 threads and 0.08-0.2 s with 1.
    """
    want = int(os.environ.get("HFNET_TORCH_THREADS", "1") or 1)
    if want > 0 and torch.get_num_threads() != want:
        torch.set_num_threads(want)


def device() -> str:
    """CUDA when available, else CPU."""
    from hfnet_core.device import pick_device

    return str(pick_device())


def list_checkpoints() -> list[Path]:
    d = checkpoint_dir()
    return sorted(p for p in d.glob("*.safetensors") if p.is_file()) if d.is_dir() else []


def _stamp(path: Path) -> tuple[int, int]:
    s = path.stat()
    return s.st_mtime_ns, s.st_size


# --------------------------------------------------------------------------------------------------
# Cached loading


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def _load_model_cached(path: str, device_name: str, stamp: tuple[int, int],
                       import_options: tuple[tuple[str, Any], ...]) -> LoadedCheckpoint:
    return load_checkpoint(path, device=device_name, **dict(import_options))


def load_model(path: str, device: str = "cpu", **import_options: Any) -> LoadedCheckpoint:
    """A checkpoint (native ``.safetensors`` or a foreign file via the importers), once per process.

    Raises ``CheckpointError`` with a message for the user; the cache key includes the file's mtime so a
    retrained file is picked up.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "no such file.", "Check the path.")
    try:
        return _load_model_cached(str(p.resolve()), device, _stamp(p), tuple(sorted(import_options.items())))
    except CheckpointError:
        raise
    except ImportError as e:
        raise CheckpointError(p, f"is not an hfnet checkpoint and the importers are unavailable ({e}).") from e
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as e:
        raise CheckpointError(p, f"cannot be loaded ({type(e).__name__}: {e}).") from e


@st.cache_data(show_spinner=False, max_entries=16)
def _load_bundle_cached(path: str, stamp: tuple[int, int]) -> EvalBundle:
    return EvalBundle.load(path)


def load_bundle(path: str) -> EvalBundle:
    """An eval bundle, cached by path + mtime/size. Raises ``BundleError``."""
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"{p}: no such eval bundle.")
    return _load_bundle_cached(str(p.resolve()), _stamp(p))


def find_bundle(checkpoint_path: str | Path) -> Path | None:
    """``<stem>.test.npz`` next to the checkpoint, else the first ``<stem>.*.npz``."""
    p = Path(checkpoint_path)
    test = p.with_name(f"{p.stem}.test.npz")
    if test.is_file():
        return test
    others = sorted(p.parent.glob(f"{p.stem}.*.npz"))
    return others[0] if others else None


@st.cache_data(show_spinner=False, max_entries=32)
def _decode_file_cached(path: str, stamp: tuple[int, int]) -> tuple[np.ndarray, float]:
    return decode_video(path)


def _make_loaded(slot: str, path: Path, ckpt: LoadedCheckpoint) -> tuple[LoadedModel, str | None]:
    bundle, bundle_path, warn = None, None, None
    bp = find_bundle(path)
    if bp is not None:
        try:
            bundle, bundle_path = load_bundle(str(bp)), str(bp)
            if bundle.class_names != ckpt.class_names:
                warn = f"{bp.name}: its classes differ from the checkpoint's; ignoring this bundle."
                bundle, bundle_path = None, None
        except BundleError as e:
            warn = str(e)
    return LoadedModel(ckpt, f"{slot} · {path.stem}", bundle, bundle_path, slot), warn


# --------------------------------------------------------------------------------------------------
# Sidebar


def _default_choice(slot: str, names: list[str]) -> str:
    if slot == "A":
        if DEFAULT_A in names:
            return DEFAULT_A
        hf = [n for n in names if n.startswith("hf")]
        return hf[0] if hf else (names[0] if names else _OTHER)
    if DEFAULT_B in names:
        return DEFAULT_B
    rest = [n for n in names if not n.startswith("hf")]
    return rest[0] if rest else _NONE


def _model_path_from_choice(slot: str, choice: str) -> Path | None:
    if choice == _NONE:
        return None
    if choice != _OTHER:
        return checkpoint_dir() / choice
    typed = (st.session_state.get(f"hf_model_{slot}_path") or "").strip()
    if not typed:
        return None
    return _checked_model_path(typed)


def _checked_model_path(typed: str) -> Path:
    """A typed checkpoint path: relative to the checkpoint dir, and only under it or the data root.

    ``..`` is normalised away before the check; symlinks placed inside the checkpoint folder (by whoever
    runs the app) are followed, as they are for the files listed in the picker.
    """
    p = Path(typed).expanduser()
    if not p.is_absolute():
        p = checkpoint_dir() / p
    p = Path(os.path.abspath(p))
    roots = [Path(os.path.abspath(checkpoint_dir()))] + ([data_root()] if data_root() else [])
    if not any(p.is_relative_to(r) for r in roots):
        raise CheckpointError(p, "is outside the checkpoint folder"
                              + (" and the data root" if data_root() else "") + ".",
                              f"Copy it into {checkpoint_dir()} (or set HFNET_CHECKPOINT_DIR).")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise CheckpointError(p, f"has an unexpected extension; expected one of {', '.join(MODEL_SUFFIXES)}.")
    return p


def _model_picker(slot: str, names: list[str]) -> LoadedModel | None:
    sb = st.sidebar
    options = names + [_OTHER] + ([_NONE] if slot == "B" else [])
    default = _default_choice(slot, names)
    choice = sb.selectbox(f"Model {slot}", options, index=options.index(default), key=f"hf_model_{slot}_choice",
                          help="`.safetensors` files in the checkpoint folder, or a foreign `.pth` "
                               "(TSN/TSM/GSM/mmaction2), converted in memory.")
    if choice == _OTHER:
        sb.text_input(f"Path of model {slot}", key=f"hf_model_{slot}_path",
                      placeholder="my_model.safetensors or tsm_something.pth")
    try:
        path = _model_path_from_choice(slot, choice)
        if path is None:
            return None
        options_kw: dict[str, Any] = {}
        if path.suffix.lower() != ".safetensors":
            options_kw["num_segments"] = int(sb.number_input(
                f"Frames per clip of model {slot}", 1, 64, 8, key=f"hf_model_{slot}_segments",
                help="Foreign checkpoints do not record how many frames they were trained with."))
        ckpt = load_model(str(path), device(), **options_kw)
    except CheckpointError as e:
        sb.error(f"Model {slot}: {e}")
        return None
    loaded, warn = _make_loaded(slot, path, ckpt)
    if warn:
        sb.warning(warn)
    if ckpt.import_report:
        with sb.expander(f"Import report of model {slot}"):
            st.json(ckpt.import_report, expanded=False)
    return loaded


def render_sidebar() -> None:
    """Model A/B pickers, device, clip chooser. Stores the choices for ``get_models`` / ``get_clip``."""
    sb = st.sidebar
    sb.markdown("### Models")
    names = [p.name for p in list_checkpoints()]
    if not names:
        sb.info(f"No `.safetensors` checkpoints in `{checkpoint_dir()}`. Run `make demo-checkpoints`, "
                "or type a path below.")
    a = _model_picker("A", names)
    b = _model_picker("B", names)
    st.session_state["_hf_models"] = (a, b)
    sb.caption(f"Device: **{device()}**" + ("" if torch.cuda.is_available() else " (no CUDA GPU found)"))
    sb.markdown("### Clip")
    _clip_chooser()


# --- clip chooser ---------------------------------------------------------------------------------


def _sample_entries() -> list[dict[str, Any]]:
    """``samples.json`` entries whose file exists: {file, label, clip_id?, ...}."""
    d = samples_dir()
    try:
        data = json.loads((d / "samples.json").read_text())
    except (OSError, ValueError):
        return []
    items = data.get("clips", data) if isinstance(data, dict) else data
    return [e for e in items if isinstance(e, dict) and (d / str(e.get("file", ""))).is_file()]


def _sample_clip(entry: dict[str, Any]) -> ClipChoice:
    path = samples_dir() / str(entry["file"])
    frames, fps = _decode_file_cached(str(path.resolve()), _stamp(path))
    return ClipChoice(str(entry.get("title") or entry.get("label") or path.stem), frames, entry.get("label"),
                      "sample", frames_hash(frames), str(path), fps, entry.get("clip_id"))


def _synth_fallback_ids() -> list[str]:
    from hfnet_core.data.synthetic import SYNTH_CLASSES

    return [f"synth/test/{i:06d}" for i in range(len(SYNTH_CLASSES))]


def _decode_upload(up: Any) -> ClipChoice:
    """Validate an uploaded file, decode it from a private temp dir that is deleted right after."""
    limit = max_upload_bytes()
    if up.size > limit:
        raise ClipError(f"{up.name}: {up.size / 2**20:.1f} MB is over the {limit / 2**20:.0f} MB upload limit.")
    if up.size == 0:
        raise ClipError(f"{up.name}: the file is empty.")
    suffix = Path(up.name).suffix.lower()
    suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ".bin"
    with tempfile.TemporaryDirectory(prefix="hfnet_upload_") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(up.getvalue())
        frames, fps = decode_video(path, name=up.name)
    return ClipChoice(up.name, frames, None, "upload", frames_hash(frames), None, fps)


def _clip_from_request(req: dict[str, Any]) -> ClipChoice:
    clip_id, path = req["clip_id"], req.get("path")
    meta, label, size, frames_per_clip = {}, None, 112, 8
    models = [m for m in (st.session_state.get("_hf_models") or get_models()) if m is not None]
    if models:  # a synthetic clip is rendered at the model's input size and frame count (as `hfnet eval` does)
        size, frames_per_clip = models[0].checkpoint.config.input_size, models[0].checkpoint.config.num_segments
    for m in models:
        if m.bundle is not None and clip_id in m.bundle.clip_ids:
            meta = m.bundle.metadata
            size, frames_per_clip = m.checkpoint.config.input_size, m.checkpoint.config.num_segments
            i = m.bundle.clip_ids.index(clip_id)
            if m.bundle.labels[i] >= 0:
                label = m.bundle.class_names[int(m.bundle.labels[i])]
            break
    from hfnet_core.analysis.clips import parse_synth_clip_id

    if parse_synth_clip_id(clip_id) is None:
        root = data_root()
        if root is None:
            raise ClipError(f"{clip_id}: real clips open only from under a data root; set HFNET_DATA_ROOT.")
        frames, _ = resolve_clip(clip_id, path, meta, data_root=root)
        fps = 12.0
    else:
        frames, synth_label = resolve_clip(clip_id, path, meta, size=size, num_frames=frames_per_clip)
        label = label or synth_label
        fps = 4.0
    return ClipChoice(clip_id, frames, label, "bundle", frames_hash(frames), path, fps, clip_id)


def _clip_chooser() -> None:
    sb = st.sidebar
    if st.session_state.pop("_hf_clip_request_pending", False):
        st.session_state["hf_clip_source"] = SRC_OPENED
    sources = [SRC_SAMPLE, SRC_UPLOAD] + ([SRC_ROOT] if data_root() else [])
    if st.session_state.get("_hf_clip_request"):
        sources.append(SRC_OPENED)
    if st.session_state.get("hf_clip_source") not in sources:
        st.session_state.pop("hf_clip_source", None)
    source = sb.radio("Clip source", sources, key="hf_clip_source")
    clip: ClipChoice | None = None
    error: str | None = None
    try:
        if source == SRC_SAMPLE:
            clip = _choose_sample()
        elif source == SRC_UPLOAD:
            clip = _choose_upload()
        elif source == SRC_ROOT:
            clip = _choose_from_root()
        else:
            req = st.session_state["_hf_clip_request"]
            key = (req["clip_id"], req.get("path"))
            cached = st.session_state.get("_hf_opened_clip")
            if cached is None or cached[0] != key:
                cached = (key, _clip_from_request(req))
                st.session_state["_hf_opened_clip"] = cached
            clip = cached[1]
            sb.caption(f"Opened **{clip.name}**" + (f" · true label: {clip.label_name}" if clip.label_name else ""))
    except ClipError as e:
        error = str(e)
    except Exception as e:  # noqa: BLE001 - any decoding surprise becomes a message, the app keeps working
        error = f"{type(e).__name__}: {e}"
    if error:
        sb.error(error)
    st.session_state["_hf_clip"] = clip
    st.session_state["_hf_clip_error"] = error


def _choose_sample() -> ClipChoice | None:
    entries = _sample_entries()
    if entries:
        by_label = {str(e.get("title") or e.get("label") or e["file"]): e for e in entries}
        label = st.sidebar.selectbox("Sample", list(by_label), key="hf_sample")
        return _sample_clip(by_label.get(label) or entries[0])
    st.sidebar.caption(f"No shipped samples in `{samples_dir()}`; showing generated SynthSomething test clips.")
    ids = _synth_fallback_ids()
    cid = st.sidebar.selectbox("SynthSomething clip", ids, key="hf_sample_synth")
    frames, label = resolve_clip(cid, None, {})
    return ClipChoice(cid, frames, label, "sample", frames_hash(frames), None, 4.0, cid)


def _choose_upload() -> ClipChoice | None:
    up = st.sidebar.file_uploader("Video file (mp4, webm, avi, mov, mkv, gif)", key="hf_upload",
                                  help=f"At most {max_upload_bytes() // 2**20} MB. The file is decoded from a "
                                       "temporary folder and deleted right away.")
    if up is None:
        return None
    cache = st.session_state.get("_hf_upload_cache")
    if cache is None or cache[0] != up.file_id:
        try:
            cache = (up.file_id, _decode_upload(up), None)
        except ClipError as e:
            cache = (up.file_id, None, str(e))
        st.session_state["_hf_upload_cache"] = cache
    if cache[2]:
        raise ClipError(cache[2])
    return cache[1]


def _choose_from_root() -> ClipChoice | None:
    root = data_root()
    assert root is not None
    rel = st.sidebar.text_input("File under the data root", key="hf_root_file",
                                help=f"A path relative to {root}; nothing outside it can be opened.")
    if not rel.strip():
        st.sidebar.caption(f"Data root: `{root}`")
        return None
    path = safe_join(root, rel.strip())
    if not path.is_file():
        raise ClipError(f"{rel}: no such file under the data root.")
    frames, fps = _decode_file_cached(str(path), _stamp(path))
    return ClipChoice(path.name, frames, None, "data_root", frames_hash(frames), str(path), fps)


# --------------------------------------------------------------------------------------------------
# What pages read


def get_models() -> tuple[LoadedModel | None, LoadedModel | None]:
    """Models A and B chosen in the sidebar (None where none is chosen or loading failed)."""
    if "_hf_models" not in st.session_state:  # a page run without the sidebar (tests): the defaults
        names = [p.name for p in list_checkpoints()]
        out: list[LoadedModel | None] = []
        for slot in ("A", "B"):
            choice = _default_choice(slot, names)
            path = checkpoint_dir() / choice
            try:
                out.append(_make_loaded(slot, path, load_model(str(path), device()))[0]
                           if choice not in (_NONE, _OTHER) else None)
            except CheckpointError:
                out.append(None)
        return out[0], out[1]
    return st.session_state["_hf_models"]


def get_clip() -> ClipChoice | None:
    """The clip chosen in the sidebar (default: the first shipped sample)."""
    if "_hf_clip" not in st.session_state:
        try:
            entries = _sample_entries()
            if entries:
                return _sample_clip(entries[0])
            cid = _synth_fallback_ids()[0]
            frames, label = resolve_clip(cid, None, {})
            return ClipChoice(cid, frames, label, "sample", frames_hash(frames), None, 4.0, cid)
        except ClipError:
            return None
    return st.session_state["_hf_clip"]


def clip_error() -> str | None:
    """Why the chosen clip could not be used (shown by pages next to 'choose a clip')."""
    return st.session_state.get("_hf_clip_error")


def request_clip(clip_id: str, path: str | None = None) -> None:
    """Open ``clip_id`` (e.g. ``synth/test/000123``, or a real clip with its ``path``) in the Clip lab."""
    st.session_state["_hf_clip_request"] = {"clip_id": str(clip_id), "path": path}
    st.session_state["_hf_clip_request_pending"] = True
    st.session_state.pop("_hf_opened_clip", None)
    st.switch_page("views/clip_lab.py")


@st.cache_data(show_spinner=False, max_entries=64)
def _sampled_cached(sha: str, clip_hash: str, num_segments: int, size: int, conv: str,
                    _frames: np.ndarray, _model: Any) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    idx, view = sampled_frames(_frames, num_segments, size)
    x = _model.input_convention.to_model_input(view).unsqueeze(0)
    return idx, view, x


def _sampled(model: LoadedCheckpoint, clip: ClipChoice) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    cfg = model.config
    conv = json.dumps(model.model.input_convention.to_dict(), sort_keys=True)
    return _sampled_cached(model.sha256, clip.clip_hash, int(cfg.num_segments), int(cfg.input_size), conv,
                           clip.frames_all, model.model)


def sampled_input(model: LoadedCheckpoint, clip: ClipChoice) -> torch.Tensor:
    """(1, T, 3, S, S) model input: segment-centre sampling, eval resize/crop, the model's convention."""
    return _sampled(model, clip)[2]


def sampled_view(model: LoadedCheckpoint, clip: ClipChoice) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices, uint8 RGB frames as the model sees them (T, S, S, 3))."""
    idx, view, _ = _sampled(model, clip)
    return idx, view


@st.cache_data(show_spinner=False, max_entries=64)
def _predict_cached(sha: str, dev: str, clip_hash: str, _model: LoadedCheckpoint, _clip: ClipChoice) -> ClipPrediction:
    return run_clip(_model, sampled_input(_model, _clip))


def predict(model: LoadedCheckpoint | LoadedModel, clip: ClipChoice) -> ClipPrediction:
    """``run_clip`` on the clip's sampled input, cached by checkpoint sha256 + clip hash."""
    ckpt = model.checkpoint if isinstance(model, LoadedModel) else model
    dev = str(next(ckpt.model.parameters()).device)
    return _predict_cached(ckpt.sha256, dev, clip.clip_hash, ckpt, clip)
