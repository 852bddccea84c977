"""Which temporal operator a foreign checkpoint was trained with, from its keys first and the user second.

* **TSM on ResNet** shows itself: the original wraps each shifted convolution (``blockres``:
  ``layer1.0.conv1.net.weight``) or block (``block``: ``layer1.0.net.conv1.weight``) in a module called
  ``net``, so the keys list exactly which sites are shifted (ResNet-101 shifts every second block).
  The share of shifted channels (``shift_div``) is not in the keys: it comes from the file's fields
  (EPIC-Kitchens checkpoints record it; mmaction2 configs say ``shift_div=8``) or from the user.
* **TSM on BN-Inception** shifts functionally, so its keys are TSN's: only the user can say it is TSM.
* **GSM** adds ``gsm_<conv>.conv3D`` / ``.bn`` modules: the keys list its sites.
* **TRN** adds ``consensus.fc_fusion_scales.{i}``: one per scale T .. 2, so the keys give the frame count.

A file *name* such as ``TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e45.pth`` is never
trusted: where the keys cannot tell and the name suggests an operator, the error names the flags to
pass.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

_BLOCKRES = re.compile(r"^(layer\d+\.\d+)\.conv1\.net\.")
_BLOCK = re.compile(r"^(layer\d+\.\d+)\.net\.")
_TPOOL = re.compile(r"^layer\d+\.net\.")


def tsm_sites_from_resnet_keys(rel_keys: set[str]) -> list[str] | None:
    """Sites (``module:side``) that a TSM ResNet checkpoint's ``.net.`` keys show, or None if none."""
    if any(_TPOOL.match(k) for k in rel_keys):
        raise CheckpointError(None, "was trained with TSM's temporal pooling (keys like 'layer2.net.0...'), "
                                    "which halves the frames inside the network; hfnet does not implement it.",
                              "Use a checkpoint trained without --temporal_pool.")
    blockres = {m.group(1) for k in rel_keys if (m := _BLOCKRES.match(k))}
    block = {m.group(1) for k in rel_keys if (m := _BLOCK.match(k))}
    if blockres and block:
        raise CheckpointError(None, "mixes TSM's 'blockres' and 'block' wrappers; hfnet cannot tell its layout.")
    if not blockres and not block:
        return None

    def order(b: str) -> tuple[int, int]:
        stage, index = b[len("layer"):].split(".")
        return int(stage), int(index)

    if blockres:
        return [f"{b}.conv1:in" for b in sorted(blockres, key=order)]
    return [f"{b}:in" for b in sorted(block, key=order)]


def name_hints(path: Any) -> dict[str, Any]:
    """What a TSM-style file name *suggests* (never used as a fact: only to word error messages)."""
    if path is None:
        return {}
    name = Path(str(path)).name
    hints: dict[str, Any] = {}
    if m := re.search(r"shift(\d+)", name):
        hints["shift_div"] = int(m.group(1))
    if m := re.search(r"shift\d+_(blockres|block)", name):
        hints["shift_place"] = m.group(1)
    if m := re.search(r"segment(\d+)", name):
        hints["num_segments"] = int(m.group(1))
    if re.search(r"(^|[_-])(TSM|tsm)([_-]|$)", name) and "shift_div" in hints:
        hints["temporal"] = "tsm"
    if re.search(r"gsm", name, re.IGNORECASE):
        hints["temporal"] = "gsm"
    return hints


def suggestion(path: Any, key: str, flag: str) -> str:
    """' (its name suggests --flag V)' when the file name hints at a value, else ''."""
    v = name_hints(path).get(key)
    return f" (the file name suggests `{flag} {v}`, but hfnet does not take settings from file names)" \
        if v is not None else ""


def resolve_shift_div(opts: Any, facts: dict[str, tuple[Any, str]], path: Any) -> tuple[int, str]:
    """(shift_div, where it came from): the argument, else a field of the file; else an error."""
    if getattr(opts, "shift_div", None) is not None:
        return int(opts.shift_div), "argument"
    if "shift_div" in facts:
        return int(facts["shift_div"][0]), facts["shift_div"][1]
    raise CheckpointError(
        path, "is a TSM checkpoint that does not record how many channels its shift moves (shift_div).",
        "Pass it: `--shift-div N` (import_checkpoint(..., shift_div=N)); TSM's default and every published "
        "TSM model use 8" + suggestion(path, "shift_div", "--shift-div") + ".")
