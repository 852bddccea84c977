"""Checkpoints: round trips, atomic writes, strict key checks, and refusal of broken or unsafe files."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import hfnet_core.checkpoint as ckpt
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
