"""Place a new clip in a bundle's maps: its t-SNE / UMAP / PCA position and its nearest bundle clips.

A clip the user uploads (or picks in Clip lab) has pooled features (``run_clip(...).pooled_features``)
but no place in the stored maps. Both libraries can embed new points into a fitted embedding -
openTSNE's ``TSNEEmbedding.transform`` and umap-learn's ``UMAP.transform`` - but they need the fitted
objects, which exist only as pickles (and umap's numba compilation, 15-30 s, in the app process). So
this module re-implements both transforms in numpy from the plain arrays a ``ProjectionSet`` stores
(the PCA, the reduced features, the maps, UMAP's fitted ``a``/``b``), following the libraries' own
algorithms and defaults:

* **t-SNE** (openTSNE ``transform``): the new point's 15 (= 3 x perplexity 5) nearest reference points
  in the PCA space get Gaussian affinities of perplexity 5 (binary search on squared distances, as
  openTSNE does); the point starts at the median of their map positions and is optimised for 250
  iterations against the fixed reference map: learning rate 0.1, exaggeration 1.5, momentum 0.8,
  gradient norm clipped at 0.25, openTSNE's gains. The repulsive term is exact below 4,000 reference
  points; above, points within a few cells of a 96 x 96 grid are summed exactly and farther cells as
  point masses at their centroids (openTSNE itself interpolates it on a grid).
* **UMAP** (umap-learn ``transform``): the ``n_neighbors`` nearest reference points, smooth-kNN
  membership strengths (``local_connectivity`` 1 -> 0 as in ``transform``), initialisation at their
  strength-weighted mean, then 100 epochs of UMAP's attractive / negative-sampling updates (rate 0.25
  decaying linearly, 5 negative samples, gradients clipped at 4) against the fixed reference map.
* **PCA**: the first two components of the reduced features (exact).

Neighbours are exact, in the same PCA space the maps were fitted in. ``tests/test_analysis_embeddings.py``
checks the t-SNE placement against openTSNE's own ``transform`` and the UMAP one against umap-learn's.
Cost at 24,777 reference points: a few tens of milliseconds per clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from hfnet_core.analysis.embeddings import exact_knn
from hfnet_core.analysis.projection_store import ProjectionSet
from hfnet_core.eval_bundle import EvalBundle
from hfnet_core.errors import BundleError

__all__ = ["Placement", "neighbour_table", "place", "place_tsne", "place_umap", "reduce_new"]

_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3


@dataclass(frozen=True)
class Placement:
    """Where new clips land. Row i of every array is new clip i."""

    coords: dict[str, np.ndarray]  # method -> (n, 2) map position
    neighbour_rows: np.ndarray  # (n, k) bundle rows of the nearest clips, nearest first
    neighbour_distances: np.ndarray  # (n, k) Euclidean distances in the PCA space
    reduced: np.ndarray  # (n, d) the clips' features in the set's PCA space


def reduce_new(ps: ProjectionSet, features: np.ndarray) -> np.ndarray:
    """(n, D) or (D,) pooled features -> (n, d) in the set's PCA space. Raises ``BundleError`` on a
    feature width that is not the bundle's (a clip run through another model)."""
    x = np.atleast_2d(np.asarray(features, dtype=np.float32))
    if x.shape[1] != ps.pca_mean.shape[0]:
        raise BundleError(f"these features have {x.shape[1]} dimensions but the bundle's have "
                          f"{ps.pca_mean.shape[0]}: place a clip with the model that made the bundle")
    if not np.isfinite(x).all():
        raise BundleError("these features contain NaN or infinite values; the clip cannot be placed")
    return (x - ps.pca_mean) @ np.asarray(ps.pca_components).T


# --- t-SNE ----------------------------------------------------------------------------------------------

def _gaussian_affinities(d: np.ndarray, perplexity: float, n_iter: int = 200) -> np.ndarray:
    """Row-normalised exp(-beta d^2) with beta per row set so the row's perplexity is ``perplexity``."""
    d2 = np.asarray(d, dtype=np.float64) ** 2
    target = np.log(perplexity)
    p = np.zeros_like(d2)
    for i in range(d2.shape[0]):
        lo, hi, beta = 0.0, np.inf, 1.0
        row = d2[i] - d2[i].min()
        for _ in range(n_iter):
            w = np.exp(-beta * row)
            s = w.sum()
            q = w / s
            entropy = -(q[q > 0] * np.log(q[q > 0])).sum()
            if abs(entropy - target) < 1e-8:
                break
            if entropy > target:  # too flat: sharpen
                lo = beta
                beta = beta * 2 if hi == np.inf else (lo + hi) / 2
            else:
                hi = beta
                beta = (lo + hi) / 2
        p[i] = q
    return p


