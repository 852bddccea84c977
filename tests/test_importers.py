"""Importers: each foreign format is built here (its key names and shapes, random values), converted, and
must give the same outputs as the same weights loaded natively; broken, mismatched or unsafe files must
fail with errors that name the problem."""

from __future__ import annotations

import argparse
import pickle
import re
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from hfnet_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hfnet_core.cli import main as hfnet_main
from hfnet_core.importers import detect_format, import_checkpoint, load_pretrained_backbone
from hfnet_core.importers.cli import cli_main
from hfnet_core.input_convention import InputConvention
from hfnet_core.model import build_model


def randomised(model):
    """Every float tensor random (BN variances positive) so a mis-mapped or unsqueezed key shows."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if not v.is_floating_point():
                continue
            r = torch.rand(v.shape, generator=g)
            v.copy_(r + 0.5 if k.endswith("running_var") else (r - 0.5) * 0.2)
    return model.eval()


def tsn_layout(model, prefix="module.", rename=lambda k: k):
    """TSN-pytorch's DataParallel layout: module.base_model.<backbone key>, module.new_fc.*; no BN counters."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.startswith("base_model."):
            sd[prefix + "base_model." + rename(k[len("base_model."):])] = v.clone()
        elif k.startswith("head.new_fc."):
            sd[prefix + k[len("head."):]] = v.clone()
    return sd


def same_outputs(a, b, x):
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    assert torch.allclose(ya, yb, atol=1e-5, rtol=1e-5), (ya - yb).abs().max()


@pytest.fixture(scope="module")
def bnin():
    """A width-0.25 TSN BN-Inception with random weights (5 classes, 4 frames)."""
    return randomised(build_model("tsn_bninception_demo", num_classes=5, num_segments=4))


@pytest.fixture(scope="module")
def r50():
    return randomised(build_model("tsn_resnet50_demo", num_classes=6, num_segments=4))


X_BN = torch.randn(2, 4, 3, 64, 64)
X_RES = torch.randn(2, 4, 3, 64, 64)


# --- Caffe ImageNet BN-Inception (full width) ------------------------------------------------------------

def test_caffe_bninception_imagenet_full_width(tmp_path):
    native = randomised(build_model("tsn_bninception", num_classes=1000, num_segments=1))
    caffe = {}
    for k, v in native.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.startswith("head.new_fc."):
            caffe["fc." + k.rsplit(".", 1)[1]] = v.clone()
        else:
            key = k[len("base_model."):]
            # the Caffe conversion stores BN tensors as (1, C)
            caffe[key] = v.clone().unsqueeze(0) if "_bn." in key else v.clone()
    assert caffe["inception_3a_1x1_bn.running_var"].shape == (1, 64)
    assert caffe["conv1_7x7_s2.weight"].shape == (64, 3, 7, 7) and caffe["fc.weight"].shape == (1000, 1024)
    assert sum(v.numel() for k, v in caffe.items() if "running" not in k) == 11_295_240
    path = tmp_path / "bn_inception-imagenet.pth"
    torch.save(caffe, path)

    assert detect_format(path) == "caffe_bninception"
    loaded = import_checkpoint(path)
    rep = loaded.import_report
    assert rep["format"] == "caffe_bninception" and rep["backbone"] == "bninception"
    assert loaded.config.num_classes == 1000 and loaded.config.num_segments == 1
    assert len(rep["squeezed"]) == 4 * 69 and len(rep["filled"]) == 69  # 69 BN layers
    assert loaded.model.input_convention == InputConvention.bninception()
    same_outputs(loaded.model, native, torch.randn(1, 1, 3, 112, 112))

    # Cadene's pretrainedmodels names the classifier last_linear; as a backbone init it is dropped.
    cadene = {("last_linear." + k[3:] if k.startswith("fc.") else k): v for k, v in caffe.items()}
    torch.save(cadene, tmp_path / "cadene.pth")
    video = build_model("hf_tsn_bninception", num_classes=174)
    report = load_pretrained_backbone(video, tmp_path / "cadene.pth")
    assert sorted(report.dropped) == ["last_linear.bias", "last_linear.weight"]
    own = video.base_model.state_dict()
    for k, v in native.base_model.state_dict().items():
        assert torch.equal(own[k], v), k


