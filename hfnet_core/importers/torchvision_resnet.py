"""torchvision (and timm) ResNet state dicts: ``conv1``, ``bn1``, ``layerN.M.*``, ``fc``.

hfnet's ResNet carries torchvision's names, so the backbone maps by adding ``base_model.``; the image
classifier ``fc`` becomes the video head's ``new_fc`` (a 1-frame clip by default, average consensus) or is
dropped when the file only initialises a backbone. The depth (18/34/50/101) is read from the blocks the
file has, the width from ``conv1``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..backbones.resnet import SPECS
from ..errors import CheckpointError
from ..input_convention import InputConvention
from .common import ImportOptions, ImportReport, Mapped, strip_prefix


def detect(state: dict[str, Tensor]) -> bool:
    keys = set(strip_prefix(state, "module.").values())
    return {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight"} <= keys


def resnet_arch(rel_keys: set[str], conv1_weight: Tensor, path: Any = None) -> tuple[str, float]:
    """(backbone name, width_mult) of a ResNet from its torchvision-named keys."""
    counts = []
    for stage in range(1, 5):
        n = 0
        while f"layer{stage}.{n}.conv1.weight" in rel_keys:
            n += 1
        counts.append(n)
    kind = "bottleneck" if "layer1.0.conv3.weight" in rel_keys else "basic"
    for depth, (k, c) in SPECS.items():
        if k == kind and tuple(counts) == c:
            return f"resnet{depth}", conv1_weight.shape[0] / 64
    raise CheckpointError(
        path, f"holds a ResNet with {kind} blocks {counts} per stage, which is not one hfnet implements.",
        f"Supported: {', '.join(f'resnet{d}' for d in SPECS)}.")


def map_state(obj: Any, state: dict[str, Tensor], opts: ImportOptions, report: ImportReport) -> Mapped:
    rel = strip_prefix(state, "module.")
    keys = set(rel.values())
    stem = next(k for k, r in rel.items() if r == "conv1.weight")
    backbone, width = resnet_arch(keys, state[stem])
    mapped = Mapped({}, {}, backbone, width, InputConvention.imagenet_rgb(), image_classifier=True)
    for file_key, r in rel.items():
        if r.startswith("fc."):
            mapped.put("head.new_fc." + r[3:], file_key, state[file_key])
        else:
            mapped.put("base_model." + r, file_key, state[file_key])
    return mapped
