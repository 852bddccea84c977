"""Video decoding on real files written with PyAV: many codecs, VFR, rotation, and every kind of bad input."""

from __future__ import annotations

import io
import math
from pathlib import Path

import av
import numpy as np
import pytest

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

N = 24  # frames per test video
LEVELS = np.arange(N) * 10 + 5  # frame t is a grey level 10t+5 with a moving dark square


def numbered_frames(n: int = N, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames whose index can be read back from their brightness even after lossy coding."""
    f = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        f[t] = LEVELS[t] if n == N else (t * 10 + 5) % 250
        x = (t * 2) % (w - 8)
        f[t, 4:12, x : x + 8] = 0
    return f


def frame_ids(frames: np.ndarray) -> list[int]:
    """Index of each decoded frame: nearest grey level outside the dark square (bottom half)."""
    level = frames[:, frames.shape[1] // 2 :].reshape(len(frames), -1).mean(axis=1)
    return [int(np.argmin(np.abs(LEVELS - v))) for v in level]


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
    """Force the seeking path for any number of sampled frames, and record whether it succeeded."""
    log: list[str] = []
    real = V._decode_by_seeking

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        log.append("seek" if out is not None else "fallback")
        return out

    monkeypatch.setattr(V, "SEEK_MAX_FRACTION", 1.01)
    monkeypatch.setattr(V, "_decode_by_seeking", spy)
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
    monkeypatch.setattr(V, "SEEK_MAX_FRACTION", 1.01)
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
