"""Decoding the frames a caller asked for: planned from the keyframe index, each group of pictures once.

Why it is exact: frame *i* is the packet with the i-th timestamp (``video_index``). Decoding starts at a
keyframe, which depends on nothing before it, and every frame after it is decoded except *non-reference*
frames that are not asked for - frames no other frame predicts from, so leaving them out cannot change any
pixel of another frame (tests compare against a full decode, bit for bit, on files with B-frames).

Why it is fast (8 segment centres of a 2-minute H.264 file with a keyframe every 250 frames):

* one job per group of pictures (GOP) that holds a requested frame: seek to its keyframe, decode forward
  to the last requested frame of that GOP, never further - once every requested packet is in the
  decoder it is drained instead of being fed more packets;
* non-reference frames that are not requested are not decoded (``skip_frame = NONREF``), for the codecs
  whose non-reference frames are truly unreferenced (H.264, HEVC, MPEG-1/2/4 part 2 B-frames);
* jobs run on several decoders at once (one container and one single-threaded decoder per thread; PyAV
  releases the GIL while FFmpeg decodes). Each decoder takes the longest job left whenever it is free, so
  they finish together even where groups of pictures cost more or less than their frame count says. Inside
  a PyTorch DataLoader worker one thread is used (the workers already fill the cores);
* the extra decoders open the file as the first one found it, without FFmpeg's trial decode of the first
  frames (``open_video(like=...)``; a read of a file indexed before does so for its first decoder too);
* only requested frames are converted to RGB, directly at the output size.

Any sign that the file misbehaves (a seek that lands after the requested frame or off a keyframe, frames
without timestamps, a requested frame that never comes out) returns None, and the caller decodes from the
start instead (``decode_sequential``).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from hfnet_core.data.video_checks import (REENCODE_HINT, Deadline, VideoDecodeError, bounded_rotation,
                                          rotation_from_tag)
from hfnet_core.data.video_index import PacketIndex, ProbedStream, probed_stream

#: The oldest PyAV with what reading and writing here use (a settable reorder depth; display rotation on write).
PYAV_MIN = (18, 1)
if tuple(int(part) for part in re.findall(r"\d+", av.__version__)[:2]) < PYAV_MIN:
    raise ImportError(f"hfnet needs PyAV >= {PYAV_MIN[0]}.{PYAV_MIN[1]} (this is {av.__version__}): "
                      "pip install 'av>=18.1,<19'")

__all__ = ["MAX_RESOLUTION", "MAX_PIXELS", "DECODE_THREADS_ENV", "open_video", "output_size", "decode_threads",
           "plan_jobs", "decode_planned", "decode_sequential"]

#: Frames larger than this (either side, in pixels) are refused: no real clip is this large, a header is lying.
MAX_RESOLUTION = 16384
#: Frames with more pixels than 8K UHD are refused: a decoder keeps up to ~17 of them in memory.
MAX_PIXELS = 7680 * 4320
#: Environment variable fixing how many decoders run at once (default: up to 4, one per core).
DECODE_THREADS_ENV = "HFNET_DECODE_THREADS"
#: Codecs whose non-reference frames no other frame depends on (safe to skip when not requested).
SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg1video", "mpeg2video"})
#: A second decoder pays for itself only with this many frames to decode per decoder.
_MIN_FRAMES_PER_THREAD = 48
#: Memory the parallel decoders of one read may hold in reference frames (bytes, estimated).
_PARALLEL_MEMORY = 512 * 2**20


#: Demuxers whose header tables give every stream and every packet's timestamps. Elsewhere (raw MJPEG,
#: AV1 OBU, ...) probing's decode also sets the frame rate packets are stamped with, which a quick open
#: would not reproduce.
QUICK_OPEN_FORMATS = frozenset({"mov", "matroska", "avi"})


def open_video(path: Path, like: ProbedStream | None = None
               ) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` (already checked to be a regular file) and its first video stream, or say why not.

    ``like``: how the same file opened before (``video_index.probed_stream``). The open then skips FFmpeg's
    trial decode of the first frames, and keeps the result only if it finds the same facts; otherwise the
    file is opened in full."""
    if like is not None:
        quick = _open_like(path, like)
        if quick is not None:
            return quick
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as e:
        text = str(e)
        if "moov atom not found" in text:
            raise VideoDecodeError(path, "the file is truncated (MP4 index 'moov' missing)", "Fetch the file again") from e
        raise VideoDecodeError(path, f"not a video or image FFmpeg can read ({text})",
                               "Check that this is a video file") from e
    except (OSError, ValueError, MemoryError) as e:
        raise VideoDecodeError(path, f"could not be opened ({type(e).__name__}: {e})",
                               "Check the file and its permissions") from e
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(path, f"it has no video stream (streams: {', '.join(kinds)})",
                                   "Use a file that contains video")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            name = stream.metadata.get("codec_name") or getattr(stream, "codec_tag", None) or "unknown"
            raise VideoDecodeError(path, f"no decoder for its codec ({name})", REENCODE_HINT)
        check_size(path, stream.codec_context.width, stream.codec_context.height)
    except BaseException:
        container.close()
        raise
    stream.thread_type = "AUTO"
    return container, stream


