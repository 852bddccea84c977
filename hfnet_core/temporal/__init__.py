"""Temporal operators as plug-ins: HF, TSM and GSM behind one interface, placed in a backbone by config.

    resolve(entries, backbone)  -> [Placement(op name, Site, operator module)], in network order
    available_operators()       -> ["gsm", "hf", "tsm"]
    get_operator(name)          -> the operator class

An operator class registers itself with ``@register_operator``; ``ModelConfig.temporal`` entries
(``{"op", "where", "args"}``) name it. ``where`` is one of the operator's presets on that backbone
(``presets(backbone, args)``) or a list / comma-separated string of module names, each optionally with a
side (``"layer1.0.conv1:in"``). Short block names are accepted ("3a" for "inception_3a").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

from ..errors import ConfigError
from .base import NO_OPERATORS, OperatorRecord, Site, TemporalOperator, TemporalRun, plain_run

_OPERATORS: dict[str, type[TemporalOperator]] = {}
#: Names an operator may not take: they are attributes of ``VideoClassifier``.
_RESERVED = {"base_model", "head", "config", "input_convention", "temporal", "training"}

T = TypeVar("T", bound=type[TemporalOperator])


def register_operator(name: str) -> Callable[[T], T]:
    """Class decorator: make an operator available under ``name`` (also its state-dict namespace)."""
    def deco(cls: T) -> T:
        if name in _RESERVED or not name.isidentifier():
            raise ValueError(f"operator name {name!r} is not allowed")
        cls.op_name = name
        _OPERATORS[name] = cls
        return cls
    return deco


def _load_builtin() -> None:
    from . import gsm, hf, tsm  # noqa: F401 - registration side effect


def available_operators() -> list[str]:
    _load_builtin()
    return sorted(_OPERATORS)


def get_operator(name: str) -> type[TemporalOperator]:
    _load_builtin()
    if name not in _OPERATORS:
        raise ConfigError(f"unknown temporal operator {name!r}; available: {sorted(_OPERATORS)}")
    return _OPERATORS[name]


@dataclass(frozen=True)
class Placement:
    op: str
    site: Site
    module: TemporalOperator


def _site_channels(backbone: Any, site: Site) -> int:
    channels = backbone.site_channels(site)
    if channels is None:
        raise ConfigError(f"{site.module!r} is not a block or convolution of this {type(backbone).__name__}; "
                          f"blocks: {list(backbone.block_names)}")
    return int(channels)


def _parse_where(where: str | Sequence[str], presets: Mapping[str, tuple[Site, ...]], backbone: Any,
                 default_side: str, op: str) -> tuple[Site, ...]:
    if isinstance(where, str):
        if where in presets:
            return tuple(presets[where])
        items = [w.strip() for w in where.split(",") if w.strip()]
    else:
        items = list(where)
    sites = []
    modules = backbone.site_modules()
    for item in items:
        site = Site.parse(item, default_side)
        matches = [m for m in modules if m == site.module or m.endswith("_" + site.module)]
        if len(matches) != 1:
            raise ConfigError(
                f"{op} placement {item!r} is not a block or convolution of this backbone; presets: "
                f"{sorted(presets)}; blocks: {list(backbone.block_names)}")
        sites.append(Site(matches[0], site.side))
    return tuple(sites)


def resolve(entries: Sequence[Mapping[str, Any]], backbone: Any) -> list[Placement]:
    """Build the operator modules a config's ``temporal`` entries place in ``backbone``, in network order.

    Raises ``ConfigError`` for an unknown operator, preset or module, bad arguments, or two operators
    on one site.
    """
    placements: list[Placement] = []
    taken: dict[str, str] = {}
    for entry in entries:
        cls = get_operator(entry["op"])
        args = dict(entry.get("args") or {})
        presets = cls.presets(backbone, args)
        for site in _parse_where(entry.get("where", "all"), presets, backbone, cls.default_side, cls.op_name):
            if site.key in taken:
                raise ConfigError(f"two temporal operators at {site.key}: {taken[site.key]} and {cls.op_name}")
            taken[site.key] = cls.op_name
            placements.append(Placement(cls.op_name, site, cls.from_args(_site_channels(backbone, site), args)))
    order = {m: i for i, m in enumerate(backbone.site_modules())}
    placements.sort(key=lambda p: (order.get(p.site.module, len(order)), p.site.side != "in"))
    return placements


def module_key(module_name: str) -> str:
    """Key of a site's operator inside its ``ModuleDict``: module names cannot contain ".", so the
    residual block "layer1.0" is stored as ``hf.layer1_0.*`` (public names keep the dot)."""
    return module_name.replace(".", "_")


__all__ = ["NO_OPERATORS", "OperatorRecord", "Placement", "Site", "TemporalOperator", "TemporalRun",
           "available_operators", "get_operator", "module_key", "plain_run", "register_operator", "resolve"]
