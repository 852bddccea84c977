"""Training checkpoints of TSN-pytorch, TSM, GSM, TRN-pytorch and EPIC-Kitchens' TSN/TSM: ``{"state_dict": ...,
"epoch", "arch", "best_prec1"}``.

Their models share one layout (TSN-pytorch's ``TSN`` class, trained under ``nn.DataParallel``):
``module.base_model.<backbone key>`` and ``module.new_fc.{weight,bias}``. The backbone is Caffe-named
BN-Inception or a torchvision ResNet. Variants, told apart by their keys (``temporal_keys.py``):

* **TSM** wraps a ResNet block's ``conv1`` (``blockres``) or the whole block (``block``) in a
  ``TemporalShift`` module, which adds ``.net.`` to the names (``layer1.0.conv1.net.weight``); the keys
  say which sites are shifted and the model runs TSM's shift there. On BN-Inception TSM leaves no trace
  in the keys: pass ``temporal="tsm"``. Non-local blocks (``.nl.``) are modules hfnet does not have.
* **GSM** inserts gate-shift modules (``gsm_inception_3a_1x1.conv3D.weight``, ``.bn.*``) between
  convolutions and their BN: they load into hfnet's GSM operator (``gsm.<conv>.*``).
* **TRN** adds ``consensus.fc_fusion_scales.{i}.{1,3}`` (one MLP per scale T .. 2): loaded into hfnet's
  TRN head; the number of scales gives the frame count.
* **EPIC-Kitchens-55** files (``model_type``, ``segment_count``, ``arch``, ``modality``, no ``module.``)
  record their frame count and TSM settings as top-level fields; their ``fc_verb`` / ``fc_noun`` heads
  load into hfnet's multi-task head (``consensus = "multitask"``: output [verb | noun]).
* With ``dropout == 0`` TSN keeps its classifier in the backbone (``base_model.fc``), mapped to ``new_fc``.

Frames per clip (``num_segments``) and the consensus are not in TSN/TSM/GSM files unless the training
script added them (a top-level field or a saved ``args``); otherwise the caller passes them.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from ..errors import CheckpointError
from ..input_convention import InputConvention
from .caffe_bninception import STEM_KEY
from .common import (CONSENSUS_NAMES, ImportOptions, ImportReport, Mapped, namespace_fields, strip_prefix)
from .temporal_keys import name_hints, resolve_shift_div, suggestion, tsm_sites_from_resnet_keys
from .torchvision_resnet import resnet_arch

_GSM_KEY = re.compile(r"^gsm_(.+?)\.(conv3D|bn)\.(.+)$")
_TRN_KEY = re.compile(r"^consensus\.fc_fusion_scales\.(\d+)\.(\d+)\.(weight|bias)$")


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
    """Undo TSM's wrappers: ``TemporalShift`` (``.net.``) and ``NL3DWrapper`` (``.block.``)."""
    rel = rel.replace(".net.", ".")
    m = re.match(r"(layer\d+\.\d+)\.block\.(.*)", rel)
    if m and m.group(1) in nl_layers:
        rel = f"{m.group(1)}.{m.group(2)}"
    return rel