def _open_like(path: Path, like: ProbedStream
               ) -> tuple[av.container.InputContainer, av.video.stream.VideoStream] | None:
    """``path`` opened as ``like`` says it opens, without probing's trial decode; None if anything differs."""
    if like.format not in QUICK_OPEN_FORMATS:
        return None
    try:
        container = av.open(str(path), mode="r", format=like.format, options={"probesize": "32"},
                            stream_options=[{}] * like.index + [{"skip_frame": "all"}])
    except (av.error.FFmpegError, OSError, ValueError, MemoryError):
        return None
    kept = False
    try:
        video = container.streams.video
        stream = video[0] if video else None
        if stream is not None and stream.codec_context is not None:
            stream.codec_context.reorder_depth = like.reorder_depth  # what probing's decode established
            if probed_stream(container, stream) == like:
                stream.thread_type = "AUTO"
                kept = True
                return container, stream
    except (av.error.FFmpegError, ValueError, AttributeError, TypeError, OverflowError):
        pass
    finally:
        if not kept:
            container.close()
    return None


def check_size(path: Path, w: int, h: int) -> None:
    if w > MAX_RESOLUTION or h > MAX_RESOLUTION or w < 0 or h < 0 or w * h > MAX_PIXELS:
        raise VideoDecodeError(path, f"absurd resolution {w}x{h} (limit {MAX_RESOLUTION} per side, "
                               f"{MAX_PIXELS:,} pixels)", REENCODE_HINT)


def output_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    """Size after the downscale cap (aspect kept); width/height as stored (before rotation)."""
    if max_side is None or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def to_rgb(frame: av.VideoFrame, size: tuple[int, int], reformatter: VideoReformatter) -> np.ndarray:
    """``frame`` as RGB at ``size``. ``reformatter`` is one per thread and reused: a frame's own
    ``to_ndarray`` sets up a conversion context on every call, which is half the cost at 360p."""
    if (frame.width, frame.height) == size:
        return reformatter.reformat(frame, format="rgb24").to_ndarray()
    return reformatter.reformat(frame, format="rgb24", width=size[0], height=size[1],
                                interpolation="AREA").to_ndarray()