def test_pretrained_backbone_is_strict(tmp_path, bnin):
    caffe = {k[len("base_model."):]: v for k, v in bnin.state_dict().items() if k.startswith("base_model.")}
    caffe["fc.weight"] = torch.zeros(1000, bnin.feature_dim)
    caffe["some_extra_layer.weight"] = torch.zeros(3)
    del caffe["inception_5b_3x3.bias"]
    torch.save(caffe, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_pretrained_backbone(build_model("tsn_bninception_demo", num_classes=3), tmp_path / "bad.pth")
    assert "some_extra_layer.weight" in str(e.value)
    del caffe["some_extra_layer.weight"]
    torch.save(caffe, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="inception_5b_3x3.bias"):
        load_pretrained_backbone(build_model("tsn_bninception_demo", num_classes=3), tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="width 0.25; this model's width_mult is 1"):
        load_pretrained_backbone(build_model("tsn_bninception", num_classes=3), tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="resnet18 backbone; this model's backbone is bninception"):
        tv = {k[len("base_model."):]: v for k, v in build_model("tsn_resnet18_demo").state_dict().items()
              if k.startswith("base_model.")}
        torch.save(tv, tmp_path / "tv.pth")
        load_pretrained_backbone(build_model("tsn_bninception_demo", num_classes=3), tmp_path / "tv.pth")


# --- TSN / TSM / GSM training checkpoints ---------------------------------------------------------------

def test_tsn_bninception(tmp_path, bnin):
    path = tmp_path / "TSN_something_RGB_BNInception_avg_segment4_checkpoint.pth.tar"
    torch.save({"epoch": 12, "arch": "BNInception", "state_dict": tsn_layout(bnin),
                "best_prec1": np.float64(17.5)}, path)
    assert detect_format(path) == "tsn"
    with pytest.raises(CheckpointError, match="--num-segments") as e:
        import_checkpoint(path)  # never read from the file name, which says segment4
    assert str(path) in str(e.value)
    loaded = import_checkpoint(path, num_segments=4)
    same_outputs(loaded.model, bnin, X_BN)
    rep = loaded.import_report
    assert rep["file_fields"] == {"epoch": 12, "arch": "BNInception", "best_prec1": 17.5}
    assert rep["recovered"]["num_segments"] == {"value": 4, "source": "argument"}
    assert rep["recovered"]["consensus"]["value"] == "avg"
    assert loaded.class_names == [f"class_{i:03d}" for i in range(5)]
    assert rep["mapped"] == len(tsn_layout(bnin)) and rep["not_implemented"] == []
    # load_checkpoint hands foreign files to the importers
    same_outputs(load_checkpoint(path, num_segments=4).model, bnin, X_BN)


def test_tsn_fields_recovered_from_file_args(tmp_path, bnin):
    args = argparse.Namespace(num_segments=4, consensus_type="avg", arch="BNInception", lr=0.001)
    torch.save({"epoch": 1, "arch": "BNInception", "state_dict": tsn_layout(bnin), "args": args},
               tmp_path / "a.pth")
    loaded = import_checkpoint(tmp_path / "a.pth")
    assert loaded.config.num_segments == 4
    assert loaded.import_report["recovered"]["num_segments"]["source"] == "file args 'num_segments'"
    assert loaded.import_report["recovered"]["consensus"]["source"] == "file args 'consensus_type'"
    torch.save({"state_dict": tsn_layout(bnin), "num_segments": 4, "consensus_type": "max"}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="consensus 'max'"):
        import_checkpoint(tmp_path / "m.pth")


def test_tsn_without_module_prefix_and_dropout0(tmp_path, bnin):
    """Single-GPU save (no module.) and TSN's dropout=0 layout (classifier at base_model.fc)."""
    sd = {}
    for k, v in tsn_layout(bnin, prefix="").items():
        sd[k.replace("new_fc.", "base_model.fc.")] = v
    torch.save({"state_dict": sd}, tmp_path / "d0.pth")
    loaded = import_checkpoint(tmp_path / "d0.pth", num_segments=4)
    same_outputs(loaded.model, bnin, X_BN)


def test_tsm_resnet50(tmp_path, r50):
    # TSM's "blockres" shift wraps each block's conv1: layer1.0.conv1.net.weight
    sd = tsn_layout(r50, rename=lambda k: re.sub(r"^(layer\d\.\d+\.conv1)\.", r"\1.net.", k))
    assert "module.base_model.layer3.5.conv1.net.weight" in sd
    torch.save({"epoch": 50, "arch": "resnet50", "state_dict": sd, "best_prec1": 44.8,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}}, tmp_path / "tsm.pth")
    assert detect_format(tmp_path / "tsm.pth") == "tsm"
    with pytest.raises(CheckpointError, match="shift_div"):  # the keys cannot say how many channels move
        import_checkpoint(tmp_path / "tsm.pth", num_segments=4)
    loaded = import_checkpoint(tmp_path / "tsm.pth", num_segments=4, shift_div=8)
    assert loaded.config.backbone == "resnet50" and loaded.config.width_mult == 0.25
    assert loaded.model.input_convention == InputConvention.imagenet_rgb()
    assert loaded.import_report["not_implemented"] == []
    sites = [s.key for _, s in loaded.model.placements]
    assert len(sites) == 16 and sites[0] == "layer1.0.conv1:in" and all(o == "tsm" for o, _ in loaded.model.placements)
    # The backbone is TSN's, and the shift really runs: a TSN on the same weights computes something else.
    with torch.no_grad():
        assert not torch.allclose(loaded.model(X_RES), r50(X_RES))


