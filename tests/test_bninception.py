"""BN-Inception backbone: Caffe layer names and shapes, spatial sizes at several inputs, Caffe pooling at 224.

The expected layer table below is restated from the Caffe BN-Inception prototxt (the one TSN/TSM/GSM
convert), not derived from hfnet_core's own table.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hfnet_core.backbones import BNInception, build_backbone

# block: (1x1, 3x3_reduce, 3x3, double_3x3_reduce, double_3x3, pool_proj); 0 = branch absent
CAFFE_BLOCKS = {
    "3a": (64, 64, 64, 64, 96, 32),
    "3b": (64, 64, 96, 64, 96, 64),
    "3c": (0, 128, 160, 64, 96, 0),
    "4a": (224, 64, 96, 96, 128, 128),
    "4b": (192, 96, 128, 96, 128, 128),
    "4c": (160, 128, 160, 128, 160, 128),
    "4d": (96, 128, 192, 160, 192, 128),
    "4e": (0, 128, 192, 192, 256, 0),
    "5a": (352, 192, 320, 160, 224, 128),
    "5b": (352, 192, 320, 192, 224, 128),
}
BLOCK_CHANNELS_W1 = [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
BLOCK_SIDES_224 = [28, 28, 14, 14, 14, 14, 14, 7, 7, 7]


def caffe_conv_shapes() -> dict[str, tuple[int, int, int, int]]:
    """Caffe layer name -> conv weight shape (out, in, k, k) at width 1."""
    shapes = {
        "conv1_7x7_s2": (64, 3, 7, 7),
        "conv2_3x3_reduce": (64, 64, 1, 1),
        "conv2_3x3": (192, 64, 3, 3),
    }
    c_in = 192
    for blk, (c1, r3, c3, rd, cd, proj) in CAFFE_BLOCKS.items():
        p = f"inception_{blk}"
        if c1:
            shapes[f"{p}_1x1"] = (c1, c_in, 1, 1)
        shapes[f"{p}_3x3_reduce"] = (r3, c_in, 1, 1)
        shapes[f"{p}_3x3"] = (c3, r3, 3, 3)
        shapes[f"{p}_double_3x3_reduce"] = (rd, c_in, 1, 1)
        shapes[f"{p}_double_3x3_1"] = (cd, rd, 3, 3)
        shapes[f"{p}_double_3x3_2"] = (cd, cd, 3, 3)
        if proj:
            shapes[f"{p}_pool_proj"] = (proj, c_in, 1, 1)
        c_in = c1 + c3 + cd + (proj if proj else c_in)
    return shapes


def expected_side(size: int) -> list[int]:
    """Side of each block output: what the conv branches compute (Caffe arithmetic)."""
    conv_s2 = lambda h: (h + 2 - 3) // 2 + 1  # noqa: E731  3x3, stride 2, pad 1
    pool_ceil = lambda h: math.ceil((h - 3) / 2) + 1  # noqa: E731  3x3, stride 2, ceil mode, no pad
    h = pool_ceil(pool_ceil((size + 6 - 7) // 2 + 1))  # conv1 7x7/2 pad 3, pool1, conv2 (same), pool2
    sides = []
    for blk in CAFFE_BLOCKS:
        if blk in ("3c", "4e"):
            h = conv_s2(h)
        sides.append(h)
    return sides


def block_outputs(backbone: BNInception, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of every block."""
    outs = []
    y = backbone.stem(x)
    for name in backbone.block_names:
        z = backbone.block(name, y)
        outs.append((y, z))
        y = z
    return outs


@pytest.fixture(scope="module")
def small() -> BNInception:
    torch.manual_seed(0)
    return BNInception(width_mult=0.25).eval()


