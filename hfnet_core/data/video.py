"""Reading and writing video clips with PyAV (FFmpeg): exact TSN sampling, fast, bounded, clear errors.

Why this file is careful:

* TSN-style models see K frames of a clip, so decoding a whole video to keep 8 frames wastes most of the
  time. Reads are planned from the keyframe index: each group of pictures holding a wanted frame is
  decoded once, up to that frame, skipping frames nothing references, on several decoders at once
  (``video_decode``) - bit-identical to decoding everything.
* Frame *i* is the packet with the i-th presentation timestamp (``video_index``), so variable-frame-rate
  and drop-frame files return their coded frames at their real times, not where a constant-fps guess
  points; a header's frame count is a hint, never a verdict.
* Phone videos are stored sideways with a display matrix; frames are rotated upright here.
* Files are untrusted (``video_checks``): only regular files are opened (a FIFO would block forever),
  metadata is parsed within bounds, every read has a time cap (``DEFAULT_TIME_LIMIT_S``, overridable with
  ``time_limit=`` or ``HFNET_DECODE_TIME_LIMIT``), and truncation is judged from evidence (the demuxer
  failing, packets cut short, the file ending inside its own container structure).
* Datasets contain broken files. Every problem becomes a ``VideoDecodeError`` that names the file and says
  what is wrong and what to do - never a raw FFmpeg exception, never silently wrong frames.

Frames are ``numpy.ndarray`` uint8 ``(T, H, W, 3)`` RGB (docs/CONTRACTS.md). Image-folder clips
(``00001.jpg``, ... as in Something-v1) are read by the same functions when ``path`` is a directory.
"""

from __future__ import annotations

import fractions
import io
import math
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import av
import numpy as np

from hfnet_core.data.video_checks import (DEFAULT_TIME_LIMIT_S, FETCH_HINT, REENCODE_HINT, TIME_LIMIT_ENV,
                                          Deadline, VideoDecodeError, bounded_count, bounded_duration,
                                          bounded_fps, checked_path)
from hfnet_core.data.video_decode import (MAX_PIXELS, MAX_RESOLUTION, check_size, decode_planned,
                                          decode_sequential, frame_rotation, open_video, output_size)
from hfnet_core.data.video_index import MAX_INDEXED_FRAMES, PacketIndex, cached_index, packet_index

__all__ = [
    "VideoDecodeError",
    "VideoInfo",
    "IMAGE_EXTENSIONS",
    "DEFAULT_TIME_LIMIT_S",
    "TIME_LIMIT_ENV",
    "MAX_RESOLUTION",
    "MAX_PIXELS",
    "probe_video",
    "frame_times",
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
#: Default cap on the longer side of returned frames; larger videos are downscaled while decoding.
DEFAULT_MAX_SIDE = 1280
#: Default cap on how many frames ``read_frames(indices=None)`` returns.
DEFAULT_MAX_FRAMES = 1000
#: Something-v1 frame folders carry no frame rate; they were extracted at 12 fps.
IMAGE_FOLDER_FPS = 12.0
#: Codecs whose "keyframes" are not random-access points (frames are drawn over the previous ones).
_NO_SEEK_CODECS = frozenset({"gif", "apng"})
#: What PyAV/FFmpeg/numpy may raise on a hostile file besides FFmpegError; reported as a VideoDecodeError.
_UNEXPECTED = (OSError, RuntimeError, MemoryError, ValueError, OverflowError, IndexError)


@dataclass(frozen=True)
class VideoInfo:
    """What a file holds. From headers plus one decoded frame (cheap), or exact (``probe_video(exact=True)``)."""

    path: str
    num_frames: int  # exact: coded frames found; header probe: the header's count or an estimate (a hint)
    fps: float | None  # the container's nominal rate (None when absent or absurd)
    duration: float | None  # seconds
    width: int  # as displayed (after rotation)
    height: int
    rotation: int  # degrees counter-clockwise applied to stored frames to display them upright
    codec: str  # FFmpeg decoder name, or "images"
    is_image_folder: bool = False
    declared_frames: int | None = None  # frame slots the header announces (a hint: drop-frame AVIs announce more)
    mean_fps: float | None = None  # exact probe: coded frames / duration (differs from fps for VFR/drop frames)
    variable_frame_rate: bool = False  # exact probe: frame intervals are irregular
    notes: tuple[str, ...] = ()  # header values that were ignored or contradicted by the evidence, in words


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


# --------------------------------------------------------------------------------------------------
# Opening and indexing


def _list_images(folder: Path) -> list[Path]:
    files: list[Path] = []
    try:
        for p in folder.iterdir():
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():  # is_file: regular files only, no FIFOs
                files.append(p)
                if len(files) > MAX_INDEXED_FRAMES:
                    raise VideoDecodeError(folder, f"the folder holds more than {MAX_INDEXED_FRAMES:,} frames",
                                           "Cut the clip into shorter ones")
        files.sort()
    except OSError as e:
        raise VideoDecodeError(folder, f"the folder cannot be listed ({e.strerror or e})",
                               "Check the folder and its permissions") from e
    if not files:
        raise VideoDecodeError(folder, "the folder holds no image frames (.jpg/.png)",
                               "Check the frame folder and the image template")
    return files


def _indexed(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
             deadline: Deadline) -> PacketIndex:
    """The packet index, refusing a file that the evidence says was cut."""
    index = packet_index(path, container, stream, deadline)
    if index.truncation:
        raise VideoDecodeError(path, f"the file is truncated: {index.truncation}", FETCH_HINT)
    return index


def _open_indexed(path: Path, deadline: Deadline
                  ) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, PacketIndex]:
    """Open and index ``path`` for decoding. A file indexed before opens as it did then, without probing's
    trial decode (``open_video(like=...)``): the next epoch's reads start ~8 ms sooner."""
    cached = cached_index(path)
    container, stream = open_video(path, like=cached.probed if cached is not None else None)
    try:
        return container, stream, _indexed(path, container, stream, deadline)
    except BaseException:
        container.close()
        raise


