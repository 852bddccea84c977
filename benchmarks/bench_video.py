"""Benchmark: TSN sampling of 8 frames from a long video vs decoding every frame (the naive loader).

Makes a 2-minute 640x360 30 fps H.264 video once (libx264 defaults: keyframe every <= 250 frames,
B-frames - what a downloaded web video looks like), then times, in the same run:

* ``decode_all``: decode every frame and convert it to RGB (what a loader that reads the whole file does);
* ``decode_all_no_rgb``: decode every frame without converting (a lower bound for any whole-file reader);
* ``read_clip_eval_8``: ``read_clip(path, 8, "eval")`` - the planned read (one job per group of pictures,
  non-reference frames skipped, several decoders at once), first call (cold: includes the packet index)
  and warm (index cached, as in every epoch after the first); also with one decoder
  (``HFNET_DECODE_THREADS=1``, what a DataLoader worker uses);
* ``read_clip_train_8``: random TSN offsets, warm.

Repetitions of the sampled read and of the full decode alternate, so the ratio between them is measured
under the same machine load. Targets: eval sampling <= 0.15 s per clip warm and >= 3x faster than
``decode_all``; frames bit-identical to a full decode.

The issue's 0.31 s was measured on another machine, and this machine's speed changes between sessions, so
the same run also times the code the issue measured (``ISSUE_RUN["commit"]``, taken from git into a
temporary folder) against this tree, alternating fresh processes: the speedup between the two is what
carries over to the issue's machine, and 0.31 s / that speedup is the time there.
Writes ``benchmarks/results/video_sampling.json``.
Run: ``python benchmarks/bench_video.py [--repeats N] [--baseline-rounds N]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

from hfnet_core.data import video as V
from hfnet_core.data.video_checks import Deadline
from hfnet_core.data.video_decode import DECODE_THREADS_ENV, _Worker, decode_threads, plan_jobs
from hfnet_core.data.video_index import clear_cache, packet_index

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "video_sampling.json"
SECONDS, FPS, W, H = 120, 30, 640, 360


#: The run the issue quoted: commit 2ff5e6d's results (one decoder reading from the nearest keyframe,
#: every frame decoded), 8-frame eval sampling 0.313 s warm on that machine.
ISSUE_RUN = {"commit": "2ff5e6d", "read_clip_eval_8_warm": 0.31338995099940803}
ISSUE_TARGET_S = 0.15

#: Run in a fresh process with PYTHONPATH set to one source tree: a warm-up read, then timed warm reads.
_TIMED_READS = """
import json, sys, time
from hfnet_core.data import video as V
path, n = sys.argv[1], int(sys.argv[2])
V.read_clip(path, 8, "eval")
out = []
for _ in range(n):
    t = time.perf_counter(); V.read_clip(path, 8, "eval"); out.append(time.perf_counter() - t)
