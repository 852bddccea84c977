"""Checkpoints: round trips, atomic writes, strict key checks, and refusal of broken or unsafe files."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import hfnet_core.native_checkpoint as ckpt
from hfnet_core.atomic import WriteError
from hfnet_core.checkpoint import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_state_dict_strict,
    read_metadata,
    save_checkpoint,
)
from hfnet_core.model import build_model

CLASSES = ["push", "pull", "spin"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("hf_tsn_bninception_demo", num_classes=3, num_segments=3)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # nothing at its initial value: gates, BN statistics
        for p in m.hf.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
    return m.eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 50


@pytest.fixture
def saved(tmp_path, model):
    return save_checkpoint(tmp_path / "m.safetensors", model, CLASSES, training={"epochs": 3})


def test_round_trip_fp32(saved, model, x):
    loaded = load_checkpoint(saved)
    assert not loaded.model.training
    assert loaded.config == model.config and loaded.class_names == CLASSES
    assert loaded.sha256 == file_sha256(saved) and loaded.path == str(saved)
    assert loaded.metadata["training"] == {"epochs": 3}
    assert loaded.metadata["input_convention"] == model.input_convention.to_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
        a, b = loaded.model.inspect(x), model.inspect(x)
    assert all(torch.equal(a.gates[k], b.gates[k]) for k in b.gates)


def test_round_trip_fp16(tmp_path, saved, model, x):
    half = save_checkpoint(tmp_path / "h.safetensors", model, CLASSES, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * saved.stat().st_size
    loaded = load_checkpoint(half)
    assert loaded.config == model.config and loaded.class_names == CLASSES
    assert all(v.dtype != torch.float16 for v in loaded.model.state_dict().values())  # model runs in fp32
    with torch.no_grad():
        a, b = loaded.model(x), model(x)
    assert not torch.equal(a, b)  # it really went through fp16
    assert (a - b).abs().max() <= 2e-2 * b.abs().max() + 1e-3
    assert torch.equal(a.argmax(1), b.argmax(1))


def test_save_is_atomic(tmp_path, saved, model, monkeypatch):
    before = saved.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken_save)
    with pytest.raises(WriteError, match="disk full") as e:
        save_checkpoint(saved, model, CLASSES)
    assert str(saved) in str(e.value) and "previous version" in str(e.value)
    assert saved.read_bytes() == before  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp file left
    with pytest.raises(WriteError):
        save_checkpoint(tmp_path / "new.safetensors", model, CLASSES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    monkeypatch.undo()
    load_checkpoint(saved)


def test_wrong_class_count_refused(tmp_path, model):
    with pytest.raises(CheckpointError, match="2 class names"):
        save_checkpoint(tmp_path / "c.safetensors", model, CLASSES[:2])
    assert not (tmp_path / "c.safetensors").exists()


def _rewrite(src, dst, change):
    """Copy an hfnet checkpoint with its metadata, its tensors edited by ``change``."""
    meta = read_metadata(src)
    with safe_open(str(src), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(dst), metadata={"hfnet": json.dumps(meta)})
    return dst


def test_missing_key_named(tmp_path, saved):
    key = "hf.inception_4c.gate.weight"
    bad = _rewrite(saved, tmp_path / "missing.safetensors", lambda t: t.pop(key))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    assert "missing keys (1)" in str(e.value) and key in str(e.value) and str(bad) in str(e.value)


def test_unexpected_key_named(tmp_path, saved):
    bad = _rewrite(saved, tmp_path / "extra.safetensors",
                   lambda t: t.__setitem__("hf.inception_9z.gate.weight", torch.zeros(1)))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): hf\.inception_9z\.gate\.weight"):
        load_checkpoint(bad)


def test_wrong_shape_named(tmp_path, saved):
    bad = _rewrite(saved, tmp_path / "shape.safetensors",
                   lambda t: t.__setitem__("head.new_fc.weight", torch.zeros(7, t["head.new_fc.weight"].shape[1])))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    assert "wrong shapes" in str(e.value) and "head.new_fc.weight" in str(e.value) and "(7," in str(e.value)


def test_load_state_dict_strict_lists_everything(model):
    state = dict(model.state_dict())
    state.pop("head.new_fc.bias")
    state["bogus"] = torch.zeros(1)
    state["head.new_fc.weight"] = torch.zeros(1, 1)
    target = build_model(model.config)
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(target, state, "somefile")
    msg = str(e.value)
    assert "missing keys (1): head.new_fc.bias" in msg and "unexpected keys (1): bogus" in msg
    assert "head.new_fc.weight file (1, 1)" in msg and msg.startswith("somefile: ")


@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "no_hfnet_metadata", "bad_json", "missing"])
def test_broken_files_raise_checkpoint_error(tmp_path, saved, kind):
    path = tmp_path / f"{kind}.safetensors"
    data = saved.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
        expect = "not a readable safetensors file"
    elif kind == "empty":
        path.write_bytes(b"")
        expect = "not a readable safetensors file"
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
        expect = "not a readable safetensors file"
    elif kind == "no_hfnet_metadata":
        save_file({"w": torch.zeros(3)}, str(path), metadata={"source": "a model hub"})
        expect = "without hfnet metadata"
    elif kind == "bad_json":
        save_file({"w": torch.zeros(3)}, str(path), metadata={"hfnet": "{not json"})
        expect = "corrupt hfnet metadata"
    else:
        expect = "no such file"
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert expect in str(e.value) and str(path) in str(e.value)


def test_newer_format_refused(tmp_path, saved):
    meta = read_metadata(saved)
    meta["format_version"] = 99
    path = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"hfnet": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="newer hfnet"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this calls open(marker, "w"): if the marker file exists, code from the file ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(path, marker) -> None:
    torch.save({"state_dict": {"conv1_7x7_s2.weight": torch.zeros(1)}, "arch": _Payload(str(marker))}, path)


def test_payload_is_live(tmp_path):
    """Sanity check of the test below: an unsafe unpickler does run the payload."""
    marker = tmp_path / "ran"
    _evil_checkpoint(tmp_path / "live.pth", marker)
    with open(tmp_path / "live.pth", "rb") as f:
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_pickle_payload_never_executes(tmp_path):
    pytest.importorskip("hfnet_core.importers")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    _evil_checkpoint(path, marker)
    with pytest.raises(ValueError) as e:
        load_checkpoint(path, num_segments=3)
    assert not marker.exists()
    assert str(path) in str(e.value)  # a clear message naming the file
    # raw pickle, not torch's zip container
    raw = tmp_path / "evil_raw.pth"
    with open(raw, "wb") as f:
        pickle.dump({"state_dict": _Payload(str(marker))}, f)
    with pytest.raises(ValueError):
        load_checkpoint(raw, num_segments=3)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["random.pth", "empty.pth"])
def test_broken_foreign_files_raise_checkpoint_error(tmp_path, name):
    pytest.importorskip("hfnet_core.importers")
    path = tmp_path / name
    path.write_bytes(os.urandom(4096) if name.startswith("random") else b"")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, num_segments=3)
    assert str(path) in str(e.value)


# --- hostile metadata, headers and paths (issue 10): refused before anything is allocated -------------------

from hfnet_core import limits  # noqa: E402
from hfnet_core.errors import HfnetError, ResourceLimitError  # noqa: E402
from hfnet_core.paths import PathError  # noqa: E402

from _hostile_files import edit_hfnet_metadata, join_safetensors, set_config, split_safetensors, tmpfs  # noqa: E402


@pytest.fixture
def real_builds(monkeypatch):
    """Records every VideoClassifier built on a real device (meta-device builds are what limits may do)."""
    import hfnet_core.model as model_mod

    built: list[str] = []
    original = model_mod.VideoClassifier.__init__

    def spy(self, config):
        if str(torch.get_default_device()) != "meta":
            built.append(config.name or "model")
        original(self, config)

    monkeypatch.setattr(model_mod.VideoClassifier, "__init__", spy)
    return built


@pytest.mark.parametrize("edit, expect", [
    (set_config(num_segments=100_000), "model_config.num_segments = 100000 is out of range"),
    (set_config(num_classes=5_000_000), "model_config.num_classes = 5000000 is out of range"),
    (set_config(num_classes=10**9), "model_config.num_classes"),
    (set_config(num_classes=-1), "model_config.num_classes"),
    (set_config(num_segments=0), "model_config.num_segments = 0"),
    (set_config(num_segments="8"), "is not an integer"),
    (set_config(num_segments=8.5), "is not an integer"),
    (set_config(input_size=0), "model_config.input_size = 0"),
    (set_config(input_size=100_000), "model_config.input_size = 100000"),
    (set_config(width_mult=1e9), "model_config.width_mult"),
    (lambda m: m.__setitem__("format_version", "abc"), "format_version = 'abc' is not a format version"),
    (lambda m: m.__setitem__("format_version", 99), "newer hfnet"),
    (lambda m: m.pop("model_config"), "has no model_config"),
    (lambda m: m.__setitem__("model_config", [1]), "is not an object"),
    (lambda m: m.__setitem__("class_names", ["x" * 300] * 3), "at most 256"),
    (lambda m: m.__setitem__("class_names", "abc"), "not a list"),
    (lambda m: m.__setitem__("class_names", ["a", "b"]), "lists 2 class names for 3 classes"),
    (lambda m: m.__setitem__("format", 7), "metadata format is '7'"),
])
def test_hostile_metadata_is_refused_before_any_model_exists(tmp_path, saved, real_builds, edit, expect):
    bad = edit_hfnet_metadata(saved, tmp_path / "bad.safetensors", edit)
    for reader in (read_metadata, load_checkpoint):
        with pytest.raises(CheckpointError) as e:
            reader(bad)
        assert expect in str(e.value) and str(bad) in str(e.value)
    assert real_builds == []


def test_metadata_that_is_not_an_object_or_too_deep(tmp_path, saved):
    header, body = split_safetensors(saved.read_bytes())
    for raw, expect in [("[1, 2]", "not a JSON object"), ("[" * 100_000 + "]" * 100_000, "corrupt hfnet metadata")]:
        header["__metadata__"]["hfnet"] = raw
        path = tmp_path / "m.safetensors"
        path.write_bytes(join_safetensors(header, body))
        with pytest.raises(CheckpointError, match=expect):
            load_checkpoint(path)


def test_trn_checkpoint_with_many_segments_is_refused_before_construction(tmp_path, saved, monkeypatch):
    from hfnet_core.heads import TRNHead

    def never(*args, **kwargs):
        raise AssertionError("the TRN head was constructed")

    monkeypatch.setattr(TRNHead, "__init__", never)
    bad = edit_hfnet_metadata(saved, tmp_path / "trn40.safetensors", set_config(consensus="trn", num_segments=40))
    with pytest.raises(ResourceLimitError, match="TRN head over 40 frames") as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value)


def test_model_too_large_for_the_limit(tmp_path, saved, monkeypatch):
    monkeypatch.setenv(limits.ENV_MAX_MODEL_BYTES, "1M")
    with pytest.raises(ResourceLimitError, match="over the limit of 1.0 MiB"):
        load_checkpoint(saved)
    monkeypatch.setenv(limits.ENV_MAX_MODEL_BYTES, "4G")
    load_checkpoint(saved)


def test_file_must_hold_the_model_it_describes_before_it_is_built(tmp_path, saved, real_builds):
    """A few-kB file describing a 4x-wide, 100k-class model: the meta model shows the file lacks its
    tensors, so the real (gigabyte) model is never built."""
    bad = edit_hfnet_metadata(saved, tmp_path / "wide.safetensors",
                              lambda m: (m["model_config"].update(width_mult=4.0, num_classes=100_000),
                                         m.__setitem__("class_names", [f"c{i}" for i in range(100_000)])))
    with pytest.raises(CheckpointError, match="does not match the model architecture: wrong shapes"):
        load_checkpoint(bad)
    assert real_builds == []


def _header_case(saved, kind):
    header, body = split_safetensors(saved.read_bytes())
    name = "head.new_fc.bias"
    begin, end = header[name]["data_offsets"]
    if kind == "length_past_end":
        data = saved.read_bytes()
        return (len(data)).to_bytes(8, "little") + data[8:], "after the length field"
    if kind == "length_zero":
        return bytes(8) + saved.read_bytes()[8:], "header length field says 0"
    if kind == "tensor_past_end":
        return join_safetensors(header, body[: len(body) - 8]), "holds only"
    if kind == "wrong_dtype":
        header[name]["dtype"] = "F128"
        return join_safetensors(header, body), "unknown dtype"
    if kind == "shape_vs_bytes":
        header[name]["shape"] = [header[name]["shape"][0] * 2]
        return join_safetensors(header, body), "over the byte range"
    if kind == "huge_shape":
        header[name]["shape"] = [2**40]
        return join_safetensors(header, body), "declares 1,099,511,627,776 elements"
    if kind == "negative_offsets":
        header[name]["data_offsets"] = [-4, end]
        return join_safetensors(header, body), "invalid data_offsets"
    if kind == "overlap":
        other = next(k for k in header if k not in ("__metadata__", name))
        header[name]["data_offsets"] = header[other]["data_offsets"]
        header[name]["shape"] = header[other]["shape"]
        header[name]["dtype"] = header[other]["dtype"]
        return join_safetensors(header, body), "overlaps the previous tensor"
    if kind == "trailing":
        return saved.read_bytes() + b"\0" * 16, "data bytes"
    if kind == "not_json":
        return (6).to_bytes(8, "little") + b"{nope}" + body, "not valid JSON"
    if kind == "metadata_not_strings":
        header["__metadata__"]["x"] = 3
        return join_safetensors(header, body), "__metadata__ is not an object of strings"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["length_past_end", "length_zero", "tensor_past_end", "wrong_dtype",
                                  "shape_vs_bytes", "huge_shape", "negative_offsets", "overlap", "trailing",
                                  "not_json", "metadata_not_strings"])
def test_corrupt_safetensors_headers_are_named(tmp_path, saved, kind):
    data, expect = _header_case(saved, kind)
    path = tmp_path / f"{kind}.safetensors"
    path.write_bytes(data)
    with pytest.raises(HfnetError) as e:
        load_checkpoint(path)
    assert expect in str(e.value) and str(path) in str(e.value)


def test_every_truncation_is_one_clear_error(tmp_path, saved):
    data = saved.read_bytes()
    n = int.from_bytes(data[:8], "little")
    path = tmp_path / "cut.safetensors"
    for cut in sorted({0, 1, 7, 8, 9, 20, n // 2, n + 7, n + 8, n + 9, n + 100, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable safetensors file"):
            load_checkpoint(path)
        with pytest.raises(CheckpointError):
            read_metadata(path)


def test_nul_bytes_and_special_files_are_clear_errors(tmp_path, saved, model):
    with pytest.raises(PathError, match="NUL byte"):
        load_checkpoint(str(saved) + "\x00x")
    with pytest.raises(PathError, match="NUL byte"):
        read_metadata("a\x00b.safetensors")
    with pytest.raises(PathError, match="NUL byte"):
        save_checkpoint(str(tmp_path / "a\x00b.safetensors"), model, CLASSES)
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="FIFO"):  # refused from its stat: opening it would block
        load_checkpoint(fifo)
    with pytest.raises(CheckpointError, match="a folder, not a regular file"):
        load_checkpoint(tmp_path)


# --- failed writes: one clear error, nothing partial, the previous version intact ------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 512 kB tmpfs (root only; skipped where mounting is not permitted)."""
    with tmpfs(tmp_path / "mnt", "512k") as mnt:
        yield mnt


