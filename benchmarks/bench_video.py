"""Benchmark: TSN sampling of 8 frames from a long video vs decoding every frame (the naive loader).

Makes a 2-minute 640x360 30 fps H.264 video once (libx264 defaults: keyframe every <= 250 frames,
B-frames - what a downloaded web video looks like), then times, in the same run:

* ``decode_all``: decode every frame and convert it to RGB (what a loader that reads the whole file does);
* ``decode_all_no_rgb``: decode every frame without converting (a lower bound for any whole-file reader);
* ``read_clip_eval_8``: ``read_clip(path, 8, "eval")`` - seek + decode forward, first call (cold: includes
  the packet index) and warm (index cached, as in every epoch after the first);
* ``read_clip_train_8``: random TSN offsets, warm.

Targets: sampling >= 3x faster than ``decode_all`` and <= 0.25 s per clip. Writes
``benchmarks/results/video_sampling.json``. Run: ``python benchmarks/bench_video.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from hfnet_core.data import video as V

RESULTS = Path(__file__).resolve().parent / "results" / "video_sampling.json"
SECONDS, FPS, W, H = 120, 30, 640, 360


def make_video(path: Path) -> Path:
    """A textured scene with moving objects and noise, so P/B-frames carry real work."""
    if path.exists() and V.num_frames_of(path) == SECONDS * FPS:
        return path
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = (96 + 60 * np.sin(xx / 23.0) * np.cos(yy / 17.0))[..., None] + rng.normal(0, 20, (H, W, 3))
    base = np.clip(base, 0, 255).astype(np.uint8)
    noise = rng.integers(-6, 7, size=(8, H, W, 3), dtype=np.int16)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "23"}
        for t in range(SECONDS * FPS):
            f = base.copy()
            for k in range(4):  # four squares on different paths
                x = int((W - 80) * (0.5 + 0.5 * np.sin(t / (40.0 + 17 * k) + k)))
                y = int((H - 80) * (0.5 + 0.5 * np.cos(t / (53.0 + 11 * k) + 2 * k)))
                f[y : y + 80, x : x + 80] = (60 * k + 30, 200 - 40 * k, 120)
            f = np.clip(f.astype(np.int16) + noise[t % 8], 0, 255).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    os.replace(tmp, path)
    return path


def decode_all(path: Path, rgb: bool) -> int:
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for frame in c.decode(s):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "hfnet_bench")
    args = ap.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    path = args.cache_dir / f"bench_{W}x{H}_{SECONDS}s_{FPS}fps.mp4"
    t0 = time.perf_counter()
    make_video(path)
    print(f"video: {path} ({path.stat().st_size / 1e6:.1f} MB, made/checked in {time.perf_counter() - t0:.1f} s)")

    V._INDEX_CACHE.clear()
    t = time.perf_counter()
    clip = V.read_clip(path, 8, "eval")
    cold = time.perf_counter() - t
    assert clip.shape == (8, H, W, 3)
    warm_eval = timed(lambda: V.read_clip(path, 8, "eval"), args.repeats)
    rng = np.random.default_rng(0)
    warm_train = timed(lambda: V.read_clip(path, 8, "train", rng=rng), args.repeats)
    # Correctness in the same run: the sampled frames equal those of a full decode.
    idx = V.sample_indices(SECONDS * FPS, 8, "eval")
    with av.open(str(path)) as c:
        wanted = set(idx.tolist())
        ref = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in wanted}
    exact = bool(all(np.array_equal(clip[j], ref[int(i)]) for j, i in enumerate(idx)))
    full_rgb = timed(lambda: decode_all(path, True), max(1, args.repeats // 2))
    full_raw = timed(lambda: decode_all(path, False), max(1, args.repeats // 2))

    med = lambda xs: float(np.median(xs))  # noqa: E731
    result = {
        "video": {"seconds": SECONDS, "fps": FPS, "width": W, "height": H, "codec": "h264 (libx264 veryfast crf23)",
                  "frames": SECONDS * FPS, "megabytes": round(path.stat().st_size / 1e6, 2)},
        "seconds": {
            "decode_all_rgb": med(full_rgb),
            "decode_all_no_rgb": med(full_raw),
            "read_clip_eval_8_cold": cold,
            "read_clip_eval_8_warm": med(warm_eval),
            "read_clip_train_8_warm": med(warm_train),
        },
        "speedup_vs_decode_all_rgb": {
            "eval_cold": med(full_rgb) / cold,
            "eval_warm": med(full_rgb) / med(warm_eval),
            "train_warm": med(full_rgb) / med(warm_train),
        },
        "sampled_frames_equal_full_decode": exact,
        "targets": {"speedup_min": 3.0, "seconds_per_clip_max": 0.25},
        "machine": {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "pyav": av.__version__,
                    "platform": platform.platform()},
        "repeats": args.repeats,
    }
    worst = max(cold, med(warm_eval), med(warm_train))
    result["targets_met"] = bool(min(result["speedup_vs_decode_all_rgb"].values()) >= 3.0 and worst <= 0.25)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["seconds"], indent=2))
    print(json.dumps(result["speedup_vs_decode_all_rgb"], indent=2))
    print("sampled frames equal a full decode:", exact, "| targets met:", result["targets_met"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
