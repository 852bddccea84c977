"""2-D maps (t-SNE, UMAP, PCA) of an eval bundle's pooled features, and the numbers the maps are read with.

The paper's Fig. 3b/c are t-SNE plots of the features that precede the FC layer; eval bundles store
exactly those (``EvalBundle.features``, pooled over frames). ``compute_set`` turns them into a
``ProjectionSet`` (``hfnet_core.analysis.projection_store``: what is stored and where):

1. **PCA** to ``spec.pca_dims`` (50) dimensions, exact (covariance eigendecomposition, accumulated in
   row chunks so a 25k x 1024 bundle needs no float64 copy); component signs fixed, so it is
   deterministic.
2. **Exact nearest neighbours** in that space (chunked matrix products and ``torch.topk``), computed
   once and shared by t-SNE (3 x perplexity neighbours), UMAP (``umap_neighbors``) and the stored
   neighbour lists.
3. **t-SNE** with openTSNE (FFT-accelerated gradients above 10k points, Barnes-Hut below; 250
   early-exaggeration iterations, then ``spec.tsne_iter``), initialised from the first two PCs.
   Measured on this 2-core CPU it is 2-4x faster than scikit-learn's (``benchmarks/bench_projection.py``).
4. **UMAP** (umap-learn) on the same neighbour graph. Its numba code compiles for 15-30 s in every new
   process, so for large bundles it runs in a child process started first: it compiles while PCA,
   neighbours and silhouette run here, then maps *while* t-SNE runs here (``parallel``).
5. **PCA map**: the first two components.
6. **Silhouette** (computed before the maps) of the true classes in the full feature space: exact up to
   ``spec.silhouette_exact_max`` clips, else on a class-stratified sample of ``spec.silhouette_sample``
   clips (``info["silhouette"]`` says which, and the sample size); plus its mean per class.
7. **Class centroids** in each map (for labels on the plot) and class counts.

Progress goes to ``progress(fraction, message)``; ``cancel()`` returning True stops the work at the next
check (``JobCancelled``). Nothing here caches: see ``precompute`` (which also keeps the older
per-method API of this module working for existing callers).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hfnet_core.analysis.jobs import JobCancelled
from hfnet_core.analysis.projection_store import METHODS, ProjectionSet, ProjectionSpec
from hfnet_core.analysis.task_view import grouping_labels

__all__ = [
    "DEFAULT_PARAMS",
    "METHODS",
    "ProjectionSpec",
    "ProjectionStatus",
    "bundle_sha256",
    "cache_dir",
    "cache_path",
    "cached_projection",
    "compute_projection",
    "project",
    "project_async",
    "projection_status",
    "store_projection",
    "subset_rows",
    "class_centroids",
    "class_separation",
    "compute_set",
    "exact_knn",
    "reduce_pca",
    "silhouette_summary",
    "tsne_map",
    "umap_map",
]

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]


def _noop(_f: float, _m: str) -> None:
    pass


def _threads(parallel_umap: bool = False) -> int:
    """CPU threads for openTSNE: ``HFNET_PROJECTION_THREADS``, default 1.

    Measured on this shared 2-core machine under load (1,500 points, Barnes-Hut): 22 s with one thread,
    80 s with two - openTSNE's threads spin against every other process. A parallel UMAP (its own
    process) takes the second core instead.
    """
    env = os.environ.get("HFNET_PROJECTION_THREADS")
    return max(1, int(env)) if env else 1


def _check(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise JobCancelled("cancelled")


# --- 1. PCA ---------------------------------------------------------------------------------------------

def reduce_pca(features: np.ndarray, dims: int = 50, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray,
                                                                                  np.ndarray, np.ndarray]:
    """(reduced (M, d) float32, mean (D,), components (d, D), explained-variance ratio (d,)).

    ``d = min(dims, D, M)``. Each component's largest-magnitude loading is made positive (a fixed sign:
    the same features always give the same map).
    """
    x = np.asarray(features)
    m, dim = x.shape
    d = int(max(0, min(dims, dim, m)))
    mean = x.mean(axis=0, dtype=np.float64) if m else np.zeros(dim)
    if m == 0 or d == 0:
        return (np.zeros((m, d), np.float32), mean.astype(np.float32), np.zeros((d, dim), np.float32),
                np.zeros(d, np.float32))
    cov = np.zeros((dim, dim), dtype=np.float64)
    for s in range(0, m, chunk):
        block = np.asarray(x[s:s + chunk], dtype=np.float64) - mean
        cov += block.T @ block
    cov /= max(1, m - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:d]
    comps = evecs[:, order].T  # (d, D)
    flip = np.sign(comps[np.arange(d), np.abs(comps).argmax(axis=1)])
    comps *= np.where(flip == 0, 1.0, flip)[:, None]
    total = float(np.clip(evals, 0, None).sum())
    explained = np.clip(evals[order], 0, None) / total if total > 0 else np.zeros(d)
    comps32 = comps.astype(np.float32)
    mean32 = mean.astype(np.float32)
    reduced = np.empty((m, d), dtype=np.float32)
    for s in range(0, m, chunk):
        reduced[s:s + chunk] = (np.asarray(x[s:s + chunk], dtype=np.float32) - mean32) @ comps32.T
    return reduced, mean32, comps32, explained.astype(np.float32)


# --- 2. neighbours --------------------------------------------------------------------------------------

def exact_knn(reference: np.ndarray, k: int, queries: np.ndarray | None = None, chunk: int = 1024,
              progress: Progress | None = None, cancel: Cancel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (Euclidean) of ``queries`` (default: every reference point, itself
    excluded) among ``reference``: (indices (Q, k) int32, distances (Q, k) float32), nearest first, ties
    by index.

    Chunked ``|a|^2 + |b|^2 - 2ab`` in float32 and a partial selection (``torch.topk``, threaded): ~3 s
    for 25k x 25k x 50 on this 2-core CPU, where NumPy's ``argpartition`` took 13 s. Memory
    ``chunk x M x 4`` bytes.
    """
    import torch

    ref = np.ascontiguousarray(reference, dtype=np.float32)
    self_query = queries is None
    q = ref if self_query else np.ascontiguousarray(queries, dtype=np.float32)
    m = ref.shape[0]
    k = int(max(0, min(k, m - 1 if self_query else m)))
    idx = np.zeros((q.shape[0], k), dtype=np.int32)
    dist = np.zeros((q.shape[0], k), dtype=np.float32)
    if k == 0 or q.shape[0] == 0:
        return idx, dist
    r = torch.from_numpy(ref if ref.flags.writeable else ref.copy())  # (a memory-mapped set is read-only)
    ref_sq = (r * r).sum(dim=1)
    take = min(m, k + 1) if self_query else k  # one more: the query itself is dropped from its own list
    with torch.inference_mode():
        for s in range(0, q.shape[0], chunk):
            _check(cancel)
            block = r[s:s + chunk] if self_query else torch.from_numpy(np.array(q[s:s + chunk]))
            d2 = torch.addmm(ref_sq[None, :], block, r.T, alpha=-2.0)
            d2 += (block * block).sum(dim=1)[:, None]
            d2.clamp_(min=0.0)
            if self_query:
                rows = torch.arange(len(block))
                d2[rows, rows + s] = -1.0  # itself first, whatever ties at distance 0
            first = torch.topk(d2, take, dim=1, largest=False, sorted=True).indices.numpy()
            if self_query:
                first = first[:, 1:]
            cand = first[:, :k]
            # the chosen neighbours' distances again, from differences: the expanded form above loses
            # digits to cancellation (a point's distance to its own copy came out as 3e-3, not 0)
            diff = q[s:s + chunk, None, :] - ref[cand]
            exact = np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))
            order = np.lexsort((cand, exact), axis=1)  # by distance, then index: a fixed order for ties
            idx[s:s + chunk] = np.take_along_axis(cand, order, axis=1)
            dist[s:s + chunk] = np.take_along_axis(exact, order, axis=1)
            if progress is not None:
                progress(min(1.0, (s + len(block)) / q.shape[0]), "nearest neighbours")
    return idx, dist


