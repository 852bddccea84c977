"""ImageNet BN-Inception in Caffe layer names (the conversion TSN, TSM, GSM and Cadene's pretrainedmodels use).

Keys are the Caffe layer names hfnet's ``BNInception`` already carries (``conv1_7x7_s2.weight``,
``inception_3a_1x1_bn.running_var``, ...), so the mapping is only ``base_model.`` in front. Two quirks of
that conversion: BN weight/bias/statistics may be stored as (1, C) (TSN's loader squeezes dim 0; so do we,
and the report lists them), and the 1000-class ImageNet classifier is called ``fc`` (TSN/GSM) or
``last_linear`` (pretrainedmodels). As a video model the classifier is kept (a 1-frame clip by default);
for backbone initialisation (``load_pretrained_backbone``) it is dropped.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..input_convention import InputConvention
from .common import ImportOptions, ImportReport, Mapped, strip_prefix

STEM_KEY = "conv1_7x7_s2.weight"
CLASSIFIER_NAMES = ("fc", "last_linear")


def detect(state: dict[str, Tensor]) -> bool:
    keys = set(strip_prefix(state, "module.").values())
    return STEM_KEY in keys and not any(k.startswith("base_model.") for k in keys)


def put_backbone(mapped: Mapped, rel_to_file: dict[str, str], state: dict[str, Tensor]) -> None:
    """Backbone keys relative to the BNInception module -> ``base_model.<key>`` (names are identical)."""
    for rel, file_key in rel_to_file.items():
        mapped.put(f"base_model.{rel}", file_key, state[file_key])


def map_state(obj: Any, state: dict[str, Tensor], opts: ImportOptions, report: ImportReport) -> Mapped:
    rel = strip_prefix(state, "module.")
    width = state[next(k for k, r in rel.items() if r == STEM_KEY)].shape[0] / 64
    mapped = Mapped({}, {}, "bninception", width, InputConvention.bninception(),
                    image_classifier=True, squeezable=True)
    backbone: dict[str, str] = {}
    for file_key, r in rel.items():
        layer, _, param = r.partition(".")
        if layer in CLASSIFIER_NAMES:
            mapped.put(f"head.new_fc.{param}", file_key, state[file_key])
        else:
            backbone[r] = file_key
    put_backbone(mapped, backbone, state)
    return mapped
