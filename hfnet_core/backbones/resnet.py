"""ResNet-18/34/50/101 with torchvision's parameter names, as the ``Backbone`` of a video model.

Names follow torchvision exactly (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``layerN.0.downsample.0/1``,
Bottleneck ``conv3``/``bn3``) so that torchvision, timm and TSN/TSM state dicts load strictly after at most a
prefix change. The Bottleneck puts its stride on the 3x3 convolution (torchvision's "ResNet v1.5", also
mmaction2's default ``style='pytorch'``). There is no ``fc``: the classifier is the video head's
``new_fc``.

Blocks are the residual blocks, named as torchvision names them ("layer1.0", "layer1.1", ...): an HF module
may follow any of them. ``width_mult`` scales every width (64, 128, 256, 512 and the stem) and keeps the
depth, so a placement means the same thing at any width. Input: (B, 3, H, W) RGB in 0-1 normalised by
ImageNet mean/std (``InputConvention.imagenet_rgb()``); any size whose stride-32 output is at least 1 px.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..input_convention import InputConvention
from ..temporal.base import TemporalRun, plain_run
from . import register_backbone
from .base import Backbone, conv_bn_relu

#: depth -> (block type, blocks per stage), as in the ResNet paper (He et al., 2016, Table 1).
SPECS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
_STAGE_PLANES = (64, 128, 256, 512)
_STAGE_STRIDES = (1, 2, 2, 2)


def _w(c: int, width_mult: float) -> int:
    return max(1, int(round(c * width_mult)))


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity (or 1x1 projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _projection(c_in, planes, stride)

    def forward(self, x: Tensor, run: TemporalRun | None = None, name: str = "") -> Tensor:
        run = run or plain_run()
        out = conv_bn_relu(run, f"{name}.conv1", self.conv1, self.bn1, x, bn_name=f"{name}.bn1")
        out = conv_bn_relu(run, f"{name}.conv2", self.conv2, self.bn2, out, relu=False, bn_name=f"{name}.bn2")
        return _residual_relu(run, name, out, x, self.downsample)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand (x4); ResNet-50/101."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = _conv(c_in, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, out, 1)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = _projection(c_in, out, stride)

    def forward(self, x: Tensor, run: TemporalRun | None = None, name: str = "") -> Tensor:
        run = run or plain_run()
        y = conv_bn_relu(run, f"{name}.conv1", self.conv1, self.bn1, x, bn_name=f"{name}.bn1")
        y = conv_bn_relu(run, f"{name}.conv2", self.conv2, self.bn2, y, bn_name=f"{name}.bn2")
        y = conv_bn_relu(run, f"{name}.conv3", self.conv3, self.bn3, y, relu=False, bn_name=f"{name}.bn3")
        return _residual_relu(run, name, y, x, self.downsample)


def _residual_relu(run: TemporalRun, name: str, branch: Tensor, x: Tensor, downsample: nn.Module | None) -> Tensor:
    """ReLU(branch + shortcut); the shortcut is the block input (or its 1x1 projection), never shifted."""
    shortcut = x if downsample is None else downsample(x)
    return nn.functional.relu(branch + shortcut, inplace=run.inplace_ok)


def _projection(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    """torchvision's ``downsample``: 1x1 conv (``.0``) + BN (``.1``) where the shape changes."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(_conv(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out))


class ResNet(Backbone):
    """ResNet of ``depth`` 18, 34, 50 or 101 with torchvision names, run block by block.

    Placement presets: ``none``; ``last1`` (after the final block); ``stages`` (after the last block of
    each of the four stages); ``last_stage`` (after every block of layer4); ``all`` (after every
    residual block).
    """

    family = "resnet"

    def __init__(self, depth: int = 50, width_mult: float = 1.0) -> None:
        super().__init__()
        if depth not in SPECS:
            raise ValueError(f"ResNet depth must be one of {sorted(SPECS)}, got {depth}")
        if not 0 < width_mult <= 4:
            raise ValueError(f"width_mult must be in (0, 4], got {width_mult}")
        self.depth = depth
        self.width_mult = width_mult
        kind, counts = SPECS[depth]
        block_cls = BasicBlock if kind == "basic" else Bottleneck

        c = _w(64, width_mult)
        self.conv1 = nn.Conv2d(3, c, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        names: list[str] = []
        channels: dict[str, int] = {}
        in_channels: dict[str, int] = {}
        strides: dict[str, int] = {}
        stride_so_far = 4  # conv1 (2) x maxpool (2)
        stage_last: list[str] = []
        for i, (planes, n, s) in enumerate(zip(_STAGE_PLANES, counts, _STAGE_STRIDES), start=1):
            p = _w(planes, width_mult)
            blocks = []
            for j in range(n):
                in_channels[f"layer{i}.{j}"] = c
                blk = block_cls(c, p, s if j == 0 else 1)
                blocks.append(blk)
                c = p * block_cls.expansion
                name = f"layer{i}.{j}"
                names.append(name)
                channels[name] = c
                strides[name] = stride_so_far * s
            stride_so_far *= s
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            stage_last.append(names[-1])

        self.block_names = tuple(names)
        self.block_channels = channels
        self.block_in_channels = in_channels
        self.block_strides = strides
        self.out_channels = c
        self.placement_presets = {
            "none": (),
            "last1": self.block_names[-1:],
            "stages": tuple(stage_last),
            "last_stage": tuple(b for b in self.block_names if b.startswith("layer4.")),
            "all": self.block_names,
        }
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation: Kaiming-normal (fan_out) convolutions, BN weight 1 / bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x: Tensor, run: TemporalRun | None = None) -> Tensor:
        run = run or plain_run()
        return self.maxpool(conv_bn_relu(run, "conv1", self.conv1, self.bn1, x, bn_name="bn1"))

    def block(self, name: str, x: Tensor, run: TemporalRun | None = None) -> Tensor:
        stage, _, index = name.partition(".")
        if name not in self.block_channels:
            raise KeyError(f"{name!r} is not a block of this ResNet; blocks: {list(self.block_names)}")
        return getattr(self, stage)[int(index)](x, run or plain_run(), name)


def resnet18(width_mult: float = 1.0) -> ResNet:
    return ResNet(18, width_mult)


def resnet34(width_mult: float = 1.0) -> ResNet:
    return ResNet(34, width_mult)


def resnet50(width_mult: float = 1.0) -> ResNet:
    return ResNet(50, width_mult)


def resnet101(width_mult: float = 1.0) -> ResNet:
    return ResNet(101, width_mult)


for _name, _factory in (("resnet18", resnet18), ("resnet34", resnet34), ("resnet50", resnet50),
                        ("resnet101", resnet101)):
    register_backbone(_name, _factory, InputConvention.imagenet_rgb)