# --- 3. t-SNE -------------------------------------------------------------------------------------------

def tsne_map(reduced: np.ndarray, knn_idx: np.ndarray, knn_dist: np.ndarray, spec: ProjectionSpec,
             threads: int | None = None, progress: Progress | None = None,
             cancel: Cancel | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """openTSNE map from precomputed neighbours: ((M, 2) float32, info)."""
    m = reduced.shape[0]
    if m < 4:
        return _line(m), {"note": "fewer than 4 points: laid out on a line"}
    from openTSNE import TSNEEmbedding, affinity
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    perplexity = float(min(spec.tsne_perplexity, max(1.0, (m - 1) / 3.0)))
    k = int(min(knn_idx.shape[1], max(3, int(3 * perplexity))))
    threads = threads or _threads()
    aff = affinity.PerplexityBasedNN(
        knn_index=PrecomputedNeighbors(np.ascontiguousarray(knn_idx[:, :k], dtype=np.int64),
                                       np.ascontiguousarray(knn_dist[:, :k], dtype=np.float64)),
        perplexity=perplexity, n_jobs=threads)
    pcs = np.asarray(reduced[:, :2], dtype=np.float64)
    if pcs.shape[1] < 2:
        pcs = np.column_stack([pcs, np.zeros((m, 2 - pcs.shape[1]))])
    std = pcs[:, 0].std()
    init = pcs / std * 1e-4 if std > 0 else np.random.default_rng(spec.seed).normal(0, 1e-4, (m, 2))
    total = spec.tsne_early_exaggeration_iter + spec.tsne_iter
    done = [0]

    def callback(phase_offset: int) -> Callable[[int, float, np.ndarray], bool]:
        def cb(iteration: int, _error: float, _embedding: np.ndarray) -> bool:
            _check(cancel)
            done[0] = phase_offset + iteration
            if progress is not None:
                progress(done[0] / total, f"t-SNE: iteration {done[0]} of {total}")
            return False
        return cb

    t0 = time.perf_counter()
    emb = TSNEEmbedding(init, aff, n_jobs=threads, random_state=spec.seed, negative_gradient_method="auto")
    emb = emb.optimize(spec.tsne_early_exaggeration_iter, exaggeration=12, momentum=0.5,
                       callbacks=callback(0), callbacks_every_iters=25, propagate_exception=True)
    emb = emb.optimize(spec.tsne_iter, exaggeration=1, momentum=0.8,
                       callbacks=callback(spec.tsne_early_exaggeration_iter), callbacks_every_iters=25,
                       propagate_exception=True)
    coords = np.asarray(emb, dtype=np.float32)
    return coords, {"seconds": round(time.perf_counter() - t0, 2), "perplexity": perplexity, "neighbours": k,
                    "kl_divergence": float(emb.kl_divergence) if emb.kl_divergence is not None else None,
                    "implementation": "openTSNE", "threads": threads}


def _line(m: int) -> np.ndarray:
    return np.stack([np.arange(m, dtype=np.float32), np.zeros(m, dtype=np.float32)], axis=1)


# --- 4. UMAP --------------------------------------------------------------------------------------------

def umap_map(reduced: np.ndarray, knn_idx: np.ndarray, knn_dist: np.ndarray,
             spec: ProjectionSpec, n_epochs: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """umap-learn map on the precomputed neighbour graph: ((M, 2) float32, info with the fitted ``a``,
    ``b`` that ``placement`` needs). Imports umap (and pays its JIT) only when called."""
    m = reduced.shape[0]
    if m < 4:
        return _line(m), {"note": "fewer than 4 points: laid out on a line"}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba / "n_jobs overridden to 1 by setting random_state"
        import umap

        n_neighbors = int(max(2, min(spec.umap_neighbors, m - 1)))
        self_idx = np.arange(m, dtype=np.int64)[:, None]
        ii = np.concatenate([self_idx, knn_idx[:, : n_neighbors - 1].astype(np.int64)], axis=1)
        dd = np.concatenate([np.zeros((m, 1), np.float32), knn_dist[:, : n_neighbors - 1]], axis=1)
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=float(spec.umap_min_dist),
                            metric="euclidean", random_state=spec.seed, precomputed_knn=(ii, dd, None),
                            n_jobs=1, n_epochs=n_epochs)
        coords = reducer.fit_transform(np.asarray(reduced, dtype=np.float32))
    return np.asarray(coords, dtype=np.float32), {
        "seconds": round(time.perf_counter() - t0, 2), "n_neighbors": n_neighbors,
        "min_dist": float(spec.umap_min_dist), "a": float(reducer._a), "b": float(reducer._b),
        "implementation": "umap-learn"}


def _umap_job(ctx: Any, reduced: np.ndarray, knn_idx: np.ndarray, knn_dist: np.ndarray,
              spec: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Job body for ``_UmapInChild`` (runs in a worker process of ``hfnet_core.analysis.jobs``)."""
    return umap_map(reduced, knn_idx, knn_dist, ProjectionSpec.from_dict(spec))


def _umap_warmup_job(ctx: Any, spec: dict[str, Any]) -> bool:
    """Pays umap's numba compilation in the worker on 300 random points of the real job's dtypes and
    code path (precomputed neighbours, same parameters, a few epochs), while the caller still computes
    PCA and the neighbours: 15-30 s that would otherwise come after them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    s = ProjectionSpec.from_dict(spec)
    idx, dist = exact_knn(x, max(2, s.umap_neighbors))
    umap_map(x, idx, dist, s, n_epochs=5)
    return True


class _UmapInChild:
    """UMAP in a worker process (a private one-slot ``JobPool``): started (and compiling umap) at once,
    given its inputs by ``start``, collected by ``result``.

    The worker is a plain ``python -m hfnet_core.analysis.jobs`` process, so this works from any
    caller - also one whose ``__main__`` must not be re-imported (a Streamlit page, a notebook).
    """

    def __init__(self, spec: ProjectionSpec):
        from hfnet_core.analysis.jobs import JobPool

        self.spec = spec
        self.pool = JobPool(workers=1, mode="process", name="hfnet-umap", nice=0, torch_threads=1,
                            kill_after_s=0.5, idle_s=5.0)
        self.pool.submit("umap-warmup", _umap_warmup_job, {"spec": spec.to_dict()})
        self.key: str | None = None

    def start(self, reduced: np.ndarray, knn_idx: np.ndarray, knn_dist: np.ndarray) -> None:
        self.key = self.pool.submit("umap", _umap_job, {
            "reduced": np.ascontiguousarray(reduced), "knn_idx": np.ascontiguousarray(knn_idx),
            "knn_dist": np.ascontiguousarray(knn_dist), "spec": self.spec.to_dict()}).key

    def result(self, cancel: Cancel | None, tick: Callable[[], None]) -> tuple[np.ndarray, dict[str, Any]]:
        assert self.key is not None, "start() first"
        try:
            while True:
                st = self.pool.wait(self.key, timeout=0.25)
                if st.finished:
                    break
                if cancel is not None and cancel():
                    raise JobCancelled("cancelled")  # (the shutdown below cancels the job)
                tick()
        finally:
            self.pool.shutdown(timeout=10)
        if st.state != "done":
            raise RuntimeError(f"UMAP failed: {st.error or st.state}")
        return st.result

    def stop(self) -> None:
        """Cancel whatever of this worker's jobs is queued or running and end its process."""
        self.pool.shutdown(timeout=10)


# --- 6. silhouette --------------------------------------------------------------------------------------

def _stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """~n row positions, every class represented in proportion to its size (largest-remainder quotas,
    at least 2 clips of a class that has them)."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * (min(n, len(labels)) / max(1, len(labels)))
    quota = np.floor(share).astype(np.int64)
    left = int(min(n, len(labels)) - quota.sum())
    if left > 0:
        quota[np.argsort(-(share - quota), kind="stable")[:left]] += 1
    quota = np.minimum(counts, np.maximum(quota, np.minimum(counts, 2)))
    rows = [rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def silhouette_summary(features: np.ndarray, labels: np.ndarray, num_classes: int,
                       spec: ProjectionSpec) -> tuple[dict[str, Any] | None, np.ndarray]:
    """(``{"value", "exact", "n", "of", "space", "seed"}`` or None when undefined, per-class means (K,)).

    Clips with an unknown label (-1) are left out. Exact when at most ``spec.silhouette_exact_max``
    labelled clips, else on a class-stratified sample of ``spec.silhouette_sample`` clips (seeded).
    """
    from sklearn.metrics import silhouette_samples

    y_all = np.asarray(labels)
    known = np.flatnonzero(y_all >= 0)
    per_class = np.full(num_classes, np.nan, dtype=np.float32)
    y = y_all[known]
    if len(np.unique(y)) < 2 or len(np.unique(y)) >= len(y):
        return None, per_class
    exact = len(known) <= spec.silhouette_exact_max
    pick = known if exact else known[_stratified_sample(y, spec.silhouette_sample, spec.seed)]
    ys = y_all[pick]
    if len(np.unique(ys)) < 2 or len(np.unique(ys)) >= len(ys):
        return None, per_class
    s = silhouette_samples(np.asarray(features[pick], dtype=np.float64), ys, metric="euclidean")
    for c in np.unique(ys):
        per_class[int(c)] = float(s[ys == c].mean())
    return {"value": float(s.mean()), "exact": bool(exact), "n": int(len(pick)), "of": int(len(known)),
            "space": "pooled features", "seed": spec.seed}, per_class


def class_separation(features: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette score of ``features`` grouped by true class, in [-1, 1] (higher: tighter, better
    separated classes), exact up to 4,000 clips and on a stratified sample above; None when undefined."""
    y = np.asarray(labels)
    k = int(y.max()) + 1 if y.size and y.max() >= 0 else 0
    summary, _ = silhouette_summary(features, y, max(k, 1), ProjectionSpec())
    return None if summary is None else summary["value"]


# --- 7. centroids ---------------------------------------------------------------------------------------

def class_centroids(coords: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, 2) mean position of each class's points (NaN where a class has none; unknown labels skipped)."""
    y = np.asarray(labels)
    known = y >= 0
    counts = np.bincount(y[known], minlength=num_classes).astype(np.float64)
    out = np.full((num_classes, 2), np.nan, dtype=np.float32)
    for axis in range(2):
        sums = np.bincount(y[known], weights=coords[known, axis], minlength=num_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, axis] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


# --- the whole set --------------------------------------------------------------------------------------

#: Share of the run each stage takes at 25k clips (measured; used for the progress fraction).
_WEIGHTS = {"reduce": 0.05, "knn": 0.12, "tsne": 0.55, "umap": 0.22, "pca": 0.0, "silhouette": 0.06}


def compute_set(features: np.ndarray, labels: np.ndarray, num_classes: int, spec: ProjectionSpec | None = None,
                methods: Sequence[str] = METHODS, rows: np.ndarray | None = None,
                existing: ProjectionSet | None = None, progress: Progress | None = None,
                cancel: Cancel | None = None, parallel: bool | None = None) -> ProjectionSet:
    """Compute a ``ProjectionSet`` of ``features`` (M, D) with ``labels`` (M,) over ``num_classes``.

    ``existing``: a set of the same rows and spec whose PCA, neighbours, silhouette and maps are reused;
    only the ``methods`` it lacks are computed. ``parallel``: run UMAP in a child process during t-SNE
    (default: when both are asked for, there are >= 5,000 points and >= 2 cores).
    """
    spec = spec or ProjectionSpec()
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown projection method(s) {bad}; choose from {METHODS}")
    report = progress or _noop
    x = np.asarray(features)
    y = np.asarray(labels, dtype=np.int64)
    m = x.shape[0]
    rows = np.arange(m, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    todo = [mm for mm in methods if existing is None or not existing.has(mm)]
    stages = ([] if existing else ["reduce", "knn", "silhouette"]) + todo
    weight = {s: _WEIGHTS[s] for s in stages}
    total_w = sum(weight.values()) or 1.0
    done_w = [0.0]

    def stage(name: str) -> Progress:
        def inner(f: float, msg: str) -> None:
            report((done_w[0] + weight[name] * f) / total_w, msg)
        return inner

    def finish(name: str) -> None:
        done_w[0] += weight[name]
        report(done_w[0] / total_w, f"{name} done")

    t_start = time.perf_counter()
    use_parallel = (parallel if parallel is not None
                    else ("tsne" in todo and "umap" in todo and m >= 5000 and (os.cpu_count() or 1) >= 2))
    # the UMAP worker starts first: it compiles umap while PCA, neighbours and silhouette run here
    umap_job = _UmapInChild(spec) if "umap" in todo and "tsne" in todo and use_parallel else None
    try:
        if existing is not None:
            ps = ProjectionSet(rows=existing.rows, reduced=existing.reduced, pca_mean=existing.pca_mean,
                               pca_components=existing.pca_components, pca_explained=existing.pca_explained,
                               knn_indices=existing.knn_indices, knn_distances=existing.knn_distances,
                               class_counts=existing.class_counts, coords=dict(existing.coords),
                               centroids=dict(existing.centroids),
                               silhouette_per_class=existing.silhouette_per_class, info=dict(existing.info))
            ps.info["methods"] = dict(ps.info.get("methods", {}))
            knn_idx, knn_dist = np.asarray(ps.knn_indices), np.asarray(ps.knn_distances)
            if "tsne" in todo or "umap" in todo:  # the stored lists are short; t-SNE needs 3 x perplexity
                knn_idx, knn_dist = exact_knn(ps.reduced, _knn_needed(spec, m), cancel=cancel)
        else:
            _check(cancel)
            stage("reduce")(0.0, "PCA")
            reduced, mean, comps, explained = reduce_pca(x, spec.pca_dims)
            finish("reduce")
            knn_idx, knn_dist = exact_knn(reduced, _knn_needed(spec, m), progress=stage("knn"), cancel=cancel)
            finish("knn")
            counts = np.bincount(y[y >= 0], minlength=num_classes).astype(np.int64)
            ps = ProjectionSet(rows=rows, reduced=reduced, pca_mean=mean, pca_components=comps,
                               pca_explained=explained, knn_indices=knn_idx[:, : spec.knn_k].copy(),
                               knn_distances=knn_dist[:, : spec.knn_k].copy(), class_counts=counts,
                               info={"spec": spec.to_dict(), "n": int(m),
                                     "dim": int(x.shape[1]) if x.ndim == 2 else 0,
                                     "pca": {"dims": int(reduced.shape[1]),
                                             "explained_variance": float(explained.sum())},
                                     "methods": {}})
        if umap_job is not None:
            umap_job.start(ps.reduced, knn_idx, knn_dist)
        if existing is None:
            _check(cancel)
            stage("silhouette")(0.0, "silhouette")
            summary, per_class = silhouette_summary(x, y, num_classes, spec)
            ps.silhouette_per_class = per_class
            ps.info["silhouette"] = summary
            finish("silhouette")
        for method in todo:
            _check(cancel)
            if method == "tsne":
                coords, info = tsne_map(ps.reduced, knn_idx, knn_dist, spec, threads=_threads(umap_job is not None),
                                        progress=stage("tsne"), cancel=cancel)
            elif method == "umap":
                if umap_job is not None:
                    t_wait = time.perf_counter()
                    fn = stage("umap")
                    coords, info = umap_job.result(cancel, lambda: fn(min(0.95, (time.perf_counter() - t_wait)
                                                                         / 30.0), "UMAP: finishing"))
                    umap_job = None
                else:
                    stage("umap")(0.0, "UMAP (compiling umap's numba code first: 15-30 s)")
                    coords, info = umap_map(ps.reduced, knn_idx, knn_dist, spec)
            else:
                coords = np.asarray(ps.reduced[:, :2], dtype=np.float32)
                if coords.shape[1] < 2:
                    coords = np.column_stack([coords, np.zeros((m, 2 - coords.shape[1]), np.float32)])
                info = {"explained_variance": [float(v) for v in ps.pca_explained[:2]]}
            ps.coords[method] = coords
            ps.centroids[method] = class_centroids(coords, y, num_classes)
            ps.info["methods"][method] = info
            finish(method)
    finally:
        if umap_job is not None:
            umap_job.stop()
    ps.info["seconds"] = round(time.perf_counter() - t_start + float(ps.info.get("seconds", 0.0) if existing else 0),
                               2)
    return ps


def _knn_needed(spec: ProjectionSpec, m: int) -> int:
    perplexity = min(spec.tsne_perplexity, max(1.0, (m - 1) / 3.0))
    return int(min(max(m - 1, 0), max(spec.knn_k, spec.umap_neighbors, int(3 * perplexity))))


# --- the per-method API of format 1 --------------------------------------------------------------------
# Existing pages and fixtures ask for one method's (M, 2) map at a time; these read and write the same
# projection sets (a set holds every method; see ``projection_store``).

from hfnet_core.analysis.projection_store import bundle_sha256, cache_dir, subset_rows  # noqa: E402

@dataclass(frozen=True)
class ProjectionStatus:
    state: str  # "ready", "running", "failed" or "missing" (not stored, not started)
    coords: np.ndarray | None = None
    error: str | None = None


#: Per-method parameters (their defaults), as the format-1 API names them.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "tsne": {"perplexity": 30.0, "early_exaggeration_iter": 250, "n_iter": 500, "pca_dims": 50},
    "umap": {"n_neighbors": 15, "min_dist": 0.1, "pca_dims": 50},
    "pca": {"pca_dims": 50},
}


#: Per-method parameter names of the format-1 API -> ``ProjectionSpec`` fields.
PARAM_FIELDS: dict[str, dict[str, str]] = {
    "tsne": {"perplexity": "tsne_perplexity", "early_exaggeration_iter": "tsne_early_exaggeration_iter",
             "n_iter": "tsne_iter", "pca_dims": "pca_dims"},
    "umap": {"n_neighbors": "umap_neighbors", "min_dist": "umap_min_dist", "pca_dims": "pca_dims"},
    "pca": {"pca_dims": "pca_dims"},
}


def spec_for(method: str, seed: int = 0, params: dict[str, Any] | None = None) -> ProjectionSpec:
    """The ``ProjectionSpec`` a (method, seed, params) request of the format-1 API means."""
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; choose one of {METHODS}")
    names = PARAM_FIELDS[method]
    unknown = set(params or {}) - set(names)
    if unknown:
        raise ValueError(f"unknown {method} parameters {sorted(unknown)}; known: {sorted(names)}")
    return ProjectionSpec(seed=int(seed), **{names[k]: v for k, v in (params or {}).items()})


def base_set(bundle: Any, rows: np.ndarray, spec: ProjectionSpec) -> ProjectionSet:
    """A set with PCA, neighbours and silhouette but no map (what a stored map is added to)."""
    y, k, _ = grouping_labels(bundle)
    return compute_set(bundle.features[rows], y[rows], k, spec, [], rows)


def store_coords(bundle_path: str | os.PathLike[str], coords: np.ndarray, method: str, spec: ProjectionSpec,
                 clip_ids: Sequence[str] | None = None) -> Path:
    """Store ``coords`` (M, 2) as ``method``'s map in the set of these arguments (created if needed)."""
    from hfnet_core.analysis import projection_store as store
    from hfnet_core.eval_bundle import EvalBundle

    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"a projection is (M, 2), got {coords.shape}")
    bundle = EvalBundle.load(bundle_path, mmap=True)
    rows = store.subset_rows(bundle, clip_ids)
    if coords.shape[0] != len(rows):
        raise ValueError(f"{coords.shape[0]} points for {len(rows)} clips")
    ps = store.load_set(bundle_path, spec, clip_ids)
    if ps is None or ps.n != len(rows):
        ps = base_set(bundle, rows, spec)
        ps.info.update(bundle_sha256=store.bundle_sha256(bundle_path), bundle=Path(bundle_path).name,
                       subset=store.subset_digest(clip_ids))
    ps.coords[method] = coords
    y, k, _ = grouping_labels(bundle)
    ps.centroids[method] = class_centroids(coords, y[rows], k)
    ps.info.setdefault("methods", {})[method] = {"note": "stored by store_projection"}
    return store.save_set(bundle_path, ps, spec, clip_ids)


def cache_path(bundle_path: Any, method: str = "tsne", seed: int = 0, params: dict[str, Any] | None = None,
               clip_ids: Sequence[str] | None = None, *, for_writing: bool = False):
    """Path of the projection set holding ``method``'s map for these arguments."""
    from hfnet_core.analysis.projection_store import set_path

    return set_path(bundle_path, spec_for(method, seed, params), clip_ids, for_writing=for_writing)


def cached_projection(bundle_path: Any, method: str = "tsne", seed: int = 0, params: dict[str, Any] | None = None,
                      clip_ids: Sequence[str] | None = None) -> np.ndarray | None:
    """The stored (M, 2) map, or None (never computes)."""
    from hfnet_core.analysis.projection_store import shared_set

    ps = shared_set(bundle_path, spec_for(method, seed, params), clip_ids)
    return None if ps is None or not ps.has(method) else np.asarray(ps.coords[method])


def store_projection(bundle_path: Any, coords: np.ndarray, method: str = "tsne", seed: int = 0,
                     params: dict[str, Any] | None = None, clip_ids: Sequence[str] | None = None):
    """Store ``coords`` (M, 2) as ``method``'s map (the rest of the set is computed if missing)."""
    return store_coords(bundle_path, coords, method, spec_for(method, seed, params), clip_ids)


def compute_projection(features: np.ndarray, method: str = "tsne", seed: int = 0,
                       params: dict[str, Any] | None = None) -> np.ndarray:
    """Project (M, D) features to (M, 2) with one method, without storing anything."""
    spec = spec_for(method, seed, params)
    x = np.asarray(features)
    ps = compute_set(x, np.full(len(x), -1), 1, spec, [method], parallel=False)
    return ps.coords[method]


def project(bundle_path: Any, method: str = "tsne", seed: int = 0, params: dict[str, Any] | None = None,
            clip_ids: Sequence[str] | None = None) -> np.ndarray:
    """(M, 2) map of the bundle's features (rows of ``subset_rows``): stored, or computed now (with
    ``compute_projection``) and stored."""
    cached = cached_projection(bundle_path, method, seed, params, clip_ids)
    if cached is not None:
        return cached
    from hfnet_core.eval_bundle import EvalBundle

    bundle = EvalBundle.load(bundle_path, mmap=True)
    coords = compute_projection(bundle.features[subset_rows(bundle, clip_ids)], method, seed, params)
    store_projection(bundle_path, coords, method, seed, params, clip_ids)
    return np.asarray(coords, dtype=np.float32)


_legacy_lock = threading.Lock()
_legacy_executor: ThreadPoolExecutor | None = None
_legacy_jobs: dict[str, Future] = {}


def _legacy_key(bundle_path: Any, method: str, seed: int, params: dict[str, Any] | None,
                clip_ids: Sequence[str] | None) -> str:
    return f"{cache_path(bundle_path, method, seed, params, clip_ids)}|{method}"


def projection_job_key(bundle_path: Any, spec: ProjectionSpec | None = None,
                       clip_ids: Sequence[str] | None = None) -> str:
    from hfnet_core.analysis import projection_store as store

    return f"projection|{store.set_path(bundle_path, spec or ProjectionSpec(), clip_ids).name}"


def projection_job_status(bundle_path: Any, spec: ProjectionSpec | None = None,
                          clip_ids: Sequence[str] | None = None, pool: Any = None) -> Any:
    """The job's status (``missing`` if none was started and nothing is stored); never starts one."""
    from hfnet_core.analysis import projection_store as store
    from hfnet_core.analysis.jobs import JobStatus, shared_pool

    spec = spec or ProjectionSpec()
    pool = pool or shared_pool()
    key = projection_job_key(bundle_path, spec, clip_ids)
    status = pool.status(key)
    if status.state == "missing" and store.shared_set(bundle_path, spec, clip_ids) is not None:
        return JobStatus(key, "done", 1.0, "stored", cached=True)
    return status


def projection_status(bundle_path: Any, method: str = "tsne", seed: int = 0, params: dict[str, Any] | None = None,
                      clip_ids: Sequence[str] | None = None, pool: Any = None) -> "ProjectionStatus":
    """``ProjectionStatus``: ready (with coords), running, failed (with the error) or missing; never
    computes. Sees ``project_async`` threads and jobs of the job pool (``precompute.start_projection``)."""
    coords = cached_projection(bundle_path, method, seed, params, clip_ids)
    if coords is not None:
        return ProjectionStatus("ready", coords)
    with _legacy_lock:
        fut = _legacy_jobs.get(_legacy_key(bundle_path, method, seed, params, clip_ids))
    if fut is not None:
        if not fut.done():
            return ProjectionStatus("running")
        err = fut.exception()
        if err is not None:
            return ProjectionStatus("failed", error=f"{type(err).__name__}: {err}")
        return ProjectionStatus("ready", fut.result())
    job = projection_job_status(bundle_path, spec_for(method, seed, params), clip_ids, pool)
    if job.state in ("queued", "running"):
        return ProjectionStatus("running")
    if job.state == "failed":
        return ProjectionStatus("failed", error=job.error)
    return ProjectionStatus("missing")


def project_async(bundle_path: Any, method: str = "umap", seed: int = 0, params: dict[str, Any] | None = None,
                  clip_ids: Sequence[str] | None = None, retry: bool = False) -> "ProjectionStatus":
    """Compute ``method``'s map in one background thread of this process (as format 1 did) and return its
    status; a failed one is retried only with ``retry``. New code: ``precompute.start_projection``
    (a worker process, progress, ETA, cancel)."""
    global _legacy_executor
    status = projection_status(bundle_path, method, seed, params, clip_ids)
    if status.state in ("ready", "running") or (status.state == "failed" and not retry):
        return status
    key = _legacy_key(bundle_path, method, seed, params, clip_ids)
    ids = None if clip_ids is None else list(clip_ids)
    with _legacy_lock:
        fut = _legacy_jobs.get(key)
        if fut is None or (fut.done() and fut.exception() is not None):
            if _legacy_executor is None:
                _legacy_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfnet-projection")
            _legacy_jobs[key] = _legacy_executor.submit(project, str(bundle_path), method, seed, params, ids)
    return ProjectionStatus("running")
