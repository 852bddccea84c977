"""GSM, the gate-shift module (Sudhakaran, Escalera and Lanz, CVPR 2020): HF's successor by the same
authors - a learned, spatially varying share of each channel group is shifted in time.

On a convolution's output x (N*T, C, H, W) with C divisible by 4, viewed as (N, C, T, H, W):

    g         = tanh(conv3d(ReLU(BN3d(x))))     grouped 3x3x3 convolution, 2 groups -> 2 gate maps
    y1        = g[0] * x[:C/2]                  gated part of the first half
    y2        = g[1] * x[C/2:]                  gated part of the second half
    out1      = shift_back(y1) + (x[:C/2] - y1)     frame t receives y1 of frame t + 1
    out2      = shift_fwd(y2)  + (x[C/2:] - y2)     frame t receives y2 of frame t - 1

(zero-padded at the clip ends), then inside each half the channels are reordered: a half of C/2
channels, read as a (2, C/4) grid, is transposed to (C/4, 2) and flattened, so output channel 2j + i of
a half is input channel i * C/4 + j. The published weights were trained with that order, so it is
reproduced exactly; with zero gates (a fresh module) GSM is that reordering and nothing else.

The BN3d only feeds the gate; the gated features are the convolution's raw output, and the original
then applies the convolution's own BatchNorm and ReLU (GSM sits between a convolution and its BN).

Placement on BN-Inception (the published model): after the first convolution of one branch in each of
the ten Inception blocks (``PLACES``). Parameter names: ``gsm.<conv>.conv3D.{weight,bias}`` and
``gsm.<conv>.bn.*`` - the original's ``base_model.gsm_<conv>.*`` moved to the operator's namespace.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from . import register_operator
from .base import Site, TemporalOperator

#: The ten convolutions of BN-Inception after which the published GSM model gates and shifts (their
#: output channels at full width: 64, 64, 128, 224, 192, 160, 96, 128, 352, 352).
PLACES: tuple[str, ...] = (
    "inception_3a_1x1", "inception_3b_1x1", "inception_3c_3x3_reduce", "inception_4a_1x1",
    "inception_4b_1x1", "inception_4c_1x1", "inception_4d_1x1", "inception_4e_3x3_reduce",
    "inception_5a_1x1", "inception_5b_1x1",
)


def _shift_back(y: Tensor) -> Tensor:
    """(N, C, T, H, W): frame t takes frame t + 1's values; zeros at the last frame."""
    return F.pad(y[:, :, 1:], (0, 0, 0, 0, 0, 1))


def _shift_forward(y: Tensor) -> Tensor:
    """(N, C, T, H, W): frame t takes frame t - 1's values; zeros at the first frame."""
    return F.pad(y[:, :, :-1], (0, 0, 0, 0, 1, 0))


def interleave_half(y: Tensor) -> Tensor:
    """(N, C/2, T, H, W): channels read as a (2, C/4) grid, transposed to (C/4, 2), flattened."""
    n, half, t, h, w = y.shape
    return y.reshape(n, 2, half // 2, t, h, w).transpose(1, 2).reshape(n, half, t, h, w)


@register_operator("gsm")
class GateShift(TemporalOperator):
    """One gate-shift site (between a convolution and its BatchNorm)."""

    default_side = "out"
    map_meanings = {
        "gate_backward": "share of the first channel half that moves one frame back (frame t receives it from t+1)",
        "gate_forward": "share of the second channel half that moves one frame forward (frame t receives it from t-1)",
    }

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels % 4:
            raise ConfigError(f"gsm needs a channel count divisible by 4, got {channels}")
        self.channels = channels
        self.conv3D = nn.Conv3d(channels, 2, (3, 3, 3), stride=1, padding=(1, 1, 1), groups=2)
        nn.init.zeros_(self.conv3D.weight)
        nn.init.zeros_(self.conv3D.bias)
        self.bn = nn.BatchNorm3d(channels)

    @classmethod
    def from_args(cls, channels: int, args: Mapping[str, Any]) -> "GateShift":
        if args:
            raise ConfigError(f"gsm takes no options, got {sorted(args)}")
        return cls(channels)

    @classmethod
    def presets(cls, backbone: Any, args: Mapping[str, Any]) -> dict[str, tuple[Site, ...]]:
        if getattr(backbone, "family", "") != "bninception":
            return {}
        return {"all": tuple(Site(p, "out") for p in PLACES)}

    def macs(self, input_shape: tuple[int, int, int, int]) -> int:
        nt, c, h, w = input_shape
        return 27 * c * nt * h * w  # 2 gates, each 3x3x3 over C/2 channels

    def elementwise_ops(self, input_shape: tuple[int, int, int, int]) -> int:
        """tanh per gate pixel; gating product, remainder and sum (3 per element)."""
        nt, c, h, w = input_shape
        return 2 * nt * h * w + 3 * nt * c * h * w

    def cost(self, input_shape: tuple[int, int, int, int]) -> dict[str, int]:
        """The gate convolution plus its BN3d (2 per element) and ReLU (1 per element), counted like every
        other BN and ReLU: that reproduces the GSM paper's +0.09G over TSN (16.46G vs 16.37G, 8 frames)."""
        nt, c, h, w = input_shape
        return {"macs": self.macs(input_shape), "bn": 2 * nt * c * h * w, "relu": nt * c * h * w,
                "elementwise": self.elementwise_ops(input_shape)}

    def forward(self, x: Tensor, num_segments: int, inspect: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        nt, c, h, w = x.shape
        if nt % num_segments:
            raise ValueError(f"batch of {nt} frames is not a multiple of num_segments={num_segments}")
        n = nt // num_segments
        v = x.reshape(n, num_segments, c, h, w).permute(0, 2, 1, 3, 4)  # (N, C, T, H, W)
        gate = torch.tanh(self.conv3D(F.relu(self.bn(v))))  # (N, 2, T, H, W)
        half = c // 2
        x1, x2 = v[:, :half], v[:, half:]
        y1, y2 = gate[:, :1] * x1, gate[:, 1:] * x2
        out1 = interleave_half(_shift_back(y1) + (x1 - y1))
        out2 = interleave_half(_shift_forward(y2) + (x2 - y2))
        out = torch.cat([out1, out2], dim=1).permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)
        return out, {"gate_backward": gate[:, 0], "gate_forward": gate[:, 1]}
