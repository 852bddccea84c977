"""ECO-Lite: the 3D part against a per-layer reference written from ECO-pytorch's layer table (docs/eco.md),
the 2D part against BN-Inception itself, names, sizes at several inputs, HF placement, FLOPs of the 3D
part by hand, and the ECO-pytorch checkpoint round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from hfnet_core.backbones import BNInception
from hfnet_core.backbones.eco import ECOLite
from hfnet_core.checkpoint import CheckpointError
from hfnet_core.complexity import count_flops, count_params
from hfnet_core.errors import ConfigError
from hfnet_core.importers import detect_format, import_checkpoint
from hfnet_core.model import ModelConfig, VideoClassifier, build_model

#: ECO-pytorch's 3D layers in YAML order (the fact sheet's table): conv (in, out, stride) / BN names.
ECO_3D_CONVS = ["res3a_2", "res3b_1", "res3b_2", "res4a_1", "res4a_2", "res4a_down", "res4b_1", "res4b_2",
                "res5a_1", "res5a_2", "res5a_down", "res5b_1", "res5b_2"]
ECO_3D_BNS = ["res3a_bn", "res3b_1_bn", "res3b_bn", "res4a_1_bn", "res4a_bn", "res4b_1_bn", "res4b_bn",
              "res5a_1_bn", "res5a_bn", "res5b_1_bn", "res5b_bn"]


def randomised(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                r = torch.rand(v.shape, generator=g)
                v.copy_(r + 0.5 if k.endswith("running_var") else (r - 0.5) * 0.2)
    return model.eval()


def reference_3d(sd: dict, x2d: torch.Tensor, t: int) -> torch.Tensor:
    """The 3D part computed line by line from the layer table (eval-mode BN), pooled to (N, C)."""
    def conv(name, x, stride=1):
        return F.conv3d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=1)

    def bn_relu(name, x):
        return F.relu(F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                                   sd[f"{name}.bias"], False, 0.0, 1e-5))

    nt, c, h, w = x2d.shape
    x = x2d.view(nt // t, t, c, h, w).transpose(1, 2)                     # 2D -> 3D
    res3a_2 = conv("res3a_2", x)                                           # 1
    y = bn_relu("res3a_bn", res3a_2)                                       # 2
    y = bn_relu("res3b_1_bn", conv("res3b_1", y))                          # 3-4
    res3b = conv("res3b_2", y) + res3a_2                                   # 5-6
    res3b_bn = bn_relu("res3b_bn", res3b)                                  # 7
    y = bn_relu("res4a_1_bn", conv("res4a_1", res3b_bn, 2))                # 8-9
    res4a = conv("res4a_2", y) + conv("res4a_down", res3b_bn, 2)           # 10-12
    y = bn_relu("res4a_bn", res4a)                                         # 13
    y = bn_relu("res4b_1_bn", conv("res4b_1", y))                          # 14-15
    res4b_bn = bn_relu("res4b_bn", conv("res4b_2", y) + res4a)             # 16-18
    y = bn_relu("res5a_1_bn", conv("res5a_1", res4b_bn, 2))                # 19-20
    res5a = conv("res5a_2", y) + conv("res5a_down", res4b_bn, 2)           # 21-23
    y = bn_relu("res5a_bn", res5a)                                         # 24
    y = bn_relu("res5b_1_bn", conv("res5b_1", y))                          # 25-26
    res5b_bn = bn_relu("res5b_bn", conv("res5b_2", y) + res5a)             # 27-29
    return res5b_bn.mean(dim=(2, 3, 4))                                    # 30 (global average)


@pytest.mark.parametrize("t,size", [(8, 64), (4, 96)])
def test_3d_part_matches_the_layer_table(t, size):
    model = randomised(VideoClassifier(ModelConfig(backbone="eco_lite", width_mult=0.25, num_classes=5,
                                                   num_segments=t, input_size=size, consensus="identity")))
    x = torch.randn(2, t, 3, size, size)
    with torch.no_grad():
        out = model.forward_intermediates(x, taps=["inception_3c:out"])
        sd = {k[len("base_model."):]: v for k, v in model.state_dict().items() if k.startswith("base_model.")}
        ref = reference_3d(sd, out.intermediates["inception_3c:out"], t)
        logits = F.linear(ref, model.state_dict()["head.new_fc.weight"], model.state_dict()["head.new_fc.bias"])
    assert out.frame_features.shape == (2, 1, ref.shape[1])
    torch.testing.assert_close(out.pooled_features, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.logits, logits, rtol=1e-5, atol=1e-6)


def test_2d_part_is_bninception_up_to_3c_double_3x3_1():
    eco = randomised(ECOLite(0.25))
    bni = BNInception(0.25).eval()
    bni.load_state_dict({**bni.state_dict(), **{k: v for k, v in eco.state_dict().items() if k in bni.state_dict()}})
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        y = bni.block("inception_3b", bni.block("inception_3a", bni.stem(x)))
        ref = F.relu(bni.inception_3c_double_3x3_1_bn(bni.inception_3c_double_3x3_1(
            F.relu(bni.inception_3c_double_3x3_reduce_bn(bni.inception_3c_double_3x3_reduce(y))))))
        got = eco.block("inception_3c", eco.block("inception_3b", eco.block("inception_3a", eco.stem(x))))
    torch.testing.assert_close(got, ref)


def test_names_and_structure_follow_eco_pytorch():
    eco = ECOLite(1.0)
    convs3d = [n for n, m in eco.named_modules() if isinstance(m, torch.nn.Conv3d)]
    bns3d = [n for n, m in eco.named_modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert sorted(convs3d) == sorted(ECO_3D_CONVS) and sorted(bns3d) == sorted(ECO_3D_BNS)
    assert all(getattr(eco, n).bias is not None and getattr(eco, n).kernel_size == (3, 3, 3) for n in convs3d)
    assert eco.res3a_2.weight.shape == (128, 96, 3, 3, 3)
    assert {n: getattr(eco, n).stride for n in ("res4a_1", "res4a_down", "res5a_1", "res5a_down")} == \
        {n: (2, 2, 2) for n in ("res4a_1", "res4a_down", "res5a_1", "res5a_down")}
    two_d = [k for k in eco.state_dict() if not k.startswith("res")]
    assert set(two_d) <= set(BNInception(1.0).state_dict())
    assert "inception_3c_double_3x3_1_bn.running_var" in two_d
    assert not any(k.startswith(("inception_3c_3x3", "inception_3c_double_3x3_2", "inception_4")) for k in two_d)
    # the fact sheet's count: 37,387,918 trainable parameters with a 174-way new_fc
    with torch.device("meta"):
        model = VideoClassifier(ModelConfig(backbone="eco_lite", consensus="identity"))
    assert count_params(model)["trainable"] == 37_387_918


@pytest.mark.parametrize("size,sizes_3d", [(112, (14, 7, 4)), (128, (16, 8, 4)), (160, (20, 10, 5)),
                                           (224, (28, 14, 7))])
@pytest.mark.parametrize("t", [8, 16])
def test_sizes_at_other_inputs(size, sizes_3d, t):
    cfg = ModelConfig(backbone="eco_lite", width_mult=0.25, num_classes=3, num_segments=t, input_size=size,
                      consensus="identity")
    with torch.device("meta"):
        model = VideoClassifier(cfg).eval()
        out = model.forward_intermediates(torch.empty(1, t, 3, size, size), taps=["res3:out", "res4:out", "res5:out"])
    depth = [t, math.ceil(t / 2), math.ceil(t / 4)]
    for (stage, s), d in zip(zip(("res3", "res4", "res5"), sizes_3d), depth):
        assert tuple(out.intermediates[f"{stage}:out"].shape[2:]) == (d, s, s), stage
    assert out.logits.shape == (1, 3)


def test_hf_sits_in_the_2d_part_only():
    model = build_model("hf_eco_lite_demo", num_classes=4).eval()
    assert model.hf_blocks == ("inception_3a", "inception_3b")
    out = model.inspect(torch.randn(1, 8, 3, 112, 112))
    assert set(out.gates) == {"inception_3a", "inception_3b"} and out.gates["inception_3a"].shape == (1, 8, 14, 14)
    # 3c's two layers are a per-frame site too; the 3D stages are not
    assert build_model("eco_lite_demo", hf_placement=["inception_3c"]).hf_blocks == ("inception_3c",)
    with pytest.raises(ConfigError, match="res4"):
        build_model("eco_lite_demo", hf_placement=["res4"])
    with pytest.raises(ConfigError):
        build_model("eco_lite_demo", temporal=[{"op": "tsm", "where": "block", "args": {}}])
    with pytest.raises(ConfigError, match="identity"):
        build_model("tsn_bninception_demo", consensus="identity")


def test_eco_is_order_aware_where_tsn_is_not():
    x = 50 * torch.randn(1, 8, 3, 64, 64)  # BN-Inception's 0-255 scale
    rev = x.flip(1)
    torch.manual_seed(0)  # default initialisation (random BN statistics silence the 3D part)
    eco = build_model("eco_lite_demo", input_size=64, num_classes=4).eval()
    tsn = build_model("tsn_bninception_demo", input_size=64, num_classes=4).eval()
    with torch.no_grad():
        a, b = eco.inspect(x).pooled_features, eco.inspect(rev).pooled_features
        assert (a - b).abs().max() > 0.01 * a.abs().max()  # the 3D part sees the order
        torch.testing.assert_close(tsn(x), tsn(rev), rtol=1e-4, atol=1e-5)


def test_flops_of_the_3d_part_by_hand():
    t, s, w = 16, 224, 1.0
    with torch.device("meta"):
        eco = VideoClassifier(ModelConfig(backbone="eco_lite", width_mult=w, num_segments=t, input_size=s,
                                          consensus="identity", num_classes=51))
    macs = count_flops(eco)["conv_linear_macs"]
    # 3D MACs: 27 * C_in * C_out per output voxel (bias additions are not counted)
    def m(cin, cout, d, h):
        return 27 * cin * cout * d * h * h
    three_d = (m(96, 128, 16, 28) + 2 * m(128, 128, 16, 28)
               + m(128, 256, 8, 14) * 2 + m(256, 256, 8, 14) * 3
               + m(256, 512, 4, 7) * 2 + m(512, 512, 4, 7) * 3)
    fc = 512 * 51
    with torch.device("meta"):  # the 2D part's MACs, counted on its own
        bb = ECOLite(w)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            y = bb.stem(torch.empty(t, 3, s, s))
            for name in ("inception_3a", "inception_3b", "inception_3c"):
                y = bb.block(name, y)
    assert macs == counter.get_total_flops() // 2 + three_d + fc


def eco_pytorch_checkpoint(model, path):
    """ECO-pytorch's file: DataParallel prefix, base_model.* and new_fc.*, no BN counters."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        sd["module." + (k[len("head."):] if k.startswith("head.") else k)] = v.clone()
    torch.save({"epoch": 40, "arch": "ECO", "state_dict": sd, "best_prec1": 70.1, "lr": 0.001}, path)
    return sd


