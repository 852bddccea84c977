"""Clips for the explorer: decode a file safely, regenerate a SynthSomething clip by id, make model input.

Frames are uint8 ``(T, H, W, 3)`` RGB (docs/CONTRACTS.md). A model sees ``model_input(frames, config,
convention)``: TSN eval sampling (segment centres), the evaluation resize + centre crop to the model's
``input_size``, then the model's own pixel convention.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfnet_core.data.transforms import eval_transform
from hfnet_core.errors import HfnetError
from hfnet_core.data.video import VideoDecodeError, probe_video, read_frames, sample_indices

__all__ = [
    "ClipError",
    "VIDEO_SUFFIXES",
    "decode_video",
    "frames_hash",
    "sampled_frames",
    "model_input",
    "parse_synth_clip_id",
    "resolve_clip",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".gif")
#: Frames kept for display: longer videos are sampled uniformly down to this many.
MAX_DISPLAY_FRAMES = 300
#: Longer side of decoded frames (keeps memory bounded; >= 224 on the shorter side of usual 4:3/16:9 video).
MAX_DISPLAY_SIDE = 400


class ClipError(HfnetError):
    """A clip the explorer cannot use; the message says which and why, in words for the user."""


def decode_video(path: str | os.PathLike[str], name: str | None = None,
                 max_frames: int = MAX_DISPLAY_FRAMES, max_side: int = MAX_DISPLAY_SIDE) -> tuple[np.ndarray, float]:
    """All frames of a video (sampled to ``max_frames``) and its frame rate; ``ClipError`` when unusable.

    Distinguishes what users can act on: not a video, corrupt, truncated, a single frame.
    ``name`` replaces the path in messages (uploads live in a temp dir the user never saw).
    """
    shown = name or Path(path).name
    try:
        info = probe_video(path)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sampled uniformly to max_frames" is expected here
            frames = read_frames(path, None, max_side=max_side, max_frames=max_frames)
    except VideoDecodeError as e:
        reason = _reason(e.reason, path, shown)
        kind = container_kind(path)
        if kind and reason.startswith("this is not a video"):
            reason = "it is " + kind + " file, but it cannot be decoded: the file is truncated or corrupt" + (
                reason[len("this is not a video file"):])
        raise ClipError(f"{shown}: {reason}") from e
    except (OSError, ValueError, IndexError) as e:
        raise ClipError(f"{shown}: cannot be decoded ({e}).") from e
    if frames.ndim != 4 or len(frames) == 0:
        raise ClipError(f"{shown}: no frame could be decoded - the file may be truncated.")
    if len(frames) < 2:
        raise ClipError(f"{shown}: holds a single frame. Temporal models compare frames over time, "
                        "so they need a video with at least two frames.")
    if info.num_frames > 0 and len(frames) < min(info.num_frames, max_frames) * 0.9 - 1:
        raise ClipError(f"{shown}: truncated - the header announces {info.num_frames} frames but only "
                        f"{len(frames)} could be decoded.")
    fps = float(info.fps) if info.fps else 12.0
    if info.duration and info.num_frames > len(frames):
        fps = max(1.0, len(frames) / info.duration)
    return np.ascontiguousarray(frames), fps


_MAGIC = ((4, b"ftyp", "an MP4/MOV"), (0, b"\x1a\x45\xdf\xa3", "a WebM/Matroska"), (0, b"RIFF", "an AVI"),
          (0, b"GIF8", "a GIF"), (0, b"\x00\x00\x01\xba", "an MPEG"), (0, b"FLV", "an FLV"))


def container_kind(path: str | os.PathLike[str]) -> str | None:
    """What video container the first bytes announce ("an MP4/MOV", ...), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def _reason(reason: str, path: str | os.PathLike[str], shown: str) -> str:
    """FFmpeg's reason in user words, without the (temporary) path and errno noise."""
    r = reason.replace(f"'{path}'", shown).replace(str(path), shown)
    r = re.sub(r"\[Errno -?\d+\] ", "", r).replace(f": {shown})", ")").rstrip(".")
    inner = re.findall(r"\(([^()]*)\)", r)
    detail = f" (FFmpeg: {inner[-1]})" if inner else ""
    low = r.lower()
    if "truncated" in low or "moov" in low:
        return f"the file is truncated or incomplete{detail}."
    if "not a video" in low or "no video stream" in low:
        return f"this is not a video file{detail}." if "no video stream" not in low else f"{r}."
    if "cannot be decoded" in low or "corrupt" in low or "no decoder" in low:
        return f"the video is corrupt - {r}."
    return r + "."


