"""Eval bundles: per-clip predictions and features of one checkpoint on one split - the app's input.

File layout
-----------
A bundle is one ``.npz`` file of plain arrays (no pickles: object arrays are refused) with the metadata
as a JSON string. Since format 2 the members are stored **uncompressed** and each array's data starts on
a 64-byte boundary inside the file, so ``EvalBundle.load(path, mmap=True)`` maps them straight from the
page cache (``np.memmap``, read-only) instead of copying them: every app session of one server, and
every server on one machine, share a single copy of a 25k-clip bundle (~120 MB of features + logits).
The file is still an ordinary ``.npz``: ``np.load(path)`` reads it anywhere.

Older bundles (``np.savez_compressed``, format 1) load as before; their deflated members cannot be
mapped and are read into memory (marked read-only when ``mmap=True``, so callers see the same contract).

Writes are atomic (temp file + rename), so a reader never maps a half-written file; a bundle file is
never modified in place (mapped readers keep the old inode when a new version replaces it).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .atomic import atomic_path
from .errors import BundleError

__all__ = ["BUNDLE_FORMAT", "BundleError", "EvalBundle", "read_npz", "write_aligned_npz"]

#: 1: compressed npz (before mmap); 2: uncompressed, 64-byte aligned members (mmap-able).
BUNDLE_FORMAT = 2
_ALIGN = 64
_PAD_EXTRA_ID = 0xD935  # the zip "extra field" id zipalign uses for padding; readers skip unknown ids


@dataclass
class EvalBundle:
    clip_ids: list[str]
    paths: list[str]
    labels: np.ndarray  # (M,) int64, -1 = unknown
    logits: np.ndarray  # (M, K) float32
    features: np.ndarray  # (M, D) float32 pooled pre-classifier features
    class_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)  # checkpoint sha256, dataset, split, ...
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = len(self.clip_ids)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.logits = np.asarray(self.logits, dtype=np.float32)
        self.features = np.asarray(self.features, dtype=np.float32)
        if not (len(self.paths) == m == len(self.labels) == len(self.logits) == len(self.features)):
            raise BundleError("clip_ids, paths, labels, logits and features must have one row per clip")
        if self.logits.ndim != 2 or self.logits.shape[1] != len(self.class_names):
            raise BundleError(f"logits {self.logits.shape} do not match {len(self.class_names)} classes")

    @property
    def read_only(self) -> bool:
        """True for a bundle from ``load(mmap=True)`` / the shared cache: its arrays cannot be written."""
        return not (self.labels.flags.writeable or self.logits.flags.writeable or self.features.flags.writeable)

    @property
    def predictions(self) -> np.ndarray:
        """(M,) argmax of the logits; computed once for a read-only bundle (shared between sessions)."""
        if not self.read_only:
            return self.logits.argmax(axis=1)
        if "predictions" not in self._memo:
            pred = self.logits.argmax(axis=1)
            pred.setflags(write=False)
            self._memo["predictions"] = pred
        return self._memo["predictions"]

    def row_of(self, clip_id: str) -> int | None:
        """Row of ``clip_id`` (its first occurrence), or None; O(1) after the first call."""
        index = self._memo.get("rows")
        if index is None or len(index) > len(self.clip_ids):
            index = {}
            for i, cid in enumerate(self.clip_ids):
                index.setdefault(cid, i)
            self._memo["rows"] = index
        return index.get(clip_id)

    @property
    def accuracy(self) -> float:
        known = self.labels >= 0
        return float((self.predictions[known] == self.labels[known]).mean()) if known.any() else float("nan")

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays a bundle file holds (what ``save`` writes)."""
        return {
            "clip_ids": _strs(self.clip_ids),
            "paths": _strs(self.paths),
            "labels": self.labels,
            "logits": self.logits,
            "features": self.features,
            "class_names": _strs(self.class_names),
            "metadata": np.array(json.dumps(self.metadata)),
            "format": np.array(BUNDLE_FORMAT, dtype=np.int64),
        }

    def save(self, path: str | os.PathLike[str], compress: bool = False) -> Path:
        """Write the bundle atomically: uncompressed and aligned (mmap-able, the default) or, with
        ``compress=True``, as a deflated npz (smaller, but every reader holds its own copy)."""
        arrays = self.arrays()
        with atomic_path(path) as tmp:
            if compress:
                arrays["format"] = np.array(1, dtype=np.int64)
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **arrays)
            else:
                write_aligned_npz(tmp, arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> "EvalBundle":
        """Read a bundle. ``mmap=False``: private, writable arrays. ``mmap=True``: read-only arrays
        mapped from the file where it is stored uncompressed (else read once and marked read-only)."""
        p = Path(path)
        try:
            z = read_npz(p, mmap=mmap)
            _check_kinds(p, z)
            bundle = cls(
                clip_ids=[str(s) for s in z["clip_ids"]],
                paths=[str(s) for s in z["paths"]],
                labels=z["labels"],
                logits=z["logits"],
                features=z["features"],
                class_names=[str(s) for s in z["class_names"]],
                metadata=json.loads(str(z["metadata"][()])),
            )
        except FileNotFoundError as e:
            raise BundleError(f"{p}: no such eval bundle.", path=p) from e
        except BundleError as e:
            if e.path is not None:
                raise
            raise BundleError(f"{p}: {e} Regenerate it with `hfnet eval`.", path=p) from e  # name the file
        except MemoryError as e:
            raise BundleError(f"{p}: reading it ran out of memory; is it an eval bundle at all?", path=p) from e
        except Exception as e:  # noqa: BLE001 - a damaged file breaks zipfile/numpy in many ways; all mean "invalid"
            raise BundleError(f"{p}: not a valid hfnet eval bundle ({type(e).__name__}: {str(e)[:200]}). "
                              "Regenerate it with `hfnet eval`.", path=p) from e
        if mmap:
            for arr in (bundle.labels, bundle.logits, bundle.features):
                arr.setflags(write=False)
        return bundle


#: The array kinds each member may have (numpy dtype.kind): anything else would be converted at a cost the
#: file does not show (a float16 or uint8 member becomes a 2-8x bigger copy), or means it is not a bundle.
_MEMBER_KINDS = {"clip_ids": "US", "paths": "US", "class_names": "US", "metadata": "US", "labels": "iu",
                 "logits": "fiu", "features": "fiu"}


def _check_kinds(path: Path, z: dict[str, np.ndarray]) -> None:
    for name, kinds in _MEMBER_KINDS.items():
        arr = z.get(name)
        if arr is None:
            raise BundleError(f"{path}: no {name!r} array; not an hfnet eval bundle. Regenerate it with "
                              "`hfnet eval`.", path=path)
        if arr.dtype.kind not in kinds or (kinds == "fiu" and arr.dtype.itemsize < 4):
            raise BundleError(f"{path}: its {name!r} array is of type {arr.dtype}, which an eval bundle never "
                              "holds. Regenerate it with `hfnet eval`.", path=path)


def _strs(xs: Any) -> np.ndarray:
    xs = list(xs)
    return np.array(xs, dtype=np.str_) if xs else np.zeros(0, dtype="<U1")


# --- aligned, uncompressed npz ----------------------------------------------------------------------

def _npy_header(arr: np.ndarray) -> bytes:
    """The .npy magic + header of ``arr`` exactly as ``np.save`` writes it (version 1.0, else 2.0)."""
    if arr.dtype.hasobject:
        raise BundleError("object arrays cannot be stored in a bundle (no pickles)")
    meta = np.lib.format.header_data_from_array_1_0(arr)
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, meta)
    except ValueError:  # header longer than 65535 bytes (a huge shape/dtype description)
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, meta)
    return buf.getvalue()


