"""Clips for the explorer: decode a file safely, regenerate a SynthSomething clip by id, make model input.

Frames are uint8 ``(T, H, W, 3)`` RGB (docs/CONTRACTS.md). A model sees ``model_input(frames, config,
convention)``: TSN eval sampling (segment centres), the evaluation resize + centre crop to the model's
``input_size``, then the model's own pixel convention.

A file is decoded for the explorer by ``decode_clip``, which says what the file holds, what was kept and
why (``DecodedClip``): the display keeps at most ``MAX_DISPLAY_FRAMES`` frames at the file's real frame
rate (a span of a long clip, which the caller may choose) and at most ``MAX_DISPLAY_SIDE`` pixels a side.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfnet_core.data.transforms import eval_transform
from hfnet_core.data.video import (VideoDecodeError, VideoInfo, frame_times, probe_video, read_frames,
                                   sample_indices)
from hfnet_core.data.video_checks import default_time_limit
from hfnet_core.errors import HfnetError

__all__ = [
    "ClipError",
    "DecodedClip",
    "VIDEO_SUFFIXES",
    "decode_clip",
    "decode_video",
    "frames_hash",
    "sampled_frames",
    "model_input",
    "parse_synth_clip_id",
    "resolve_clip",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".gif")
#: Frames kept for display: a longer span keeps its first this-many frames (or every k-th, ``fit="sample"``).
MAX_DISPLAY_FRAMES = 300
#: Longer side of decoded frames (keeps memory bounded; >= 224 on the shorter side of usual 4:3/16:9 video).
MAX_DISPLAY_SIDE = 400
_FITS = ("span", "sample")


class ClipError(HfnetError):
    """A clip the explorer cannot use; the message says which and why, in words for the user."""


@dataclass(frozen=True)
class DecodedClip:
    """A decoded clip with what the file holds, what was kept of it, and why.

    ``frames``: the kept frames, uint8 ``(T, H, W, 3)`` RGB, upright - what is shown and what the models
    sample from (``sampled_frames``). ``timestamps``: each kept frame's real time in seconds from the file's
    first frame (irregular for variable-frame-rate and drop-frame files). ``playback_fps``: the rate that
    replays ``frames`` at the file's real speed. ``source``: the file itself, exact
    (``probe_video(exact=True)``: true width/height, coded frame count, nominal and mean fps, duration).
    ``start_frame``/``stop_frame``: the kept span ``[start, stop)`` in the file's frame numbers;
    ``frame_step``: every ``frame_step``-th frame of it was kept. ``reasons``: why anything of the file is
    not in ``frames`` (the caps, the requested span), in words. ``notes``: header claims the evidence did
    not back and metadata that was ignored - worth showing, never errors.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    playback_fps: float
    source: VideoInfo
    start_frame: int
    stop_frame: int
    frame_step: int
    reasons: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the kept frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    @property
    def downscale(self) -> float:
        """Kept width / true width (1.0: full size)."""
        return self.size[0] / self.source.width if self.source.width else 1.0

    @property
    def span_seconds(self) -> tuple[float, float]:
        """(start, end) of the kept span in seconds; the end includes the last kept frame's duration."""
        end = float(self.timestamps[-1]) + 1.0 / (self.playback_fps * self.frame_step)
        return float(self.timestamps[0]), min(end, self.source.duration) if self.source.duration else end

    @property
    def is_whole_clip(self) -> bool:
        return self.start_frame == 0 and self.stop_frame == self.source.num_frames and self.frame_step == 1

    def summary(self) -> str:
        """One line: the file, then what was kept (e.g. for a caption under the player)."""
        src = self.source
        rate = f"{src.fps:.3g} fps" if src.fps and not src.variable_frame_rate else (
            f"variable frame rate, {src.mean_fps:.3g} fps on average" if src.mean_fps else "frame rate unknown")
        line = (f"{src.num_frames} frames · {src.width}×{src.height} px · {rate} · "
                f"{src.duration or 0:.1f} s")
        if self.is_whole_clip and self.downscale == 1.0:
            return line
        a, b = self.span_seconds
        step = f", one frame in {self.frame_step}" if self.frame_step > 1 else ""
        return (f"{line} — showing frames {self.start_frame}–{self.stop_frame - 1} ({a:.1f}–{b:.1f} s){step} "
                f"at {self.playback_fps:.3g} fps, {self.size[0]}×{self.size[1]} px")


