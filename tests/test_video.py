"""Video decoding on real files written with PyAV: many codecs, VFR, rotation, and every kind of bad input."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import socket
import struct
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from _video_fixtures import LEVELS, N, frame_ids, make_drop_frame_avi, numbered_frames, reference_decode
from hfnet_core.data import video as V
from hfnet_core.data.video import (
    VideoDecodeError,
    apply_rotation,
    num_frames_of,
    probe_video,
    read_clip,
    read_frames,
    rotation_from_display_matrix,
    sample_indices,
    to_browser_mp4,
    write_video,
)

CODECS = [  # (codec, extension); skipped only if this FFmpeg build lacks the encoder
    ("libx264", ".mp4"),
    ("mpeg4", ".mp4"),
    ("mpeg4", ".avi"),
    ("msmpeg4v2", ".avi"),
    ("msmpeg4", ".avi"),
    ("cinepak", ".avi"),
    ("libvpx-vp9", ".webm"),
    ("mjpeg", ".avi"),
    ("gif", ".gif"),
]


def _encoder_available(codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    frames = numbered_frames()
    out = {}
    for codec, ext in CODECS:
        if not _encoder_available(codec):
            continue
        opts = {"g": "6", "b": "2000000"} if codec != "gif" else None  # several GOPs: seeking is exercised
        if codec == "libvpx-vp9":
            opts = {"g": "6", "deadline": "realtime", "cpu-used": "8"}
        out[f"{codec}{ext}"] = write_video(root / f"clip_{codec}{ext}", frames, fps=12, codec=codec, options=opts)
    return out


SEEKABLE = {"libx264.mp4", "mpeg4.mp4", "mpeg4.avi", "msmpeg4v2.avi", "msmpeg4.avi", "libvpx-vp9.webm",
            "mjpeg.avi", "cinepak.avi"}


@pytest.fixture()
def seek_log(monkeypatch) -> list[str]:
    """Record whether each read took the planned (seeking) path or fell back to decoding from the start."""
    log: list[str] = []
    real = V.decode_planned

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        log.append("seek" if out is not None else "fallback")
        return out

    monkeypatch.setattr(V, "decode_planned", spy)
    return log


@pytest.mark.parametrize("codec,ext", CODECS)
def test_every_codec_decodes_and_sampled_frames_are_the_right_ones(videos, seek_log, codec: str, ext: str) -> None:
    if not _encoder_available(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = videos[f"{codec}{ext}"]
    info = probe_video(path)
    assert (info.width, info.height) == (64, 48) and info.num_frames == N
    assert num_frames_of(path) == N
    every = read_frames(path)
    assert every.shape == (N, 48, 64, 3) and every.dtype == np.uint8
    assert frame_ids(every) == list(range(N))
    assert np.array_equal(every, reference_decode(path))
    idx = [1, 7, 8, 13, 19, 23, 7]  # unsorted, repeated, across several groups of pictures
    sampled = read_frames(path, idx)
    assert frame_ids(sampled) == idx
    # Seeking to keyframes (skipping unreferenced frames) gives bit-identical frames to decoding everything.
    assert np.array_equal(sampled, every[idx])
    if f"{codec}{ext}" in SEEKABLE:
        assert seek_log and set(seek_log) == {"seek"}, seek_log
    clip = read_clip(path, 8, mode="eval")
    assert frame_ids(clip) == sample_indices(N, 8, "eval").tolist()


def test_variable_frame_rate_returns_the_ith_frame(tmp_path, monkeypatch) -> None:
    gaps = [0.02, 0.3, 0.05, 0.5, 0.04, 0.2]  # very irregular: a constant-fps guess lands on wrong frames
    times = np.concatenate([[0.0], np.cumsum([gaps[t % len(gaps)] for t in range(N - 1)])])
    path = write_video(tmp_path / "vfr.mp4", numbered_frames(), fps=12, codec="libx264", timestamps=times,
                       options={"g": "5"})
    info = probe_video(path)
    assert info.num_frames == N and info.duration == pytest.approx(times[-1], abs=0.5)
    idx = sample_indices(N, 8, "eval").tolist()
    assert frame_ids(read_frames(path, idx)) == idx  # decoding from the start
    assert frame_ids(read_clip(path, 8)) == idx  # seeking
    # Sanity: the file really is VFR (a constant-rate reading of frame 12 would be at t = 12/fps).
    with av.open(str(path)) as c:
        pts = sorted(float(p.pts * p.time_base) for p in c.demux(c.streams.video[0]) if p.pts is not None)
    assert np.allclose(pts, times, atol=2e-3)


def test_rotation_metadata_makes_frames_upright(tmp_path) -> None:
    frames = np.full((6, 32, 48, 3), 128, np.uint8)
    frames[:, :8, :8] = (250, 10, 10)  # a red mark at the top-left of the stored frame
    path = write_video(tmp_path / "rot.mp4", frames, codec="libx264", rotation=90)
    info = probe_video(path)
    assert info.rotation == 90 and (info.width, info.height) == (32, 48)
    got = read_frames(path, [0, 5])
    assert got.shape == (2, 48, 32, 3)
    # 90 degrees counter-clockwise: the top-left corner moves to the bottom-left.
    assert got[0, -8:, :8, 0].mean() > 200 and got[0, :8, :8, 0].mean() < 160
    assert np.abs(got.astype(int) - apply_rotation(frames[[0, 5]], 90)).mean() < 4


def _display_matrix(ccw_degrees: float) -> list[int]:
    """FFmpeg's av_display_rotation_set layout (16.16 fixed point), for a counter-clockwise rotation."""
    r = math.radians(ccw_degrees)
    c, s = math.cos(r), math.sin(r)
    fx = lambda v: int(round(v * (1 << 16)))  # noqa: E731
    return [fx(c), fx(-s), 0, fx(s), fx(c), 0, 0, 0, 1 << 30]


@pytest.mark.parametrize("deg", [0, 90, 180, 270, -90, 89.6])
def test_rotation_from_display_matrix(deg: float) -> None:
    assert rotation_from_display_matrix(_display_matrix(deg)) == int(round(deg / 90)) * 90 % 360


def test_apply_rotation_matches_numpy() -> None:
    f = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    assert np.array_equal(apply_rotation(f, 90), np.stack([np.rot90(x) for x in f]))
    assert np.array_equal(apply_rotation(f, 270), np.stack([np.rot90(x, -1) for x in f]))
    assert apply_rotation(f, 0) is f


def test_downscale_cap(tmp_path) -> None:
    path = write_video(tmp_path / "big.mp4", numbered_frames(n=4, h=240, w=320), codec="libx264")
    assert read_frames(path, [0, 3], max_side=80).shape == (2, 60, 80, 3)
    assert read_frames(path, [0], max_side=None).shape == (1, 240, 320, 3)