def write_aligned_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed .npz whose array data start on 64-byte boundaries.

    Each member's local zip header gets a padding extra field so that ``header + .npy header`` ends on
    the boundary; any zip reader (and ``np.load``) ignores it, and ``read_npz(mmap=True)`` maps the data
    with the dtype's natural alignment.
    """
    with open(path, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED,
                                                  allowZip64=True) as zf:
        for name, value in arrays.items():
            arr = np.asarray(value)
            arr = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # (keeps 0-d arrays 0-d)
            header = _npy_header(arr)
            member = f"{name}.npy"
            zinfo = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
            zinfo.compress_type = zipfile.ZIP_STORED
            size = len(header) + arr.nbytes
            zip64 = size * 1.05 > zipfile.ZIP64_LIMIT  # zipfile's own rule for a known size
            local = 30 + len(member.encode()) + (20 if zip64 else 0)
            start = raw.tell() + local + 4  # +4: our extra field's own id and length
            pad = (-(start + len(header))) % _ALIGN
            zinfo.extra = struct.pack("<HH", _PAD_EXTRA_ID, pad) + b"\0" * pad
            zinfo.file_size = size
            with zf.open(zinfo, "w", force_zip64=zip64) as out:
                out.write(header)
                if arr.size:
                    out.write(memoryview(arr.reshape(-1).view(np.uint8)))


#: Deflate cannot inflate more than ~1032x (its longest match per shortest code): a member declaring more is
#: not deflate data. Within that, memory follows the data actually inflated, never a declared size.
_DEFLATE_MAX_RATIO = 1032
#: All arrays of one file, decoded (a 25k-clip bundle at 1024 features: ~120 MB; 16x that at 2048 features
#: and 200k clips is still far below).
MAX_NPZ_BYTES = 8 * 2**30
#: Elements of one string array (clip ids, paths, class names), each becoming a Python str.
MAX_STRING_ELEMENTS = 5_000_000
_MAX_MEMBERS = 256  # a bundle has 7, a projection set ~20
_READ_CHUNK = 16 * 2**20


def read_npz(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, np.ndarray]:
    """Every array of an .npz (no pickles). With ``mmap``, stored numeric members are read-only
    ``np.memmap`` views; strings, scalars and deflated members are read into memory.

    The file may be hostile: members may not overlap (one stored member listed many times would multiply
    what it costs), each .npy header is checked against its member's size, that size against the file
    (stored) or deflate's largest ratio, and the total against ``MAX_NPZ_BYTES``; a member is read in
    chunks, so memory grows with the data actually there, not with what a header declares.
    """
    p = Path(path)
    out: dict[str, np.ndarray] = {}
    file_bytes = p.stat().st_size
    with open(p, "rb") as f, zipfile.ZipFile(f) as zf:
        infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
        _check_members(p, infos, file_bytes)
        budget = [MAX_NPZ_BYTES]
        for info in infos:
            name = info.filename[: -len(".npy")]
            if mmap and info.compress_type == zipfile.ZIP_STORED:
                out[name] = _map_member(p, f, info, budget)
            else:
                out[name] = _read_member(p, zf, info, budget)
    return out


def _check_members(path: Path, infos: list[zipfile.ZipInfo], file_bytes: int) -> None:
    if len(infos) > _MAX_MEMBERS:
        raise BundleError(f"{path}: {len(infos):,} arrays; an eval bundle has a handful", path=path)
    end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end:
            raise BundleError(f"{path}: member {info.filename} overlaps the one before it; the file is damaged "
                              "or built to multiply what it costs to read", path=path)
        end = info.header_offset + 30 + info.compress_size  # 30: the local header without name and extra
        if end > file_bytes or (info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size):
            raise BundleError(f"{path}: member {info.filename} declares {info.file_size:,} bytes, more than the "
                              f"file holds ({file_bytes:,}); the file is damaged", path=path)
        if info.file_size > max(2**20, _DEFLATE_MAX_RATIO * info.compress_size):
            raise BundleError(f"{path}: member {info.filename} would inflate from {info.compress_size:,} to "
                              f"{info.file_size:,} bytes, more than deflate can; the file is damaged", path=path)


def _read_header(path: Path, f: BinaryIO, info: zipfile.ZipInfo, available: int,
                 budget: list[int]) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, data bytes) of the .npy header at ``f``, checked: no objects, no more
    data (nor elements: each takes a byte at least) than the ``available`` bytes of the member, strings
    within ``MAX_STRING_ELEMENTS``, and the data within what is left of ``budget`` (then taken from it)."""
    start = f.tell()
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)  # the header only, never the data
    if dtype.hasobject:
        raise BundleError(f"{path}: member {info.filename} holds Python objects; refusing to load it", path=path)
    count = math.prod(int(n) for n in shape)  # exact: int64 products can wrap
    nbytes = count * dtype.itemsize
    header = f.tell() - start
    if min(shape, default=0) < 0 or header + max(nbytes, count) > available:
        raise BundleError(f"{path}: member {info.filename} is truncated (its header declares more data than "
                          "it holds)", path=path)
    if dtype.kind in "USV" and count > MAX_STRING_ELEMENTS:
        raise BundleError(f"{path}: member {info.filename} holds {count:,} strings, more than the "
                          f"{MAX_STRING_ELEMENTS:,} hfnet reads", path=path)
    if nbytes > budget[0]:
        raise BundleError(f"{path}: its arrays hold more than {MAX_NPZ_BYTES / 2**30:.0f} GiB once decoded; "
                          "an eval bundle is far smaller", path=path)
    budget[0] -= nbytes
    return shape, fortran, dtype, nbytes


