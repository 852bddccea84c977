"""Hostile checkpoint files made for the purpose, each small on disk and built without allocating what it
claims (the tests and ``benchmarks/bench_hostile_files.py`` share them).

* ``native_checkpoint`` - a real hfnet checkpoint of a tiny model (the base most files are mutations of);
* ``edit_hfnet_metadata`` - the same tensors under edited JSON metadata (no tensor is re-read);
* ``torch_zip`` - a torch.save zip written by hand, so a tensor can declare any size and a record can be
  deflated (a zip bomb);
* ``tsn_pth_with_expanded_classifier`` - a TSN-format .pth whose classifier is a stride-0 view;
* ``legacy_pickle_with_huge_storage`` - a pre-1.6 (non-zip) torch file declaring an 8 GB storage.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.model import build_model

CLASSES = ["push", "pull", "spin"]


def native_checkpoint(path: Path, model_name: str = "tsn_bninception_demo", **overrides: Any) -> Path:
    """A real hfnet checkpoint (width 0.25 BN-Inception TSN by default: 2.7 MB)."""
    overrides = {"num_classes": 3, "num_segments": 3, **overrides}
    torch.manual_seed(0)
    model = build_model(model_name, **overrides)
    names = CLASSES if overrides["num_classes"] == 3 else [f"c{i}" for i in range(overrides["num_classes"])]
    return save_checkpoint(path, model, names)


def split_safetensors(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header JSON, data section) of safetensors bytes."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def join_safetensors(header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


def edit_hfnet_metadata(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Copy ``src`` with ``edit(meta)`` applied to its hfnet metadata; the tensors are copied as bytes."""
    header, body = split_safetensors(src.read_bytes())
    meta = json.loads(header["__metadata__"]["hfnet"])
    edit(meta)
    header["__metadata__"]["hfnet"] = json.dumps(meta)
    dst.write_bytes(join_safetensors(header, body))
    return dst


def set_config(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        meta["model_config"].update(fields)
    return edit


# --- torch.save zip files written by hand ---------------------------------------------------------------


class _StorageRef:
    """Pickled as torch's persistent id of a storage: ('storage', <storage class>, key, 'cpu', numel)."""

    def __init__(self, key: str, storage_cls: Any, numel: int) -> None:
        self.key, self.storage_cls, self.numel = key, storage_cls, numel


class _TensorRef:
    """Pickled as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

    def __init__(self, storage: _StorageRef, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.size, self.stride = storage, size, stride

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (self.storage, 0, self.size, self.stride, False, OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _StorageRef):
            return ("storage", obj.storage_cls, obj.key, "cpu", obj.numel)
        return None


def tensor_ref(key: str, size: tuple[int, ...], stride: tuple[int, ...] | None = None, numel: int | None = None,
               storage_cls: Any = torch.FloatStorage) -> _TensorRef:
    """A tensor in a hand-written zip: storage ``key`` of ``numel`` elements viewed as ``size``/``stride``."""
    if stride is None:
        stride = tuple(int(torch.tensor(size[i + 1:]).prod()) if i + 1 < len(size) else 1 for i in range(len(size)))
    if numel is None:
        numel = 1 + sum((s - 1) * st for s, st in zip(size, stride))
    return _TensorRef(_StorageRef(key, storage_cls, numel), size, stride)


def _zeros_deflated(n: int, block: int = 1 << 20) -> tuple[bytes, int]:
    """(raw deflate stream, crc32) of ``n`` zero bytes, made in milliseconds: after a full flush the
    compressor restarts, so every block of zeros compresses to the same bytes and can be repeated."""
    full, rest = divmod(n, block)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.compress(bytes(rest)) + c.flush(zlib.Z_FINISH)
    crc, zeros = 0, bytes(block)
    for _ in range(full):
        crc = zlib.crc32(zeros, crc)
    return piece * full + tail, zlib.crc32(bytes(rest), crc)


def _zip(path: Path, entries: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip of (name, stored bytes, method, crc, uncompressed size) entries (no zip64: sizes < 4 GiB)."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size in entries:
        raw = name.encode()
        fields = struct.pack("<HHHHHIII", 20, 0, method, 0, 0x21, crc, len(data), size)
        central += struct.pack("<IH", 0x02014B50, 20) + fields + struct.pack("<HHHHHII", len(raw), 0, 0, 0, 0, 0,
                                                                              len(out)) + raw
        out += struct.pack("<I", 0x04034B50) + fields + struct.pack("<HH", len(raw), 0) + raw + data
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + eocd))
    return path


def torch_zip(path: Path, obj: Any, records: dict[str, bytes | int], deflate: bool = False) -> Path:
    """A torch.save-style zip: ``obj`` pickled (with ``tensor_ref`` entries), plus ``data/<key>`` records given
    as bytes or as a number of zero bytes; ``deflate`` compresses the records (a zip bomb, built without
    ever holding the inflated bytes)."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)

    def stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
        return (name, data, 0, zlib.crc32(data), len(data))

    entries = [stored("archive/data.pkl", buf.getvalue()), stored("archive/byteorder", b"little")]
    for key, content in records.items():
        name = f"archive/data/{key}"
        if isinstance(content, int) and deflate:
            data, crc = _zeros_deflated(content)
            entries.append((name, data, 8, crc, content))
        else:
            data = bytes(content) if isinstance(content, int) else content
            if deflate:
                c = zlib.compressobj(9, zlib.DEFLATED, -15)
                entries.append((name, c.compress(data) + c.flush(), 8, zlib.crc32(data), len(data)))
            else:
                entries.append(stored(name, data))
    entries.append(stored("archive/version", b"3\n"))
    return _zip(path, entries)


def zip_bomb(path: Path, inflated_bytes: int = 4 * 2**30 - 4096) -> Path:
    """A TSN-like state dict whose one record inflates from a few MB to ``inflated_bytes`` (deflate)."""
    numel = inflated_bytes // 4
    obj = {"state_dict": {"module.new_fc.weight": tensor_ref("0", (numel,))}}
    return torch_zip(path, obj, {"0": inflated_bytes}, deflate=True)


def tsn_pth_with_expanded_classifier(path: Path, num_classes: int = 100_000, features: int = 256) -> Path:
    """A TSN-pytorch .pth of a width-0.25 BN-Inception (real backbone tensors, 1.5 MB) whose classifier
    ``new_fc.weight`` is a (num_classes, features) stride-0 view of one stored value."""
    torch.manual_seed(0)
    model = build_model("tsn_bninception_demo", num_classes=3, num_segments=3)
    sd = {f"module.base_model.{k[len('base_model.'):]}": v.clone() for k, v in model.state_dict().items()
          if k.startswith("base_model.") and not k.endswith("num_batches_tracked")}
    sd["module.new_fc.weight"] = torch.zeros(1, 1).expand(num_classes, features)
    sd["module.new_fc.bias"] = torch.zeros(1).expand(num_classes)
    torch.save({"state_dict": sd, "arch": "BNInception", "num_segments": 3}, path)
    return path


def legacy_pickle_with_huge_storage(path: Path, declared_numel: int = 0x7FFFFFFF) -> Path:
    """A legacy (non-zip) torch file whose storage declares ``declared_numel`` float32 elements (8 GB) while
    the file holds a few kilobytes."""
    buf = io.BytesIO()
    real = 123_456
    torch.save({"w": torch.zeros(real)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue().replace(b"J" + struct.pack("<i", real), b"J" + struct.pack("<i", declared_numel))
    path.write_bytes(data[:4096])
    return path
