"""Property-based fuzzing of eval bundles, the other file users hand the app: byte mutations of real small
bundles (format 2, stored and aligned; format 1, deflated), .npy headers that declare more data than their
member holds, and zip directories that lie. Every case must load or end in one clear ``BundleError`` -
never another exception, never an allocation the file cannot back - with or without ``mmap``.
Same budget and bounds as the checkpoint fuzzing (``HFNET_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import io
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfnet_core.errors import BundleError
from hfnet_core.eval_bundle import EvalBundle

from test_fuzz_checkpoints import _central_directory_offsets, _mutate, fuzz_settings, outcome


def _bundle() -> EvalBundle:
    rng = np.random.default_rng(0)
    return EvalBundle(clip_ids=["a", "b", "c"], paths=["a.mp4", "b.mp4", "c.mp4"], labels=np.array([0, 1, -1]),
                      logits=rng.standard_normal((3, 4)).astype(np.float32),
                      features=rng.standard_normal((3, 8)).astype(np.float32),
                      class_names=["w", "x", "y", "z"], metadata={"split": "val"})


def _bundle_bytes(compressed: bool) -> bytes:
    b = _bundle()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.npz"
        b.save(path)
        if not compressed:
            return path.read_bytes()
        with np.load(path, allow_pickle=False) as z:  # the same arrays the way format 1 stored them
            arrays = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


STORED, DEFLATED = _bundle_bytes(False), _bundle_bytes(True)
mutations = st.lists(st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, len(STORED) - 1), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, len(STORED) - 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, len(STORED)), st.integers(0, 255)),
), min_size=1, max_size=4)


def _load(data: bytes, mmap: bool) -> EvalBundle | BundleError:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.npz"
        path.write_bytes(data)
        result = outcome(EvalBundle.load, path, mmap=mmap)
        if isinstance(result, EvalBundle):  # a mutation the format cannot see: still one row per clip
            assert len(result.clip_ids) == len(result.logits) == len(result.features) == len(result.labels)
            result.features.sum(), result.logits.sum()  # mapped pages are readable while the file exists
        else:
            assert isinstance(result, BundleError) and str(path) in str(result)
    return result


@fuzz_settings(scale=3)
@given(st.booleans(), st.booleans(), mutations)
def test_mutated_bundles(compressed, mmap, muts):
    _load(_mutate(DEFLATED if compressed else STORED, muts), mmap)


def _npz_with_member(name: str, header: dict, payload: bytes, compression: int) -> bytes:
    buf = io.BytesIO()
    good = io.BytesIO()
    b = _bundle()
    np.savez(good, clip_ids=np.array(b.clip_ids), paths=np.array(b.paths), labels=b.labels, logits=b.logits,
             features=b.features, class_names=np.array(b.class_names), metadata=np.array("{}"))
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(buf, "w", compression=compression) as dst:
        for info in src.infolist():
            if info.filename != f"{name}.npy":
                dst.writestr(info.filename, src.read(info))
        raw = io.BytesIO()
        np.lib.format.write_array_header_1_0(raw, header)
        dst.writestr(f"{name}.npy", raw.getvalue() + payload)
    return buf.getvalue()


@fuzz_settings(scale=2)
@given(st.sampled_from(["features", "logits", "labels", "clip_ids"]),
       st.sampled_from([(2**40,), (2**31, 2**31), (10**18, 10**18), (3, 2**40), (3, 9), (4, 8)]),
       st.sampled_from(["<f4", "<f8", "<i8", "<U1000000", "<U8", "|b1"]),
       st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]), st.booleans())
def test_headers_that_declare_more_than_the_member_holds(name, shape, descr, compression, mmap):
    data = _npz_with_member(name, {"descr": descr, "fortran_order": False, "shape": shape}, b"\0" * 8, compression)
    assert isinstance(_load(data, mmap), BundleError)  # 8 bytes can never back any of these shapes


@fuzz_settings(scale=2)
@given(st.booleans(), st.integers(0, 6), st.sampled_from(["compress_size", "file_size", "method", "offset"]),
       st.sampled_from([0, 1, 8, 12, 99, 2**20, 2**31 - 1, 2**32 - 1]), st.booleans())
def test_zip_directories_that_lie(compressed, entry, field, value, mmap):
    data = bytearray(DEFLATED if compressed else STORED)
    records = _central_directory_offsets(bytes(data))
    rec = records[entry % len(records)]
    offset = {"method": 10, "compress_size": 20, "file_size": 24, "offset": 42}[field]
    fmt = "<H" if field == "method" else "<I"
    struct.pack_into(fmt, data, rec + offset, value % (2**16 if field == "method" else 2**32))
    _load(bytes(data), mmap)


@pytest.mark.parametrize("field", [4, 16])  # the ZIP64 locator's "disk" and "number of disks"
@pytest.mark.parametrize("mmap", [False, True])
def test_a_zip64_locator_naming_several_disks(field, mmap):
    """``zipfile.is_zipfile`` itself raises on this one (found by the checkpoint fuzzer)."""
    data = bytearray(STORED)
    eocd = data.rfind(b"PK\x05\x06")
    locator = bytearray(struct.pack("<4sIQI", b"PK\x06\x07", 0, 0, 1))
    struct.pack_into("<I", locator, field, 3)
    data[eocd:eocd] = locator
    assert isinstance(_load(bytes(data), mmap), BundleError)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("mmap", [False, True])
def test_the_unmutated_bundles_load_exactly(compressed, mmap):
    """The control: the files the fuzz cases damage load exactly (so they test damage, not setup)."""
    b = _load(DEFLATED if compressed else STORED, mmap)
    assert isinstance(b, EvalBundle)
    np.testing.assert_array_equal(b.features, _bundle().features)
    np.testing.assert_array_equal(b.labels, _bundle().labels)
    assert b.class_names == _bundle().class_names and b.metadata == {"split": "val"}
    assert b.features.flags.writeable is not mmap


def test_a_highly_compressible_format_1_bundle_still_loads(tmp_path):
    """Sorted labels of 140k clips deflate ~500x, zero features ~1030x: real data, not a bomb (deflate's
    limit is ~1032x)."""
    m, k = 140_000, 20
    labels = np.repeat(np.arange(k), m // k)
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}" for i in range(m)]
    path = tmp_path / "big.npz"
    np.savez_compressed(path, clip_ids=np.array(ids), paths=np.array([f"/data/ssv2/{i}.webm" for i in ids]),
                        labels=labels, logits=rng.standard_normal((m, k), np.float32),
                        features=np.zeros((m, 2), np.float32),  # zeros: deflate's largest ratio, ~1030x
                        class_names=np.array([f"c{i}" for i in range(k)]), metadata=np.array("{}"))
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("labels.npy")
        assert info.file_size > 2**20 and info.file_size > 100 * info.compress_size
    for mmap in (False, True):
        b = EvalBundle.load(path, mmap=mmap)
        np.testing.assert_array_equal(b.labels, labels)


def _overlapping(copies: int) -> bytes:
    """STORED with its clip_ids member listed ``copies`` more times under other names (the directory
    entries all point at the one member: reading each would cost its size again)."""
    data = bytearray(STORED)
    eocd = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, eocd + 12)
    records = _central_directory_offsets(bytes(data))
    rec = next(r for r in records if data[r + 46:r + 46 + struct.unpack_from("<H", data, r + 28)[0]] == b"clip_ids.npy")
    n_len, x_len, c_len = struct.unpack_from("<HHH", data, rec + 28)
    original = bytes(data[rec:rec + 46 + n_len + x_len + c_len])
    extra = b""
    for i in range(copies):
        name = f"k{i:07d}.npy".encode()
        assert len(name) == n_len
        extra += original[:46] + name + original[46 + n_len:]
    total = struct.unpack_from("<H", data, eocd + 10)[0] + copies
    tail = bytearray(data[eocd:])
    struct.pack_into("<HHI", tail, 8, total, total, cd_size + len(extra))
    return bytes(data[:cd_offset + cd_size]) + extra + bytes(tail)


@pytest.mark.parametrize("mmap", [False, True])
def test_directory_entries_that_share_one_member_are_refused(mmap):
    assert isinstance(_load(_overlapping(40), mmap), BundleError)


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("descr", ["<U0", "|S0", "|V0"])
def test_zero_size_elements_cannot_declare_a_billion_of_them(descr, mmap):
    data = _npz_with_member("clip_ids", {"descr": descr, "fortran_order": False, "shape": (10**9,)}, b"",
                            zipfile.ZIP_STORED)
    assert isinstance(_load(data, mmap), BundleError)


@pytest.mark.parametrize("name,descr", [("features", "<f2"), ("logits", "|u1"), ("labels", "<f4"),
                                        ("clip_ids", "<f4"), ("labels", "<c16")])
def test_members_of_a_type_no_bundle_holds_are_refused(name, descr):
    b = _bundle()
    arr = {"features": b.features, "logits": b.logits, "labels": b.labels, "clip_ids": np.zeros(3)}[name]
    raw = np.ascontiguousarray(arr).astype(np.dtype(descr)).tobytes()
    data = _npz_with_member(name, {"descr": descr, "fortran_order": False, "shape": arr.shape}, raw,
                            zipfile.ZIP_STORED)
    result = _load(data, False)
    assert isinstance(result, BundleError) and name in str(result)
