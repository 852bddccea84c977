"""The packet index of a video: every coded frame's timestamp, the keyframes, and evidence of truncation.

Built by demuxing (reading packets without decoding them; ~10 us per packet), cached per (file, size,
mtime). It is what makes reading exact and cheap: frame *i* is the packet with the i-th smallest
presentation timestamp, so variable-frame-rate and drop-frame files (an AVI whose index holds empty
chunks for skipped frames) give their coded frames at their real times; the keyframes say where decoding
may start. The same pass gathers the only evidence that counts for truncation: the demuxer failing,
packets it flags as cut short, and the file ending inside the structure its container declares while the
last packet reaches that end. A header's frame count is kept as a hint (``declared_frames``) and never
used to judge a file.

The index also keeps what FFmpeg's probing found for the stream (``ProbedStream``), so that the next open
of the same file can skip probing's trial decode (``video_decode.open_video(like=...)``).
"""

from __future__ import annotations

import array
import collections
import hashlib
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from hfnet_core.data.video_checks import FETCH_HINT, Deadline, VideoDecodeError, bounded_count, structure_cut

__all__ = ["PacketIndex", "ProbedStream", "packet_index", "cached_index", "probed_stream", "MAX_INDEXED_FRAMES"]

#: Containers whose packets carry decoding times only (FFmpeg stamps them in file order).
DECODE_TIME_FORMATS = frozenset({"avi"})
#: More frames than this in one file are refused (10 hours at 30 fps): the index would not stay small.
MAX_INDEXED_FRAMES = 1_080_000


@dataclass(frozen=True)
class ProbedStream:
    """What a full open (FFmpeg's probing, which decodes the first frames) found for a file's video stream.

    Why: that trial decode is most of the cost of opening a file (an intra frame and a few more, ~8 ms at
    360p), and a planned read opens the file once per decoder. An open that skips it must find exactly
    these facts - everything the decoder is configured from - or it is not used."""

    format: str  # the demuxer's short name ("mov" for mov,mp4,m4a,...)
    streams: int
    index: int  # of the video stream among all streams
    codec: str
    width: int
    height: int
    time_base: Fraction | None
    extradata: str  # digest of the codec configuration (SPS/PPS for H.264) the decoder starts from
    reorder_depth: int  # frames the decoder holds back to output in presentation order (has_b_frames)