def frames_hash(frames: np.ndarray) -> str:
    """Content hash of a clip (shape + bytes): the cache key of everything computed from it."""
    h = hashlib.sha1(str(frames.shape).encode())
    h.update(np.ascontiguousarray(frames).data)
    return h.hexdigest()[:20]


def sampled_frames(frames: np.ndarray, num_segments: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """TSN eval sampling (segment centres) + the evaluation transform: (indices, uint8 (K, size, size, 3)).

    The transform is ``data.transforms.eval_transform`` (shorter side to size*256/224, centre crop), the
    same one ``hfnet eval`` uses; frames already ``size x size`` (SynthSomething rendered at the model's
    input size) pass unchanged, as in ``hfnet eval``. So the explorer's predictions match the eval bundles.
    """
    idx = sample_indices(len(frames), num_segments, "eval")
    picked = np.ascontiguousarray(frames[idx])
    if picked.shape[1:3] == (size, size):
        return idx, picked
    out, _ = eval_transform(size)(picked, -1)
    return idx, out


def model_input(frames: np.ndarray, config: Any, convention: Any) -> torch.Tensor:
    """uint8 RGB clip -> float ``(1, K, 3, S, S)`` for a model with ``config`` (num_segments, input_size)."""
    _, sampled = sampled_frames(frames, int(config.num_segments), int(config.input_size))
    return convention.to_model_input(sampled).unsqueeze(0)


_SYNTH_ID = re.compile(r"^synth/(train|val|test)/(\d+)$")


def parse_synth_clip_id(clip_id: str) -> tuple[str, int] | None:
    """``synth/test/000123`` -> ("test", 123); None for other ids."""
    m = _SYNTH_ID.match(clip_id.strip())
    return (m.group(1), int(m.group(2))) if m else None


def _meta_int(meta: dict[str, Any], *keys: str, default: int) -> int:
    for k in keys:
        for d in (meta, meta.get("dataset") if isinstance(meta.get("dataset"), dict) else {}):
            if isinstance(d, dict) and d.get(k) is not None:
                return int(d[k])
    return default


def resolve_clip(clip_id: str, path: str | None, bundle_metadata: dict[str, Any] | None = None,
                 data_root: str | os.PathLike[str] | None = None, size: int = 112,
                 num_frames: int = 8) -> tuple[np.ndarray, str | None]:
    """Frames and label name of a clip named in an eval bundle.

    ``synth/<split>/<index>`` clips are regenerated deterministically: dataset seed from the bundle
    metadata (``synth_seed``, default 0); frame size and frames per clip from the metadata when recorded
    (``synth_size``, ``synth_num_frames``), else ``size`` / ``num_frames`` - pass the bundle's model's
    ``input_size`` / ``num_segments``, which is what ``hfnet eval`` renders. Other clips are decoded from
    ``path``, which must lie inside ``data_root`` when one is given. The label of a real file is unknown
    here (None): the caller knows it from the bundle.
    """
    meta = bundle_metadata or {}
    parsed = parse_synth_clip_id(clip_id)
    if parsed is not None:
        from hfnet_core.data.synthetic import SYNTH_CLASSES, SynthSomethingDataset

        split, index = parsed
        size = _meta_int(meta, "synth_size", "size", default=size) or size
        frames_per_clip = _meta_int(meta, "synth_num_frames", "num_frames", default=num_frames) or num_frames
        seed = _meta_int(meta, "synth_seed", "seed", default=0)
        per_class = max(1, index // len(SYNTH_CLASSES) + 1)
        ds = SynthSomethingDataset(split, per_class, num_frames=frames_per_clip, size=size, seed=seed)
        frames, label = ds.raw_clip(index)
        return frames, SYNTH_CLASSES[label]
    if not path:
        raise ClipError(f"clip {clip_id!r} is not a SynthSomething id and has no file path.")
    p = Path(path)
    if data_root is not None:
        p = safe_join(data_root, path)
    frames, _ = decode_video(p)
    return frames, None


def safe_join(root: str | os.PathLike[str], relative: str | os.PathLike[str]) -> Path:
    """``root / relative`` resolved, refusing anything that ends up outside ``root`` (``..``, symlinks)."""
    base = Path(root).expanduser().resolve()
    target = (base / Path(relative).expanduser()).resolve()
    if not target.is_relative_to(base):
        raise ClipError(f"{relative}: outside the data root {base}; only files under it can be opened.")
    return target