def test_tsm_non_local_blocks_are_named(tmp_path, r50):
    def rename(k):
        return re.sub(r"^layer2\.0\.", "layer2.0.block.", k)
    sd = tsn_layout(r50, rename=rename)
    nl = {"module.base_model.layer2.0.nl.g.weight": torch.randn(16, 32, 1, 1, 1),
          "module.base_model.layer2.0.nl.W.0.weight": torch.randn(32, 16, 1, 1, 1)}
    sd.update(nl)
    torch.save({"state_dict": sd}, tmp_path / "nl.pth")
    assert detect_format(tmp_path / "nl.pth") == "tsm"
    with pytest.raises(CheckpointError, match="non-local block") as e:
        import_checkpoint(tmp_path / "nl.pth", num_segments=4)
    for k in nl:
        assert k in str(e.value)
    assert "--drop-unknown" in str(e.value)
    loaded = import_checkpoint(tmp_path / "nl.pth", num_segments=4, drop_unknown=True)
    assert sorted(loaded.import_report["dropped"]) == sorted(nl)
    same_outputs(loaded.model, r50, X_RES)


def gsm_layout(model):
    """GSM's DataParallel layout: its gate modules live in the backbone as base_model.gsm_<conv>.*."""
    sd = tsn_layout(model)
    for k, v in model.state_dict().items():
        if k.startswith("gsm.") and not k.endswith("num_batches_tracked"):
            conv, rest = k[len("gsm."):].split(".", 1)
            sd[f"module.base_model.gsm_{conv}.{rest}"] = v.clone()
    return sd


def test_gsm_checkpoint_runs_as_gsm(tmp_path):
    gsm = randomised(build_model("gsm_bninception_demo", num_classes=5, num_segments=4))
    sd = gsm_layout(gsm)
    assert "module.base_model.gsm_inception_3a_1x1.conv3D.weight" in sd
    assert tuple(sd["module.base_model.gsm_inception_5b_1x1.conv3D.weight"].shape) == (2, 44, 3, 3, 3)
    torch.save({"epoch": 1, "arch": "BNInception", "state_dict": sd, "best_prec1": 1.0, "lr": 0.01},
               tmp_path / "gsm.pth")
    assert detect_format(tmp_path / "gsm.pth") == "gsm"
    loaded = import_checkpoint(tmp_path / "gsm.pth", num_segments=4)
    assert loaded.config.temporal == [{"op": "gsm", "where": "all", "args": {}}]
    assert loaded.import_report["dropped"] == {} and loaded.import_report["not_implemented"] == []
    same_outputs(loaded.model, gsm, X_BN)