def _span(times: np.ndarray, shown: str, duration: float, start: float | None, end: float | None,
          start_frame: int | None, stop_frame: int | None) -> tuple[int, int, list[str]]:
    """[a, b) frame numbers of the requested span, and a reason when it is not the whole clip."""
    n = len(times)
    if (start is not None or end is not None) and (start_frame is not None or stop_frame is not None):
        raise ClipError(f"{shown}: give the span in seconds (start/end) or in frames (start_frame/stop_frame), "
                        "not both.")
    if start is not None or end is not None:
        for label, v in (("start", start), ("end", end)):
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ClipError(f"{shown}: the span {label} must be a number of seconds >= 0, got {v!r}.")
        lo = 0.0 if start is None else float(start)
        hi = math.inf if end is None else float(end)
        if hi <= lo:
            raise ClipError(f"{shown}: the span must end after it starts (got {lo:g}–{hi:g} s).")
        if lo >= duration and lo > 0:
            raise ClipError(f"{shown}: the clip is {duration:.1f} s long; the span starts at {lo:g} s.")
        a, b = int(np.searchsorted(times, lo, "left")), int(np.searchsorted(times, hi, "left"))
    else:
        for label, v in (("start_frame", start_frame), ("stop_frame", stop_frame)):
            if v is not None and not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0):
                raise ClipError(f"{shown}: {label} must be a whole number >= 0, got {v!r}.")
        a = 0 if start_frame is None else int(start_frame)
        b = n if stop_frame is None else min(int(stop_frame), n)
        if a >= n:
            raise ClipError(f"{shown}: the clip has {n} frames; the span starts at frame {a}.")
        if b <= a:
            raise ClipError(f"{shown}: the span must end after it starts (got frames {a}–{b}).")
    if b <= a:
        raise ClipError(f"{shown}: no frame lies in the requested span.")
    reasons = [] if (a, b) == (0, n) else [f"the requested span is frames {a}–{b - 1} of {n}"]
    return a, b, reasons


def decode_clip(
    path: str | os.PathLike[str], name: str | None = None, *, start: float | None = None, end: float | None = None,
    start_frame: int | None = None, stop_frame: int | None = None, max_frames: int = MAX_DISPLAY_FRAMES,
    max_side: int | None = MAX_DISPLAY_SIDE, fit: str = "span", time_limit: float | None = None,
) -> DecodedClip:
    """Decode a video file (or frame folder) for the explorer and say what was read and why; ``ClipError``
    when it is unusable (not a video, corrupt, truncated by evidence, a single frame).

    The span to look at is given in seconds (``start``/``end``, from the first frame) or in frame numbers
    (``start_frame``/``stop_frame``, stop exclusive); default: the whole clip. A span longer than
    ``max_frames`` keeps, with ``fit="span"`` (default), its first ``max_frames`` frames at the real frame
    rate (smooth playback; choose a later ``start`` to see more), with ``fit="sample"`` every k-th frame of
    it (k whole, played at fps / k, so it still runs at its real speed). Frames are downscaled to
    ``max_side`` pixels on the longer side. ``time_limit`` caps the whole decode (seconds; default
    ``hfnet_core.data.video.DEFAULT_TIME_LIMIT_S`` or ``HFNET_DECODE_TIME_LIMIT``). ``name`` replaces the
    path in messages (uploads live in a temp dir the user never saw).
    """
    if fit not in _FITS:
        raise ValueError(f"fit must be one of {_FITS}, got {fit!r}")
    if max_frames < 2:
        raise ValueError(f"max_frames must be >= 2, got {max_frames}")
    shown = name or _shown_name(path)
    limit = default_time_limit() if time_limit is None else float(time_limit)
    t0 = time.monotonic()

    def left() -> float:
        return max(1e-3, limit - (time.monotonic() - t0))

    try:
        info = probe_video(path, exact=True, time_limit=left())
        times = frame_times(path, time_limit=left())
        duration = float(info.duration or (times[-1] if len(times) else 0.0))
        a, b, reasons = _span(times, shown, duration, start, end, start_frame, stop_frame)
        step = 1
        if b - a > max_frames and fit == "span":
            reasons.append(f"at most {max_frames} frames are kept at the real frame rate: frames {a}–"
                           f"{a + max_frames - 1} of {a}–{b - 1} are shown; choose a later start to see the rest")
            b = a + max_frames
        elif b - a > max_frames:
            step = math.ceil((b - a) / max_frames)
            reasons.append(f"one frame in {step} of frames {a}–{b - 1} is kept, to stay within {max_frames} frames")
        idx = np.arange(a, b, step)
        frames = read_frames(path, idx, max_side=max_side, time_limit=left())
    except VideoDecodeError as e:
        raise ClipError(f"{shown}: {_user_reason(e.reason, path, shown)}") from e
    if frames.ndim != 4 or len(frames) == 0:
        raise ClipError(f"{shown}: no frame could be decoded - the file may be truncated.")
    if info.num_frames < 2:
        raise ClipError(f"{shown}: holds a single frame. Temporal models compare frames over time, "
                        "so they need a video with at least two frames.")
    if len(frames) < 2:
        raise ClipError(f"{shown}: the chosen span holds a single frame; choose a longer span.")
    if max_side is not None and max(info.width, info.height) > max_side:
        reasons.append(f"frames are downscaled from {info.width}×{info.height} to {frames.shape[2]}×"
                       f"{frames.shape[1]} px (at most {max_side} px on the longer side)")
    kept = times[idx]
    return DecodedClip(np.ascontiguousarray(frames), kept, _playback_fps(info, kept, step), info, a, b, step,
                       tuple(reasons), info.notes)


