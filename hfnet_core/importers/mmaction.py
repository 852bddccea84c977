"""mmaction2 TSN / TSM recognisers with a ResNet backbone (``Recognizer2D``).

State dict: ``backbone.*`` in mmcv's ``ConvModule`` names and ``cls_head.fc_cls.*``. The renaming to
torchvision names is the one mmaction2 itself documents for loading torchvision weights, reversed:

    backbone.conv1.conv.*                  -> base_model.conv1.*
    backbone.conv1.bn.*                    -> base_model.bn1.*
    backbone.layerX.Y.convN.conv[.net].*   -> base_model.layerX.Y.convN.*   (``.net``: TSM's shift wrapper)
    backbone.layerX.Y.convN.bn.*           -> base_model.layerX.Y.bnN.*
    backbone.layerX.Y.downsample.conv.*    -> base_model.layerX.Y.downsample.0.*
    backbone.layerX.Y.downsample.bn.*      -> base_model.layerX.Y.downsample.1.*
    cls_head.fc_cls.*                      -> head.new_fc.*

TSN's and TSM's heads average frames (``AvgConsensus``) around a linear classifier, which is hfnet's TSN
head. ResNetTSM's ``.net`` wrappers say which convolutions are shifted (hfnet runs TSM's shift there, with
the config's ``shift_div``, mmaction2's default 8 if it names none). TRN recognisers
(``cls_head.fc_cls`` = the 2048 -> 256 projection, ``cls_head.consensus.fc_fusion_scales.{i}``) load into
hfnet's TRN head (``TRNHead`` in ``hfnet_core/heads.py``: the same relation MLPs and arithmetic). ``meta`` holds the config text (``config`` in mmaction2 0.x, ``cfg`` in 1.x): frames per clip come
from ``num_segments=`` or the training pipeline's ``SampleFrames(num_clips=...)``, pixel normalisation from
``mean``/``std``, class names from ``meta["CLASSES"]`` or ``meta["dataset_meta"]["classes"]``.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from ..errors import CheckpointError
from ..input_convention import InputConvention
from .common import ImportOptions, ImportReport, Mapped
from .torchvision_resnet import resnet_arch
from .tsn_family import _trn_facts

_RULES: tuple[tuple[str, str], ...] = (
    (r"^backbone\.conv1\.conv\.", "base_model.conv1."),
    (r"^backbone\.conv1\.bn\.", "base_model.bn1."),
    (r"^backbone\.(layer\d+\.\d+)\.(?:block\.)?conv(\d)\.conv\.(?:net\.)?", r"base_model.\1.conv\2."),
    (r"^backbone\.(layer\d+\.\d+)\.(?:block\.)?conv(\d)\.bn\.", r"base_model.\1.bn\2."),
    (r"^backbone\.(layer\d+\.\d+)\.(?:block\.)?downsample\.conv\.", r"base_model.\1.downsample.0."),
    (r"^backbone\.(layer\d+\.\d+)\.(?:block\.)?downsample\.bn\.", r"base_model.\1.downsample.1."),
    (r"^cls_head\.fc_cls\.", "head.new_fc."),
    (r"^cls_head\.consensus\.(fc_fusion_scales\.\d+\.\d+\.)", r"head.\1"),
)
_SHIFTED = re.compile(r"^backbone\.(layer\d+\.\d+)\.conv1\.conv\.net\.")


def detect(state: dict[str, Tensor]) -> bool:
    return any(k.startswith("backbone.") for k in state) and all(
        k.startswith(("backbone.", "cls_head.", "neck.", "data_preprocessor.")) for k in state)


def config_text(obj: Any) -> str:
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return ""
    text = meta.get("config") or meta.get("cfg") or ""
    return text if isinstance(text, str) else ""


def _dict_containing(text: str, marker: str) -> str | None:
    """The ``dict(...)`` literal around the first ``marker`` in config text (no nested parentheses)."""
    pos = text.find(marker)
    if pos < 0:
        return None
    start = text.rfind("dict(", 0, pos)
    end = text.find(")", pos)
    return text[start:end] if start >= 0 and end > 0 else None


def num_segments_from_config(text: str) -> tuple[int, str] | None:
    m = re.search(r"\bnum_segments\s*=\s*(\d{1,9})\b", text)
    if m:
        return int(m.group(1)), "config text: num_segments"
    train = text.find("train_pipeline")
    if train < 0:
        return None
    d = _dict_containing(text[train:], "SampleFrames")
    if d is None:
        return None
    clips, clip_len = re.search(r"num_clips\s*=\s*(\d{1,9})\b", d), re.search(r"clip_len\s*=\s*(\d{1,9})\b", d)
    if clips and (clip_len is None or clip_len.group(1) == "1"):
        return int(clips.group(1)), "config text: train_pipeline SampleFrames num_clips"
    return None


def convention_from_config(text: str) -> tuple[InputConvention, str] | None:
    for anchor in ("img_norm_cfg", "data_preprocessor", "preprocess_cfg"):
        pos = text.find(anchor)
        if pos < 0:
            continue
        seg = text[pos:pos + 600]
        mean = re.search(r"mean\s*=\s*\[([^\]]+)\]", seg)
        std = re.search(r"std\s*=\s*\[([^\]]+)\]", seg)
        if not (mean and std):
            continue
        try:
            mv = tuple(float(x) for x in mean.group(1).split(","))
            sv = tuple(float(x) for x in std.group(1).split(","))
        except ValueError:
            continue
        if len(mv) != 3 or len(sv) != 3:
            continue
        bgr = re.search(r"to_bgr\s*=\s*True", seg) is not None
        scale = 255.0 if max(mv) > 1.5 else 1.0
        conv = InputConvention("BGR" if bgr else "RGB", scale, mv, sv)  # type: ignore[arg-type]
        return conv, f"config text: {anchor}"
    return None


def map_state(obj: Any, state: dict[str, Tensor], opts: ImportOptions, report: ImportReport) -> Mapped:
    if not any(k.startswith("backbone.") for k in state):
        raise CheckpointError(None, "does not have the mmaction2 layout: no 'backbone.' keys.", "Check `--format`.")
    text = config_text(obj)
    if re.search(r"style\s*=\s*['\"]caffe['\"]", text):
        raise CheckpointError(None, "uses mmaction2's caffe-style ResNet (stride on the 1x1 convolution), "
                                    "which hfnet does not implement.")
    renamed: dict[str, str] = {}
    for k in state:
        new = k
        for pattern, repl in _RULES:
            new, n = re.subn(pattern, repl, k)
            if n:
                break
        renamed[k] = new
    bb = {v[len("base_model."):] for v in renamed.values() if v.startswith("base_model.")}
    if "conv1.weight" not in bb:
        raise CheckpointError(None, f"has an mmaction2 backbone hfnet does not recognise (first keys: "
                                    f"{sorted(state)[:4]}).", "hfnet imports mmaction2's ResNet / ResNetTSM.")
    stem = next(k for k, v in renamed.items() if v == "base_model.conv1.weight")
    name, width = resnet_arch(bb, state[stem])
    conv = convention_from_config(text)
    mapped = Mapped({}, {}, name, width, conv[0] if conv else InputConvention.imagenet_rgb())
    report.recovered["input_convention"] = {
        "value": mapped.input_convention.to_dict(),
        "source": conv[1] if conv else "mmaction2 default (RGB, ImageNet mean/std); no config text in the file"}
    for k, v in renamed.items():
        mapped.put(v, k, state[k])
    shifted = sorted({m.group(1) for k in state if (m := _SHIFTED.match(k))},
                     key=lambda b: tuple(int(x) for x in b[len("layer"):].split(".")))
    stray = [k for k in state if ".net." in k and not _SHIFTED.match(k)]
    if stray:
        raise CheckpointError(None, f"has TSM wrappers hfnet does not know at {stray[:3]} (only ResNetTSM's "
                                    "'blockres' shift before each block's conv1 is supported).")
    if shifted or "ResNetTSM" in text:
        m = re.search(r"shift_div\s*=\s*(\d+)", text)
        div, source = (int(m.group(1)), "config text: shift_div") if m else (8, "mmaction2 ResNetTSM default")
        if opts.shift_div is not None:
            div, source = int(opts.shift_div), "argument"
        if not shifted:
            raise CheckpointError(None, "is a ResNetTSM recogniser without shifted convolutions in its keys.")
        mapped.temporal = [{"op": "tsm", "where": [f"{b}.conv1:in" for b in shifted], "args": {"shift_div": div}}]
        mapped.temporal_source = f"keys: {len(shifted)} shifted conv1 (.net.); shift_div from {source}"
    trn_scales = {int(m.group(1)) for k in renamed.values() if (m := re.match(r"head\.fc_fusion_scales\.(\d+)\.", k))}
    if trn_scales:
        _trn_facts(mapped, trn_scales)
    elif re.search(r"type\s*=\s*['\"](AvgConsensus|TSNHead|TSMHead)['\"]", text):
        mapped.facts["consensus"] = ("avg", "config text: average consensus head")
    segs = num_segments_from_config(text)
    if segs:
        mapped.facts["num_segments"] = segs
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if isinstance(meta, dict):
        classes = meta.get("CLASSES")
        dm = meta.get("dataset_meta")
        if classes is None and isinstance(dm, dict):
            classes = dm.get("classes")
        if isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes):
            mapped.facts["class_names"] = (list(classes), "file meta classes")
    return mapped