def test_gsm_at_some_places_loads_those_places(tmp_path, bnin):
    sd = tsn_layout(bnin)
    for site, c in (("inception_3a_1x1", 16), ("inception_4d_1x1", 24)):
        p = f"module.base_model.gsm_{site}."
        sd.update({p + "conv3D.weight": torch.randn(2, c // 2, 3, 3, 3), p + "conv3D.bias": torch.zeros(2),
                   p + "bn.weight": torch.ones(c), p + "bn.bias": torch.zeros(c),
                   p + "bn.running_mean": torch.zeros(c), p + "bn.running_var": torch.ones(c)})
    torch.save({"state_dict": sd}, tmp_path / "gsm2.pth")
    loaded = import_checkpoint(tmp_path / "gsm2.pth", num_segments=4)
    assert [s.module for _, s in loaded.model.placements] == ["inception_3a_1x1", "inception_4d_1x1"]


def test_named_format_and_class_names(tmp_path, bnin):
    torch.save({"state_dict": tsn_layout(bnin)}, tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match="--temporal tsm"):  # BN-Inception TSM: nothing in the keys
        import_checkpoint(tmp_path / "t.pth", format="tsm", num_segments=4)
    loaded = import_checkpoint(tmp_path / "t.pth", format="tsm", num_segments=4, temporal="tsm", shift_div=8)
    assert loaded.import_report["format"] == "tsm" and loaded.import_report["not_implemented"] == []
    assert [s.key for _, s in loaded.model.placements][:2] == ["conv2_3x3_reduce:in", "inception_3a:in"]
    (tmp_path / "classes.txt").write_text("push\npull\nlift\ndrop\nspin\n")
    loaded = import_checkpoint(tmp_path / "t.pth", num_segments=4, classes_file=tmp_path / "classes.txt")
    assert loaded.class_names == ["push", "pull", "lift", "drop", "spin"]
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(CheckpointError, match="5 classes but classes file .* lists 3"):
        import_checkpoint(tmp_path / "t.pth", num_segments=4, classes_file=tmp_path / "three.txt")
    with pytest.raises(CheckpointError, match="unknown format"):
        import_checkpoint(tmp_path / "t.pth", format="caffe2")
    with pytest.raises(CheckpointError, match="no 'backbone.' keys"):
        import_checkpoint(tmp_path / "t.pth", format="mmaction2", num_segments=4)


def test_wrong_shape_names_the_key(tmp_path, bnin):
    sd = tsn_layout(bnin)
    sd["module.base_model.inception_4a_3x3.weight"] = torch.randn(7, 3, 3, 3)
    torch.save({"state_dict": sd}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=r"module\.base_model\.inception_4a_3x3\.weight is \(7, 3, 3, 3\)"):
        import_checkpoint(tmp_path / "w.pth", num_segments=4)
    del sd["module.base_model.inception_4a_3x3.weight"]
    torch.save({"state_dict": sd}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"missing from the file \(1\): base_model\.inception_4a_3x3\.weight"):
        import_checkpoint(tmp_path / "m.pth", num_segments=4)


# --- mmaction2 ------------------------------------------------------------------------------------------

def to_mmaction(tv_key: str) -> str:
    """torchvision ResNet name -> mmaction2 ConvModule name (written from mmaction2's documented mapping)."""
    k = tv_key
    k = re.sub(r"^conv1\.", "conv1.conv.", k)
    k = re.sub(r"^bn1\.", "conv1.bn.", k)
    k = re.sub(r"\.conv(\d)\.", r".conv\1.conv.", k) if k.startswith("layer") else k
    k = re.sub(r"^(layer.*)\.bn(\d)\.", r"\1.conv\2.bn.", k)
    k = k.replace(".downsample.0.", ".downsample.conv.").replace(".downsample.1.", ".downsample.bn.")
    return k


MMACTION2_CFG_0X = """model = dict(
    type='Recognizer2D',
    backbone=dict(type='ResNet', pretrained='torchvision://resnet50', depth=50, norm_eval=False),
    cls_head=dict(type='TSNHead', num_classes=6, in_channels=2048, spatial_type='avg',
        consensus=dict(type='AvgConsensus', dim=1), dropout_ratio=0.4, init_std=0.01))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_bgr=False)
train_pipeline = [
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=4),
    dict(type='RawFrameDecode'),
    dict(type='MultiScaleCrop', input_size=224, scales=(1, 0.875, 0.75, 0.66)),
]
test_pipeline = [dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=25, test_mode=True)]
"""


def test_mmaction2_tsn(tmp_path, r50):
    sd = {}
    for k, v in r50.state_dict().items():
        if k.startswith("base_model."):
            sd["backbone." + to_mmaction(k[len("base_model."):])] = v.clone()
        elif k.startswith("head.new_fc."):
            sd["cls_head.fc_cls." + k.rsplit(".", 1)[1]] = v.clone()
    assert "backbone.layer1.0.downsample.conv.weight" in sd and "backbone.layer2.1.conv3.bn.running_var" in sd
    classes = ["a", "b", "c", "d", "e", "f"]
    meta = {"mmcv_version": "1.3.1", "config": MMACTION2_CFG_0X, "CLASSES": classes, "epoch": 100}
    torch.save({"meta": meta, "state_dict": sd}, tmp_path / "tsn_r50_mm.pth")
    assert detect_format(tmp_path / "tsn_r50_mm.pth") == "mmaction2"
    loaded = import_checkpoint(tmp_path / "tsn_r50_mm.pth")
    rep = loaded.import_report
    assert loaded.config.num_segments == 4  # train pipeline, not the 25-clip test pipeline
    assert "train_pipeline" in rep["recovered"]["num_segments"]["source"]
    assert loaded.class_names == classes
    conv = loaded.model.input_convention
    assert conv.channel_order == "RGB" and conv.scale == 255.0 and conv.mean == (123.675, 116.28, 103.53)
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 4, 64, 64, 3), dtype=np.uint8)
    same_outputs(loaded.model, r50, conv.to_model_input(frames))  # same pixels as imagenet_rgb
    assert torch.allclose(conv.to_model_input(frames), InputConvention.imagenet_rgb().to_model_input(frames),
                          atol=1e-5)
    assert rep["renamed"] > 100


