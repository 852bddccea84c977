"""``ModelConfig``: everything needed to rebuild a video model, as plain data saved in every checkpoint.

A model is a backbone, temporal operators placed in it, and a consensus head. The operators are data,
not fields of the config (there is no ``hf_*`` field): ``temporal`` is a list of entries

    {"op": "hf",  "where": "all",      "args": {"conservative": True}}
    {"op": "tsm", "where": "blockres", "args": {"shift_div": 8}}
    {"op": "gsm", "where": "all",      "args": {}}

where ``op`` names a registered operator (``hfnet_core.temporal``), ``where`` is a preset of that operator
on this backbone or a list of module names, and ``args`` are the operator's own options. Checkpoints
written before operators existed stored ``hf_placement`` / ``hf_conservative`` / ``hf_impl``;
``from_dict`` turns those into the equivalent ``temporal`` entry, so every old file still loads.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

#: Fields of the first checkpoint format that are now expressed as a ``temporal`` entry.
LEGACY_HF_FIELDS = ("hf_placement", "hf_conservative", "hf_impl")
#: At most this many operator entries (a guard against hostile metadata; real models have 1-3).
MAX_TEMPORAL_ENTRIES = 64


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model. Defaults = the paper's TSN setting on Something-v1 (Sec. IV-B):
    BN-Inception, 16 frames, 224 px, 174 classes; HF-TSN adds ``{"op": "hf", "where": "all"}``."""

    backbone: str = "bninception"
    width_mult: float = 1.0  # 1.0 = paper; 0.25 for the CPU demo models
    num_classes: int = 174
    num_segments: int = 16  # frames per clip (the paper uses 16)
    input_size: int = 224  # square crop side fed to the network
    consensus: str = "avg"  # "avg" (TSN) or "trn"; see hfnet_core.heads
    consensus_args: dict[str, Any] = field(default_factory=dict)  # the head's own options
    temporal: list[dict[str, Any]] = field(default_factory=list)  # operator entries (module docstring)
    dropout: float = 0.5
    input_convention: dict[str, Any] | None = None  # None = the backbone's own convention
    name: str = ""  # registry name this config came from, for display

    def __post_init__(self) -> None:
        self.temporal = normalise_temporal(self.temporal)
        self.consensus_args = dict(self.consensus_args or {})

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """A config from its dict form, including the first format's ``hf_*`` fields."""
        if not isinstance(d, dict):
            raise ConfigError(f"a model config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        legacy = {k: d.pop(k) for k in LEGACY_HF_FIELDS if k in d}
        if legacy:
            if "temporal" in d:
                raise ConfigError(f"a model config cannot have both 'temporal' and {sorted(legacy)}")
            d["temporal"] = legacy_hf_entries(**legacy)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def with_hf(self, placement: Any = None, conservative: bool | None = None,
                impl: str | None = None) -> "ModelConfig":
        """This config with its HF entry placed at ``placement`` ("none" removes it) and/or with
        ``conservative`` / the gate ``impl`` set - the shorthand behind ``--set model.hf_placement=last5``
        and ``build_model(name, hf_placement=...)``. Other operators are kept."""
        entries = [dict(e, args=dict(e["args"])) for e in self.temporal]
        hf = next((e for e in entries if e["op"] == "hf"), None)
        if placement is not None:
            if placement in ("none", "", [], ()):
                entries = [e for e in entries if e["op"] != "hf"]
                hf = None
            elif hf is None:
                hf = legacy_hf_entries(placement)[0]
                entries.append(hf)
            else:
                hf["where"] = list(placement) if isinstance(placement, (list, tuple)) else placement
        if conservative is not None:
            if hf is None:
                raise ConfigError("hf_conservative is set but the model has no HF operator (hf_placement is none)")
            if not isinstance(conservative, bool):
                raise ConfigError(f"hf_conservative must be true or false, got {conservative!r}")
            hf["args"]["conservative"] = conservative
        if impl is not None:
            if hf is None:
                raise ConfigError("hf_impl is set but the model has no HF operator")
            hf["args"]["impl"] = impl
        return self.replace(temporal=entries)

    def without_temporal(self) -> "ModelConfig":
        """The same network with every temporal operator removed (the plain TSN/TRN it extends)."""
        return self.replace(temporal=[])

    def operators(self) -> list[str]:
        """Names of the operators this config places, in order (e.g. ["hf"])."""
        return [e["op"] for e in self.temporal]


def legacy_hf_entries(hf_placement: Any = "all", hf_conservative: Any = True,
                      hf_impl: Any = "matmul") -> list[dict[str, Any]]:
    """The ``temporal`` entry equivalent to the first format's ``hf_*`` fields ([] for placement "none")."""
    where = list(hf_placement) if isinstance(hf_placement, (list, tuple)) else hf_placement
    if not isinstance(where, (str, list)):
        raise ConfigError(f"hf_placement must be a string or a list of block names, got {hf_placement!r}")
    if where in ("none", "", []):
        return []
    if not isinstance(hf_conservative, bool):
        raise ConfigError(f"hf_conservative must be true or false, got {hf_conservative!r}")
    if not isinstance(hf_impl, str):
        raise ConfigError(f"hf_impl must be a string, got {hf_impl!r}")
    return [{"op": "hf", "where": where, "args": {"conservative": hf_conservative, "impl": hf_impl}}]


def normalise_temporal(entries: Any) -> list[dict[str, Any]]:
    """Check the shape of ``temporal`` (a list of {op, where, args}) and return a clean copy.

    Only the shape is checked here; whether an operator exists and accepts its arguments and places is
    checked when the model is built (``hfnet_core.temporal.resolve``), where the backbone is known.
    """
    if entries is None:
        return []
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"temporal must be a list of {{op, where, args}} entries, got {type(entries).__name__}")
    if len(entries) > MAX_TEMPORAL_ENTRIES:
        raise ConfigError(f"temporal has {len(entries)} entries; at most {MAX_TEMPORAL_ENTRIES} are allowed")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ConfigError(f"temporal[{i}] must be an object with op, where and args, got {e!r}")
        extra = set(e) - {"op", "where", "args"}
        if extra:
            raise ConfigError(f"temporal[{i}] has unknown keys {sorted(extra)}; expected op, where, args")
        op = e.get("op")
        if not isinstance(op, str) or not op or len(op) > 32:
            raise ConfigError(f"temporal[{i}].op must be an operator name, got {op!r}")
        where = e.get("where", "all")
        if isinstance(where, tuple):
            where = list(where)
        if isinstance(where, list):
            if len(where) > 512 or not all(isinstance(w, str) and 0 < len(w) <= 128 for w in where):
                raise ConfigError(f"temporal[{i}].where must be a preset name or a list of module names")
        elif not isinstance(where, str) or len(where) > 4096:
            raise ConfigError(f"temporal[{i}].where must be a preset name or a list of module names, got {where!r}")
        args = e.get("args", {}) or {}
        if not isinstance(args, dict) or len(args) > 32:
            raise ConfigError(f"temporal[{i}].args must be an object of options, got {args!r}")
        for k, v in args.items():
            if not isinstance(k, str) or not isinstance(v, (bool, int, float, str)) or (
                    isinstance(v, str) and len(v) > 128):
                raise ConfigError(f"temporal[{i}].args.{k} must be a number, a boolean or a short string")
        out.append({"op": op, "where": where, "args": dict(args)})
    return out
