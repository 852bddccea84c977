"""TSM, the temporal shift module (Lin, Gan and Han, ICCV 2019): move a fixed share of channels in time.

For an input of C channels and ``shift_div`` d, with fold = C // d (integer division, as the original):

    out[t, :fold]         = x[t + 1, :fold]          (frame t receives the next frame's channels)
    out[t, fold:2*fold]   = x[t - 1, fold:2*fold]    (frame t receives the previous frame's channels)
    out[t, 2*fold:]       = x[t, 2*fold:]            (the rest stays)

with zeros where t + 1 or t - 1 falls outside the clip. No parameters, no multiply-adds.

Placements (the original's ``shift_place``):
* ``blockres`` - before the first convolution of each residual branch (site ``layerS.i.conv1:in``): the
  shortcut keeps the unshifted features. On ResNet-101 (and deeper: a stage of >= 23 blocks) only every
  second block of each stage is shifted, as in the original (the checkpoint shows which: only shifted
  convolutions carry ``.net.`` in their names).
* ``block`` - before the whole residual block (site ``layerS.i:in``): the shortcut sees shifted features.
* BN-Inception: the original shifts functionally (no wrapper module, so its checkpoints carry TSN's key
  names), once on the input of each stage after the first - the input of ``conv2_3x3_reduce`` and of
  each Inception block 3a ... 5b, before all of a block's branches (``block``, 11 sites). Its residual
  variant cannot run on Inception blocks (their shapes change), so ``blockres`` does not exist there.

Inspection map ``from_neighbours`` (only when inspecting): per pixel, the share of the output's feature
magnitude (sum over channels of |out|) that came from the neighbouring frames - what the module actually
moved, since a fixed 2/d of the channels says nothing about how much signal they carry.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import ConfigError
from . import register_operator
from .base import Site, TemporalOperator

DEFAULT_SHIFT_DIV = 8


def temporal_shift(x: Tensor, num_segments: int, shift_div: int = DEFAULT_SHIFT_DIV) -> Tensor:
    """The shift on the (N*T, C, H, W) layout; any memory format in, the same memory format out."""
    nt, c, h, w = x.shape
    if nt % num_segments:
        raise ValueError(f"batch of {nt} frames is not a multiple of num_segments={num_segments}")
    fold = c // shift_div
    v = x.unflatten(0, (nt // num_segments, num_segments))
    out = torch.empty_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, -1:, :fold] = 0
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
    out[:, :1, fold:2 * fold] = 0
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.flatten(0, 1)


def shifted_stages(backbone: Any) -> dict[str, list[str]]:
    """Residual blocks per stage ({"layer1": ["layer1.0", ...], ...}) of a ResNet backbone."""
    stages: dict[str, list[str]] = {}
    for b in backbone.block_names:
        stages.setdefault(b.split(".")[0], []).append(b)
    return stages


@register_operator("tsm")
class TemporalShift(TemporalOperator):
    """One temporal shift site. Args: ``shift_div`` (default 8: a quarter of the channels move)."""

    default_side = "in"
    map_meanings = {
        "from_neighbours": "share of the feature magnitude at each pixel that came from the previous or next frame",
    }

    def __init__(self, channels: int, shift_div: int = DEFAULT_SHIFT_DIV) -> None:
        super().__init__()
        self.channels = channels
        self.shift_div = shift_div

    def extra_repr(self) -> str:
        return f"channels={self.channels}, shift_div={self.shift_div}, fold={self.channels // self.shift_div}"

    @classmethod
    def from_args(cls, channels: int, args: Mapping[str, Any]) -> "TemporalShift":
        unknown = set(args) - {"shift_div", "place"}
        if unknown:
            raise ConfigError(f"tsm: unknown options {sorted(unknown)}; TSM takes shift_div (and place)")
        div = args.get("shift_div", DEFAULT_SHIFT_DIV)
        if isinstance(div, bool) or not isinstance(div, int) or not 2 <= div <= 1024:
            raise ConfigError(f"tsm: shift_div must be an integer in 2..1024, got {div!r}")
        return cls(channels, div)

    @classmethod
    def presets(cls, backbone: Any, args: Mapping[str, Any]) -> dict[str, tuple[Site, ...]]:
        family = getattr(backbone, "family", "")
        place = args.get("place", "blockres" if family == "resnet" else "block")
        if family == "resnet":
            stages = shifted_stages(backbone)
            # The original shifts every second block when a stage is very deep (ResNet-101's 23 blocks).
            n_round = 2 if any(len(blocks) >= 23 for blocks in stages.values()) else 1
            blockres = tuple(Site(f"{b}.conv1", "in") for blocks in stages.values()
                             for i, b in enumerate(blocks) if i % n_round == 0)
            block = tuple(Site(b, "in") for blocks in stages.values() for b in blocks)
            presets = {"blockres": blockres, "block": block}
        elif family == "bninception":
            presets = {"block": (Site("conv2_3x3_reduce", "in"),) + tuple(Site(b, "in") for b in backbone.block_names)}
        else:
            presets = {}
        if place not in presets:
            raise ConfigError(f"tsm: place {place!r} is not available on this backbone; choose one of "
                              f"{sorted(presets)}")
        presets["all"] = presets[place]
        return presets

    def macs(self, input_shape: tuple[int, int, int, int]) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "shift_div": self.shift_div, "fold": self.channels // self.shift_div}

    def forward(self, x: Tensor, num_segments: int, inspect: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        out = temporal_shift(x, num_segments, self.shift_div)
        if not inspect:
            return out, {}
        nt, c, h, w = out.shape
        mag = out.detach().abs()
        moved = mag[:, : 2 * (c // self.shift_div)].sum(dim=1)
        share = moved / mag.sum(dim=1).clamp_min(1e-12)
        return out, {"from_neighbours": share.reshape(nt // num_segments, num_segments, h, w)}
