"""ResNet backbones: torchvision's names and shapes, parameter counts, block outputs, HF placement."""

from __future__ import annotations

import pytest
import torch

from hfnet_core.backbones import available_backbones, backbone_input_convention, build_backbone
from hfnet_core.checkpoint import load_checkpoint, save_checkpoint
from hfnet_core.input_convention import InputConvention
from hfnet_core.model import available_models, build_model


def torchvision_keys(depth: int) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of torchvision's resnet{depth} (without fc) and its shape, from the paper's
    architecture table (He et al. 2016, Table 1) - written independently of hfnet's implementation."""
    bottleneck = depth >= 50
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    keys: dict[str, tuple[int, ...]] = {}

    def bn(name: str, c: int) -> None:
        keys.update({f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,),
                     f"{name}.running_var": (c,), f"{name}.num_batches_tracked": ()})

    keys["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    c_in = 64
    for s, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for j in range(n):
            b = f"layer{s}.{j}"
            if bottleneck:
                out = planes * 4
                keys[f"{b}.conv1.weight"] = (planes, c_in, 1, 1)
                bn(f"{b}.bn1", planes)
                keys[f"{b}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{b}.bn2", planes)
                keys[f"{b}.conv3.weight"] = (out, planes, 1, 1)
                bn(f"{b}.bn3", out)
            else:
                out = planes
                keys[f"{b}.conv1.weight"] = (planes, c_in, 3, 3)
                bn(f"{b}.bn1", planes)
                keys[f"{b}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{b}.bn2", planes)
            if j == 0 and (s > 1 or c_in != out):
                keys[f"{b}.downsample.0.weight"] = (out, c_in, 1, 1)
                bn(f"{b}.downsample.1", out)
            c_in = out
    return keys


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_names_and_shapes(depth):
    sd = build_backbone(f"resnet{depth}").state_dict()
    expected = torchvision_keys(depth)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected


@pytest.mark.parametrize("depth,param_tensors,state_entries,params", [
    (18, 62, 122, 11_689_512),
    (50, 161, 320, 25_557_032),
])
def test_counts_match_torchvision(depth, param_tensors, state_entries, params):
    """torchvision's published counts, with its 1000-class fc (2 tensors, out*1000 + 1000 parameters)."""
    bb = build_backbone(f"resnet{depth}")
    assert len(list(bb.parameters())) + 2 == param_tensors
    assert len(bb.state_dict()) + 2 == state_entries
    assert sum(p.numel() for p in bb.parameters()) + bb.out_channels * 1000 + 1000 == params
    assert bb.out_channels == (512 if depth == 18 else 2048)


def test_spot_check_keys():
    sd = build_backbone("resnet50").state_dict()
    assert tuple(sd["layer4.0.downsample.0.weight"].shape) == (2048, 1024, 1, 1)
    assert tuple(sd["layer3.5.conv3.weight"].shape) == (1024, 256, 1, 1)
    assert tuple(sd["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3)  # stride on the 3x3 (v1.5)
    assert "fc.weight" not in sd
    assert "resnet18" in available_backbones() and "resnet50" in available_backbones()


@pytest.mark.parametrize("depth", [18, 50])
def test_blocks_channels_strides_and_outputs(depth):
    bb = build_backbone(f"resnet{depth}", width_mult=0.25).eval()
    n = (2, 2, 2, 2) if depth == 18 else (3, 4, 6, 3)
    assert bb.block_names == tuple(f"layer{s}.{j}" for s in range(1, 5) for j in range(n[s - 1]))
    exp = 1 if depth == 18 else 4
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        y = bb.stem(x)
        assert y.shape[-1] == 128 // 4
        for name in bb.block_names:
            y = bb.block(name, y)
            stage = int(name[5])
            assert y.shape[1] == bb.block_channels[name] == 16 * 2 ** (stage - 1) * exp
            assert y.shape[-1] == 128 // bb.block_strides[name]
        assert bb.pool(y).shape == (2, bb.out_channels)
        assert torch.equal(bb.pool(y), bb(x))
    assert backbone_input_convention(f"resnet{depth}") == InputConvention.imagenet_rgb()


@pytest.mark.parametrize("size", [112, 160, 224])
def test_other_input_sizes(size):
    bb = build_backbone("resnet18", width_mult=0.25).eval()
    with torch.no_grad():
        assert bb(torch.randn(1, 3, size, size)).shape == (1, 128)


def test_placement_presets():
    bb = build_backbone("resnet18", width_mult=0.25)
    p = bb.placement_presets
    assert p["none"] == ()
    assert p["all"] == bb.block_names and len(p["all"]) == 8
    assert p["stages"] == ("layer1.1", "layer2.1", "layer3.1", "layer4.1")
    assert p["last1"] == ("layer4.1",)
    assert p["last_stage"] == ("layer4.0", "layer4.1")
    assert build_backbone("resnet50", width_mult=0.25).placement_presets["stages"] == (
        "layer1.2", "layer2.3", "layer3.5", "layer4.2")


def test_registered_models_build():
    names = available_models()
    for n in ("tsn_resnet50", "hf_tsn_resnet50", "tsn_resnet18", "hf_tsn_resnet18",
              "tsn_resnet18_demo", "hf_tsn_resnet18_demo", "tsn_resnet50_demo", "hf_tsn_resnet50_demo"):
        assert n in names
    m = build_model("hf_tsn_resnet18_demo", num_classes=7)
    assert m.config.backbone == "resnet18" and m.config.width_mult == 0.25
    assert m.input_convention == InputConvention.imagenet_rgb()


def _randomise_gates(model):
    with torch.no_grad():
        for p in model.gate_parameters():
            p.normal_(0, 0.05)


def test_hf_after_blocks_and_stages():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 64, 64)
    m = build_model("tsn_resnet18_demo", num_classes=5, num_segments=4, hf_placement="stages").eval()
    assert m.hf_blocks == ("layer1.1", "layer2.1", "layer3.1", "layer4.1")
    # module names cannot hold ".": stored as layer1_1, reported under the public block name
    assert "hf.layer1_1.gate.weight" in m.state_dict()
    tsn = build_model("tsn_resnet18_demo", num_classes=5, num_segments=4).eval()
    tsn.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("hf.")})
    with torch.no_grad():
        ins = m.inspect(x)
        assert set(ins.gates) == set(m.hf_blocks)
        assert ins.gates["layer3.1"].shape == (2, 4, 4, 4)  # stride 16 at 64 px
        assert torch.allclose(ins.logits, tsn(x), atol=1e-6)  # fresh HF = identity
        _randomise_gates(m)
        assert not torch.allclose(m(x), tsn(x), atol=1e-4)  # gates now move features between frames

    # Conservation: with TSN's linear consensus, HF after the last block cannot change eval logits.
    last = build_model("tsn_resnet18_demo", num_classes=5, num_segments=4, hf_placement="last1").eval()
    last.load_state_dict(tsn.state_dict(), strict=False)
    _randomise_gates(last)
    with torch.no_grad():
        assert (last(x) - tsn(x)).abs().max() < 1e-5
        assert last.inspect(x).gates["layer4.1"].abs().max() > 0


def test_short_and_list_placements():
    m = build_model("tsn_resnet18_demo", num_classes=3, hf_placement="layer2.0,layer4.1")
    assert m.hf_blocks == ("layer2.0", "layer4.1")
    with pytest.raises(ValueError, match="not a block"):
        build_model("tsn_resnet18_demo", num_classes=3, hf_placement="layer9.0")


def test_checkpoint_roundtrip_with_dotted_blocks(tmp_path):
    torch.manual_seed(1)
    m = build_model("hf_tsn_resnet18_demo", num_classes=4, num_segments=3).eval()
    _randomise_gates(m)
    path = save_checkpoint(tmp_path / "r18.safetensors", m, ["a", "b", "c", "d"])
    loaded = load_checkpoint(path)
    x = torch.randn(1, 3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), m(x))
        assert set(loaded.model.inspect(x).gates) == set(m.base_model.block_names)