def file_facts(obj: Any, mapped: Mapped, path: Any) -> None:
    """num_segments / consensus / class names the file itself records (top level or a saved ``args``)."""
    top = obj if isinstance(obj, dict) else {}
    args = namespace_fields(obj)
    for name, sources in (("num_segments", ("num_segments", "segment_count")),
                          ("consensus", ("consensus_type", "consensus")), ("shift_div", ("shift_div",)),
                          ("shift_place", ("shift_place",)), ("model_type", ("model_type",))):
        for where, fields in (("field", top), ("args", args)):
            for src in sources:
                v = fields.get(src)
                if v is None or (name in ("consensus", "shift_place", "model_type") and not isinstance(v, str)):
                    continue
                if name in ("shift_place", "model_type"):
                    v = v.lower()
                elif name == "consensus":
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
    modality = obj.get("modality") if isinstance(obj, dict) else None
    if isinstance(modality, str) and modality.lower() != "rgb":
        raise CheckpointError(None, f"is a {modality} model (its 'modality' field); hfnet runs RGB models only.",
                              "Use the RGB checkpoint of the same model.")
    rel = strip_prefix(state, "module.")
    backbone_keys = {fk: r[len("base_model."):] for fk, r in rel.items() if r.startswith("base_model.")}
    if not backbone_keys:
        raise CheckpointError(None, f"does not have the {kind.upper()} layout: no 'base_model.' keys.",
                              "Check `--format`.")
    gsm_keys = {fk: m for fk, r in backbone_keys.items() if (m := _GSM_KEY.match(r))}
    backbone_keys = {fk: r for fk, r in backbone_keys.items() if fk not in gsm_keys}
    bb_rel = set(backbone_keys.values())
    has_new_fc = any(r.startswith("new_fc.") for r in rel.values())
    shifted: list[str] | None = None

    if STEM_KEY in bb_rel:
        stem = next(fk for fk, r in backbone_keys.items() if r == STEM_KEY)
        mapped = Mapped({}, {}, "bninception", state[stem].shape[0] / 64, InputConvention.bninception(),
                        squeezable=True)
        clean = dict(backbone_keys)
    elif "conv1.weight" in {r.replace(".net.", ".") for r in bb_rel}:
        shifted = tsm_sites_from_resnet_keys(bb_rel)
        nl_layers = {m.group(1) for r in bb_rel if (m := re.match(r"(layer\d+\.\d+)\.nl\.", r))}
        clean = {fk: _clean_resnet_key(r, nl_layers) for fk, r in backbone_keys.items()}
        stem = next(fk for fk, r in clean.items() if r == "conv1.weight")
        name, width = resnet_arch(set(clean.values()), state[stem])
        mapped = Mapped({}, {}, name, width, InputConvention.imagenet_rgb())
    else:
        raise CheckpointError(
            None, f"has a {kind.upper()} backbone hfnet does not recognise (first keys: "
                  f"{sorted(bb_rel)[:4]}).", "hfnet imports BN-Inception (Caffe names) and ResNet backbones.")

    for fk, r in clean.items():
        if r.startswith("fc.") and not has_new_fc:  # TSN with dropout 0 keeps its classifier here
            mapped.put("head.new_fc." + r[3:], fk, state[fk])
        else:
            mapped.put("base_model." + r, fk, state[fk])
    for fk, m in gsm_keys.items():  # base_model.gsm_<conv>.conv3D.weight -> gsm.<conv>.conv3D.weight
        mapped.put(f"gsm.{m.group(1)}.{m.group(2)}.{m.group(3)}", fk, state[fk])
    trn_scales = set()
    for fk, r in rel.items():
        if r.startswith(("new_fc.", "fc_verb.", "fc_noun.")):
            mapped.put("head." + r, fk, state[fk])
        elif m := _TRN_KEY.match(r):
            trn_scales.add(int(m.group(1)))
            mapped.put(f"head.fc_fusion_scales.{m.group(1)}.{m.group(2)}.{m.group(3)}", fk, state[fk])
        elif not r.startswith("base_model."):
            mapped.put(r, fk, state[fk])  # consensus.classifier.*, ...: reported as unknown by the strict check

    file_facts(obj, mapped, None)
    if trn_scales:
        _trn_facts(mapped, trn_scales)
    if "head.fc_verb.weight" in mapped.state:
        _epic_facts(mapped)
    _temporal_entries(mapped, opts, report, shifted, sorted({m.group(1) for m in gsm_keys.values()}), kind)
    arch = obj.get("arch") if isinstance(obj, dict) else None
    if isinstance(arch, str):
        a = arch.lower()
        same_family = ("inception" in a) == (mapped.backbone == "bninception")
        if not same_family or (a.startswith("resnet") and a != mapped.backbone):
            report.warnings.append(f"the file's arch field says {arch!r}, but its keys are those of a "
                                   f"{mapped.backbone}; loaded as {mapped.backbone}.")
    return mapped


def _epic_facts(mapped: Mapped) -> None:
    """EPIC-Kitchens' TSN / TSM: ``fc_verb`` and ``fc_noun`` averaged over frames = hfnet's multitask head
    without an action classifier (their consensus: ``avg``; ``max`` is refused by ``file_facts``)."""
    if "head.fc_noun.weight" not in mapped.state or "head.new_fc.weight" in mapped.state:
        raise CheckpointError(None, "has fc_verb without fc_noun (or beside new_fc): not an EPIC-Kitchens "
                                    "verb / noun model.")
    verbs = int(mapped.state["head.fc_verb.weight"].shape[0])
    nouns = int(mapped.state["head.fc_noun.weight"].shape[0])
    mapped.facts["consensus"] = ("multitask", f"keys: fc_verb ({verbs}) / fc_noun ({nouns}), EPIC-Kitchens")
    mapped.consensus_args = {"verbs": verbs, "nouns": nouns, "actions": [], "action_bias": False}


