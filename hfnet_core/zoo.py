"""The catalogue of named models: the paper's HF-TSN / HF-TRN / HF-ECOLite rows, the GRU consensus, the
EPIC-Kitchens multi-task TSN, their neighbours (TSM, GSM) and the reduced-width variants that train on a
2-core CPU (``*_demo``: width 0.25, 8 frames, 112 px).

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

# ECO-Lite (paper Table II, HMDB51 row): BN-Inception 2D part + 3D ResNet-18, one clip feature, identity
# consensus, 16 frames; HF after the two complete Inception blocks of the 2D part (3a, 3b: docs/eco.md).
for _name, _fields in {"eco_lite": dict(), "hf_eco_lite": dict(temporal=hf("all"))}.items():
    _register(_name, backbone="eco_lite", consensus="identity", **_fields)
    _register(f"{_name}_demo", backbone="eco_lite", consensus="identity", **_fields, **DEMO)

# GRU consensus (Sec. III-C): a GRU over the frame features, its last state -> classifier.
for _name, _fields in {"gru_bninception": dict(), "hf_gru_bninception": dict(temporal=hf("all"))}.items():
    _register(_name, consensus="gru", consensus_args={"hidden_size": 512}, **_fields)
    _register(f"{_name}_demo", consensus="gru", consensus_args={"hidden_size": 128}, **_fields, **DEMO)

#: EPIC-Kitchens-55: 125 verb and 352 noun classes.
EPIC_VERBS, EPIC_NOUNS = 125, 352


def multitask(verbs: int = EPIC_VERBS, nouns: int = EPIC_NOUNS, action_head: bool = True) -> dict:
    """Fields of a multi-task (verb / noun / action) TSN: ``hfnet_core/multitask.py``. Training on a
    multi-task dataset replaces the sizes and, with ``action_head``, fills the action classes from the
    training clips' (verb, noun) pairs."""
    return dict(consensus="multitask", num_classes=verbs + nouns,
                consensus_args={"verbs": verbs, "nouns": nouns, "actions": [], "action_bias": action_head})


# EPIC-Kitchens multi-task TSN (paper Table III). epic_*: the baselines' layout (fc_verb / fc_noun, 8
# segments: what the epic-kitchens-55-action-models checkpoints hold). mt_*: trained for verb, noun and
# action with the action scores as a bias - HF-TSN as the paper trains it, and the same recipe without HF.
_EPIC_BASELINES = {
    "epic_tsn_bninception": dict(),
    "epic_tsn_resnet50": dict(backbone="resnet50"),
    "epic_tsm_resnet50": dict(backbone="resnet50", temporal=tsm("all")),
}
for _name, _fields in _EPIC_BASELINES.items():
    _register(_name, num_segments=8, **_fields, **multitask(action_head=False))
for _name, _fields in {"mt_tsn_bninception": dict(), "mt_hf_tsn_bninception": dict(temporal=hf("all"))}.items():
    _register(_name, **_fields, **multitask())
    _register(f"{_name}_demo", **_fields, **multitask(), **DEMO)
