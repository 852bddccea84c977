"""2-D projections (t-SNE, UMAP) of an eval bundle's pooled features, computed once and cached on disk.

The paper's Fig. 3b/c are t-SNE plots of the features that precede the FC layer; eval bundles store
exactly those (``EvalBundle.features``, pooled over frames). Projections are slow (t-SNE: seconds; UMAP:
15-30 s of numba JIT compilation in every new process, then the fit), so each one is computed once and
stored as a small ``.npy`` file.

Cache design
------------
* Key = sha256 of the bundle file + method + its parameters + seed (+ the clip subset, if any). A bundle
  that changes gets a new key, so a stale projection is never shown.
* File = ``<bundle stem>.proj-<method>-<key[:16]>.npy`` next to the bundle (the shipped bundles in
  ``checkpoints/`` carry theirs in git), or, where that folder is read-only, under
  ``$HFNET_CACHE_DIR`` / ``$XDG_CACHE_HOME/hfnet`` / ``~/.cache/hfnet`` in ``projections/``.
* Writes are atomic (temp file + rename): concurrent writers of one key both write the same array and
  readers never see half a file. A cache file that does not load as a finite (M, 2) array is ignored.
* ``project_async`` runs a projection in one background worker thread (so a page never waits on UMAP's
  JIT); ``projection_status`` tells a page whether it is ready, running or failed.

Rows of a projection follow the bundle's row order (restricted to ``clip_ids`` when given: see
``subset_rows``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hfnet_core.atomic import WriteError, atomic_path
from hfnet_core.eval_bundle import EvalBundle

__all__ = [
    "METHODS",
    "DEFAULT_PARAMS",
    "ProjectionStatus",
    "cache_dir",
    "cache_path",
    "cached_projection",
    "class_separation",
    "compute_projection",
    "bundle_sha256",
    "project",
    "project_async",
    "projection_status",
    "store_projection",
    "subset_rows",
]

METHODS = ("tsne", "umap")

#: Parameters of each method (part of the cache key). PCA to ``pca_dims`` first (the usual t-SNE
#: recipe; it also makes both methods deterministic and fast on wide features).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "tsne": {"perplexity": 30.0, "max_iter": 1000, "init": "pca", "pca_dims": 50},
    "umap": {"n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean", "pca_dims": 50},
}

_FORMAT = 1  # bump when the computation changes so old cache files are no longer used


def cache_dir() -> Path:
    """Fallback folder for projections of bundles that live in read-only folders."""
    env = os.environ.get("HFNET_CACHE_DIR")
    if env:
        base = Path(env)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hfnet"
    return base / "projections"


_sha_memo: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def bundle_sha256(bundle_path: str | os.PathLike[str]) -> str:
    """sha256 of the bundle file, memoised on (path, mtime, size)."""
    p = Path(bundle_path).resolve()
    st = p.stat()
    memo_key = (str(p), st.st_mtime_ns, st.st_size)
    with _sha_lock:
        if memo_key in _sha_memo:
            return _sha_memo[memo_key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    with _sha_lock:
        _sha_memo[memo_key] = digest
    return digest


def _params(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; choose one of {METHODS}")
    merged = dict(DEFAULT_PARAMS[method])
    unknown = set(params or {}) - set(merged)
    if unknown:
        raise ValueError(f"unknown {method} parameters {sorted(unknown)}; known: {sorted(merged)}")
    merged.update(params or {})
    return merged


def _subset_digest(clip_ids: Sequence[str] | None) -> str | None:
    if clip_ids is None:
        return None
    return hashlib.sha256("\n".join(sorted(set(clip_ids))).encode()).hexdigest()


def _key(bundle_path: str | os.PathLike[str], method: str, seed: int, params: dict[str, Any],
         clip_ids: Sequence[str] | None) -> str:
    spec = {
        "format": _FORMAT,
        "bundle_sha256": bundle_sha256(bundle_path),
        "method": method,
        "seed": int(seed),
        "params": params,
        "subset": _subset_digest(clip_ids),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _file_name(bundle_path: str | os.PathLike[str], method: str, key: str) -> str:
    stem = Path(bundle_path).name
    if stem.endswith(".npz"):
        stem = stem[: -len(".npz")]
    return f"{stem}.proj-{method}-{key}.npy"


def cache_path(bundle_path: str | os.PathLike[str], method: str = "tsne", seed: int = 0,
               params: dict[str, Any] | None = None, clip_ids: Sequence[str] | None = None,
               *, for_writing: bool = False) -> Path:
    """Where the projection lives: next to the bundle if it exists there (or, for writing, if the folder
    is writable), else in ``cache_dir()``."""
    p = _params(method, params)
    name = _file_name(bundle_path, method, _key(bundle_path, method, seed, p, clip_ids))
    beside = Path(bundle_path).resolve().parent / name
    fallback = cache_dir() / name
    if for_writing:
        return beside if os.access(beside.parent, os.W_OK) else fallback
    if beside.is_file() or not fallback.is_file():
        return beside
    return fallback


def subset_rows(bundle: EvalBundle, clip_ids: Sequence[str] | None) -> np.ndarray:
    """Row indices of ``bundle`` a projection covers: all rows, or those whose id is in ``clip_ids``."""
    if clip_ids is None:
        return np.arange(len(bundle.clip_ids), dtype=np.int64)
    wanted = set(clip_ids)
    return np.asarray([i for i, c in enumerate(bundle.clip_ids) if c in wanted], dtype=np.int64)


def _load(path: Path, n_rows: int | None) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
        return None
    if n_rows is not None and arr.shape[0] != n_rows:
        return None
    return arr.astype(np.float32, copy=False)


def cached_projection(bundle_path: str | os.PathLike[str], method: str = "tsne", seed: int = 0,
                      params: dict[str, Any] | None = None,
                      clip_ids: Sequence[str] | None = None) -> np.ndarray | None:
    """The cached projection, or None if it has not been computed (never computes)."""
    p = _params(method, params)
    key = _key(bundle_path, method, seed, p, clip_ids)
    name = _file_name(bundle_path, method, key)
    for candidate in (Path(bundle_path).resolve().parent / name, cache_dir() / name):
        if candidate.is_file():
            arr = _load(candidate, None)
            if arr is not None:
                return arr
    return None


def store_projection(bundle_path: str | os.PathLike[str], coords: np.ndarray, method: str = "tsne",
                     seed: int = 0, params: dict[str, Any] | None = None,
                     clip_ids: Sequence[str] | None = None) -> Path:
    """Write ``coords`` (M, 2) as the cached projection for these arguments, atomically."""
    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"a projection is (M, 2), got {coords.shape}")
    target = cache_path(bundle_path, method, seed, params, clip_ids, for_writing=True)
    try:
        return _write(target, coords)
    except (OSError, WriteError):  # a read-only bundle folder: use the user cache instead
        fallback = cache_dir() / target.name
        if fallback == target:
            raise
        return _write(fallback, coords)


def _write(target: Path, coords: np.ndarray) -> Path:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, coords, allow_pickle=False)
    return target


def _threads() -> int:
    """BLAS/OpenMP threads for a projection (``HFNET_PROJECTION_THREADS``, default 1).

    Measured on this shared 2-core machine under load: t-SNE of 600 x 256 features took 58 s with the
    libraries' default thread count and 8.6 s with one thread (oversubscription, as with torch).
    """
    return max(1, int(os.environ.get("HFNET_PROJECTION_THREADS", "1") or 1))


def compute_projection(features: np.ndarray, method: str = "tsne", seed: int = 0,
                       params: dict[str, Any] | None = None) -> np.ndarray:
    """Project (M, D) features to (M, 2) without any caching. Imports umap only when asked for it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=_threads()):
        return _compute(features, method, seed, params)