def _read_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]) -> np.ndarray:
    """A private, writable copy of one member, read in chunks (memory follows the data really there)."""
    with zf.open(info) as member:
        shape, fortran, dtype, nbytes = _read_header(path, member, info, info.file_size, budget)
        buf = bytearray()
        while len(buf) < nbytes:
            chunk = member.read(min(_READ_CHUNK, nbytes - len(buf)))
            if not chunk:
                raise BundleError(f"{path}: member {info.filename} is truncated", path=path)
            buf += chunk
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _map_member(path: Path, f: BinaryIO, info: zipfile.ZipInfo, budget: list[int]) -> np.ndarray:
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise BundleError(f"{path}: member {info.filename} has a corrupt zip header", path=path)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    if f.read(name_len) != info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"):
        raise BundleError(f"{path}: member {info.filename}'s local header names another file; the file is "
                          "damaged", path=path)
    f.seek(info.header_offset + 30 + name_len + extra_len)
    shape, fortran, dtype, nbytes = _read_header(path, f, info, info.file_size, budget)
    offset = f.tell()
    count = math.prod(int(n) for n in shape)
    if count == 0 or dtype.kind not in "biuf" or len(shape) == 0:
        # Strings (read into lists anyway), scalars and empty arrays: a plain in-memory copy.
        f.seek(offset)
        arr = np.fromfile(f, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
        arr.setflags(write=False)
        return arr
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
