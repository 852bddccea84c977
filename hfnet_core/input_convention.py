"""How a model wants its pixels.

Caffe-converted BNInception (TSN, TSM, GSM) expects BGR in 0-255 minus a per-channel mean, while
torchvision-style ResNets expect RGB in 0-1 normalised by ImageNet mean/std. Recording the convention with
the model (and in every checkpoint) means a clip is never fed in the wrong colour order or scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class InputConvention:
    """Pixel convention: channel order, value scale, mean and std (in the scaled units)."""

    channel_order: str = "BGR"  # "BGR" or "RGB"
    scale: float = 255.0  # pixel values span [0, scale] before mean subtraction
    mean: tuple[float, float, float] = (104.0, 117.0, 128.0)  # in channel_order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need exactly 3 values")
        if any(s <= 0 for s in self.std) or self.scale <= 0:
            raise ValueError("scale and std must be positive")

    @classmethod
    def bninception(cls) -> "InputConvention":
        """The Caffe BNInception convention used by TSN/TSM/GSM: BGR, 0-255, mean [104,117,128]."""
        return cls("BGR", 255.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0))

    @classmethod
    def imagenet_rgb(cls) -> "InputConvention":
        """torchvision's ImageNet convention (ResNets): RGB, 0-1, mean/std normalised."""
        return cls("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputConvention":
        return cls(
            channel_order=str(d["channel_order"]),
            scale=float(d["scale"]),
            mean=tuple(float(x) for x in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in d["std"]),  # type: ignore[arg-type]
        )

    def to_model_input(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(..., T, H, W, 3)`` -> float32 ``(..., T, 3, H, W)`` in this convention."""
        x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
        if x.shape[-1] != 3:
            raise ValueError(f"expected frames with 3 colour channels last, got shape {tuple(x.shape)}")
        x = x.to(torch.float32)
        if self.channel_order == "BGR":
            x = x.flip(-1)
        x = x * (self.scale / 255.0)
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        x = (x - mean) / std
        return x.movedim(-1, -3).contiguous()

    def to_display(self, x: torch.Tensor) -> np.ndarray:
        """Inverse of ``to_model_input``: float ``(..., 3, H, W)`` -> uint8 RGB ``(..., H, W, 3)``."""
        x = x.detach().to("cpu", torch.float32).movedim(-3, -1)
        x = x * torch.tensor(self.std) + torch.tensor(self.mean)
        x = x * (255.0 / self.scale)
        if self.channel_order == "BGR":
            x = x.flip(-1)
        return x.clamp(0, 255).round().to(torch.uint8).numpy()
