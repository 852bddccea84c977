"""Backbones by name. Each returns a ``Backbone`` whose parameter names match its ecosystem's."""

from __future__ import annotations

from typing import Callable

from .base import Backbone
from .bninception import BNInception

_BACKBONES: dict[str, Callable[..., Backbone]] = {"bninception": BNInception}


def register_backbone(name: str, factory: Callable[..., Backbone]) -> None:
    _BACKBONES[name] = factory


def build_backbone(name: str, width_mult: float = 1.0) -> Backbone:
    """Build a backbone by name ("bninception", "resnet18", "resnet50")."""
    _load_optional()
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {sorted(_BACKBONES)}")
    return _BACKBONES[name](width_mult=width_mult)


def available_backbones() -> list[str]:
    _load_optional()
    return sorted(_BACKBONES)


def _load_optional() -> None:
    try:  # ResNets live in their own file (torchvision parameter names)
        from . import resnet  # noqa: F401
    except ImportError:
        pass


__all__ = ["Backbone", "BNInception", "build_backbone", "available_backbones", "register_backbone"]
