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

from hfnet_core.data.nal_units import H264_B_SLICE, h264_slice_kinds, nal_length_size, starts_with_idr
from hfnet_core.data.video_checks import FETCH_HINT, Deadline, VideoDecodeError, bounded_count, structure_cut

__all__ = ["PacketIndex", "ProbedStream", "packet_index", "cached_index", "probed_stream", "MAX_INDEXED_FRAMES"]

#: Containers whose packets carry decoding times only (FFmpeg stamps them in file order).
DECODE_TIME_FORMATS = frozenset({"avi"})
#: More frames than this in one file are refused (10 hours at 30 fps): the index would not stay small.
MAX_INDEXED_FRAMES = 1_080_000
#: FFmpeg's flag for a demuxer with no timestamps of its own (``av.format.Flags.no_timestamps``).
AVFMT_NOTIMESTAMPS = 0x80
UNTIMED = np.iinfo(np.int64).min  # a packet with neither a presentation nor a decoding time


@dataclass(frozen=True)
class ProbedStream:
    """What a full open (FFmpeg's probing, which decodes the first frames) found for a file's video stream.

    Why: that trial decode is most of the cost of opening a file (an intra frame and a few more, ~8 ms at
    360p), and a planned read opens the file once per decoder. An open that skips it must find exactly
    these facts - the demuxer, the stream layout and the codec configuration the decoder starts from - or
    it is not used; the reorder depth is not found by such an open but restored from here."""

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

    pts: np.ndarray  # int64, sorted: one per shown frame that carries a timestamp
    key_pts: np.ndarray  # int64, sorted: the keyframes (also those decoded but not shown)
    num_packets: int  # shown frames (non-empty packets less discarded and dropped ones), with or without timestamps
    time_base: Fraction
    declared_frames: int | None  # what the header announces: a hint only
    truncation: str | None  # evidence that frames were cut off, in words; None when there is none
    note: str | None  # the file ends inside a part that holds no frames (a trailing index): said, not refused
    complete: bool  # every coded frame has its own distinct timestamp, so timestamps identify frames exactly
    # How the file opened when it was indexed; None when some packet had no presentation time (frames are
    # then placed by decoding times, which a quick open does not reproduce for every demuxer).
    probed: ProbedStream | None = None
    decode_order: bool = False  # packets are stamped in decoding order while the decoder reorders: no seeking
    keys_known: bool = True  # the keyframe flags can be trusted (not every packet of an inter codec flagged)
    # The demuxer has no timestamps of its own (raw elementary streams: .h264, .m2v, .h263, .mjpeg); the
    # ones it gives are counted out by its parser and come out otherwise after a seek.
    made_up_times: bool = False
    discarded: int = 0  # packets the container marks as decoded but never shown (edit lists)
    dropped_leading: int = 0  # frames at the start whose references are not in the file (the decoder drops them)

    @property
    def seekable(self) -> bool:
        """Whether a packet's timestamp says which frame it holds, so reads may be planned from the index."""
        return self.complete and not self.decode_order and self.keys_known and not self.made_up_times

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
    stamps = array.array("q")  # per packet not marked discarded, in file order (UNTIMED: no timestamp)
    keys = array.array("q")  # every keyframe, shown or not: reads seek to them
    flagged_key = array.array("b")  # per entry of ``stamps``
    packets = corrupt = discarded = 0
    first_key = None  # (position among stamps, stamp or UNTIMED) of the first keyframe in file order
    samples: list[int] = []  # positions among stamps where keyframe flags may be checked by decoding
    with_pts = True  # every stamped packet carries a presentation time (not only a decoding time)
    probed = probed_stream(container, stream)
    codec = probed.codec
    length_size = nal_length_size(bytes(stream.codec_context.extradata or b""), codec)
    # H.264 in AVI whose SPS announces no reorder depth: whether it has B-slices is read from each packet
    # until one is found (the decoder would learn it only by seeing frames come out of order).
    scan_b = (probed.format in DECODE_TIME_FORMATS and codec == "h264" and probed.reorder_depth == 0
              and "baseline" not in str(stream.codec_context.profile or "").lower())
    slices_read = b_slices = False
    # The first keyframe's packet (H.264/HEVC only): the first packet until a flagged one comes, since a file
    # that flags none (some AVI muxers) starts decoding at its first packet.
    first_key_data = b""
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
            if packet.is_keyframe:
                if ts is not None:
                    keys.append(int(ts))
                if first_key is None:  # untimed too (raw streams): frames before it are checked all the same
                    first_key = (len(stamps), UNTIMED if ts is None else int(ts))
                    first_key_data = bytes(packet) if codec in ("h264", "hevc") else b""
            elif packets == 1 and codec in ("h264", "hevc"):
                first_key_data = bytes(packet)
            if scan_b and not b_slices:
                kinds = h264_slice_kinds(bytes(packet), length_size)
                slices_read |= bool(kinds)
                b_slices = H264_B_SLICE in kinds
            if packets in SAMPLE_POSITIONS:
                samples.append(len(stamps))
            if packet.is_discard:  # decoded as a reference, never shown (an edit list cut it off)
                discarded += 1
                continue
            stamps.append(UNTIMED if ts is None else int(ts))
            flagged_key.append(bool(packet.is_keyframe))
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
    decode_times = probed.format in DECODE_TIME_FORMATS or not with_pts
    listed = np.frombuffer(stamps, np.int64) if stamps else np.zeros(0, np.int64)
    if first_key is None and len(listed):  # no packet flagged (some AVI muxers): decoding starts at the first
        first_key = (0, int(listed[0]))
    # After an IDR picture no frame can be a dropped leading one
    first_key_idr = bool(first_key_data) and starts_with_idr(codec, first_key_data, length_size)
    timed = listed[listed != UNTIMED]
    # A container without presentation times (AVI; packets stamped only with a decoding time) holding a
    # stream the decoder reorders (H.264 with B-frames), stamped in an order that only grows: the stamps
    # are decoding order. Sorted, they are still the times frames are shown at, but a packet's own stamp
    # does not say which frame it holds - nor which frames after the first keyframe are shown before it.
    # (MP4, MKV, TS and FLV store presentation times: a stream that could reorder and does not is stamped
    # in increasing order there too, and is fine. FFmpeg restamps MPEG-4 Part 2 in AVI with them.)
    # Whether the decoder reorders, the headers say (the reorder depth; HEVC, MPEG-2 and VC-1 must state
    # it). An H.264 SPS may leave it out, as some cameras write it: then the B-slices read while demuxing
    # say (any B-slice counts, and so does finding no slice header: decoding from the start is exact).
    increasing = decode_times and len(timed) > 1 and bool(np.all(np.diff(timed) > 0))
    decode_order = increasing and (probed.reorder_depth > 0 or (scan_b and (b_slices or not slices_read)))
    made_up_times = bool(container.format.flags & AVFMT_NOTIMESTAMPS)
    listed = _without_dropped_leading_frames(path, stream.index, listed, first_key,
                                             not (decode_order or made_up_times), first_key_idr, deadline)
    untimed = int(np.count_nonzero(listed == UNTIMED))
    sorted_pts = np.sort(listed[listed != UNTIMED])
    distinct = len(sorted_pts) < 2 or bool(np.all(np.diff(sorted_pts) > 0))
    # A demuxer that flags every packet of an inter-coded stream as a keyframe (raw H.261/H.263) knows
    # nothing about keyframes: seeking to such a "keyframe" decodes a P-frame without its references. An
    # all-intra encoding of an inter codec (H.264 with a keyframe every frame, I-only MPEG-2) is flagged
    # the same way and is right: which one a file is, decoding some flagged packets on their own says.
    every_key = len(flagged_key) > 1 and bool(np.frombuffer(flagged_key, np.int8).all())
    keys_known = not every_key or _intra_only(codec)
    if not keys_known:
        far = [] if made_up_times else _spread(np.frombuffer(stamps, np.int64), max(samples, default=0),
                                               SAMPLE_POSITIONS_BEYOND)
        keys_known = _decode_alone_as_keyframes(path, stream.index, samples, far, deadline)
    return PacketIndex(sorted_pts, np.unique(np.frombuffer(keys, np.int64)) if keys else np.zeros(0, np.int64),
                       len(sorted_pts) + untimed, Fraction(stream.time_base) if stream.time_base else Fraction(1, 1),
                       bounded_count(stream.frames), truncation, note, untimed == 0 and distinct,
                       probed if with_pts else None, decode_order, keys_known, made_up_times, discarded,
                       len(stamps) - len(listed))