def _header_facts(container: av.container.InputContainer,
                  stream: av.video.stream.VideoStream) -> tuple[float | None, float | None, list[str]]:
    """(fps, duration, notes) from headers, each within bounds."""
    notes: list[str] = []
    fps, note = bounded_fps(stream.average_rate or stream.guessed_rate)
    notes += [note] if note else []
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration, note = bounded_duration(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration, note = bounded_duration(container.duration / av.time_base)
    notes += [note] if note else []
    return fps, duration, notes


def _exact_facts(index: PacketIndex, fps: float | None) -> tuple[float, float | None, bool, list[str]]:
    """(duration, mean fps, variable frame rate, notes) from the frames' timestamps."""
    n = index.num_packets
    notes: list[str] = [index.note] if index.note else []
    if index.declared_frames is not None and index.declared_frames != n:
        notes.append(f"the header announces {index.declared_frames} frames; {n} coded frames were found "
                     "(drop-frame or variable-frame-rate file: frames keep their real timestamps)")
    times = index.seconds()
    if not index.complete or len(times) < 2:
        duration = n / fps if fps else 0.0
        return duration, (n / duration if duration else None), False, notes
    gaps = np.diff(times)
    typical = float(np.median(gaps))
    tolerance = max(2.0 * float(index.time_base), 0.001 + 0.05 * typical)
    vfr = bool(np.any(np.abs(gaps - typical) > tolerance))
    last = min(1.0 / fps, typical) if fps else typical  # how long the last frame shows
    duration = float(times[-1]) + last
    return duration, n / duration, vfr, notes


# --------------------------------------------------------------------------------------------------
# Probing


def probe_video(path: str | os.PathLike[str], exact: bool = False, time_limit: float | None = None) -> VideoInfo:
    """Facts about a video file or image folder; raises VideoDecodeError if it cannot be decoded.

    ``exact=False`` reads headers and one frame (cheap; ``num_frames`` and ``duration`` are the header's
    hints). ``exact=True`` also demuxes the file (cached): ``num_frames`` is the number of coded frames,
    ``duration`` and ``mean_fps`` come from their timestamps, ``variable_frame_rate`` is measured, and a
    file that the evidence says was cut is refused.
    """
    deadline = Deadline(path, time_limit)
    p, st = checked_path(path, allow_dir=True)
    if stat.S_ISDIR(st.st_mode):
        files = _list_images(p)
        first = _read_images([files[0]], DEFAULT_MAX_SIDE, deadline)[0]
        n = len(files)
        return VideoInfo(str(p), n, IMAGE_FOLDER_FPS, n / IMAGE_FOLDER_FPS, first.shape[1], first.shape[0], 0,
                         "images", True, n, IMAGE_FOLDER_FPS)
    container, stream = open_video(p)
    with container:
        fps, duration, notes = _header_facts(container, stream)
        declared = bounded_count(stream.frames)
        n = declared or (max(1, int(round(duration * fps))) if duration and fps else 1)
        mean_fps, vfr = None, False
        if exact:
            index = _indexed(p, container, stream, deadline)
            n = index.num_packets
            duration, mean_fps, vfr, more = _exact_facts(index, fps)
            notes += more
        frame = _first_frame(p, container, stream, deadline, reopen=exact)
        rot, note = frame_rotation(frame, stream)
        notes += [note] if note else []
        w, h = frame.width, frame.height
        if rot in (90, 270):
            w, h = h, w
        return VideoInfo(str(p), n, fps, duration, w, h, rot, stream.codec_context.name, False, declared,
                         mean_fps, vfr, tuple(notes))


def _first_frame(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 deadline: Deadline, reopen: bool) -> av.VideoFrame:
    """The first decodable frame; reopens the file when ``container`` was demuxed to its end."""
    if reopen:
        container, stream = open_video(path)
    try:
        for packet in container.demux(stream):
            deadline.check()
            for frame in packet.decode():
                check_size(path, frame.width, frame.height)
                return frame
    except av.error.FFmpegError as e:
        raise VideoDecodeError(path, f"its first frame cannot be decoded ({e})", REENCODE_HINT) from e
    finally:
        if reopen:
            container.close()
    raise VideoDecodeError(path, "no frame could be decoded (the file may be truncated)", FETCH_HINT)


def frame_times(path: str | os.PathLike[str], time_limit: float | None = None) -> np.ndarray:
    """Presentation time (seconds from the first frame) of every frame, in order - the real times, also for
    variable-frame-rate and drop-frame files. Image folders: ``i / 12``. Cached with the packet index."""
    deadline = Deadline(path, time_limit)
    p, st = checked_path(path, allow_dir=True)
    if stat.S_ISDIR(st.st_mode):
        return np.arange(len(_list_images(p))) / IMAGE_FOLDER_FPS
    container, stream = open_video(p)
    with container:
        index = _indexed(p, container, stream, deadline)
        if index.complete:
            return index.seconds()
        fps, _, _ = _header_facts(container, stream)
        return np.arange(index.num_packets) / (fps or IMAGE_FOLDER_FPS)


# --------------------------------------------------------------------------------------------------
# Decoding


def _read_images(files: Sequence[str | os.PathLike[str]], max_side: int | None, deadline: Deadline) -> np.ndarray:
    from PIL import Image  # Pillow comes with streamlit; only image-folder clips need it

    out: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for f in files:
        deadline.check()
        f, _ = checked_path(f)
        try:
            with Image.open(f) as im:
                im.draft("RGB", (max_side, max_side) if max_side else None)  # fast JPEG downscale on load
                w, h = im.size
                if w > MAX_RESOLUTION or h > MAX_RESOLUTION or w * h > MAX_PIXELS:
                    raise VideoDecodeError(f, f"absurd resolution {w}x{h}", "Resize the images")
                if size is None:
                    size = output_size(w, h, max_side)
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


def read_image_files(files: Sequence[str | os.PathLike[str]], max_side: int | None = DEFAULT_MAX_SIDE,
                     time_limit: float | None = None) -> np.ndarray:
    """Decode image files (one frame each) into ``(T, H, W, 3)`` uint8 RGB; all resized to the first's size."""
    return _read_images(files, max_side, Deadline(files[0] if len(files) else "images", time_limit))


def _decode_indices(p: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    index: PacketIndex, idx: np.ndarray, max_side: int | None, deadline: Deadline) -> np.ndarray:
    """Frames ``idx`` of an opened, indexed file (``container`` is closed on return)."""
    uniq = np.unique(idx)
    result = None
    try:
        if index.seekable and stream.codec_context.name not in _NO_SEEK_CODECS:
            try:
                result = decode_planned(p, container, stream, index, uniq, max_side, deadline)
            except VideoDecodeError:
                raise
            except av.error.FFmpegError:
                result = None  # some demuxers cannot seek; decoding from the start still works
            except _UNEXPECTED as e:
                raise VideoDecodeError(p, f"decoding failed ({type(e).__name__}: {e})", REENCODE_HINT) from e
    finally:
        container.close()
    try:
        if result is None:
            result = decode_sequential(p, uniq, max_side, deadline)
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, *_UNEXPECTED) as e:
        raise VideoDecodeError(p, f"decoding failed ({type(e).__name__}: {e})", REENCODE_HINT) from e
    got, (rot, _) = result
    missing = [int(i) for i in uniq if int(i) not in got]
    if missing:
        if not got:
            raise VideoDecodeError(p, "no frame could be decoded (the file may be truncated)", FETCH_HINT)
        last = max(got)
        if min(missing) <= last:
            raise VideoDecodeError(p, f"frames {missing[:5]} cannot be decoded", REENCODE_HINT)
        # The container lists more frames than the decoder produces at the end (e.g. an edit list trims
        # the tail): the last decodable frame stands in, and we say so.
        warnings.warn(f"{p}: frames {missing[:5]} (of {index.num_packets}) listed but not decodable; "
                      f"using frame {last} instead", stacklevel=3)
        for i in missing:
            got[i] = got[last]
    frames = np.stack([got[int(i)] for i in idx])
    return apply_rotation(frames, rot)


