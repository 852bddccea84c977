"""ECO-Lite (Zolfaghari et al., ECCV 2018): a per-frame 2D BN-Inception stem, then a 3D ResNet-18 over the
stacked frames - one feature vector per *clip*, not per frame.

Layers and names follow ECO-pytorch, so its training checkpoints (``module.base_model.*``) load strictly
(``hfnet_core/importers/eco.py``); docs/eco.md has the full layer table.

* **2D part** (per frame): BN-Inception with its Caffe names from ``conv1_7x7_s2`` through the complete
  blocks ``inception_3a`` and ``inception_3b``, then only the first two layers of 3c's double-3x3 branch,
  ``inception_3c_double_3x3_reduce`` (320 -> 64, 1x1) and ``inception_3c_double_3x3_1`` (64 -> 96, 3x3,
  stride 1), each with its BN and ReLU: (N*T, 96, 28, 28) at 224 px. It is ``BNInception`` built with
  ``last_block="inception_3b"`` plus those two layers - one BN-Inception implementation, not two.
* **2D -> 3D**: (N*T, 96, H, W) is viewed as (N, T, 96, H, W) and transposed to (N, 96, T, H, W): frame
  order becomes the depth axis.
* **3D part** (ResNet-18 stages res3, res4, res5; every convolution 3x3x3, padding 1, *with* bias): BN3d +
  ReLU come *after* each residual sum, and the identity shortcuts carry the pre-BN tensors (``res3a_2``,
  the sums ``res4a``, ``res5a``); the first block of res4 and res5 downsamples by 2 in time and space, its
  shortcut a 3x3x3 stride-2 convolution without BN (``res4a_down``, ``res5a_down``) on the post-BN-ReLU
  input. Sizes at 224 px and 16 frames: (96, 16, 28, 28) -> res3 (128, 16, 28, 28) -> res4 (256, 8, 14, 14)
  -> res5 (512, 4, 7, 7).
* **Pool**: the average over all of (T', H', W'), i.e. ECO's AvgPool3d((T/4, 7, 7)) at 224 px with T a
  multiple of 4 - and still a global average at other sizes (112 px: 14 -> 7 -> 4) and frame counts, where
  ECO's fixed kernel would not cover the clip.

Blocks for ``VideoClassifier``: ``inception_3a``, ``inception_3b`` and ``inception_3c`` (the two 3c layers)
carry per-frame (N*T, C, H, W) tensors - temporal operators (HF) may follow them; ``res3``, ``res4``,
``res5`` carry (N, C, T', H', W') clip tensors and are no sites (their tensors can still be tapped by
``forward_intermediates``). ``output_frames(T) == 1``: the head sees one clip feature.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..temporal.base import TemporalRun, plain_run
from .bninception import _BLOCKS, BNInception, _w

#: ECO's 3D stages: (stage, output channels, stride of its first block).
RES_STAGES: tuple[tuple[str, int, int], ...] = (("res3", 128, 1), ("res4", 256, 2), ("res5", 512, 2))
#: Names of the 2D blocks and of the 3D stages, input to output.
ECO_2D_BLOCKS = ("inception_3a", "inception_3b", "inception_3c")
ECO_3D_STAGES = tuple(s for s, _, _ in RES_STAGES)


def _conv3d(c_in: int, c_out: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=True)


class ECOLite(BNInception):
    """ECO-Lite with ECO-pytorch's layer names; input (B = N*T, 3, H, W) BGR 0-255 minus [104, 117, 128].

    ``width_mult`` scales every width of both parts (1.0 = the published network).
    """

    family = "eco"

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__(width_mult, last_block="inception_3b")
        w = lambda c: _w(c, width_mult)  # noqa: E731
        spec_3c = next(b for b in _BLOCKS if b[0] == "3c")
        reduce_3c, double_3c = spec_3c[4], spec_3c[5]  # 64, 96
        c_in = self.block_channels["inception_3b"]
        self._conv_bn("inception_3c_double_3x3_reduce", c_in, w(reduce_3c), 1, 1, 0)
        self._conv_bn("inception_3c_double_3x3_1", w(reduce_3c), w(double_3c), 3, 1, 1)
        self.block_in_channels = {**self.block_in_channels, "inception_3c": c_in}
        self.block_channels = {**self.block_channels, "inception_3c": w(double_3c)}
        self.block_strides = {**self.block_strides, "inception_3c": self.block_strides["inception_3b"]}
        c = w(double_3c)
        for stage, planes, stride in RES_STAGES:
            p = w(planes)
            a, b = f"{stage}a", f"{stage}b"
            if stride == 1:  # res3: one conv from the 2D features, then one residual block
                setattr(self, f"{a}_2", _conv3d(c, p))
                setattr(self, f"{a}_bn", nn.BatchNorm3d(p))
            else:  # a downsampling residual block: two convs, and a 3x3x3 stride-2 shortcut conv (no BN)
                setattr(self, f"{a}_1", _conv3d(c, p, stride))
                setattr(self, f"{a}_1_bn", nn.BatchNorm3d(p))
                setattr(self, f"{a}_2", _conv3d(p, p))
                setattr(self, f"{a}_down", _conv3d(c, p, stride))
                setattr(self, f"{a}_bn", nn.BatchNorm3d(p))
            setattr(self, f"{b}_1", _conv3d(p, p))
            setattr(self, f"{b}_1_bn", nn.BatchNorm3d(p))
            setattr(self, f"{b}_2", _conv3d(p, p))
            setattr(self, f"{b}_bn", nn.BatchNorm3d(p))
            c = p
        self.block_names = ECO_2D_BLOCKS + ECO_3D_STAGES
        self.placement_presets = {"none": (), "last1": ("inception_3b",), "all": ("inception_3a", "inception_3b")}
        self.out_channels = c

    # --- the frames -> clip contract --------------------------------------------------------------

    def output_frames(self, num_segments: int) -> int:
        """One clip feature, whatever the frame count."""
        return 1

    def pool(self, x: Tensor) -> Tensor:
        """(N, C, T', H', W') -> (N, C): the average over the whole clip volume (ECO's global_pool)."""
        return F.avg_pool3d(x, kernel_size=tuple(x.shape[2:])).flatten(1)

    # --- blocks ------------------------------------------------------------------------------------

    def block(self, name: str, x: Tensor, run: TemporalRun | None = None) -> Tensor:
        run = run or plain_run()
        if name in ("inception_3a", "inception_3b"):
            return super().block(name, x, run)
        if name == "inception_3c":
            return self._cbr("inception_3c_double_3x3_1", self._cbr("inception_3c_double_3x3_reduce", x, run), run)
        if name == "res3":
            return self._res3(self._to_clip(x, run.num_segments), run)
        if name in ("res4", "res5"):
            return self._down_stage(name, x, run)
        raise KeyError(f"{name!r} is not a block of ECO-Lite; blocks: {list(self.block_names)}")

    @staticmethod
    def _to_clip(x: Tensor, num_segments: int) -> Tensor:
        """(N*T, C, H, W) -> (N, C, T, H, W), frames in order along the depth axis."""
        nt, c, h, w = x.shape
        if nt % num_segments:
            raise ConfigError(f"ECO-Lite got {nt} frames, not a multiple of num_segments={num_segments}")
        return x.view(nt // num_segments, num_segments, c, h, w).transpose(1, 2)

    def _bn_relu(self, run: TemporalRun, bn_name: str, relu_name: str, x: Tensor) -> Tensor:
        y = run.at(bn_name, "out", getattr(self, bn_name)(x))
        return run.at(relu_name, "out", F.relu(y, inplace=run.inplace_ok))

    def _conv(self, run: TemporalRun, name: str, x: Tensor) -> Tensor:
        return run.at(name, "out", getattr(self, name)(run.at(name, "in", x)))

    def _res3(self, x: Tensor, run: TemporalRun) -> Tensor:
        a = self._conv(run, "res3a_2", x)  # pre-BN: the shortcut of res3b
        h = self._bn_relu(run, "res3a_bn", "res3a_relu", a)
        return self._second_block("res3", h, a, run)

    def _down_stage(self, stage: str, x: Tensor, run: TemporalRun) -> Tensor:
        """res4 / res5: x is the previous stage's post-BN-ReLU output."""
        a = f"{stage}a"
        h = self._bn_relu(run, f"{a}_1_bn", f"{a}_1_relu", self._conv(run, f"{a}_1", x))
        s = run.at(a, "out", self._conv(run, f"{a}_2", h) + self._conv(run, f"{a}_down", x))  # pre-BN sum
        h = self._bn_relu(run, f"{a}_bn", f"{a}_relu", s)
        return self._second_block(stage, h, s, run)

    def _second_block(self, stage: str, h: Tensor, shortcut: Tensor, run: TemporalRun) -> Tensor:
        """``<stage>b``: two convs on the post-BN-ReLU tensor, plus the pre-BN shortcut, then BN + ReLU."""
        b = f"{stage}b"
        y = self._bn_relu(run, f"{b}_1_bn", f"{b}_1_relu", self._conv(run, f"{b}_1", h))
        s = run.at(b, "out", self._conv(run, f"{b}_2", y) + shortcut)
        return self._bn_relu(run, f"{b}_bn", f"{b}_relu", s)
