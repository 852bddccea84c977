"""Projection sets (PCA, exact neighbours, openTSNE, silhouette, centroids), their content-keyed store,
`hfnet project`, background projection jobs, placing new clips (checked against openTSNE's and
umap-learn's own transforms) and the per-method API existing pages use. Only the two slow tests run UMAP
(its numba JIT takes 15-30 s per process)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from _analysis_fixtures import designed_pair
from hfnet_core.analysis import embeddings as emb
from hfnet_core.analysis import placement as pl
from hfnet_core.analysis import precompute as pre
from hfnet_core.analysis import projection_store as store
from hfnet_core.analysis.comparison import improved_clip_ids
from hfnet_core.analysis.jobs import JobPool
from hfnet_core.analysis.projection_store import ProjectionSpec
from hfnet_core.analysis.synthetic_bundles import synthetic_pair
from hfnet_core.errors import BundleError
from hfnet_core.eval_bundle import EvalBundle

FAST = ProjectionSpec(tsne_early_exaggeration_iter=100, tsne_iter=150)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "user-cache"))


@pytest.fixture()
def pair(tmp_path) -> tuple[Path, Path]:
    a, b = designed_pair()
    pa, pb = tmp_path / "bundles" / "hf.test.npz", tmp_path / "bundles" / "tsn.test.npz"
    pa.parent.mkdir()
    a.save(pa)
    b.save(pb)
    return pa, pb


@pytest.fixture()
def thread_pool():
    pool = JobPool(workers=1, mode="thread", name="test-projections")
    yield pool
    pool.shutdown()


def _forbid_compute(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the projection should have come from the store")

    monkeypatch.setattr(pre, "compute_set", boom)


# --- the computation ----------------------------------------------------------------------------------

def test_pca_is_exact_and_deterministic():
    from sklearn.decomposition import PCA

    a, _ = designed_pair()
    x = a.features.astype(np.float64)
    reduced, mean, comps, explained = emb.reduce_pca(a.features, 5, chunk=7)  # chunking must not matter
    ref = PCA(5, svd_solver="full").fit(x)
    np.testing.assert_allclose(np.abs(comps), np.abs(ref.components_), atol=1e-5)
    np.testing.assert_allclose(explained, ref.explained_variance_ratio_, rtol=1e-5)
    np.testing.assert_allclose(np.abs(reduced), np.abs(ref.transform(x)), atol=1e-4)
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-6)
    assert (comps[np.arange(5), np.abs(comps).argmax(1)] > 0).all()  # the fixed sign
    np.testing.assert_array_equal(emb.reduce_pca(a.features, 5)[0], emb.reduce_pca(a.features, 5)[0])
    assert emb.reduce_pca(a.features, 50)[0].shape == (64, 12)  # never more dims than features


def test_exact_knn_matches_brute_force_in_any_chunking():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(97, 6)).astype(np.float32)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    want = np.argsort(d, axis=1, kind="stable")[:, :7]
    idx, dist = emb.exact_knn(x, 7, chunk=10)
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(dist, np.take_along_axis(d, want, 1), rtol=1e-4, atol=1e-4)
    q = rng.normal(size=(5, 6)).astype(np.float32)
    qi, qd = emb.exact_knn(x, 3, queries=q)
    dq = np.linalg.norm(q[:, None] - x[None], axis=-1)
    np.testing.assert_array_equal(qi, np.argsort(dq, axis=1)[:, :3])
    assert emb.exact_knn(x[:1], 5)[0].shape == (1, 0)  # one point has no neighbour


def test_compute_set_holds_every_array_the_pages_read():
    from sklearn.metrics import silhouette_score

    a, _ = designed_pair()
    ps = emb.compute_set(a.features, a.labels, 16, FAST, methods=("tsne", "pca"))
    assert ps.methods == ["tsne", "pca"] and ps.valid()
    assert ps.coords["tsne"].shape == (64, 2) and ps.coords["tsne"].dtype == np.float32
    np.testing.assert_array_equal(ps.coords["pca"], ps.reduced[:, :2])
    assert ps.knn_indices.shape == (64, 15) and ps.knn_indices.dtype == np.int32
    assert ps.class_counts.tolist() == [4] * 16
    sil = ps.silhouette
    assert sil["exact"] and sil["n"] == sil["of"] == 64
    assert sil["value"] == pytest.approx(silhouette_score(a.features.astype(np.float64), a.labels))
    assert ps.silhouette_per_class.shape == (16,) and np.isfinite(ps.silhouette_per_class).all()
    for c in range(16):
        np.testing.assert_allclose(ps.centroids["tsne"][c], ps.coords["tsne"][a.labels == c].mean(0), rtol=1e-5,
                                   atol=1e-4)
    # Well-separated classes stay apart in the map.
    y, coords = a.labels, ps.coords["tsne"]
    centres = ps.centroids["tsne"]
    within = np.mean([np.linalg.norm(coords[y == c] - centres[c], axis=1).mean() for c in range(16)])
    between = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(16, 1)].mean()
    assert within < 0.25 * between and sil["value"] > 0.5
    assert emb.class_separation(a.features, a.labels) == pytest.approx(sil["value"])


def test_silhouette_is_sampled_stratified_above_the_exact_limit():
    a, _ = synthetic_pair(600, 16, 12, seed=3)
    spec = ProjectionSpec(silhouette_exact_max=100, silhouette_sample=120)
    sil, per_class = emb.silhouette_summary(a.features, a.labels, 12, spec)
    assert not sil["exact"] and sil["of"] == 600 and 120 <= sil["n"] <= 150
    assert np.isfinite(per_class).all()  # every class is in the sample
    again, _ = emb.silhouette_summary(a.features, a.labels, 12, spec)
    assert again == sil  # seeded
    exact, _ = emb.silhouette_summary(a.features, a.labels, 12, ProjectionSpec())
    assert exact["exact"] and abs(exact["value"] - sil["value"]) < 0.1
    assert emb.silhouette_summary(np.ones((4, 2)), np.zeros(4, int), 1, spec)[0] is None


def test_tiny_inputs_do_not_crash():
    assert emb.compute_projection(np.zeros((0, 5))).shape == (0, 2)
    assert emb.compute_projection(np.ones((3, 5))).shape == (3, 2)
    assert emb.class_separation(np.ones((4, 2)), np.zeros(4, dtype=int)) is None
    with pytest.raises(ValueError, match="unknown projection method"):
        emb.compute_set(np.ones((5, 2)), np.zeros(5, int), 1, methods=["mds"])


# --- the store ----------------------------------------------------------------------------------------

def test_project_bundle_computes_once_then_reads_the_stored_set(pair, monkeypatch):
    pa, _ = pair
    assert store.load_set(pa, FAST) is None
    res = pre.project_bundle(pa, FAST, methods=("tsne", "pca"))
    assert res.computed == ["tsne", "pca"] and res.path.parent == pa.parent.resolve()
    assert res.path.name.startswith("hf.test.proj-") and res.path.suffix == ".npz"
    assert not [f for f in pa.parent.iterdir() if f.name.endswith(".tmp")]  # atomic write
    with np.load(res.path, allow_pickle=False) as z:  # plain arrays only
        assert {"coords_tsne", "reduced", "knn_indices", "info"} <= set(z.files)
    _forbid_compute(monkeypatch)
    again = pre.project_bundle(pa, FAST, methods=("tsne",))
    assert again.computed == []
    np.testing.assert_array_equal(again.set.coords["tsne"], res.set.coords["tsne"])
    shared = store.shared_set(pa, FAST)
    assert shared is store.shared_set(pa, FAST) and not shared.coords["tsne"].flags.writeable  # mapped, shared


def test_adding_a_method_reuses_the_stored_pca_and_neighbours(pair, monkeypatch):
    pa, _ = pair
    first = pre.project_bundle(pa, FAST, methods=("pca",))
    calls = []
    real = emb.reduce_pca
    monkeypatch.setattr(emb, "reduce_pca", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = pre.project_bundle(pa, FAST, methods=("pca", "tsne"))
    assert second.computed == ["tsne"] and not calls
    np.testing.assert_array_equal(second.set.coords["pca"], first.set.coords["pca"])
    assert second.set.silhouette == first.set.silhouette


def test_set_key_follows_bundle_content_spec_and_subset(pair, tmp_path):
    pa, pb = pair
    base = store.set_path(pa, FAST)
    others = {store.set_path(pb, FAST), store.set_path(pa, ProjectionSpec()),
              store.set_path(pa, FAST.__class__(**{**FAST.to_dict(), "seed": 1})),
              store.set_path(pa, FAST, clip_ids=["synth/test/000001"])}
    assert base not in others and len(others) == 4
    assert store.set_path(pa, FAST, ["b", "a"]) == store.set_path(pa, FAST, ["a", "b", "a"])  # a set of ids
    copy = tmp_path / "copy.npz"
    copy.write_bytes(pa.read_bytes())
    assert store.set_path(copy, FAST).name.split("-")[-1] == base.name.split("-")[-1]
    a = EvalBundle.load(pa)
    a.features[0, 0] += 1.0
    a.save(copy)
    assert store.set_path(copy, FAST).name.split("-")[-1] != base.name.split("-")[-1]


def test_read_only_bundle_folder_falls_back_to_the_user_cache(pair, monkeypatch, tmp_path):
    pa, _ = pair
    real_access = store.os.access
    monkeypatch.setattr(store.os, "access",
                        lambda p, mode: False if Path(p) == pa.parent.resolve() else real_access(p, mode))
    res = pre.project_bundle(pa, FAST, methods=("pca",))
    assert res.path.parent == tmp_path / "user-cache" / "projections"
    assert not [f for f in pa.parent.iterdir() if ".proj-" in f.name]
    assert store.load_set(pa, FAST) is not None


def test_write_error_beside_the_bundle_falls_back(pair, monkeypatch, tmp_path):
    pa, _ = pair
    real = store.write_aligned_npz

    def failing(path, arrays):
        if Path(path).parent == pa.parent.resolve():
            raise PermissionError("read-only file system")
        return real(path, arrays)

    monkeypatch.setattr(store, "write_aligned_npz", failing)
    assert pre.project_bundle(pa, FAST, methods=("pca",)).path.parent == tmp_path / "user-cache" / "projections"


def test_corrupt_or_mismatched_set_files_count_as_missing(pair):
    pa, _ = pair
    res = pre.project_bundle(pa, FAST, methods=("pca",))
    good = res.path.read_bytes()
    res.path.write_bytes(b"not a zip file")
    assert store.load_set(pa, FAST) is None
    arrays = dict(res.set.arrays())
    arrays["coords_pca"] = np.full((64, 2), np.nan, np.float32)
    from hfnet_core.eval_bundle import write_aligned_npz

    write_aligned_npz(res.path, arrays)
    assert store.load_set(pa, FAST) is None  # non-finite map
    arrays["coords_pca"] = np.zeros((10, 2), np.float32)
    write_aligned_npz(res.path, arrays)
    assert store.load_set(pa, FAST) is None  # wrong number of rows
    res.path.write_bytes(good)
    assert store.load_set(pa, FAST) is not None


def test_subset_sets_cover_exactly_the_subset_rows(pair):
    pa, pb = pair
    a, b = EvalBundle.load(pa), EvalBundle.load(pb)
    _, ids = improved_clip_ids(a, b, 3)
    rows = store.subset_rows(a, ids)
    assert [a.clip_ids[i] for i in rows] == ids
    res = pre.project_bundle(pa, FAST, methods=("tsne",), clip_ids=ids)
    assert res.set.coords["tsne"].shape == (len(ids), 2)
    np.testing.assert_array_equal(res.set.rows, rows)
    assert store.load_set(pa, FAST) is None  # the whole set is another entry
    assert store.load_set(pa, FAST, clip_ids=list(reversed(ids))) is not None


# --- jobs ---------------------------------------------------------------------------------------------

def test_projection_job_reports_progress_and_stores_the_set(pair, thread_pool):
    pa, _ = pair
    assert pre.projection_job_status(pa, FAST, pool=thread_pool).state == "missing"
    st = pre.start_projection(pa, FAST, methods=("tsne", "pca"), pool=thread_pool, owner="s1")
    assert st.state in ("queued", "running", "done") and "hf.test.npz (64 clips)" in st.description
    seen = set()
    deadline = time.time() + 60
    while thread_pool.status(st.key).active and time.time() < deadline:
        seen.add(thread_pool.status(st.key).message.split(":")[0])
        time.sleep(0.01)
    done = thread_pool.status(st.key)
    assert done.state == "done", done.error
    assert done.result["methods"] == ["tsne", "pca"] and Path(done.result["path"]).is_file()
    again = pre.start_projection(pa, FAST, methods=("tsne",), pool=JobPool(1, "thread"))
    assert again.state == "done" and again.cached  # stored: no job at all


def test_cancelling_a_projection_job_stops_t_sne_and_stores_nothing(tmp_path, thread_pool):
    a, _ = synthetic_pair(1500, 32, 10, seed=2)
    path = tmp_path / "big.test.npz"
    a.save(path)
    st = pre.start_projection(path, ProjectionSpec(), methods=("tsne",), pool=thread_pool)
    deadline = time.time() + 120
    while not thread_pool.status(st.key).message.startswith("t-SNE") and time.time() < deadline:
        time.sleep(0.02)
    assert thread_pool.cancel(st.key)
    assert thread_pool.wait(st.key, 60).state == "cancelled"
    assert store.load_set(path, ProjectionSpec()) is None
    assert not [f for f in tmp_path.iterdir() if ".proj-" in f.name]


# --- placing new clips --------------------------------------------------------------------------------

def test_tsne_placement_matches_opentsne_transform():
    from openTSNE import TSNEEmbedding, affinity

    a, _ = synthetic_pair(330, 32, 6, seed=1)
    z, *_ = emb.reduce_pca(a.features, 10)
    ref, new = z[:300], z[300:]
    idx, dist = emb.exact_knn(ref, 90)
    y, _ = emb.tsne_map(ref, idx, dist, ProjectionSpec(tsne_early_exaggeration_iter=100, tsne_iter=200))
    aff = affinity.PerplexityBasedNN(ref.astype(np.float64), perplexity=30, method="exact", random_state=0)
    reference = TSNEEmbedding(y.astype(np.float64), aff, negative_gradient_method="bh", random_state=0)
    theirs = np.asarray(reference.transform(new.astype(np.float64))) + (y.max(0) + y.min(0)) / 2  # it centres
    ours = pl.place_tsne(ref, y, new)
    assert np.linalg.norm(ours - theirs, axis=1).max() < 0.01 * np.ptp(y, axis=0).max()


def test_grid_repulsion_of_large_maps_matches_the_exact_sum():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 40, (60, 2))
    ref_map = centres[rng.integers(0, 60, 6000)] + rng.normal(0, 2.5, (6000, 2))
    grid, exact = pl._Repulsion(ref_map), pl._Repulsion(ref_map, exact_below=10**9)
    assert not grid.exact and exact.exact
    for y in (ref_map[5] + 0.3, np.zeros(2), ref_map[100] + 5.0, np.array([500.0, -500.0])):
        (zg, fg), (ze, fe) = grid.sums(y), exact.sums(y)
        assert abs(zg - ze) < 1e-2 * ze and np.linalg.norm(fg - fe) < 1e-2 * np.linalg.norm(fe)
    reduced = rng.normal(size=(6000, 8))
    new = reduced[7:8] + 0.01
    fast = pl.place_tsne(reduced, ref_map, new)
    pl_exact = pl._Repulsion
    try:
        pl._Repulsion = lambda m: pl_exact(m, exact_below=10**9)
        slow = pl.place_tsne(reduced, ref_map, new)
    finally:
        pl._Repulsion = pl_exact
    assert np.linalg.norm(fast - slow) < 1e-3 * np.ptp(ref_map, axis=0).max()


def test_place_finds_the_clip_itself_and_its_neighbours(pair):
    pa, pb = pair
    a, b = EvalBundle.load(pa), EvalBundle.load(pb)
    ps = pre.project_bundle(pa, FAST, methods=("tsne", "pca")).set
    t0 = time.perf_counter()
    placed = pl.place(ps, a.features[5], k=4)
    assert time.perf_counter() - t0 < 30  # (the benchmark measures it; this only guards against a hang)
    assert placed.neighbour_rows.shape == (1, 4) and placed.neighbour_rows[0, 0] == 5
    assert placed.neighbour_distances[0, 0] == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(placed.coords["pca"][0], ps.coords["pca"][5], atol=1e-4)
    # A clip identical to a bundle clip lands in that clip's class cluster.
    c = int(a.labels[5])
    centres = ps.centroids["tsne"]
    assert np.linalg.norm(centres - placed.coords["tsne"][0], axis=1).argmin() == c
    table = pl.neighbour_table(placed, a, 0, {"B": b})
    assert [r["rank"] for r in table] == [1, 2, 3, 4] and table[0]["clip_id"] == a.clip_ids[5]
    assert table[0]["label_name"] == a.class_names[c] and table[0]["pred_B_name"] == b.class_names[b.predictions[5]]
    assert all(r["label"] == c for r in table)  # 4 clips per class, tight clusters
    several = pl.place(ps, a.features[:3], k=2)
    assert several.coords["tsne"].shape == (3, 2) and several.neighbour_rows[:, 0].tolist() == [0, 1, 2]
    with pytest.raises(BundleError, match="12"):
        pl.place(ps, np.zeros(7))
    with pytest.raises(BundleError, match="NaN"):
        pl.place(ps, np.full(12, np.nan))


# --- hfnet project and the per-method API -------------------------------------------------------------

def test_hfnet_project_caches_whole_bundles_and_both_pair_directions(pair, capsys):
    from hfnet_core.cli import main as hfnet

    pa, pb = pair
    assert hfnet(["project", str(pa), str(pb), "--methods", "tsne", "pca", "--top-k", "3"]) == 0
    a, b = EvalBundle.load(pa), EvalBundle.load(pb)
    _, ab = improved_clip_ids(a, b, 3)
    _, ba = improved_clip_ids(b, a, 3)
    assert ab and ba
    for path in (pa, pb):
        assert emb.cached_projection(path, "tsne").shape == (64, 2)
        assert emb.cached_projection(path, "tsne", clip_ids=ab).shape == (len(ab), 2)
        assert emb.cached_projection(path, "pca", clip_ids=ba).shape == (len(ba), 2)
    assert emb.cached_projection(pa, "umap") is None
    out = capsys.readouterr().out
    assert "silhouette" in out and "exact" in out
    assert hfnet(["project", str(pa), str(pb), "--methods", "tsne", "--top-k", "3"]) == 0
    assert capsys.readouterr().out.count(": cached") == 6
    assert hfnet(["project", str(pa.parent / "missing.npz")]) == 2
    assert "no such eval bundle" in capsys.readouterr().err
    stale = pa.parent / "hf.test.proj-tsne-0123456789abcdef.npy"  # a format-1 file
    np.save(stale, np.zeros((64, 2)))
    other = pa.parent / "other.test.proj-0123456789abcdef.npz"
    other.write_bytes(b"x")
    assert pre.main([str(pa), str(pb), "--methods", "tsne", "--top-k", "3", "--prune"]) == 0
    assert not stale.exists() and other.exists()  # only files of the bundles given are pruned
    assert len(list(pa.parent.glob("hf.test.proj-*"))) == 3


def test_the_precompute_module_runs_as_the_makefile_calls_it(pair):
    """``python -m hfnet_core.analysis.precompute`` (the Makefile's demo targets) does the work and exits
    non-zero on a missing bundle, instead of importing and silently doing nothing."""
    import subprocess
    import sys

    pa, _ = pair
    cmd = [sys.executable, "-m", "hfnet_core.analysis.precompute"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd + [str(pa), "--methods", "pca", "--no-pairs"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0 and "silhouette" in done.stdout, done.stderr
    assert emb.cached_projection(pa, "pca") is not None
    missing = subprocess.run(cmd + [str(pa.parent / "missing.npz")], capture_output=True, text=True, env=env,
                             timeout=300)
    assert missing.returncode == 2 and "no such eval bundle" in missing.stderr


def test_per_method_api_of_existing_pages(pair, thread_pool, monkeypatch):
    pa, _ = pair
    fast = {"n_iter": 150, "early_exaggeration_iter": 100}
    assert emb.projection_status(pa, "tsne", params=fast, pool=thread_pool).state == "missing"
    coords = emb.project(pa, "tsne", params=fast)
    assert coords.shape == (64, 2) and emb.projection_status(pa, "tsne", params=fast).state == "ready"
    np.testing.assert_array_equal(emb.cached_projection(pa, "tsne", params=fast), coords)
    fake = np.arange(128, dtype=np.float32).reshape(64, 2)
    emb.store_projection(pa, fake, "umap")
    np.testing.assert_array_equal(emb.cached_projection(pa, "umap"), fake)
    _forbid_compute(monkeypatch)
    np.testing.assert_array_equal(emb.project(pa, "umap"), fake)  # no UMAP run: read from the store
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        emb.store_projection(pa, np.zeros((64, 3)), "tsne")
    with pytest.raises(ValueError, match="unknown projection method"):
        emb.cache_path(pa, "mds")
    with pytest.raises(ValueError, match="unknown tsne parameters"):
        emb.cache_path(pa, "tsne", params={"n_neighbors": 3})
    monkeypatch.undo()
    st = emb.project_async(pa, "tsne", seed=3, params=fast)
    assert st.state in ("running", "ready")
    deadline = time.time() + 60
    while emb.projection_status(pa, "tsne", 3, fast).state == "running" and time.time() < deadline:
        time.sleep(0.05)
    assert emb.projection_status(pa, "tsne", 3, fast).state == "ready"
    monkeypatch.setattr(emb, "compute_projection", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("nope")))
    emb.project_async(pa, "tsne", seed=4)
    deadline = time.time() + 60
    while emb.projection_status(pa, "tsne", seed=4).state == "running" and time.time() < deadline:
        time.sleep(0.05)
    failed = emb.projection_status(pa, "tsne", seed=4)
    assert failed.state == "failed" and "RuntimeError: nope" in failed.error
    assert emb.project_async(pa, "tsne", seed=4).state == "failed"  # not retried unless asked
    assert emb.project_async(pa, "tsne", seed=4, retry=True).state == "running"


@pytest.mark.slow
def test_umap_in_a_child_process_beside_tsne(pair):
    """UMAP runs in a spawned process while t-SNE runs here (its JIT: 15-30 s in that process)."""
    pa, _ = pair
    a = EvalBundle.load(pa)
    ps = emb.compute_set(a.features, a.labels, 16, FAST, methods=("tsne", "umap"), parallel=True)
    coords = ps.coords["umap"]
    assert coords.shape == (64, 2) and np.isfinite(coords).all()
    info = ps.info["methods"]["umap"]
    assert info["a"] > 0 and info["b"] > 0 and info["n_neighbors"] == 15
    y = a.labels
    spread = np.mean([np.linalg.norm(coords[y == c] - ps.centroids["umap"][c], axis=1).mean() for c in range(16)])
    assert spread < 0.5 * np.linalg.norm(ps.centroids["umap"][:, None] - ps.centroids["umap"][None], axis=-1).mean()
    # the worker compiled umap on a warm-up set first: that leaves no trace in the map
    serial = emb.compute_set(a.features, a.labels, 16, FAST, methods=("tsne", "umap"), parallel=False)
    np.testing.assert_array_equal(coords, serial.coords["umap"])
    np.testing.assert_array_equal(ps.coords["tsne"], serial.coords["tsne"])


def _child_pids() -> set[int]:
    own = str(os.getpid())
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == own:
                        out.add(int(d))
            except OSError:
                continue
    return out


@pytest.mark.slow
def test_cancelling_before_the_maps_stops_the_umap_worker_started_first(pair):
    """The UMAP worker starts before PCA (to compile umap meanwhile); a cancel during the neighbour
    search must stop it too, leaving no process behind."""
    from hfnet_core.analysis.jobs import JobCancelled

    pa, _ = pair
    a = EvalBundle.load(pa)
    before = _child_pids()
    calls = [0]

    def cancel() -> bool:
        calls[0] += 1
        return calls[0] > 2  # PCA passes, the neighbour search is stopped

    with pytest.raises(JobCancelled):
        emb.compute_set(a.features, a.labels, 16, FAST, methods=("tsne", "umap"), parallel=True, cancel=cancel)
    deadline = time.time() + 15
    while _child_pids() - before and time.time() < deadline:
        time.sleep(0.2)
    assert not (_child_pids() - before)


@pytest.mark.slow
def test_umap_placement_agrees_with_umap_learn_transform():
    import warnings

    a, _ = synthetic_pair(330, 32, 6, seed=1)
    z, *_ = emb.reduce_pca(a.features, 10)
    ref, new = z[:300], z[300:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        fitted = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0).fit(ref)
        theirs = fitted.transform(new)
    ours = pl.place_umap(ref, fitted.embedding_, new, fitted._a, fitted._b)
    y_ref, labels = fitted.embedding_, a.labels[:300]

    def nearest_label(p):
        return labels[np.argmin(((y_ref[None] - p[:, None]) ** 2).sum(-1), axis=1)]

    assert (nearest_label(ours) == nearest_label(theirs)).mean() >= 0.9  # the same cluster
    assert np.median(np.linalg.norm(ours - theirs, axis=1)) < 0.05 * np.ptp(y_ref, axis=0).max()