print(json.dumps(out))
"""


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


def cpu_seconds(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def cpu_critical_path(fn, repeats: int) -> tuple[float, float]:
    """(CPU seconds of the busiest thread, CPU seconds of all threads) of ``fn``, medians over ``repeats``.

    Each decoder of a planned read runs in its own thread (the first in the caller's); the busiest one is
    what the read takes on idle cores, however loaded the machine is while measuring."""
    per_thread: dict[int, float] = {}
    real_run = _Worker.run

    def run(self, jobs):
        t = time.thread_time()
        try:
            return real_run(self, jobs)
        finally:
            per_thread[threading.get_ident()] = per_thread.get(threading.get_ident(), 0.0) + time.thread_time() - t

    crit, total = [], []
    _Worker.run = run
    try:
        for _ in range(repeats):
            per_thread.clear()
            t_main, t_all = time.thread_time(), time.process_time()
            fn()
            main = time.thread_time() - t_main  # includes the first decoder and the serial work around it
            others = [v for k, v in per_thread.items() if k != threading.get_ident()]
            crit.append(max([main] + others))
            total.append(time.process_time() - t_all)
    finally:
        _Worker.run = real_run
    return float(np.median(crit)), float(np.median(total))


def issue_code(into: Path) -> bool:
    """Unpack ``hfnet_core`` as it was at the issue's commit; False when this is no git checkout with it."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ISSUE_RUN["commit"], "hfnet_core"],
                                 capture_output=True, check=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return True


def versus_issue_code(path: Path, rounds: int, reads: int) -> dict | None:
    """Warm eval reads of the issue's code and of this tree, alternating fresh processes (same load for both)."""
    with tempfile.TemporaryDirectory(prefix="hfnet_issue_code_") as tmp:
        if not issue_code(Path(tmp)):
            return None
        trees = {"issue_code": Path(tmp), "this_tree": ROOT}
        times: dict[str, list[float]] = {k: [] for k in trees}
        for _ in range(rounds):
            for name, tree in trees.items():
                env = {k: v for k, v in os.environ.items() if k != DECODE_THREADS_ENV} | {"PYTHONPATH": str(tree)}
                out = subprocess.run([sys.executable, "-c", _TIMED_READS, str(path), str(reads)], cwd=tree, env=env,
                                     capture_output=True, text=True, check=True, timeout=600).stdout
                times[name] += json.loads(out.splitlines()[-1])
    med = {k: float(np.median(v)) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    speedup, speedup_best = med["issue_code"] / med["this_tree"], best["issue_code"] / best["this_tree"]
    return {
        "commit": ISSUE_RUN["commit"], "rounds": rounds, "reads_per_round": reads,
        "seconds_median": med, "seconds_best": best,
        "speedup_median": speedup, "speedup_best": speedup_best,
        "speedup_needed": ISSUE_RUN["read_clip_eval_8_warm"] / ISSUE_TARGET_S,
        "read_clip_eval_8_warm_on_the_issue_machine": ISSUE_RUN["read_clip_eval_8_warm"] / speedup,
        "read_clip_eval_8_warm_on_the_issue_machine_best": ISSUE_RUN["read_clip_eval_8_warm"] / speedup_best,
    }


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--baseline-rounds", type=int, default=6,
                    help="fresh-process rounds of the issue's code vs this tree (0: skip)")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "hfnet_bench")
    args = ap.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    path = args.cache_dir / f"bench_{W}x{H}_{SECONDS}s_{FPS}fps.mp4"
    t0 = time.perf_counter()
    make_video(path)
    print(f"video: {path} ({path.stat().st_size / 1e6:.1f} MB, made/checked in {time.perf_counter() - t0:.1f} s)")

    clear_cache()
    t = time.perf_counter()
    clip = V.read_clip(path, 8, "eval")
    cold = time.perf_counter() - t
    assert clip.shape == (8, H, W, 3)

    def one_thread() -> np.ndarray:
        os.environ[DECODE_THREADS_ENV] = "1"
        try:
            return V.read_clip(path, 8, "eval")
        finally:
            os.environ.pop(DECODE_THREADS_ENV, None)

    rng = np.random.default_rng(0)
    runs: dict[str, list[float]] = {"eval": [], "eval_1thread": [], "train": [], "all_rgb": [], "all_raw": []}
    for r in range(args.repeats):  # alternate, so every ratio compares runs under the same load
        runs["eval"] += timed(lambda: V.read_clip(path, 8, "eval"), 1)
        runs["eval_1thread"] += timed(one_thread, 1)
        runs["train"] += timed(lambda: V.read_clip(path, 8, "train", rng=rng), 1)
        if r % 2 == 0:
            runs["all_rgb"] += timed(lambda: decode_all(path, True), 1)
            runs["all_raw"] += timed(lambda: decode_all(path, False), 1)
    # Correctness in the same run: the sampled frames equal those of a full decode, bit for bit.
    idx = V.sample_indices(SECONDS * FPS, 8, "eval")
    train_idx = V.sample_indices(SECONDS * FPS, 8, "train", np.random.default_rng(1))
    train = V.read_clip(path, 8, "train", rng=np.random.default_rng(1))
    with av.open(str(path)) as c:
        wanted = set(idx.tolist()) | set(train_idx.tolist())
        ref = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in wanted}
    exact = bool(all(np.array_equal(clip[j], ref[int(i)]) for j, i in enumerate(idx))
                 and all(np.array_equal(train[j], ref[int(i)]) for j, i in enumerate(train_idx))
                 and np.array_equal(one_thread(), clip))
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        index = packet_index(path, c, s, Deadline(path))
    planned = sum(j.cost for j in plan_jobs(index, np.unique(idx)))

    critical, eval_cpu = cpu_critical_path(lambda: V.read_clip(path, 8, "eval"), args.repeats)
    full_cpu = float(np.median([cpu_seconds(lambda: decode_all(path, False)) for _ in range(2)]))

    med = lambda xs: float(np.median(xs))  # noqa: E731
    eval_warm, full_rgb, full_raw = med(runs["eval"]), med(runs["all_rgb"]), med(runs["all_raw"])
    result = {
        "video": {"seconds": SECONDS, "fps": FPS, "width": W, "height": H, "codec": "h264 (libx264 veryfast crf23)",
                  "frames": SECONDS * FPS, "keyframes": int(len(index.key_pts)),
                  "megabytes": round(path.stat().st_size / 1e6, 2)},
        "seconds": {
            "decode_all_rgb": full_rgb,
            "decode_all_no_rgb": full_raw,
            "read_clip_eval_8_cold": cold,
            "read_clip_eval_8_warm": eval_warm,
            "read_clip_eval_8_warm_1thread": med(runs["eval_1thread"]),
            "read_clip_train_8_warm": med(runs["train"]),
        },
        "seconds_best_of_repeats": {  # the least disturbed run of each (timeit's convention)
            "decode_all_rgb": min(runs["all_rgb"]),
            "decode_all_no_rgb": min(runs["all_raw"]),
            "read_clip_eval_8_warm": min(runs["eval"]),
            "read_clip_eval_8_warm_1thread": min(runs["eval_1thread"]),
            "read_clip_train_8_warm": min(runs["train"]),
        },
        "cpu_seconds": {  # CPU time is far less disturbed by other jobs than wall time
            "decode_all_no_rgb": full_cpu,
            "read_clip_eval_8_warm_all_threads": eval_cpu,
            "read_clip_eval_8_warm_critical_path": critical,  # the busiest decoder thread: wall time on idle cores
        },
        "ratio_to_full_decode_same_run": {
            "eval_warm_vs_decode_all_rgb": eval_warm / full_rgb,
            "eval_warm_vs_decode_all_no_rgb": eval_warm / full_raw,
            "eval_warm_1thread_vs_decode_all_no_rgb": med(runs["eval_1thread"]) / full_raw,
            "eval_critical_path_cpu_vs_decode_all_no_rgb_cpu": critical / full_cpu,
        },
        "speedup_vs_decode_all_rgb": {
            "eval_cold": full_rgb / cold,
            "eval_warm": full_rgb / eval_warm,
            "train_warm": full_rgb / med(runs["train"]),
        },
        "eval_frames_decoded_at_most": planned,
        "decode_threads": decode_threads(),
        "sampled_frames_equal_full_decode": exact,
        "targets": {"speedup_min": 3.0, "eval_seconds_per_clip_max": 0.15},
        "machine": {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "pyav": av.__version__,
                    "platform": platform.platform()},
        "repeats": args.repeats,
    }
    result["targets_met"] = bool(min(result["speedup_vs_decode_all_rgb"].values()) >= 3.0 and eval_warm <= 0.15
                                 and exact)
    versus = versus_issue_code(path, args.baseline_rounds, 5) if args.baseline_rounds > 0 else None
    result["versus_the_issue_code"] = versus
    result["targets_met_on_the_issue_machine"] = bool(
        versus is not None and min(result["speedup_vs_decode_all_rgb"].values()) >= 3.0 and exact
        and versus["read_clip_eval_8_warm_on_the_issue_machine"] <= ISSUE_TARGET_S)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["seconds"], indent=2))
    print(json.dumps(result["seconds_best_of_repeats"], indent=2))
    print(json.dumps(result["cpu_seconds"], indent=2))
    print(json.dumps(result["ratio_to_full_decode_same_run"], indent=2))
    print(json.dumps(versus, indent=2))
    print("sampled frames equal a full decode:", exact, "| targets met here:", result["targets_met"],
          "| on the issue's machine (via the speedup over its code):", result["targets_met_on_the_issue_machine"],
          f"| load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