def test_eco_pytorch_checkpoint_round_trip(tmp_path):
    model = randomised(build_model("eco_lite_demo", input_size=64, num_classes=6))
    sd = eco_pytorch_checkpoint(model, tmp_path / "eco_lite_rgb_16F_kinetics_v1.pth.tar")
    assert "module.base_model.res3a_2.weight" in sd and "module.base_model.res5b_bn.running_var" in sd
    assert detect_format(tmp_path / "eco_lite_rgb_16F_kinetics_v1.pth.tar") == "eco"
    with pytest.raises(CheckpointError, match="frames"):  # the file does not record them; never the name
        import_checkpoint(tmp_path / "eco_lite_rgb_16F_kinetics_v1.pth.tar")
    loaded = import_checkpoint(tmp_path / "eco_lite_rgb_16F_kinetics_v1.pth.tar", num_segments=8, input_size=64)
    assert loaded.config.backbone == "eco_lite" and loaded.config.consensus == "identity"
    assert loaded.config.width_mult == 0.25 and loaded.import_report["mapped"] == len(sd)
    x = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    # an extra or a missing tensor is named
    sd.pop("module.base_model.res4a_down.bias")
    torch.save({"state_dict": sd}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="res4a_down.bias"):
        import_checkpoint(tmp_path / "broken.pth", num_segments=8)