def frame_rotation(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> tuple[int, str | None]:
    """Counter-clockwise rotation from the frame's display matrix, else the legacy ``rotate`` tag; bounded."""
    try:
        raw = frame.rotation
    except (ValueError, OverflowError, TypeError):
        return 0, "ignored a display matrix that gives no angle"
    if raw:
        return bounded_rotation(raw)
    tag = next((v for k, v in stream.metadata.items() if k.lower() == "rotate"), None)  # Matroska: ROTATE
    return rotation_from_tag(tag)


def _stream_size(stream: av.video.stream.VideoStream, max_side: int | None) -> tuple[int, int] | None:
    """Output size from the stream's declared dimensions (so parallel decoders agree), None if unknown."""
    w, h = stream.codec_context.width, stream.codec_context.height
    return output_size(w, h, max_side) if w > 0 and h > 0 else None


# --------------------------------------------------------------------------------------------------
# Threads


def _in_dataloader_worker() -> bool:
    data = sys.modules.get("torch.utils.data")
    info = getattr(data, "get_worker_info", None)
    return bool(info is not None and info() is not None)


def decode_threads() -> int:
    """Decoders one read may run at once: ``HFNET_DECODE_THREADS``, else 1 in a DataLoader worker, else
    one per available core, at most 4."""
    raw = os.environ.get(DECODE_THREADS_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return min(int(raw), 16)
    if _in_dataloader_worker():
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


# --------------------------------------------------------------------------------------------------
# Planned decoding


@dataclass(frozen=True)
class Job:
    """Decode from the keyframe at ``key`` until every timestamp in ``wanted`` (sorted) has its frame."""

    key: int
    wanted: tuple[int, ...]
    cost: int  # frames from the keyframe to the last wanted one (what the job decodes, at most)
    # Timestamps before ``key`` to seek to, in turn, if seeking to it lands off it (keyframes before it,
    # then a whole clip's length before the start)
    earlier: tuple[int, ...] = ()


def plan_jobs(index: PacketIndex, ordinals: np.ndarray) -> list[Job]:
    """One job per group of pictures holding a wanted frame (``ordinals``: sorted, unique), in file order."""
    targets = index.pts[ordinals]
    k = np.searchsorted(index.key_pts, targets, side="right") - 1
    # Frames shown before the first keyframe (leading frames whose references are in the file) are
    # decoded from it: a seek can only start at a keyframe.
    keys = index.key_pts[np.maximum(k, 0)] if len(index.key_pts) else np.full(len(targets), index.pts[0])
    jobs: list[Job] = []
    for key in np.unique(keys):
        wanted = targets[keys == key]
        first = int(np.searchsorted(index.pts, key))
        last = int(np.searchsorted(index.pts, wanted[-1]))
        # Where to seek if seeking to the key lands off it: demuxers without a seek index seek by decoding
        # time, which runs ahead of these presentation times by the reorder delay - by a whole group of
        # pictures where groups are short. So: the keyframes 1, 2 and 4 before, then a whole clip's length
        # before the start (which reads, without decoding, from the start).
        at = int(np.searchsorted(index.key_pts, key))
        start = min(int(index.pts[0]), int(key))
        earlier = tuple(int(index.key_pts[at - b]) for b in (1, 2, 4) if at - b >= 0)
        earlier += (start - max(1, int(index.pts[-1]) - start),)
        jobs.append(Job(int(key), tuple(int(t) for t in wanted), abs(last - first) + 1, earlier))
    return jobs


class _Misbehaves(Exception):
    """The file does not seek as its index says: decode from the start instead."""


class _LandedOffKey(Exception):
    """The seek's first packet is not a keyframe (tried once more from the keyframe before)."""


class _Cancelled(Exception):
    """Another decoder of the same read failed: stop early, its error is the one reported."""


class _Worker:
    """One container + one decoder, taking the longest job left until none is; results keyed by timestamp."""

    def __init__(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 size: tuple[int, int] | None, max_side: int | None, deadline: Deadline, skip_nonref: bool,
                 path: Path, cancel: threading.Event) -> None:
        self.container, self.stream, self.size, self.max_side = container, stream, size, max_side
        self.deadline, self.skip_nonref, self.path, self.cancel = deadline, skip_nonref, path, cancel
        self.got: dict[int, np.ndarray] = {}
        self.rgb = VideoReformatter()
        self.rotation: tuple[int, str | None] | None = None

    def run(self, jobs: "_Jobs") -> None:
        while not self.cancel.is_set() and (job := jobs.take()) is not None:
            self._run(job)

    def _take(self, frame: av.VideoFrame, remaining: list[int], state: dict) -> None:
        if frame.pts is None:
            raise _Misbehaves("a frame has no timestamp")
        if state["first"]:
            state["first"] = False
            if frame.pts > remaining[0]:
                raise _LandedOffKey()  # the seek landed after the wanted frame: seek further back
        if self.size is None:
            check_size(self.path, frame.width, frame.height)
            self.size = output_size(frame.width, frame.height, self.max_side)
        while remaining and frame.pts >= remaining[0]:
            if self.rotation is None:
                self.rotation = frame_rotation(frame, self.stream)
            self.got[remaining.pop(0)] = to_rgb(frame, self.size, self.rgb)
        state["prev"] = frame

    def _run(self, job: Job) -> None:
        """Seek to the job's keyframe. Demuxers without a seek index (MPEG-TS: camcorder and broadcast
        footage) land on a packet near the timestamp, often just after the keyframe: then seek to each of
        ``job.earlier`` in turn and read (without decoding) up to this one."""
        try:
            return self._run_from(job, job.key, find_key=False)
        except _LandedOffKey:
            pass
        for target in job.earlier:
            try:
                return self._run_from(job, target, find_key=True)
            except _LandedOffKey:
                continue
        raise _Misbehaves("no seek landed before the keyframe")

    def _run_from(self, job: Job, target: int, find_key: bool) -> None:
        self.container.seek(target, stream=self.stream, backward=True)
        ctx = self.stream.codec_context
        remaining = list(job.wanted)
        wanted = frozenset(job.wanted)
        unsent = set(job.wanted)
        state = {"first": True, "prev": None}
        skipping = False
        first_packet = True
        # Bound once: this loop runs for every packet of the group (~10 us each, decoding aside).
        check, cancelled, take, decode = self.deadline.check, self.cancel.is_set, self._take, ctx.decode
        skip_nonref = self.skip_nonref
        try:
            for packet in self.container.demux(self.stream):
                check()
                if cancelled():
                    raise _Cancelled()
                size, pts = packet.size, packet.pts
                ts = pts if pts is not None else packet.dts
                if find_key:  # not decoded until the job's keyframe
                    if not size or not packet.is_keyframe or ts is None or ts < job.key:
                        continue
                    if ts > job.key:  # this seek too landed after the keyframe
                        raise _LandedOffKey()
                    find_key = first_packet = False
                if size:
                    if first_packet and not packet.is_keyframe:
                        raise _LandedOffKey()
                    first_packet = False
                skip = skip_nonref and size > 0 and pts is not None and ts not in wanted
                if skip != skipping:
                    ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
                for frame in decode(packet):
                    take(frame, remaining, state)
                if not remaining:
                    return
                if size:
                    unsent.discard(ts)
                if not unsent:  # every wanted frame's packet is in the decoder: drain, decode nothing more
                    if skipping:
                        ctx.skip_frame = "DEFAULT"
                        skipping = False
                    for frame in ctx.decode(None):
                        self._take(frame, remaining, state)
                    if remaining:
                        raise _Misbehaves("a wanted frame did not come out of the decoder")
                    return
        finally:
            if skipping:
                ctx.skip_frame = "DEFAULT"
        if find_key:  # the file ended before the keyframe came: this seek too landed after it
            raise _LandedOffKey()
        if state["prev"] is None:
            raise _Misbehaves("nothing decoded after the seek")
        for t in remaining:  # end of stream: the last frame stands in (e.g. an edit list dropped the tail)
            self.got[t] = to_rgb(state["prev"], self.size, self.rgb)


class _Jobs:
    """The jobs of one read, handed out longest first to whichever decoder is free (shared by its threads).

    A static split by frame count left one decoder ~40 ms behind the other on the benchmark file: groups
    of pictures of equal length differ in cost (content, the keyframe's size). Taking work when free evens
    that out."""

    def __init__(self, jobs: list[Job]) -> None:
        self._jobs = sorted(jobs, key=lambda j: j.cost)  # popped from the end: longest first
        self._lock = threading.Lock()

    def take(self) -> Job | None:
        with self._lock:
            return self._jobs.pop() if self._jobs else None


def decode_planned(
    path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream, index: PacketIndex,
    ordinals: np.ndarray, max_side: int | None, deadline: Deadline, threads: int | None = None,
) -> tuple[dict[int, np.ndarray], tuple[int, str | None]] | None:
    """Frames at ``ordinals`` (sorted unique) keyed by ordinal, plus (rotation, note); None if the file
    misbehaves. ``container`` is reused for the first decoder; others open their own."""
    jobs = plan_jobs(index, ordinals)
    size = _stream_size(stream, max_side)
    budget = threads if threads is not None else decode_threads()
    n = budget
    work = sum(j.cost for j in jobs)
    w, h = stream.codec_context.width, stream.codec_context.height
    memory_cap = max(1, int(_PARALLEL_MEMORY // max(1, w * h * 3 // 2 * 17)))
    n = max(1, min(n, len(jobs), work // _MIN_FRAMES_PER_THREAD, memory_cap)) if size is not None else 1
    skip = stream.codec_context.name in SKIP_NONREF_CODECS
    queue = _Jobs(jobs)
    if n > 1 or budget == 1:
        stream.thread_type = "NONE"  # the decoders (or DataLoader workers) share the cores; codec threads contend
    cancel = threading.Event()
    like = index.probed  # the other decoders open the file as the index's did, without probing
    workers: list[_Worker] = [_Worker(container, stream, size, max_side, deadline, skip, path, cancel)]
    errors: list[BaseException] = []

    def run_own() -> None:
        """A decoder on its own container, opened in its thread (overlapping the first decoder's work)."""
        try:
            c, s = open_video(path, like=like)
            with c:
                s.thread_type = "NONE"
                worker = _Worker(c, s, size, max_side, deadline, skip, path, cancel)
                workers.append(worker)
                worker.run(queue)
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(e)
            cancel.set()

    threads_ = [threading.Thread(target=run_own, daemon=True) for _ in range(n - 1)]
    for t in threads_:
        t.start()
    try:
        workers[0].run(queue)
    except BaseException as e:  # noqa: BLE001 - the other decoders stop first, then this is re-raised
        errors.append(e)
        cancel.set()
    for t in threads_:
        t.join()
    real = [e for e in errors if not isinstance(e, _Cancelled)]
    for e in real:
        if isinstance(e, VideoDecodeError):
            raise e
    if real:
        if all(isinstance(e, (_Misbehaves, av.error.FFmpegError)) for e in real):
            return None
        raise real[0]
    by_pts: dict[int, np.ndarray] = {}
    for wk in workers:
        by_pts.update(wk.got)
    rotation = next((wk.rotation for wk in workers if wk.rotation is not None), (0, None))
    return {int(i): by_pts[int(index.pts[i])] for i in ordinals}, rotation


# --------------------------------------------------------------------------------------------------
# From the start


def decode_sequential(path: Path, wanted: np.ndarray, max_side: int | None,
                      deadline: Deadline) -> tuple[dict[int, np.ndarray], tuple[int, str | None]]:
    """Decode from the start, keeping frames whose output ordinal is in ``wanted`` (sorted unique)."""
    container, stream = open_video(path)
    if decode_threads() == 1:
        stream.thread_type = "NONE"
    got: dict[int, np.ndarray] = {}
    rgb = VideoReformatter()
    rotation: tuple[int, str | None] = (0, None)
    size = _stream_size(stream, max_side)
    last = int(wanted[-1]) if len(wanted) else -1
    want = set(int(i) for i in wanted)
    i = -1
    with container:
        try:
            for i, frame in enumerate(container.decode(stream)):
                deadline.check()
                if i == 0:
                    check_size(path, frame.width, frame.height)
                    rotation = frame_rotation(frame, stream)
                    if size is None:
                        size = output_size(frame.width, frame.height, max_side)
                if i in want:
                    got[i] = to_rgb(frame, size, rgb)
                if i >= last:
                    break
        except av.error.FFmpegError as e:
            raise VideoDecodeError(path, f"frame {i + 1} cannot be decoded ({e})", REENCODE_HINT) from e
    return got, rotation