def _playback_fps(info: VideoInfo, kept: np.ndarray, step: int) -> float:
    """The rate that shows ``kept`` frames at their real speed: nominal fps / step for constant-rate files,
    the mean rate of the kept frames for variable-rate ones."""
    if info.fps and not info.variable_frame_rate:
        return info.fps / step
    if len(kept) >= 2 and kept[-1] > kept[0]:
        return (len(kept) - 1) / float(kept[-1] - kept[0])
    return (info.mean_fps or info.fps or 12.0) / step


def decode_video(path: str | os.PathLike[str], name: str | None = None,
                 max_frames: int = MAX_DISPLAY_FRAMES, max_side: int = MAX_DISPLAY_SIDE) -> tuple[np.ndarray, float]:
    """The whole clip as (frames, playback fps); ``ClipError`` when unusable. Kept for existing callers.

    Same as ``decode_clip(path, name, max_frames=..., max_side=..., fit="sample")``: every frame, or every
    k-th frame (k whole) of a clip longer than ``max_frames``, with the fps that plays them at the real
    speed. New code should call ``decode_clip``, which also says what was kept and why.
    """
    clip = decode_clip(path, name, max_frames=max_frames, max_side=max_side, fit="sample")
    return clip.frames, clip.playback_fps


def _shown_name(path: object) -> str:
    try:
        return Path(os.fsdecode(path)).name.replace("\x00", "\\x00")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return repr(path)


def _user_reason(reason: str, path: str | os.PathLike[str], shown: str) -> str:
    """A decoder's reason in the user's words, naming the container when the bytes say what it was."""
    text = _reason(reason, path, shown)
    kind = container_kind(path)
    if kind and text.startswith("this is not a video"):
        text = "it is " + kind + " file, but it cannot be decoded: the file is truncated or corrupt" + (
            text[len("this is not a video file"):])
    return text


_MAGIC = ((4, b"ftyp", "an MP4/MOV"), (0, b"\x1a\x45\xdf\xa3", "a WebM/Matroska"), (0, b"RIFF", "an AVI"),
          (0, b"GIF8", "a GIF"), (0, b"\x00\x00\x01\xba", "an MPEG"), (0, b"FLV", "an FLV"))


def container_kind(path: str | os.PathLike[str]) -> str | None:
    """What video container the first bytes of a regular file announce ("an MP4/MOV", ...), or None."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # never open a FIFO or device: it could block
        with open(path, "rb") as f:
            head = f.read(16)
    except (OSError, ValueError, TypeError):
        return None
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def _reason(reason: str, path: str | os.PathLike[str], shown: str) -> str:
    """FFmpeg's reason in user words, without the (temporary) path and errno noise."""
    try:
        text_path = os.fsdecode(path)
    except (TypeError, ValueError):
        text_path = str(path)
    r = reason.replace(f"'{text_path}'", shown).replace(text_path, shown)
    r = re.sub(r"\[Errno -?\d+\] ", "", r).replace(f": {shown})", ")").rstrip(".")
    low = r.lower()
    if low.startswith("the file is truncated:"):
        return r + "."  # our own evidence, already in words
    inner = re.findall(r"\(([^()]*)\)", r)
    detail = f" (FFmpeg: {inner[-1]})" if inner else ""
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
    """``root / relative`` resolved, refusing anything that ends up outside ``root`` (``..``, symlinks):
    the one path policy (``hfnet_core.paths.resolve_inside``)."""
    from hfnet_core.paths import resolve_inside

    return resolve_inside(root, relative, kind="any", what="the data root")