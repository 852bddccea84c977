"""Training checkpoints of TSN-pytorch, TSM and GSM: ``{"state_dict": ..., "epoch", "arch", "best_prec1"}``.

Their models share one layout (TSN-pytorch's ``TSN`` class, trained under ``nn.DataParallel``):
``module.base_model.<backbone key>`` and ``module.new_fc.{weight,bias}``. The backbone is Caffe-named
BN-Inception or a torchvision ResNet. Variants, told apart by their keys:

* **TSM** wraps a block's ``conv1`` (or the whole block) in a ``TemporalShift`` module, which adds ``.net.``
  to the names (``layer1.0.conv1.net.weight``); the shift itself has no parameters. The mapping removes
  ``.net.`` and the report says the shift is not implemented here: the model runs as a TSN on TSM's
  weights. Non-local blocks (``.nl.``) are modules hfnet does not have.
* **GSM** inserts gate-shift modules (``gsm_inception_3a_1x1.conv3D.weight``, ``.bn.*``) between
  convolutions and their BN: hfnet does not implement them, so they are an error unless ``drop_unknown``.
* With ``dropout == 0`` TSN keeps its classifier in the backbone (``base_model.fc``), mapped to ``new_fc``.

Frames per clip (``num_segments``) and the consensus are not in these files unless the training script
added them (a top-level field or a saved ``args``); otherwise the caller passes them.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from ..checkpoint import CheckpointError
from ..input_convention import InputConvention
from .caffe_bninception import STEM_KEY
from .common import (CONSENSUS_NAMES, ImportOptions, ImportReport, Mapped, namespace_fields, strip_prefix)
from .torchvision_resnet import resnet_arch

SHIFT_NOTE = ("temporal shift (TSM): parameter-free and not implemented in hfnet - this model runs as a TSN on "
              "TSM's weights, so its predictions differ from TSM's")
TEMPORAL_POOL_NOTE = "temporal pooling (TSM --temporal_pool): not implemented in hfnet"


def _is_gsm(key: str) -> bool:
    return "gsm" in key.lower() or "conv3D" in key


def variant(state: dict[str, Tensor]) -> str | None:
    """"tsn", "tsm" or "gsm" if ``state`` has the TSN layout (``base_model.*``), else None."""
    keys = list(strip_prefix(state, "module.").values())
    if not any(k.startswith("base_model.") for k in keys):
        return None
    if any(_is_gsm(k) for k in keys):
        return "gsm"
    if any(".net." in k or ".nl." in k for k in keys):
        return "tsm"
    return "tsn"


def _clean_resnet_key(rel: str, nl_layers: set[str]) -> str:
    """Undo TSM's wrappers: ``TemporalShift``/``TemporalPool`` (``.net.``) and ``NL3DWrapper`` (``.block.``)."""
    rel = rel.replace(".net.", ".")
    m = re.match(r"(layer\d+\.\d+)\.block\.(.*)", rel)
    if m and m.group(1) in nl_layers:
        rel = f"{m.group(1)}.{m.group(2)}"
    return rel


def file_facts(obj: Any, mapped: Mapped, path: Any) -> None:
    """num_segments / consensus / class names the file itself records (top level or a saved ``args``)."""
    top = obj if isinstance(obj, dict) else {}
    args = namespace_fields(obj)
    for name, sources in (("num_segments", ("num_segments",)), ("consensus", ("consensus_type", "consensus"))):
        for where, fields in (("field", top), ("args", args)):
            for src in sources:
                v = fields.get(src)
                if v is None or (name == "consensus" and not isinstance(v, str)):
                    continue
                if name == "consensus":
                    c = CONSENSUS_NAMES.get(v.lower())
                    if c is None:
                        raise CheckpointError(path, f"was trained with consensus {v!r}, which hfnet does not "
                                                    "implement.", "hfnet implements 'avg' (TSN) and 'trn'.")
                    v = c
                else:
                    try:
                        v = int(v)
                    except (TypeError, ValueError, OverflowError):  # e.g. inf: not a usable record
                        continue
                mapped.facts.setdefault(name, (v, f"file {where} {src!r}"))
    for src in ("class_names", "classes", "categories"):
        v = top.get(src, args.get(src))
        if isinstance(v, (list, tuple)) and v and all(isinstance(c, str) for c in v):
            mapped.facts["class_names"] = (list(v), f"file field {src!r}")
            break


def map_state(obj: Any, state: dict[str, Tensor], opts: ImportOptions, report: ImportReport,
              kind: str = "tsn") -> Mapped:
    rel = strip_prefix(state, "module.")
    backbone_keys = {fk: r[len("base_model."):] for fk, r in rel.items() if r.startswith("base_model.")}
    if not backbone_keys:
        raise CheckpointError(None, f"does not have the {kind.upper()} layout: no 'base_model.' keys.",
                              "Check `--format`.")
    bb_rel = set(backbone_keys.values())
    has_new_fc = any(r.startswith("new_fc.") for r in rel.values())

    if STEM_KEY in bb_rel:
        stem = next(fk for fk, r in backbone_keys.items() if r == STEM_KEY)
        mapped = Mapped({}, {}, "bninception", state[stem].shape[0] / 64, InputConvention.bninception(),
                        squeezable=True)
        clean = dict(backbone_keys)
    elif "conv1.weight" in {r.replace(".net.", ".") for r in bb_rel}:
        nl_layers = {m.group(1) for r in bb_rel if (m := re.match(r"(layer\d+\.\d+)\.nl\.", r))}
        clean = {fk: _clean_resnet_key(r, nl_layers) for fk, r in backbone_keys.items()}
        stem = next(fk for fk, r in clean.items() if r == "conv1.weight")
        name, width = resnet_arch(set(clean.values()), state[stem])
        mapped = Mapped({}, {}, name, width, InputConvention.imagenet_rgb())
        if any(".net." in r for r in bb_rel):
            report.not_implemented.append(SHIFT_NOTE)
        if any(re.match(r"layer\d+\.net\.", r) for r in bb_rel):
            report.not_implemented.append(TEMPORAL_POOL_NOTE)
    else:
        raise CheckpointError(
            None, f"has a {kind.upper()} backbone hfnet does not recognise (first keys: "
                  f"{sorted(bb_rel)[:4]}).", "hfnet imports BN-Inception (Caffe names) and ResNet backbones.")
    if kind == "tsm" and SHIFT_NOTE not in report.not_implemented:
        report.not_implemented.append(SHIFT_NOTE)

    for fk, r in clean.items():
        if r.startswith("fc.") and not has_new_fc:  # TSN with dropout 0 keeps its classifier here
            mapped.put("head.new_fc." + r[3:], fk, state[fk])
        else:
            mapped.put("base_model." + r, fk, state[fk])
    for fk, r in rel.items():
        if r.startswith("new_fc."):
            mapped.put("head." + r, fk, state[fk])
        elif not r.startswith("base_model."):
            mapped.put(r, fk, state[fk])  # consensus.*, ...: reported as unknown by the strict check

    file_facts(obj, mapped, None)
    arch = obj.get("arch") if isinstance(obj, dict) else None
    if isinstance(arch, str):
        a = arch.lower()
        same_family = ("inception" in a) == (mapped.backbone == "bninception")
        if not same_family or (a.startswith("resnet") and a != mapped.backbone):
            report.warnings.append(f"the file's arch field says {arch!r}, but its keys are those of a "
                                   f"{mapped.backbone}; loaded as {mapped.backbone}.")
    return mapped
