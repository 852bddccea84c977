"""Reading and writing video clips with PyAV (FFmpeg): fast TSN sampling, clear errors.

Why this file is careful:

* TSN-style models see K frames of a clip, so decoding a whole video to keep 8 frames wastes most of the
  time. ``read_clip`` seeks to the keyframe before each sampled frame and decodes forward only as far as
  needed (consecutive samples in one group of pictures share the decoding).
* Frame *i* is located by its presentation timestamp (from a packet index built without decoding), so
  variable-frame-rate files return exactly the i-th frame, not the frame a constant-fps guess points to.
* Phone videos are stored sideways with a display matrix; frames are rotated upright here.
* Datasets contain broken files. Every problem becomes a ``VideoDecodeError`` that names the file and says
  what is wrong and what to do - never a raw FFmpeg exception, never silently wrong frames.

Frames are ``numpy.ndarray`` uint8 ``(T, H, W, 3)`` RGB (docs/CONTRACTS.md). Image-folder clips
(``00001.jpg``, ... as in Something-v1) are read by the same functions when ``path`` is a directory.
"""

from __future__ import annotations

import collections
import fractions
import io
import math
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import av
import numpy as np

from hfnet_core.errors import HfnetError

__all__ = [
    "VideoDecodeError",
    "VideoInfo",
    "IMAGE_EXTENSIONS",
    "probe_video",
    "sample_indices",
    "read_clip",
    "read_frames",
    "read_image_files",
    "rotation_from_display_matrix",
    "apply_rotation",
    "write_video",
    "to_browser_mp4",
    "num_frames_of",
    "iter_video_files",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Frames larger than this (either side, in pixels) are refused: no real clip is this large, a header is lying.
MAX_RESOLUTION = 16384
#: Default cap on the longer side of returned frames; larger videos are downscaled while decoding.
DEFAULT_MAX_SIDE = 1280
#: Default cap on how many frames ``read_frames(indices=None)`` returns.
DEFAULT_MAX_FRAMES = 1000
#: Seek (instead of decoding from the start) when fewer than this fraction of a file's frames are wanted.
SEEK_MAX_FRACTION = 0.25
#: Something-v1 frame folders carry no frame rate; they were extracted at 12 fps.
IMAGE_FOLDER_FPS = 12.0

_FETCH_HINT = "Fetch the file again"
_REENCODE_HINT = "Re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`, or remove it from the list"


class VideoDecodeError(HfnetError):
    """A clip that cannot be read; ``.path`` is the file and ``.reason`` what is wrong with it."""

    def __init__(self, path: str | os.PathLike[str], reason: str, hint: str = _REENCODE_HINT) -> None:
        self.reason = reason
        super().__init__(f"cannot read {path}: {reason}. {hint}", path=path, problem=reason, hint=hint)


@dataclass(frozen=True)
class VideoInfo:
    """What a file holds, read from headers plus one decoded frame (cheap)."""

    path: str
    num_frames: int  # exact for image folders and most containers; an estimate where headers lack it
    fps: float | None
    duration: float | None  # seconds
    width: int  # as displayed (after rotation)
    height: int
    rotation: int  # degrees counter-clockwise applied to stored frames to display them upright
    codec: str  # FFmpeg decoder name, or "images"
    is_image_folder: bool = False


# --------------------------------------------------------------------------------------------------
# Sampling


def sample_indices(
    num_frames: int, num_segments: int, mode: str = "eval", rng: np.random.Generator | None = None
) -> np.ndarray:
    """0-based frame indices to read, TSN style (Wang et al., ECCV 2016).

    ``train``: one random frame in each of ``num_segments`` equal segments (TSN's integer segment length
    ``num_frames // num_segments``); ``eval``: the centre of each of the segments of length
    ``num_frames / num_segments`` (TSN/TRN test sampling); ``dense``: every frame. With fewer frames than
    segments, frames repeat in order (the segment centres, e.g. 3 frames -> ``[0, 0, 0, 1, 1, 2, 2, 2]``), so
    the model still sees the whole clip in temporal order.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if mode == "dense":
        return np.arange(num_frames, dtype=np.int64)
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if mode == "train" and num_frames >= num_segments:
        rng = rng if rng is not None else np.random.default_rng()
        avg = num_frames // num_segments  # TSN: segment k = [k*avg, (k+1)*avg); the n % K tail frames are unused
        return (np.arange(num_segments) * avg + rng.integers(0, avg, size=num_segments)).astype(np.int64)
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train', 'eval' or 'dense', got {mode!r}")
    tick = num_frames / num_segments
    return np.minimum((tick / 2.0 + tick * np.arange(num_segments)).astype(np.int64), num_frames - 1)


# --------------------------------------------------------------------------------------------------
# Rotation


def rotation_from_display_matrix(matrix: Sequence[int]) -> int:
    """Counter-clockwise rotation (0/90/180/270) encoded by an FFmpeg 3x3 display matrix (16.16 fixed).

    Same formula as FFmpeg's ``av_display_rotation_get``, rounded to a multiple of 90 degrees.
    """
    if len(matrix) != 9:
        raise ValueError(f"a display matrix has 9 entries, got {len(matrix)}")
    a, b = float(matrix[0]), float(matrix[1])
    c, d = float(matrix[3]), float(matrix[4])
    sx, sy = math.hypot(a, c), math.hypot(b, d)
    if sx == 0.0 or sy == 0.0:
        return 0
    degrees = -math.degrees(math.atan2(b / sy, a / sx))
    return int(round(degrees / 90.0)) * 90 % 360


def apply_rotation(frames: np.ndarray, degrees_ccw: int) -> np.ndarray:
    """Rotate ``(..., H, W, 3)`` frames counter-clockwise by a multiple of 90 degrees (how players show them)."""
    k = int(round(degrees_ccw / 90.0)) % 4
    if k == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=k, axes=(-3, -2)))


def _frame_rotation(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Rotation from the frame's display matrix, else the legacy ``rotate`` stream tag (clockwise)."""
    rot = int(frame.rotation) if hasattr(frame, "rotation") else 0
    if rot == 0:
        tag = stream.metadata.get("rotate")
        if tag:
            try:
                rot = -int(float(tag))
            except ValueError:
                rot = 0
    return int(round(rot / 90.0)) * 90 % 360


# --------------------------------------------------------------------------------------------------
# Opening and indexing


@dataclass(frozen=True)
class _PacketIndex:
    """Presentation timestamps of every frame (sorted) and of keyframes, from demuxing (no decoding)."""

    pts: np.ndarray  # int64, sorted; one per packet that carries a frame
    key_pts: np.ndarray  # int64, sorted
    complete: bool  # every packet had a timestamp


_INDEX_CACHE: "collections.OrderedDict[tuple[str, int, int], _PacketIndex]" = collections.OrderedDict()
_INDEX_LOCK = threading.Lock()
_INDEX_CACHE_SIZE = 512


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoDecodeError(path, "the file does not exist", "Check the path and the dataset root")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)", "The download or copy failed; fetch it again")