def test_registered_trainable_and_counted(tmp_path):
    from hfnet_core.complexity import model_rows
    from hfnet_core.config import TrainConfig
    from hfnet_core.model import available_models
    from hfnet_core.train import train

    names = set(available_models())
    assert {"eco_lite", "hf_eco_lite", "eco_lite_demo", "hf_eco_lite_demo", "gru_bninception",
            "hf_gru_bninception", "gru_bninception_demo", "hf_gru_bninception_demo", "epic_tsn_bninception",
            "epic_tsn_resnet50", "epic_tsm_resnet50", "mt_tsn_bninception", "mt_hf_tsn_bninception",
            "mt_tsn_bninception_demo", "mt_hf_tsn_bninception_demo"} <= names
    cfg = TrainConfig()
    cfg.model.name, cfg.model.input_size, cfg.model.num_segments = "hf_eco_lite_demo", 32, 4
    cfg.data.synth_train_per_class = cfg.data.synth_val_per_class = 1
    cfg.data.num_workers, cfg.data.augment = 0, False
    cfg.train.epochs, cfg.train.batch_size, cfg.train.max_steps_per_epoch = 1, 8, 1
    cfg.train.out_dir, cfg.train.progress = str(tmp_path / "run"), False
    result = train(cfg)
    assert np.isfinite(result.history[0]["train_loss"])
    rows = {r["label"]: r for r in model_rows()}
    assert rows["ECOLite"]["params_trainable"] == 37_387_918 - 513 * (174 - 51)  # a 51-way new_fc (512 -> 51)
    # HF after 3a (256 channels) and 3b (320): 2 x 3 x 3 x C weights + 1 bias each
    assert rows["HF-ECOLite"]["params_temporal"] == (18 * 256 + 1) + (18 * 320 + 1)
    assert "not verified" in rows["ECOLite"]["note"]


def test_2d_part_initialised_from_an_imagenet_bninception(tmp_path):
    from hfnet_core.importers import load_pretrained_backbone

    bni = randomised(BNInception(0.25))
    sd = {k: v for k, v in bni.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, bni.out_channels), torch.randn(1000)
    torch.save(sd, tmp_path / "bn_inception.pth")
    model = build_model("eco_lite_demo", num_classes=3)
    before = model.base_model.res4a_down.weight.detach().clone()
    report = load_pretrained_backbone(model, tmp_path / "bn_inception.pth")
    torch.testing.assert_close(model.base_model.inception_3b_pool_proj.weight, bni.inception_3b_pool_proj.weight)
    torch.testing.assert_close(model.base_model.inception_3c_double_3x3_1_bn.running_var,
                               bni.inception_3c_double_3x3_1_bn.running_var)
    torch.testing.assert_close(model.base_model.res4a_down.weight, before)
    assert "inception_4a_1x1.weight" in report.dropped and "fc.weight" in report.dropped
    assert any(f.startswith("res5b_bn.weight") for f in report.filled)
