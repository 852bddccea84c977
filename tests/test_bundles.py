"""Eval bundle files: the aligned uncompressed layout (memory-mapped, read-only), today's compressed npz
files, hostile files, and the process-wide shared bundle cache (one load for many sessions)."""

from __future__ import annotations

import json
import os
import threading
import zipfile

import numpy as np
import pytest

from hfnet_core.analysis.bundle_cache import BundleCache
from hfnet_core.analysis.synthetic_bundles import synthetic_pair
from hfnet_core.errors import BundleError
from hfnet_core.eval_bundle import EvalBundle, read_npz, write_aligned_npz


@pytest.fixture(scope="module")
def bundle() -> EvalBundle:
    a, _ = synthetic_pair(300, 24, 9, seed=4)
    a.clip_ids[7] = "ünïcode/clip 7"  # non-ASCII ids survive
    return a


def _same(a: EvalBundle, b: EvalBundle) -> None:
    assert a.clip_ids == b.clip_ids and a.paths == b.paths and a.class_names == b.class_names
    assert a.metadata == b.metadata
    for name in ("labels", "logits", "features"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype


def test_new_layout_is_memory_mapped_aligned_and_read_only(tmp_path, bundle):
    path = bundle.save(tmp_path / "m.test.npz")
    with zipfile.ZipFile(path) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert zf.testzip() is None
    mapped = EvalBundle.load(path, mmap=True)
    _same(mapped, bundle)
    assert mapped.read_only
    for arr in (mapped.features, mapped.logits, mapped.labels):
        assert not arr.flags.writeable and arr.flags.aligned and arr.ctypes.data % 64 == 0
        assert not arr.flags.owndata  # a view of the mapping, not a copy
    with pytest.raises(ValueError, match="read-only"):
        mapped.features[0, 0] = 1.0
    assert mapped.predictions is mapped.predictions  # computed once, shared
    np.testing.assert_array_equal(mapped.predictions, bundle.logits.argmax(1))
    assert mapped.row_of("ünïcode/clip 7") == 7 and mapped.row_of("nope") is None
    private = EvalBundle.load(path)  # the default: private, writable copies
    private.features[0, 0] += 1.0
    assert private.features.flags.writeable and mapped.features[0, 0] == bundle.features[0, 0]
    with np.load(path, allow_pickle=False) as z:  # still an ordinary npz for everyone else
        np.testing.assert_array_equal(z["features"], bundle.features)
        assert json.loads(str(z["metadata"])) == bundle.metadata and int(z["format"]) == 2


def test_todays_compressed_bundles_still_load_both_ways(tmp_path, bundle):
    old = tmp_path / "old.npz"
    with open(old, "wb") as f:  # exactly what format-1 EvalBundle.save wrote
        np.savez_compressed(f, clip_ids=np.array(bundle.clip_ids, dtype=np.str_),
                            paths=np.array(bundle.paths, dtype=np.str_), labels=bundle.labels,
                            logits=bundle.logits, features=bundle.features,
                            class_names=np.array(bundle.class_names, dtype=np.str_),
                            metadata=np.array(json.dumps(bundle.metadata)))
    _same(EvalBundle.load(old), bundle)
    mapped = EvalBundle.load(old, mmap=True)  # deflated members cannot be mapped: read, marked read-only
    _same(mapped, bundle)
    assert mapped.read_only
    compressed = bundle.save(tmp_path / "c.npz", compress=True)
    _same(EvalBundle.load(compressed, mmap=True), bundle)
    assert compressed.stat().st_size < (bundle.save(tmp_path / "u.npz")).stat().st_size


def test_empty_and_odd_arrays_round_trip(tmp_path):
    arrays = {"empty": np.zeros((0, 4), np.float32), "scalar": np.array(3.5), "text": np.array(["a", "bcd"]),
              "fortran": np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
              "bools": np.array([True, False, True]), "odd": np.arange(7, dtype=np.uint8)}
    write_aligned_npz(tmp_path / "x.npz", arrays)
    for mmap in (False, True):
        back = read_npz(tmp_path / "x.npz", mmap=mmap)
        for k, v in arrays.items():
            np.testing.assert_array_equal(back[k], v)
            assert back[k].dtype == v.dtype and back[k].shape == v.shape
    empty = EvalBundle([], [], np.zeros(0), np.zeros((0, 3)), np.zeros((0, 5)), ["a", "b", "c"])
    empty.save(tmp_path / "e.npz")
    assert EvalBundle.load(tmp_path / "e.npz", mmap=True).features.shape == (0, 5)


def test_bad_files_give_one_clear_bundle_error(tmp_path, bundle):
    with pytest.raises(BundleError, match="no such eval bundle"):
        EvalBundle.load(tmp_path / "missing.npz", mmap=True)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 definitely not a zip")
    for mmap in (False, True):
        with pytest.raises(BundleError, match="not a valid hfnet eval bundle"):
            EvalBundle.load(junk, mmap=mmap)
    path = bundle.save(tmp_path / "t.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BundleError):
        EvalBundle.load(truncated, mmap=True)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, clip_ids=np.array([object()], dtype=object))
    for mmap in (False, True):
        with pytest.raises(BundleError):
            EvalBundle.load(pickled, mmap=mmap)  # object arrays are never unpickled
    with pytest.raises(BundleError, match="no pickles"):
        write_aligned_npz(tmp_path / "o.npz", {"x": np.array([object()], dtype=object)})


def test_shared_cache_loads_once_for_many_sessions_and_follows_file_changes(tmp_path, bundle):
    path = bundle.save(tmp_path / "s.npz")
    cache = BundleCache(max_entries=2)
    got: list[EvalBundle] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.loads == 1 and all(g is got[0] for g in got) and got[0].read_only
    assert cache.get(str(path.parent / "." / path.name)) is got[0]  # same file, other spelling
    calls = []
    value = cache.derived(path, "accuracy", lambda b: calls.append(1) or b.accuracy)
    assert cache.derived(path, "accuracy", lambda b: calls.append(1) or 0.0) == value and len(calls) == 1
    # hfnet eval rewrites the bundle (atomic rename): the next call loads the new version.
    changed = EvalBundle.load(path)
    changed.metadata = {**changed.metadata, "note": "re-evaluated"}
    changed.save(path)
    fresh = cache.get(path)
    assert fresh is not got[0] and fresh.metadata["note"] == "re-evaluated" and cache.loads == 2
    assert len(cache) == 1  # the stale version was dropped
    assert got[0].features[3, 2] == bundle.features[3, 2]  # an old reader's mapping stays valid
    for i in range(3):  # bounded: least recently used first out
        cache.get(bundle.save(tmp_path / f"other{i}.npz"))
    assert len(cache) == 2
    with pytest.raises(BundleError, match="no such eval bundle"):
        cache.get(tmp_path / "missing.npz")


def test_mapped_bundle_costs_no_private_memory(tmp_path):
    """Mapping a 40 MB bundle must not copy it: the process's anonymous memory stays flat."""
    a, _ = synthetic_pair(10_000, 1024, 50, seed=0)
    path = a.save(tmp_path / "big.npz")
    del a

    def anon_kb() -> int:
        with open(f"/proc/{os.getpid()}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))

    before = anon_kb()
    mapped = EvalBundle.load(path, mmap=True)
    float(mapped.features.sum())  # touch every page
    grown_mb = (anon_kb() - before) / 1024
    assert grown_mb < 10, f"mapping grew private memory by {grown_mb:.0f} MB"
