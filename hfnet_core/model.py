"""VideoClassifier = backbone + temporal operators placed in it + consensus head.

One ``ModelConfig`` (``hfnet_core/model_config.py``) fully describes a model; it is saved inside every
checkpoint so a model is rebuilt from the file alone. ``build_model`` accepts a registered name
(``hfnet_core/zoo.py``) or a config.

The model is stateless at inference: ``forward``, ``inspect`` and ``forward_intermediates`` return
everything they compute (logits, features, operator maps, requested intermediate tensors) instead of
stashing it in hooks or attributes, so one cached instance can serve concurrent callers.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Iterable, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from . import zoo  # noqa: F401 - fills the registry
from .backbones import backbone_input_convention, build_backbone
from .errors import ConfigError
from .heads import build_head
from .input_convention import InputConvention
from .model_config import ModelConfig
from .registry import available_models, get_config, register_model
from .temporal import OperatorRecord, Site, TemporalOperator, TemporalRun, available_operators, module_key, resolve

__all__ = ["Inspection", "ModelConfig", "VideoClassifier", "available_models", "build_model", "get_config",
           "hf_key", "input_convention_of", "register_model"]

#: Kept for callers of the first API: the ``ModuleDict`` key of a block's HF module.
hf_key = module_key


class Inspection(NamedTuple):
    """What one forward pass computes, returned rather than stored."""

    logits: Tensor  # (N, num_classes)
    frame_features: Tensor  # (N, T', D) pooled backbone features (pre-classifier); T' = T per frame, 1 for ECO
    pooled_features: Tensor  # (N, D) average over the T' feature vectors
    gates: dict[str, Tensor]  # HF: block name -> G- of shape (N, T, H, W); G-_{T-1} = 0
    temporal: dict[str, OperatorRecord] = {}  # every operator's record, "<op>.<module>" -> record
    intermediates: dict[str, Tensor] = {}  # requested taps (``forward_intermediates``)


def input_convention_of(config: ModelConfig) -> InputConvention:
    """The pixel convention a model of ``config`` expects, read without building it: the config's own,
    else its backbone's default (from the backbone registry)."""
    if config.input_convention:
        return InputConvention.from_dict(config.input_convention)
    return backbone_input_convention(config.backbone)


