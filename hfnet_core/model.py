"""VideoClassifier = backbone (+ HF modules after chosen blocks) + consensus head, and its config.

One ``ModelConfig`` fully describes a model; it is saved inside every checkpoint so a model is rebuilt
from the file alone. ``build_model`` accepts a registered name or a config.

The model is stateless at inference: ``forward`` and ``inspect`` return everything they compute (logits,
features, gates) instead of stashing it in hooks or attributes, so one cached instance can serve
concurrent callers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from .backbones import build_backbone
from .heads import build_head
from .hf import HFModule
from .input_convention import InputConvention


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model. Defaults = the paper's HF-TSN on Something-v1 (Sec. IV-B)."""

    backbone: str = "bninception"
    width_mult: float = 1.0  # 1.0 = paper; 0.25 for the CPU demo models
    num_classes: int = 174
    num_segments: int = 16  # frames per clip (the paper uses 16)
    input_size: int = 224  # square crop side fed to the network
    consensus: str = "avg"  # "avg" (TSN) or "trn"
    hf_placement: str | tuple[str, ...] = "all"  # preset ("none", "last1", "last5", "all", ...) or block names
    hf_conservative: bool = True  # False = Table I's non-conservative ablation
    hf_impl: str = "matmul"  # gate implementation; all give the same result
    dropout: float = 0.5
    input_convention: dict[str, Any] | None = None  # None = the backbone's own convention
    name: str = ""  # registry name this config came from, for display

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(d["hf_placement"], tuple):
            d["hf_placement"] = list(d["hf_placement"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("hf_placement"), list):
            d["hf_placement"] = tuple(d["hf_placement"])
        return cls(**d)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def resolve_placement(placement: str | Sequence[str], block_names: Sequence[str],
                      presets: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Turn a preset name, a comma list or a sequence of block names into block names in network order.

    Short names are accepted ("3a" for "inception_3a"; "layer2.1" as is).
    """
    if isinstance(placement, str):
        if placement in presets:
            return tuple(presets[placement])
        items = [p.strip() for p in placement.split(",") if p.strip()]
    else:
        items = list(placement)
    chosen = set()
    for item in items:
        matches = [b for b in block_names if b == item or b.endswith("_" + item)]
        if len(matches) != 1:
            raise ValueError(
                f"HF placement {item!r} is not a block of this backbone; presets: {sorted(presets)}, "
                f"blocks: {list(block_names)}"
            )
        chosen.add(matches[0])
    return tuple(b for b in block_names if b in chosen)


def hf_key(block_name: str) -> str:
    """Key of a block's HF module in ``VideoClassifier.hf``: module names cannot contain ".", so a ResNet
    block "layer1.0" is stored as ``hf.layer1_0.*``; public names (``hf_blocks``, gates) keep the dot."""
    return block_name.replace(".", "_")


class Inspection(NamedTuple):
    """What one forward pass computes, returned rather than stored."""

    logits: Tensor  # (N, num_classes)
    frame_features: Tensor  # (N, T, D) pooled per-frame backbone features (pre-classifier)
    pooled_features: Tensor  # (N, D) average over frames
    gates: dict[str, Tensor]  # block name -> G- of shape (N, T, H, W); G-_{T-1} = 0


class VideoClassifier(nn.Module):
    """Backbone + HF after selected blocks + consensus head.

    Input: float (N, T, 3, H, W) in ``config.input_convention`` (see ``InputConvention.to_model_input``).
    Parameter names: ``base_model.*`` (the backbone's own, e.g. Caffe names), ``hf.<block>.gate.*`` and
    ``head.new_fc.*`` - the TSN-pytorch layout minus its ``module.`` prefix.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.base_model = build_backbone(config.backbone, config.width_mult)
        self.hf_blocks = resolve_placement(
            config.hf_placement, self.base_model.block_names, self.base_model.placement_presets
        )
        self.hf = nn.ModuleDict(
            {
                hf_key(b): HFModule(self.base_model.block_channels[b], config.hf_conservative, config.hf_impl)
                for b in self.hf_blocks
            }
        )
        self.head = build_head(
            config.consensus, self.base_model.out_channels, config.num_classes, config.num_segments,
            config.dropout,
        )
        conv = config.input_convention
        self.input_convention = (
            InputConvention.from_dict(conv) if conv else self.base_model.default_input_convention()
        )

    @property
    def num_segments(self) -> int:
        return self.config.num_segments

    @property
    def feature_dim(self) -> int:
        return self.base_model.out_channels

    def _run(self, x: Tensor, keep_gates: bool) -> Inspection:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"expected clips of shape (N, T, 3, H, W), got {tuple(x.shape)}")
        n, t = x.shape[:2]
        if self.config.consensus == "trn" and t != self.config.num_segments:
            raise ValueError(f"this TRN model needs {self.config.num_segments} frames per clip, got {t}")
        y = self.base_model.stem(x.reshape(n * t, *x.shape[2:]))
        gates: dict[str, Tensor] = {}
        for name in self.base_model.block_names:
            y = self.base_model.block(name, y)
            if name in self.hf_blocks:
                y, g = self.hf[hf_key(name)](y, t)
                if keep_gates:
                    gates[name] = g
        frame_features = self.base_model.pool(y).reshape(n, t, -1)
        logits = self.head(frame_features)
        return Inspection(logits, frame_features, frame_features.mean(dim=1), gates)

    def forward(self, x: Tensor) -> Tensor:
        """(N, T, 3, H, W) -> logits (N, num_classes)."""
        return self._run(x, keep_gates=False).logits

    def inspect(self, x: Tensor) -> Inspection:
        """One forward pass returning logits, per-frame and pooled features and every HF gate map."""
        return self._run(x, keep_gates=True)

    def gate_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.hf.parameters()]

    def describe(self) -> dict[str, Any]:
        """Facts for model cards: architecture, HF placement, parameter counts."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {
            "backbone": self.config.backbone,
            "width_mult": self.config.width_mult,
            "consensus": self.config.consensus,
            "num_segments": self.config.num_segments,
            "input_size": self.config.input_size,
            "hf_blocks": list(self.hf_blocks),
            "hf_conservative": self.config.hf_conservative,
            "params_trainable": trainable,
            "params_hf": sum(p.numel() for p in self.gate_parameters()),
            "input_convention": self.input_convention.to_dict(),
        }


# --- registry -------------------------------------------------------------------------------------

_DEMO = dict(width_mult=0.25, num_segments=8, input_size=112)

_REGISTRY: dict[str, ModelConfig] = {
    "tsn_bninception": ModelConfig(hf_placement="none"),
    "hf_tsn_bninception": ModelConfig(hf_placement="all"),
    "hf5_tsn_bninception": ModelConfig(hf_placement="last5"),
    "hf1_tsn_bninception": ModelConfig(hf_placement="last1"),
    "hf_tsn_bninception_nonconservative": ModelConfig(hf_placement="all", hf_conservative=False),
    "trn_bninception": ModelConfig(hf_placement="none", consensus="trn"),
    "hf_trn_bninception": ModelConfig(hf_placement="all", consensus="trn"),
    # Reduced-width variants that train on a 2-core CPU (the shipped demo pair).
    "tsn_bninception_demo": ModelConfig(hf_placement="none", **_DEMO),
    "hf_tsn_bninception_demo": ModelConfig(hf_placement="all", **_DEMO),
    "hf5_tsn_bninception_demo": ModelConfig(hf_placement="last5", **_DEMO),
    "hf1_tsn_bninception_demo": ModelConfig(hf_placement="last1", **_DEMO),
    "hf_tsn_bninception_demo_nonconservative": ModelConfig(hf_placement="all", hf_conservative=False, **_DEMO),
    "hf_trn_bninception_demo": ModelConfig(hf_placement="all", consensus="trn", **_DEMO),
}


def input_convention_of(config: ModelConfig) -> InputConvention:
    """The pixel convention a model of ``config`` expects, read without building it: the config's own,
    else its backbone's default (from the backbone registry)."""
    if config.input_convention:
        return InputConvention.from_dict(config.input_convention)
    from .backbones import backbone_input_convention

    return backbone_input_convention(config.backbone)


def register_model(name: str, config: ModelConfig) -> None:
    _REGISTRY[name] = config


def available_models() -> list[str]:
    _register_optional()
    return sorted(_REGISTRY)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    _register_optional()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name].replace(name=name, **overrides)


def build_model(name_or_config: str | ModelConfig, **overrides: Any) -> VideoClassifier:
    """Build a ``VideoClassifier`` from a registered name or a ``ModelConfig`` (plus field overrides)."""
    if isinstance(name_or_config, ModelConfig):
        cfg = name_or_config.replace(**overrides) if overrides else name_or_config
    else:
        cfg = get_config(name_or_config, **overrides)
    return VideoClassifier(cfg)


def _register_optional() -> None:
    """ResNet configs register themselves when their backbone module is present."""
    try:
        from .backbones import resnet  # noqa: F401
    except ImportError:
        pass