def read_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int] | np.ndarray | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    max_frames: int = DEFAULT_MAX_FRAMES,
    time_limit: float | None = None,
) -> np.ndarray:
    """Frames ``indices`` (0-based, presentation order, repeats allowed) as uint8 ``(T, H, W, 3)`` RGB, upright.

    ``indices=None`` reads every frame; a video longer than ``max_frames`` is then sampled uniformly to
    ``max_frames`` frames, with a warning. Frames whose longer side exceeds ``max_side`` are downscaled.
    ``time_limit`` (seconds) caps the whole read (default ``DEFAULT_TIME_LIMIT_S``).
    """
    deadline = Deadline(path, time_limit)
    p, st = checked_path(path, allow_dir=True)
    if stat.S_ISDIR(st.st_mode):
        files = _list_images(p)
        return _read_folder(files, _resolve_indices(p, indices, len(files), max_frames), max_side, deadline)
    container, stream, index = _open_indexed(p, deadline)
    try:
        idx = _resolve_indices(p, indices, index.num_packets, max_frames)
    except BaseException:
        container.close()
        raise
    return _decode_indices(p, container, stream, index, idx, max_side, deadline)


def _read_folder(files: list[Path], idx: np.ndarray, max_side: int | None, deadline: Deadline) -> np.ndarray:
    uniq = np.unique(idx)
    frames = _read_images([files[i] for i in uniq], max_side, deadline)
    pos = {int(u): j for j, u in enumerate(uniq)}
    return frames[[pos[int(i)] for i in idx]]


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