def probed_stream(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> ProbedStream:
    """The facts of an opened ``stream`` that a quicker open of the same file must reproduce."""
    ctx = stream.codec_context
    return ProbedStream(container.format.name.split(",")[0], len(container.streams), stream.index, ctx.name, ctx.width,
                        ctx.height, Fraction(stream.time_base) if stream.time_base else None,
                        hashlib.blake2b(bytes(ctx.extradata or b""), digest_size=16).hexdigest(),
                        int(ctx.reorder_depth))


@dataclass(frozen=True)
class PacketIndex:
    """What demuxing a video stream found (timestamps in ``time_base`` units)."""

    pts: np.ndarray  # int64, sorted: one per coded frame that carries a timestamp
    key_pts: np.ndarray  # int64, sorted: the keyframes among them
    num_packets: int  # coded frames (non-empty packets), with or without timestamps
    time_base: Fraction
    declared_frames: int | None  # what the header announces: a hint only
    truncation: str | None  # evidence that frames were cut off, in words; None when there is none
    note: str | None  # the file ends inside a part that holds no frames (a trailing index): said, not refused
    complete: bool  # every coded frame has its own distinct timestamp, so timestamps identify frames exactly
    probed: ProbedStream | None = None  # how the file opened when it was indexed
    decode_order: bool = False  # packets are stamped in decoding order while the decoder reorders: no seeking

    @property
    def seekable(self) -> bool:
        """Whether a packet's timestamp says which frame it holds, so reads may be planned from the index."""
        return self.complete and not self.decode_order

    def seconds(self) -> np.ndarray:
        """Presentation time of each frame in seconds, from the first frame."""
        if not len(self.pts):
            return np.zeros(0)
        return (self.pts - self.pts[0]).astype(np.float64) * float(self.time_base)


_CACHE: "collections.OrderedDict[tuple[str, int, int], PacketIndex]" = collections.OrderedDict()
_LOCK = threading.Lock()
_CACHE_SIZE = 512


def clear_cache() -> None:
    """Forget every cached index (benchmarks time a cold read with it)."""
    with _LOCK:
        _CACHE.clear()


def _key(path: Path) -> tuple[tuple[str, int, int], int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns), st.st_size


def cached_index(path: Path) -> PacketIndex | None:
    """The cached index of ``path`` if the file is unchanged since it was built (size and mtime), else None."""
    try:
        key, _ = _key(path)
    except OSError:
        return None
    with _LOCK:
        return _CACHE.get(key)


def packet_index(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 deadline: Deadline) -> PacketIndex:
    """The index of ``stream`` (demuxed from ``container``, which is left at its end); cached."""
    key, size = _key(path)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    index = _build(path, size, container, stream, deadline)
    with _LOCK:
        _CACHE[key] = index
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return index


def _build(path: Path, size: int, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
           deadline: Deadline) -> PacketIndex:
    pts = array.array("q")
    keys = array.array("q")
    packets = corrupt = 0
    with_pts = True  # every stamped packet carries a presentation time (not only a decoding time)
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the flush packet at the end (or an empty drop chunk)
            packets += 1
            if packets > MAX_INDEXED_FRAMES:
                raise VideoDecodeError(path, f"it holds more than {MAX_INDEXED_FRAMES:,} frames",
                                       "Cut it into shorter clips")
            if packets % 256 == 0:
                deadline.check()
            corrupt += packet.is_corrupt
            ts = packet.pts
            if ts is None:
                ts = packet.dts
                with_pts = False
            if ts is None:
                continue
            pts.append(int(ts))
            if packet.is_keyframe:
                keys.append(int(ts))
    except av.error.FFmpegError as e:
        raise VideoDecodeError(path, f"the file is truncated or corrupt after {packets} frames ({e})",
                               FETCH_HINT) from e
    if packets == 0:
        raise VideoDecodeError(path, "the video stream holds no frames (the file may be truncated)", FETCH_HINT)
    truncation = note = None
    cut = structure_cut(path, size)
    if corrupt:
        truncation = f"{corrupt} of its {packets} packets are cut short (the file ends inside a packet)"
    elif cut is not None and cut.media:
        truncation = cut.describe()
    elif cut is not None:
        note = cut.describe()
    in_file_order = np.frombuffer(pts, np.int64) if pts else np.zeros(0, np.int64)
    sorted_pts = np.sort(in_file_order)
    distinct = len(sorted_pts) < 2 or bool(np.all(np.diff(sorted_pts) > 0))
    probed = probed_stream(container, stream)
    # A container without presentation times (AVI; packets stamped only with a decoding time) holding a
    # stream the decoder reorders (H.264 with B-frames), stamped in an order that only grows: the stamps
    # are decoding order. Sorted, they are still the times frames are shown at, but a packet's own stamp
    # does not say which frame it holds. (MP4, MKV, TS and FLV store presentation times: a stream that
    # could reorder and does not is stamped in increasing order there too, and is fine.)
    decode_order = (probed.reorder_depth > 0 and (probed.format in DECODE_TIME_FORMATS or not with_pts)
                    and len(in_file_order) > 1 and bool(np.all(np.diff(in_file_order) > 0)))
    return PacketIndex(sorted_pts, np.sort(np.frombuffer(keys, np.int64)) if keys else np.zeros(0, np.int64),
                       packets, Fraction(stream.time_base) if stream.time_base else Fraction(1, 1),
                       bounded_count(stream.frames), truncation, note, len(sorted_pts) == packets and distinct,
                       probed, decode_order)