def place_tsne(reference: np.ndarray, embedding: np.ndarray, new: np.ndarray, perplexity: float = 5.0,
               n_iter: int = 250, learning_rate: float = 0.1, exaggeration: float = 1.5, momentum: float = 0.8,
               max_grad_norm: float = 0.25, neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """openTSNE's ``transform`` of ``new`` (n, d) into ``embedding`` (M, 2) of ``reference`` (M, d)."""
    y_ref = np.asarray(embedding, dtype=np.float64)
    m = y_ref.shape[0]
    k = int(min(m, max(1, int(3 * perplexity))))
    idx, dist = neighbours if neighbours is not None else exact_knn(reference, k, queries=new)
    idx, dist = idx[:, :k], dist[:, :k]
    p = _gaussian_affinities(dist, min(perplexity, k / 3.0) if perplexity > k else perplexity) * exaggeration
    y = np.median(y_ref[idx], axis=1)
    centre = (y_ref.max(axis=0) + y_ref.min(axis=0)) / 2
    radius = 1.25 * float(np.abs(y_ref - centre).max()) if m else 1.0
    repulsion = _Repulsion(y_ref)
    for i in range(y.shape[0]):  # each new point is optimised on its own (as openTSNE does)
        y[i] = _tsne_descent(y[i], repulsion, y_ref[idx[i]], p[i], int(n_iter), learning_rate, momentum,
                             max_grad_norm, centre, radius)
    return y.astype(np.float32)


class _Repulsion:
    """t-SNE's repulsive sums over a fixed 2-D reference map, for one moving point.

    Reference points within ``near`` grid cells of the point are summed exactly; farther cells enter as
    their point count at their centroid (a one-level Barnes-Hut: the error is second order in cell size
    over distance, and far points weigh ~1/distance^2). Exact when the map has few points.
    """

    def __init__(self, ref: np.ndarray, cells: int = 96, near: int = 3, exact_below: int = 4000) -> None:
        self.ref = np.asarray(ref, dtype=np.float64)
        self.exact = len(self.ref) < exact_below
        if self.exact:
            return
        lo, hi = self.ref.min(axis=0), self.ref.max(axis=0)
        self.lo, self.size = lo, max(float((hi - lo).max()) / cells, 1e-9)
        self.cells, self.near = cells, near
        ij = np.clip(((self.ref - lo) / self.size).astype(np.int64), 0, cells - 1)
        cell = ij[:, 0] * cells + ij[:, 1]
        order = np.argsort(cell, kind="stable")
        self.sorted = self.ref[order]
        counts = np.bincount(cell, minlength=cells * cells)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        sums = np.stack([np.bincount(cell, weights=self.ref[:, a], minlength=cells * cells) for a in (0, 1)], 1)
        self.occupied = np.flatnonzero(counts)
        self.count = counts[self.occupied].astype(np.float64)
        self.centroid = sums[self.occupied] / self.count[:, None]
        self.occ_i, self.occ_j = self.occupied // cells, self.occupied % cells

    def sums(self, y: np.ndarray) -> tuple[float, np.ndarray]:
        """(sum_j q_j, sum_j q_j^2 (y - y_j)) with q_j = 1 / (1 + |y - y_j|^2)."""
        if self.exact:
            return self._exact(y, self.ref, None)
        ci, cj = np.clip(((y - self.lo) / self.size).astype(np.int64), 0, self.cells - 1)
        far = (np.abs(self.occ_i - ci) > self.near) | (np.abs(self.occ_j - cj) > self.near)
        z, f = self._exact(y, self.centroid[far], self.count[far])
        rows = [self.sorted[self.starts[i * self.cells + j0]:self.starts[i * self.cells + j1 + 1]]
                for i in range(max(0, ci - self.near), min(self.cells, ci + self.near + 1))
                for j0, j1 in [(max(0, cj - self.near), min(self.cells - 1, cj + self.near))]]
        if rows:
            z2, f2 = self._exact(y, np.concatenate(rows), None)
            z, f = z + z2, f + f2
        return z, f

    @staticmethod
    def _exact(y: np.ndarray, pts: np.ndarray, weight: np.ndarray | None) -> tuple[float, np.ndarray]:
        dx, dy = y[0] - pts[:, 0], y[1] - pts[:, 1]
        q = 1.0 / (1.0 + dx * dx + dy * dy)
        if weight is not None:
            q2 = weight * q * q
            q = weight * q
        else:
            q2 = q * q
        return float(q.sum()), np.array([q2 @ dx, q2 @ dy])


def _tsne_descent(y: np.ndarray, repulsion: _Repulsion, near_xy: np.ndarray, p: np.ndarray, n_iter: int,
                  learning_rate: float, momentum: float, max_grad_norm: float, centre: np.ndarray,
                  radius: float) -> np.ndarray:
    """openTSNE's gradient descent (gains, momentum, gradient clipping) for one point against the fixed
    reference map."""
    y = y.astype(np.float64).copy()
    update = np.zeros(2)
    gains = np.ones(2)
    for _ in range(n_iter):
        z, rep = repulsion.sums(y)
        d = y - near_xy
        pq = p / (1.0 + (d * d).sum(axis=1))
        grad = pq @ d - rep / z
        coeff = max_grad_norm / (float(np.hypot(grad[0], grad[1])) + 1e-6)
        if coeff < 1.0:
            grad *= coeff
        flipped = np.sign(update) != np.sign(grad)
        gains = np.where(flipped, gains + 0.2, gains * 0.8 + 0.01)
        update = momentum * update - learning_rate * gains * grad
        y = y + update
        off = float(np.hypot(*(y - centre)))
        if off > radius:  # stay on the map
            y = centre + (y - centre) * (radius / off)
    return y


# --- UMAP -----------------------------------------------------------------------------------------------

def _smooth_knn_sigmas(dist: np.ndarray, k: int, n_iter: int = 64) -> np.ndarray:
    """umap's ``smooth_knn_dist`` with ``local_connectivity=0`` (rho = 0), as ``transform`` calls it."""
    target = np.log2(k)
    mean_all = float(dist.mean()) if dist.size else 0.0
    sigmas = np.zeros(dist.shape[0], dtype=np.float64)
    for i in range(dist.shape[0]):
        lo, hi, mid = 0.0, np.inf, 1.0
        row = dist[i, 1:].astype(np.float64)  # umap skips the first neighbour here
        for _ in range(n_iter):
            psum = float(np.where(row > 0, np.exp(-row / mid), 1.0).sum())
            if abs(psum - target) < _SMOOTH_K_TOLERANCE:
                break
            if psum > target:
                hi = mid
                mid = (lo + hi) / 2.0
            else:
                lo = mid
                mid = mid * 2 if hi == np.inf else (lo + hi) / 2.0
        sigmas[i] = max(mid, _MIN_K_DIST_SCALE * mean_all)
    return sigmas


def place_umap(reference: np.ndarray, embedding: np.ndarray, new: np.ndarray, a: float, b: float,
               n_neighbors: int = 15, n_epochs: int = 100, negative_sample_rate: int = 5, seed: int = 0,
               neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """umap-learn's ``transform`` of ``new`` (n, d) into ``embedding`` (M, 2) of ``reference`` (M, d)."""
    y_ref = np.asarray(embedding, dtype=np.float64)
    m = y_ref.shape[0]
    k = int(min(m, n_neighbors))
    idx, dist = neighbours if neighbours is not None else exact_knn(reference, k, queries=new)
    idx, dist = idx[:, :k], dist[:, :k].astype(np.float64)
    sigmas = _smooth_knn_sigmas(dist, k)
    w = np.where(dist > 0, np.exp(-dist / sigmas[:, None]), 1.0)  # (n, k) membership strengths
    exact_hit = (w == 1.0).argmax(axis=1)
    y = (w[:, :, None] * y_ref[idx]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    hit = (w == 1.0).any(axis=1)
    y[hit] = y_ref[idx[hit, exact_hit[hit]]]
    w = np.where(w < w.max() / n_epochs, 0.0, w)
    with np.errstate(divide="ignore"):
        eps = np.where(w > 0, w.max() / np.maximum(w, 1e-300), -1.0)  # epochs per sample
    eps_neg = eps / negative_sample_rate
    next_pos = eps.copy()
    next_neg = eps_neg.copy()
    rng = np.random.default_rng(seed)
    n = y.shape[0]
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    for epoch in range(n_epochs):
        alpha = 0.25 * (1.0 - epoch / n_epochs)
        due = (eps > 0) & (next_pos <= epoch)
        if not due.any():
            continue
        heads, cols = rows[due], idx[due]
        diff = y[heads] - y_ref[cols]
        d2 = (diff * diff).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            coeff = np.where(d2 > 0, -2.0 * a * b * d2 ** (b - 1.0) / (a * d2 ** b + 1.0), 0.0)
        move = np.zeros_like(y)
        np.add.at(move, heads, np.clip(coeff[:, None] * diff, -4.0, 4.0) * alpha)
        next_pos[due] += eps[due]
        n_neg = ((epoch - next_neg[due]) / eps_neg[due]).astype(np.int64).clip(min=0)
        next_neg[due] += n_neg * eps_neg[due]
        neg_heads = np.repeat(heads, n_neg)
        if neg_heads.size:
            others = rng.integers(0, m, neg_heads.size)
            ndiff = y[neg_heads] - y_ref[others]
            nd2 = (ndiff * ndiff).sum(axis=1)
            ncoeff = 2.0 * b / ((0.001 + nd2) * (a * nd2 ** b + 1.0))
            np.add.at(move, neg_heads, np.clip(ncoeff[:, None] * ndiff, -4.0, 4.0) * alpha)
        y = y + move
    return y.astype(np.float32)


# --- all maps at once -----------------------------------------------------------------------------------

def place(ps: ProjectionSet, features: np.ndarray, k: int = 10, methods: tuple[str, ...] | None = None,
          seed: int = 0) -> Placement:
    """Place clips with pooled ``features`` (n, D) or (D,) in every map of ``ps`` (or ``methods``) and
    find their ``k`` nearest bundle clips. Raises ``BundleError`` for features of the wrong width."""
    z = reduce_new(ps, features)
    ref = np.asarray(ps.reduced)
    spec = ps.spec
    want = max(k, int(3 * 5.0), spec.umap_neighbors)
    idx, dist = exact_knn(ref, want, queries=z)
    coords: dict[str, np.ndarray] = {}
    for method in methods or tuple(ps.methods):
        if not ps.has(method):
            continue
        if method == "tsne":
            coords[method] = place_tsne(ref, ps.coords["tsne"], z, neighbours=(idx, dist))
        elif method == "umap":
            info = ps.info.get("methods", {}).get("umap", {})
            a, b = info.get("a"), info.get("b")
            if a is None or b is None:  # a map stored without its fitted curve: use umap's defaults
                a, b = 1.5769, 0.8951  # (min_dist 0.1, spread 1.0)
            coords[method] = place_umap(ref, ps.coords["umap"], z, float(a), float(b),
                                        n_neighbors=int(info.get("n_neighbors", spec.umap_neighbors)), seed=seed,
                                        neighbours=(idx, dist))
        elif method == "pca":
            c = z[:, :2]
            coords[method] = np.column_stack([c, np.zeros((len(z), 2 - c.shape[1]))]).astype(np.float32) \
                if c.shape[1] < 2 else c.astype(np.float32)
    rows = np.asarray(ps.rows)[idx[:, :k]]
    return Placement(coords, rows, dist[:, :k], z.astype(np.float32))


def neighbour_table(placement: Placement, bundle: EvalBundle, i: int = 0,
                    others: Mapping[str, EvalBundle] | None = None) -> list[dict[str, Any]]:
    """The nearest bundle clips of new clip ``i``, nearest first: ``rank``, ``row``, ``clip_id``,
    ``path``, ``distance``, ``label`` / ``label_name`` (-1 / "unknown"), ``pred`` / ``pred_name`` /
    ``conf`` (this bundle's model) and, for every ``others`` bundle (e.g. ``{"B": bundle_b}``), its
    prediction of the same clip id as ``pred_<name>`` / ``pred_<name>_name`` (None if it lacks the clip)."""
    from hfnet_core.analysis.comparison import softmax

    names = bundle.class_names
    rows = placement.neighbour_rows[i]
    probs = softmax(bundle.logits[rows])
    out = []
    for rank, (row, d) in enumerate(zip(rows, placement.neighbour_distances[i]), start=1):
        row = int(row)
        y, p = int(bundle.labels[row]), int(bundle.predictions[row])
        entry: dict[str, Any] = {
            "rank": rank, "row": row, "clip_id": bundle.clip_ids[row], "path": bundle.paths[row],
            "distance": float(d), "label": y, "label_name": names[y] if y >= 0 else "unknown",
            "pred": p, "pred_name": names[p], "conf": float(probs[rank - 1, p]),
        }
        for key, other in (others or {}).items():
            j = other.row_of(bundle.clip_ids[row])
            q = None if j is None else int(other.predictions[j])
            entry[f"pred_{key}"] = q
            entry[f"pred_{key}_name"] = None if q is None else other.class_names[q]
        out.append(entry)
    return out
