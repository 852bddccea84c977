"""Benchmark: the Feature space data at the paper's scale (11,522 and 24,777 clips, 1024-d, 174 classes).

Measured in one run, on synthetic class-clustered bundles (``hfnet_core.analysis.synthetic_bundles``):

* ``project``: ``hfnet project`` on each bundle (PCA, exact neighbours, openTSNE, UMAP in a child
  process beside it, PCA map, sampled silhouette, centroids), wall time and per stage. Target <= 60 s at
  24,777 clips.
* ``tsne``: openTSNE (the time inside ``project``) against scikit-learn's t-SNE on the same PCA-50
  features (``--no-sklearn`` skips it: 2-5 minutes at 24,777 here).
* ``memory``: server memory against the number of sessions. Each simulated session (a thread) takes the
  bundle pair from ``bundle_cache.shared_bundle`` plus the projection set from ``shared_set`` and computes
  what the Feature space / Class comparison pages compute (alignment, predictions, fixes/breaks, a
  neighbour lookup); against that, ``EvalBundle.load`` per session as the app did before. Target <= 30 MB
  per extra session at 24,777.
* ``placement``: placing a new clip (t-SNE + UMAP + PCA + 10 neighbours) into the 24,777-point maps,
  seconds per clip. Target < 1 s.

Writes ``benchmarks/results/projection.json``.
Run: ``python benchmarks/bench_projection.py [--sizes 11522 24777] [--sessions 1 2 5 10] [--no-sklearn]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from common import write_result  # noqa: E402

from hfnet_core.analysis import bundle_cache, placement  # noqa: E402
from hfnet_core.analysis.comparison import align, fixes_breaks, most_improved  # noqa: E402
from hfnet_core.analysis.precompute import project_bundles  # noqa: E402
from hfnet_core.analysis.projection_store import ProjectionSpec, shared_set  # noqa: E402
from hfnet_core.analysis.synthetic_bundles import synthetic_pair  # noqa: E402
from hfnet_core.eval_bundle import EvalBundle  # noqa: E402

TARGETS = {"project_s_at_24777": 60.0, "mb_per_extra_session": 30.0, "placement_s_per_clip": 1.0}


def _status_mb(field: str) -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_bundles(folder: Path, m: int) -> tuple[Path, Path]:
    a, b = synthetic_pair(m, 1024, 174, seed=0)
    pa, pb = folder / f"hf_tsn_{m}.val.npz", folder / f"tsn_{m}.val.npz"
    a.save(pa)
    b.save(pb)
    return pa, pb


def time_project(path: Path) -> dict:
    t0 = time.perf_counter()
    res = project_bundles([path], pairs=False, log=lambda s: None, show_progress=False)[0]
    wall = time.perf_counter() - t0
    info = res.set.info
    return {"wall_s": round(wall, 1),
            "stages_s": {m: info["methods"][m].get("seconds") for m in info["methods"]},
            "silhouette": info.get("silhouette"), "explained_variance": info["pca"]["explained_variance"]}


def time_sklearn_tsne(path: Path) -> float:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    ps = shared_set(path, ProjectionSpec())
    x = np.asarray(ps.reduced, dtype=np.float64)
    t0 = time.perf_counter()
    with threadpool_limits(1):
        TSNE(n_components=2, perplexity=30.0, init="pca", learning_rate="auto", random_state=0).fit_transform(x)
    return time.perf_counter() - t0


def _session(pa: Path, pb: Path, keep: list, naive: bool) -> None:
    """What one browser session holds and computes on the Feature space / Class comparison pages."""
    a = EvalBundle.load(pa) if naive else bundle_cache.shared_bundle(pa)
    b = EvalBundle.load(pb) if naive else bundle_cache.shared_bundle(pb)
    ps = shared_set(pa, ProjectionSpec())
    al = bundle_cache.derived(pa, f"align:{pb}", lambda _: align(a, b)) if not naive else align(a, b)
    fb = fixes_breaks(a, b)
    top = most_improved(a, b, 10)
    near = placement.place(ps, a.features[11], k=10, methods=("pca",))
    keep.append((a, b, ps, al, fb, top, near, a.predictions, b.predictions))


def memory_per_session(pa: Path, pb: Path, counts: list[int], naive: bool) -> dict:
    bundle_cache.default_cache().clear()
    gc.collect()
    base = _status_mb("VmRSS")
    keep: list = []
    rows = []
    done = 0
    for n in counts:
        threads = [threading.Thread(target=_session, args=(pa, pb, keep, naive)) for _ in range(n - done)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = n
        gc.collect()
        rows.append({"sessions": n, "rss_mb": round(_status_mb("VmRSS") - base, 1),
                     "anon_mb": round(_status_mb("RssAnon"), 1), "file_mb": round(_status_mb("RssFile"), 1)})
    first, last = rows[0], rows[-1]
    per = (last["rss_mb"] - first["rss_mb"]) / max(1, last["sessions"] - first["sessions"])
    keep.clear()
    return {"rows": rows, "mb_per_extra_session": round(per, 2)}


def time_placement(pa: Path, n: int = 20) -> dict:
    a = bundle_cache.shared_bundle(pa)
    ps = shared_set(pa, ProjectionSpec())
    rng = np.random.default_rng(0)
    times = []
    for i in rng.choice(len(a.clip_ids), n, replace=False):
        x = a.features[i] + rng.normal(0, 0.05, a.features.shape[1]).astype(np.float32)
        t0 = time.perf_counter()
        placement.place(ps, x, k=10)
        times.append(time.perf_counter() - t0)
    return {"clips": n, "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[11_522, 24_777])
    ap.add_argument("--sessions", nargs="+", type=int, default=[1, 2, 5, 10])
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--folder", default="", help="keep the bundles here (default: a temp folder)")
    args = ap.parse_args()
    result: dict = {"bundles": "synthetic_pair(M, 1024, 174): class-clustered, long-tailed class sizes",
                    "targets": TARGETS, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="hfnet_bench_proj_") as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for m in args.sizes:
            print(f"== {m} clips", flush=True)
            pa, pb = make_bundles(folder, m)
            entry = {"bundle_mb": round(pa.stat().st_size / 2**20, 1), "project": time_project(pa)}
            print("project", entry["project"], flush=True)
            if not args.no_sklearn:
                sk = time_sklearn_tsne(pa)
                ot = entry["project"]["stages_s"]["tsne"]
                entry["tsne"] = {"openTSNE_s": ot, "sklearn_s": round(sk, 1), "speedup": round(sk / ot, 2)}
                print("tsne", entry["tsne"], flush=True)
            project_bundles([pb], methods=["pca"], pairs=False, log=lambda s: None, show_progress=False)
            entry["memory_shared"] = memory_per_session(pa, pb, args.sessions, naive=False)
            entry["memory_private_copies"] = memory_per_session(pa, pb, args.sessions, naive=True)
            print("memory", entry["memory_shared"]["mb_per_extra_session"],
                  entry["memory_private_copies"]["mb_per_extra_session"], flush=True)
            entry["placement"] = time_placement(pa)
            print("placement", entry["placement"], flush=True)
            result["sizes"][str(m)] = entry
    big = result["sizes"].get("24777")
    if big:
        result["meets_target"] = {
            "project": big["project"]["wall_s"] <= TARGETS["project_s_at_24777"],
            "memory": big["memory_shared"]["mb_per_extra_session"] <= TARGETS["mb_per_extra_session"],
            "placement": big["placement"]["max_s"] <= TARGETS["placement_s_per_clip"],
        }
    result["note"] = "2-core machine shared with other jobs: see machine.loadavg_1_5_15 (before the run)."
    path = write_result("projection", result)
    print(path.read_text())


if __name__ == "__main__":
    main()
