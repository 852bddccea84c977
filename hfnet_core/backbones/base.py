"""What a backbone offers a video model: a stem, named blocks to run one by one, a final pool, and sites.

Running the blocks one at a time is what lets ``VideoClassifier`` place a temporal operator after (or
before) any block without subclassing the backbone. Inside the stem and the blocks, every convolution
is run through ``run.at(name, "in" / "out", x)`` (and its BatchNorm and ReLU outputs through
``run.at(..., "out", x)``): the ``TemporalRun`` of the current forward pass applies an operator placed at
that site (TSM before a residual branch's first convolution, GSM between a convolution and its BN) and
keeps requested intermediate tensors. The backbone's own parameter names stay untouched, so foreign
state dicts (Caffe BN-Inception, torchvision ResNet) load strictly.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..temporal.base import Site, TemporalRun, plain_run


class Backbone(nn.Module):
    """Interface: ``stem`` -> ``block(name)`` for each of ``block_names`` -> ``pool`` (-> ``output_frames``
    feature vectors per clip)."""

    #: "bninception" or "resnet": operators choose their published placements by family.
    family: str = ""
    #: Names of the blocks after (or before) which an operator may be placed, input to output order.
    block_names: tuple[str, ...] = ()
    #: Output channels of each block, and the channels entering it.
    block_channels: dict[str, int] = {}
    block_in_channels: dict[str, int] = {}
    #: Channels of the pooled feature vector.
    out_channels: int = 0
    #: Total spatial stride of each block's output relative to the input.
    block_strides: dict[str, int] = {}
    #: Named groups of blocks (presets) for block-level operators (HF), e.g. {"last5": (...)}.
    placement_presets: dict[str, tuple[str, ...]] = {}

    def stem(self, x: Tensor, run: TemporalRun | None = None) -> Tensor:
        raise NotImplementedError

    def block(self, name: str, x: Tensor, run: TemporalRun | None = None) -> Tensor:
        raise NotImplementedError

    def output_frames(self, num_segments: int) -> int:
        """How many feature vectors ``pool`` returns per clip of ``num_segments`` frames: one per frame for a
        2D backbone; 1 for a backbone that fuses the frames itself (ECO-Lite's 3D part)."""
        return num_segments

    def pool(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C) global average pooling."""
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Image-model forward (no temporal operators): (B, 3, H, W) -> pooled features (B, C)."""
        run = plain_run()
        x = self.stem(x, run)
        for name in self.block_names:
            x = self.block(name, x, run)
        return self.pool(x)

    # --- sites ----------------------------------------------------------------------------------

    def conv_names(self) -> list[str]:
        """Every convolution of the backbone by module name, in network order."""
        return [n for n, m in self.named_modules() if isinstance(m, nn.Conv2d)]

    def site_modules(self) -> list[str]:
        """Modules an operator may be placed at - each block, followed by the convolutions inside it - in
        network order (stem convolutions first)."""
        out: list[str] = []
        seen: set[str] = set()
        for conv in self.conv_names():
            block = next((b for b in self.block_names if conv.startswith((b + "_", b + "."))), None)
            if block is not None and block not in seen:
                out.append(block)
                seen.add(block)
            out.append(conv)
        return out + [b for b in self.block_names if b not in seen]

    def site_channels(self, site: Site) -> int | None:
        """Channels of the tensor at ``site`` (None if the module is not a block or convolution)."""
        if site.module in self.block_channels:
            return (self.block_in_channels if site.side == "in" else self.block_channels)[site.module]
        try:
            mod = self.get_submodule(site.module)
        except AttributeError:
            return None
        if not isinstance(mod, nn.Conv2d):
            return None
        return mod.in_channels if site.side == "in" else mod.out_channels


def conv_bn_relu(run: TemporalRun, name: str, conv: nn.Module, bn: nn.Module, x: Tensor, relu: bool = True,
                 bn_name: str | None = None) -> Tensor:
    """conv -> BN (-> ReLU) with the sites of a convolution: its input and output (before the BN), and
    the BN's and ReLU's outputs (tap points only)."""
    y = run.at(name, "out", conv(run.at(name, "in", x)))
    bn_name = bn_name or f"{name}_bn"
    y = run.at(bn_name, "out", bn(y))
    if not relu:
        return y
    return run.at(f"{name}_relu", "out", nn.functional.relu(y, inplace=run.inplace_ok))