def _trn_facts(mapped: Mapped, scales: set[int]) -> None:
    """TRN-pytorch's relation head: scales T .. 2 are fc_fusion_scales.0 .. T-2, so T = count + 1."""
    count = len(scales)
    if scales != set(range(count)):
        raise CheckpointError(None, f"has TRN relation scales {sorted(scales)}; expected 0 .. {count - 1}.")
    mapped.facts["consensus"] = ("trn", "keys: consensus.fc_fusion_scales (TRN multi-scale relation)")
    mapped.facts.setdefault("num_segments", (count + 1, f"keys: {count} relation scales (T .. 2)"))
    first = mapped.state.get("head.fc_fusion_scales.0.1.weight")
    proj = mapped.state.get("head.new_fc.weight")
    if first is not None and proj is not None:
        mapped.consensus_args = {"img_feature_dim": int(proj.shape[0]), "bottleneck": int(first.shape[0])}


def _temporal_entries(mapped: Mapped, opts: ImportOptions, report: ImportReport, shifted: list[str] | None,
                      gsm_sites: list[str], kind: str) -> None:
    """The operators the keys show (TSM on ResNet, GSM), or the one the user names; never a file name."""
    path = report.source or None
    shown = "tsm" if shifted else "gsm" if gsm_sites else None
    fields = mapped.facts.get("model_type", (None, ""))[0]
    wanted = opts.temporal
    if wanted is not None and shown is not None and wanted != shown:
        raise CheckpointError(path, f"has the keys of a {shown.upper()} model, but temporal={wanted!r} was given.",
                              f"Drop the option (the keys show {shown.upper()}).")
    if shown == "gsm":
        from ..temporal.gsm import PLACES

        where: Any = "all" if sorted(gsm_sites) == sorted(PLACES) else gsm_sites
        mapped.temporal = [{"op": "gsm", "where": where, "args": {}}]
        mapped.temporal_source = f"keys: gsm_<conv> modules at {len(gsm_sites)} places"
        return
    if shown == "tsm":
        div, source = resolve_shift_div(opts, mapped.facts, path)
        mapped.temporal = [{"op": "tsm", "where": shifted, "args": {"shift_div": div}}]
        mapped.temporal_source = f"keys: {len(shifted)} TemporalShift wrappers (.net.); shift_div from {source}"
        return
    # Nothing in the keys. BN-Inception TSM looks exactly like TSN: it takes the user (or a file field).
    recorded = fields in ("tsm", "tsm-nl")
    if wanted == "tsm" or (wanted is None and recorded):
        if mapped.backbone != "bninception":
            raise CheckpointError(path, "has no TemporalShift wrappers in its keys, so it was not trained as "
                                        f"TSM on a {mapped.backbone}.", "Drop the temporal option.")
        place = opts.shift_place or mapped.facts.get("shift_place", ("block", ""))[0]
        if place != "block":
            raise CheckpointError(path, f"asks for TSM's {place!r} placement on BN-Inception, which the original "
                                        "code cannot run (Inception blocks change shape).", "Use 'block'.")
        div, source = resolve_shift_div(opts, mapped.facts, path)
        mapped.temporal = [{"op": "tsm", "where": "block", "args": {"shift_div": div}}]
        mapped.temporal_source = (f"{'argument' if wanted else 'file field model_type'}: TSM on BN-Inception "
                                  f"(shifts the input of each stage after the first); shift_div from {source}")
        return
    if wanted in ("gsm", "hf"):
        raise CheckpointError(path, f"has no {wanted.upper()} tensors, so it was not trained with {wanted.upper()}.",
                              "Drop the temporal option.")
    hint = name_hints(path).get("temporal")
    if wanted is None and mapped.backbone == "bninception" and (kind == "tsm" or hint == "tsm"):
        raise CheckpointError(
            path, "shows no temporal operator in its keys, but " + (
                "it was named as a TSM file" if kind == "tsm" else "its file name suggests TSM") +
            ": TSM on BN-Inception leaves no trace in the keys, so hfnet cannot tell.",
            "Pass `--temporal tsm --shift-div N` to run TSM's shift" + suggestion(path, "shift_div", "--shift-div") +
            ", or `--temporal none` to load it as a plain TSN.")