#: Codecs whose every frame is a keyframe though FFmpeg's descriptor does not say so.
INTRA_CODECS = frozenset({"ffv1", "png", "rawvideo", "huffyuv", "ffvhuff", "utvideo", "magicyuv", "jpeg2000",
                          "jpegls", "ljpeg", "v210", "v410", "r210", "bmp", "tiff", "targa", "qoi", "dnxhd",
                          "prores", "hqx", "mjpeg", "mjpegb", "sgi", "pam", "ppm"})


def _intra_only(codec: str) -> bool:
    try:
        return codec in INTRA_CODECS or bool(av.codec.Codec(codec, "r").intra_only)
    except (ValueError, av.error.FFmpegError):
        return codec in INTRA_CODECS


#: Packets (1-based, in file order) whose keyframe flag is checked first: the 2nd and 3rd, then the 5th,
#: 9th, 17th and so on to the 1025th (reached by reading on from the start).
SAMPLE_POSITIONS = frozenset({2, 3} | {2 ** k + 1 for k in range(2, 11)})
#: Further packets checked, spread evenly over the rest of the file up to its last packet (reached by
#: seeking: each is flagged a keyframe), so that a file that is all-intra only for a while is caught too.
SAMPLE_POSITIONS_BEYOND = 8
#: Seeks for those go this many packets before them: demuxers without a seek index land a little late.
SAMPLE_SEEK_LEAD = 16


