"""The packet index of a video: every coded frame's timestamp, the keyframes, and evidence of truncation.

Built by demuxing (reading packets without decoding them; ~10 us per packet), cached per (file, size,
mtime). It is what makes reading exact and cheap: frame *i* is the packet with the i-th smallest
presentation timestamp, so variable-frame-rate and drop-frame files (an AVI whose index holds empty
chunks for skipped frames) give their coded frames at their real times; the keyframes say where decoding
may start. The same pass gathers the only evidence that counts for truncation: the demuxer failing,
packets it flags as cut short, and the file ending inside the structure its container declares while the
last packet reaches that end. A header's frame count is kept as a hint (``declared_frames``) and never
used to judge a file.
"""

from __future__ import annotations

import array
import collections
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from hfnet_core.data.video_checks import FETCH_HINT, Deadline, VideoDecodeError, bounded_count, structure_cut

__all__ = ["PacketIndex", "packet_index", "MAX_INDEXED_FRAMES"]

#: More frames than this in one file are refused (10 hours at 30 fps): the index would not stay small.
MAX_INDEXED_FRAMES = 1_080_000


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


def packet_index(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 deadline: Deadline) -> PacketIndex:
    """The index of ``stream`` (demuxed from ``container``, which is left at its end); cached."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    index = _build(path, st.st_size, container, stream, deadline)
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
            ts = packet.pts if packet.pts is not None else packet.dts
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
    sorted_pts = np.sort(np.frombuffer(pts, np.int64)) if pts else np.zeros(0, np.int64)
    distinct = len(sorted_pts) < 2 or bool(np.all(np.diff(sorted_pts) > 0))
    return PacketIndex(sorted_pts, np.sort(np.frombuffer(keys, np.int64)) if keys else np.zeros(0, np.int64),
                       packets, Fraction(stream.time_base) if stream.time_base else Fraction(1, 1),
                       bounded_count(stream.frames), truncation, note, len(sorted_pts) == packets and distinct)