class HistoryBuffer:
    """Stands for mmengine's logging class (pickled by name; never importable when the file is read)."""

    def __init__(self):
        self._log_history = np.array([0.1, 0.2])
        self.max_length = 1000000


def test_mmaction2_tsm_v1_with_mmengine_metadata(tmp_path, r50, monkeypatch):
    sd = {}
    for k, v in r50.state_dict().items():
        if k.startswith("base_model."):
            mk = to_mmaction(k[len("base_model."):])
            mk = re.sub(r"^(layer\d\.\d+\.conv1\.conv)\.", r"\1.net.", mk)  # ResNetTSM's shift wrapper
            sd["backbone." + mk] = v.clone()
        elif k.startswith("head.new_fc."):
            sd["cls_head.fc_cls." + k.rsplit(".", 1)[1]] = v.clone()
    cfg = ("model = dict(type='Recognizer2D', backbone=dict(type='ResNetTSM', depth=50, num_segments=4, "
           "shift_div=8), cls_head=dict(type='TSMHead', num_segments=4, num_classes=6))")
    names = ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    HistoryBuffer.__module__ = names[-1]
    sys.modules[names[-1]].HistoryBuffer = HistoryBuffer
    ckpt = {"meta": {"cfg": cfg, "dataset_meta": {"classes": list("uvwxyz")}, "seed": np.int64(3)},
            "state_dict": sd, "message_hub": {"log_scalars": {"train/loss": HistoryBuffer()}}}
    torch.save(ckpt, tmp_path / "tsm_mm.pth")
    for name in names:
        monkeypatch.delitem(sys.modules, name)  # reading must not need (or import) mmengine
    loaded = import_checkpoint(tmp_path / "tsm_mm.pth")
    assert loaded.config.num_segments == 4 and loaded.class_names == list("uvwxyz")
    assert loaded.config.temporal[0]["op"] == "tsm" and loaded.config.temporal[0]["args"] == {"shift_div": 8}
    assert len(loaded.config.temporal[0]["where"]) == 16 and loaded.import_report["not_implemented"] == []


# --- torchvision ------------------------------------------------------------------------------------------

