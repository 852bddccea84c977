"""Where a bundle's projections live: one content-keyed ``.npz`` of plain arrays beside the bundle.

A *projection set* is everything the Feature space pages read about one bundle (or one clip subset of
it), computed by ``hfnet project`` / at the end of ``hfnet eval`` (``hfnet_core.analysis.precompute``):

=====================  ==========================================================================
array                  meaning
=====================  ==========================================================================
``rows``               (M,) bundle rows covered, in bundle order (all rows, or a clip subset)
``coords_<method>``    (M, 2) float32 map, for each computed method of ``METHODS`` (t-SNE, UMAP, PCA)
``reduced``            (M, d) float32 features after PCA (the space every map and neighbour lives in)
``pca_mean``           (D,) and ``pca_components`` (d, D): the PCA, to reduce a new clip's features
``pca_explained``      (d,) explained-variance ratio of each component
``knn_indices``        (M, k) int32 exact nearest neighbours in ``reduced`` (positions in ``rows``)
``knn_distances``      (M, k) float32 their Euclidean distances
``centroids_<method>`` (K, 2) mean map position of each class (NaN: class absent)
``class_counts``       (K,) clips per class among ``rows``
``silhouette_per_class`` (K,) mean silhouette of each class's clips (NaN: undefined / not sampled)
``info``               JSON: format, bundle sha256, spec, per-method seconds and parameters (UMAP's
                       fitted ``a``/``b``), the silhouette (value, exact or sampled, sample size)
=====================  ==========================================================================

Key = sha256 of (format, the bundle file's sha256, the ``ProjectionSpec``, the clip subset), so a
changed bundle, spec or subset gets a new file and a stale map is never shown. File =
``<bundle stem>.proj-<key[:16]>.npz`` beside the bundle, or - where that folder is read-only - in
``$HFNET_CACHE_DIR`` / ``$XDG_CACHE_HOME/hfnet`` / ``~/.cache/hfnet`` under ``projections/``.
Stored uncompressed and 64-byte aligned (``hfnet_core.eval_bundle.write_aligned_npz``) so the app maps
it read-only; written atomically. A set can be extended (another method added): the file is rewritten
whole, atomically. A file that does not load, or whose rows or shapes do not fit, counts as missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hfnet_core.eval_bundle import EvalBundle, read_npz, write_aligned_npz

__all__ = [
    "FORMAT",
    "METHODS",
    "ProjectionSet",
    "ProjectionSpec",
    "bundle_sha256",
    "cache_dir",
    "cache_root",
    "load_set",
    "save_set",
    "set_path",
    "shared_set",
    "subset_digest",
    "subset_rows",
]

METHODS = ("tsne", "umap", "pca")
FORMAT = 2  # 1 = one .npy per method (scikit-learn t-SNE); 2 = one set file per bundle (openTSNE)


@dataclass(frozen=True)
class ProjectionSpec:
    """Every parameter a projection set depends on (part of its key). Defaults follow openTSNE's and
    umap-learn's recommendations; PCA to ``pca_dims`` first, as the t-SNE literature does for wide
    features (it also makes the exact neighbour search cheap)."""

    seed: int = 0
    pca_dims: int = 50
    tsne_perplexity: float = 30.0
    tsne_early_exaggeration_iter: int = 250
    tsne_iter: int = 300  # after early exaggeration; 500 costs ~40 % more at 25k points (docs/scale.md)
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    knn_k: int = 15
    silhouette_exact_max: int = 4000  # clips; above this the silhouette is computed on a sample
    silhouette_sample: int = 4000  # stratified sample size when it is not exact

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProjectionSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class ProjectionSet:
    """The arrays of one projection set (see the module docstring) and its ``info``."""

    rows: np.ndarray
    reduced: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray
    pca_explained: np.ndarray
    knn_indices: np.ndarray
    knn_distances: np.ndarray
    class_counts: np.ndarray
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    silhouette_per_class: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(len(self.rows))

    @property
    def methods(self) -> list[str]:
        return [m for m in METHODS if m in self.coords]

    @property
    def spec(self) -> ProjectionSpec:
        return ProjectionSpec.from_dict(self.info.get("spec", {}))

    @property
    def silhouette(self) -> dict[str, Any] | None:
        """``{"value", "exact", "n", "of", "space"}`` or None when undefined / not computed."""
        return self.info.get("silhouette")

    def has(self, method: str) -> bool:
        return method in self.coords

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            "rows": self.rows, "reduced": self.reduced, "pca_mean": self.pca_mean,
            "pca_components": self.pca_components, "pca_explained": self.pca_explained,
            "knn_indices": self.knn_indices, "knn_distances": self.knn_distances,
            "class_counts": self.class_counts, "info": np.array(json.dumps(self.info)),
        }
        if self.silhouette_per_class is not None:
            out["silhouette_per_class"] = self.silhouette_per_class
        for m, c in self.coords.items():
            out[f"coords_{m}"] = c
        for m, c in self.centroids.items():
            out[f"centroids_{m}"] = c
        return out

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray]) -> "ProjectionSet":
        return cls(
            rows=z["rows"], reduced=z["reduced"], pca_mean=z["pca_mean"], pca_components=z["pca_components"],
            pca_explained=z["pca_explained"], knn_indices=z["knn_indices"], knn_distances=z["knn_distances"],
            class_counts=z["class_counts"],
            coords={m: z[f"coords_{m}"] for m in METHODS if f"coords_{m}" in z},
            centroids={m: z[f"centroids_{m}"] for m in METHODS if f"centroids_{m}" in z},
            silhouette_per_class=z.get("silhouette_per_class"),
            info=json.loads(str(z["info"][()])),
        )

    def valid(self) -> bool:
        """Shapes agree and every map is finite (a damaged or foreign file is treated as missing)."""
        m = self.n
        try:
            ok = (self.rows.ndim == 1 and self.reduced.shape[0] == m and self.knn_indices.shape[0] == m
                  and self.knn_distances.shape == self.knn_indices.shape
                  and self.pca_components.shape[0] == self.reduced.shape[1]
                  and self.pca_components.shape[1] == self.pca_mean.shape[0])
            ok = ok and all(c.shape == (m, 2) and np.isfinite(c).all() for c in self.coords.values())
            ok = ok and bool(m == 0 or (self.knn_indices.min(initial=0) >= 0 and self.knn_indices.max(initial=0) < m))
        except (AttributeError, IndexError, ValueError):
            return False
        return bool(ok)


# --- keys and files ------------------------------------------------------------------------------------

def cache_root() -> Path:
    """hfnet's per-user cache folder: ``$HFNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/hfnet``, else
    ``~/.cache/hfnet``."""
    env = os.environ.get("HFNET_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hfnet"


def cache_dir() -> Path:
    """Fallback folder for projection sets of bundles that live in read-only folders."""
    return cache_root() / "projections"


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


def subset_digest(clip_ids: Sequence[str] | None) -> str | None:
    """Order-independent digest of a clip subset (None = the whole bundle)."""
    if clip_ids is None:
        return None
    return hashlib.sha256("\n".join(sorted(set(clip_ids))).encode()).hexdigest()


def subset_rows(bundle: EvalBundle, clip_ids: Sequence[str] | None) -> np.ndarray:
    """Row indices of ``bundle`` a projection covers: all rows, or those whose id is in ``clip_ids``
    (bundle order)."""
    if clip_ids is None:
        return np.arange(len(bundle.clip_ids), dtype=np.int64)
    wanted = set(clip_ids)
    return np.asarray([i for i, c in enumerate(bundle.clip_ids) if c in wanted], dtype=np.int64)


def set_key(bundle_path: str | os.PathLike[str], spec: ProjectionSpec, clip_ids: Sequence[str] | None) -> str:
    doc = {"format": FORMAT, "bundle_sha256": bundle_sha256(bundle_path), "spec": spec.to_dict(),
           "subset": subset_digest(clip_ids)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _stem(bundle_path: str | os.PathLike[str]) -> str:
    return Path(bundle_path).name.removesuffix(".npz")


def set_path(bundle_path: str | os.PathLike[str], spec: ProjectionSpec | None = None,
             clip_ids: Sequence[str] | None = None, *, for_writing: bool = False) -> Path:
    """Where the set lives: beside the bundle if it is there (or, for writing, if that folder is
    writable), else in ``cache_dir()``."""
    spec = spec or ProjectionSpec()
    name = f"{_stem(bundle_path)}.proj-{set_key(bundle_path, spec, clip_ids)}.npz"
    beside = Path(bundle_path).resolve().parent / name
    fallback = cache_dir() / name
    if for_writing:
        return beside if os.access(beside.parent, os.W_OK) else fallback
    if beside.is_file() or not fallback.is_file():
        return beside
    return fallback


def load_set(bundle_path: str | os.PathLike[str], spec: ProjectionSpec | None = None,
             clip_ids: Sequence[str] | None = None, mmap: bool = False) -> ProjectionSet | None:
    """The stored set, or None if it is missing or unusable (never computes)."""
    spec = spec or ProjectionSpec()
    name = set_path(bundle_path, spec, clip_ids).name
    for candidate in (Path(bundle_path).resolve().parent / name, cache_dir() / name):
        if candidate.is_file():
            try:
                ps = ProjectionSet.from_arrays(read_npz(candidate, mmap=mmap))
            except Exception:  # noqa: BLE001 - any damage (zipfile and numpy fail in many ways) = missing
                continue  # a damaged file is a missing one; the next compute replaces it
            if ps.valid():
                return ps
    return None


def save_set(bundle_path: str | os.PathLike[str], ps: ProjectionSet, spec: ProjectionSpec | None = None,
             clip_ids: Sequence[str] | None = None) -> Path:
    """Write ``ps`` atomically beside the bundle (or in the fallback folder if that fails)."""
    from hfnet_core.atomic import WriteError, atomic_path

    spec = spec or ProjectionSpec()
    target = set_path(bundle_path, spec, clip_ids, for_writing=True)
    arrays = ps.arrays()

    def write(path: Path) -> Path:
        with atomic_path(path) as tmp:
            write_aligned_npz(tmp, arrays)
        return path

    try:
        out = write(target)
    except (OSError, WriteError):  # a read-only bundle folder: use the user cache instead
        fallback = cache_dir() / target.name
        if fallback == target:
            raise
        out = write(fallback)
    _forget_shared(out)
    return out


# --- shared, memory-mapped sets for the app -----------------------------------------------------------

_shared: dict[tuple[str, int, int], ProjectionSet] = {}
_shared_lock = threading.Lock()


def shared_set(bundle_path: str | os.PathLike[str], spec: ProjectionSpec | None = None,
               clip_ids: Sequence[str] | None = None) -> ProjectionSet | None:
    """Like ``load_set`` but memory-mapped and shared by every caller of this process (read-only arrays),
    reloaded when the file changes. For the app: N sessions, one copy."""
    spec = spec or ProjectionSpec()
    path = set_path(bundle_path, spec, clip_ids)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _shared_lock:
        hit = _shared.get(key)
    if hit is not None:
        return hit
    ps = load_set(bundle_path, spec, clip_ids, mmap=True)
    if ps is None:
        return None
    with _shared_lock:
        for old in [k for k in _shared if k[0] == key[0]]:
            del _shared[old]
        while len(_shared) >= 16:
            del _shared[next(iter(_shared))]
        _shared[key] = ps
    return ps


def _forget_shared(path: Path) -> None:
    with _shared_lock:
        for old in [k for k in _shared if k[0] == str(path)]:
            del _shared[old]
