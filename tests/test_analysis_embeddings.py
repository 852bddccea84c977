"""Projections and their disk cache; the precompute CLI. Only one test runs UMAP (its numba JIT is slow)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from _analysis_fixtures import designed_pair
from hfnet_core.analysis import embeddings as emb
from hfnet_core.analysis.comparison import improved_clip_ids
from hfnet_core.analysis.precompute import main as precompute_main
from hfnet_core.eval_bundle import EvalBundle


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


def _forbid_compute(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the projection should have come from the cache")

    monkeypatch.setattr(emb, "compute_projection", boom)


def test_tsne_is_computed_once_then_read_from_the_cache(pair, monkeypatch):
    pa, _ = pair
    assert emb.cached_projection(pa, "tsne") is None
    assert emb.projection_status(pa, "tsne").state == "missing"
    coords = emb.project(pa, "tsne")
    assert coords.shape == (64, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    files = sorted(p.name for p in pa.parent.iterdir())
    cache = [f for f in files if ".proj-" in f]
    assert len(cache) == 1 and cache[0].startswith("hf.test.proj-tsne-") and cache[0].endswith(".npy")
    assert not [f for f in files if f.endswith(".tmp")]  # atomic write left nothing behind
    _forbid_compute(monkeypatch)
    np.testing.assert_array_equal(emb.project(pa, "tsne"), coords)
    assert emb.projection_status(pa, "tsne").state == "ready"


def test_well_separated_classes_stay_apart_in_the_tsne(pair):
    pa, _ = pair
    bundle = EvalBundle.load(pa)
    coords = emb.project(pa, "tsne")
    y = bundle.labels
    centres = np.stack([coords[y == c].mean(axis=0) for c in range(16)])
    within = np.mean([np.linalg.norm(coords[y == c] - centres[c], axis=1).mean() for c in range(16)])
    between = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(16, 1)].mean()
    assert within < 0.25 * between
    assert emb.class_separation(bundle.features, y) > 0.5


def test_cache_key_changes_with_bundle_method_params_seed_and_subset(pair, tmp_path):
    pa, pb = pair
    base = emb.cache_path(pa, "tsne")
    assert base.parent == pa.parent.resolve()
    others = {
        emb.cache_path(pb, "tsne"),
        emb.cache_path(pa, "umap"),
        emb.cache_path(pa, "tsne", seed=1),
        emb.cache_path(pa, "tsne", params={"perplexity": 5.0}),
        emb.cache_path(pa, "tsne", clip_ids=["synth/test/000001"]),
    }
    assert base not in others and len(others) == 5
    # Same content under another name: same key; changed content: another key.
    copy = tmp_path / "copy.npz"
    copy.write_bytes(pa.read_bytes())
    assert emb.cache_path(copy, "tsne").name.split("-")[-1] == base.name.split("-")[-1]
    a = EvalBundle.load(pa)
    a.features[0, 0] += 1.0
    a.save(copy)
    assert emb.cache_path(copy, "tsne").name.split("-")[-1] != base.name.split("-")[-1]
    with pytest.raises(ValueError, match="unknown projection method"):
        emb.cache_path(pa, "pca")
    with pytest.raises(ValueError, match="unknown tsne parameters"):
        emb.cache_path(pa, "tsne", params={"n_neighbors": 3})


def test_read_only_bundle_folder_falls_back_to_the_user_cache(pair, monkeypatch, tmp_path):
    pa, _ = pair
    real_access = emb.os.access
    monkeypatch.setattr(emb.os, "access",
                        lambda p, mode: False if Path(p) == pa.parent.resolve() else real_access(p, mode))
    coords = np.arange(128, dtype=np.float32).reshape(64, 2)
    written = emb.store_projection(pa, coords, "umap")
    assert written.parent == tmp_path / "user-cache" / "projections"
    assert not [f for f in pa.parent.iterdir() if ".proj-" in f.name]
    np.testing.assert_array_equal(emb.cached_projection(pa, "umap"), coords)
    _forbid_compute(monkeypatch)
    np.testing.assert_array_equal(emb.project(pa, "umap"), coords)  # no UMAP run: read from the fallback


def test_write_error_beside_the_bundle_falls_back(pair, monkeypatch, tmp_path):
    pa, _ = pair
    real_write = emb._write

    def failing(target, coords):
        if target.parent == pa.parent.resolve():
            raise PermissionError("read-only file system")
        return real_write(target, coords)

    monkeypatch.setattr(emb, "_write", failing)
    written = emb.store_projection(pa, np.zeros((64, 2)), "tsne")
    assert written.parent == tmp_path / "user-cache" / "projections"


def test_corrupt_or_wrong_shape_cache_files_are_ignored(pair, monkeypatch):
    pa, _ = pair
    path = emb.cache_path(pa, "tsne", for_writing=True)
    path.write_bytes(b"not a numpy file")
    assert emb.cached_projection(pa, "tsne") is None
    np.save(path, np.zeros((64, 3)))
    assert emb.cached_projection(pa, "tsne") is None
    np.save(path, np.full((64, 2), np.nan))
    assert emb.cached_projection(pa, "tsne") is None
    np.save(path, np.zeros((10, 2)))  # wrong number of rows: project() recomputes
    monkeypatch.setattr(emb, "compute_projection", lambda f, *a, **k: np.zeros((len(f), 2), np.float32))
    assert emb.project(pa, "tsne").shape == (64, 2)
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        emb.store_projection(pa, np.zeros((64, 3)), "tsne")


def test_subset_projection_covers_exactly_the_subset_rows(pair):
    pa, pb = pair
    a, b = EvalBundle.load(pa), EvalBundle.load(pb)
    _, ids = improved_clip_ids(a, b, 3)
    rows = emb.subset_rows(a, ids)
    assert [a.clip_ids[i] for i in rows] == ids
    fast = {"max_iter": 250}
    coords = emb.project(pa, "tsne", params=fast, clip_ids=ids)
    assert coords.shape == (len(ids), 2)
    assert emb.cached_projection(pa, "tsne", params=fast) is None  # the whole set is another entry
    assert emb.cached_projection(pa, "tsne", params=fast, clip_ids=list(reversed(ids))) is not None


def test_background_job_reports_running_then_ready_and_failures(pair, monkeypatch):
    pa, _ = pair
    status = emb.project_async(pa, "tsne", seed=3, params={"max_iter": 250})
    assert status.state in ("running", "ready")
    deadline = time.time() + 120
    fast = {"max_iter": 250}
    while emb.projection_status(pa, "tsne", 3, fast).state == "running" and time.time() < deadline:
        time.sleep(0.1)
    done = emb.projection_status(pa, "tsne", 3, fast)
    assert done.state == "ready" and done.coords.shape == (64, 2)
    assert emb.project_async(pa, "tsne", 3, fast).state == "ready"

    monkeypatch.setattr(emb, "compute_projection", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("nope")))
    emb.project_async(pa, "tsne", seed=4)
    deadline = time.time() + 60
    while emb.projection_status(pa, "tsne", seed=4).state == "running" and time.time() < deadline:
        time.sleep(0.05)
    failed = emb.projection_status(pa, "tsne", seed=4)
    assert failed.state == "failed" and "RuntimeError: nope" in failed.error
    assert emb.project_async(pa, "tsne", seed=4).state == "failed"  # not retried unless asked
    assert emb.project_async(pa, "tsne", seed=4, retry=True).state == "running"


def test_tiny_inputs_do_not_crash():
    assert emb.compute_projection(np.zeros((0, 5))).shape == (0, 2)
    assert emb.compute_projection(np.ones((3, 5))).shape == (3, 2)
    assert emb.class_separation(np.ones((4, 2)), np.zeros(4, dtype=int)) is None


def test_precompute_cli_caches_whole_bundles_and_both_pair_directions(pair, capsys):
    pa, pb = pair
    assert precompute_main([str(pa), str(pb), "--methods", "tsne", "--top-k", "3"]) == 0
    a, b = EvalBundle.load(pa), EvalBundle.load(pb)
    _, ab = improved_clip_ids(a, b, 3)
    _, ba = improved_clip_ids(b, a, 3)
    assert ab and ba
    for path in (pa, pb):
        assert emb.cached_projection(path, "tsne").shape == (64, 2)
        assert emb.cached_projection(path, "tsne", clip_ids=ab).shape == (len(ab), 2)
        assert emb.cached_projection(path, "tsne", clip_ids=ba).shape == (len(ba), 2)
    assert emb.cached_projection(pa, "umap") is None
    capsys.readouterr()
    assert precompute_main([str(pa), str(pb), "--methods", "tsne", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "points in" not in out and out.count(": cached") == 6
    assert precompute_main([str(pa.parent / "missing.npz")]) == 2
    stale = pa.parent / "hf.test.proj-tsne-0123456789abcdef.npy"
    np.save(stale, np.zeros((64, 2)))
    other = pa.parent / "other.test.proj-tsne-0123456789abcdef.npy"
    np.save(other, np.zeros((64, 2)))
    assert precompute_main([str(pa), str(pb), "--methods", "tsne", "--top-k", "3", "--prune"]) == 0
    assert not stale.exists() and other.exists()  # only files of the bundles given are pruned
    assert len(list(pa.parent.glob("hf.test.proj-*.npy"))) == 3


@pytest.mark.slow
def test_umap_projection(pair):
    """The one UMAP run of the suite (numba JIT: 15-30 s here)."""
    pa, _ = pair
    coords = emb.project(pa, "umap")
    assert coords.shape == (64, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert emb.cached_projection(pa, "umap") is not None
    y = EvalBundle.load(pa).labels
    centres = np.stack([coords[y == c].mean(axis=0) for c in range(16)])
    spread = np.mean([np.linalg.norm(coords[y == c] - centres[c], axis=1).mean() for c in range(16)])
    assert spread < 0.5 * np.linalg.norm(centres[:, None] - centres[None], axis=-1).mean()