@pytest.mark.parametrize("size", [112, 113, 128, 160, 224])
def test_spatial_sizes(small, size):
    with torch.no_grad():
        outs = block_outputs(small, torch.randn(1, 3, size, size) * 50)
        pooled = small(torch.randn(1, 3, size, size))
    sides = [z.shape[-1] for _, z in outs]
    assert sides == expected_side(size)
    assert all(z.shape[-2] == z.shape[-1] for _, z in outs)
    if size == 224:
        assert sides == BLOCK_SIDES_224
        assert [224 // small.block_strides[b] for b in small.block_names] == BLOCK_SIDES_224
    assert pooled.shape == (1, small.out_channels)


def test_block_channels_width1():
    torch.manual_seed(0)
    net = BNInception(1.0).eval()
    assert [net.block_channels[b] for b in net.block_names] == BLOCK_CHANNELS_W1
    assert net.out_channels == 1024
    with torch.no_grad():
        outs = block_outputs(net, torch.randn(1, 3, 64, 64))
    assert [z.shape[1] for _, z in outs] == BLOCK_CHANNELS_W1


def test_caffe_layer_names_and_shapes():
    net = BNInception(1.0)
    shapes = caffe_conv_shapes()
    convs = {n: m for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    bns = {n: m for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert set(convs) == set(shapes)
    assert set(bns) == {f"{n}_bn" for n in shapes}
    for name, shape in shapes.items():
        assert tuple(convs[name].weight.shape) == shape, name
        assert convs[name].bias is not None  # the Caffe convolutions carry biases
        assert bns[f"{name}_bn"].num_features == shape[0]
    for blk in ("3c", "4e"):  # stride-2 blocks: no 1x1, no pool projection
        assert not hasattr(net, f"inception_{blk}_1x1") and not hasattr(net, f"inception_{blk}_pool_proj")
    for name in ("conv1_7x7_s2", "conv1_7x7_s2_bn", "conv2_3x3_reduce", "conv2_3x3", "inception_3a_1x1",
                 "inception_5b_pool_proj_bn"):
        assert hasattr(net, name)
    assert net.block_names == tuple(f"inception_{b}" for b in CAFFE_BLOCKS)


@pytest.mark.parametrize("with_counter", [True, False])
def test_caffe_state_dict_loads_strictly(with_counter):
    """A state dict written with only the Caffe names (as converted files have) loads with strict=True."""
    torch.manual_seed(1)
    state = {}
    for name, shape in caffe_conv_shapes().items():
        state[f"{name}.weight"] = torch.randn(shape)
        state[f"{name}.bias"] = torch.randn(shape[0])
        state[f"{name}_bn.weight"] = torch.rand(shape[0]) + 0.5
        state[f"{name}_bn.bias"] = torch.randn(shape[0])
        state[f"{name}_bn.running_mean"] = torch.randn(shape[0])
        state[f"{name}_bn.running_var"] = torch.rand(shape[0]) + 0.5
        if with_counter:
            state[f"{name}_bn.num_batches_tracked"] = torch.tensor(7)
    net = BNInception(1.0)
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.inception_5b_pool_proj_bn.running_var, state["inception_5b_pool_proj_bn.running_var"])
    assert torch.equal(net.conv1_7x7_s2.weight, state["conv1_7x7_s2.weight"])


def test_caffe_pooling_exact_at_224(small, monkeypatch):
    """At 224 the stride-2 blocks' pool branch is a plain 3x3/2 ceil-mode max pool: no -inf padding."""
    pads = []
    real_pad = F.pad

    def spy_pad(x, pad, *args, **kwargs):
        pads.append(pad)
        return real_pad(x, pad, *args, **kwargs)

    monkeypatch.setattr(F, "pad", spy_pad)
    with torch.no_grad():
        outs = block_outputs(small, torch.randn(2, 3, 224, 224) * 50)
    assert pads == []
    for name, (x, z) in zip(small.block_names, outs):
        if name in ("inception_3c", "inception_4e"):
            plain = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
            assert torch.equal(z[:, -x.shape[1]:], plain)  # the pool branch is the last one in the concat
    # at 112 the 4e pool would be a pixel short: it is padded, and only then
    with torch.no_grad():
        outs = block_outputs(small, torch.randn(1, 3, 112, 112) * 50)
    assert len(pads) == 1
    x, z = outs[small.block_names.index("inception_4e")]
    plain = F.max_pool2d(x, 3, stride=2, ceil_mode=True)  # 3x3 while the convolutions give 4x4
    assert plain.shape[-1] == 3 and z.shape[-1] == 4
    assert torch.equal(z[:, -x.shape[1]:, :3, :3], plain)  # padding with -inf leaves the max unchanged


@pytest.mark.parametrize("width", [0.25, 0.5, 2.0])
def test_width_mult_keeps_blocks(width):
    net = build_backbone("bninception", width_mult=width)
    assert len(net.block_names) == 10 and net.block_names == BNInception.block_names
    for b, c in zip(net.block_names, BLOCK_CHANNELS_W1):
        assert abs(net.block_channels[b] - c * width) <= 4  # each branch rounds on its own
    if width < 1:
        with torch.no_grad():
            outs = block_outputs(net.eval(), torch.randn(1, 3, 64, 64))
        assert [z.shape[1] for _, z in outs] == [net.block_channels[b] for b in net.block_names]
    assert set(net.placement_presets) >= {"none", "last1", "last5", "all"}
    assert net.placement_presets["last5"] == tuple(f"inception_{b}" for b in ("4c", "4d", "4e", "5a", "5b"))


def test_rejects_bad_width():
    with pytest.raises(ValueError, match="width_mult"):
        BNInception(0.0)
