"""Cached loading: models, eval bundles, clips, model inputs and predictions. No widgets here.

Shared by every browser session of the server process (safe because nothing shared is ever written):
* ``st.cache_resource`` - models (one per file, mtime and device), eval bundles (one per file and mtime,
  arrays made read-only) and decoded clip files (read-only frames). Never a per-session copy: a 25k-clip
  bundle costs its memory once per process, not once per browser.
* ``st.cache_data`` - the small things computed from them: sampled model inputs and predictions, keyed by
  checkpoint sha256 + class list + clip hash (+ reversal).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from app.model_facts import hf_blocks, model_kind
from app.settings import data_root, file_stamp, max_upload_bytes, samples_dir
from hfnet_core.analysis.clips import ClipError, decode_clip, frames_hash, parse_synth_clip_id, resolve_clip, \
    sampled_frames
from hfnet_core.analysis.inference import ClipPrediction, run_clip
from hfnet_core.analysis.task_view import bundle_task_spec, task_view, view_class_names
from hfnet_core.checkpoint import LoadedCheckpoint, load_checkpoint
from hfnet_core.errors import BundleError, CheckpointError, HfnetError
from hfnet_core.eval_bundle import EvalBundle
from hfnet_core.multitask import TaskSpec

__all__ = [
    "LoadedModel", "ClipInfo", "ClipChoice", "load_model", "load_bundle", "find_bundle", "attach_bundle",
    "read_classes_file", "with_class_names", "sample_entries", "sample_title", "sample_clip", "synth_clip", "file_clip",
    "upload_clip", "bundle_clip", "sampled", "sampled_input", "sampled_view", "predict", "shown_task",
]

#: Frames per second of a regenerated SynthSomething clip (it has no file to say).
SYNTH_PLAYBACK_FPS = 4.0


# --------------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint in one slot of the explorer ("A" or "B"), with its eval bundle when one is found."""

    checkpoint: LoadedCheckpoint
    slot: str  # "A" | "B"
    name: str  # the file's stem: "hf_tsn_demo"
    bundle: EvalBundle | None = None
    bundle_path: str | None = None
    names_source: str = "checkpoint"  # where the class names come from: "checkpoint", a file, "model A"
    #: a multi-task model (hfnet_core/multitask.py): the task the explorer shows ("verb", "noun", "action");
    #: ``bundle`` is then that task's view of ``task_source`` (hfnet_core/analysis/task_view.py)
    task: str | None = None
    task_source: EvalBundle | None = None

    @functools.cached_property
    def spec(self) -> TaskSpec | None:
        """Its verbs, nouns and actions when the model is multi-task, else None."""
        return TaskSpec.from_model(self.checkpoint.config, self.checkpoint.class_names)

    @property
    def view_key(self) -> str:
        """The bundle as shown: its file, and the task for a multi-task model (keys of derived caches)."""
        return f"{self.bundle_path}" + (f"#{self.task}" if self.task else "")

    @property
    def label(self) -> str:
        """"A · hf_tsn_demo": how pages name the model."""
        return f"{self.slot} · {self.name}"

    @property
    def kind(self) -> str:
        return model_kind(self.checkpoint)

    @property
    def has_hf(self) -> bool:
        return bool(hf_blocks(self.checkpoint))

    @functools.cached_property
    def class_names(self) -> list[str]:
        """The classes the explorer shows: the checkpoint's, or the shown task's for a multi-task model."""
        spec = self.spec if self.task else None
        if spec is None:
            return list(self.checkpoint.class_names)
        try:
            return view_class_names(spec, self.task)
        except ValueError:  # no action view (no action classifier, too many pairs): the sidebar shows its verbs
            return list(spec.verb_names)

    @property
    def key(self) -> str:
        """Cache key of everything this model computes: weights + class list."""
        return model_key(self.checkpoint)


def model_key(checkpoint: LoadedCheckpoint) -> str:
    names = hashlib.sha1("\n".join(checkpoint.class_names).encode()).hexdigest()[:12]
    return f"{checkpoint.sha256}:{names}"


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def _load_model_cached(path: str, device_name: str, stamp: tuple[int, int],
                       import_options: tuple[tuple[str, Any], ...]) -> LoadedCheckpoint:
    return load_checkpoint(path, device=device_name, **dict(import_options))


