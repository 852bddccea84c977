"""BN-Inception (Inception v2) with the layer names of the Caffe conversion used by TSN, TSM and GSM.

Every layer is a direct attribute named after its Caffe layer (``conv1_7x7_s2``, ``inception_3a_1x1_bn``,
..., ``inception_5b_pool_proj_bn``); convolutions carry biases and pooling uses ceil mode, exactly as in
that conversion. That is what makes a state dict of that family load with ``strict=True`` and no key
renaming. ``width_mult`` scales every convolution's width (1.0 = the paper's network) while keeping the
same ten Inception blocks 3a ... 5b, so an HF placement means the same thing at any width.

Sizes other than 224: the stride-2 blocks (3c, 4e) concatenate a 3x3/2 ceil-mode max pool with stride-2
convolutions; on odd inputs the pool comes out one pixel smaller. We then pad the pool's input by one
pixel (with -inf, so the max is unchanged) on the bottom/right only - never at 224, where the network
computes exactly what the Caffe model computes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..temporal.base import TemporalRun, plain_run
from .base import Backbone, conv_bn_relu

# (name, in_name_or_None, 1x1, 3x3_reduce, 3x3, double_reduce, double_3x3, pool ("avg"|"max"), pool_proj,
#  stride). A 1x1 of 0 / pool_proj of 0 means the branch is absent (the stride-2 blocks 3c and 4e pass the
#  pooled input through).
_BLOCKS: tuple[tuple[str, int, int, int, int, int, str, int, int], ...] = (
    ("3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 96, 128, 192, 160, 192, "avg", 128, 1),
    ("4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1),
)

BLOCK_NAMES: tuple[str, ...] = tuple(f"inception_{b[0]}" for b in _BLOCKS)

#: The paper's "+5HF" (Table I): HF after each of the final five Inception blocks.
LAST5: tuple[str, ...] = BLOCK_NAMES[-5:]


def _w(c: int, width_mult: float) -> int:
    return max(1, int(round(c * width_mult)))


class BNInception(Backbone):
    """BN-Inception with Caffe layer names; input (B, 3, H, W) BGR 0-255 minus [104, 117, 128]."""

    family = "bninception"
    block_names = BLOCK_NAMES
    placement_presets = {
        "none": (),
        "last1": BLOCK_NAMES[-1:],
        "last5": LAST5,
        "all": BLOCK_NAMES,
    }

    def __init__(self, width_mult: float = 1.0, last_block: str | None = None) -> None:
        """``last_block`` builds the network only up to that block (ECO-Lite's 2D part stops after 3b and
        adds the first two layers of 3c itself, ``backbones/eco.py``); None = all ten blocks."""
        super().__init__()
        if not 0 < width_mult <= 4:
            raise ValueError(f"width_mult must be in (0, 4], got {width_mult}")
        if last_block is not None and last_block not in BLOCK_NAMES:
            raise ValueError(f"last_block must be one of {BLOCK_NAMES}, got {last_block!r}")
        self.width_mult = width_mult
        w = lambda c: _w(c, width_mult)  # noqa: E731
        self._conv_bn("conv1_7x7_s2", 3, w(64), 7, 2, 3)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._conv_bn("conv2_3x3_reduce", w(64), w(64), 1, 1, 0)
        self._conv_bn("conv2_3x3", w(64), w(192), 3, 1, 1)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self._spec: dict[str, tuple] = {}
        channels: dict[str, int] = {}
        in_channels: dict[str, int] = {}
        strides: dict[str, int] = {}
        c_in, stride = w(192), 8  # blocks 3a/3b run after pool2: stride 8 (28 px at 224)
        for blk, c1, r3, c3, rd, cd, pool, proj, s in _BLOCKS:
            name = f"inception_{blk}"
            in_channels[name] = c_in
            out = 0
            if c1:
                self._conv_bn(f"{name}_1x1", c_in, w(c1), 1, 1, 0)
                out += w(c1)
            self._conv_bn(f"{name}_3x3_reduce", c_in, w(r3), 1, 1, 0)
            self._conv_bn(f"{name}_3x3", w(r3), w(c3), 3, s, 1)
            self._conv_bn(f"{name}_double_3x3_reduce", c_in, w(rd), 1, 1, 0)
            self._conv_bn(f"{name}_double_3x3_1", w(rd), w(cd), 3, 1, 1)
            self._conv_bn(f"{name}_double_3x3_2", w(cd), w(cd), 3, s, 1)
            out += w(c3) + w(cd)
            if s == 2:
                setattr(self, f"{name}_pool", nn.MaxPool2d(3, stride=2, ceil_mode=True))
                out += c_in
            else:
                if pool == "avg":
                    p = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
                else:
                    p = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
                setattr(self, f"{name}_pool", p)
                self._conv_bn(f"{name}_pool_proj", c_in, w(proj), 1, 1, 0)
                out += w(proj)
            stride *= s
            self._spec[name] = (bool(c1), s)
            channels[name] = out
            strides[name] = stride
            c_in = out
            if name == last_block:
                break
        if last_block is not None:
            names = tuple(channels)
            self.block_names = names
            self.placement_presets = {"none": (), "last1": names[-1:], "all": names}
        self.block_channels = channels
        self.block_in_channels = in_channels
        self.block_strides = strides
        self.out_channels = c_in

    def _conv_bn(self, name: str, c_in: int, c_out: int, k: int, s: int, p: int) -> None:
        setattr(self, name, nn.Conv2d(c_in, c_out, k, stride=s, padding=p, bias=True))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(c_out, affine=True))

    def _cbr(self, name: str, x: Tensor, run: TemporalRun) -> Tensor:
        return conv_bn_relu(run, name, getattr(self, name), getattr(self, f"{name}_bn"), x)

    def stem(self, x: Tensor, run: TemporalRun | None = None) -> Tensor:
        run = run or plain_run()
        x = self.pool1_3x3_s2(self._cbr("conv1_7x7_s2", x, run))
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x, run), run)
        return self.pool2_3x3_s2(x)

    def block(self, name: str, x: Tensor, run: TemporalRun | None = None) -> Tensor:
        run = run or plain_run()
        has_1x1, stride = self._spec[name]
        branches = []
        if has_1x1:
            branches.append(self._cbr(f"{name}_1x1", x, run))
        branches.append(self._cbr(f"{name}_3x3", self._cbr(f"{name}_3x3_reduce", x, run), run))
        d = self._cbr(f"{name}_double_3x3_reduce", x, run)
        branches.append(self._cbr(f"{name}_double_3x3_2", self._cbr(f"{name}_double_3x3_1", d, run), run))
        pool = getattr(self, f"{name}_pool")
        if stride == 2:
            h, w = branches[-1].shape[-2:]
            p = x
            ph = h - ((x.shape[-2] - 3 + 1) // 2 + 1)
            pw = w - ((x.shape[-1] - 3 + 1) // 2 + 1)
            if ph > 0 or pw > 0:  # odd input: the ceil-mode pool would be one pixel short
                p = F.pad(x, (0, max(pw, 0), 0, max(ph, 0)), value=float("-inf"))
            branches.append(pool(p))
        else:
            branches.append(self._cbr(f"{name}_pool_proj", pool(x), run))
        # the concatenation, or an operator after the block that writes it from the branches (HF)
        return run.join(name, branches)