def test_read_frames_caps_the_number_of_frames(tmp_path) -> None:
    path = write_video(tmp_path / "long.mp4", numbered_frames(), codec="libx264")
    with pytest.warns(UserWarning, match="max_frames"):
        got = read_frames(path, None, max_frames=6)
    assert frame_ids(got) == sample_indices(N, 6, "eval").tolist()
    with pytest.raises(IndexError):
        read_frames(path, [N])


def test_image_folder_clips(tmp_path) -> None:
    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    frames = numbered_frames()
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{t + 1:05d}.{'png' if t % 2 else 'jpg'}")
    info = probe_video(folder)
    assert info.is_image_folder and info.num_frames == N and (info.width, info.height) == (64, 48)
    assert frame_ids(read_clip(folder, 8)) == sample_indices(N, 8, "eval").tolist()
    assert np.array_equal(read_frames(folder, [1, 3])[0], frames[1])  # PNG is lossless


def test_sample_indices_follow_tsn() -> None:
    rng = np.random.default_rng(0)
    for n, k in [(8, 8), (30, 8), (100, 3), (9, 8)]:
        for _ in range(20):
            idx = sample_indices(n, k, "train", rng)
            avg = n // k  # TSN training segments: [k*avg, (k+1)*avg)
            assert np.all(idx >= np.arange(k) * avg) and np.all(idx < (np.arange(k) + 1) * avg)
        ev = sample_indices(n, k, "eval")
        lo, hi = np.arange(k) * n / k, (np.arange(k) + 1) * n / k  # TSN test segments
        assert np.all(ev >= np.floor(lo)) and np.all(ev < hi) and np.array_equal(ev, sample_indices(n, k, "eval"))
    assert sample_indices(100, 4, "eval").tolist() == [12, 37, 62, 87]  # segment centres
    assert sample_indices(5, 3, "dense").tolist() == [0, 1, 2, 3, 4]
    for mode in ("train", "eval"):
        short = sample_indices(3, 8, mode, rng)  # fewer frames than segments: repeat, in order
        assert short.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    a = sample_indices(50, 8, "train", np.random.default_rng(5))
    assert np.array_equal(a, sample_indices(50, 8, "train", np.random.default_rng(5)))
    with pytest.raises(ValueError):
        sample_indices(10, 8, "random")
    with pytest.raises(ValueError):
        sample_indices(0, 8)


def test_to_browser_mp4(tmp_path, videos) -> None:
    odd = numbered_frames(n=5, h=31, w=33)
    data = to_browser_mp4(odd, fps=10)
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (s.codec_context.width, s.codec_context.height) == (34, 32)
        assert len(list(c.decode(s))) == 5
    key = "msmpeg4v2.avi" if "msmpeg4v2.avi" in videos else next(iter(videos))
    with av.open(io.BytesIO(to_browser_mp4(videos[key]))) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert frame_ids(np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])) == list(range(N))


# --------------------------------------------------------------------------------------------------
# Bad input: always a VideoDecodeError naming the file and the problem


def _expect_error(path: Path, fragment: str, fn=read_clip) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError) as ei:
        fn(path, 8) if fn is read_clip else fn(path)
    err = ei.value
    assert isinstance(err, ValueError) and err.path == str(path)
    assert str(path) in str(err) and fragment in err.reason
    assert str(err).startswith(f"cannot read {path}: ")
    return err


def test_missing_and_empty_files(tmp_path) -> None:
    _expect_error(tmp_path / "nope.mp4", "does not exist")
    (tmp_path / "empty.mp4").write_bytes(b"")
    _expect_error(tmp_path / "empty.mp4", "empty")
    _expect_error(tmp_path / "empty.mp4", "empty", fn=probe_video)


def test_not_a_video(tmp_path) -> None:
    p = tmp_path / "notes.mp4"
    p.write_text("this is a text file, not a video\n" * 50)
    _expect_error(p, "not a video")