def test_torchvision_resnet18(tmp_path):
    native = randomised(build_model("tsn_resnet18", num_classes=1000, num_segments=1))
    tv = {}
    for k, v in native.state_dict().items():
        tv[k[len("base_model."):] if k.startswith("base_model.") else "fc." + k.rsplit(".", 1)[1]] = v.clone()
    assert len(tv) == 122  # torchvision resnet18's state dict
    torch.save(tv, tmp_path / "resnet18.pth")
    assert detect_format(tv) == "torchvision_resnet"
    loaded = import_checkpoint(tmp_path / "resnet18.pth")
    assert loaded.config.backbone == "resnet18" and loaded.config.num_segments == 1
    assert loaded.import_report["recovered"]["num_segments"]["source"].startswith("image classifier")
    same_outputs(loaded.model, native, torch.randn(2, 1, 3, 64, 64))

    # the same weights as safetensors without hfnet metadata (e.g. from a model hub)
    save_file({k: v.contiguous() for k, v in tv.items()}, str(tmp_path / "resnet18.safetensors"))
    video = build_model("hf_tsn_resnet18", num_classes=10, num_segments=8)
    report = load_pretrained_backbone(video, tmp_path / "resnet18.safetensors")
    assert sorted(report.dropped) == ["fc.bias", "fc.weight"] and report.format == "torchvision_resnet"
    assert torch.equal(video.base_model.layer4[1].bn2.running_var, native.base_model.layer4[1].bn2.running_var)


# --- native files, CLI ------------------------------------------------------------------------------------

def test_native_checkpoint_passes_through(tmp_path, bnin):
    path = save_checkpoint(tmp_path / "n.safetensors", bnin, list("abcde"))
    assert detect_format(path) == "hfnet"
    loaded = import_checkpoint(path)
    assert loaded.import_report["format"] == "hfnet" and loaded.class_names == list("abcde")
    same_outputs(loaded.model, bnin, X_BN)
    video = build_model("hf_tsn_bninception_demo", num_classes=2)
    report = load_pretrained_backbone(video, path)
    assert sorted(report.dropped) == ["head.new_fc.bias", "head.new_fc.weight"]


def test_convert_cli(tmp_path, bnin, capsys):
    torch.save({"epoch": 3, "arch": "BNInception", "state_dict": tsn_layout(bnin)}, tmp_path / "t.pth")
    (tmp_path / "c.txt").write_text("\n".join("vwxyz") + "\n")
    out = tmp_path / "out.safetensors"
    assert cli_main([str(tmp_path / "t.pth"), str(out)]) == 2
    assert "--num-segments" in capsys.readouterr().err
    assert hfnet_main(["convert", str(tmp_path / "t.pth"), str(out), "--num-segments", "4",
                       "--classes", str(tmp_path / "c.txt")]) == 0
    printed = capsys.readouterr().out
    assert "format: tsn" in printed and "num_segments = 4" in printed and f"wrote {out}" in printed
    loaded = load_checkpoint(out)
    assert loaded.class_names == list("vwxyz")
    assert loaded.metadata["extra"]["imported_from"]["format"] == "tsn"
    same_outputs(loaded.model, bnin, X_BN)


# --- unreadable and unsafe files --------------------------------------------------------------------------