def num_frames_of(path: str | os.PathLike[str], time_limit: float | None = None) -> int:
    """Exact frame count (coded frames of the video stream, or images in a folder), cached."""
    deadline = Deadline(path, time_limit)
    p, st = checked_path(path, allow_dir=True)
    if stat.S_ISDIR(st.st_mode):
        return len(_list_images(p))
    container, stream = open_video(p)
    with container:
        return _indexed(p, container, stream, deadline).num_packets


def read_clip(
    path: str | os.PathLike[str],
    num_segments: int,
    mode: str = "eval",
    rng: np.random.Generator | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    time_limit: float | None = None,
) -> np.ndarray:
    """TSN-sampled clip of ``num_segments`` frames (see ``sample_indices``) as uint8 ``(T, H, W, 3)`` RGB.

    The file is opened once: its (cached) packet index gives the frame count, the plan decodes only what
    the sampled frames need. Every failure is a ``VideoDecodeError``.
    """
    deadline = Deadline(path, time_limit)
    p, st = checked_path(path, allow_dir=True)
    if stat.S_ISDIR(st.st_mode):
        files = _list_images(p)
        return _read_folder(files, sample_indices(len(files), num_segments, mode, rng), max_side, deadline)
    container, stream, index = _open_indexed(p, deadline)
    try:
        idx = sample_indices(index.num_packets, num_segments, mode, rng)
    except BaseException:
        container.close()
        raise
    return _decode_indices(p, container, stream, index, idx, max_side, deadline)