def test_truncated_files(tmp_path, videos) -> None:
    data = videos["libx264.mp4"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # MP4 index at the end: gone
    _expect_error(cut, "truncated")
    if "mjpeg.avi" in videos:  # AVI: header survives, frames stop
        avi = videos["mjpeg.avi"].read_bytes()
        cut_avi = tmp_path / "cut.avi"
        cut_avi.write_bytes(avi[:2000])
        with pytest.raises(VideoDecodeError) as ei:
            read_frames(cut_avi, [N - 1])
        assert ei.value.path == str(cut_avi)


def test_audio_only_file_has_no_video_stream(tmp_path) -> None:
    p = tmp_path / "sound.wav"
    with av.open(str(p), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in s.encode(frame):
            c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    err = _expect_error(p, "no video stream")
    assert "audio" in err.reason


def test_unreadable_frame_in_an_image_folder(tmp_path) -> None:
    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    for t in range(8):
        Image.fromarray(numbered_frames(n=8)[t]).save(folder / f"{t + 1:05d}.jpg")
    (folder / "00004.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(VideoDecodeError) as ei:
        read_clip(folder, 8)
    assert ei.value.path == str(folder / "00004.jpg") and "cannot be decoded" in ei.value.reason
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    _expect_error(empty, "no image frames")


def test_absurd_resolution_is_refused(tmp_path) -> None:
    p = write_video(tmp_path / "wide.avi", np.zeros((2, 8, 16400, 3), np.uint8), codec="mjpeg")
    _expect_error(p, "absurd resolution")


# --------------------------------------------------------------------------------------------------
# Exact planned decoding: B-frames, several decoders at once


BFRAME_CODECS = [  # (codec, extension, options): reference B-frames and non-reference B-frames
    ("libx264", ".mp4", {"g": "10", "bf": "3", "x264-params": "b-pyramid=normal:ref=2:scenecut=0"}),
    ("libx264", ".mkv", {"g": "7", "bf": "2", "x264-params": "b-pyramid=none:scenecut=0"}),
    ("libx265", ".mp4", {"g": "9", "bf": "4", "x265-params": "log-level=0:keyint=9:min-keyint=9:scenecut=0"}),
    ("mpeg4", ".mp4", {"g": "6", "bf": "2", "b": "2000000"}),
    ("mpeg4", ".avi", {"g": "6", "bf": "2", "b": "2000000"}),
    ("mpeg2video", ".mpg", {"g": "6", "bf": "2", "b": "2000000"}),
]


@pytest.mark.parametrize("codec,ext,opts", BFRAME_CODECS, ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("threads", ["1", "3"])
def test_planned_decoding_is_bit_identical_with_b_frames(tmp_path, monkeypatch, seek_log, codec, ext, opts,
                                                         threads) -> None:
    if not _encoder_available(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    monkeypatch.setenv("HFNET_DECODE_THREADS", threads)
    n = 60
    frames = numbered_frames(n=n)
    path = write_video(tmp_path / f"b_{codec}{ext}", frames, fps=25, codec=codec, options=dict(opts))
    full = reference_decode(path)
    assert len(full) == n
    rng = np.random.default_rng(0)
    for idx in ([0], [n - 1], list(range(n)), list(range(17, 41)), sample_indices(n, 8, "eval").tolist(),
                sorted(rng.choice(n, 11, replace=False).tolist()), rng.integers(0, n, 9).tolist()):
        got = read_frames(path, idx, max_side=None)
        assert np.array_equal(got, full[idx]), (codec, ext, idx)
    if ext != ".mpg":  # MPEG program streams carry no index to seek by; decoding from the start is fine there
        assert "seek" in seek_log


def test_several_decoders_share_one_read(tmp_path, monkeypatch) -> None:
    """With threads allowed, a read spanning many groups of pictures runs on several decoders at once."""
    from hfnet_core.data import video_decode as D

    frames = numbered_frames(n=240)
    path = write_video(tmp_path / "long.mp4", frames, fps=25,
                       options={"g": "60", "bf": "2", "x264-params": "scenecut=0"})  # 4 GOPs, 2 samples each
    opened: list[int] = []
    real_open = D.open_video
    monkeypatch.setattr(D, "open_video", lambda p, like=None: (opened.append(like), real_open(p, like))[1])
    monkeypatch.setenv("HFNET_DECODE_THREADS", "3")
    idx = sample_indices(240, 8, "eval")
    got = read_frames(path, idx, max_side=None)
    assert len(opened) == 2  # the read's own container plus two more decoders
    assert all(like is not None for like in opened)  # opened as the first container was, without probing
    assert np.array_equal(got, reference_decode(path)[idx])
    with pytest.raises(VideoDecodeError, match="time limit"):  # the cap reaches every decoder of the read
        read_frames(path, idx, time_limit=1e-9)
    monkeypatch.setenv("HFNET_DECODE_THREADS", "1")
    opened.clear()
    assert np.array_equal(read_frames(path, idx, max_side=None), got) and not opened


@pytest.mark.parametrize("codec,ext,opts", BFRAME_CODECS + [("libvpx-vp9", ".webm", {"g": "6"}),
                                                    ("mjpeg", ".avi", None), ("gif", ".gif", None)],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_file_opened_before_reopens_without_the_trial_decode(tmp_path, codec, ext, opts) -> None:
    """Reopening as the first open found (``like``) gives a decoder configured the same, frame for frame -
    or, when the quick open finds anything different, an ordinary open."""
    from hfnet_core.data import video_decode as D
    from hfnet_core.data.video_index import probed_stream

    if not _encoder_available(codec):
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = write_video(tmp_path / f"r_{codec}{ext}", numbered_frames(n=30), fps=25, codec=codec,
                       options=dict(opts) if opts else None)
    c, s = D.open_video(path)
    with c:
        like = probed_stream(c, s)
    quick = D._open_like(path, like)
    if ext in (".mp4", ".mkv", ".webm", ".avi"):  # the header describes every stream: no probing needed
        assert quick is not None, (codec, ext)
    if quick is not None:
        c2, s2 = quick
        with c2:
            assert probed_stream(c2, s2) == like
            assert s2.codec_context.skip_frame == "DEFAULT"  # the probing option stays out of decoding
            got = np.stack([f.to_ndarray(format="rgb24") for f in c2.decode(s2)])
        assert np.array_equal(got, reference_decode(path))
    for wrong in (dataclasses.replace(like, width=like.width + 2), dataclasses.replace(like, extradata="0"),
                  dataclasses.replace(like, streams=like.streams + 1), dataclasses.replace(like, format="avi" if like.format != "avi" else "mov")):
        assert D._open_like(path, wrong) is None
        c3, s3 = D.open_video(path, like=wrong)  # falls back to the ordinary open
        with c3:
            assert probed_stream(c3, s3) == like


def test_a_second_read_opens_every_decoder_the_quick_way(tmp_path, monkeypatch) -> None:
    """The packet index keeps how the file opened; the next read's own container and its extra decoders
    open like it, and a file changed in between is opened in full again."""
    from hfnet_core.data import video_decode as D

    monkeypatch.setenv("HFNET_DECODE_THREADS", "2")
    path = write_video(tmp_path / "twice.mp4", numbered_frames(n=240), fps=25,
                       options={"g": "60", "bf": "2", "x264-params": "scenecut=0"})
    quick: list[bool] = []
    real = D._open_like
    monkeypatch.setattr(D, "_open_like", lambda p, like: (lambda r: (quick.append(r is not None), r)[1])(real(p, like)))
    idx = sample_indices(240, 8, "eval")
    first = read_frames(path, idx, max_side=None)
    assert quick == [True]  # the first read: its own open is in full, the second decoder opens like it
    quick.clear()
    assert np.array_equal(read_frames(path, idx, max_side=None), first)
    assert quick == [True, True]
    assert np.array_equal(first, reference_decode(path)[idx])
    quick.clear()
    os.utime(path, ns=(1, 1))  # "changed": the cached index (and how the file opened) no longer applies
    assert np.array_equal(read_frames(path, idx, max_side=None), first)
    assert quick == [True]


def test_a_file_without_presentation_times_always_opens_in_full(tmp_path, monkeypatch) -> None:
    """Raw H.264 (no timestamps at all): frames are placed by decoding times, which a quick open need not
    reproduce, so the index keeps no "how it opened" and every read opens in full - and is exact."""
    from hfnet_core.data import video_decode as D
    from hfnet_core.data.video_index import cached_index

    path = write_video(tmp_path / "raw.h264", numbered_frames(n=90), fps=25,
                       options={"g": "30", "bf": "2", "x264-params": "scenecut=0"})
    quick: list[object] = []
    monkeypatch.setattr(D, "_open_like", lambda p, like: quick.append(like))
    full = reference_decode(path)
    idx = np.array([89, 0, 45, 31, 30, 45])
    for _ in range(2):
        assert np.array_equal(read_frames(path, idx, max_side=None), full[idx])
    assert cached_index(path).probed is None and quick == []


@pytest.mark.parametrize("ext", [".ts", ".m2ts"])
def test_transport_streams_are_read_by_seeking(tmp_path, seek_log, monkeypatch, ext) -> None:
    """MPEG-TS (camcorder .mts/.m2ts, broadcast captures) has no seek index: FFmpeg seeks by decoding time
    and lands just after the keyframe. The read seeks to the keyframe before and reads on, undecoded, to
    the one it needs - planned, not decoded from the start, and exact, on every group of pictures."""
    path = write_video(tmp_path / f"cam{ext}", numbered_frames(n=400), fps=25,
                       options={"g": "50", "bf": "2", "x264-params": "scenecut=0"})
    full = reference_decode(path)
    for threads in ("1", "2"):
        monkeypatch.setenv("HFNET_DECODE_THREADS", threads)
        for idx in (sample_indices(400, 8, "eval"), np.array([0, 1, 50, 99, 100, 399])):
            seek_log.clear()
            assert np.array_equal(read_frames(path, idx, max_side=None), full[idx]), (threads, idx)
            assert seek_log == ["seek"]


@pytest.mark.parametrize("ext", [".ts", ".mpg"])
def test_short_groups_of_pictures_without_a_seek_index_are_read_by_seeking(tmp_path, seek_log, ext) -> None:
    """Where groups of pictures are as short as the reorder delay (MPEG-2 with a keyframe every 3 frames),
    a seek by decoding time lands a whole group late, and so can a seek to the keyframe before: the read
    seeks further back in turn (keyframes 1, 2 and 4 before, then the start) and stays planned."""
    path = write_video(tmp_path / f"short_gop{ext}", _panning(90), fps=25, codec="mpeg2video",
                       options={"g": "3", "bf": "2"})
    full = reference_decode(path)
    for idx in (sample_indices(90, 8, "eval"), np.array([0, 1, 2, 3, 44, 45, 88, 89])):
        seek_log.clear()
        assert np.array_equal(read_frames(path, idx, max_side=None), full[idx]), idx
        assert seek_log == ["seek"]


def test_plans_start_at_keyframes_and_fall_back_further_each_time() -> None:
    """Every job seeks to a keyframe - frames shown before the first one (leading frames that decode) are
    decoded from it - and lists where to seek next if the seek lands late: the keyframes 1, 2 and 4
    before, then a clip's length before the start."""
    from fractions import Fraction

    from hfnet_core.data.video_decode import plan_jobs
    from hfnet_core.data.video_index import PacketIndex

    pts = np.arange(0, 60, dtype=np.int64) * 10  # frames 0-2 are shown before the first keyframe, 30
    index = PacketIndex(pts, np.arange(30, 600, 60, dtype=np.int64), len(pts), Fraction(1, 100), None, None,
                        None, True)
    jobs = plan_jobs(index, np.array([0, 2, 3, 40, 59]))
    assert [(j.key, j.wanted) for j in jobs] == [(30, (0, 20, 30)), (390, (400,)), (570, (590,))]
    assert all(j.key in index.key_pts and j.cost >= 1 for j in jobs)
    assert jobs[0].earlier == (-590,) and jobs[1].earlier == (330, 270, 150, -590)
    assert jobs[2].earlier == (510, 450, 330, -590)


def test_decoders_take_the_longest_job_left_each_job_once() -> None:
    """Free decoders pull work: longest first, and across threads every job is handed out exactly once."""
    from hfnet_core.data.video_decode import Job, _Jobs

    jobs = [Job(key=k, wanted=(k,), cost=c) for k, c in enumerate([26, 226, 126, 176, 76, 226])]
    queue = _Jobs(jobs)
    assert [queue.take().cost for _ in range(3)] == [226, 226, 176]
    many = _Jobs([Job(key=k, wanted=(k,), cost=k % 7) for k in range(2000)])
    taken: list[int] = []

    def drain() -> None:
        while (job := many.take()) is not None:
            taken.append(job.key)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(2000)) and many.take() is None


def test_b_frames_stamped_in_decoding_order_are_read_from_the_start(tmp_path, seek_log) -> None:
    """H.264 with B-frames in AVI: the container stamps packets in decoding order, so a packet's timestamp
    does not say which frame it holds. Such a file is decoded from the start (exact); one whose stamps are
    presentation times (MP4, or MPEG-4 in AVI, which FFmpeg restamps) may still be planned."""
    from hfnet_core.data.video_index import cached_index

    frames = numbered_frames(n=90)
    opts = {"g": "30", "bf": "2", "x264-params": "scenecut=0"}
    avi = write_video(tmp_path / "b.avi", frames, fps=25, options=dict(opts))
    mp4 = write_video(tmp_path / "b.mp4", frames, fps=25, options=dict(opts))
    m4 = write_video(tmp_path / "m4.avi", frames, fps=25, codec="mpeg4", options={"g": "30", "bf": "2"})
    for path, planned in ((avi, False), (mp4, True), (m4, True)):
        full = reference_decode(path)
        idx = sample_indices(len(full), 8, "eval")
        seek_log.clear()
        assert np.array_equal(read_frames(path, idx, max_side=None), full[idx]), path.name
        index = cached_index(path)
        assert index.decode_order is (not planned) and index.seekable is planned, path.name
        if path is not m4:  # (MPEG-4 in AVI: the muxer flags P-frames as keyframes; the plan notices, falls back)
            assert seek_log == (["seek"] if planned else []), path.name
    times = V.frame_times(avi)  # the sorted stamps are still the times frames are shown at
    assert np.allclose(np.diff(times), 1 / 25)


def _encode_forcing(path: Path, frames: np.ndarray, codec: str, kind: str, until: int,
                    options: dict[str, str]) -> Path:
    """``frames`` encoded with the first ``until`` forced to picture type ``kind`` ("I" or "P")."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = options
        for t, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pict_type = getattr(av.video.frame.PictureType, kind if t < until else "NONE")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_reordering_is_found_from_slice_headers_where_the_sps_leaves_it_out(tmp_path, seek_log,
                                                                          monkeypatch) -> None:
    """H.264 whose SPS leaves out the bitstream restriction (some cameras) announces no reorder depth:
    whether an AVI's stamps are decoding order is then read from its slice headers (any B-slice)."""
    from hfnet_core.data import video_index as VI

    real = VI.probed_stream
    monkeypatch.setattr(VI, "probed_stream", lambda c, s: dataclasses.replace(real(c, s), reorder_depth=0))
    frames = numbered_frames(n=200)
    for bf, reorders in (("2", True), ("0", False)):
        path = write_video(tmp_path / f"bf{bf}.avi", frames, fps=25,
                           options={"g": "30", "bf": bf, "x264-params": "scenecut=0"})
        full = reference_decode(path)
        seek_log.clear()
        idx = np.array([89, 40, 0, 31, 61, 199, 150])
        assert np.array_equal(read_frames(path, idx, max_side=None), full[idx]), bf
        index = VI.cached_index(path)
        assert index.probed.reorder_depth == 0 and index.decode_order is reorders, bf
        assert seek_log == ([] if reorders else ["seek"]), bf
    # B-frames only after a long stretch of P-frames (a high-motion opening): still found.
    late = _encode_forcing(tmp_path / "late_b.avi", frames, "libx264", "P", 120,
                           {"x264-params": "bframes=2:b-adapt=0:keyint=40:min-keyint=40:scenecut=0"})
    full = reference_decode(late)
    idx = np.array([5, 130, 150, 177, 199])
    assert np.array_equal(read_frames(late, idx, max_side=None), full[idx])
    assert VI.cached_index(late).decode_order


def test_decode_threads_policy(monkeypatch) -> None:
    from hfnet_core.data import video_decode as D

    monkeypatch.setenv("HFNET_DECODE_THREADS", "2")
    assert D.decode_threads() == 2
    monkeypatch.setenv("HFNET_DECODE_THREADS", "junk")
    assert 1 <= D.decode_threads() <= 4
    monkeypatch.delenv("HFNET_DECODE_THREADS")
    monkeypatch.setattr(D, "_in_dataloader_worker", lambda: True)
    assert D.decode_threads() == 1  # DataLoader workers already fill the cores


# --------------------------------------------------------------------------------------------------
# Decoding by evidence: drop frames and VFR accepted, truncation judged from the file itself


def _stream_copy_from_keyframe(src: Path, dst: Path, keyframe: int, shown_from_s: float = 0.0) -> Path:
    """What a cut without re-encoding makes (``ffmpeg -ss T -c copy``): packets from the ``keyframe``-th
    keyframe on, stamped so that the frame ``shown_from_s`` seconds after it is shown first (an MP4 edit
    list then marks the packets before it as decoded but not shown)."""
    with av.open(str(src)) as ic, av.open(str(dst), "w") as oc:
        ist = ic.streams.video[0]
        ost = oc.add_stream_from_template(ist)
        seen, shift = 0, None
        for packet in ic.demux(ist):
            if not packet.size:
                continue
            if shift is None:
                seen += packet.is_keyframe
                if seen <= keyframe:
                    continue
                shift = packet.pts + round(shown_from_s / float(ist.time_base))
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = ost
            oc.mux(packet)
    return dst


def _cut_files(tmp_path: Path) -> dict[str, Path]:
    frames = numbered_frames(n=150)
    closed = {"x264-params": "bframes=2:b-pyramid=normal:keyint=25:min-keyint=25:scenecut=0"}
    opened = {"x264-params": "bframes=3:b-adapt=0:b-pyramid=normal:open-gop=1:keyint=24:min-keyint=24:scenecut=0"}
    mp4 = write_video(tmp_path / "src.mp4", frames, fps=25, options=closed)
    open_mkv = write_video(tmp_path / "open.mkv", frames, fps=25, options=opened)
    ts = write_video(tmp_path / "src.ts", frames, fps=25, options=closed)
    data = ts.read_bytes()
    (tmp_path / "mid_gop.ts").write_bytes(data[int(len(data) * 0.37) // 188 * 188:])  # a capture started late
    return {"edit list": _stream_copy_from_keyframe(mp4, tmp_path / "edit_list.mp4", 2, 0.3),
            "open GOP": _stream_copy_from_keyframe(open_mkv, tmp_path / "open_gop_cut.mkv", 2),
            "mid-GOP start": tmp_path / "mid_gop.ts"}


def test_cut_files_list_only_the_frames_a_decoder_shows(tmp_path, seek_log) -> None:
    """Frames decoded but never shown - marked so by an edit list, or leading frames whose references were
    cut away - are not frames of the clip: counts, samples and single reads all agree with a plain decode,
    whichever other frames are asked for at the same time."""
    from hfnet_core.data.video_index import cached_index

    for kind, path in _cut_files(tmp_path).items():
        full = reference_decode(path)
        assert num_frames_of(path) == len(full), kind
        index = cached_index(path)
        assert (index.discarded if kind == "edit list" else index.dropped_leading) > 0, kind
        idx = sample_indices(len(full), 8, "eval")
        assert np.array_equal(read_clip(path, 8, "eval", max_side=None), full[idx]), kind
        for k in (1, len(full) // 3, len(full) - 1):
            alone = read_frames(path, [k], max_side=None)[0]
            assert np.array_equal(alone, full[k]) and np.array_equal(read_frames(path, [0, k], max_side=None)[1],
                                                                     alone), (kind, k)
        assert len(read_frames(path, None, max_side=None)) == len(full), kind
        assert "seek" in seek_log, kind


def _panning(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth texture panning one pixel a frame: encoders code it with P-frames (the numbered frames'
    jumps in brightness make some encoders code every frame as intra)."""
    y, x = np.mgrid[0:h, 0:w + n]
    base = (128 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0)).astype(np.uint8)
    return np.stack([np.repeat(base[:, t:t + w, None], 3, axis=2) for t in range(n)])


def _cut_files_read_from_the_start(tmp_path: Path) -> dict[str, Path]:
    """Cut files whose timestamps cannot say which frames are leading ones: decoding times (AVI), or none
    at all on the keyframe (raw streams, an MPEG-PS capture joined late)."""
    frames = numbered_frames(n=150)
    opened = {"x264-params": "bframes=3:b-adapt=0:b-pyramid=normal:open-gop=1:keyint=24:min-keyint=24:scenecut=0"}
    closed = {"x264-params": "bframes=2:keyint=25:min-keyint=25:scenecut=0"}
    avi = write_video(tmp_path / "open.avi", frames, fps=25, options=opened)
    with av.open(str(avi)) as ic, av.open(str(tmp_path / "open_gop_cut.avi"), "w") as oc:
        ist = ic.streams.video[0]
        ost = oc.add_stream_from_template(ist)
        seen, shift = 0, None
        for packet in ic.demux(ist):  # a stream copy from the second keyframe on (``ffmpeg -ss -c copy``)
            if not packet.size:
                continue
            seen += packet.is_keyframe
            if seen <= 2:
                continue
            shift = packet.dts if shift is None else shift
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, ost
            oc.mux(packet)
    out = {"open GOP AVI": tmp_path / "open_gop_cut.avi"}
    # The same cut from an MP4 (length-prefixed NAL units made Annex B): this AVI flags no keyframe at all.
    mp4 = write_video(tmp_path / "open.mp4", frames, fps=25, options=opened)
    with av.open(str(mp4)) as ic, av.open(str(tmp_path / "unflagged_cut.avi"), "w") as oc:
        ist = ic.streams.video[0]
        ost = oc.add_stream_from_template(ist)
        packets = [p for p in ic.demux(ist) if p.size]
        packets = packets[[i for i, p in enumerate(packets) if p.is_keyframe][2]:]
        shift = min(p.dts for p in packets)
        annex_b = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", ist)
        for packet in [q for p in packets for q in annex_b.filter(p)] + list(annex_b.filter(None)):
            packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, ost
            oc.mux(packet)
    out["open GOP AVI without keyframe flags"] = tmp_path / "unflagged_cut.avi"
    for name, ext, codec, opts in (("raw H.264 joined mid-GOP", ".h264", "libx264", closed),
                                   ("MPEG-PS joined late", ".mpg", "libx264", closed),
                                   ("raw MPEG-2 joined mid-GOP", ".m2v", "mpeg2video", {"g": "12", "bf": "2"})):
        data = write_video(tmp_path / f"src{ext}", frames, fps=25, codec=codec, options=opts).read_bytes()
        out[name] = tmp_path / f"late{ext}"
        out[name].write_bytes(data[int(len(data) * 0.41):])
    return out


def test_cut_files_without_telling_timestamps_count_what_a_decoder_shows(tmp_path, seek_log) -> None:
    """Frames dropped at the start of a cut file are found by decoding even where timestamps cannot single
    them out (decoding-order stamps, an untimed keyframe): counts and reads agree with a plain decode."""
    from hfnet_core.data.video_index import cached_index

    for kind, path in _cut_files_read_from_the_start(tmp_path).items():
        full = reference_decode(path)
        assert num_frames_of(path) == len(full), kind
        assert cached_index(path).dropped_leading > 0, kind
        assert np.array_equal(read_frames(path, None, max_side=None), full), kind
        idx = sample_indices(len(full), 8, "eval")
        assert np.array_equal(read_clip(path, 8, "eval", max_side=None), full[idx]), kind
        for k in (1, len(full) // 3, len(full) - 1):
            assert np.array_equal(read_frames(path, [k], max_side=None)[0], full[k]), (kind, k)
    assert seek_log == []


def test_a_demuxer_that_flags_every_packet_a_keyframe_is_not_seeked(tmp_path, seek_log) -> None:
    """Raw H.263 marks every packet a keyframe, P-frames too: seeking to one would decode a P-frame without
    its references (garbage, no error). Such flags are trusted only where decoding flagged packets on their
    own gives keyframes - an intra-only codec, or an all-intra encoding of an inter codec."""
    from hfnet_core.data.video_index import _decode_alone_as_keyframes, cached_index

    path = write_video(tmp_path / "raw.h263", _panning(120, 144, 176), fps=25, codec="h263", options={"g": "25"})
    full = reference_decode(path)
    idx = np.array([119, 60, 0, 30, 31, 60])
    assert np.array_equal(read_frames(path, idx, max_side=None), full[idx])
    index = cached_index(path)
    assert not index.keys_known and not index.seekable and seek_log == []
    assert not _decode_alone_as_keyframes(path, 0, [1, 2, 64], [], V.Deadline(path, 10))
    intra = write_video(tmp_path / "intra.avi", numbered_frames(n=40), fps=25, codec="mjpeg")
    assert np.array_equal(read_frames(intra, [39, 5], max_side=None), reference_decode(intra)[[39, 5]])
    assert cached_index(intra).keys_known and seek_log == ["seek"]


def test_flags_are_checked_to_the_end_of_the_file(tmp_path, seek_log) -> None:
    """A file whose every packet is flagged a keyframe but which is all-intra only for a while (then
    P-frames) is caught by packets checked over the rest of the file, up to its last."""
    from hfnet_core.data.video_index import cached_index

    frames = _panning(120)
    path = tmp_path / "all_flagged.mov"
    # intra beyond the 65th packet, the last one checked from the start
    src = _encode_forcing(tmp_path / "src.avi", frames, "mpeg4", "I", 80, {"g": "1000", "bf": "0"})
    with av.open(str(src)) as ic, av.open(str(path), "w") as oc:  # a muxer that flags every packet
        ist = ic.streams.video[0]
        ost = oc.add_stream_from_template(ist)
        for packet in ic.demux(ist):
            if packet.size:
                packet.is_keyframe, packet.stream = True, ost
                oc.mux(packet)
    with av.open(str(path)) as c:
        assert all(p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size)
    full = reference_decode(path)
    idx = np.array([10, 90, 100, 119])
    assert np.array_equal(read_frames(path, idx, max_side=None), full[idx])
    assert not cached_index(path).keys_known and seek_log == []


@pytest.mark.parametrize("codec,ext", [("libx264", ".mp4"), ("mpeg4", ".mp4"), ("mpeg2video", ".ts")])
def test_all_intra_files_of_inter_codecs_are_read_by_seeking(tmp_path, seek_log, codec, ext) -> None:
    """An all-intra encoding (H.264 with a keyframe every frame, I-only MPEG-2 or MPEG-4) flags every packet
    a keyframe and is right to: its reads seek like any other file's instead of decoding from the start."""
    from hfnet_core.data.video_index import cached_index

    path = write_video(tmp_path / f"all_intra{ext}", _panning(90), fps=25, codec=codec, options={"g": "1"})
    full = reference_decode(path)
    idx = np.array([89, 45, 0, 31, 10, 88])
    assert np.array_equal(read_frames(path, idx, max_side=None), full[idx])
    index = cached_index(path)
    assert index.keys_known and index.seekable and seek_log == ["seek"]
    assert len(index.key_pts) == len(full)


@pytest.mark.parametrize("codec,ext,opts", [("h263", ".h263", {"g": "25"}), ("mpeg2video", ".m2v", {"g": "6", "bf": "2"}),
                                            ("mjpeg", ".mjpeg", None), ("libx264", ".h264", {"g": "12"})])
def test_raw_streams_are_never_seeked(tmp_path, seek_log, codec, ext, opts) -> None:
    """A raw elementary stream has no timestamps of its own: its parser counts them out, and after a seek it
    counts otherwise (raw H.263 landed one frame late). Such files are decoded from the start."""
    from hfnet_core.data.video_index import cached_index

    h, w = (144, 176) if codec == "h263" else (48, 64)
    path = write_video(tmp_path / f"raw{ext}", numbered_frames(n=90, h=h, w=w), fps=25, codec=codec, options=opts)
    full = reference_decode(path)
    for k in (1, 40, 89):
        assert np.array_equal(read_frames(path, [k], max_side=None)[0], full[k]), k
    idx = sample_indices(len(full), 8, "eval")
    assert np.array_equal(read_frames(path, idx, max_side=None), full[idx])
    index = cached_index(path)
    assert index.made_up_times and not index.seekable and seek_log == []


@pytest.mark.parametrize("threads", ["1", "2"])
def test_raw_streams_are_reopened_in_full(tmp_path, monkeypatch, threads) -> None:
    """A raw MJPEG stream gets its packet times from the frame rate probing's decode found: a quick reopen
    would stamp them differently, so only demuxers with timestamp tables are reopened the quick way."""
    from hfnet_core.data import video_decode as D
    from hfnet_core.data.video_index import cached_index

    monkeypatch.setenv("HFNET_DECODE_THREADS", threads)
    path = write_video(tmp_path / "raw.mjpeg", numbered_frames(n=120), fps=25, codec="mjpeg")
    full = reference_decode(path)
    idx = np.array([119, 0, 60, 1, 40])
    for _ in range(2):  # cold, then warm (the index is cached)
        assert np.array_equal(read_frames(path, idx, max_side=None), full[idx])
    assert D._open_like(path, cached_index(path).probed) is None


def test_drop_frame_avi_is_read_at_real_timestamps(tmp_path) -> None:
    path, pts = make_drop_frame_avi(tmp_path / "drops.avi")
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 444  # what the header announces
    head = probe_video(path)
    assert head.declared_frames == 444
    info = probe_video(path, exact=True)
    assert info.num_frames == 68 and info.declared_frames == 444
    assert info.variable_frame_rate and info.fps == 15
    assert info.duration == pytest.approx(29.6, abs=1e-6)
    assert info.mean_fps == pytest.approx(68 / 29.6)
    assert any("444" in n and "68" in n for n in info.notes)
    assert np.allclose(V.frame_times(path), pts / 15.0)
    clip = read_clip(path, 8)
    assert frame_ids(clip) == [i % N for i in sample_indices(68, 8, "eval")]
    assert np.array_equal(read_frames(path, list(range(68)), max_side=None), reference_decode(path))


def test_header_count_is_only_a_hint(tmp_path) -> None:
    """Patch an AVI header to announce 10x the frames it has: nothing is refused, the note says so."""
    path = write_video(tmp_path / "h.avi", numbered_frames(), codec="mjpeg")
    data = bytearray(path.read_bytes())
    at = data.index(b"avih") + 8 + 16  # AVIMAINHEADER.dwTotalFrames
    data[at : at + 4] = struct.pack("<I", 10 * N)
    at = data.index(b"strh") + 8 + 32  # AVISTREAMHEADER.dwLength
    data[at : at + 4] = struct.pack("<I", 10 * N)
    path.write_bytes(bytes(data))
    info = probe_video(path, exact=True)
    assert info.num_frames == N and info.declared_frames == 10 * N
    assert frame_ids(read_frames(path)) == list(range(N))


def _faststart_mp4(path: Path, n: int = 24) -> Path:
    return write_video(path, numbered_frames(n=n), codec="libx264", options={"movflags": "+faststart", "g": "6"})


@pytest.mark.parametrize("ext,codec", [(".mp4", "libx264"), (".mkv", "libx264"), (".webm", "libvpx-vp9"),
                                       (".avi", "mjpeg")])
def test_truncation_is_judged_from_evidence(tmp_path, ext, codec) -> None:
    opts = {"g": "6", "movflags": "+faststart"} if ext == ".mp4" else {"g": "6"}
    if codec == "libvpx-vp9":
        opts.update({"deadline": "realtime", "cpu-used": "8"})
    if codec == "mjpeg":
        opts = None
    src = write_video(tmp_path / f"src{ext}", numbered_frames(), codec=codec, options=opts)
    data = src.read_bytes()
    refused = 0
    for frac in (0.35, 0.6, 0.85):
        cut = tmp_path / f"cut{frac}{ext}"
        cut.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(VideoDecodeError, match="truncated|cannot be decoded|FFmpeg can read") as ei:
            read_clip(cut, 8)
        assert ei.value.path == str(cut)
        refused += "truncated" in ei.value.reason
    assert refused >= 2  # said in words: the file ends inside its frames


def test_cut_inside_a_trailing_index_keeps_every_frame(tmp_path) -> None:
    """Matroska writes its index (Cues) after the frames; a file cut there still has every frame."""
    from hfnet_core.data.video_checks import structure_cut

    src = write_video(tmp_path / "src.mkv", numbered_frames(), options={"g": "6"})
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[:-6])
    found = structure_cut(cut, len(data) - 6)
    assert found is not None and not found.media and "Cues" in found.element
    info = probe_video(cut, exact=True)
    assert any("frames themselves are complete" in n for n in info.notes)
    assert frame_ids(read_frames(cut)) == list(range(N))


def test_structure_cut_finds_media_elements(tmp_path) -> None:
    from hfnet_core.data.video_checks import structure_cut

    mp4 = _faststart_mp4(tmp_path / "a.mp4")
    data = mp4.read_bytes()
    assert structure_cut(mp4, len(data)) is None
    short = tmp_path / "short.mp4"
    short.write_bytes(data[:-100])
    cut = structure_cut(short, len(data) - 100)
    assert cut is not None and cut.media and cut.element == "'mdat' box" and cut.missing_bytes == 100
    avi = write_video(tmp_path / "a.avi", numbered_frames(), codec="mjpeg")
    data = avi.read_bytes()
    short = tmp_path / "short.avi"
    short.write_bytes(data[: len(data) // 2])
    cut = structure_cut(short, len(data) // 2)
    assert cut is not None and cut.media and "movi" in cut.element


# --------------------------------------------------------------------------------------------------
# Untrusted files: non-regular files, invalid paths, bounded metadata, a time cap


def _finishes(fn, seconds: float = 20.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it does not return in time."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the read hung"
    return out


READERS = [
    ("probe_video", lambda p: probe_video(p)),
    ("probe_video_exact", lambda p: probe_video(p, exact=True)),
    ("read_clip", lambda p: read_clip(p, 8)),
    ("read_frames", lambda p: read_frames(p, [0])),
    ("num_frames_of", lambda p: num_frames_of(p)),
    ("frame_times", lambda p: V.frame_times(p)),
    ("read_image_files", lambda p: V.read_image_files([p])),
]


def test_fifo_device_and_socket_are_refused_before_opening(tmp_path) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    sock_path = tmp_path / "s.mp4"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for path, kind in ((fifo, "named pipe"), (Path("/dev/null"), "character device"), (sock_path, "socket")):
            for name, fn in READERS:
                out = _finishes(lambda: fn(path))
                err = out.get("error")
                assert isinstance(err, VideoDecodeError), (name, path, out)
                assert kind in err.reason and "not a regular file" in err.reason
    finally:
        sock.close()


def test_a_folder_where_a_file_is_expected(tmp_path) -> None:
    folder = tmp_path / "00001.jpg"
    folder.mkdir()
    with pytest.raises(VideoDecodeError, match="folder, not a video file"):
        V.read_image_files([folder])
    (tmp_path / "clip.mp4").mkdir()  # a folder path is an image-folder clip: it says what it lacks
    _expect_error(tmp_path / "clip.mp4", "no image frames")


@pytest.mark.parametrize("bad,fragment", [("clip\x00.mp4", "NUL byte"), ("x" * 5000 + ".mp4", "cannot be used"),
                                          (12345, "must be text"), ("\udcff\ud800.mp4", "not valid")])
def test_invalid_paths_give_a_clear_error(bad, fragment) -> None:
    for name, fn in READERS:
        with pytest.raises(VideoDecodeError) as ei:
            fn(bad)
        assert fragment in ei.value.reason, (name, ei.value.reason)
        assert "\x00" not in str(ei.value)


def test_rotation_tags_are_parsed_within_bounds(tmp_path) -> None:
    from hfnet_core.data.video_checks import bounded_rotation, rotation_from_tag

    assert rotation_from_tag("90") == (270, None)  # clockwise tag -> counter-clockwise
    assert rotation_from_tag("-90.0") == (90, None)
    assert rotation_from_tag(None) == (0, None)
    for garbage in ("1e400", "nan", "inf", "abc", "9" * 40, "45", "90deg", "１８０"):
        rot, note = rotation_from_tag(garbage)
        assert rot == 0 and note and "ignored" in note, garbage
    assert bounded_rotation(float("nan"))[0] == 0 and bounded_rotation(-2**31)[0] == 0
    assert bounded_rotation(-180) == (180, None)
    for tag, expected in (("1e400", 0), ("nan", 0), ("90", 270), ("-1e308", 0)):
        path = tmp_path / f"rot_{expected}_{len(tag)}.mkv"
        with av.open(str(path), "w") as c:
            s = c.add_stream("mpeg4", rate=10)
            s.width, s.height, s.pix_fmt = 32, 48, "yuv420p"
            s.metadata["rotate"] = tag  # Matroska keeps it as a ROTATE tag
            for f in numbered_frames(n=3, h=48, w=32):
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        info = probe_video(path)
        assert info.rotation == expected
        assert (info.width, info.height) == ((48, 32) if expected in (90, 270) else (32, 48))
        assert read_clip(path, 2).shape == (2, info.height, info.width, 3)
        if expected == 0:
            assert any("rotate tag" in n for n in info.notes)


def test_header_values_are_bounded() -> None:
    from fractions import Fraction

    from hfnet_core.data.video_checks import bounded_count, bounded_duration, bounded_fps

    assert bounded_fps(Fraction(30000, 1001))[0] == pytest.approx(29.97, abs=1e-3)
    assert bounded_fps(None) == (None, None) and bounded_fps(Fraction(0, 1)) == (None, None)
    for bad in (Fraction(10**9), -5.0, float("inf"), float("nan"), "x"):
        value, note = bounded_fps(bad)
        assert value is None and note
    assert bounded_duration(12.5) == (12.5, None)
    for bad in (-1.0, float("inf"), 1e30, "x"):
        assert bounded_duration(bad)[0] is None
    assert bounded_count(24) == 24 and bounded_count(0) is None and bounded_count(10**12) is None


def test_every_read_has_a_time_cap(tmp_path, monkeypatch) -> None:
    path = write_video(tmp_path / "a.mp4", numbered_frames(), codec="libx264", options={"g": "6"})
    from hfnet_core.data.video_checks import DEFAULT_TIME_LIMIT_S, TIME_LIMIT_ENV, default_time_limit

    assert default_time_limit() == DEFAULT_TIME_LIMIT_S == 10.0
    for fn in (lambda: read_clip(path, 8, time_limit=1e-9), lambda: read_frames(path, time_limit=1e-9),
               lambda: probe_video(path, time_limit=1e-9)):
        with pytest.raises(VideoDecodeError, match="time limit") as ei:
            fn()
        assert TIME_LIMIT_ENV in ei.value.hint
    monkeypatch.setenv(TIME_LIMIT_ENV, "1e-9")
    with pytest.raises(VideoDecodeError, match="1e-09 s time limit"):
        read_clip(path, 8)
    monkeypatch.setenv(TIME_LIMIT_ENV, "soon")  # unusable: the default applies
    assert default_time_limit() == DEFAULT_TIME_LIMIT_S
    assert read_clip(path, 8).shape == (8, 48, 64, 3)


def test_huge_frames_are_refused(tmp_path) -> None:
    """A header may claim any size; more than 8K UHD of pixels is refused before decoding."""
    path = write_video(tmp_path / "small.avi", numbered_frames(n=4), codec="mjpeg")
    data = bytearray(path.read_bytes())
    at = data.index(b"strf") + 8 + 4  # BITMAPINFOHEADER.biWidth, biHeight
    data[at : at + 8] = struct.pack("<ii", 12000, 12000)
    path.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match="absurd resolution|cannot be decoded|FFmpeg"):
        read_clip(path, 2)


def test_browser_mp4_keeps_variable_timestamps(tmp_path) -> None:
    times = [0.0, 0.1, 0.15, 0.9, 1.0, 1.5]
    data = to_browser_mp4(numbered_frames(n=6), fps=10, timestamps=times)
    with av.open(io.BytesIO(data)) as c:
        got = [float(f.time) for f in c.decode(video=0)]
    assert np.allclose(got, times, atol=0.002)
    with av.open(io.BytesIO(to_browser_mp4(numbered_frames(n=6), timestamps=np.add(times, 40.0)))) as c:
        got = [float(f.time) for f in c.decode(video=0)]
    assert np.allclose(got, times, atol=0.002)  # a span from 40 s plays from 0
    path, pts = make_drop_frame_avi(tmp_path / "d.avi", slots=90, coded=20)
    with av.open(io.BytesIO(to_browser_mp4(path))) as c:
        got = [float(f.time) for f in c.decode(video=0)]
    assert np.allclose(got, pts / 15.0, atol=0.002)


def test_a_fifo_under_a_data_root_never_hangs_a_dataset(tmp_path) -> None:
    from hfnet_core.data.datasets import CsvVideoDataset, VideoFolderDataset

    root = tmp_path / "data"
    (root / "wave").mkdir(parents=True)
    write_video(root / "wave" / "good.mp4", numbered_frames(), codec="libx264")
    os.mkfifo(root / "wave" / "pipe.mp4")
    folder_ds = VideoFolderDataset(root, 4)
    assert [Path(s[0]).name for s in folder_ds.samples] == ["good.mp4"]  # listing skips what is not a file
    (root / "list.csv").write_text("path,label\nwave/good.mp4,0\nwave/pipe.mp4,0\n")
    csv_ds = CsvVideoDataset(root / "list.csv", 4)
    out = _finishes(lambda: [csv_ds[i] for i in range(len(csv_ds))])
    assert "error" not in out, out
    good, piped = out["value"]
    assert good is not None and piped is None
    assert csv_ds.skipped and "named pipe" in csv_ds.skipped[0][1]