def test_truncated_and_corrupt_files(tmp_path, bnin):
    torch.save({"state_dict": tsn_layout(bnin)}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as e:
        import_checkpoint(tmp_path / "cut.pth", num_segments=4)
    assert "cut.pth" in str(e.value)
    (tmp_path / "text.pth").write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint"):
        import_checkpoint(tmp_path / "text.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        import_checkpoint(tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        import_checkpoint(tmp_path / "missing.pth")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        import_checkpoint(tmp_path / "nostate.pth")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "unknown.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint format hfnet recognises"):
        import_checkpoint(tmp_path / "unknown.pth")


def test_legacy_serialization_is_read(tmp_path, bnin):
    torch.save({"state_dict": tsn_layout(bnin)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    same_outputs(import_checkpoint(tmp_path / "old.pth", num_segments=4).model, bnin, X_BN)


class Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a malicious file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_code_payload_never_runs(tmp_path, bnin):
    # the payload is live: plain pickle would run it
    pickle.loads(pickle.dumps(Payload(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()

    marker = tmp_path / "pwned"
    torch.save({"state_dict": tsn_layout(bnin), "extra": Payload(marker)}, tmp_path / "evil.pth")
    with open(tmp_path / "evil_legacy.pth", "wb") as f:
        pickle.dump({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": Payload(marker)}, f)
    for name in ("evil.pth", "evil_legacy.pth"):
        for call in (lambda p: import_checkpoint(p, num_segments=4), detect_format,
                     lambda p: load_checkpoint(p, num_segments=4)):
            with pytest.raises(CheckpointError, match="run code") as e:
                call(tmp_path / name)
            assert "never runs code" in str(e.value) and "open" in str(e.value)
    assert cli_main([str(tmp_path / "evil.pth"), str(tmp_path / "o.safetensors"), "--num-segments", "4"]) == 2
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


# --- hostile foreign files (issue 10): refused before they are inflated, materialised or built ---------------

from hfnet_core import limits  # noqa: E402
from hfnet_core.errors import HfnetError, ResourceLimitError  # noqa: E402
from hfnet_core.importers import safe_load  # noqa: E402

from _hostile_files import tensor_ref, torch_zip, tsn_pth_with_expanded_classifier, zip_bomb  # noqa: E402


@pytest.fixture
def no_torch_load(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(safe_load.torch, "load", never)


def test_stride0_classifier_is_refused_not_written_out(tmp_path, capsys):
    src = tsn_pth_with_expanded_classifier(tmp_path / "expanded.pth")
    assert src.stat().st_size < 3 * 2**20
    out = tmp_path / "out.safetensors"
    assert hfnet_main(["convert", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expanded view" in err and "new_fc" in err and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["expanded.pth"]
    with pytest.raises(ResourceLimitError, match="expanded"):
        load_checkpoint(src, num_segments=3)


def test_zip_bomb_is_refused_from_the_central_directory(tmp_path, no_torch_load):
    bomb = zip_bomb(tmp_path / "bomb.pth", 256 * 2**20)
    assert bomb.stat().st_size < 2**20
    with pytest.raises(ResourceLimitError, match=r"inflate from .* to 268,435,456 bytes .* zip bomb") as e:
        import_checkpoint(bomb, num_segments=3)
    assert str(bomb) in str(e.value)


def test_zip_limits_on_pickle_size_and_total_data(tmp_path, bnin, monkeypatch, no_torch_load):
    torch.save({"state_dict": tsn_layout(bnin)}, tmp_path / "ok.pth")
    monkeypatch.setattr(safe_load, "MAX_PICKLE_BYTES", 1000)
    with pytest.raises(ResourceLimitError, match="its pickle 'ok/data.pkl'"):
        safe_load.read_pickled(tmp_path / "ok.pth")
    monkeypatch.setattr(safe_load, "MAX_PICKLE_BYTES", 2**26)
    monkeypatch.setenv(limits.ENV_MAX_MODEL_BYTES, "1M")
    with pytest.raises(ResourceLimitError, match="once unpacked, over the limit of 1.0 MiB"):
        safe_load.read_pickled(tmp_path / "ok.pth")
    with pytest.raises(ResourceLimitError):
        safe_load.read_pickled(tmp_path / "ok.pth", max_bytes=10**5)


def test_declared_storage_larger_than_its_record(tmp_path):
    obj = {"state_dict": {"module.new_fc.weight": tensor_ref("0", (2**28,))}}
    path = torch_zip(tmp_path / "liar.pth", obj, {"0": bytes(64)})
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint"):
        import_checkpoint(path, num_segments=3)
    overlapping = {"state_dict": {"w": tensor_ref("0", (1000, 1000), stride=(1, 1), numel=2000)}}
    path = torch_zip(tmp_path / "overlap.pth", overlapping, {"0": bytes(8000)})
    with pytest.raises(ResourceLimitError, match="expanded view"):
        safe_load.read_pickled(path)


def test_legacy_pickle_declaring_a_huge_storage(tmp_path):
    from _hostile_files import legacy_pickle_with_huge_storage

    path = legacy_pickle_with_huge_storage(tmp_path / "legacy.pth")
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint"):
        import_checkpoint(path, num_segments=3)


def test_foreign_trn_with_many_segments_is_refused_before_construction(tmp_path, bnin, monkeypatch):
    from hfnet_core.heads import TRNHead

    def never(*args, **kwargs):
        raise AssertionError("the TRN head was constructed")

    monkeypatch.setattr(TRNHead, "__init__", never)
    args = argparse.Namespace(num_segments=40, consensus_type="TRN", arch="BNInception")
    torch.save({"state_dict": tsn_layout(bnin), "args": args}, tmp_path / "trn40.pth")
    with pytest.raises(ResourceLimitError, match="TRN head over 40 frames") as e:
        import_checkpoint(tmp_path / "trn40.pth")
    assert "trn40.pth" in str(e.value)
    assert cli_main([str(tmp_path / "trn40.pth"), "--dry-run"]) == 2


def test_recorded_fields_out_of_range_are_refused(tmp_path, bnin):
    for n, expect in [(100_000, "num_segments = 100000 is out of range"), (float("inf"), "does not record")]:
        torch.save({"state_dict": tsn_layout(bnin), "num_segments": n}, tmp_path / "f.pth")
        with pytest.raises(CheckpointError, match=expect):
            import_checkpoint(tmp_path / "f.pth")
    with pytest.raises(CheckpointError, match="input_size = 5 is out of range"):
        import_checkpoint(tmp_path / "f.pth", num_segments=4, input_size=5)



def test_mmaction_config_with_an_absurd_segment_count(tmp_path, r50):
    sd = {"backbone." + to_mmaction(k[len("base_model."):]): v for k, v in r50.state_dict().items()
          if k.startswith("base_model.")}
    sd["cls_head.fc_cls.weight"], sd["cls_head.fc_cls.bias"] = r50.head.new_fc.weight, r50.head.new_fc.bias
    for digits, expect in [("9" * 5000, "does not record how many frames"),  # more digits than int() parses
                           ("100000", "num_segments = 100000 is out of range")]:
        cfg = MMACTION2_CFG_0X.replace("num_clips=4", f"num_clips={digits}")
        assert cfg != MMACTION2_CFG_0X
        torch.save({"meta": {"config": cfg}, "state_dict": sd}, tmp_path / "mm.pth")
        with pytest.raises(CheckpointError, match=expect):
            import_checkpoint(tmp_path / "mm.pth")


def test_wide_model_from_a_tiny_file_is_never_built(tmp_path, monkeypatch):
    """conv1 with 256 channels reads as a 4x-wide ResNet: the shapes are checked on the meta device, so the
    gigabyte-sized real model is never constructed for a file of a few hundred kB."""
    import hfnet_core.model as model_mod

    keys = [k[len("base_model."):] for k in build_model("tsn_resnet18_demo").state_dict() if k.startswith("base_model.")]
    built = []
    original = model_mod.VideoClassifier.__init__

    def spy(self, config):
        if str(torch.get_default_device()) != "meta":
            built.append(config)
        original(self, config)

    monkeypatch.setattr(model_mod.VideoClassifier, "__init__", spy)
    tv = {k: torch.zeros(1) for k in keys}  # every key of a ResNet-18, each one number
    tv["conv1.weight"] = torch.zeros(256, 3, 7, 7)  # 4x the 64 stem channels: width_mult 4
    tv["fc.weight"], tv["fc.bias"] = torch.zeros(10, 2048), torch.zeros(10)
    torch.save(tv, tmp_path / "wide.pth")
    assert (tmp_path / "wide.pth").stat().st_size < 2**20
    with pytest.raises(CheckpointError, match=r"does not match the model it describes: wrong shapes") as e:
        import_checkpoint(tmp_path / "wide.pth")
    assert "width 4" in str(e.value)
    assert built == []


def test_truncated_safetensors_through_convert_and_pretrained(tmp_path, bnin, capsys):
    save_file({k: v.contiguous() for k, v in bnin.base_model.state_dict().items()}, str(tmp_path / "bb.safetensors"))
    data = (tmp_path / "bb.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    video = build_model("tsn_bninception_demo", num_classes=2, num_segments=2)
    for cut in (9, 20, n // 2, n + 8, len(data) // 2):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        assert hfnet_main(["convert", str(tmp_path / "cut.safetensors"), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cut.safetensors" in err and "Traceback" not in err
        with pytest.raises(CheckpointError, match="not a readable safetensors file"):
            load_pretrained_backbone(video, tmp_path / "cut.safetensors")


def test_nul_byte_paths_in_convert(tmp_path, capsys):
    assert hfnet_main(["convert", "a\x00b.pth", "--dry-run"]) == 2
    assert "NUL byte" in capsys.readouterr().err
    with pytest.raises(HfnetError, match="NUL byte"):
        import_checkpoint("x\x00.pth")


def test_convert_to_an_unwritable_place_is_one_line(tmp_path, bnin, capsys):
    torch.save({"state_dict": tsn_layout(bnin)}, tmp_path / "t.pth")
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "out.safetensors"  # its parent is a file: nothing can be created there
    assert hfnet_main(["convert", str(tmp_path / "t.pth"), str(out), "--num-segments", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out}: cannot be written" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "t.pth"]
