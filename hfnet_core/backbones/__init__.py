"""Backbones by name. Each returns a ``Backbone`` whose parameter names match its ecosystem's.

The registry also records each backbone's pixel convention, so callers (datasets, the app) learn how a
model wants its pixels from its config alone, without building it.
"""

from __future__ import annotations

from typing import Callable

from ..input_convention import InputConvention
from .base import Backbone
from .bninception import BNInception

_BACKBONES: dict[str, Callable[..., Backbone]] = {}
_CONVENTIONS: dict[str, Callable[[], InputConvention]] = {}


def register_backbone(name: str, factory: Callable[..., Backbone],
                      input_convention: Callable[[], InputConvention]) -> None:
    _BACKBONES[name] = factory
    _CONVENTIONS[name] = input_convention


register_backbone("bninception", BNInception, InputConvention.bninception)


def build_backbone(name: str, width_mult: float = 1.0) -> Backbone:
    """Build a backbone by name ("bninception", "eco_lite", "resnet18", "resnet50", ...)."""
    _load_optional()
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {sorted(_BACKBONES)}")
    return _BACKBONES[name](width_mult=width_mult)


def backbone_input_convention(name: str) -> InputConvention:
    """The default pixel convention of backbone ``name`` (no model is built)."""
    _load_optional()
    if name not in _CONVENTIONS:
        raise ValueError(f"unknown backbone {name!r}; available: {sorted(_BACKBONES)}")
    return _CONVENTIONS[name]()


def available_backbones() -> list[str]:
    _load_optional()
    return sorted(_BACKBONES)


def _load_optional() -> None:
    try:  # ResNets live in their own file (torchvision parameter names)
        from . import resnet  # noqa: F401
    except ImportError:
        pass
    if "eco_lite" not in _BACKBONES:  # ECO-Lite: BN-Inception's 2D part + ECO-pytorch's 3D ResNet-18
        from .eco import ECOLite

        register_backbone("eco_lite", ECOLite, InputConvention.bninception)


__all__ = ["Backbone", "BNInception", "build_backbone", "available_backbones", "register_backbone",
           "backbone_input_convention"]