def _compute(features: np.ndarray, method: str, seed: int, params: dict[str, Any] | None) -> np.ndarray:
    p = _params(method, params)
    x = np.asarray(features, dtype=np.float64)
    m = x.shape[0]
    if m == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if m < 4:  # too few points for a neighbourhood embedding: spread them on a line
        return np.stack([np.arange(m, dtype=np.float32), np.zeros(m, dtype=np.float32)], axis=1)
    x = x - x.mean(axis=0)
    dims = min(int(p["pca_dims"]), m, x.shape[1])
    if dims < x.shape[1]:
        from sklearn.decomposition import PCA

        x = PCA(n_components=dims, svd_solver="full", random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(p["perplexity"], max(1.0, (m - 1) / 3.0)))
        tsne = TSNE(n_components=2, perplexity=perplexity, max_iter=int(p["max_iter"]), init=p["init"],
                    learning_rate="auto", random_state=seed)
        out = tsne.fit_transform(x)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden to 1 by setting random_state", numba
            import umap

            reducer = umap.UMAP(n_components=2, n_neighbors=int(min(p["n_neighbors"], m - 1)),
                                min_dist=float(p["min_dist"]), metric=p["metric"], random_state=seed)
            out = reducer.fit_transform(x)
    return np.asarray(out, dtype=np.float32)