def _spread(stamps: np.ndarray, after: int, count: int) -> list[tuple[int, int]]:
    """(where to seek, timestamp) of ``count`` packets spread evenly over those after position ``after``,
    the last one included (``stamps`` in file order; untimed packets cannot be sought and are passed over)."""
    later = np.flatnonzero(stamps[after + 1:] != UNTIMED) + after + 1
    if not len(later):
        return []
    picked = sorted({int(later[i]) for i in np.linspace(0, len(later) - 1, count).round().astype(int)})
    timed = np.flatnonzero(stamps != UNTIMED)
    lead = [int(timed[max(0, int(np.searchsorted(timed, at)) - SAMPLE_SEEK_LEAD)]) for at in picked]
    return [(int(stamps[a]), int(stamps[at])) for a, at in zip(lead, picked)]


def _decode_alone_as_keyframes(path: Path, stream_index: int, positions: list[int],
                               sought: list[tuple[int, int]], deadline: Deadline) -> bool:
    """Whether each packet at ``positions`` (among the packets not marked discarded), and each packet with
    a timestamp of ``sought`` (found by seeking to the other), decoded on its own gives a keyframe. A
    P-frame without its references gives no frame or a frame marked as not a key; any doubt (an error, no
    frame, a packet not found) answers False, which costs speed (reads decode from the start), never
    correctness."""
    if not positions:
        return False

    def alone(ctx, packet) -> bool:
        frames = list(ctx.decode(packet)) + list(ctx.decode(None))
        ctx.flush_buffers()  # forget this frame: the next one starts from nothing again
        return len(frames) == 1 and bool(frames[0].key_frame)

    wanted, last = set(positions), max(positions)
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams[stream_index]
            stream.thread_type = "NONE"
            ctx, seen = stream.codec_context, -1
            for packet in container.demux(stream):
                if not packet.size or packet.is_discard:
                    continue
                seen += 1
                deadline.check()
                if seen in wanted and not alone(ctx, packet):
                    return False
                if seen >= last:
                    break
            else:
                return False
            for target, ts in sought:
                container.seek(target, stream=stream, backward=True)
                for n, packet in enumerate(container.demux(stream)):
                    deadline.check()
                    at = packet.pts if packet.pts is not None else packet.dts
                    if n >= 4 * SAMPLE_SEEK_LEAD or not packet.size:
                        return False  # not found where the index says it is
                    if at == ts:
                        if not alone(ctx, packet):
                            return False
                        break
    except (av.error.FFmpegError, OSError, ValueError, IndexError):
        return False
    return True