def test_disk_full_and_read_only_folder(tiny_tmpfs, model):
    import subprocess

    from hfnet_core.atomic import write_text_atomic

    small = tiny_tmpfs / "note.txt"
    write_text_atomic(small, "previous version")
    target = tiny_tmpfs / "m.safetensors"  # the demo model is 2.7 MB: it cannot fit
    with pytest.raises(WriteError) as e:
        save_checkpoint(target, model, CLASSES)
    msg = str(e.value)
    assert str(target) in msg and "no space left on device" in msg and "previous version" in msg
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["note.txt"]  # the temp file is gone
    with pytest.raises(WriteError, match="no space left"):
        write_text_atomic(small, "x" * 2**20)
    assert small.read_text() == "previous version"
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    with pytest.raises(WriteError, match="read-only"):
        write_text_atomic(small, "new")
    with pytest.raises(WriteError, match="read-only"):
        save_checkpoint(tiny_tmpfs / "sub" / "m.safetensors", model, CLASSES)
    assert small.read_text() == "previous version"


def test_permission_denied(tmp_path, saved, model, monkeypatch):
    """Root ignores chmod, so the OS's answer for a folder one may not write is injected where it arises."""
    import errno
    import tempfile

    import hfnet_core.atomic as atomic

    before = saved.read_bytes()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(WriteError, match="permission denied") as e:
        save_checkpoint(saved, model, CLASSES)
    assert str(saved) in str(e.value)
    monkeypatch.setattr(atomic.tempfile, "mkstemp", tempfile.mkstemp)
    monkeypatch.setattr(atomic.os, "replace", denied)
    with pytest.raises(WriteError, match="permission denied"):
        save_checkpoint(saved, model, CLASSES)
    assert saved.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
