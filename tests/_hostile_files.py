"""Hostile checkpoint files made for the purpose, each small on disk and built without allocating what it
claims (the tests and ``benchmarks/bench_hostile_files.py`` share them).

* ``native_checkpoint`` - a real hfnet checkpoint of a tiny model (the base most files are mutations of);
* ``edit_hfnet_metadata`` - the same tensors under edited JSON metadata (no tensor is re-read);
* ``torch_zip`` - a torch.save zip written by hand, so a tensor can declare any size and a record can be
  deflated (a zip bomb);
* ``tsn_pth_with_expanded_classifier`` - a TSN-format .pth whose classifier is a stride-0 view;
* ``legacy_pickle_with_huge_storage`` - a pre-1.6 (non-zip) torch file declaring an 8 GB storage;
* ``tmpfs`` - a tiny file system to fill (disk-full tests), skipped where mounting is not permitted.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.model import build_model

CLASSES = ["push", "pull", "spin"]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` as a tmpfs of ``size`` (e.g. "512k") for the block; pytest-skips where mount is refused."""
    import subprocess

    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


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


# --- the corpus of issue 10, and what refusing each costs -------------------------------------------------------

def build_corpus(folder: Path) -> dict[str, tuple[Path, str]]:
    """Every hostile checkpoint of issue 10 (each under 10 MB) -> (path, a phrase its refusal must contain),
    plus ``valid`` (a real checkpoint that must load)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = native_checkpoint(folder / "valid.safetensors")
    corpus: dict[str, tuple[Path, str]] = {"valid": (base, "")}

    def meta(name: str, edit: Callable[[dict[str, Any]], None], phrase: str) -> None:
        corpus[name] = (edit_hfnet_metadata(base, folder / f"{name}.safetensors", edit), phrase)

    meta("num_segments_100000", set_config(num_segments=100_000), "num_segments = 100000 is out of range")
    meta("num_classes_5000000", set_config(num_classes=5_000_000), "num_classes = 5000000 is out of range")
    meta("num_classes_1e9", set_config(num_classes=10**9), "num_classes = 1000000000 is out of range")
    meta("num_classes_negative", set_config(num_classes=-1), "num_classes = -1 is out of range")
    meta("num_segments_0", set_config(num_segments=0), "num_segments = 0 is out of range")
    meta("num_segments_str", set_config(num_segments="8"), "num_segments = '8' is not an integer")
    meta("num_segments_8.5", set_config(num_segments=8.5), "num_segments = 8.5 is not an integer")
    meta("input_size_0", set_config(input_size=0), "input_size = 0 is out of range")
    meta("input_size_100000", set_config(input_size=100_000), "input_size = 100000 is out of range")
    meta("format_version_abc", lambda m: m.__setitem__("format_version", "abc"), "not a format version")
    # 24 frames: an ordinary bounded TRN head now; this file holds no relation tensors for it
    meta("trn_24_segments", set_config(consensus="trn", num_segments=24), "does not match the model architecture")
    meta("trn_40_segments", set_config(consensus="trn", num_segments=40), "TRN head over 40 frames")
    meta("activations_8gb", set_config(input_size=1024, num_segments=128), "of activations for one clip")
    meta("wide_model_tiny_file", lambda m: (m["model_config"].update(width_mult=4.0, num_classes=100_000),
                                            m.__setitem__("class_names", [f"c{i}" for i in range(100_000)])),
         "does not match the model architecture")
    data = base.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    corpus["truncated"] = (folder / "truncated.safetensors", "not a readable safetensors file")
    header, body = split_safetensors(data)
    header["head.new_fc.weight"]["shape"] = [2**20, 2**12]
    (folder / "header_shape_huge.safetensors").write_bytes(join_safetensors(header, body))
    corpus["header_shape_huge"] = (folder / "header_shape_huge.safetensors", "declares 4,294,967,296 elements")
    corpus["zip_bomb_4gb"] = (zip_bomb(folder / "zip_bomb_4gb.pth"), "zip bomb")
    corpus["stride0_classifier"] = (tsn_pth_with_expanded_classifier(folder / "stride0_classifier.pth"),
                                    "expanded view")
    corpus["legacy_8gb_storage"] = (legacy_pickle_with_huge_storage(folder / "legacy_8gb_storage.pth"),
                                    "cannot be read as a PyTorch checkpoint")
    torch.manual_seed(0)
    tsn = build_model("tsn_bninception_demo", num_classes=3, num_segments=3)
    sd = {f"module.base_model.{k[len('base_model.'):]}": v for k, v in tsn.state_dict().items()
          if k.startswith("base_model.") and not k.endswith("num_batches_tracked")}
    sd.update({"module.new_fc.weight": tsn.head.new_fc.weight, "module.new_fc.bias": tsn.head.new_fc.bias})
    torch.save({"state_dict": sd, "num_segments": 40, "consensus_type": "TRN"}, folder / "trn_40_segments.pth")
    corpus["trn_40_segments_pth"] = (folder / "trn_40_segments.pth", "TRN head over 40 frames")
    return corpus


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident set size (VmHWM), Linux >= 4.0
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_refusals(folder: Path, only: str | None = None) -> list[dict[str, Any]]:
    """Load every file of the corpus (or ``only`` that one) in this process: outcome, message, peak RSS
    (reset before each file where Linux allows, else the process peak so far), wall and CPU seconds."""
    import time

    from hfnet_core.checkpoint import load_checkpoint
    from hfnet_core.errors import HfnetError

    rows = []
    for name, (path, phrase) in build_corpus(folder).items():
        if only is not None and name != only:
            continue
        reset = _peak_rss_reset()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            load_checkpoint(path)
            outcome, message = "loaded", ""
        except HfnetError as e:
            outcome, message = type(e).__name__, e.one_line()
        except Exception as e:  # noqa: BLE001 - a bug: reported, not raised, so every file is measured
            outcome, message = f"BUG {type(e).__name__}", str(e)[:300]
        rows.append({"file": name, "path": str(path), "bytes": path.stat().st_size, "outcome": outcome, "message": message,
                     "expected": phrase, "seconds": round(time.perf_counter() - t0, 3),
                     "cpu_seconds": round(time.process_time() - c0, 3),
                     "peak_rss_bytes": _peak_rss_bytes(), "peak_reset": reset})
    return rows


if __name__ == "__main__":  # python tests/_hostile_files.py DIR [NAME] -> JSON rows on stdout
    import sys

    torch.set_num_threads(1)
    print(json.dumps(measure_refusals(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)))