def load_model(path: Path, device: str = "cpu", **import_options: Any) -> LoadedCheckpoint:
    """A checkpoint (native ``.safetensors`` or a foreign file via the importers), once per process.

    ``path`` has passed ``settings.model_path``. Raises ``CheckpointError``; the cache key includes the
    file's mtime so a retrained file is picked up.
    """
    try:
        return _load_model_cached(str(path), device, file_stamp(path), tuple(sorted(import_options.items())))
    except HfnetError:
        raise
    except ImportError as e:
        raise CheckpointError(path, f"is not an hfnet checkpoint and the importers are unavailable ({e}).") from e
    except (ValueError, TypeError, KeyError, RuntimeError, OSError) as e:
        raise CheckpointError(path, f"cannot be loaded ({type(e).__name__}: {e}).") from e


def read_classes_file(path: Path, expected: int) -> list[str]:
    """Class names from a Something-v1 ``category.txt`` (one name per line) or a JSON list.

    Raises ``CheckpointError`` when the file cannot be read or its count is not ``expected``.
    """
    if path.stat().st_size > 8 * 2**20:
        raise CheckpointError(path, "is over 8 MB; a class-names file is a short list.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"cannot be read as UTF-8 text ({e}).") from e
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise CheckpointError(path, f"is not valid JSON ({e}).") from e
        if isinstance(data, dict):
            data = data.get("classes") or data.get("class_names")
        if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
            raise CheckpointError(path, "must hold a JSON list of class names (or {\"classes\": [...]}).")
        names = [n.strip() for n in data]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != expected:
        raise CheckpointError(path, f"lists {len(names)} class names; the model has {expected} classes.",
                              "Give the category file the model was trained with (one name per line).")
    return names


def with_class_names(checkpoint: LoadedCheckpoint, names: list[str]) -> LoadedCheckpoint:
    """The same (shared, unmodified) model under other class names."""
    if len(names) != len(checkpoint.class_names):
        raise CheckpointError(checkpoint.path, f"has {len(checkpoint.class_names)} classes, not {len(names)}.")
    return dataclasses.replace(checkpoint, class_names=list(names))


@st.cache_resource(show_spinner="Loading eval bundle…", max_entries=16)
def _load_bundle_cached(path: str, stamp: tuple[int, int]) -> EvalBundle:
    bundle = EvalBundle.load(path)
    for arr in (bundle.labels, bundle.logits, bundle.features):
        arr.setflags(write=False)  # shared by every session: nobody may write into it
    _hash_soon(path)
    return bundle


def _hash_soon(path: str) -> None:
    """The bundle's sha256 (what its projection sets are found by) in a background thread, once per loaded
    bundle: hashing releases the GIL, and Feature space's first visit then finds it memoised (~0.2 s per
    100 MB bundle otherwise, on that visit)."""
    import threading

    from hfnet_core.analysis.projection_store import bundle_sha256

    def run() -> None:
        try:
            bundle_sha256(path)
        except OSError:
            pass  # the page that needs it says what is wrong with the file

    threading.Thread(target=run, name="hfnet-bundle-sha256", daemon=True).start()


def load_bundle(path: Path) -> EvalBundle:
    """An eval bundle, once per process (path + mtime/size). Raises ``BundleError``."""
    if not path.is_file():
        raise BundleError(f"{path}: no such eval bundle.")
    return _load_bundle_cached(str(path.resolve()), file_stamp(path))


def find_bundle(checkpoint_path: Path) -> Path | None:
    """``<stem>.test.npz`` next to the checkpoint, else the first ``<stem>.*.npz``."""
    test = checkpoint_path.with_name(f"{checkpoint_path.stem}.test.npz")
    if test.is_file():
        return test
    others = sorted(checkpoint_path.parent.glob(f"{checkpoint_path.stem}.*.npz"))
    return others[0] if others else None


def attach_bundle(slot: str, path: Path, ckpt: LoadedCheckpoint, names_source: str = "checkpoint"
                  ) -> tuple[LoadedModel, str | None]:
    """The model in its slot with the bundle found next to it (if its classes match); a warning or None."""
    bundle, bundle_path, warn = None, None, None
    bp = find_bundle(path)
    if bp is not None:
        try:
            bundle, bundle_path = load_bundle(bp), str(bp)
            if bundle.class_names != ckpt.class_names:
                warn = f"{bp.name}: its classes differ from the model's; ignoring this bundle."
                bundle, bundle_path = None, None
        except HfnetError as e:
            warn = str(e)
    return LoadedModel(ckpt, slot, path.stem, bundle, bundle_path, names_source), warn


# --------------------------------------------------------------------------------------------------
# Clips


@dataclass(frozen=True)
class ClipInfo:
    """The clip as it is (the file) and as the explorer read it (for display and for the models)."""

    width: int
    height: int
    fps: float | None  # the file's frame rate (the mean rate of a variable-frame-rate file)
    duration_s: float | None
    num_frames: int  # coded frames in the file
    read_frames: int
    read_width: int
    read_height: int
    playback_fps: float  # replays the kept frames at the file's real speed
    notes: tuple[str, ...] = ()  # why what was read differs from the file; header claims not backed by evidence
    span_s: tuple[float, float] | None = None  # the kept span in seconds, when it is not the whole file
    variable_frame_rate: bool = False

    def source_words(self) -> str:
        dur = f" · {self.duration_s:.1f} s" if self.duration_s else ""
        rate = ("" if not self.fps else f" · {self.fps:.3g} fps"
                + (" on average (variable frame rate)" if self.variable_frame_rate else ""))
        return f"{self.num_frames} frames · {self.width}×{self.height} px{rate}{dur}"

    def read_words(self) -> str:
        span = f" · {self.span_s[0]:.1f}–{self.span_s[1]:.1f} s of it" if self.span_s else ""
        return (f"{self.read_frames} frames · {self.read_width}×{self.read_height} px · plays at "
                f"{self.playback_fps:.3g} fps{span}")


@dataclass(frozen=True)
class ClipChoice:
    """The clip every page looks at."""

    name: str
    frames: np.ndarray = field(repr=False)  # uint8 (T, H, W, 3) RGB, read-only: what was read
    label_name: str | None
    source: str  # "sample" | "upload" | "data_root" | "bundle"
    clip_hash: str
    info: ClipInfo
    path: str | None = None
    clip_id: str | None = None
    dataset: str | None = None  # the dataset the clip comes from, when known ("synth", ...)
    #: the clip's noun (SynthSomething's verb / noun view: the object's shape) when its source says it
    noun_name: str | None = None


def _frozen(frames: np.ndarray) -> np.ndarray:
    frames = np.ascontiguousarray(frames)
    frames.setflags(write=False)
    return frames


def _synth_info(frames: np.ndarray, fps: float) -> ClipInfo:
    t, h, w, _ = frames.shape
    return ClipInfo(w, h, fps, t / fps, t, t, w, h, fps)


@st.cache_resource(show_spinner="Decoding the clip…", max_entries=32)
def _decode_file_cached(path: str, stamp: tuple[int, int], shown: str, start_s: float | None
                        ) -> tuple[np.ndarray, ClipInfo]:
    return _decode(Path(path), shown, start_s)


def _decode(path: Path, shown: str, start_s: float | None = None) -> tuple[np.ndarray, ClipInfo]:
    """Frames + what the file holds and what was kept of it. The one place that calls the video decoder.

    A span longer than the explorer keeps is shown from ``start_s`` at its real frame rate (never thinned
    out): the user moves the start to see the rest.
    """
    clip = decode_clip(path, name=shown, start=start_s or None, fit="span")
    src = clip.source
    t, h, w, _ = clip.frames.shape
    a, b = clip.span_seconds
    info = ClipInfo(src.width, src.height, src.mean_fps if src.variable_frame_rate else (src.fps or src.mean_fps),
                    src.duration, src.num_frames, t, w, h, float(clip.playback_fps), tuple(clip.reasons + clip.notes),
                    None if clip.is_whole_clip else (a, b), bool(src.variable_frame_rate))
    return _frozen(clip.frames), info


def sample_entries() -> list[dict[str, Any]]:
    """``samples.json`` entries whose file exists: {file, label, title, clip_id?, ...}, plus its dataset."""
    d = samples_dir()
    try:
        data = json.loads((d / "samples.json").read_text())
    except (OSError, ValueError):
        return []
    items = data.get("clips", data) if isinstance(data, dict) else data
    dataset = data.get("dataset") if isinstance(data, dict) else None
    out = []
    for e in items if isinstance(items, list) else []:
        if isinstance(e, dict) and (d / str(e.get("file", ""))).is_file():
            out.append({**e, "_dataset": dataset})
    return out


def sample_title(entry: dict[str, Any]) -> str:
    return str(entry.get("title") or entry.get("label") or entry["file"])


def sample_clip(entry: dict[str, Any]) -> ClipChoice:
    path = samples_dir() / str(entry["file"])
    frames, info = _decode_file_cached(str(path.resolve()), file_stamp(path), path.name, None)
    dataset = "synth" if str(entry.get("_dataset") or "").lower() in ("synthsomething", "synth") else entry.get("_dataset")
    noun = entry.get("noun") if isinstance(entry.get("noun"), str) else None
    return ClipChoice(sample_title(entry), frames, entry.get("label"), "sample", frames_hash(frames), info,
                      str(path), entry.get("clip_id"), dataset, noun)


def synth_clip(clip_id: str, size: int = 112, num_frames: int = 8, metadata: dict[str, Any] | None = None,
               label: str | None = None) -> ClipChoice:
    """A SynthSomething clip regenerated from its id (``synth/test/000123``)."""
    frames, synth_label = resolve_clip(clip_id, None, metadata or {}, size=size, num_frames=num_frames)
    frames = _frozen(frames)
    return ClipChoice(clip_id, frames, label or synth_label, "bundle", frames_hash(frames),
                      _synth_info(frames, SYNTH_PLAYBACK_FPS), clip_id, clip_id, "synth")


def file_clip(path: Path, start_s: float | None = None) -> ClipChoice:
    """A clip file under the data root (already through ``settings.clip_path``), from ``start_s`` seconds."""
    frames, info = _decode_file_cached(str(path), file_stamp(path), path.name, start_s)
    return ClipChoice(path.name, frames, None, "data_root", frames_hash(frames), info, str(path))


def upload_clip(name: str, data: bytes, start_s: float | None = None) -> ClipChoice:
    """Validate an uploaded file and decode it (from ``start_s`` seconds) from a private temporary folder
    deleted right after.

    Raises ``ClipError``: over the upload limit, empty, or what the decoder finds wrong (the decoder applies
    the same limits as the command line: resolution, a time cap, evidence of truncation).
    """
    limit = max_upload_bytes()
    if len(data) > limit:
        raise ClipError(f"{name}: {len(data) / 2**20:.1f} MB is over the {limit / 2**20:.0f} MB upload limit.")
    if not data:
        raise ClipError(f"{name}: the file is empty.")
    suffix = Path(name).suffix.lower()
    suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 6 else ".bin"
    with tempfile.TemporaryDirectory(prefix="hfnet_upload_") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        frames, info = _decode(path, name, start_s)
    return ClipChoice(name, frames, None, "upload", frames_hash(frames), info)


def bundle_clip(clip_id: str, path: str | None, models: list[LoadedModel]) -> ClipChoice:
    """A clip named in a loaded model's eval bundle: regenerated (synth ids) or read under the data root.

    A synthetic clip is rendered at the model's input size and frame count, as ``hfnet eval`` does.
    """
    meta: dict[str, Any] = {}
    label = None
    size, frames_per_clip = 112, 8
    if models:
        cfg = models[0].checkpoint.config
        size, frames_per_clip = int(cfg.input_size), int(cfg.num_segments)
    for m in models:
        if m.bundle is not None and clip_id in m.bundle.clip_ids:
            meta = m.bundle.metadata
            cfg = m.checkpoint.config
            size, frames_per_clip = int(cfg.input_size), int(cfg.num_segments)
            i = m.bundle.clip_ids.index(clip_id)
            path = path or m.bundle.paths[i] or None
            if m.bundle.labels[i] >= 0:
                label = m.bundle.class_names[int(m.bundle.labels[i])]
            break
    if parse_synth_clip_id(clip_id) is not None:
        return synth_clip(clip_id, size, frames_per_clip, meta, label)
    from app.settings import clip_path

    if data_root() is None:
        raise ClipError(f"{clip_id}: real clips open only from under a data root; set HFNET_DATA_ROOT.")
    if not path:
        raise ClipError(f"clip {clip_id!r} is not a SynthSomething id and its bundle records no file path.")
    real = file_clip(clip_path(path))
    return dataclasses.replace(real, name=clip_id, label_name=label, source="bundle", clip_id=clip_id,
                               dataset=meta.get("dataset"))


# --------------------------------------------------------------------------------------------------
# What a model sees, and what it says


@st.cache_data(show_spinner=False, max_entries=64)
def _sampled_cached(key: str, clip_hash: str, num_segments: int, size: int, conv: str,
                    _frames: np.ndarray, _model: Any) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    idx, view = sampled_frames(_frames, num_segments, size)
    x = _model.input_convention.to_model_input(view).unsqueeze(0)
    return idx, view, x


def sampled(checkpoint: LoadedCheckpoint, clip: ClipChoice, reverse: bool = False
            ) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(frame indices, uint8 frames as the model sees them (T, S, S, 3), model input (1, T, 3, S, S)).

    ``reverse``: the same T frames in reverse order - what "playing the clip backwards" means here, so a
    TSN sees exactly the same frames and its logits agree up to float rounding.
    """
    cfg = checkpoint.config
    conv = json.dumps(checkpoint.model.input_convention.to_dict(), sort_keys=True)
    idx, view, x = _sampled_cached(checkpoint.sha256, clip.clip_hash, int(cfg.num_segments), int(cfg.input_size),
                                   conv, clip.frames, checkpoint.model)
    if reverse:
        return idx[::-1].copy(), np.ascontiguousarray(view[::-1]), torch.flip(x, dims=[1])
    return idx, view, x


def sampled_input(checkpoint: LoadedCheckpoint, clip: ClipChoice, reverse: bool = False) -> torch.Tensor:
    return sampled(checkpoint, clip, reverse)[2]


def sampled_view(checkpoint: LoadedCheckpoint, clip: ClipChoice, reverse: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    idx, view, _ = sampled(checkpoint, clip, reverse)
    return idx, view


@st.cache_data(show_spinner=False, max_entries=128)
def _predict_cached(key: str, dev: str, clip_hash: str, reverse: bool, _model: LoadedCheckpoint,
                    _clip: ClipChoice) -> ClipPrediction:
    return run_clip(_model, sampled_input(_model, _clip, reverse))


def predict(model: LoadedModel | LoadedCheckpoint, clip: ClipChoice, reverse: bool = False) -> ClipPrediction:
    """``run_clip`` on the clip's sampled input (reversed on request), cached by model + clip; a multi-task
    model in a slot answers as its shown task (``ClipPrediction.for_task``; ``tasks`` holds all three)."""
    ckpt = model.checkpoint if isinstance(model, LoadedModel) else model
    dev = str(next(ckpt.model.parameters()).device)
    pred = _predict_cached(model_key(ckpt), dev, clip.clip_hash, bool(reverse), ckpt, clip)
    spec = model.spec if isinstance(model, LoadedModel) and model.task else None
    return pred.for_task(spec, model.task) if spec is not None else pred


def shown_task(model: LoadedModel, task: str) -> LoadedModel:
    """A multi-task model as the explorer shows it for ``task``: its bundle replaced by that task's view
    (computed once per bundle file and task, shared by every session); other models unchanged."""
    spec = model.spec
    if spec is None:
        return model
    raw = model.task_source if model.task_source is not None else model.bundle
    if raw is None:
        return dataclasses.replace(model, task=task)
    try:
        theirs = bundle_task_spec(raw)
    except BundleError:
        theirs = None
    if theirs != spec:
        raise BundleError(f"{model.bundle_path}: its multi-task metadata ('tasks') does not match the model's "
                          f"verbs, nouns and action classes, so its labels cannot be read.",
                          path=model.bundle_path, hint="Evaluate the checkpoint again with `hfnet eval`.")
    try:
        if model.bundle_path:
            path = Path(model.bundle_path)
            view = _task_view_cached(str(path.resolve()), file_stamp(path), task, raw)
        else:
            view = task_view(raw, task)
    except BundleError as e:
        raise BundleError(f"{model.bundle_path or 'the eval bundle'}: {e}", path=model.bundle_path) from e
    return dataclasses.replace(model, bundle=view, task=task, task_source=raw)


@st.cache_resource(show_spinner="Cutting the multi-task bundle into its tasks…", max_entries=16)
def _task_view_cached(path: str, stamp: tuple[int, int], task: str, _raw: EvalBundle) -> EvalBundle:
    return task_view(_raw, task)