def project(bundle_path: str | os.PathLike[str], method: str = "tsne", seed: int = 0,
            params: dict[str, Any] | None = None, clip_ids: Sequence[str] | None = None) -> np.ndarray:
    """(M, 2) projection of the bundle's features (rows of ``subset_rows``), from the cache or computed
    now and cached."""
    bundle = EvalBundle.load(bundle_path)
    n_rows = len(subset_rows(bundle, clip_ids))
    cached = cached_projection(bundle_path, method, seed, params, clip_ids)
    if cached is not None and cached.shape[0] == n_rows:
        return cached
    rows = subset_rows(bundle, clip_ids)
    coords = compute_projection(bundle.features[rows], method, seed, params)
    store_projection(bundle_path, coords, method, seed, params, clip_ids)
    return coords


def class_separation(features: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette score of ``features`` grouped by true class, in [-1, 1] (higher: tighter, better
    separated classes - what the paper reads off its t-SNE plots, measured in the feature space itself
    rather than in a 2-D projection). None when it is undefined (fewer than 2 classes, or a class with
    every clip)."""
    from sklearn.metrics import silhouette_score

    y = np.asarray(labels)
    known = y >= 0
    x, y = np.asarray(features, dtype=np.float64)[known], y[known]
    n_classes = len(np.unique(y))
    if n_classes < 2 or n_classes >= len(y):
        return None
    return float(silhouette_score(x, y, metric="euclidean"))


# --- background computation --------------------------------------------------------------------------

@dataclass(frozen=True)
class ProjectionStatus:
    state: str  # "ready", "running", "failed" or "missing" (not cached, not started)
    coords: np.ndarray | None = None
    error: str | None = None


_executor: ThreadPoolExecutor | None = None
_jobs: dict[str, Future] = {}
_jobs_lock = threading.Lock()


def _job_key(bundle_path: str | os.PathLike[str], method: str, seed: int, params: dict[str, Any] | None,
             clip_ids: Sequence[str] | None) -> str:
    return f"{Path(bundle_path).resolve()}|{_key(bundle_path, method, seed, _params(method, params), clip_ids)}"


def projection_status(bundle_path: str | os.PathLike[str], method: str = "tsne", seed: int = 0,
                      params: dict[str, Any] | None = None,
                      clip_ids: Sequence[str] | None = None) -> ProjectionStatus:
    """Ready (with coords), running, failed (with the error) or missing; never computes."""
    coords = cached_projection(bundle_path, method, seed, params, clip_ids)
    if coords is not None:
        return ProjectionStatus("ready", coords)
    with _jobs_lock:
        fut = _jobs.get(_job_key(bundle_path, method, seed, params, clip_ids))
    if fut is None:
        return ProjectionStatus("missing")
    if not fut.done():
        return ProjectionStatus("running")
    err = fut.exception()
    if err is not None:
        return ProjectionStatus("failed", error=f"{type(err).__name__}: {err}")
    coords = fut.result()
    return ProjectionStatus("ready", coords)


def project_async(bundle_path: str | os.PathLike[str], method: str = "umap", seed: int = 0,
                  params: dict[str, Any] | None = None, clip_ids: Sequence[str] | None = None,
                  retry: bool = False) -> ProjectionStatus:
    """Start computing the projection in the background (once per key and process) and return its status.

    One worker thread serves every session, so at most one projection runs at a time on this small
    machine; a failed job is only retried when ``retry`` is set.
    """
    global _executor
    status = projection_status(bundle_path, method, seed, params, clip_ids)
    if status.state in ("ready", "running") or (status.state == "failed" and not retry):
        return status
    key = _job_key(bundle_path, method, seed, params, clip_ids)
    ids = None if clip_ids is None else list(clip_ids)
    with _jobs_lock:
        fut = _jobs.get(key)
        if fut is None or (fut.done() and fut.exception() is not None):
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfnet-projection")
            _jobs[key] = _executor.submit(project, str(bundle_path), method, seed, params, ids)
    return ProjectionStatus("running")