class VideoClassifier(nn.Module):
    """Backbone + temporal operators at their sites + consensus head.

    Input: float (N, T, 3, H, W) in ``input_convention`` (see ``InputConvention.to_model_input``).
    Parameter names: ``base_model.*`` (the backbone's own, e.g. Caffe names), ``<op>.<module>.*`` for
    operators with parameters (``hf.inception_3a.gate.weight``, ``gsm.inception_3a_1x1.conv3D.weight``)
    and ``head.*`` (``head.new_fc.*``) - the TSN-pytorch layout minus its ``module.`` prefix.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.base_model = build_backbone(config.backbone, config.width_mult)
        placements = resolve(config.temporal, self.base_model)
        groups: dict[str, dict[str, TemporalOperator]] = {}
        for p in placements:
            groups.setdefault(p.op, {})[module_key(p.site.module)] = p.module
        for op, modules in groups.items():
            setattr(self, op, nn.ModuleDict(modules))
        #: (op name, site) of every operator, in network order.
        self.placements: tuple[tuple[str, Site], ...] = tuple((p.op, p.site) for p in placements)
        self.head = build_head(config.consensus, self.base_model.out_channels, config.num_classes,
                               self.base_model.output_frames(config.num_segments), config.dropout,
                               config.consensus_args)
        self.input_convention = input_convention_of(config)

    # --- facts -------------------------------------------------------------------------------------

    @property
    def num_segments(self) -> int:
        return self.config.num_segments

    @property
    def feature_dim(self) -> int:
        return self.base_model.out_channels

    def operator_at(self, op: str, site: Site) -> TemporalOperator:
        return getattr(self, op)[module_key(site.module)]

    def operators(self, op: str | None = None) -> list[tuple[str, Site, TemporalOperator]]:
        """(op name, site, module) of every operator (or of one kind), in network order."""
        return [(o, s, self.operator_at(o, s)) for o, s in self.placements if op is None or o == op]

    @property
    def hf_blocks(self) -> tuple[str, ...]:
        """Blocks followed by an HF module, in network order."""
        return tuple(s.module for o, s in self.placements if o == "hf")

    def __getattr__(self, name: str) -> Any:
        """An operator namespace the model does not use (``model.hf`` of a TSN) is an empty ModuleDict."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in available_operators():
                return nn.ModuleDict()
            raise

    def temporal_parameters(self) -> list[nn.Parameter]:
        """Parameters of every temporal operator (HF gates, GSM's gate convolution and BN)."""
        return [p for _, _, m in self.operators() for p in m.parameters()]

    gate_parameters = temporal_parameters

    def _site_ops(self) -> dict[str, TemporalOperator]:
        return {s.key: self.operator_at(o, s) for o, s in self.placements}

    # --- forward -----------------------------------------------------------------------------------

    def _run(self, x: Tensor, record: bool, taps: Iterable[str] = ()) -> Inspection:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"expected clips of shape (N, T, 3, H, W), got {tuple(x.shape)}")
        n, t = x.shape[:2]
        if self.head.needs_fixed_segments and t != self.config.num_segments:
            raise ValueError(f"this {self.config.consensus.upper()} model needs {self.config.num_segments} "
                             f"frames per clip, got {t}")
        run = TemporalRun(self._site_ops(), t, record=record, taps=frozenset(taps))
        bb = self.base_model
        y = bb.stem(x.reshape(n * t, *x.shape[2:]), run)
        for name in bb.block_names:
            y = run.at(name, "out", bb.block(name, run.at(name, "in", y), run))
        frame_features = bb.pool(y).reshape(n, bb.output_frames(t), -1)
        logits = self.head(frame_features)
        gates = {r.site.module: r.maps["gate"] for r in run.records.values() if r.op == "hf"}
        return Inspection(logits, frame_features, frame_features.mean(dim=1), gates, dict(run.records),
                          dict(run.tapped))

    def forward(self, x: Tensor) -> Tensor:
        """(N, T, 3, H, W) -> logits (N, num_classes)."""
        return self._run(x, record=False).logits

    def inspect(self, x: Tensor) -> Inspection:
        """One forward pass returning logits, per-frame and pooled features and every operator's maps
        (``gates`` for HF; ``temporal`` for every operator, HF included)."""
        return self._run(x, record=True)

    def forward_intermediates(self, x: Tensor, taps: Sequence[str] = (), record: bool = True) -> Inspection:
        """One forward pass returning what ``inspect`` returns plus the requested intermediate tensors.

        ``taps`` are names from ``intermediate_names()``: ``"<module>:out"`` (a block's output before any
        operator after it, a convolution's output before its BN, ``"<conv>_bn:out"``, ``"<conv>_relu:out"``),
        ``"<module>:in"`` and ``"<op>.<module>"`` (an operator's output). The tensors are part of the
        autograd graph when gradients are enabled, so Grad-CAM at any layer needs no hooks.
        """
        unknown = sorted(set(taps) - set(self.intermediate_names()))
        if unknown:
            raise ConfigError(f"unknown intermediate(s) {unknown[:5]}; see model.intermediate_names()")
        return self._run(x, record=record, taps=taps)

    def intermediate_names(self) -> list[str]:
        """Every tap name of ``forward_intermediates``, in network order (read from a shape-only pass)."""
        return list(_tap_names(self.config))

    # --- model cards -------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Facts for model cards: architecture, operators and where they sit, parameter counts."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        ops: dict[str, dict[str, Any]] = {}
        for o, s, m in self.operators():
            entry = ops.setdefault(o, {"op": o, "sites": [], "params": 0, **{k: v for k, v in m.describe().items()
                                                                              if k not in ("op", "params")}})
            entry["sites"].append(s.key)
            entry["params"] += sum(p.numel() for p in m.parameters())
        hf_mods = [m for _, _, m in self.operators("hf")]
        return {
            "backbone": self.config.backbone,
            "width_mult": self.config.width_mult,
            "consensus": self.config.consensus,
            "num_segments": self.config.num_segments,
            "input_size": self.config.input_size,
            "num_classes": self.config.num_classes,
            "temporal": list(ops.values()),
            "hf_blocks": list(self.hf_blocks),
            "hf_conservative": all(m.conservative for m in hf_mods) if hf_mods else None,
            "params_trainable": trainable,
            "params_temporal": sum(p.numel() for p in self.temporal_parameters()),
            "params_hf": sum(p.numel() for m in hf_mods for p in m.parameters()),
            "input_convention": self.input_convention.to_dict(),
        }


def build_model(name_or_config: str | ModelConfig, **overrides: Any) -> VideoClassifier:
    """Build a ``VideoClassifier`` from a registered name or a ``ModelConfig`` (plus field overrides)."""
    hf = {k: overrides.pop(k) for k in ("hf_placement", "hf_conservative", "hf_impl") if k in overrides}
    if isinstance(name_or_config, ModelConfig):
        cfg = name_or_config.replace(**overrides) if overrides else name_or_config
    else:
        cfg = get_config(name_or_config, **overrides)
    if hf:
        cfg = cfg.with_hf(hf.get("hf_placement"), hf.get("hf_conservative"), hf.get("hf_impl"))
    return VideoClassifier(cfg)


def _tap_names(config: ModelConfig) -> tuple[str, ...]:
    return _tap_names_cached(json.dumps(config.replace(num_segments=2 if config.num_segments > 1 else 1,
                                                      input_size=64).to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=64)
def _tap_names_cached(config_json: str) -> tuple[str, ...]:
    """Every site key a forward pass visits, found by running a shape-only copy on the meta device."""
    cfg = ModelConfig.from_dict(json.loads(config_json))
    with torch.device("meta"):
        model = VideoClassifier(cfg).eval()
        x = torch.empty(1, cfg.num_segments, 3, cfg.input_size, cfg.input_size)
        run = TemporalRun(model._site_ops(), cfg.num_segments, collect_names=True)
        bb = model.base_model
        with torch.no_grad():
            y = bb.stem(x.reshape(cfg.num_segments, 3, cfg.input_size, cfg.input_size), run)
            for name in bb.block_names:
                y = run.at(name, "out", bb.block(name, run.at(name, "in", y), run))
    return tuple(dict.fromkeys(run.names))
