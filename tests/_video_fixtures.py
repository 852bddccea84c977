"""Real video files for the tests, made with PyAV: frames that say their own index, a reference decode,
and an AVI with drop (empty) chunks as capture software writes them."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

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


def reference_decode(path: Path) -> np.ndarray:
    """Every frame by plain PyAV, start to end, no seeking, no skipping: what "a full decode" means."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def make_drop_frame_avi(path: Path, slots: int = 444, coded: int = 68, fps: int = 15) -> tuple[Path, np.ndarray]:
    """An AVI whose index holds empty (drop) chunks: ``slots`` frame slots announced, ``coded`` frames coded.

    FFmpeg's AVI muxer writes an empty chunk for every slot a timestamp gap skips, as capture software does.
    Returns the path and the slot number (pts) of each coded frame.
    """
    rng = np.random.default_rng(1)
    pts = np.concatenate([[0], np.sort(rng.choice(np.arange(1, slots - 1), coded - 2, replace=False)), [slots - 1]])
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = fractions.Fraction(1, fps)
        s.options = {"bf": "0", "g": "12", "b": "2000000"}
        for k, t in enumerate(pts):
            f = av.VideoFrame.from_ndarray(numbered_frames(n=N)[k % N], format="rgb24")
            f.pts, f.time_base = int(t), fractions.Fraction(1, fps)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path, pts