# --------------------------------------------------------------------------------------------------
# Writing

_CODEC_PIX_FMT = {
    "libx264": "yuv420p", "h264": "yuv420p", "mpeg4": "yuv420p", "msmpeg4": "yuv420p", "msmpeg4v2": "yuv420p",
    "cinepak": "rgb24", "libvpx-vp9": "yuv420p", "libvpx": "yuv420p", "mjpeg": "yuvj420p", "gif": "rgb8",
    "png": "rgb24", "libx265": "yuv420p",
}


#: Options that belong to the container (muxer), not the codec: ``write_video(options={"movflags": ...})``.
_MUXER_OPTIONS = frozenset({"movflags", "brand", "write_tmcd", "cues_to_front", "reserve_index_space"})


def _encode(
    target: str | io.BytesIO, fmt: str | None, frames: np.ndarray, fps: float, codec: str,
    timestamps: Sequence[float] | None, rotation: int, options: dict[str, str] | None,
) -> None:
    options = dict(options or {})
    muxer = {k: options.pop(k) for k in list(options) if k in _MUXER_OPTIONS}
    container = av.open(target, mode="w", format=fmt, options=muxer or None)
    try:
        rate = fractions.Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = _CODEC_PIX_FMT.get(codec, "yuv420p")
        if options:
            stream.options = options
        ms = None
        if timestamps is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
            ms = np.round(np.asarray(timestamps, np.float64) * 1000).astype(np.int64)
            step = np.arange(len(ms))
            ms = np.maximum.accumulate(ms - step) + step  # strictly increasing milliseconds (muxers require it)
        if rotation:
            stream.set_display_rotation(rotation)
        for t, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            if ms is not None:
                frame.pts = int(ms[t])
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
    max_frames: int = DEFAULT_MAX_FRAMES, timestamps: Sequence[float] | None = None,
) -> bytes:
    """H.264 yuv420p MP4 bytes that every browser plays (``st.video``), from frames or any readable video.

    Uploaded AVI/MS-MPEG4/Cinepak files do not play in browsers; this re-encodes them (upright, even sizes).
    ``timestamps`` (seconds, one per frame, e.g. ``DecodedClip.timestamps``) keep a variable-frame-rate
    clip's real timing, starting at 0; otherwise frames play at ``fps``. From a path, a video longer than ``max_frames`` keeps every k-th frame (k whole), played
    at fps / k, so it still runs at its real speed.
    """
    if isinstance(source, np.ndarray):
        frames = source
        fps = fps or IMAGE_FOLDER_FPS
    else:
        info = probe_video(source, exact=True)
        step = max(1, math.ceil(info.num_frames / max_frames))
        idx = np.arange(0, info.num_frames, step)
        frames = read_frames(source, idx, max_side=max_side)
        if fps is None:
            fps = (info.fps or info.mean_fps or IMAGE_FOLDER_FPS) / step
        if timestamps is None and info.variable_frame_rate:
            timestamps = frame_times(source)[idx]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if timestamps is not None:
        if len(timestamps) != len(frames):
            raise ValueError(f"{len(timestamps)} timestamps for {len(frames)} frames")
        timestamps = np.asarray(timestamps, np.float64) - float(timestamps[0])  # a later span plays from 0
    buf = io.BytesIO()
    _encode(buf, "mp4", _even(np.asarray(frames, np.uint8)), float(fps), "libx264", timestamps, 0,
            {"crf": "23", "preset": "veryfast"})
    return buf.getvalue()


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


def iter_video_files(root: str | os.PathLike[str], extensions: Iterable[str] = VIDEO_EXTENSIONS,
                     recursive: bool = True) -> list[Path]:
    """Video files under ``root`` (sorted; hidden and temporary files excluded) - for folder datasets."""
    ext = tuple(e.lower() for e in extensions)
    found = Path(root).rglob("*") if recursive else Path(root).iterdir()
    return sorted(p for p in found if p.suffix.lower() in ext and not p.name.startswith(".") and p.is_file())
