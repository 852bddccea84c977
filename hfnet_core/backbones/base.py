"""What a backbone offers a video model: a stem, named blocks to run one by one, and a final pool.

Running the blocks one at a time is what lets ``VideoClassifier`` place an HF module after any subset of
them without subclassing the backbone, and keeps the backbone's own parameter names untouched so that
foreign state dicts (Caffe BNInception, torchvision ResNet) load strictly.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..input_convention import InputConvention


class Backbone(nn.Module):
    """Interface: ``stem`` -> ``block(name)`` for each of ``block_names`` -> ``pool``."""

    #: Names of the blocks after which an HF module may be placed, input to output order.
    block_names: tuple[str, ...] = ()
    #: Output channels of each block.
    block_channels: dict[str, int] = {}
    #: Channels of the pooled feature vector.
    out_channels: int = 0
    #: Total spatial stride of each block's output relative to the input.
    block_strides: dict[str, int] = {}
    #: Named groups of blocks (presets) for HF placement, e.g. {"last5": (...)}.
    placement_presets: dict[str, tuple[str, ...]] = {}

    def default_input_convention(self) -> InputConvention:
        raise NotImplementedError

    def stem(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def block(self, name: str, x: Tensor) -> Tensor:
        raise NotImplementedError

    def pool(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C) global average pooling."""
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Image-model forward (no HF): (B, 3, H, W) -> pooled features (B, C)."""
        x = self.stem(x)
        for name in self.block_names:
            x = self.block(name, x)
        return self.pool(x)
