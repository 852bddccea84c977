"""The catalogue of named models: the paper's HF-TSN / HF-TRN rows, their neighbours (TSM, GSM) and the
reduced-width variants that train on a 2-core CPU (``*_demo``: width 0.25, 8 frames, 112 px).

Every entry is plain data (``ModelConfig``); ``hfnet_core.model.build_model(name)`` builds it.
"""

from __future__ import annotations

from .model_config import ModelConfig
from .registry import register_model

#: The CPU demo scale (the shipped demo pair and the temporal zoo on SynthSomething).
DEMO = dict(width_mult=0.25, num_segments=8, input_size=112)


def hf(where: str = "all", conservative: bool = True) -> list[dict]:
    """A ``temporal`` list placing HF (paper Sec. III) at ``where``."""
    return [{"op": "hf", "where": where, "args": {"conservative": conservative}}]


def tsm(where: str = "all", shift_div: int = 8) -> list[dict]:
    """A ``temporal`` list placing TSM's shift (1/``shift_div`` of the channels each way)."""
    return [{"op": "tsm", "where": where, "args": {"shift_div": shift_div}}]


def gsm() -> list[dict]:
    """A ``temporal`` list placing GSM at its ten published BN-Inception places."""
    return [{"op": "gsm", "where": "all", "args": {}}]


def _register(name: str, **fields) -> None:
    register_model(name)(lambda: ModelConfig(**fields))


# BN-Inception TSN family (paper Table I / II): full width, 16 frames, 224 px, 174 classes.
_BNI = {
    "tsn_bninception": dict(),
    "hf_tsn_bninception": dict(temporal=hf("all")),
    "hf5_tsn_bninception": dict(temporal=hf("last5")),
    "hf1_tsn_bninception": dict(temporal=hf("last1")),
    "hf_tsn_bninception_nonconservative": dict(temporal=hf("all", conservative=False)),
    "trn_bninception": dict(consensus="trn"),
    "hf_trn_bninception": dict(consensus="trn", temporal=hf("all")),
    "tsm_bninception": dict(temporal=tsm("all")),
    "gsm_bninception": dict(temporal=gsm()),
}
for _name, _fields in _BNI.items():
    _register(_name, **_fields)
    _register(f"{_name}_demo" if "nonconservative" not in _name else
              _name.replace("_nonconservative", "_demo_nonconservative"), **_fields, **DEMO)

# ResNet TSN family (torchvision / TSM / mmaction2 weights): full width and demo width.
for _depth in (18, 50, 101):
    _bb = f"resnet{_depth}"
    _res = {
        f"tsn_{_bb}": dict(),
        f"hf_tsn_{_bb}": dict(temporal=hf("all")),
        f"hfstages_tsn_{_bb}": dict(temporal=hf("stages")),
        f"tsm_{_bb}": dict(temporal=tsm("all")),
    }
    for _name, _fields in _res.items():
        _register(_name, backbone=_bb, **_fields)
        if _depth != 101:
            _register(f"{_name}_demo", backbone=_bb, **_fields, **DEMO)
