"""The one registry of named models: ``@register_model`` fills it, ``get_config`` reads it.

An entry is a function returning a ``ModelConfig`` (plain data), so a model's facts - backbone, frames,
input size, operators and, through the backbone registry, its pixel convention - are known without
building it. The catalogue of names lives in ``hfnet_core/zoo.py``; ``hfnet_core.model`` imports it.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import ConfigError
from .model_config import ModelConfig

_MODELS: dict[str, Callable[[], ModelConfig]] = {}


def register_model(name: str) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Decorator: ``@register_model("hf_tsn_bninception")`` on a function that returns its config."""
    def deco(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn
    return deco


def available_models() -> list[str]:
    return sorted(_MODELS)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The registered config ``name`` with field overrides (``get_config("tsn_bninception", num_classes=51)``);
    ``hf_placement`` / ``hf_conservative`` edit its HF entry (``ModelConfig.with_hf``)."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {sorted(_MODELS)}")
    hf = {k: overrides.pop(k) for k in ("hf_placement", "hf_conservative", "hf_impl") if k in overrides}
    cfg = _MODELS[name]().replace(name=name, **overrides)
    return cfg.with_hf(hf.get("hf_placement"), hf.get("hf_conservative"), hf.get("hf_impl")) if hf else cfg