#: Leading frames are checked by decoding only when they sit within this many packets of the start.
LEADING_CHECK_PACKETS = 2048
#: Leading frames follow their keyframe in decoding order, at most this many (H.264 allows 16 B-frames in
#: a row): where timestamps cannot tell them from the frames after them, this many packets are checked.
LEADING_WINDOW = 24


def _without_dropped_leading_frames(path: Path, stream_index: int, stamps: np.ndarray,
                                    first_key: tuple[int, int] | None, stamps_tell: bool, key_is_idr: bool,
                                    deadline: Deadline) -> np.ndarray:
    """``stamps`` (file order) less the frames at the start that the decoder never shows.

    A file cut without re-encoding (a TS capture started mid-stream, a stream copy cut at an open-GOP
    keyframe or an HEVC CRA picture) begins with frames whose references are not in the file: packets
    before the first keyframe, and leading frames (shown before it, decoded after it). Decoders drop
    such frames, or show them when their references are in the file after all (RADL pictures) - so
    which ones count is found by decoding up to the last of them, not guessed. A timed frame is known by
    its timestamp; frames without one are counted (the decoder's frames without a timestamp against the
    packets without one), and those dropped are taken to be the first of them. ``stamps_tell``: the
    stamps are presentation times the file stores (not decoding times of a stream that reorders, nor
    times a raw stream's parser counted out). ``key_is_idr``: no frame after the first keyframe can
    miss its references, so only the packets before it are in question."""
    if first_key is None or not len(stamps):
        return stamps
    position, key_ts = first_key
    at = np.arange(len(stamps))
    timed = stamps != UNTIMED
    if key_is_idr:
        after = np.zeros(len(stamps), bool)
    elif key_ts == UNTIMED or not stamps_tell:  # timestamps cannot single out the leading frames
        after = (at > position) & (at <= position + LEADING_WINDOW)
    else:
        later = np.flatnonzero(timed & (at > position) & (stamps > key_ts))
        leading_end = int(later[0]) if len(later) else len(stamps)  # leading frames come before trailing ones
        leading_end = min(leading_end, position + 1 + LEADING_WINDOW)
        after = (at > position) & (at < leading_end) & (~timed | (stamps < key_ts))
    candidates = np.flatnonzero((at < position) | after)
    if not len(candidates) or candidates[-1] >= LEADING_CHECK_PACKETS:
        return stamps
    last = int(candidates[-1])
    shown: set[int | None] = set()  # the timestamps of the frames the decoder output
    shown_untimed = 0

    def take(frames) -> None:
        nonlocal shown_untimed
        for frame in frames:
            shown_untimed += frame.pts is None
            shown.add(frame.pts)

    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams[stream_index]
            stream.thread_type = "NONE"
            decode, seen = stream.codec_context.decode, -1
            for packet in container.demux(stream):
                if packet.size:
                    deadline.check()
                    seen += not packet.is_discard  # the position of this packet in ``stamps``
                try:  # a packet cut from its references may fail on its own: it then shows nothing
                    take(decode(packet))
                except av.error.FFmpegError:
                    if not packet.size:
                        break
                if seen >= last or packet.size == 0:
                    break
            try:
                take(decode(None))
            except av.error.FFmpegError:
                pass
    except (av.error.FFmpegError, OSError, ValueError, IndexError):
        return stamps  # the check could not run: every frame stays listed (as before it existed)
    drop = [int(i) for i in candidates if timed[i] and int(stamps[i]) not in shown]
    fed_untimed = int(np.count_nonzero(~timed[:last + 1]))
    untimed_candidates = [int(i) for i in candidates if not timed[i]]
    drop += untimed_candidates[:max(0, min(len(untimed_candidates), fed_untimed - shown_untimed))]
    keep = np.ones(len(stamps), bool)
    keep[drop] = False
    return stamps[keep]