def _open(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` and its first video stream, or raise a VideoDecodeError saying why not."""
    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as e:
        text = str(e)
        if "moov atom not found" in text:
            raise VideoDecodeError(path, "the file is truncated (MP4 index 'moov' missing)", _FETCH_HINT) from e
        raise VideoDecodeError(path, f"not a video or image FFmpeg can read ({text})",
                               "Check that this is a video file") from e
    except (OSError, ValueError) as e:
        raise VideoDecodeError(path, f"could not be opened ({e})", "Check the file and its permissions") from e
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(path, f"it has no video stream (streams: {', '.join(kinds)})",
                               "Use a file that contains video")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        name = stream.metadata.get("codec_name") or getattr(stream, "codec_tag", None) or "unknown"
        container.close()
        raise VideoDecodeError(path, f"no decoder for its codec ({name})", _REENCODE_HINT)
    w, h = stream.codec_context.width, stream.codec_context.height
    if w > MAX_RESOLUTION or h > MAX_RESOLUTION or w < 0 or h < 0:
        container.close()
        raise VideoDecodeError(path, f"absurd resolution {w}x{h} (limit {MAX_RESOLUTION} per side)", _REENCODE_HINT)
    stream.thread_type = "AUTO"
    return container, stream


def _packet_index(path: Path, container: av.container.InputContainer,
                  stream: av.video.stream.VideoStream) -> _PacketIndex:
    """Demux (without decoding) to list every frame's timestamp; cached per (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _INDEX_LOCK:
        hit = _INDEX_CACHE.get(key)
        if hit is not None:
            _INDEX_CACHE.move_to_end(key)
            return hit
    pts: list[int] = []
    keys: list[int] = []
    complete = True
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the flush packet at the end
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                complete = False
                continue
            pts.append(int(ts))
            if packet.is_keyframe:
                keys.append(int(ts))
    except av.error.FFmpegError as e:
        raise VideoDecodeError(path, f"the file is truncated or corrupt after {len(pts)} frames ({e})",
                               _FETCH_HINT) from e
    if not pts:
        raise VideoDecodeError(path, "the video stream holds no frames (the file may be truncated)", _FETCH_HINT)
    index = _PacketIndex(np.sort(np.asarray(pts, np.int64)), np.sort(np.asarray(keys, np.int64)), complete)
    with _INDEX_LOCK:
        _INDEX_CACHE[key] = index
        while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
            _INDEX_CACHE.popitem(last=False)
    return index


def _list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise VideoDecodeError(folder, "the folder holds no image frames (.jpg/.png)",
                               "Check the frame folder and the image template")
    return files


def _output_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    """Size after the downscale cap (aspect kept); width/height as stored (before rotation)."""
    if max_side is None or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


# --------------------------------------------------------------------------------------------------
# Probing


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Basic facts about a video file or image folder; raises VideoDecodeError if it cannot be decoded."""
    p = Path(path)
    if p.is_dir():
        files = _list_images(p)
        first = read_image_files([files[0]])[0]
        n = len(files)
        return VideoInfo(str(p), n, IMAGE_FOLDER_FPS, n / IMAGE_FOLDER_FPS, first.shape[1], first.shape[0], 0,
                         "images", True)
    container, stream = _open(p)
    with container:
        fps_q = stream.average_rate or stream.guessed_rate
        fps = float(fps_q) if fps_q else None
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        n = int(stream.frames or 0)
        if n <= 0 and duration and fps:
            n = max(1, int(round(duration * fps)))
        try:
            frame = next(container.decode(stream), None)
        except av.error.FFmpegError as e:
            raise VideoDecodeError(p, f"its first frame cannot be decoded ({e})", _REENCODE_HINT) from e
        if frame is None:
            raise VideoDecodeError(p, "no frame could be decoded (the file may be truncated)", _FETCH_HINT)
        rot = _frame_rotation(frame, stream)
        w, h = frame.width, frame.height
        if rot in (90, 270):
            w, h = h, w
        if n <= 0:
            n = 1
        return VideoInfo(str(p), n, fps, duration, w, h, rot, stream.codec_context.name)


# --------------------------------------------------------------------------------------------------
# Decoding


def read_image_files(files: Sequence[str | os.PathLike[str]], max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Decode image files (one frame each) into ``(T, H, W, 3)`` uint8 RGB; all resized to the first's size."""
    from PIL import Image  # Pillow comes with streamlit; only image-folder clips need it

    out: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for f in files:
        f = Path(f)
        _check_file(f)
        try:
            with Image.open(f) as im:
                im.draft("RGB", (max_side, max_side) if max_side else None)  # fast JPEG downscale on load
                w, h = im.size
                if w > MAX_RESOLUTION or h > MAX_RESOLUTION:
                    raise VideoDecodeError(f, f"absurd resolution {w}x{h}", "Resize the images")
                if size is None:
                    size = _output_size(w, h, max_side)
                im = im.convert("RGB")
                if im.size != size:
                    im = im.resize(size, Image.Resampling.BILINEAR)
                out.append(np.asarray(im, dtype=np.uint8))
        except VideoDecodeError:
            raise
        except Exception as e:  # Pillow raises many types (UnidentifiedImageError, OSError, SyntaxError...)
            raise VideoDecodeError(f, f"the image cannot be decoded ({type(e).__name__}: {e})",
                                   "Re-extract the frames") from e
    if not out:
        raise ValueError("read_image_files needs at least one file")
    return np.stack(out)


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    if (frame.width, frame.height) == size:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")


def _decode_sequential(path: Path, wanted: np.ndarray, max_side: int | None) -> tuple[dict[int, np.ndarray], int]:
    """Decode from the start, keeping frames whose ordinal is in ``wanted`` (sorted unique); stop after the last."""
    container, stream = _open(path)
    got: dict[int, np.ndarray] = {}
    rot = 0
    size: tuple[int, int] | None = None
    last = int(wanted[-1]) if len(wanted) else -1
    want = set(int(i) for i in wanted)
    i = -1
    with container:
        try:
            for i, frame in enumerate(container.decode(stream)):
                if size is None:
                    size = _output_size(frame.width, frame.height, max_side)
                    rot = _frame_rotation(frame, stream)
                if i in want:
                    got[i] = _to_rgb(frame, size)
                if i >= last:
                    break
        except av.error.FFmpegError as e:
            raise VideoDecodeError(path, f"frame {i + 1} cannot be decoded ({e})", _REENCODE_HINT) from e
    return got, rot


def _decode_towards(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    goal: list[int]) -> Iterable[av.VideoFrame]:
    """Decode forward; frames shown before ``goal[0]`` that nothing references are not decoded at all.

    Skipping non-reference frames (most B-frames) on the way to a sampled frame cannot change any other
    frame, so the result stays bit-identical to a full decode while far less work is done.
    """
    ctx = stream.codec_context
    try:
        for packet in container.demux(stream):
            early = packet.pts is not None and packet.pts < goal[0]
            ctx.skip_frame = "NONREF" if early else "DEFAULT"
            yield from packet.decode()
    finally:
        ctx.skip_frame = "DEFAULT"


def _decode_by_seeking(
    path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
    index: _PacketIndex, wanted: np.ndarray, max_side: int | None,
) -> tuple[dict[int, np.ndarray], int] | None:
    """Seek to the keyframe before each wanted frame and decode forward; None if the file misbehaves."""
    got: dict[int, np.ndarray] = {}
    rot = 0
    size: tuple[int, int] | None = None
    frames_iter = None
    current: av.VideoFrame | None = None
    goal = [0]  # the timestamp being decoded towards, read by _decode_towards
    for i in wanted:
        target = int(index.pts[i])
        goal[0] = target
        k = int(np.searchsorted(index.key_pts, target, side="right")) - 1
        key = int(index.key_pts[k]) if k >= 0 else int(index.pts[0])
        if frames_iter is None or current is None or (key > current.pts and current.pts < target):
            container.seek(key, stream=stream, backward=True)
            frames_iter = _decode_towards(container, stream, goal)
            current = next(frames_iter, None)
            if current is None or current.pts is None or current.pts > target:
                return None  # the seek overshot or frames lack timestamps: let the caller decode sequentially
        while current.pts < target:
            nxt = next(frames_iter, None)
            if nxt is None:
                break  # end of stream: the last frame stands in (e.g. an edit list dropped the tail)
            if nxt.pts is None:
                return None
            current = nxt
        if size is None:
            size = _output_size(current.width, current.height, max_side)
            rot = _frame_rotation(current, stream)
        got[int(i)] = _to_rgb(current, size)
    return got, rot


def read_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int] | np.ndarray | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> np.ndarray:
    """Frames ``indices`` (0-based, presentation order, repeats allowed) as uint8 ``(T, H, W, 3)`` RGB, upright.

    ``indices=None`` reads every frame; a video longer than ``max_frames`` is then sampled uniformly to
    ``max_frames`` frames, with a warning. Frames whose longer side exceeds ``max_side`` are downscaled.
    """
    p = Path(path)
    if p.is_dir():
        files = _list_images(p)
        idx = _resolve_indices(p, indices, len(files), max_frames)
        uniq = np.unique(idx)
        frames = read_image_files([files[i] for i in uniq], max_side=max_side)
        pos = {int(u): j for j, u in enumerate(uniq)}
        return frames[[pos[int(i)] for i in idx]]
    container, stream = _open(p)
    try:
        index = _packet_index(p, container, stream)
        idx = _resolve_indices(p, indices, len(index.pts), max_frames)
        uniq = np.unique(idx)
        result = None
        dense = len(uniq) >= SEEK_MAX_FRACTION * len(index.pts) or len(index.key_pts) <= 1
        if index.complete and not dense:
            try:
                result = _decode_by_seeking(p, container, stream, index, uniq, max_side)
            except av.error.FFmpegError:
                result = None  # some demuxers cannot seek; decoding from the start still works
    finally:
        container.close()
    try:
        if result is None:
            result = _decode_sequential(p, uniq, max_side)
    except (av.error.FFmpegError, OSError, RuntimeError, MemoryError) as e:
        raise VideoDecodeError(p, f"decoding failed ({type(e).__name__}: {e})", _REENCODE_HINT) from e
    got, rot = result
    missing = [int(i) for i in uniq if int(i) not in got]
    if missing:
        if not got:
            raise VideoDecodeError(p, "no frame could be decoded (the file may be truncated)", _FETCH_HINT)
        last = max(got)
        if min(missing) <= last:
            raise VideoDecodeError(p, f"frames {missing[:5]} cannot be decoded", _REENCODE_HINT)
        # The container lists more frames than the decoder produces at the end (e.g. an edit list trims
        # the tail): the last decodable frame stands in, and we say so.
        warnings.warn(f"{p}: frames {missing[:5]} (of {len(index.pts)}) listed but not decodable; "
                      f"using frame {last} instead", stacklevel=2)
        for i in missing:
            got[i] = got[last]
    frames = np.stack([got[int(i)] for i in idx])
    return apply_rotation(frames, rot)


def _resolve_indices(path: Path, indices: Sequence[int] | np.ndarray | None, n: int, max_frames: int) -> np.ndarray:
    if indices is None:
        if n > max_frames:
            warnings.warn(f"{path}: {n} frames, returning {max_frames} sampled uniformly (max_frames)", stacklevel=3)
            return sample_indices(n, max_frames, "eval")
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) == 0:
        raise ValueError("indices is empty")
    if idx.min() < 0 or idx.max() >= n:
        raise IndexError(f"{path}: frame indices must be in [0, {n}), got {idx.min()}..{idx.max()}")
    return idx


def num_frames_of(path: str | os.PathLike[str]) -> int:
    """Exact frame count (packets of the video stream, or images in a folder), cached."""
    p = Path(path)
    if p.is_dir():
        return len(_list_images(p))
    container, stream = _open(p)
    with container:
        return len(_packet_index(p, container, stream).pts)


def read_clip(
    path: str | os.PathLike[str],
    num_segments: int,
    mode: str = "eval",
    rng: np.random.Generator | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> np.ndarray:
    """TSN-sampled clip of ``num_segments`` frames (see ``sample_indices``) as uint8 ``(T, H, W, 3)`` RGB."""
    n = num_frames_of(path)
    return read_frames(path, sample_indices(n, num_segments, mode, rng), max_side=max_side)


# --------------------------------------------------------------------------------------------------
# Writing

_CODEC_PIX_FMT = {
    "libx264": "yuv420p", "h264": "yuv420p", "mpeg4": "yuv420p", "msmpeg4": "yuv420p", "msmpeg4v2": "yuv420p",
    "cinepak": "rgb24", "libvpx-vp9": "yuv420p", "libvpx": "yuv420p", "mjpeg": "yuvj420p", "gif": "rgb8",
    "png": "rgb24", "libx265": "yuv420p",
}


def _encode(
    target: str | io.BytesIO, fmt: str | None, frames: np.ndarray, fps: float, codec: str,
    timestamps: Sequence[float] | None, rotation: int, options: dict[str, str] | None,
) -> None:
    container = av.open(target, mode="w", format=fmt)
    try:
        rate = fractions.Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = _CODEC_PIX_FMT.get(codec, "yuv420p")
        if options:
            stream.options = dict(options)
        if timestamps is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for t, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            if timestamps is not None:
                frame.pts = int(round(timestamps[t] * 1000))
                frame.time_base = fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: float = 12.0,
    codec: str = "libx264",
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode uint8 RGB ``(T, H, W, 3)`` frames to ``path`` (container from the extension), atomically.

    ``timestamps`` (seconds, increasing) make a variable-frame-rate file; ``rotation`` stores a display
    matrix (counter-clockwise degrees). The file appears complete or not at all.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if codec in ("libx264", "h264", "mpeg4", "msmpeg4", "msmpeg4v2", "libvpx-vp9", "libvpx", "mjpeg", "libx265"):
        if frames.shape[1] % 2 or frames.shape[2] % 2:
            raise ValueError(f"{codec} with 4:2:0 chroma needs even width and height, "
                             f"got {frames.shape[2]}x{frames.shape[1]}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    try:
        _encode(tmp, None, frames, fps, codec, timestamps, rotation, options)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600 files; give the file the usual permissions
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad to even width/height by repeating the last row/column (4:2:0 chroma needs even sizes)."""
    h, w = frames.shape[1], frames.shape[2]
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def to_browser_mp4(
    source: np.ndarray | str | os.PathLike[str], fps: float | None = None, max_side: int | None = 640,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> bytes:
    """H.264 yuv420p MP4 bytes that every browser plays (``st.video``), from frames or any readable video.

    Uploaded AVI/MS-MPEG4/Cinepak files do not play in browsers; this re-encodes them (upright, even sizes).
    """
    if isinstance(source, np.ndarray):
        frames = source
        fps = fps or IMAGE_FOLDER_FPS
    else:
        info = probe_video(source)
        frames = read_frames(source, None, max_side=max_side, max_frames=max_frames)
        if fps is None:
            fps = info.fps or IMAGE_FOLDER_FPS
            if info.duration and len(frames) < info.num_frames:  # sampled: keep the real duration
                fps = max(1.0, len(frames) / info.duration)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    buf = io.BytesIO()
    _encode(buf, "mp4", _even(np.asarray(frames, np.uint8)), float(fps), "libx264", None, 0,
            {"movflags": "+faststart", "crf": "23", "preset": "veryfast"})
    return buf.getvalue()


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


def iter_video_files(root: str | os.PathLike[str], extensions: Iterable[str] = VIDEO_EXTENSIONS,
                     recursive: bool = True) -> list[Path]:
    """Video files under ``root`` (sorted; hidden and temporary files excluded) - for folder datasets."""
    ext = tuple(e.lower() for e in extensions)
    found = Path(root).rglob("*") if recursive else Path(root).iterdir()
    return sorted(p for p in found if p.suffix.lower() in ext and not p.name.startswith(".") and p.is_file())
